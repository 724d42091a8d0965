/**
 * Grammar-constrained decoding for OpenAI's `response_format` (`json_object`, `json_schema`):
 *
 *   spec --compile.ts--> JsonMatcher (json_matcher.ts: a byte pushdown automaton over nodes.ts,
 *                        JSON Schema subset in json_schema.ts)
 *   vocabulary --token_trie.ts--> TokenTrie (once per vocabulary)
 *   matcher + trie --token_mask.ts--> TokenMasker (allowed ids per state, memoized)
 *   --json_processor.ts--> LogitsProcessor (initial / advance / apply)
 *
 * @module
 */

export { GrammarError } from "./grammar_error.ts";
export { compileGrammar } from "./compile.ts";
export { GRAMMAR_DEFAULTS, JsonMatcher, type JsonState, type MatcherOptions } from "./json_matcher.ts";
export { compileJsonSchema } from "./json_schema.ts";
export { allows, type ByteMatcher, type TokenMask, TokenMasker } from "./token_mask.ts";
export { TokenTrie } from "./token_trie.ts";
export {
  type GrammarProcessor,
  grammarProcessor,
  type GrammarProcessorOptions,
  type GrammarState,
  vocabularyOf,
} from "./json_processor.ts";
