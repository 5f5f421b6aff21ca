import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { getEncoding } from "js-tiktoken";
import { describe, expect, it } from "vitest";
import { bytesToUnicode } from "./bytes.js";
import { Tokenizer } from "./bpe.js";
import type { BpeModelJSON } from "./bpe.js";
import {
  GPT2_RANKS_PATH,
  base64ToBytes,
  loadGpt2Model,
  mergesFromRanks,
  parseTiktokenRanks,
} from "./gpt2.js";

const tok = Tokenizer.gpt2();
const tiktoken = getEncoding("gpt2");

describe("Tokenizer.gpt2()", () => {
  it("has GPT-2's 50,257 ids: 256 bytes, 50,000 merges, <|endoftext|> = 50256", () => {
    expect(tok.vocabSize).toBe(50257);
    expect(tok.mergeCount).toBe(50000);
    expect([...tok.specialTokens]).toEqual([["<|endoftext|>", 50256]]);
    expect(Tokenizer.gpt2()).toBe(tok); // one shared instance
  });

  it('encodes "Hello, world!" to [15496, 11, 995, 0] (the doc example)', () => {
    expect(tok.encode("Hello, world!")).toEqual([15496, 11, 995, 0]);
    expect(tok.decode([15496, 11, 995, 0])).toBe("Hello, world!");
    expect(tok.decodePieces([15496, 11, 995, 0])).toEqual(["Hello", ",", " world", "!"]);
  });

  it("numbers single bytes in bytes_to_unicode order, as GPT-2's vocab.json does", () => {
    const { byteToChar, order } = bytesToUnicode();
    for (let id = 0; id < 256; id++) {
      expect(Array.from(tok.tokenBytes(id))).toEqual([order[id]]);
      expect(tok.tokenString(id)).toBe(byteToChar[order[id]!]);
    }
    expect(tok.tokenString(995)).toBe("Ġworld");
    expect(tok.tokenString(50256)).toBe("<|endoftext|>");
  });

  it(
    "ships reference/data/gpt2-ranks.json equal to js-tiktoken's ranks/gpt2 " +
      "(the oracle is only a dev dependency)",
    () => {
      const oracle = createRequire(import.meta.url)("js-tiktoken/ranks/gpt2") as Record<
        string,
        unknown
      >;
      const shipped = JSON.parse(readFileSync(GPT2_RANKS_PATH, "utf8")) as Record<string, unknown>;
      expect(shipped).toEqual({ ...oracle });
    },
  );

  it("derives merges whose tokens are js-tiktoken's tokens, byte for byte", () => {
    const data = createRequire(import.meta.url)("js-tiktoken/ranks/gpt2") as { bpe_ranks: string };
    const ranks = parseTiktokenRanks(data.bpe_ranks);
    const same = (a: Uint8Array, b: Uint8Array | undefined): boolean =>
      b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
    const mismatches: string[] = [];
    let checkedAgainstTiktoken = 0;
    for (let id = 0; id < 50256; id++) {
      // a merged token's bytes are the concatenation of its merge's parts
      const mine = tok.tokenBytes(id);
      if (!same(mine, ranks[id])) mismatches.push(`id ${id}: differs from the ranks data`);
      // js-tiktoken's own decoding, where its text is exact (it is lossy for partial UTF-8)
      const text = tiktoken.decode([id]);
      if (!text.includes("\uFFFD")) {
        checkedAgainstTiktoken++;
        if (!same(mine, new TextEncoder().encode(text)))
          mismatches.push(`id ${id}: differs from js-tiktoken's decode`);
      }
    }
    expect(mismatches).toEqual([]);
    expect(checkedAgainstTiktoken).toBeGreaterThan(49000);
  });

  it("decodes a partial multi-byte character to U+FFFD without throwing", () => {
    const ids = tok.encode(" 😀"); // " <0xF0><0x9F><0x98>", "<0x80>"
    expect(tok.decodePieces(ids)).toEqual([" <0xF0><0x9F><0x98>", "<0x80>"]);
    expect(tok.decode(ids.slice(0, 1))).toBe(" \uFFFD");
    expect(tok.decode(ids.slice(1))).toBe("\uFFFD");
    expect(tok.decode(ids)).toBe(" 😀");
    expect(Array.from(tok.decodeBytes(ids))).toEqual([0x20, 0xf0, 0x9f, 0x98, 0x80]);
  });

  it("decodes an empty id list to the empty string and encodes the empty string to no ids", () => {
    expect(tok.encode("")).toEqual([]);
    expect(tok.decode([])).toBe("");
    expect(tok.decodePieces([])).toEqual([]);
  });

  it("accepts typed arrays of ids", () => {
    expect(tok.decode(Int32Array.from([15496, 11, 995, 0]))).toBe("Hello, world!");
  });
});

