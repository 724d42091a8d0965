/**
 * An incremental pushdown automaton over UTF-8 bytes that accepts exactly the JSON texts of a compiled
 * grammar ({@link GrammarNode}): `step(state, byte)` is the next state or undefined when the byte may not
 * come, `isComplete(state)` says a whole value has been read, `key(state)` names the state for
 * memoization.
 *
 * States are immutable: a stack of frames as a persistent linked list (each frame points at its parent),
 * so a step allocates at most one frame and every branch of a speculative tree shares its ancestors'.
 * Many steps allocate nothing at all: inside a string, a byte that leaves the (capped) length unchanged
 * returns the very same frame. An `alt` (anyOf, a list of types) splits a state into threads, one per
 * alternative still alive, deduplicated by key; most states are one thread.
 *
 * Every reachable state can still complete (the automaton is trimmed by construction: a lone low
 * surrogate escape is refused at its third hex digit, a character past maxLength at its first byte, a
 * "," when no property or item may follow), so a token mask computed from a state is never empty when
 * the vocabulary holds every single byte (byte-level BPE does; SentencePiece has <0xNN> tokens).
 *
 * What is accepted, beyond RFC 8259's grammar:
 * - Whitespace (space, \n, \t, \r) only where JSON allows it, at most `maxWhitespace` bytes in a row
 *   (default {@link GRAMMAR_DEFAULTS}), so a model cannot spend its budget on blank lines; none after the
 *   top-level value, which ends the text.
 * - Raw string bytes must be valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF); a `\u`
 *   escape of a high surrogate must be followed by one of a low surrogate.
 * - Containers of arbitrary values (json_object, a schema's `{}`) nest at most `maxDepth` deep; a schema's
 *   own containers are bounded by the schema and do not count against a limit.
 * - Free-form objects may repeat a key (a byte automaton cannot remember the set of keys written).
 *
 * @module
 */

import type { ArrayNode, GrammarNode, LiteralsNode, ObjectMapNode, ObjectNode, StringNode } from "./nodes.ts";

/** Limits of the matcher, all optional. */
export interface MatcherOptions {
  /** Whitespace bytes allowed in a row between two JSON tokens (and before the value). */
  maxWhitespace?: number;
  /** Nesting limit of arbitrary values' containers (json_object counts its top-level object). */
  maxDepth?: number;
}

/**
 * Defaults of every grammar knob in one place:
 * - maxWhitespace 2: room for ", " / ":\n" style separators and a "\n\n" before the value, but not for
 *   indentation runs (indented output costs tokens and gives a small model a way to loop).
 * - maxDepth 32: deeper than any realistic reply; bounds the stack (and the key length) of a state.
 * - maskCacheSize 2048: masks kept per grammar (a mask is vocab/8 bytes: 6 KiB for 49,152 tokens, so
 *   12 MiB when full).
 */
export const GRAMMAR_DEFAULTS = { maxWhitespace: 2, maxDepth: 32, maskCacheSize: 2048 } as const;

/** Frame kind of the document: leading whitespace, then one value, then nothing. */
const DOC = "doc";

/** The document root a matcher starts from. */
interface DocNode {
  readonly kind: typeof DOC;
  readonly id: number;
  readonly value: GrammarNode;
}

type FrameNode = GrammarNode | DocNode;

