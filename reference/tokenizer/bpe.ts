/**
 * Byte-level BPE, the tokenizer of GPT-2.
 *
 * Algorithm (Sennrich et al. 2016 on bytes, as in Radford et al. 2019):
 * 1. Split the text at special tokens that are allowed (they become their own ids).
 * 2. Cut each remaining segment into pre-tokens with a regex ({@link GPT2_PATTERN}); merges
 *    never cross a pre-token boundary.
 * 3. Encode each pre-token to UTF-8 and start from one token per byte (ids 0 … 255).
 * 4. Repeatedly take the adjacent pair whose merge has the lowest rank and merge all its
 *    occurrences, left to right; stop when no adjacent pair has a merge. Merge `r` produces
 *    id `256 + r`. Results are cached per pre-token.
 * 5. Decoding concatenates the tokens' bytes and decodes UTF-8; bytes that do not form valid
 *    UTF-8 (ids cut in the middle of a character) become U+FFFD, one per maximal ill-formed
 *    subsequence, as tiktoken and Hugging Face (`errors="replace"`) do. It never throws on
 *    valid ids.
 *
 * GPT-2's 50,257 tokens (256 bytes, 50,000 merges, `<|endoftext|>`) come from js-tiktoken's
 * ranks; see `gpt2.ts` for how merges are derived from token ranks.
 *
 * Lone surrogates in the input (a JS string need not be valid UTF-16) are encoded as U+FFFD
 * like `TextEncoder` does, or rejected with `{ loneSurrogates: "error" }`.
 */
import {
  bytesToDisplay,
  bytesToGpt2String,
  firstLoneSurrogate,
  utf8Decode,
  utf8Encode,
} from "./bytes.js";
import { loadGpt2Model } from "./gpt2.js";
import { MAX_VOCAB, mergeIds, pairKey } from "./merge.js";
import { checkKnownPattern, compilePattern, GPT2_PATTERN } from "./pretokenize.js";

/** Everything that defines a byte-level BPE tokenizer. */
export interface BpeModel {
  /** Pre-tokenization regex source, compiled with flags `gu`. */
  pattern: string;
  /**
   * `byteIds[b]` is the id of the single-byte token for byte value `b`; a permutation of
   * 0 … 255. Default: the identity. (GPT-2 numbers bytes in `bytes_to_unicode` order.)
   */
  byteIds?: readonly number[];
  /** Merge `r` joins the adjacent ids `merges[r] = [a, b]` into id `256 + r`. */
  merges: ReadonlyArray<readonly [number, number]>;
  /** Special token text → id; ids must be exactly `256 + merges.length …`, one each. */
  specialTokens?: Readonly<Record<string, number>>;
}

/** {@link BpeModel} as stored by {@link Tokenizer.toJSON}. */
export interface BpeModelJSON {
  format: "specformer-bpe";
  version: 1;
  pattern: string;
  byteIds?: number[];
  merges: Array<[number, number]>;
  specialTokens: Record<string, number>;
}

/** Which special tokens {@link Tokenizer.encode} may produce or must reject (tiktoken semantics). */
export interface EncodeOptions {
  /** Special tokens encoded as their id when they occur in the text. Default: none. */
  allowedSpecial?: "all" | Iterable<string>;
  /**
   * Special tokens whose occurrence in the text is an error. Default `"all"`: every special
   * token that is not allowed. Special tokens in neither set are encoded as ordinary text.
   */
  disallowedSpecial?: "all" | Iterable<string>;
  /** Lone surrogates: encode as U+FFFD (`"replace"`, default) or throw (`"error"`). */
  loneSurrogates?: "replace" | "error";
}

/** Pre-tokens cached per tokenizer; the cache is cleared when it reaches this many entries. */
const CACHE_LIMIT = 1 << 16;

let gpt2Singleton: Tokenizer | undefined;

/**
 * A byte-level BPE tokenizer.
 *
 * @example
 * const tok = Tokenizer.gpt2();
 * tok.encode("Hello, world!"); // [15496, 11, 995, 0]
 * tok.decode([15496, 11, 995, 0]); // "Hello, world!"
 */
export class Tokenizer {
  /** Number of ids: 256 bytes + merges + special tokens. */
  readonly vocabSize: number;
  /** Pre-tokenization regex source. */
  readonly pattern: string;
  /** Special token text → id. */
  readonly specialTokens: ReadonlyMap<string, number>;

  private readonly regex: RegExp;
  private readonly byteIds: Int32Array;
  private readonly merges: ReadonlyArray<readonly [number, number]>;
  private readonly ranks = new Map<number, number>();
  private readonly bytesOf: Uint8Array[];
  private readonly specialOf: ReadonlyMap<number, string>;
  private readonly cache = new Map<string, readonly number[]>();

