import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  assertCovers,
  checkKnownPattern,
  compilePattern,
  GPT2_PATTERN,
  KNOWN_PATTERNS,
  pretokenize,
} from "./pretokenize.js";

const gpt2 = compilePattern(GPT2_PATTERN);

describe("GPT2_PATTERN", () => {
  it("is the pattern js-tiktoken ships for GPT-2", () => {
    const data = createRequire(import.meta.url)("js-tiktoken/ranks/gpt2") as { pat_str: string };
    expect(GPT2_PATTERN).toBe(data.pat_str);
  });

  it('splits "Hello, world!" as in the seed document', () => {
    // seed 000_d98014b447741c17.txt, line 21: «Hello, world!» → [Hello, ",", " world", "!"]
    expect(pretokenize("Hello, world!", gpt2)).toEqual(["Hello", ",", " world", "!"]);
  });

  it("matches only lower-case contractions", () => {
    expect(pretokenize("it's they're I'm we'll", gpt2)).toEqual([
      "it",
      "'s",
      " they",
      "'re",
      " I",
      "'m",
      " we",
      "'ll",
    ]);
    expect(pretokenize("IT'S", gpt2)).toEqual(["IT", "'", "S"]);
    expect(pretokenize("it’s", gpt2)).toEqual(["it", "’", "s"]); // the typographic apostrophe is a symbol
  });

  it("leaves the last space of a whitespace run to the next word", () => {
    expect(pretokenize("a   b", gpt2)).toEqual(["a", "  ", " b"]);
    expect(pretokenize("a \n b", gpt2)).toEqual(["a", " \n", " b"]);
    expect(pretokenize("a\tb", gpt2)).toEqual(["a", "\t", "b"]); // only a space joins a word
    expect(pretokenize("\nfoo", gpt2)).toEqual(["\n", "foo"]);
    // the run minus its last character, even when that character cannot join the word
    expect(pretokenize("x\r\n\r\ny", gpt2)).toEqual(["x", "\r\n\r", "\n", "y"]);
  });

  it("keeps a trailing whitespace run whole", () => {
    expect(pretokenize("end.  \t ", gpt2)).toEqual(["end", ".", "  \t "]);
  });

  it("keeps letters, numbers and symbols apart", () => {
    expect(pretokenize("abc123def!!?", gpt2)).toEqual(["abc", "123", "def", "!!?"]);
    expect(pretokenize(" 3.14", gpt2)).toEqual([" 3", ".", "14"]);
  });

  it("uses ECMAScript's \\s: U+FEFF is whitespace, U+0085 is a symbol", () => {
    expect(pretokenize("a\uFEFFb", gpt2)).toEqual(["a", "\uFEFF", "b"]);
    expect(pretokenize("a \u0085b", gpt2)).toEqual(["a", " \u0085", "b"]);
  });

  it("puts a lone surrogate in the symbol alternative", () => {
    expect(pretokenize("a\uD800!b", gpt2)).toEqual(["a", "\uD800!", "b"]);
  });

  it("tiles any text", () => {
    expect(() => assertCovers("any\u0000text \uD800 😀\r\n", gpt2)).not.toThrow();
  });
});

describe("KNOWN_PATTERNS (the patterns a tokenizer file may use)", () => {
  it("each tiles every string, lone surrogates included, so encoding cannot drop or crash", () => {
    for (const pattern of KNOWN_PATTERNS.values()) {
      const re = compilePattern(pattern);
      fc.assert(
        fc.property(
          fc.string({
            unit: fc.constantFrom(
              "a",
              " ",
              "\n",
              "\r",
              "\t",
              "7",
              "é",
              "😀",
              "\uD800",
              "\uDC00",
              "\u0085",
              "\uFEFF",
              "!",
              "'s",
            ),
          }),
          (text) => {
            assertCovers(text, re);
          },
        ),
        { seed: 15, numRuns: 300 },
      );
    }
  });

  it("each runs in linear time on text that makes backtracking regexes explode", () => {
    const text = "a".repeat(20_000) + " ".repeat(20_000) + "x";
    for (const pattern of KNOWN_PATTERNS.values()) {
      const start = performance.now();
      assertCovers(text, compilePattern(pattern));
      expect(performance.now() - start).toBeLessThan(500);
    }
  });

  it("checkKnownPattern accepts exactly the set, naming the pattern otherwise", () => {
    expect(() => checkKnownPattern(GPT2_PATTERN)).not.toThrow();
    expect(() => checkKnownPattern("[^\\n]+|\\n")).not.toThrow();
    expect(() => checkKnownPattern(" ?\\p{L}+", "here")).toThrow(
      'here: the pattern " ?\\\\p{L}+" is not one of the known ' +
        "pre-tokenization patterns (gpt2, whitespace, lines); a tokenizer file " +
        "may not bring its own regular expression",
    );
  });
});

describe("compilePattern / assertCovers errors", () => {
  it("rejects an invalid regex, naming the pattern", () => {
    expect(() => compilePattern("(a")).toThrow(
      /^pre-tokenization pattern "\(a" is not a valid regular expression with the "u" flag/,
    );
  });

  it("rejects a pattern that matches the empty string", () => {
    expect(() => compilePattern("a|b*")).toThrow(
      'pre-tokenization pattern "a|b*" matches the empty string',
    );
  });

  it("names the first index a pattern leaves unmatched", () => {
    expect(() => assertCovers("ab cd", compilePattern("[a-z]+"))).toThrow(
      'pre-tokenization pattern "[a-z]+" does not match the text at index 2 (" cd"); such characters would be dropped',
    );
  });
});
