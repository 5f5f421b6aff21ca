import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Tokenizer } from "./bpe.js";
import { mergeClassic, mergeHeap, pairKey } from "./merge.js";
import { trainBpe } from "./train.js";

const SEED = 0x3e76e;

function ranksOf(tok: Tokenizer): Map<number, number> {
  return new Map(tok.mergeList().map(([a, b], r) => [pairKey(a, b), r]));
}

/** Byte ids of `bytes` under a tokenizer (single-byte tokens: ids from the model's byte map). */
function byteIdsOf(tok: Tokenizer): Int32Array {
  const ids = new Int32Array(256);
  for (let id = 0; id < 256; id++) ids[tok.tokenBytes(id)[0]!] = id;
  return ids;
}

describe("mergeHeap equals the classic bpe() loop", () => {
  const corpus = readFileSync(new URL("../data/corpus.txt", import.meta.url), "utf8");
  const small = trainBpe(corpus.slice(0, 20_000), 256 + 300);
  const cases: Array<[string, Tokenizer]> = [
    ["GPT-2", Tokenizer.gpt2()],
    ["a 300-merge tokenizer trained on the corpus", small],
  ];
  for (const [name, tok] of cases) {
    it(`on random byte strings with ${name}`, () => {
      const ranks = ranksOf(tok);
      const byteIds = byteIdsOf(tok);
      // Letters, repeats and spaces, so that many merges apply and equal-rank pairs overlap.
      const byte = fc.constantFrom(
        ...Array.from(new TextEncoder().encode(" aaabeehinorstt\n\n.'1é😀")),
      );
      fc.assert(
        fc.property(fc.array(byte, { maxLength: 300 }), (bytes) => {
          const ids = bytes.map((b) => byteIds[b]!);
          expect(mergeHeap([...ids], ranks)).toEqual(mergeClassic([...ids], ranks));
        }),
        { seed: SEED, numRuns: 300 },
      );
    });
  }

  it("handles the empty and one-byte pieces", () => {
    const ranks = ranksOf(Tokenizer.gpt2());
    expect(mergeHeap([], ranks)).toEqual([]);
    expect(mergeClassic([], ranks)).toEqual([]);
    expect(mergeHeap([64], ranks)).toEqual([64]);
    expect(mergeClassic([64], ranks)).toEqual([64]);
  });

  it("merges overlapping equal pairs left to right", () => {
    // merges: (0,0) → 256, (256,0) → 257: "0000 0" = [0,0,0,0,0] → [256,256,0] → [256,257]
    const ranks = new Map([
      [pairKey(0, 0), 0],
      [pairKey(256, 0), 1],
    ]);
    expect(mergeClassic([0, 0, 0, 0, 0], ranks)).toEqual([256, 257]);
    expect(mergeHeap([0, 0, 0, 0, 0], ranks)).toEqual([256, 257]);
  });
});