describe("special tokens (tiktoken's allowedSpecial / disallowedSpecial)", () => {
  const text = "a<|endoftext|>b";

  it("rejects a special token in the text by default, naming it and its index", () => {
    expect(() => tok.encode(text)).toThrow(
      'encode: the text contains the special token "<|endoftext|>" at index 1, which is not allowed; ' +
        'pass { allowedSpecial: ["<|endoftext|>"] } to encode it as id 50256, ' +
        "or { disallowedSpecial: [] } to encode it as ordinary text",
    );
    expect(() => tiktoken.encode(text)).toThrow(); // the oracle agrees that this is an error
  });

  it("encodes it as 50256 when allowed, like js-tiktoken", () => {
    const ids = tok.encode(text, { allowedSpecial: ["<|endoftext|>"] });
    expect(ids).toEqual(tiktoken.encode(text, ["<|endoftext|>"]));
    expect(ids).toContain(50256);
    expect(tok.encode(text, { allowedSpecial: "all" })).toEqual(ids);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.encode("<|endoftext|><|endoftext|>", { allowedSpecial: "all" })).toEqual([
      50256, 50256,
    ]);
  });

  it("encodes it as ordinary text when neither allowed nor disallowed, like js-tiktoken", () => {
    const ids = tok.encode(text, { disallowedSpecial: [] });
    expect(ids).toEqual(tiktoken.encode(text, [], []));
    expect(ids).not.toContain(50256);
    expect(tok.encodeOrdinary(text)).toEqual(ids);
    expect(tok.decode(ids)).toBe(text);
  });

  it("rejects names that are not special tokens", () => {
    expect(() => tok.encode("x", { allowedSpecial: ["<|im_start|>"] })).toThrow(
      'encode: allowedSpecial names "<|im_start|>", which is not a special ' +
        'token of this tokenizer (known: "<|endoftext|>")',
    );
  });
});

describe("bad input", () => {
  it("decode names an id outside the vocabulary and its position", () => {
    expect(() => tok.decode([15496, 11, 50257, 0])).toThrow(
      "decode: id 50257 at position 2 is outside the vocabulary (valid ids are 0 … 50256)",
    );
    expect(() => tok.decode([-1])).toThrow(
      "decode: id -1 at position 0 is outside the vocabulary (valid ids are 0 … 50256)",
    );
    expect(() => tok.decodePieces([0, 1e9])).toThrow(
      "decodePieces: id 1000000000 at position 1 is outside the vocabulary",
    );
  });

  it("decode names an id that is not an integer", () => {
    expect(() => tok.decode([1, 2.5])).toThrow("decode: id 2.5 at position 1 is not an integer");
    expect(() => tok.decode([Number.NaN])).toThrow(
      "decode: id NaN at position 0 is not an integer",
    );
  });

  it("encodes lone surrogates as U+FFFD by default, like js-tiktoken, and rejects them on request", () => {
    const s = "ok \uD800 and \uDC00!";
    expect(tok.encode(s)).toEqual(tiktoken.encode(s));
    expect(tok.decode(tok.encode(s))).toBe("ok \uFFFD and \uFFFD!");
    expect(() => tok.encode(s, { loneSurrogates: "error" })).toThrow(
      "encode: lone surrogate U+D800 at index 3; the text is not valid UTF-16 and has no UTF-8 encoding",
    );
    expect(tok.encode("😀", { loneSurrogates: "error" })).toEqual(tok.encode("😀"));
  });

  it("a pattern that does not tile the text is an error, not dropped text", () => {
    const t = new Tokenizer({ pattern: "[a-z]+", merges: [] });
    expect(t.encode("ab")).toEqual([97, 98]);
    expect(() => t.encode("ab cd")).toThrow(
      'encode: the pre-tokenization pattern "[a-z]+" leaves " c" at index 2 ' +
        "unmatched or matches the empty string; it must tile the text",
    );
    expect(() => t.encode("ab ")).toThrow(
      'encode: the pre-tokenization pattern "[a-z]+" leaves " " at index 2 unmatched; it must tile the text',
    );
  });
});