  /** Builds a tokenizer from its model; throws naming the first inconsistency. */
  constructor(model: BpeModel) {
    this.pattern = model.pattern;
    this.regex = compilePattern(model.pattern);
    this.byteIds = checkByteIds(model.byteIds);
    const M = model.merges.length;
    const specials = Object.entries(model.specialTokens ?? {});
    this.vocabSize = 256 + M + specials.length;
    if (this.vocabSize > MAX_VOCAB) {
      throw new Error(
        `BPE model: vocabulary of ${this.vocabSize} ids exceeds the supported ${MAX_VOCAB}`,
      );
    }

    this.bytesOf = new Array<Uint8Array>(256 + M);
    for (let b = 0; b < 256; b++) this.bytesOf[this.byteIds[b]!] = Uint8Array.of(b);
    model.merges.forEach((pair, r) => {
      const [a, b] = pair;
      const id = 256 + r;
      for (const x of [a, b]) {
        if (!Number.isInteger(x) || x < 0 || x >= id) {
          throw new Error(
            `BPE model: merge ${r} = [${a}, ${b}] uses id ${x}, but merge ${r} may ` +
              `only join ids 0 … ${id - 1} (it creates id ${id})`,
          );
        }
      }
      const key = pairKey(a, b);
      const earlier = this.ranks.get(key);
      if (earlier !== undefined)
        throw new Error(`BPE model: merges ${earlier} and ${r} both join [${a}, ${b}]`);
      this.ranks.set(key, r);
      const ba = this.bytesOf[a]!;
      const bb = this.bytesOf[b]!;
      const bytes = new Uint8Array(ba.length + bb.length);
      bytes.set(ba, 0);
      bytes.set(bb, ba.length);
      this.bytesOf[id] = bytes;
    });
    this.merges = model.merges.map(([a, b]) => [a, b] as const);

    const byId = new Map<number, string>();
    for (const [text, id] of specials) {
      if (text === "") throw new Error("BPE model: a special token is the empty string");
      if (!Number.isInteger(id) || id < 256 + M || id >= this.vocabSize) {
        throw new Error(
          `BPE model: special token ${JSON.stringify(text)} has id ${id}; special ` +
            `tokens must use the ids ${256 + M} … ${this.vocabSize - 1} right after ` +
            `the ${M} merges`,
        );
      }
      const other = byId.get(id);
      if (other !== undefined)
        throw new Error(
          `BPE model: special tokens ${JSON.stringify(other)} and ${JSON.stringify(text)} share id ${id}`,
        );
      byId.set(id, text);
    }
    this.specialOf = byId;
    this.specialTokens = new Map(specials);
  }

  /**
   * GPT-2's tokenizer (50,257 ids), built once from js-tiktoken's data on first call and
   * shared afterwards.
   */
  static gpt2(): Tokenizer {
    gpt2Singleton ??= new Tokenizer(loadGpt2Model());
    return gpt2Singleton;
  }

  /**
   * Rebuilds a tokenizer from {@link toJSON}'s output (an object or its JSON text). The input is
   * data: its pattern must be one of the known patterns (`KNOWN_PATTERNS` of pretokenize.ts).
   */
  static fromJSON(json: unknown): Tokenizer {
    return new Tokenizer(parseModelJSON(typeof json === "string" ? parseJSONText(json) : json));
  }

  /** The model as plain JSON data; `Tokenizer.fromJSON(t.toJSON())` equals `t`. */
  toJSON(): BpeModelJSON {
    const byteIds = Array.from(this.byteIds);
    const identity = byteIds.every((id, b) => id === b);
    return {
      format: "specformer-bpe",
      version: 1,
      pattern: this.pattern,
      ...(identity ? {} : { byteIds }),
      merges: this.merges.map(([a, b]) => [a, b]),
      specialTokens: Object.fromEntries(this.specialTokens),
    };
  }

  /** Number of merges (the vocabulary minus the 256 bytes and the special tokens). */
  get mergeCount(): number {
    return this.merges.length;
  }

  /** The merges in rank order: merge `r` joins `[a, b]` into id `256 + r`. */
  mergeList(): Array<[number, number]> {
    return this.merges.map(([a, b]) => [a, b]);
  }

