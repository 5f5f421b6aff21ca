/**
 * A strict reader and writer for safetensors, the Hugging Face tensor file format of the golden
 * cases and of checkpoints (see golden/FORMAT.md for the byte layout).
 *
 * Layout: `u64 little-endian N` | `N bytes of UTF-8 JSON header` | `byte buffer`. The header maps
 * each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte
 * buffer) and may hold `__metadata__`, a map of string to string.
 *
 * The reader trusts nothing: every structural problem (truncation, bad UTF-8 or JSON, duplicate
 * or reserved keys, wrong types, spans out of the buffer, overlaps, holes, unused bytes, sizes
 * that disagree with the shape) raises a {@link SafetensorsFormatError} naming the file, the
 * tensor (its header key) and the problem, and carrying the byte offset in the file where one is
 * known. The header is parsed by io/json.ts's strict parser.
 *
 * Data is little-endian. Big-endian hosts are out of scope: both functions refuse to run there.
 */
import { writeFileSync, mkdirSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { Tensor, shapeToString } from "../autodiff/tensor.js";
import type { DType, TensorData } from "../autodiff/tensor.js";
import { FileAccessError, readRegularFile } from "./files.js";
import {
  JsonFormatError,
  RESERVED_KEYS,
  describeChar,
  isJsonObject,
  parseStrictJson,
} from "./json.js";
import type { JsonValue } from "./json.js";

/** The error raised for every problem with a safetensors file or its contents. */
export class SafetensorsFormatError extends Error {
  override name = "SafetensorsFormatError";
  /** The file (or other source label) the problem was found in. */
  readonly source: string;
  /** The tensor (header key) the problem concerns, when there is one. */
  readonly tensor: string | undefined;
  /** The problem itself, without the source and tensor prefix. */
  readonly problem: string;
  /** Offset in the file of the byte where the problem was found, when one is known. */
  readonly byteOffset: number | undefined;
  constructor(source: string, problem: string, tensor?: string, byteOffset?: number) {
    const about = tensor === undefined ? "" : `tensor ${JSON.stringify(tensor)}: `;
    super(`${source}: ${about}${problem}`);
    this.source = source;
    this.tensor = tensor;
    this.problem = problem;
    this.byteOffset = byteOffset;
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

/** Options of {@link readSafetensors}. */
export interface ReadOptions {
  /**
   * Tensors (by header name) to leave out: they are checked as header entries and spans like every
   * other, but not decoded, so they may have any known dtype, and they are absent from the result.
   */
  readonly skip?: (name: string) => boolean;
}

// ---------------------------------------------------------------------------------------------
// Reading

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) {
    throw new Error(
      "safetensors data is little-endian; big-endian hosts are not supported by this reader/writer",
    );
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v} (${JSON.stringify(v)})`;
}

function readIntList(
  v: JsonValue | undefined,
  source: string,
  tensor: string,
  field: string,
): number[] {
  const fail = (problem: string): never => {
    throw new SafetensorsFormatError(source, problem, tensor);
  };
  if (!Array.isArray(v)) {
    return fail(`"${field}" must be an array of integers, found ${typeName(v)}`);
  }
  return v.map((x, i) => {
    if (typeof x !== "number") fail(`"${field}"[${i}] must be an integer, found ${typeName(x)}`);
    const n = x as number;
    if (!Number.isInteger(n)) fail(`"${field}"[${i}] is ${n}, not an integer`);
    if (n < 0) fail(`"${field}"[${i}] is ${n}, which is negative`);
    if (!Number.isSafeInteger(n)) fail(`"${field}"[${i}] is ${n}, too large (above 2^53 - 1)`);
    return n;
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

/** The header's JSON, parsed; a JSON error becomes a format error at its byte in the file. */
function parseHeaderJson(text: string, source: string): JsonValue {
  try {
    return parseStrictJson(text, source, "header", {
      maxRootKeys: {
        max: MAX_TENSORS + 1,
        why: `at most ${MAX_TENSORS} tensors and "__metadata__"`,
      },
    });
  } catch (err) {
    if (!(err instanceof JsonFormatError)) throw err;
    const byte = 8 + new TextEncoder().encode(text.slice(0, err.position)).length;
    throw new SafetensorsFormatError(source, err.problem, undefined, byte);
  }
}

/** Check one tensor's header entry against the dtype table and the data buffer. */
function readEntry(
  name: string,
  raw: JsonValue | undefined,
  dataLength: number,
  source: string,
): SafetensorsEntry {
  const fail = (problem: string): never => {
    throw new SafetensorsFormatError(source, problem, name);
  };
  if (!isJsonObject(raw)) {
    return fail(`entry must be an object {dtype, shape, data_offsets}, found ${typeName(raw)}`);
  }
  for (const k of ["dtype", "shape", "data_offsets"]) {
    if (!(k in raw)) fail(`entry is missing "${k}"`);
  }
  for (const k of Object.keys(raw)) {
    if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
      fail(`entry has unexpected key ${JSON.stringify(k)} (allowed: dtype, shape, data_offsets)`);
    }
  }
  const dtype = raw.dtype;
  if (typeof dtype !== "string") return fail(`"dtype" must be a string, found ${typeName(dtype)}`);
  const info = DTYPES[dtype];
  if (info === undefined) {
    const known = Object.keys(DTYPES).join(", ");
    return fail(`unknown dtype ${JSON.stringify(dtype)} (known: ${known})`);
  }
  const shape = readIntList(raw.shape, source, name, "shape");
  const offsets = readIntList(raw.data_offsets, source, name, "data_offsets");
  if (offsets.length !== 2) {
    fail(`"data_offsets" must hold exactly 2 integers [begin, end], found ${offsets.length}`);
  }
  const [begin, end] = offsets as [number, number];
  const span = `data_offsets [${begin}, ${end}]`;
  if (begin > end) fail(`${span} has begin > end`);
  if (end > dataLength) fail(`${span} run past the end of the ${dataLength}-byte data buffer`);
  // Element count, bounded by the buffer so the product never leaves exact integer range.
  let count = 1;
  for (const d of shape) {
    count *= d;
    if (count > dataLength) break;
  }
  if (shape.includes(0)) count = 0;
  const need = count * info.size;
  if (need !== end - begin) {
    const needText =
      count > dataLength ? `more than the ${dataLength}-byte data buffer` : `${need} bytes`;
    const each = `${dtype} (${info.size} bytes each)`;
    const has = `${span} span ${end - begin}`;
    fail(`shape ${shapeToString(shape)} of ${each} needs ${needText} but ${has}`);
  }
  return { name, dtype, shape, dataOffsets: [begin, end] };
}

/**
 * Read and validate the header of a safetensors file without converting any data.
 * Checks everything {@link readSafetensors} checks except whether the dtypes can be converted.
 *
 * @param source  the file name (or another label) used in error messages.
 * @throws SafetensorsFormatError for every structural problem.
 */
export function readSafetensorsHeader(bytes: Uint8Array, source = "<bytes>"): SafetensorsHeader {
  requireLittleEndian();
  const fail = (problem: string, byteOffset: number, tensor?: string): never => {
    throw new SafetensorsFormatError(source, problem, tensor, byteOffset);
  };
  if (bytes.length < 8) {
    fail(`file is ${bytes.length} bytes long, shorter than the 8-byte header length prefix`, 0);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte bound`, 0);
  }
  const headerLength = Number(n64);
  if (8 + headerLength > bytes.length) {
    const follow = `the ${bytes.length - 8} bytes that follow the length prefix`;
    fail(`header length ${headerLength} is larger than ${follow} (file truncated?)`, 0);
  }
  if (headerLength < 2) fail(`header length ${headerLength} is too short to hold a JSON object`, 0);
  const headerBytes = bytes.subarray(8, 8 + headerLength);
  const bad = firstInvalidUtf8(headerBytes);
  if (bad >= 0) {
    const hex = headerBytes[bad]!.toString(16).padStart(2, "0");
    fail(`header is not valid UTF-8 (bad byte 0x${hex} at header offset ${bad})`, 8 + bad);
  }
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(headerBytes);
  if (text[0] !== "{") fail(`header must start with '{', found ${describeChar(text, 0)}`, 8);
  const header = parseHeaderJson(text, source);
  if (!isJsonObject(header)) {
    return fail(`header must be a JSON object, found ${typeName(header)}`, 8);
  }

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const metadata = Object.create(null) as Record<string, string>;
  const entries: SafetensorsEntry[] = [];
  for (const name of Object.keys(header)) {
    const raw = header[name];
    if (name !== "__metadata__") {
      entries.push(readEntry(name, raw, dataLength, source));
      continue;
    }
    if (!isJsonObject(raw)) {
      return fail(`"__metadata__" must be an object of strings, found ${typeName(raw)}`, 8);
    }
    for (const k of Object.keys(raw)) {
      const v = raw[k];
      if (typeof v !== "string") {
        const key = JSON.stringify(k);
        fail(`"__metadata__" value for key ${key} must be a string, found ${typeName(v)}`, 8);
      }
      metadata[k] = v as string;
    }
  }

  // Spans must tile the buffer: sorted by offset, each begins where the previous ended.
  const sorted = [...entries].sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let cursor = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of sorted) {
    const [begin, end] = e.dataOffsets;
    const span = `data_offsets [${begin}, ${end}]`;
    if (begin < cursor) {
      const [pb, pe] = previous!.dataOffsets;
      const other = `tensor ${JSON.stringify(previous!.name)} at [${pb}, ${pe}]`;
      fail(`${span} overlap ${other}`, dataStart + begin, e.name);
    }
    if (begin > cursor) {
      const hole = `bytes [${cursor}, ${begin}) of the data buffer belong to no tensor`;
      fail(`${span} leave a hole: ${hole}`, dataStart + cursor, e.name);
    }
    cursor = end;
    if (end > begin) previous = e;
  }
  if (cursor !== dataLength) {
    const rest = `bytes [${cursor}, ${dataLength}) at the end of the data buffer`;
    fail(`${rest} belong to no tensor`, dataStart + cursor);
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

/** Copy `len` bytes at `start` to a fresh buffer: the tensor owns its data, alignment is moot. */
function copyBytes(bytes: Uint8Array, start: number, len: number): ArrayBuffer {
  const buf = new ArrayBuffer(len);
  new Uint8Array(buf).set(bytes.subarray(start, start + len));
  return buf;
}

/** I64 values as i32, refusing (at its byte in the file) the first one that does not fit. */
function narrowI64(
  buf: ArrayBuffer,
  e: SafetensorsEntry,
  start: number,
  source: string,
): Int32Array {
  const src = new BigInt64Array(buf);
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < -2147483648n || v > 2147483647n) {
      const at = new Tensor("i32", e.shape, new Int32Array(src.length)).unravel(i);
      const index = shapeToString(at);
      const why = "I64 is read as i32 only when every value fits";
      const problem = `I64 value ${v} at index ${index} does not fit in i32 (${why})`;
      throw new SafetensorsFormatError(source, problem, e.name, start + 8 * i);
    }
    out[i] = Number(v);
  }
  return out;
}

