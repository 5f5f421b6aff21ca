/**
 * GPT-2's vocabulary, read from `reference/data/gpt2-ranks.json` (js-tiktoken's
 * `js-tiktoken/ranks/gpt2`, shipped as data with its licence: see reference/data/README.md),
 * turned into the byte ids and merge list our {@link BpeModel} uses. js-tiktoken itself is only
 * the test oracle (a dev dependency).
 *
 * The file format (js-tiktoken's compact form of tiktoken's `.tiktoken` files): a JSON object
 * with `pat_str`, `special_tokens` and `bpe_ranks`, a string of lines
 * `"<marker> <offset> <tok_0> <tok_1> …"` where each `tok_i` is a token's bytes in base64 and
 * its rank is `offset + i`. For GPT-2 there is one line, ranks 0 … 50255. In tiktoken the rank
 * of a token is also its id.
 *
 * From token ranks to merges. Ranks 0 … 255 are the 256 single bytes (in GPT-2's
 * `bytes_to_unicode` order, not by byte value). Every other token was created by one merge,
 * learned in rank order, so the merge that creates the token of rank `r` has priority
 * `r − 256` and produces id `r`. Which pair? The one BPE itself leaves: apply the merges of
 * all lower ranks to the token's bytes; the result must be exactly two tokens `(a, b)`, and
 * that is the merge. (This is how minbpe's `recover_merges` reads tiktoken ranks.) Each
 * token is checked: if BPE with the earlier merges does not leave exactly two parts, loading
 * fails with the rank and bytes of the token.
 */
import { readFileSync } from "node:fs";
import { packageFile } from "../../autodiff/assets.js";
import { mergeClassic, pairKey } from "./merge.js";
import { GPT2_PATTERN } from "./pretokenize.js";
import type { BpeModel } from "./bpe.js";

/** The shape of a js-tiktoken ranks module. */
export interface TiktokenRanks {
  pat_str: string;
  special_tokens: Record<string, number>;
  bpe_ranks: string;
  explicit_n_vocab?: number;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUE = new Int16Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) BASE64_VALUE[BASE64.charCodeAt(i)] = i;

/** Decodes standard padded base64; throws naming the offending string. */
export function base64ToBytes(s: string): Uint8Array {
  if (s.length % 4 !== 0)
    throw new Error(`base64 token ${JSON.stringify(s)}: length ${s.length} is not a multiple of 4`);
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let k = 0;
  for (let i = 0; i < s.length; i += 4) {
    let v = 0;
    for (let j = 0; j < 4; j++) {
      const c = s.charCodeAt(i + j);
      const d = c === 61 && i + j >= s.length - pad ? 0 : c < 128 ? BASE64_VALUE[c]! : -1;
      if (d < 0)
        throw new Error(`base64 token ${JSON.stringify(s)}: invalid character at index ${i + j}`);
      v = (v << 6) | d;
    }
    // 4 sextets → 3 bytes (the last 1–2 are padding when `=` was present)
    if (k < out.length) out[k++] = (v >> 16) & 0xff;
    if (k < out.length) out[k++] = (v >> 8) & 0xff;
    if (k < out.length) out[k++] = v & 0xff;
  }
  return out;
}

/**
 * Token bytes by rank from a js-tiktoken `bpe_ranks` string. Throws when a rank is defined
 * twice or missing (ranks must be exactly 0 … N−1).
 */