describe("toJSON / fromJSON", () => {
  it("round-trips GPT-2 (byte order and special token included)", () => {
    const json = JSON.stringify(tok);
    const back = Tokenizer.fromJSON(json);
    expect(back.vocabSize).toBe(50257);
    const text = "The quick brown fox — 素早い茶色の狐 — jumps over 13 lazy dogs.\n<|endoftext|>";
    expect(back.encode(text, { allowedSpecial: "all" })).toEqual(
      tok.encode(text, { allowedSpecial: "all" }),
    );
    expect(back.toJSON()).toEqual(tok.toJSON());
  });

  const valid = (): BpeModelJSON => ({
    format: "specformer-bpe",
    version: 1,
    pattern: "\\S+|\\s+",
    merges: [
      [104, 105],
      [256, 33],
    ],
    specialTokens: { "<eos>": 258 },
  });

  it("a small hand-written model encodes with its merges", () => {
    const t = Tokenizer.fromJSON(valid());
    expect(t.vocabSize).toBe(259);
    expect(t.encode("hi! hi")).toEqual([257, 32, 256]); // "hi!" → (h,i) → 256, (256,!) → 257
    expect(t.decode([257, 258])).toBe("hi!<eos>");
  });

  const bad: Array<[string, (j: BpeModelJSON) => unknown, string]> = [
    ["not JSON", () => "{merges:", "Tokenizer.fromJSON: not valid JSON:"],
    ["not an object", () => [1, 2], "Tokenizer.fromJSON: expected an object, got [1,2]"],
    [
      "wrong format",
      (j) => ({ ...j, format: "tiktoken" }),
      'Tokenizer.fromJSON: "format" is "tiktoken", expected "specformer-bpe"',
    ],
    [
      "wrong version",
      (j) => ({ ...j, version: 2 }),
      'Tokenizer.fromJSON: "version" is 2, this reader knows version 1',
    ],
    [
      "missing pattern",
      (j) => ({ ...j, pattern: undefined }),
      'Tokenizer.fromJSON: "pattern" is missing, expected a string',
    ],
    [
      "a merge that is not a pair",
      (j) => ({ ...j, merges: [[1, 2], [3]] }),
      "Tokenizer.fromJSON: merges[1] is [3], expected a pair of ids [a, b]",
    ],
    [
      "a merge using an id it does not precede",
      (j) => ({ ...j, merges: [[104, 256]] }),
      "BPE model: merge 0 = [104, 256] uses id 256, but merge 0 may only join ids 0 … 255 (it creates id 256)",
    ],
    [
      "a repeated merge",
      (j) => ({
        ...j,
        merges: [
          [1, 2],
          [1, 2],
        ],
        specialTokens: {},
      }),
      "BPE model: merges 0 and 1 both join [1, 2]",
    ],
    [
      "a special token id that is not right after the merges",
      (j) => ({ ...j, specialTokens: { "<eos>": 300 } }),
      'BPE model: special token "<eos>" has id 300; special tokens must use the ids 258 … 258 right after the 2 merges',
    ],
    [
      "byteIds that are not a permutation",
      (j) => ({ ...j, byteIds: Array.from({ length: 256 }, (_, b) => (b === 1 ? 0 : b)) }),
      "BPE model: bytes 0 and 1 both have id 0; byteIds must be a permutation of 0 … 255",
    ],
    [
      "byteIds of the wrong length",
      (j) => ({ ...j, byteIds: [0, 1] }),
      "BPE model: byteIds has 2 entries, not 256",
    ],
    [
      "an invalid pattern",
      (j) => ({ ...j, pattern: "[" }),
      'Tokenizer.fromJSON: the pattern "[" is not one of the known ' +
        "pre-tokenization patterns (gpt2, whitespace, lines); a tokenizer file " +
        "may not bring its own regular expression",
    ],
    [
      "a pattern with catastrophic backtracking (data, not code: never compiled)",
      (j) => ({ ...j, pattern: "(?:a+)+b|[\\s\\S]" }),
      'Tokenizer.fromJSON: the pattern "(?:a+)+b|[\\\\s\\\\S]" is not one of the known pre-tokenization patterns',
    ],
    [
      "a pattern that does not cover the text",
      (j) => ({ ...j, pattern: "[a-z]+" }),
      'Tokenizer.fromJSON: the pattern "[a-z]+" is not one of the known pre-tokenization patterns',
    ],
  ];
  for (const [what, make, message] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => Tokenizer.fromJSON(make(valid()))).toThrow(message);
    });
  }
});

