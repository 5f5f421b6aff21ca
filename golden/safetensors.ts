/**
 * A strict reader and writer for safetensors, the Hugging Face tensor file format that every
 * golden case is stored in (see golden/FORMAT.md for the byte layout).
 *
 * Layout: `u64 little-endian N` | `N bytes of UTF-8 JSON header` | `byte buffer`. The header maps
 * each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte
 * buffer) and may hold `__metadata__`, a map of string to string.
 *
 * The reader trusts nothing: every structural problem (truncation, bad UTF-8 or JSON, duplicate
 * or reserved keys, wrong types, spans out of the buffer, overlaps, holes, unused bytes, sizes
 * that disagree with the shape) raises a {@link GoldenFormatError} naming the file, the tensor
 * and the problem. Its JSON parser is our own: `JSON.parse` silently keeps the last of two equal
 * keys, and building ordinary objects from untrusted keys invites prototype pollution.
 *
 * Data is little-endian. Big-endian hosts are out of scope: both functions refuse to run there.
 */
import { writeFileSync, mkdirSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { Tensor, shapeToString } from "../autodiff/tensor.js";
import type { DType, TensorData } from "../autodiff/tensor.js";
import { FileAccessError, readRegularFile } from "./files.js";

export { MAX_FILE_BYTES } from "./files.js";

/** The error raised for every problem with a golden file or its contents. */
export class GoldenFormatError extends Error {
  override name = "GoldenFormatError";
  /** The file (or other source label) the problem was found in. */
  readonly source: string;
  /** The tensor the problem concerns, when there is one. */
  readonly tensor: string | undefined;
  /** The problem itself, without the source and tensor prefix. */
  readonly problem: string;
  constructor(source: string, problem: string, tensor?: string) {
    super(`${source}: ${tensor === undefined ? "" : `tensor ${JSON.stringify(tensor)}: `}${problem}`);
    this.source = source;
    this.tensor = tensor;
    this.problem = problem;
  }
}

/** Largest header accepted, in bytes (the bound the Hugging Face implementation uses). */
export const MAX_HEADER_BYTES = 100_000_000;
/**
 * Most tensors accepted in one file. GPT-2 has 149; the largest public checkpoints hold a few
 * thousand per file. The bound refuses a hostile header (a million zero-size tensors) as soon as
 * its parse reaches the entry past it, in time and memory proportional to the bound.
 */
export const MAX_TENSORS = 65_536;
/** Deepest JSON nesting accepted in a header (ours needs 3; the bound keeps the parser's stack small). */
export const MAX_JSON_DEPTH = 64;
/** Keys refused anywhere in a header: they are how prototype pollution gets in. */
export const RESERVED_KEYS: readonly string[] = ["__proto__", "constructor", "prototype"];

/**
 * Element size in bytes of every safetensors dtype this reader knows, and what it becomes in a
 * {@link Tensor} (`null`: known, so its spans can be checked, but not converted).
 */
const DTYPES: Readonly<Record<string, { size: number; to: DType | null }>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, { size: number; to: DType | null }>, {
    F64: { size: 8, to: "f64" },
    F32: { size: 4, to: "f32" },
    I32: { size: 4, to: "i32" },
    I64: { size: 8, to: "i32" }, // only when every value fits in 32 bits
    F16: { size: 2, to: "f32" }, // exact: every half is a float32
    BF16: { size: 2, to: "f32" }, // exact: a bfloat16 is the top half of a float32
    BOOL: { size: 1, to: null },
    U8: { size: 1, to: null },
    I8: { size: 1, to: null },
    F8_E4M3: { size: 1, to: null },
    F8_E5M2: { size: 1, to: null },
    F8_E8M0: { size: 1, to: null },
    U16: { size: 2, to: null },
    I16: { size: 2, to: null },
    U32: { size: 4, to: null },
    U64: { size: 8, to: null },
    C64: { size: 8, to: null },
  }),
);

const CONVERTED = Object.keys(DTYPES).filter((k) => DTYPES[k]!.to !== null);

