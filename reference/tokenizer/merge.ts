/**
 * The BPE merge loop on one pre-token, in two equivalent forms.
 *
 * Ids: 0 … 255 are the single-byte tokens; merge number `r` (its rank: 0 is learned first,
 * highest priority) turns the adjacent pair `(a, b)` into the new id `256 + r`. A merge only
 * uses ids that existed before it (`a, b < 256 + r`), so every pair a merge creates has a
 * higher rank than the merge that created it.
 */

/** Largest vocabulary the pair keys below can address: ids must be < 2^20. */
export const MAX_VOCAB = 1 << 20;

/** Map key of the adjacent pair `(a, b)`; both ids < {@link MAX_VOCAB}. */
export function pairKey(a: number, b: number): number {
  return a * MAX_VOCAB + b;
}

/** Pair key → rank of the merge of that pair. */
export type MergeRanks = ReadonlyMap<number, number>;

/**
 * Pieces at least this many bytes long use {@link mergeHeap}; shorter ones the classic loop,
 * which is faster on the short pieces of ordinary text but quadratic in the piece length
 * (a 100 kB run of one letter is a single pre-token).
 */
const LONG_PIECE = 128;

/**
 * The classic `bpe()` loop of GPT-2's `encoder.py`: find the adjacent pair with the lowest
 * merge rank, merge every occurrence of it left to right, repeat until no adjacent pair has
 * a merge. Works in place on `ids` and returns it, truncated.
 */
export function mergeClassic(ids: number[], ranks: MergeRanks): number[] {
  let len = ids.length;
  while (len > 1) {
    let best = Infinity;
    let at = -1;
    for (let i = 0; i + 1 < len; i++) {
      const r = ranks.get(pairKey(ids[i]!, ids[i + 1]!));
      if (r !== undefined && r < best) {
        best = r;
        at = i;
      }
    }
    if (at < 0) break;
    // Rank → pair is one-to-one, so (a, b) is the pair of rank `best` wherever it occurs.
    const a = ids[at]!;
    const b = ids[at + 1]!;
    const merged = 256 + best;
    let w = at; // nothing before `at` is an (a, b) pair
    for (let i = at; i < len; ) {
      if (i + 1 < len && ids[i] === a && ids[i + 1] === b) {
        ids[w++] = merged;
        i += 2;
      } else {
        ids[w++] = ids[i++]!;
      }
    }
    len = w;
  }
  ids.length = len;
  return ids;
}

/**
 * The same result as {@link mergeClassic} in O(n log n): a linked list of parts and a
 * min-heap of candidate merges keyed by (rank, position). Candidates of equal rank pop left
 * to right, which is the classic loop's left-to-right pass; a merge only creates pairs of
 * higher rank, so ranks pop in the classic loop's order. Stale candidates (a part merged
 * away or changed since) are skipped when popped.
 */
export function mergeHeap(ids: number[], ranks: MergeRanks): number[] {
  const n = ids.length;
  if (n < 2) return ids;
  const tok = Int32Array.from(ids);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  // Candidate = rank · 2^32 + position of the left part: exact in a double (rank < 2^20).
  const heap = new MinHeap();
  const push = (left: number): void => {
    const right = next[left]!;
    if (right < 0) return;
    const r = ranks.get(pairKey(tok[left]!, tok[right]!));
    if (r !== undefined) heap.push(r * 2 ** 32 + left);
  };
  for (let i = 0; i + 1 < n; i++) push(i);
  while (heap.size > 0) {
    const c = heap.pop();
    const r = Math.floor(c / 2 ** 32);
    const left = c - r * 2 ** 32;
    if (!alive[left]) continue;
    const right = next[left]!;
    if (right < 0 || ranks.get(pairKey(tok[left]!, tok[right]!)) !== r) continue;
    tok[left] = 256 + r;
    alive[right] = 0;
    const after = next[right]!;
    next[left] = after;
    if (after >= 0) prev[after] = left;
    if (prev[left]! >= 0) push(prev[left]!);
    push(left);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
  return out;
}

/** Binary min-heap of numbers. */
class MinHeap {
  private readonly a: number[] = [];
  get size(): number {
    return this.a.length;
  }
  push(x: number): void {
    const a = this.a;
    let i = a.length;
    a.push(x);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= x) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = x;
  }
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && a[r]! < a[l]! ? r : l;
        if (a[m]! >= last) break;
        a[i] = a[m]!;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}

/** Merges the byte ids of one pre-token, choosing the loop by length. */
export function mergeIds(ids: number[], ranks: MergeRanks): number[] {
  return ids.length >= LONG_PIECE ? mergeHeap(ids, ranks) : mergeClassic(ids, ranks);
}
