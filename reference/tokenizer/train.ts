/**
 * Learning byte-level BPE merges from a text (the minbpe / Hugging Face `BpeTrainer` method).
 *
 * 1. Pre-tokenize the text with the same pattern the tokenizer will use and count each
 *    distinct pre-token ("word"); merges never cross words, so only distinct words matter.
 * 2. Start every word as its UTF-8 bytes (ids 0 … 255 = byte values).
 * 3. Count adjacent pairs over all words, each occurrence weighted by its word's count
 *    (overlapping occurrences count: "aaa" holds (a, a) twice).
 * 4. Merge the most frequent pair into a new id `256 + r` in every word (left to right, as
 *    encoding will), update the counts of the pairs that changed, and repeat.
 *
 * Ties are broken by the smaller pair of ids, compared first id first: of `(97, 98)` and
 * `(97, 97)` with equal counts, `(97, 97)` wins. This is the rule of Hugging Face's trainer
 * (`Merge::cmp`, ascending pair on equal counts) and does not depend on hash or insertion
 * order. Pairs that occur at least once may be merged.
 *
 * Counts are updated incrementally: each pair knows the words it occurs in, a merge revisits
 * only those words, and a lazily invalidated max-heap finds the next pair.
 */
import { Tokenizer } from "./bpe.js";
import { utf8Encode } from "./bytes.js";
import { pairKey } from "./merge.js";
import { assertCovers, compilePattern, GPT2_PATTERN, pretokenize } from "./pretokenize.js";

/** Options of {@link trainBpe}. */
export interface TrainOptions {
  /** Pre-tokenization regex source (flags `gu`). Default: {@link GPT2_PATTERN}. */
  pattern?: string;
  /** Special tokens, given the ids after the merges; they count towards `vocabSize`. */
  specialTokens?: readonly string[];
}

/**
 * Learns merges from `text` until the vocabulary (256 bytes + merges + special tokens) has
 * `vocabSize` ids, and returns the tokenizer. Throws when `vocabSize` is too small for the
 * bytes and special tokens, and when the text runs out of pairs first (every word already one
 * token), saying how large a vocabulary the text allows.
 *
 * @example
 * // "aaabdaaabac": aa (count 4), then ab (tie with (aa, a) at 2, smaller ids win), then aa+ab.
 * trainBpe("aaabdaaabac", 259).mergeList(); // [[97, 97], [97, 98], [256, 257]]
 */
export function trainBpe(text: string, vocabSize: number, options: TrainOptions = {}): Tokenizer {
  const pattern = options.pattern ?? GPT2_PATTERN;
  const specials = [...(options.specialTokens ?? [])];
  const minimum = 256 + specials.length;
  if (!Number.isInteger(vocabSize) || vocabSize < minimum) {
    throw new Error(
      `trainBpe: vocabSize ${vocabSize} must be an integer ≥ ${minimum} (256 ` +
        `byte tokens${specials.length > 0 ? ` + ${specials.length} special tokens` : ""})`,
    );
  }
  const target = vocabSize - minimum;
  const regex = compilePattern(pattern);
  assertCovers(text, regex);

  // 1–2. distinct words as byte ids, with counts
  const wordCounts = new Map<string, number>();
  for (const w of pretokenize(text, regex)) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Array.from(utf8Encode(w)));
    counts.push(c);
  }

  // 3. pair counts, and where each pair occurs
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const pairOf = new Map<number, readonly [number, number]>();
  const addPairs = (w: number, sign: 1 | -1, delta: Map<number, number>): void => {
    const ids = words[w]!;
    for (let i = 0; i + 1 < ids.length; i++) {
      const key = pairKey(ids[i]!, ids[i + 1]!);
      delta.set(key, (delta.get(key) ?? 0) + sign * counts[w]!);
      if (sign > 0) {
        if (!pairOf.has(key)) pairOf.set(key, [ids[i]!, ids[i + 1]!]);
        let set = where.get(key);
        if (set === undefined) where.set(key, (set = new Set()));
        set.add(w);
      }
    }
  };
  const heap = new CandidateHeap();
  const apply = (delta: Map<number, number>): void => {
    for (const [key, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(key) ?? 0) + d;
      if (c > 0) {
        pairCount.set(key, c);
        const [a, b] = pairOf.get(key)!;
        heap.push({ count: c, a, b, key });
      } else {
        pairCount.delete(key);
        where.delete(key);
      }
    }
  };
  const initial = new Map<number, number>();
  for (let w = 0; w < words.length; w++) addPairs(w, 1, initial);
  apply(initial);

  // 4. merges
  const merges: Array<[number, number]> = [];
  while (merges.length < target) {
    const top = heap.pop();
    if (top === undefined) {
      const reached = minimum + merges.length;
      throw new Error(
        `trainBpe: the text allows only ${merges.length} merges (a vocabulary ` +
          `of ${reached}), but vocabSize ${vocabSize} needs ${target}: ` +
          `every pre-token of the text is already a single token. Use a longer or ` +
          `more varied text, or vocabSize ≤ ${reached}`,
      );
    }
    if (pairCount.get(top.key) !== top.count) continue; // stale: the count changed since this entry
    const { a, b, key } = top;
    const id = 256 + merges.length;
    merges.push([a, b]);
    const delta = new Map<number, number>();
    for (const w of where.get(key) ?? []) {
      const ids = words[w]!;
      addPairs(w, -1, delta);
      let k = 0;
      for (let i = 0; i < ids.length; ) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          ids[k++] = id;
          i += 2;
        } else ids[k++] = ids[i++]!;
      }
      ids.length = k;
      addPairs(w, 1, delta);
    }
    apply(delta);
    where.delete(key);
  }

  const specialTokens: Record<string, number> = {};
  specials.forEach((s, i) => {
    if (s in specialTokens)
      throw new Error(`trainBpe: special token ${JSON.stringify(s)} is listed twice`);
    specialTokens[s] = 256 + merges.length + i;
  });
  return new Tokenizer({ pattern, merges, specialTokens });
}

interface Candidate {
  count: number;
  a: number;
  b: number;
  key: number;
}

/** Max-heap of merge candidates: higher count first, then smaller (a, b). */
class CandidateHeap {
  private readonly h: Candidate[] = [];

  private static before(x: Candidate, y: Candidate): boolean {
    if (x.count !== y.count) return x.count > y.count;
    if (x.a !== y.a) return x.a < y.a;
    return x.b < y.b;
  }

  push(c: Candidate): void {
    const h = this.h;
    let i = h.length;
    h.push(c);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!CandidateHeap.before(c, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = c;
  }

  pop(): Candidate | undefined {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const m = r < h.length && CandidateHeap.before(h[r]!, h[l]!) ? r : l;
        if (!CandidateHeap.before(h[m]!, last)) break;
        h[i] = h[m]!;
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}