// Sub-states (Frame.s) per kind. A "marker" is a parent frame while a child value is being read: the
// child's frame points at it and `finish` turns it into the state after the value.
// doc
const D_BEFORE = 0, D_DONE = 1, D_IN_VALUE = 2;
// object_map: after "{", in key (marker), after key, after ":", in value (marker), after value, after ","
const M_START = 0, M_IN_KEY = 1, M_AFTER_KEY = 2, M_COLON = 3, M_IN_VALUE = 4, M_AFTER_VALUE = 5, M_COMMA = 6;
// object: as object_map, but the key is read here through the property trie (a = candidate start or
// property index, b = trie node)
const O_START = 0, O_KEY = 1, O_AFTER_KEY = 2, O_COLON = 3, O_IN_VALUE = 4, O_AFTER_VALUE = 5, O_COMMA = 6;
// array (a = items so far, capped): after "[", in item (marker), after item, after ","
const A_START = 0, A_IN_ITEM = 1, A_AFTER_ITEM = 2, A_COMMA = 3;
// string (a = code points so far, capped): plain, UTF-8 continuation bytes still due (C1..C3 and the
// restricted first continuations after E0, ED, F0, F4), escapes: "\", "\u" + 0..3 hex digits (U1D: the
// first digit was "d"), a high surrogate's last digits (H2, H3), then "\" "u" and a low surrogate.
const S_PLAIN = 0, S_C1 = 1, S_C2 = 2, S_C3 = 3, S_E0 = 4, S_ED = 5, S_F0 = 6, S_F4 = 7, S_ESC = 8;
const S_U0 = 9, S_U1 = 10, S_U1D = 11, S_U2 = 12, S_U3 = 13, S_H2 = 14, S_H3 = 15, S_HB = 16, S_HU = 17;
const S_L0 = 18, S_L1 = 19, S_L2 = 20, S_L3 = 21;
// number: after "-", "0", integer digits, after ".", fraction digits, after "e", after its sign, exponent
const N_MINUS = 0, N_ZERO = 1, N_INT = 2, N_DOT = 3, N_FRAC = 4, N_E = 5, N_ESIGN = 6, N_EXP = 7;

/**
 * One level of the stack. Fields are plain numbers so every frame has one shape (fast property access
 * in the mask's inner loop): `s` the sub-state, `w` whitespace bytes in the current run, `a` / `b` the
 * kind's counters (see the sub-state comments), `depth` the open containers including this one.
 */
class Frame {
  private cachedKey: string | undefined;

  constructor(
    readonly node: FrameNode,
    readonly s: number,
    readonly w: number,
    readonly a: number,
    readonly b: number,
    readonly depth: number,
    readonly parent: Frame | undefined,
  ) {}

  /** This frame with other sub-state and counters (whitespace run reset), same node and parent. */
  with(s: number, a = this.a, b = this.b): Frame {
    return new Frame(this.node, s, 0, a, b, this.depth, this.parent);
  }

  /** A stable name of the whole stack: equal keys accept the same byte strings. */
  key(): string {
    // Cached on the (otherwise immutable) frame: parents are shared, so a key costs one frame's text.
    return this.cachedKey ??= `${this.node.id}.${this.s}.${this.w}.${this.a}.${this.b}` +
      (this.parent ? "/" + this.parent.key() : "");
  }
}

/** Several live alternatives (from an `alt`), distinct by key. */
class Threads {
  constructor(readonly frames: readonly Frame[]) {}
}

/** A matcher state: opaque, immutable, cheap to keep per tree node. */
export type JsonState = Frame | Threads;

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
const isCont = (c: number) => c >= 0x80 && c <= 0xbf;
const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d;

/**
 * The byte automaton of one grammar.
 *
 * @example
 * ```ts
 * const b = new GrammarBuilder();
 * const m = new JsonMatcher(b.objectMap(b.any()));
 * let s: JsonState | undefined = m.initial();
 * for (const c of new TextEncoder().encode('{"a": [1, true]}')) s = s && m.step(s, c);
 * m.isComplete(s!); // true
 * ```
 */
export class JsonMatcher {
  private readonly maxWhitespace: number;
  private readonly maxDepth: number;
  private readonly start: Frame;
  private readonly done: Frame;