describe("gpt2 data helpers", () => {
  it("base64ToBytes decodes padded base64 like Buffer, and names bad input", () => {
    for (const s of ["", "IQ==", "IHQ=", "aGVsbG8=", "/w==", "+/+/"]) {
      expect(Array.from(base64ToBytes(s))).toEqual(Array.from(Buffer.from(s, "base64")));
    }
    expect(() => base64ToBytes("abc")).toThrow(
      'base64 token "abc": length 3 is not a multiple of 4',
    );
    expect(() => base64ToBytes("ab!d")).toThrow(
      'base64 token "ab!d": invalid character at index 2',
    );
  });

  it("parseTiktokenRanks names a missing or repeated rank", () => {
    expect(() => parseTiktokenRanks("! 1 IQ==")).toThrow(
      "tiktoken ranks: rank 0 is missing (ranks must be 0 … 1)",
    );
    expect(() => parseTiktokenRanks("! 0 IQ== Ig==\n! 1 Iw==")).toThrow(
      "tiktoken ranks: rank 1 is defined twice",
    );
  });

  it("mergesFromRanks rejects a token no single merge can make", () => {
    const bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    // "abc" with no "ab" or "bc" token before it: BPE leaves 3 parts
    expect(() => mergesFromRanks([...bytes, Uint8Array.of(97, 98, 99)])).toThrow(
      "tiktoken ranks: the token of rank 256 (bytes 61 62 63) is 3 part(s) " +
        "[97, 98, 99] after the merges of lower rank, not the 2 a single merge needs",
    );
    expect(
      mergesFromRanks([...bytes, Uint8Array.of(97, 98), Uint8Array.of(97, 98, 99)]).merges,
    ).toEqual([
      [97, 98],
      [256, 99],
    ]);
  });
});

describe("large inputs (their speed is measured by bench/timings.ts: npm run bench -- --only timings)", () => {
  const corpus = readFileSync(new URL("../data/corpus.txt", import.meta.url), "utf8");

  it("loads GPT-2's ranks", () => {
    expect(new Tokenizer(loadGpt2Model()).vocabSize).toBe(50257);
  });

  it("encodes 100 kB of English with a cold cache as the warm tokenizer does", () => {
    const fresh = Tokenizer.fromJSON(tok.toJSON());
    const text = corpus.slice(0, 100_000);
    expect(fresh.encode(text)).toEqual(tok.encode(text));
  });

  it("encodes a 100,000-byte single pre-token and decodes it back", () => {
    const fresh = Tokenizer.fromJSON(tok.toJSON());
    const ids = fresh.encode("a".repeat(100_000));
    expect(fresh.decode(ids)).toBe("a".repeat(100_000));
  });
});