export function parseTiktokenRanks(bpeRanks: string): Uint8Array[] {
  const tokens: Uint8Array[] = [];
  for (const [lineNo, line] of bpeRanks.split("\n").entries()) {
    if (line === "") continue;
    const fields = line.split(" ");
    const offset = Number(fields[1]);
    if (!Number.isInteger(offset) || offset < 0) {
      throw new Error(
        `tiktoken ranks, line ${lineNo + 1}: offset ${JSON.stringify(fields[1])} is not a non-negative integer`,
      );
    }
    for (let i = 2; i < fields.length; i++) {
      const rank = offset + i - 2;
      if (tokens[rank] !== undefined)
        throw new Error(`tiktoken ranks: rank ${rank} is defined twice`);
      tokens[rank] = base64ToBytes(fields[i]!);
    }
  }
  for (let r = 0; r < tokens.length; r++) {
    if (tokens[r] === undefined)
      throw new Error(
        `tiktoken ranks: rank ${r} is missing (ranks must be 0 … ${tokens.length - 1})`,
      );
  }
  return tokens;
}

/**
 * Byte ids and merges from tiktoken-style token ranks (see the module comment). `tokens[r]`
 * holds the bytes of the token of rank `r`.
 */
export function mergesFromRanks(tokens: readonly Uint8Array[]): {
  byteIds: number[];
  merges: Array<[number, number]>;
} {
  const hex = (b: Uint8Array): string =>
    Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
  if (tokens.length < 256)
    throw new Error(`tiktoken ranks: ${tokens.length} tokens, fewer than the 256 single bytes`);
  const byteIds = new Array<number>(256).fill(-1);
  for (let r = 0; r < 256; r++) {
    const t = tokens[r]!;
    if (t.length !== 1)
      throw new Error(
        `tiktoken ranks: rank ${r} is ${t.length} bytes (${hex(t)}); ranks 0 … 255 must be the single bytes`,
      );
    if (byteIds[t[0]!] !== -1)
      throw new Error(`tiktoken ranks: byte 0x${hex(t)} has ranks ${byteIds[t[0]!]} and ${r}`);
    byteIds[t[0]!] = r;
  }
  const ranks = new Map<number, number>();
  const merges: Array<[number, number]> = [];
  for (let r = 256; r < tokens.length; r++) {
    const t = tokens[r]!;
    const parts = mergeClassic(
      Array.from(t, (b) => byteIds[b]!),
      ranks,
    );
    if (parts.length !== 2) {
      throw new Error(
        `tiktoken ranks: the token of rank ${r} (bytes ${hex(t)}) is ` +
          `${parts.length} part(s) [${parts.join(", ")}] after the merges of lower ` +
          `rank, not the 2 a single merge needs`,
      );
    }
    const [a, b] = parts as [number, number];
    ranks.set(pairKey(a, b), r - 256);
    merges.push([a, b]);
  }
  return { byteIds, merges };
}

/** The bundled GPT-2 ranks file (js-tiktoken's `ranks/gpt2` as JSON). */
export const GPT2_RANKS_PATH = packageFile("reference", "data", "gpt2-ranks.json");

/**
 * Reads the bundled GPT-2 ranks (synchronously, on first use) and returns them as a
 * {@link BpeModel}: 256 byte tokens, 50,000 merges, `<|endoftext|>` = 50256.
 */
export function loadGpt2Model(): BpeModel {
  const data = JSON.parse(readFileSync(GPT2_RANKS_PATH, "utf8")) as Partial<TiktokenRanks> | null;
  if (
    data === null ||
    typeof data.bpe_ranks !== "string" ||
    typeof data.pat_str !== "string" ||
    typeof data.special_tokens !== "object"
  ) {
    throw new Error(
      `${GPT2_RANKS_PATH} does not have the expected {pat_str, special_tokens, bpe_ranks} shape`,
    );
  }
  if (data.pat_str !== GPT2_PATTERN) {
    throw new Error(
      `the GPT-2 pattern of ${GPT2_RANKS_PATH}, ` +
        `${JSON.stringify(data.pat_str)}, differs from GPT2_PATTERN ` +
        `${JSON.stringify(GPT2_PATTERN)}`,
    );
  }
  const { byteIds, merges } = mergesFromRanks(parseTiktokenRanks(data.bpe_ranks));
  return { pattern: GPT2_PATTERN, byteIds, merges, specialTokens: { ...data.special_tokens } };
}