  /** @param root the value the text must be (every node from one {@link GrammarBuilder}) */
  constructor(root: GrammarNode, options: MatcherOptions = {}) {
    this.maxWhitespace = options.maxWhitespace ?? GRAMMAR_DEFAULTS.maxWhitespace;
    this.maxDepth = options.maxDepth ?? GRAMMAR_DEFAULTS.maxDepth;
    for (const [name, v] of [["maxWhitespace", this.maxWhitespace], ["maxDepth", this.maxDepth]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${v}`);
    }
    // The doc's id must not collide with the nodes': builders number from 0 up.
    const doc: DocNode = { kind: DOC, id: -1, value: root };
    this.start = new Frame(doc, D_BEFORE, 0, 0, 0, 0, undefined);
    this.done = new Frame(doc, D_DONE, 0, 0, 0, 0, undefined);
  }

  /** The state before the first byte. */
  initial(): JsonState {
    return this.start;
  }

  /** The state after `byte` (0..255), or undefined when the grammar does not allow it here. */
  step(state: JsonState, byte: number): JsonState | undefined {
    if (state instanceof Frame) return this.stepFrame(state, byte);
    const out: Frame[] = [];
    for (const f of state.frames) collect(out, this.stepFrame(f, byte));
    return merge(out);
  }

  /** The state after all of `bytes`, or undefined as soon as one is not allowed. */
  stepAll(state: JsonState, bytes: ArrayLike<number>): JsonState | undefined {
    let s: JsonState | undefined = state;
    for (let i = 0; i < bytes.length && s !== undefined; i++) s = this.step(s, bytes[i]);
    return s;
  }

  /**
   * True when a whole value has been read, so the text may end here. No byte may follow a finished
   * object, array, string or literal; only a top-level number (or an enum whose values extend one
   * another, like 1 and 12) may still grow, and then both ending and growing are allowed.
   */
  isComplete(state: JsonState): boolean {
    if (state instanceof Frame) return this.frameComplete(state);
    return state.frames.some((f) => this.frameComplete(f));
  }

  /** A stable string naming `state`: equal keys have equal futures (used to memoize token masks). */
  key(state: JsonState): string {
    if (state instanceof Frame) return state.key();
    return state.frames.map((f) => f.key()).sort().join("|");
  }

  private frameComplete(f: Frame): boolean {
    if (f.node.kind === DOC) return f.s === D_DONE;
    return f.parent !== undefined && f.parent.node.kind === DOC && endable(f);
  }

  private stepFrame(f: Frame, c: number): JsonState | undefined {
    switch (f.node.kind) {
      case DOC:
        if (f.s !== D_BEFORE) return undefined; // done: the value is the whole text
        if (isWs(c)) return this.space(f);
        return this.begin(f.node.value, c, f.with(D_IN_VALUE), 0);
      case "object_map":
        return this.stepObjectMap(f, f.node, c);
      case "object":
        return this.stepObject(f, f.node, c);
      case "array":
        return this.stepArray(f, f.node, c);
      case "string":
        return this.stepString(f, f.node, c);
      case "number":
        return this.stepNumber(f, f.node.integer, c);
      case "literals":
        return this.stepLiterals(f, f.node, c);
      default:
        // any and alt never own a frame: `begin` resolves them on the value's first byte.
        throw new Error(`unreachable: frame of kind ${f.node.kind}`);
    }
  }

  /** One more whitespace byte in the current run, if the run has room. */
  private space(f: Frame): Frame | undefined {
    if (f.w >= this.maxWhitespace) return undefined;
    return new Frame(f.node, f.s, f.w + 1, f.a, f.b, f.depth, f.parent);
  }

  /**
   * The state after the first byte `c` of a value of shape `node`, read inside `parent` (a marker).
   * `depth` is the number of containers open around the value.
   */
  private begin(node: GrammarNode, c: number, parent: Frame, depth: number): JsonState | undefined {
    switch (node.kind) {
      case "any":
        if (c === LBRACE || c === LBRACKET) {
          if (depth >= this.maxDepth) return undefined;
          return this.begin(c === LBRACE ? node.object : node.array, c, parent, depth);
        }
        if (c === QUOTE) return this.begin(node.string, c, parent, depth);
        if (c === 0x2d || isDigit(c)) return this.begin(node.number, c, parent, depth);
        return this.begin(node.literals, c, parent, depth);
      case "object_map":
        return c === LBRACE ? new Frame(node, M_START, 0, 0, 0, depth + 1, parent) : undefined;
      case "object":
        return c === LBRACE ? new Frame(node, O_START, 0, 0, 0, depth + 1, parent) : undefined;
      case "array":
        return c === LBRACKET ? new Frame(node, A_START, 0, 0, 0, depth + 1, parent) : undefined;
      case "string":
        return c === QUOTE ? new Frame(node, S_PLAIN, 0, 0, 0, depth, parent) : undefined;
      case "number":
        if (c === 0x2d) return new Frame(node, N_MINUS, 0, 0, 0, depth, parent);
        if (c === 0x30) return new Frame(node, N_ZERO, 0, 0, 0, depth, parent);
        if (isDigit(c)) return new Frame(node, N_INT, 0, 0, 0, depth, parent);
        return undefined;
      case "literals":
        return this.stepLiterals(new Frame(node, 0, 0, 0, 0, depth, parent), node, c);
      case "alt": {
        const out: Frame[] = [];
        for (const alt of node.alternatives) collect(out, this.begin(alt, c, parent, depth));
        return merge(out);
      }
    }
  }

  /** The marker `parent` once its child value is complete. */
  private finish(parent: Frame): Frame {
    switch (parent.node.kind) {
      case DOC:
        return this.done;
      case "object_map":
        return parent.with(parent.s === M_IN_KEY ? M_AFTER_KEY : M_AFTER_VALUE);
      case "object":
        return parent.with(O_AFTER_VALUE);
      case "array": {
        // Past minItems an unbounded array's exact count no longer matters: cap it so keys repeat.
        const node = parent.node;
        const cap = Number.isFinite(node.maxItems) ? node.maxItems : node.minItems;
        return parent.with(A_AFTER_ITEM, Math.min(parent.a + 1, cap));
      }
      default:
        throw new Error(`unreachable: ${parent.node.kind} holds no child value`);
    }
  }

  /** A value that may end here (a number, a literal that is a prefix of another) gives `c` to its parent. */
  private handBack(f: Frame, c: number): JsonState | undefined {
    return endable(f) ? this.stepFrame(this.finish(f.parent!), c) : undefined;
  }

  private stepObjectMap(f: Frame, node: ObjectMapNode, c: number): JsonState | undefined {
    switch (f.s) {
      case M_START:
      case M_COMMA:
        if (isWs(c)) return this.space(f);
        if (c === QUOTE) return this.begin(node.key, c, f.with(M_IN_KEY), f.depth);
        return c === RBRACE && f.s === M_START ? this.finish(f.parent!) : undefined;
      case M_AFTER_KEY:
        if (isWs(c)) return this.space(f);
        return c === COLON ? f.with(M_COLON) : undefined;
      case M_COLON:
        if (isWs(c)) return this.space(f);
        return this.begin(node.values, c, f.with(M_IN_VALUE), f.depth);
      case M_AFTER_VALUE:
        if (isWs(c)) return this.space(f);
        if (c === COMMA) return f.with(M_COMMA);
        return c === RBRACE ? this.finish(f.parent!) : undefined;
    }
    return undefined;
  }

  private stepObject(f: Frame, node: ObjectNode, c: number): JsonState | undefined {
    const n = node.properties.length;
    switch (f.s) {
      case O_START:
        if (isWs(c)) return this.space(f);
        if (c === QUOTE && n > 0) return f.with(O_KEY, 0, 0);
        return c === RBRACE && !node.requiredFrom[0] ? this.finish(f.parent!) : undefined;
      case O_COMMA:
        if (isWs(c)) return this.space(f);
        return c === QUOTE ? f.with(O_KEY, f.a, 0) : undefined;
      case O_KEY: {
        const trie = node.keys[f.a];
        const next = trie.next(f.b, c);
        if (next < 0) return undefined;
        const property = trie.value(next); // the closing quote ends exactly one name
        return property >= 0 ? f.with(O_AFTER_KEY, property, 0) : f.with(O_KEY, f.a, next);
      }
      case O_AFTER_KEY:
        if (isWs(c)) return this.space(f);
        return c === COLON ? f.with(O_COLON) : undefined;
      case O_COLON:
        if (isWs(c)) return this.space(f);
        return this.begin(node.properties[f.a].value, c, f.with(O_IN_VALUE), f.depth);
      case O_AFTER_VALUE:
        if (isWs(c)) return this.space(f);
        if (c === COMMA) return f.a + 1 < n ? f.with(O_COMMA, f.a + 1) : undefined;
        return c === RBRACE && !node.requiredFrom[f.a + 1] ? this.finish(f.parent!) : undefined;
    }
    return undefined;
  }

  private stepArray(f: Frame, node: ArrayNode, c: number): JsonState | undefined {
    switch (f.s) {
      case A_START:
        if (isWs(c)) return this.space(f);
        if (c === RBRACKET) return node.minItems === 0 ? this.finish(f.parent!) : undefined;
        return node.maxItems > 0 ? this.begin(node.items, c, f.with(A_IN_ITEM), f.depth) : undefined;
      case A_AFTER_ITEM:
        if (isWs(c)) return this.space(f);
        if (c === COMMA) return f.a < node.maxItems ? f.with(A_COMMA) : undefined;
        return c === RBRACKET && f.a >= node.minItems ? this.finish(f.parent!) : undefined;
      case A_COMMA:
        if (isWs(c)) return this.space(f);
        return this.begin(node.items, c, f.with(A_IN_ITEM), f.depth);
    }
    return undefined;
  }

  private stepString(f: Frame, node: StringNode, c: number): JsonState | undefined {
    switch (f.s) {
      case S_PLAIN: {
        if (c === QUOTE) return f.a >= node.minLength ? this.finish(f.parent!) : undefined;
        if (c < 0x20 || f.a >= node.maxLength) return undefined; // raw controls are never allowed
        // A new character (or escape) starts: count it now, so maxLength is checked before its bytes.
        const cap = Number.isFinite(node.maxLength) ? node.maxLength : node.minLength;
        const a = Math.min(f.a + 1, cap);
        if (c === BACKSLASH) return f.with(S_ESC, a);
        if (c < 0x80) return a === f.a ? f : f.with(S_PLAIN, a);
        if (c >= 0xc2 && c <= 0xdf) return f.with(S_C1, a);
        if (c === 0xe0) return f.with(S_E0, a);
        if (c === 0xed) return f.with(S_ED, a);
        if (c >= 0xe1 && c <= 0xef) return f.with(S_C2, a);
        if (c === 0xf0) return f.with(S_F0, a);
        if (c >= 0xf1 && c <= 0xf3) return f.with(S_C3, a);
        if (c === 0xf4) return f.with(S_F4, a);
        return undefined; // 0x80..0xc1 (stray continuation, overlong lead), 0xf5..0xff
      }
      case S_C1:
        return isCont(c) ? f.with(S_PLAIN) : undefined;
      case S_C2:
        return isCont(c) ? f.with(S_C1) : undefined;
      case S_C3:
        return isCont(c) ? f.with(S_C2) : undefined;
      case S_E0: // E0 A0..BF: no overlong 3-byte forms
        return c >= 0xa0 && c <= 0xbf ? f.with(S_C1) : undefined;
      case S_ED: // ED 80..9F: no UTF-16 surrogates
        return c >= 0x80 && c <= 0x9f ? f.with(S_C1) : undefined;
      case S_F0: // F0 90..BF: no overlong 4-byte forms
        return c >= 0x90 && c <= 0xbf ? f.with(S_C2) : undefined;
      case S_F4: // F4 80..8F: nothing past U+10FFFF
        return c >= 0x80 && c <= 0x8f ? f.with(S_C2) : undefined;
      case S_ESC:
        if (c === 0x75) return f.with(S_U0); // u
        // " \ / b f n r t
        return c === QUOTE || c === BACKSLASH || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e ||
            c === 0x72 || c === 0x74
          ? f.with(S_PLAIN)
          : undefined;
      case S_U0:
        if (!isHex(c)) return undefined;
        return f.with(c === 0x64 || c === 0x44 ? S_U1D : S_U1);
      case S_U1D: // \uD?: 0-7 is a plain character, 8-B a high surrogate, C-F a lone low one (refused)
        if (c >= 0x30 && c <= 0x37) return f.with(S_U2);
        if (c === 0x38 || c === 0x39 || (c >= 0x61 && c <= 0x62) || (c >= 0x41 && c <= 0x42)) {
          return f.with(S_H2);
        }
        return undefined;
      case S_U1:
        return isHex(c) ? f.with(S_U2) : undefined;
      case S_U2:
        return isHex(c) ? f.with(S_U3) : undefined;
      case S_U3:
        return isHex(c) ? f.with(S_PLAIN) : undefined;
      case S_H2:
        return isHex(c) ? f.with(S_H3) : undefined;
      case S_H3:
        return isHex(c) ? f.with(S_HB) : undefined;
      case S_HB:
        return c === BACKSLASH ? f.with(S_HU) : undefined;
      case S_HU:
        return c === 0x75 ? f.with(S_L0) : undefined;
      case S_L0:
        return c === 0x64 || c === 0x44 ? f.with(S_L1) : undefined;
      case S_L1: // DC..DF
        return (c >= 0x63 && c <= 0x66) || (c >= 0x43 && c <= 0x46) ? f.with(S_L2) : undefined;
      case S_L2:
        return isHex(c) ? f.with(S_L3) : undefined;
      case S_L3:
        return isHex(c) ? f.with(S_PLAIN) : undefined;
    }
    return undefined;
  }

  private stepNumber(f: Frame, integer: boolean, c: number): JsonState | undefined {
    const digit = isDigit(c);
    const dot = c === 0x2e && !integer;
    const exp = (c === 0x65 || c === 0x45) && !integer;
    switch (f.s) {
      case N_MINUS:
        if (c === 0x30) return f.with(N_ZERO);
        return digit ? f.with(N_INT) : undefined;
      case N_ZERO:
        if (dot) return f.with(N_DOT);
        if (exp) return f.with(N_E);
        return this.handBack(f, c); // no leading zeros: a digit after "0" is refused by the parent too
      case N_INT:
        if (digit) return f;
        if (dot) return f.with(N_DOT);
        if (exp) return f.with(N_E);
        return this.handBack(f, c);
      case N_DOT:
        return digit ? f.with(N_FRAC) : undefined;
      case N_FRAC:
        if (digit) return f;
        if (exp) return f.with(N_E);
        return this.handBack(f, c);
      case N_E:
        if (c === 0x2b || c === 0x2d) return f.with(N_ESIGN);
        return digit ? f.with(N_EXP) : undefined;
      case N_ESIGN:
        return digit ? f.with(N_EXP) : undefined;
      case N_EXP:
        return digit ? f : this.handBack(f, c);
    }
    return undefined;
  }

  private stepLiterals(f: Frame, node: LiteralsNode, c: number): JsonState | undefined {
    const next = node.trie.next(f.b, c);
    if (next < 0) return this.handBack(f, c);
    // A finished literal that nothing extends is done now (no state that waits for the parent's byte).
    if (node.trie.value(next) >= 0 && !node.trie.hasChildren(next)) return this.finish(f.parent!);
    return f.with(0, 0, next);
  }
}

/** A number or literal frame that holds a whole value (so the next byte may belong to its parent). */
function endable(f: Frame): boolean {
  const node = f.node;
  if (node.kind === "number") return f.s === N_ZERO || f.s === N_INT || f.s === N_FRAC || f.s === N_EXP;
  if (node.kind === "literals") return node.trie.value(f.b) >= 0;
  return false;
}

function collect(out: Frame[], s: JsonState | undefined): void {
  if (s === undefined) return;
  if (s instanceof Frame) out.push(s);
  else out.push(...s.frames);
}

/** One state from the live threads: undefined when none, deduplicated by key when several. */
function merge(frames: Frame[]): JsonState | undefined {
  if (frames.length === 0) return undefined;
  if (frames.length === 1) return frames[0];
  const byKey = new Map<string, Frame>();
  for (const f of frames) if (!byKey.has(f.key())) byKey.set(f.key(), f);
  return byKey.size === 1 ? frames[0] : new Threads([...byKey.values()]);
}