  /**
   * Token ids of `text`. Special tokens are handled as in tiktoken: by default the text must
   * not contain any (an error names the token and its index); list them in `allowedSpecial`
   * to encode them as their ids, or leave them out of `disallowedSpecial` to encode them as
   * ordinary text.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const { allowedSpecial = [], disallowedSpecial = "all", loneSurrogates = "replace" } = options;
    if (loneSurrogates === "error") {
      const at = firstLoneSurrogate(text);
      if (at >= 0) {
        const code = text.charCodeAt(at).toString(16).toUpperCase();
        throw new Error(
          `encode: lone surrogate U+${code} at index ${at}; the text is not valid UTF-16 and has no UTF-8 encoding`,
        );
      }
    }
    const allowed = this.specialSet(allowedSpecial, "allowedSpecial", new Set());
    const disallowed = this.specialSet(disallowedSpecial, "disallowedSpecial", allowed);
    for (const s of disallowed) {
      const at = text.indexOf(s);
      if (at >= 0) {
        throw new Error(
          `encode: the text contains the special token ${JSON.stringify(s)} at index ${at}, which is not allowed; ` +
            `pass { allowedSpecial: [${JSON.stringify(s)}] } to encode it as id ${this.specialTokens.get(s)}, ` +
            `or { disallowedSpecial: [] } to encode it as ordinary text`,
        );
      }
    }
    const out: number[] = [];
    if (allowed.size === 0) {
      this.encodeSegment(text, out);
      return out;
    }
    // Longest first, so that of two specials starting at the same index the longer wins.
    const alternatives = [...allowed].sort((a, b) => b.length - a.length).map(escapeRegex);
    const special = new RegExp(alternatives.join("|"), "g");
    let start = 0;
    for (const m of text.matchAll(special)) {
      this.encodeSegment(text.slice(start, m.index), out);
      out.push(this.specialTokens.get(m[0])!);
      start = m.index + m[0].length;
    }
    this.encodeSegment(text.slice(start), out);
    return out;
  }

  /** Token ids of `text` with every special token treated as ordinary text. */
  encodeOrdinary(text: string): number[] {
    const out: number[] = [];
    this.encodeSegment(text, out);
    return out;
  }

  /**
   * Text of `ids`: their bytes concatenated and decoded as UTF-8, invalid sequences replaced
   * by U+FFFD. Throws when an id is not an integer in `0 … vocabSize − 1`, naming the id and
   * its position.
   */
  decode(ids: ArrayLike<number>): string {
    let out = "";
    let pending: Uint8Array[] = [];
    const flush = (): void => {
      if (pending.length > 0) out += utf8Decode(concatBytes(pending));
      pending = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i]!, i, "decode");
      const special = this.specialOf.get(id);
      if (special !== undefined) {
        flush();
        out += special;
      } else pending.push(this.bytesOf[id]!);
    }
    flush();
    return out;
  }

  /** Concatenated bytes of `ids` (special tokens as the UTF-8 of their text). */
  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++)
      parts.push(this.tokenBytes(this.checkId(ids[i]!, i, "decodeBytes")));
    return concatBytes(parts);
  }

  /**
   * One display string per id: the token's text, with every byte that is not part of a
   * well-formed UTF-8 sequence within that token shown as `<0xHH>` (see `bytesToDisplay`).
   * Special tokens show as their text.
   */
  decodePieces(ids: ArrayLike<number>): string[] {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i]!, i, "decodePieces");
      out.push(this.specialOf.get(id) ?? bytesToDisplay(this.bytesOf[id]!));
    }
    return out;
  }

  /** Bytes of one token (a special token: the UTF-8 of its text). */
  tokenBytes(id: number): Uint8Array {
    this.checkId(id, 0, "tokenBytes");
    const special = this.specialOf.get(id);
    return special !== undefined ? utf8Encode(special) : this.bytesOf[id]!.slice();
  }

  /**
   * GPT-2's `vocab.json` spelling of a token: its bytes through `bytes_to_unicode`
   * (`"Ġthe"` for `" the"`); special tokens as their text.
   */
  tokenString(id: number): string {
    this.checkId(id, 0, "tokenString");
    return this.specialOf.get(id) ?? bytesToGpt2String(this.bytesOf[id]!);
  }

  private encodeSegment(text: string, out: number[]): void {
    const re = this.regex;
    re.lastIndex = 0;
    let expected = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const piece = m[0];
      if (m.index !== expected || piece.length === 0) {
        throw new Error(
          `encode: the pre-tokenization pattern ${JSON.stringify(this.pattern)} ` +
            `leaves ${JSON.stringify(text.slice(expected, m.index + 1))} at index ` +
            `${expected} unmatched or matches the empty string; it must tile the text`,
        );
      }
      expected += piece.length;
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        const bytes = utf8Encode(piece);
        const start = new Array<number>(bytes.length);
        for (let i = 0; i < bytes.length; i++) start[i] = this.byteIds[bytes[i]!]!;
        ids = mergeIds(start, this.ranks);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    }
    if (expected !== text.length) {
      throw new Error(
        `encode: the pre-tokenization pattern ${JSON.stringify(this.pattern)} ` +
          `leaves ${JSON.stringify(text.slice(expected, expected + 10))} at index ` +
          `${expected} unmatched; it must tile the text`,
      );
    }
  }

  private specialSet(
    spec: "all" | Iterable<string>,
    name: string,
    minus: Set<string>,
  ): Set<string> {
    if (spec === "all") return new Set([...this.specialTokens.keys()].filter((s) => !minus.has(s)));
    const set = new Set<string>();
    for (const s of spec) {
      if (!this.specialTokens.has(s)) {
        const known =
          [...this.specialTokens.keys()].map((k) => JSON.stringify(k)).join(", ") || "none";
        throw new Error(
          `encode: ${name} names ${JSON.stringify(s)}, which is not a special ` +
            `token of this tokenizer (known: ${known})`,
        );
      }
      set.add(s);
    }
    return set;
  }

  private checkId(id: number, position: number, where: string): number {
    if (!Number.isInteger(id))
      throw new Error(`${where}: id ${id} at position ${position} is not an integer`);
    if (id < 0 || id >= this.vocabSize) {
      throw new Error(
        `${where}: id ${id} at position ${position} is outside the vocabulary ` +
          `(valid ids are 0 … ${this.vocabSize - 1})`,
      );
    }
    return id;
  }
}

