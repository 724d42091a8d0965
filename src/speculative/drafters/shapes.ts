/**
 * Fixed tree shapes (breadth-first numbering, root = node 0): a chain and SpecInfer's star of chains.
 * Sequoia's shapes come from the planner (sequoia_plan.ts).
 *
 * @module
 */

import type { TreeShape } from "../tree.ts";

/** A chain of k draft tokens (Leviathan et al.): one child per node. */
export function chainShape(k: number): TreeShape {
  return {
    parent: Int32Array.from({ length: k + 1 }, (_, i) => i - 1),
    depth: Int32Array.from({ length: k + 1 }, (_, i) => i),
  };
}

/** SpecInfer-style shape: `width` children at the root, each continued as a chain to `depth` levels. */
export function specInferShape(width: number, depth: number): TreeShape {
  const parent = [-1], dep = [0];
  for (let w = 0; w < width; w++) {
    parent.push(0);
    dep.push(1);
  }
  // Breadth-first: level l >= 2 node of chain w has parent = the chain's node at level l - 1.
  for (let l = 2; l < depth; l++) {
    for (let w = 0; w < width; w++) {
      parent.push(1 + (l - 2) * width + w);
      dep.push(l);
    }
  }
  return { parent: Int32Array.from(parent), depth: Int32Array.from(dep) };
}

/** Keep the first n nodes of a shape (breadth-first numbering: any prefix is a connected subtree). */
export function truncateShape(shape: TreeShape, n: number): TreeShape {
  if (shape.parent.length <= n) return shape;
  return { parent: shape.parent.slice(0, n), depth: shape.depth.slice(0, n) };
}
