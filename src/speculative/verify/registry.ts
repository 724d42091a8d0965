/**
 * Every verification rule by name: the one table the engine looks a rule up in.
 *
 * @module
 */

import { GREEDY_VERIFIER, MATCH_VERIFIER } from "./matching.ts";
import { SPECINFER_VERIFIER, SWOR_VERIFIER } from "./rejection.ts";
import type { Verifier, VerifierKind } from "./verifier.ts";

/** The verifiers, by kind. */
export const VERIFIERS: Readonly<Record<VerifierKind, Verifier>> = {
  greedy: GREEDY_VERIFIER,
  match: MATCH_VERIFIER,
  swor: SWOR_VERIFIER,
  specinfer: SPECINFER_VERIFIER,
};
