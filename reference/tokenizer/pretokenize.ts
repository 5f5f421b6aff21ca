/**
 * Pre-tokenization: the regex that cuts text into the pieces BPE works on. Merges never
 * cross a piece boundary, so the pattern decides, e.g., that " the" and "the" are different
 * tokens and that digits never merge with letters.
 */

/**
 * GPT-2's pre-tokenization pattern (`encoder.py` of openai/gpt-2; tiktoken's `gpt2` /
 * `r50k_base` `pat_str`):
 *
 * | alternative | takes |
 * |---|---|
 * | `'s\|'t\|'re\|'ve\|'m\|'ll\|'d` | English contractions, lower case only (`"IT'S"` → `IT`, `'`, `S`) |
 * | `` ?\p{L}+`` | a run of letters with at most one leading space |
 * | `` ?\p{N}+`` | a run of digits/numerals with at most one leading space |
 * | `` ?[^\s\p{L}\p{N}]+`` | a run of other symbols with at most one leading space |
 * | `\s+(?!\S)` | whitespace not followed by non-space: all of a trailing run; before a word, the
 * run minus its last character, which then joins the word as its leading space |
 * | `\s+` | the last character of a whitespace run before a non-space when it is not a space (a
 * space joins the word instead): `"\n"` in `"\nfoo"`, the last `"\n"` of `"\r\n\r\nfoo"` |
 *
 * Evaluated as an ECMAScript regex with the `u` flag (code points, Unicode properties), as
 * js-tiktoken does. ECMAScript's `\s` is not Unicode's `White_Space` (which Rust's `regex`,
 * used by Python tiktoken, follows): it includes U+FEFF and excludes U+0085 (NEL). Text with
 * those two characters may therefore pre-tokenize differently here and in Python tiktoken.
 * A lone surrogate is a code point in neither `\s`, `\p{L}` nor `\p{N}`, so it lands in the
 * symbol alternative.
 */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/**
 * The pre-tokenization patterns a tokenizer read from a file may use. A file is data, not code:
 * a regex of its choosing can take exponential time (`(?:a+)+b`) or leave text uncovered, so
 * {@link Tokenizer.fromJSON} accepts only these, each of which matches every string as a tiling
 * of pieces in time linear in its length:
 *
 * | name | pattern | pieces |
 * |---|---|---|
 * | `gpt2` | {@link GPT2_PATTERN} | GPT-2's (and tiktoken's r50k_base) |
 * | `whitespace` | `\S+\|\s+` | runs of non-space and runs of space |
 * | `lines` | `[^\n]+\|\n` | lines and their newlines |
 *
 * Code may still build a {@link Tokenizer} with any pattern (`trainBpe(text, V, { pattern })`);
 * only such a tokenizer cannot be saved beside a checkpoint.
 */
export const KNOWN_PATTERNS: ReadonlyMap<string, string> = new Map([
  ["gpt2", GPT2_PATTERN],
  ["whitespace", "\\S+|\\s+"],
  ["lines", "[^\\n]+|\\n"],
]);

/**
 * Throws unless `pattern` is one of {@link KNOWN_PATTERNS}, naming the pattern and the set.
 * @param where  prefixes the message (`Tokenizer.fromJSON`).
 */
export function checkKnownPattern(pattern: unknown, where = "pre-tokenization pattern"): void {
  for (const known of KNOWN_PATTERNS.values()) if (pattern === known) return;
  const shown =
    typeof pattern === "string"
      ? pattern.length > 80
        ? `${JSON.stringify(pattern.slice(0, 77))}...`
        : JSON.stringify(pattern)
      : String(pattern);
  throw new Error(
    `${where}: the pattern ${shown} is not one of the known ` +
      `pre-tokenization patterns (${[...KNOWN_PATTERNS.keys()].join(", ")}); a ` +
      `tokenizer file may not bring its own regular expression`,
  );
}

/**
 * Compiles a pre-tokenization pattern with the flags it is always used with (`g` to scan,
 * `u` for code points and `\p{…}`). Throws a message naming the pattern when it is not a
 * valid regex or can match the empty string (which would make pre-tokenization loop or drop
 * text).
 */
export function compilePattern(pattern: string): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(pattern, "gu");
  } catch (e) {
    throw new Error(
      `pre-tokenization pattern ${JSON.stringify(pattern)} is not a valid ` +
        `regular expression with the "u" flag: ${(e as Error).message}`,
    );
  }
  if (new RegExp(`^(?:${pattern})$`, "u").test("")) {
    throw new Error(
      `pre-tokenization pattern ${JSON.stringify(pattern)} matches the empty ` +
        `string; every alternative must consume at least one character`,
    );
  }
  return re;
}

/**
 * Splits `text` into pre-tokens with `pattern` (a compiled `gu` regex). Characters the
 * pattern does not match are dropped — with GPT-2's pattern, which matches everything, none
 * are; {@link assertCovers} checks that for a custom pattern.
 *
 * @example
 * pretokenize("Hello, world!", compilePattern(GPT2_PATTERN)); // ["Hello", ",", " world", "!"]
 */
export function pretokenize(text: string, pattern: RegExp): string[] {
  const out: string[] = [];
  pattern.lastIndex = 0;
  for (const m of text.matchAll(pattern)) out.push(m[0]);
  return out;
}

/**
 * Checks that the pre-tokens of `text` under `pattern` tile it exactly, so that no text is
 * silently dropped. Throws naming the first uncovered index.
 */
export function assertCovers(text: string, pattern: RegExp): void {
  let at = 0;
  pattern.lastIndex = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index !== at) break;
    at += m[0].length;
  }
  if (at !== text.length) {
    throw new Error(
      `pre-tokenization pattern ${JSON.stringify(pattern.source)} does not ` +
        `match the text at index ${at} ` +
        `(${JSON.stringify(text.slice(at, at + 10))}); such characters would be dropped`,
    );
  }
}