function checkByteIds(byteIds: readonly number[] | undefined): Int32Array {
  const out = new Int32Array(256);
  if (byteIds === undefined) {
    for (let b = 0; b < 256; b++) out[b] = b;
    return out;
  }
  if (byteIds.length !== 256)
    throw new Error(`BPE model: byteIds has ${byteIds.length} entries, not 256`);
  const seen = new Map<number, number>();
  byteIds.forEach((id, b) => {
    if (!Number.isInteger(id) || id < 0 || id > 255)
      throw new Error(`BPE model: byteIds[${b}] = ${id} is not an id in 0 … 255`);
    const other = seen.get(id);
    if (other !== undefined)
      throw new Error(
        `BPE model: bytes ${other} and ${b} both have id ${id}; byteIds must be a permutation of 0 … 255`,
      );
    seen.set(id, b);
    out[b] = id;
  });
  return out;
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let k = 0;
  for (const p of parts) {
    out.set(p, k);
    k += p.length;
  }
  return out;
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

function parseJSONText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`Tokenizer.fromJSON: not valid JSON: ${(e as Error).message}`);
  }
}

/** Validates the shape of {@link BpeModelJSON}; the constructor then checks consistency. */
function parseModelJSON(json: unknown): BpeModel {
  const where = "Tokenizer.fromJSON";
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new Error(`${where}: expected an object, got ${describe(json)}`);
  const o = json as Record<string, unknown>;
  if (o.format !== "specformer-bpe")
    throw new Error(`${where}: "format" is ${describe(o.format)}, expected "specformer-bpe"`);
  if (o.version !== 1)
    throw new Error(`${where}: "version" is ${describe(o.version)}, this reader knows version 1`);
  if (typeof o.pattern !== "string")
    throw new Error(`${where}: "pattern" is ${describe(o.pattern)}, expected a string`);
  checkKnownPattern(o.pattern, where);
  if (!Array.isArray(o.merges))
    throw new Error(
      `${where}: "merges" is ${describe(o.merges)}, expected an array of [a, b] pairs`,
    );
  const merges = o.merges.map((m: unknown, r: number): [number, number] => {
    if (!Array.isArray(m) || m.length !== 2 || !m.every((x) => typeof x === "number")) {
      throw new Error(`${where}: merges[${r}] is ${describe(m)}, expected a pair of ids [a, b]`);
    }
    return [m[0] as number, m[1] as number];
  });
  let byteIds: number[] | undefined;
  if (o.byteIds !== undefined) {
    if (!Array.isArray(o.byteIds) || !o.byteIds.every((x) => typeof x === "number")) {
      throw new Error(
        `${where}: "byteIds" is ${describe(o.byteIds)}, expected an array of 256 ids`,
      );
    }
    byteIds = o.byteIds as number[];
  }
  const specialTokens: Record<string, number> = {};
  if (o.specialTokens !== undefined) {
    if (
      typeof o.specialTokens !== "object" ||
      o.specialTokens === null ||
      Array.isArray(o.specialTokens)
    ) {
      throw new Error(
        `${where}: "specialTokens" is ${describe(o.specialTokens)}, expected an object {text: id}`,
      );
    }
    for (const [k, v] of Object.entries(o.specialTokens)) {
      if (typeof v !== "number")
        throw new Error(
          `${where}: specialTokens[${JSON.stringify(k)}] is ${describe(v)}, expected an id`,
        );
      specialTokens[k] = v;
    }
  }
  return { pattern: o.pattern, merges, specialTokens, ...(byteIds ? { byteIds } : {}) };
}

function describe(x: unknown): string {
  if (x === undefined) return "missing";
  const s = JSON.stringify(x) ?? String(x);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