function decode(
  bytes: Uint8Array,
  h: SafetensorsHeader,
  e: SafetensorsEntry,
  source: string,
): Tensor {
  const info = DTYPES[e.dtype]!;
  const start = h.dataStart + e.dataOffsets[0];
  if (info.to === null) {
    const problem = `unsupported dtype ${e.dtype} (this reader converts ${CONVERTED.join(", ")})`;
    throw new SafetensorsFormatError(source, problem, e.name, start);
  }
  const buf = copyBytes(bytes, start, e.dataOffsets[1] - e.dataOffsets[0]);
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
    case "I64":
      data = narrowI64(buf, e, start, source);
      break;
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
      throw new SafetensorsFormatError(source, `unsupported dtype ${e.dtype}`, e.name, start);
  }
  return new Tensor(info.to, e.shape, data);
}

/**
 * Parse a safetensors file.
 *
 * F64, F32 and I32 are read as they are; I64 becomes i32 when every value fits (otherwise an
 * error names the first value that does not); F16 and BF16 become f32 (exactly). Other dtypes
 * raise "unsupported dtype" unless `opts.skip` leaves their tensors out. The tensors get their own
 * copies of the bytes, so any alignment of `bytes` works and later changes to `bytes` do not
 * reach them.
 *
 * @param source  the file name (or another label) used in error messages.
 * @throws SafetensorsFormatError for every problem with the file.
 * @example
 * readSafetensors(writeSafetensors({ x: Tensor.from([1, 2]) })).tensors.get("x")?.shape // [2]
 */