/** The safetensors dtype our writer uses for each Tensor dtype. */
const WRITE_DTYPE: Readonly<Record<DType, string>> = { f64: "F64", f32: "F32", i32: "I32" };

/** One tensor's header entry, after validation. */
export interface SafetensorsEntry {
  readonly name: string;
  /** The dtype as written in the file (`"F64"`, `"BF16"`, ...). */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** `[begin, end)` in bytes, relative to the start of the byte buffer. */
  readonly dataOffsets: readonly [number, number];
}

/** A validated header: entries in file order, metadata, and where the byte buffer starts. */
export interface SafetensorsHeader {
  readonly entries: readonly SafetensorsEntry[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Header length N as stored in the first 8 bytes. */
  readonly headerLength: number;
  /** Byte offset of the byte buffer in the file: 8 + N. */
  readonly dataStart: number;
  /** Length of the byte buffer. */
  readonly dataLength: number;
}

/** What a safetensors file holds: its tensors and its string metadata. */
export interface SafetensorsContents {
  /** Tensors by name, in file (header) order. */
  readonly tensors: Map<string, Tensor>;
  /** `__metadata__` (a null-prototype object; empty when the file has none). */
  readonly metadata: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Strict JSON

/** A JSON value as our parser returns it: objects have a null prototype. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function describeChar(text: string, pos: number): string {
  if (pos >= text.length) return "end of input";
  const c = text.charCodeAt(pos);
  return c >= 0x20 && c < 0x7f ? `'${text[pos]}'` : `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Parse JSON strictly: standard grammar only (RFC 8259), objects built with a null prototype,
 * duplicate keys and the keys `__proto__`, `constructor`, `prototype` refused, nesting bounded
 * by {@link MAX_JSON_DEPTH}. Runs in time linear in the text, without recursion.
 *
 * @param what  names the text in messages, e.g. `"header"`.
 * @param limits  `maxRootKeys`: refuse a top-level object with more keys, as soon as the next one starts.
 * @throws GoldenFormatError naming `source`, `what` and the character position.
 * @example parseStrictJson('{"a": [1, 2]}', "x.json").a // [1, 2]
 */
export function parseStrictJson(
  text: string,
  source = "<json>",
  what = "JSON",
  limits: { readonly maxRootKeys?: { readonly max: number; readonly why?: string } } = {},
): JsonValue {
  let pos = 0;
  const fail = (problem: string): never => {
    throw new GoldenFormatError(source, `${what} is not valid JSON: ${problem} at character ${pos}`);
  };
  const skipWs = (): void => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else return;
    }
  };
  const parseString = (): string => {
    // text[pos] is the opening quote
    pos++;
    let out = "";
    let runStart = pos;
    for (;;) {
      if (pos >= text.length) fail("unterminated string");
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(runStart, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail(`raw control character ${describeChar(text, pos)} in a string`);
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(runStart, pos);
      pos++;
      const e = text[pos];
      switch (e) {
        case '"': out += '"'; break;
        case "\\": out += "\\"; break;
        case "/": out += "/"; break;
        case "b": out += "\b"; break;
        case "f": out += "\f"; break;
        case "n": out += "\n"; break;
        case "r": out += "\r"; break;
        case "t": out += "\t"; break;
        case "u": {
          const hex = text.slice(pos + 1, pos + 5);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 4;
          break;
        }
        default:
          fail(`bad escape \\${e === undefined ? "" : describeChar(text, pos)}`);
      }
      pos++;
      runStart = pos;
    }
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const parseScalar = (): JsonValue => {
    const c = text[pos];
    if (c === '"') return parseString();
    if (text.startsWith("true", pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith("false", pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith("null", pos)) {
      pos += 4;
      return null;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m !== null) {
      pos += m[0].length;
      return Number(m[0]);
    }
    return fail(`unexpected ${describeChar(text, pos)}`);
  };
  /** An object key and its ':' (pos at the key's opening quote after whitespace). */
  const parseKey = (obj: { [key: string]: JsonValue }): string => {
    skipWs();
    if (text[pos] !== '"') fail(`expected a string key, found ${describeChar(text, pos)}`);
    const keyPos = pos;
    const key = parseString();
    if (RESERVED_KEYS.includes(key)) {
      pos = keyPos;
      fail(`reserved key ${JSON.stringify(key)} (refused: it could pollute object prototypes)`);
    }
    if (Object.prototype.hasOwnProperty.call(obj, key)) {
      pos = keyPos;
      fail(`duplicate key ${JSON.stringify(key)} (a plain JSON.parse would silently keep the last one)`);
    }
    skipWs();
    if (text[pos] !== ":") fail(`expected ':' after key ${JSON.stringify(key)}, found ${describeChar(text, pos)}`);
    pos++;
    return key;
  };
  // Iterative: open containers live on an explicit stack, so no input can overflow the call stack.
  type Open = { obj: { [key: string]: JsonValue }; key: string; keys: number } | { arr: JsonValue[] };
  const stack: Open[] = [];
  let value: JsonValue;
  const rootKeyLimit = limits.maxRootKeys;
  parse: for (;;) {
    skipWs();
    const c = text[pos];
    let v: JsonValue;
    if (c === "{" || c === "[") {
      if (stack.length >= MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH} levels`);
      pos++;
      skipWs();
      if (c === "{") {
        const obj = Object.create(null) as { [key: string]: JsonValue };
        if (text[pos] === "}") {
          pos++;
          v = obj;
        } else {
          stack.push({ obj, key: parseKey(obj), keys: 1 });
          continue;
        }
      } else if (text[pos] === "]") {
        pos++;
        v = [];
      } else {
        stack.push({ arr: [] });
        continue;
      }
    } else v = parseScalar();
    // v is complete: store it in the innermost open container, closing those that end here
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        value = v;
        break parse;
      }
      skipWs();
      if ("obj" in top) {
        top.obj[top.key] = v;
        if (text[pos] === ",") {
          pos++;
          if (stack.length === 1 && rootKeyLimit !== undefined && top.keys >= rootKeyLimit.max) {
            throw new GoldenFormatError(source, `${what} has more than ${rootKeyLimit.max} entries${rootKeyLimit.why === undefined ? "" : ` (${rootKeyLimit.why})`}`);
          }
          top.key = parseKey(top.obj);
          top.keys++;
          continue parse;
        }
        if (text[pos] === "}") {
          pos++;
          stack.pop();
          v = top.obj;
          continue;
        }
        fail(`expected ',' or '}', found ${describeChar(text, pos)}`);
      } else {
        top.arr.push(v);
        if (text[pos] === ",") {
          pos++;
          continue parse;
        }
        if (text[pos] === "]") {
          pos++;
          stack.pop();
          v = top.arr;
          continue;
        }
        fail(`expected ',' or ']', found ${describeChar(text, pos)}`);
      }
    }
  }
  skipWs();
  if (pos !== text.length) fail(`unexpected ${describeChar(text, pos)} after the JSON value`);
  return value;
}

/** True for objects our parser made (plain data, not arrays). */
export function isJsonObject(v: unknown): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Reading

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) {
    throw new Error("safetensors data is little-endian; big-endian hosts are not supported by this reader/writer");
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v} (${JSON.stringify(v)})`;
}

function readIntList(v: JsonValue | undefined, source: string, tensor: string, field: string): number[] {
  if (!Array.isArray(v)) throw new GoldenFormatError(source, `"${field}" must be an array of integers, found ${typeName(v)}`, tensor);
  return v.map((x, i) => {
    if (typeof x !== "number") {
      throw new GoldenFormatError(source, `"${field}"[${i}] must be an integer, found ${typeName(x)}`, tensor);
    }
    if (!Number.isInteger(x)) throw new GoldenFormatError(source, `"${field}"[${i}] is ${x}, not an integer`, tensor);
    if (x < 0) throw new GoldenFormatError(source, `"${field}"[${i}] is ${x}, which is negative`, tensor);
    if (!Number.isSafeInteger(x)) {
      throw new GoldenFormatError(source, `"${field}"[${i}] is ${x}, too large (above 2^53 - 1)`, tensor);
    }
    return x;
  });
}

/**
 * Index of the first byte that breaks UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or -1 when the bytes are valid. Linear time.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf; // allowed range of the first continuation byte
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates U+D800..U+DFFF
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined) return i;
      const [min, max] = k === 1 ? [lo, hi] : [0x80, 0xbf];
      if (d < min || d > max) return i + k;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * Read and validate the header of a safetensors file without converting any data.
 * Checks everything {@link readSafetensors} checks except whether the dtypes can be converted.
 *
 * @param source  the file name (or another label) used in error messages.
 * @throws GoldenFormatError for every structural problem.
 */
export function readSafetensorsHeader(bytes: Uint8Array, source = "<bytes>"): SafetensorsHeader {
  requireLittleEndian();
  if (bytes.length < 8) {
    throw new GoldenFormatError(source, `file is ${bytes.length} bytes long, shorter than the 8-byte header length prefix`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    throw new GoldenFormatError(source, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte bound`);
  }
  const headerLength = Number(n64);
  if (8 + headerLength > bytes.length) {
    throw new GoldenFormatError(
      source,
      `header length ${headerLength} is larger than the ${bytes.length - 8} bytes that follow the length prefix (file truncated?)`,
    );
  }
  if (headerLength < 2) throw new GoldenFormatError(source, `header length ${headerLength} is too short to hold a JSON object`);
  const headerBytes = bytes.subarray(8, 8 + headerLength);
  const bad = firstInvalidUtf8(headerBytes);
  if (bad >= 0) {
    throw new GoldenFormatError(source, `header is not valid UTF-8 (bad byte 0x${headerBytes[bad]!.toString(16).padStart(2, "0")} at header offset ${bad})`);
  }
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(headerBytes);
  if (text[0] !== "{") {
    throw new GoldenFormatError(source, `header must start with '{', found ${describeChar(text, 0)}`);
  }
  const header = parseStrictJson(text, source, "header", {
    maxRootKeys: { max: MAX_TENSORS + 1, why: `at most ${MAX_TENSORS} tensors and "__metadata__"` },
  });
  if (!isJsonObject(header)) throw new GoldenFormatError(source, `header must be a JSON object, found ${typeName(header)}`);

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const metadata = Object.create(null) as Record<string, string>;
  const entries: SafetensorsEntry[] = [];
  for (const name of Object.keys(header)) {
    const raw = header[name];
    if (name === "__metadata__") {
      if (!isJsonObject(raw)) throw new GoldenFormatError(source, `"__metadata__" must be an object of strings, found ${typeName(raw)}`);
      for (const k of Object.keys(raw)) {
        const v = raw[k];
        if (typeof v !== "string") {
          throw new GoldenFormatError(source, `"__metadata__" value for key ${JSON.stringify(k)} must be a string, found ${typeName(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    if (!isJsonObject(raw)) throw new GoldenFormatError(source, `entry must be an object {dtype, shape, data_offsets}, found ${typeName(raw)}`, name);
    for (const k of ["dtype", "shape", "data_offsets"]) {
      if (!(k in raw)) throw new GoldenFormatError(source, `entry is missing "${k}"`, name);
    }
    for (const k of Object.keys(raw)) {
      if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
        throw new GoldenFormatError(source, `entry has unexpected key ${JSON.stringify(k)} (allowed: dtype, shape, data_offsets)`, name);
      }
    }
    const dtype = raw.dtype;
    if (typeof dtype !== "string") throw new GoldenFormatError(source, `"dtype" must be a string, found ${typeName(dtype)}`, name);
    const info = DTYPES[dtype];
    if (info === undefined) {
      throw new GoldenFormatError(source, `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPES).join(", ")})`, name);
    }
    const shape = readIntList(raw.shape, source, name, "shape");
    const offsets = readIntList(raw.data_offsets, source, name, "data_offsets");
    if (offsets.length !== 2) {
      throw new GoldenFormatError(source, `"data_offsets" must hold exactly 2 integers [begin, end], found ${offsets.length}`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new GoldenFormatError(source, `data_offsets [${begin}, ${end}] has begin > end`, name);
    if (end > dataLength) {
      throw new GoldenFormatError(source, `data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data buffer`, name);
    }
    // Element count, bounded by the buffer so the product never leaves exact integer range.
    let count = 1;
    for (const d of shape) {
      count *= d;
      if (count > dataLength) break;
    }
    if (shape.includes(0)) count = 0;
    const need = count * info.size;
    if (need !== end - begin) {
      const needText = count > dataLength ? `more than the ${dataLength}-byte data buffer` : `${need} bytes`;
      throw new GoldenFormatError(
        source,
        `shape ${shapeToString(shape)} of ${dtype} (${info.size} bytes each) needs ${needText} but data_offsets [${begin}, ${end}] span ${end - begin}`,
        name,
      );
    }
    entries.push({ name, dtype, shape, dataOffsets: [begin, end] });
  }

  // Spans must tile the buffer: sorted by offset, each begins where the previous ended.
  const sorted = [...entries].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of sorted) {
    const [begin, end] = e.dataOffsets;
    if (begin < cursor) {
      throw new GoldenFormatError(
        source,
        `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous!.name)} at [${previous!.dataOffsets[0]}, ${previous!.dataOffsets[1]}]`,
        e.name,
      );
    }
    if (begin > cursor) {
      throw new GoldenFormatError(
        source,
        `data_offsets [${begin}, ${end}] leave a hole: bytes [${cursor}, ${begin}) of the data buffer belong to no tensor`,
        e.name,
      );
    }
    cursor = end;
    if (end > begin) previous = e;
  }
  if (cursor !== dataLength) {
    throw new GoldenFormatError(source, `bytes [${cursor}, ${dataLength}) at the end of the data buffer belong to no tensor`);
  }
  return { entries, metadata, headerLength, dataStart, dataLength };
}

/** IEEE 754 half (binary16) bits to a number; exact (every half is a float32). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero or subnormal: frac · 2^-24
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Copy `len` bytes at `start` into a fresh buffer: the tensor owns its data, and alignment is moot. */
function copyBytes(bytes: Uint8Array, start: number, len: number): ArrayBuffer {
  const buf = new ArrayBuffer(len);
  new Uint8Array(buf).set(bytes.subarray(start, start + len));
  return buf;
}

function decode(bytes: Uint8Array, h: SafetensorsHeader, e: SafetensorsEntry, source: string): Tensor {
  const info = DTYPES[e.dtype]!;
  if (info.to === null) {
    throw new GoldenFormatError(source, `unsupported dtype ${e.dtype} (this reader converts ${CONVERTED.join(", ")})`, e.name);
  }
  const start = h.dataStart + e.dataOffsets[0];
  const len = e.dataOffsets[1] - e.dataOffsets[0];
  const buf = copyBytes(bytes, start, len);
  let data: TensorData;
  switch (e.dtype) {
    case "F64":
      data = new Float64Array(buf);
      break;
    case "F32":
      data = new Float32Array(buf);
      break;
    case "I32":
      data = new Int32Array(buf);
      break;
    case "I64": {
      const src = new BigInt64Array(buf);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (v < -2147483648n || v > 2147483647n) {
          const index = new Tensor("i32", e.shape, new Int32Array(src.length)).unravel(i);
          throw new GoldenFormatError(
            source,
            `I64 value ${v} at index ${shapeToString(index)} does not fit in i32 (I64 is read as i32 only when every value fits)`,
            e.name,
          );
        }
        out[i] = Number(v);
      }
      data = out;
      break;
    }
    case "F16": {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = halfToNumber(src[i]!);
      data = out;
      break;
    }
    case "BF16": {
      const src = new Uint16Array(buf);
      const bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
      data = new Float32Array(bits.buffer);
      break;
    }
    default:
      throw new GoldenFormatError(source, `unsupported dtype ${e.dtype}`, e.name);
  }
  return new Tensor(info.to, e.shape, data);
}

/**
 * Parse a safetensors file.
 *
 * F64, F32 and I32 are read as they are; I64 becomes i32 when every value fits (otherwise an
 * error names the first value that does not); F16 and BF16 become f32 (exactly). Other dtypes
 * raise "unsupported dtype". The tensors get their own copies of the bytes, so any alignment of
 * `bytes` works and later changes to `bytes` do not reach them.
 *
 * @param source  the file name (or another label) used in error messages.
 * @throws GoldenFormatError for every problem with the file.
 * @example readSafetensors(writeSafetensors({ x: Tensor.from([1, 2]) })).tensors.get("x")?.shape // [2]
 */
export function readSafetensors(bytes: Uint8Array, source = "<bytes>"): SafetensorsContents {
  const h = readSafetensorsHeader(bytes, source);
  const tensors = new Map<string, Tensor>();
  for (const e of h.entries) tensors.set(e.name, decode(bytes, h, e, source));
  return { tensors, metadata: h.metadata as Record<string, string> };
}

/** Read a safetensors file from disk; a missing or unreadable file is a {@link GoldenFormatError} too. */
export function readSafetensorsFile(path: string): SafetensorsContents {
  return readSafetensors(readFileBytes(path), path);
}

/**
 * Read a file's bytes: regular files only (a folder, FIFO or device is refused before it is
 * opened), at most `maxBytes` (default {@link MAX_FILE_BYTES}) checked before reading; every
 * problem is a {@link GoldenFormatError} naming the path.
 */
export function readFileBytes(path: string, opts: { maxBytes?: number; what?: string } = {}): Uint8Array {
  try {
    return readRegularFile(path, opts);
  } catch (err) {
    if (err instanceof FileAccessError) throw new GoldenFormatError(path, err.problem);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Compare strings by Unicode code point (Python's `sorted`), not UTF-16 code unit. */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * Serialise tensors (and optional string metadata) as safetensors.
 *
 * Tensors are laid out in code-point-sorted name order with ascending offsets and no gaps; the
 * header is compact JSON with `__metadata__` first (its keys sorted), then the tensors in the same
 * order, padded with spaces so that the byte buffer starts at a multiple of 8 — the same bytes
 * golden/specformer_golden.py's `encode_safetensors` produces for the same tensors and metadata.
 *
 * @throws GoldenFormatError for a reserved name, a non-Tensor value or a non-string metadata value.
 * @example writeSafetensors({ x: Tensor.from([1, 2]) }).length // 8 + 64-byte header + 16 bytes of data
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
  source = "<writeSafetensors>",
): Uint8Array {
  requireLittleEndian();
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors as Record<string, Tensor>));
  const names = [...map.keys()].sort(compareCodePoints);
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareCodePoints); // as Python's dict(sorted(...))
    const fields: string[] = [];
    for (const k of keys) {
      const v = metadata[k];
      if (RESERVED_KEYS.includes(k)) throw new GoldenFormatError(source, `metadata key ${JSON.stringify(k)} is reserved`);
      if (typeof v !== "string") throw new GoldenFormatError(source, `metadata value for ${JSON.stringify(k)} must be a string, found ${typeName(v)}`);
      fields.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${fields.join(",")}}`);
  }
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const name of names) {
    const t = map.get(name);
    if (name === "__metadata__" || RESERVED_KEYS.includes(name)) {
      throw new GoldenFormatError(source, `the name is reserved and cannot be a tensor name`, name);
    }
    if (!(t instanceof Tensor)) throw new GoldenFormatError(source, `value must be a Tensor, found ${typeName(t)}`, name);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${WRITE_DTYPE[t.dtype]}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + bytes.length}]}`,
    );
    chunks.push(bytes);
    offset += bytes.length;
  }
  let header = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(header.length / 8) * 8;
  if (padded !== header.length) {
    const h = new Uint8Array(padded).fill(0x20);
    h.set(header);
    header = h;
  }
  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Write a safetensors file, creating parent folders; the file is written to a temporary name
 * and renamed, so readers never see half a file.
 */
export function writeSafetensorsFile(
  path: string,
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
): void {
  const bytes = writeSafetensors(tensors, metadata, path);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}
