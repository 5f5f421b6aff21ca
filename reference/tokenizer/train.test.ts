import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Tokenizer } from "./bpe.js";
import { compilePattern, GPT2_PATTERN, pretokenize } from "./pretokenize.js";
import { trainBpe } from "./train.js";

const SEED = 0x7a1e;
const corpus = readFileSync(new URL("../data/corpus.txt", import.meta.url), "utf8");

/**
 * The textbook trainer, written for clarity: recount every pair of every word after each
 * merge. Same rules as trainBpe (weighted counts, overlapping occurrences count, ties to the
 * smaller pair), none of its bookkeeping.
 */
function naiveTrain(text: string, merges: number): Array<[number, number]> {
  const counts = new Map<string, number>();
  for (const w of pretokenize(text, compilePattern(GPT2_PATTERN)))
    counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, c]) => ({ ids: Array.from(new TextEncoder().encode(w)), c }));
  const out: Array<[number, number]> = [];
  while (out.length < merges) {
    const pairs = new Map<string, number>();
    for (const { ids, c } of words) {
      for (let i = 0; i + 1 < ids.length; i++) {
        const k = `${ids[i]},${ids[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + c);
      }
    }
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(",").map(Number) as [number, number];
      if (
        c > bestCount ||
        (c === bestCount && best !== undefined && (a < best[0] || (a === best[0] && b < best[1])))
      ) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const id = 256 + out.length;
    out.push(best);
    for (const w of words) {
      const next: number[] = [];
      for (let i = 0; i < w.ids.length; i++) {
        if (i + 1 < w.ids.length && w.ids[i] === best[0] && w.ids[i + 1] === best[1]) {
          next.push(id);
          i++;
        } else next.push(w.ids[i]!);
      }
      w.ids = next;
    }
  }
  return out;
}

describe("trainBpe", () => {
  it('learns the hand-derived merges of "aaabdaaabac" (the doc example)', () => {
    // Bytes a=97 b=98 c=99 d=100. Pair counts: (a,a) 4 (overlapping: "aaa" twice), (a,b) 2,
    // (b,d) (d,a) (b,a) (a,c) 1 → merge 0: (97,97) → 256 "aa".
    // Words become [aa,a,b,d,aa,a,b,a,c]: (aa,a) 2 and (a,b) 2 tie; the smaller pair
    // (97,98) < (256,97) wins → merge 1: (97,98) → 257 "ab".
    // Now [aa,ab,d,aa,ab,a,c]: (aa,ab) 2 → merge 2: (256,257) → 258 "aaab".
    // Now [aaab,d,aaab,a,c]: four pairs of count 1; smallest is (97,99) → merge 3: 259 "ac".
    const t = trainBpe("aaabdaaabac", 260);
    expect(t.mergeList()).toEqual([
      [97, 97],
      [97, 98],
      [256, 257],
      [97, 99],
    ]);
    expect(trainBpe("aaabdaaabac", 259).mergeList()).toEqual([
      [97, 97],
      [97, 98],
      [256, 257],
    ]);
    expect(t.encode("aaabdaaabac")).toEqual([258, 100, 258, 259]);
    expect(t.vocabSize).toBe(260);
  });

  it("counts words across the text and merges inside words only", () => {
    // " lo" ×3, " low" ×2 (GPT-2 pattern keeps the leading space): ( ,l) 5 and (l,o) 5 tie →
    // (32,108) first; then ( l,o) 5 → 257 " lo"; then ( lo,w) 2 → 258 " low".
    const t = trainBpe(" lo lo lo low low", 256 + 3);
    expect(t.mergeList()).toEqual([
      [32, 108],
      [256, 111],
      [257, 119],
    ]);
    expect(t.encode(" low lo")).toEqual([258, 257]);
  });

  it("equals the textbook recount-everything trainer on random texts", () => {
    const word = fc.constantFrom(
      "the",
      " the",
      " a",
      "an",
      " and",
      "aaa",
      " ab",
      "ba",
      "\n",
      "  ",
      "it's",
      "1",
      "22",
      "é",
      "😀",
      ".",
    );
    fc.assert(
      fc.property(
        fc.array(word, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 40 }),
        (words, wanted) => {
          const text = words.join("");
          const reference = naiveTrain(text, wanted);
          if (reference.length < wanted) {
            expect(() => trainBpe(text, 256 + wanted)).toThrow(
              `trainBpe: the text allows only ${reference.length} merges`,
            );
          } else {
            expect(trainBpe(text, 256 + wanted).mergeList()).toEqual(reference);
          }
        },
      ),
      { seed: SEED, numRuns: 150 },
    );
  });

  it("equals the textbook trainer on 10 kB of the corpus (100 merges)", () => {
    const text = corpus.slice(0, 10_000);
    expect(trainBpe(text, 356).mergeList()).toEqual(naiveTrain(text, 100));
  });

  it("reaches exactly the requested vocabulary size on the corpus", () => {
    for (const size of [256, 257, 300, 1000]) {
      const t = trainBpe(corpus.slice(0, 60_000), size);
      expect(t.vocabSize).toBe(size);
      expect(t.mergeCount).toBe(size - 256);
    }
  });

  it("round-trips any string after training on the corpus", () => {
    const t = trainBpe(corpus.slice(0, 60_000), 512);
    expect(t.decode(t.encode(corpus))).toBe(corpus);
    expect(t.encode(corpus).length).toBeLessThan(new TextEncoder().encode(corpus).length / 2);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "grapheme", maxLength: 30 }),
          fc.string({ unit: "binary", maxLength: 30 }),
        ),
        (s) => {
          expect(t.decode(t.encode(s))).toBe(s);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("says how large a vocabulary the text allows when it cannot reach vocabSize", () => {
    // "ab ab": words "ab" and " ab"; merges (a,b)=2 → [ab],[ ,ab] → ( ,ab) 1 → done: 2 merges.
    expect(trainBpe("ab ab", 258).vocabSize).toBe(258);
    expect(() => trainBpe("ab ab", 259)).toThrow(
      "trainBpe: the text allows only 2 merges (a vocabulary of 258), but " +
        "vocabSize 259 needs 3: every pre-token of the text is already a single token. " +
        "Use a longer or more varied text, or vocabSize ≤ 258",
    );
    expect(() => trainBpe("", 257)).toThrow(
      "trainBpe: the text allows only 0 merges (a vocabulary of 256)",
    );
  });

  it("rejects a vocabSize below the byte and special tokens, or not an integer", () => {
    expect(() => trainBpe("abc", 255)).toThrow(
      "trainBpe: vocabSize 255 must be an integer ≥ 256 (256 byte tokens)",
    );
    expect(() => trainBpe("abc", 256.5)).toThrow(
      "trainBpe: vocabSize 256.5 must be an integer ≥ 256",
    );
    expect(() => trainBpe("abc", 256, { specialTokens: ["<eos>"] })).toThrow(
      "trainBpe: vocabSize 256 must be an integer ≥ 257 (256 byte tokens + 1 special tokens)",
    );
  });

  it("places special tokens after the merges and counts them in vocabSize", () => {
    const t = trainBpe("aaabdaaabac", 261, { specialTokens: ["<eos>"] });
    expect(t.mergeCount).toBe(4);
    expect([...t.specialTokens]).toEqual([["<eos>", 260]]);
    expect(t.encode("ac<eos>", { allowedSpecial: "all" })).toEqual([259, 260]);
    expect(() => trainBpe("aaab", 258, { specialTokens: ["<x>", "<x>"] })).toThrow(
      'trainBpe: special token "<x>" is listed twice',
    );
  });

  it("uses a custom pattern for training and encoding", () => {
    // Whole lines as words, so merges can cross the space: "ab ab" ×2 → (a,b) 4 → 256;
    // [ab, ␣, ab]: (256,32) and (32,256) tie at 2, the smaller (32,256) → 257 " ab";
    // [ab, " ab"] → (256,257) → 258.
    const t = trainBpe("ab ab\nab ab\n", 259, { pattern: "[^\\n]+|\\n" });
    expect(t.pattern).toBe("[^\\n]+|\\n");
    expect(t.mergeList()).toEqual([
      [97, 98],
      [32, 256],
      [256, 257],
    ]);
    expect(t.encode("ab ab")).toEqual([258]);
    expect(() => trainBpe("ab", 300, { pattern: "a" })).toThrow(
      'pre-tokenization pattern "a" does not match the text at index 1',
    );
  });

  it("serialises to JSON and back", () => {
    const t = trainBpe(corpus.slice(0, 20_000), 400, { specialTokens: ["<|endoftext|>"] });
    const back = Tokenizer.fromJSON(JSON.stringify(t));
    expect(back.toJSON()).toEqual(t.toJSON());
    const sample = corpus.slice(20_000, 25_000) + "<|endoftext|>";
    expect(back.encode(sample, { allowedSpecial: "all" })).toEqual(
      t.encode(sample, { allowedSpecial: "all" }),
    );
    expect(t.toJSON().byteIds).toBeUndefined(); // identity byte order is left implicit
  });
});