export function readSafetensors(
  bytes: Uint8Array,
  source = "<bytes>",
  opts: ReadOptions = {},
): SafetensorsContents {
  const h = readSafetensorsHeader(bytes, source);
  const tensors = new Map<string, Tensor>();
  for (const e of h.entries) {
    if (opts.skip?.(e.name) !== true) tensors.set(e.name, decode(bytes, h, e, source));
  }
  return { tensors, metadata: h.metadata as Record<string, string> };
}

/**
 * Read a safetensors file from disk (regular files only, at most MAX_FILE_BYTES of io/files.ts); a
 * missing or unreadable file is a {@link SafetensorsFormatError} too.
 */
export function readSafetensorsFile(path: string, opts: ReadOptions = {}): SafetensorsContents {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(path);
  } catch (err) {
    if (err instanceof FileAccessError) throw new SafetensorsFormatError(path, err.problem);
    throw err;
  }
  return readSafetensors(bytes, path, opts);
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
 * @throws SafetensorsFormatError for a reserved name, a non-Tensor value or a non-string metadata
 *   value.
 * @example
 * writeSafetensors({ x: Tensor.from([1, 2]) }).length // 8 + 64-byte header + 16 bytes of data
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  metadata?: Readonly<Record<string, string>>,
  source = "<writeSafetensors>",
): Uint8Array {
  requireLittleEndian();
  const map =
    tensors instanceof Map ? tensors : new Map(Object.entries(tensors as Record<string, Tensor>));
  const names = [...map.keys()].sort(compareCodePoints);
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareCodePoints); // as Python's dict(sorted(...))
    const fields: string[] = [];
    for (const k of keys) {
      const v = metadata[k];
      const fail = (problem: string): never => {
        throw new SafetensorsFormatError(source, `metadata ${problem}`);
      };
      if (RESERVED_KEYS.includes(k)) fail(`key ${JSON.stringify(k)} is reserved`);
      if (typeof v !== "string") {
        fail(`value for ${JSON.stringify(k)} must be a string, found ${typeName(v)}`);
      }
      fields.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${fields.join(",")}}`);
  }
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const name of names) {
    const t = map.get(name);
    if (name === "__metadata__" || RESERVED_KEYS.includes(name)) {
      const problem = "the name is reserved and cannot be a tensor name";
      throw new SafetensorsFormatError(source, problem, name);
    }
    if (!(t instanceof Tensor)) {
      const problem = `value must be a Tensor, found ${typeName(t)}`;
      throw new SafetensorsFormatError(source, problem, name);
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${WRITE_DTYPE[t.dtype]}","shape":[${t.shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + bytes.length}]}`,
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
