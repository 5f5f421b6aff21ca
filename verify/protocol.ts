/**
 * The JSON-lines process protocol (`docs/PROTOCOL.md`), wire side: message types, tensor
 * encoding and decoding with validation, and the checks of a `hello` answer.
 *
 * A tensor on the wire is `{"dtype": "f64" | "f32" | "i32", "shape": [...], "data": [...]}` with
 * `data` flat and row-major. JSON has no NaN or infinities, so they travel as the strings
 * `"NaN"`, `"Infinity"`, `"-Infinity"`. Numbers are written in their shortest round-trip form
 * (ECMAScript `Number.prototype.toString`), so every float64 survives the trip bit for bit;
 * `-0` is written `-0.0` because some JSON readers (Python's) turn `-0` into the integer 0.
 *
 * Binary tensors (negotiated in `hello`, docs/PROTOCOL.md "Binary tensors"): a message line may
 * carry a top-level `"frames": [bytes, ...]`; that many raw byte frames follow the line's newline,
 * back to back, and a tensor `{"dtype", "shape", "frame": k}` takes its data from frame `k`
 * (little-endian, row-major, exactly `product(shape)` × 8, 4 or 4 bytes).
 */
import { endianness } from "node:os";
import { ImplementationError } from "../autodiff/implementation.js";
import type { FormulaConfig } from "../autodiff/implementation.js";
import { DTYPES, Tensor, arrayFor, isDType, shapeToString } from "../autodiff/tensor.js";
import type { DType, FloatDType, NamedTensors } from "../autodiff/tensor.js";
import type {
  Capabilities,
  DimRule,
  FormulaCapability,
  ValueRule,
} from "../autodiff/capabilities.js";

/** The protocol version this client speaks; sent in `hello` as `{"protocol": 1}`. */
export const PROTOCOL_VERSION = 1;

/**
 * This host can read and write little-endian frames without swapping bytes, so it offers binary
 * tensors in `hello`. (A big-endian host keeps to JSON.)
 */
export const BINARY_HOST = endianness() === "LE";

/** Bytes per element of each dtype in a binary frame. */
const ITEM_BYTES: Readonly<Record<DType, number>> = { f64: 8, f32: 4, i32: 4 };

/** Methods a request may name. `shutdown` is optional for implementations (see `HelloResult.shutdown`). */
export type Method = "hello" | "forward" | "backward" | "shutdown";

/** A JSON number, or one of the three strings that stand for the values JSON cannot spell. */
export type WireNumber = number | "NaN" | "Infinity" | "-Infinity";

/** A tensor as it travels. */
export interface TensorJSON {
  dtype: DType;
  shape: number[];
  data: WireNumber[];
}

/** The validated answer to `hello`. */
export interface HelloResult {
  /** Shown in reports, e.g. `"numpy-reference"`. */
  readonly name: string;
  /** Registry names of the formulas the program computes. */
  readonly formulas: readonly string[];
  /** `true`: every listed formula has a backward; `false`: none; a list: those formulas. */
  readonly backward: boolean | readonly string[];
  /** dtypes the program computes in (`"f64"`, `"f32"`; `"i32"` is accepted but unusual). */
  readonly dtypes: readonly DType[];
  /** The program answers a `shutdown` request before exiting (optional, default false). */
  readonly shutdown: boolean;
  /** The program accepted binary tensors (`"binary": true`; optional, default false: JSON numbers). */
  readonly binary: boolean;
  /**
   * The program keeps tensors between requests (`"keep": true`, with binary; docs/PROTOCOL.md
   * "Kept tensors").
   */
  readonly keep: boolean;
  /** Per formula, the configurations it supports (optional; absent: everything). */
  readonly capabilities?: Capabilities;
  /** Every field of the answer as sent, including ones this client does not know. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * A structural problem with a protocol message: a malformed tensor, a `hello` answer that is
 * not what the protocol says. It is an `ImplementationError`, so callers that catch those also
 * catch these.
 */
export class ProtocolError extends ImplementationError {
  override name = "ProtocolError";
  constructor(message: string, detail?: { stderrTail?: string; line?: string }) {
    super(message, { ...detail, kind: "protocol" });
  }
}

/** Largest count of characters quoted from an offending line in an error message. */
const QUOTE_CHARS = 200;

/** The first `QUOTE_CHARS` characters of a line, JSON-quoted, with the full length when cut. */
export function quoteLine(line: string): string {
  if (line.length <= QUOTE_CHARS) return JSON.stringify(line);
  return `${JSON.stringify(line.slice(0, QUOTE_CHARS))}… (${line.length} characters in all)`;
}

/** A short, bounded description of any JSON value for error messages. */
function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "object") {
    const text = JSON.stringify(v);
    return `an object ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`;
  }
  if (typeof v === "string")
    return `the string ${v.length > 80 ? `${JSON.stringify(v.slice(0, 80))}…` : JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ------------------------------------------------------------------------------ decoding

const TENSOR_KEYS = new Set(["dtype", "shape", "data"]);
const FRAME_TENSOR_KEYS = new Set(["dtype", "shape", "data", "frame"]);

/**
 * A tensor from its wire form, validated. Every problem throws a `ProtocolError` whose message
 * starts with `where`, e.g. `"output y of formula softmax: data has 11 numbers but shape [3, 4]
 * needs 12"`.
 *
 * - `dtype` must be `"f64"`, `"f32"` or `"i32"`; `shape` a list of non-negative integers;
 *   `data` a flat list of exactly `product(shape)` entries.
 * - Entries are JSON numbers or the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (floats only).
 * - `f32` data may be written with float64 precision: each value is rounded to nearest float32.
 * - `i32` data must be integers in [−2³¹, 2³¹ − 1].
 *
 * @example tensorFromJSON({ dtype: "f64", shape: [2], data: [1, "NaN"] }, "input x").data // Float64Array [1, NaN]
 */
export function tensorFromJSON(
  obj: unknown,
  where: string,
  frames?: readonly Uint8Array[],
): Tensor {
  if (!isPlainObject(obj)) {
    throw new ProtocolError(
      `${where}: a tensor must be an object {"dtype", "shape", ` +
        `"data"${frames ? ' or "frame"' : ""}}, got ${describeValue(obj)}`,
    );
  }
  const keys = frames ? FRAME_TENSOR_KEYS : TENSOR_KEYS;
  for (const key of Object.keys(obj)) {
    if (!keys.has(key)) {
      const hint =
        key === "frame"
          ? ' ("frame" needs binary tensors, which were not negotiated in hello)'
          : "";
      throw new ProtocolError(
        `${where}: unknown key ${JSON.stringify(key)} in a tensor (allowed: ` +
          `${[...keys].map((k) => `"${k}"`).join(", ")})${hint}`,
      );
    }
  }
  const { dtype, shape, data } = obj;
  if (!isDType(dtype)) {
    const allowed = DTYPES.map((d) => `"${d}"`).join(", ");
    const got = dtype === undefined ? "is missing" : `is ${describeValue(dtype)}`;
    throw new ProtocolError(`${where}: dtype ${got}; it must be one of ${allowed}`);
  }
  if (!Array.isArray(shape)) {
    throw new ProtocolError(
      `${where}: shape must be a list of non-negative integers, got ${describeValue(shape)}`,
    );
  }
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new ProtocolError(
        `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative ` +
          `integers (axis ${i} is ${describeValue(d)})`,
      );
    }
    size *= d;
  }
  if (frames !== undefined && "frame" in obj) {
    if (data !== undefined)
      throw new ProtocolError(`${where}: a tensor has either "data" or "frame", not both`);
    return tensorFromFrame(obj["frame"], dtype, shape as number[], size, frames, where);
  }
  if (!Array.isArray(data)) {
    throw new ProtocolError(
      `${where}: data must be a flat list of numbers (row-major), got ${describeValue(data)}`,
    );
  }
  if (data.length !== size) {
    const nested =
      data.length > 0 && Array.isArray(data[0])
        ? " (data must be flat, row-major; nested lists are not accepted)"
        : "";
    throw new ProtocolError(
      `${where}: data has ${data.length} numbers but shape ${shapeToString(shape as number[])} needs ${size}${nested}`,
    );
  }
  const out = arrayFor(dtype, size);
  if (dtype === "i32") {
    for (let i = 0; i < size; i++) {
      const v: unknown = data[i];
      if (typeof v !== "number" || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
        throw new ProtocolError(
          `${where}: i32 data entry ${i} is ${describeValue(v)}; i32 tensors hold ` +
            `integers in [-2147483648, 2147483647]`,
        );
      }
      out[i] = v;
    }
  } else {
    for (let i = 0; i < size; i++) {
      const v: unknown = data[i];
      if (typeof v === "number") out[i] = v;
      else if (v === "NaN") out[i] = NaN;
      else if (v === "Infinity") out[i] = Infinity;
      else if (v === "-Infinity") out[i] = -Infinity;
      else {
        throw new ProtocolError(
          `${where}: data entry ${i} is ${describeValue(v)}; entries must be ` +
            `numbers or one of "NaN", "Infinity", ` +
            `"-Infinity"${Array.isArray(v) ? " (data must be flat, row-major)" : ""}`,
        );
      }
    }
  }
  return new Tensor(dtype, shape as number[], out);
}

/**
 * A tensor whose data is binary frame `index`: its bytes, little-endian, must be exactly
 * `size × ITEM_BYTES[dtype]` long. The bits are kept as sent (NaN payloads included). The
 * tensor's data is a view on the frame when it is aligned, else a copy.
 */
function tensorFromFrame(
  index: unknown,
  dtype: DType,
  shape: number[],
  size: number,
  frames: readonly Uint8Array[],
  where: string,
): Tensor {
  if (
    typeof index !== "number" ||
    !Number.isSafeInteger(index) ||
    index < 0 ||
    index >= frames.length
  ) {
    const have =
      frames.length === 0
        ? "the message has no frames"
        : `the message has frames 0 to ${frames.length - 1}`;
    throw new ProtocolError(
      `${where}: "frame" is ${describeValue(index)}; it must be the index of a frame that follows the line (${have})`,
    );
  }
  const bytes = frames[index]!;
  const item = ITEM_BYTES[dtype];
  if (bytes.byteLength !== size * item) {
    throw new ProtocolError(
      `${where}: frame ${index} has ${bytes.byteLength} bytes but ${dtype} ` +
        `shape ${shapeToString(shape)} needs ${size * item} (${size} × ${item})`,
    );
  }
  let buffer = bytes.buffer;
  let offset = bytes.byteOffset;
  if (offset % item !== 0) {
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    buffer = copy.buffer;
    offset = 0;
  }
  const data =
    dtype === "f64"
      ? new Float64Array(buffer, offset, size)
      : dtype === "f32"
        ? new Float32Array(buffer, offset, size)
        : new Int32Array(buffer, offset, size);
  return new Tensor(dtype, shape, data);
}

/**
 * Every tensor of a `{name: tensor}` object, each validated with `where(name)` as its location.
 * `what` names the object itself in errors (e.g. `"outputs of formula softmax"`). With `frames`
 * (binary tensors negotiated), a tensor may take its data from a frame.
 */
export function namedTensorsFromJSON(
  obj: unknown,
  what: string,
  where: (name: string) => string,
  frames?: readonly Uint8Array[],
): NamedTensors {
  if (!isPlainObject(obj))
    throw new ProtocolError(`${what} must be an object {name: tensor}, got ${describeValue(obj)}`);
  const out: NamedTensors = {};
  for (const [name, value] of Object.entries(obj))
    out[name] = tensorFromJSON(value, where(name), frames);
  return out;
}

/**
 * A message's top-level `"frames"`, validated: a list of byte counts, each a non-negative integer
 * no larger than `maxFrameBytes`. `where` starts the error message.
 */
export function checkFrameLengths(v: unknown, where: string, maxFrameBytes: number): number[] {
  if (!Array.isArray(v))
    throw new ProtocolError(
      `${where}: "frames" must be a list of byte counts, got ${describeValue(v)}`,
    );
  v.forEach((n: unknown, i) => {
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      throw new ProtocolError(
        `${where}: "frames" entry ${i} is ${describeValue(n)}; it must be a byte count (a non-negative integer)`,
      );
    }
    if (n > maxFrameBytes)
      throw new ProtocolError(
        `${where}: "frames" entry ${i} is ${n} bytes, more than the limit of ${maxFrameBytes} bytes per frame`,
      );
  });
  return v as number[];
}

// ------------------------------------------------------------------------------ encoding

/** One float in its wire spelling (shortest round-trip; `-0.0`; the three special strings). */
export function wireFloat(v: number): string {
  if (v !== v) return '"NaN"';
  if (v === Infinity) return '"Infinity"';
  if (v === -Infinity) return '"-Infinity"';
  if (v === 0 && 1 / v < 0) return "-0.0";
  return String(v);
}

function needsSpelling(data: Float64Array | Float32Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // NaN, ±Infinity and -0 are the values JSON.stringify would spell wrongly.
    if (v - v !== 0 || (v === 0 && 1 / v < 0)) return true;
  }
  return false;
}

/** Data as the JSON text of a flat list. */
function encodeData(t: Tensor): string {
  const data = t.data;
  // JSON.stringify of a plain number array is V8's fast path (shortest round-trip digits).
  if (t.dtype === "i32" || !needsSpelling(data as Float64Array | Float32Array))
    return JSON.stringify(Array.from(data));
  const parts = new Array<string>(data.length);
  for (let i = 0; i < data.length; i++) parts[i] = wireFloat(data[i]!);
  return `[${parts.join(",")}]`;
}

/**
 * The JSON text of a tensor in wire form. float32 values are written as the float64 they equal
 * (exact; a reader that rounds to float32 gets the same value back).
 */
export function encodeTensor(t: Tensor): string {
  return `{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data":${encodeData(t)}}`;
}

/** The wire form of a tensor as a plain object (non-finite values as their strings; `-0` stays a number). */
export function tensorToJSON(t: Tensor): TensorJSON {
  const data: WireNumber[] = new Array<WireNumber>(t.size);
  for (let i = 0; i < t.size; i++) {
    const v = t.data[i]!;
    data[i] = v !== v ? "NaN" : v === Infinity ? "Infinity" : v === -Infinity ? "-Infinity" : v;
  }
  return { dtype: t.dtype, shape: [...t.shape], data };
}

/** The bytes of a tensor's data as they go into a frame (a view, no copy; little-endian on a `BINARY_HOST`). */
function frameOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** The wire form of a tensor whose data is frame `index`. */
function encodeFrameTensor(t: Tensor, index: number): string {
  return `{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"frame":${index}}`;
}

/**
 * The JSON text of `{name: tensor}` as a list of pieces whose concatenation is the object. Kept
 * in pieces so a request can be written to a pipe without building one string larger than
 * V8's string limit (~512 MiB). With `frames` (binary tensors negotiated), each tensor's data is
 * appended to `frames` and the tensor refers to it by index; with `kept` too (negotiated), a
 * large tensor the program still keeps from the last request is sent as a reference instead.
 */
export function encodeNamedTensors(
  tensors: NamedTensors,
  where: (name: string) => string,
  frames?: Uint8Array[],
  kept?: KeptTensors,
): string[] {
  const parts: string[] = ["{"];
  let first = true;
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t instanceof Tensor))
      throw new ProtocolError(`${where(name)}: expected a Tensor, got ${describeValue(t)}`);
    let text: string;
    if (frames !== undefined && kept !== undefined) text = kept.encode(t, frames);
    else if (frames !== undefined) {
      text = encodeFrameTensor(t, frames.length);
      frames.push(frameOf(t));
    } else text = encodeTensor(t);
    parts.push(`${first ? "" : ","}${JSON.stringify(name)}:`, text);
    first = false;
  }
  parts.push("}");
  return parts;
}

/** What the client remembers of a tensor it asked the program to keep. */
interface KeptEntry {
  readonly id: string;
  readonly dtype: DType;
  readonly shape: string;
  readonly digest: string;
}

/**
 * The client's side of kept tensors (docs/PROTOCOL.md, "Kept tensors"): a tensor of at least
 * `minBytes` goes in a frame with `"keep": id` the first time, and as `{"dtype", "shape", "ref":
 * id}` while the program keeps it: from the request that sent it until the first request that
 * neither keeps nor references it. A tensor is "the same" when its data is the same typed array
 * with the same dtype, shape and content digest, so one changed in place is sent again.
 */
export class KeptTensors {
  private nextId = 1;
  private readonly seen = new WeakMap<ArrayBufferView, KeptEntry>();
  /** Ids the program keeps after the last answered request. */
  private held = new Set<string>();
  /** Ids the request being encoded keeps or references. */
  private using = new Set<string>();

  constructor(readonly minBytes = KEEP_MIN_BYTES) {}

  /** The wire text of `t` in the request being encoded (its frame, if any, goes into `frames`). */
  encode(t: Tensor, frames: Uint8Array[]): string {
    if (t.data.byteLength < this.minBytes) {
      frames.push(frameOf(t));
      return encodeFrameTensor(t, frames.length - 1);
    }
    const shape = JSON.stringify(t.shape);
    const digest = contentDigest(t.data);
    const prev = this.seen.get(t.data);
    const same =
      prev !== undefined &&
      prev.dtype === t.dtype &&
      prev.shape === shape &&
      prev.digest === digest;
    if (same && this.held.has(prev.id)) {
      this.using.add(prev.id);
      return `{"dtype":"${t.dtype}","shape":${shape},"ref":"${prev.id}"}`;
    }
    const id = `t${this.nextId++}`;
    this.seen.set(t.data, { id, dtype: t.dtype, shape, digest });
    this.using.add(id);
    frames.push(frameOf(t));
    return `{"dtype":"${t.dtype}","shape":${shape},"frame":${frames.length - 1},"keep":"${id}"}`;
  }

  /**
   * The request was answered (`ok`) or failed: the program now keeps what it kept or referenced,
   * or, after a failure, nothing this client will reference again.
   */
  settle(ok: boolean): void {
    this.held = ok ? this.using : new Set();
    this.using = new Set();
  }
}

/** Tensors below 1 MiB always travel in full: a reference would save little. */
export const KEEP_MIN_BYTES = 1 << 20;

/** A 64-bit digest (two 32-bit multiplicative hashes) of an array's bytes, as 16 hex digits. */
function contentDigest(a: ArrayBufferView): string {
  const w = new Int32Array(a.buffer, a.byteOffset, a.byteLength >>> 2);
  let h1 = 0x811c9dc5 ^ a.byteLength,
    h2 = 0x9e3779b9;
  for (let i = 0; i < w.length; i++) {
    const x = w[i]!;
    h1 = Math.imul(h1 ^ x, 0x01000193);
    h2 = Math.imul(h2 + x, 0x85ebca77) ^ (h2 >>> 13);
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

/** The JSON text of a config, refusing values JSON cannot carry (NaN, ±Infinity, non-scalars). */
export function encodeConfig(config: FormulaConfig, where: string): string {
  if (!isPlainObject(config))
    throw new ProtocolError(
      `${where}: config must be an object of numbers, strings and booleans, got ${describeValue(config)}`,
    );
  for (const [k, v] of Object.entries(config)) {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new ProtocolError(
        `${where}: config ${k} is ${String(v)}; hyperparameters must be finite numbers, strings or booleans`,
      );
    }
    if (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean") {
      throw new ProtocolError(
        `${where}: config ${k} is ${describeValue(v)}; hyperparameters must be numbers, strings or booleans`,
      );
    }
  }
  return JSON.stringify(config);
}

/**
 * The pieces of one request line (without the newline). With `frames`, the line declares their
 * byte counts (`"frames": [...]`); the frames themselves follow the newline.
 */
export function encodeRequest(
  id: number,
  method: Method,
  params: { readonly [key: string]: string | readonly string[] },
  frames?: readonly Uint8Array[],
): string[] {
  // params values are already JSON text (or pieces of it): tensors are large, the rest is small.
  const declared =
    frames !== undefined && frames.length > 0
      ? `"frames":${JSON.stringify(frames.map((f) => f.byteLength))},`
      : "";
  const parts: string[] = [`{"id":${id},${declared}"method":${JSON.stringify(method)},"params":{`];
  let first = true;
  for (const [key, value] of Object.entries(params)) {
    parts.push(`${first ? "" : ","}${JSON.stringify(key)}:`);
    if (typeof value === "string") parts.push(value);
    else parts.push(...value);
    first = false;
  }
  parts.push("}}");
  return parts;
}

// ------------------------------------------------------------------------------ responses

/** A parsed response line: exactly one of `result` and `error`. */
export type Response =
  | { readonly id: number; readonly result: Record<string, unknown> }
  | {
      readonly id: number;
      readonly error: { readonly message: string; readonly [key: string]: unknown };
    };

/**
 * The structure of a response line already parsed as JSON; `undefined` plus a reason when it is
 * not `{"id": integer, "result": {...}}` or `{"id": integer, "error": {"message": string}}`.
 */
export function checkResponse(v: unknown): { response: Response } | { problem: string } {
  if (!isPlainObject(v))
    return { problem: `a response must be a JSON object, got ${describeValue(v)}` };
  const id = v["id"];
  if (typeof id !== "number" || !Number.isSafeInteger(id))
    return { problem: `a response needs an integer "id", got ${describeValue(id)}` };
  const hasResult = "result" in v;
  const hasError = "error" in v;
  if (hasResult === hasError) {
    return {
      problem:
        `response ${id} must have exactly one of "result" and "error" (it has ` +
        `${hasResult ? "both" : "neither"})`,
    };
  }
  if (hasError) {
    const e = v["error"];
    if (isPlainObject(e) && typeof e["message"] === "string")
      return { response: { id, error: e as { message: string } } };
    // A malformed error is still an error: pass on whatever it says.
    return { response: { id, error: { message: typeof e === "string" ? e : JSON.stringify(e) } } };
  }
  const result = v["result"];
  if (!isPlainObject(result))
    return { problem: `response ${id}: "result" must be an object, got ${describeValue(result)}` };
  return { response: { id, result } };
}

/**
 * A `hello` result, validated: `name` a non-empty string, `formulas` a list of strings,
 * `backward` a boolean or a list of listed formulas, `dtypes` a list of known dtype names,
 * `protocol` (when present) equal to `PROTOCOL_VERSION`, `shutdown` (when present) a boolean.
 */
export function checkHello(result: Record<string, unknown>, where: string): HelloResult {
  const { name, formulas, backward, dtypes, protocol, shutdown, capabilities, binary, keep } =
    result;
  if (protocol !== undefined && protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `${where}: protocol ${describeValue(protocol)} is not supported (this ` +
        `client speaks protocol ${PROTOCOL_VERSION})`,
    );
  }
  if (typeof name !== "string" || name.length === 0) {
    throw new ProtocolError(
      `${where}: "name" must be a non-empty string, got ${describeValue(name)}`,
    );
  }
  const stringList = (v: unknown, field: string): string[] => {
    if (!Array.isArray(v))
      throw new ProtocolError(
        `${where}: "${field}" must be a list of formula names (strings), got ${describeValue(v)}`,
      );
    const seen = new Set<string>();
    v.forEach((s: unknown, i) => {
      if (typeof s !== "string" || s.length === 0) {
        throw new ProtocolError(
          `${where}: "${field}" must be a list of formula names (strings); entry ${i} is ${describeValue(s)}`,
        );
      }
      if (seen.has(s))
        throw new ProtocolError(`${where}: "${field}" lists ${JSON.stringify(s)} twice`);
      seen.add(s);
    });
    return v as string[];
  };
  const formulaList = stringList(formulas, "formulas");
  let backwardValue: boolean | string[];
  if (typeof backward === "boolean") backwardValue = backward;
  else if (Array.isArray(backward)) {
    backwardValue = stringList(backward, "backward");
    const missing = backwardValue.filter((f) => !formulaList.includes(f));
    if (missing.length > 0) {
      throw new ProtocolError(
        `${where}: "backward" lists ${missing.map((f) => JSON.stringify(f)).join(", ")}, not in "formulas"`,
      );
    }
  } else {
    throw new ProtocolError(
      `${where}: "backward" must be true, false or a list of formula names, got ${describeValue(backward)}`,
    );
  }
  if (!Array.isArray(dtypes) || dtypes.length === 0) {
    throw new ProtocolError(
      `${where}: "dtypes" must be a non-empty list of dtype names ` +
        `(${DTYPES.map((d) => `"${d}"`).join(", ")}), got ` +
        `${describeValue(dtypes)}`,
    );
  }
  dtypes.forEach((d: unknown, i) => {
    if (!isDType(d)) {
      throw new ProtocolError(
        `${where}: "dtypes" entry ${i} is ${describeValue(d)}, not a dtype name ` +
          `(${DTYPES.map((x) => `"${x}"`).join(", ")})`,
      );
    }
  });
  if (shutdown !== undefined && typeof shutdown !== "boolean") {
    throw new ProtocolError(
      `${where}: "shutdown" must be a boolean when present, got ${describeValue(shutdown)}`,
    );
  }
  if (binary !== undefined && typeof binary !== "boolean") {
    throw new ProtocolError(
      `${where}: "binary" must be a boolean when present, got ${describeValue(binary)}`,
    );
  }
  if (keep !== undefined && typeof keep !== "boolean") {
    throw new ProtocolError(
      `${where}: "keep" must be a boolean when present, got ${describeValue(keep)}`,
    );
  }
  const caps =
    capabilities === undefined
      ? undefined
      : checkCapabilities(capabilities, formulaList, dtypes as DType[], where);
  return {
    name,
    ...(caps !== undefined ? { capabilities: caps } : {}),
    formulas: Object.freeze([...formulaList]),
    backward:
      typeof backwardValue === "boolean" ? backwardValue : Object.freeze([...backwardValue]),
    dtypes: Object.freeze([...(dtypes as DType[])]),
    shutdown: shutdown === true,
    binary: binary === true,
    keep: keep === true,
    raw: result,
  };
}

/**
 * A `hello` answer's `capabilities`: an object from listed formula names to
 * `{"dtypes": [...], "config": {name: [values] | {"min", "max"}}, "dims": {dim: {"min", "max", "equals"}}}`,
 * every part optional (docs/PROTOCOL.md).
 */
function checkCapabilities(
  v: unknown,
  formulas: readonly string[],
  dtypes: readonly DType[],
  where: string,
): Capabilities {
  const at = `${where}: "capabilities"`;
  if (!isPlainObject(v))
    throw new ProtocolError(
      `${at} must be an object from formula names to capabilities, got ${describeValue(v)}`,
    );
  const out: Record<string, FormulaCapability> = {};
  const range = (r: Record<string, unknown>, what: string, keys: readonly string[]): void => {
    for (const k of Object.keys(r))
      if (!keys.includes(k))
        throw new ProtocolError(
          `${what} has an unknown field ${JSON.stringify(k)} (known: ${keys.join(", ")})`,
        );
    for (const k of ["min", "max"]) {
      if (r[k] !== undefined && (typeof r[k] !== "number" || !Number.isFinite(r[k])))
        throw new ProtocolError(
          `${what}: "${k}" must be a finite number, got ${describeValue(r[k])}`,
        );
    }
  };
  for (const [f, c] of Object.entries(v)) {
    const fat = `${at}.${f}`;
    if (!formulas.includes(f))
      throw new ProtocolError(`${at} names ${JSON.stringify(f)}, not in "formulas"`);
    if (!isPlainObject(c))
      throw new ProtocolError(
        `${fat} must be an object with "dtypes", "config" and/or "dims", got ${describeValue(c)}`,
      );
    for (const k of Object.keys(c))
      if (!["dtypes", "config", "dims"].includes(k))
        throw new ProtocolError(
          `${fat} has an unknown field ${JSON.stringify(k)} (known: dtypes, config, dims)`,
        );
    const cap: {
      dtypes?: FloatDType[];
      config?: Record<string, ValueRule>;
      dims?: Record<string, DimRule>;
    } = {};
    if (c["dtypes"] !== undefined) {
      const ds = c["dtypes"];
      if (
        !Array.isArray(ds) ||
        ds.length === 0 ||
        !ds.every((d) => (d === "f64" || d === "f32") && dtypes.includes(d))
      ) {
        throw new ProtocolError(
          `${fat}.dtypes must be a non-empty list of dtypes from "dtypes" ` +
            `(${dtypes.join(", ")}), got ${describeValue(ds)}`,
        );
      }
      cap.dtypes = ds as FloatDType[];
    }
    if (c["config"] !== undefined) {
      if (!isPlainObject(c["config"]))
        throw new ProtocolError(
          `${fat}.config must be an object from hyperparameter names to value ` +
            `lists or ranges, got ${describeValue(c["config"])}`,
        );
      cap.config = {};
      for (const [k, rule] of Object.entries(c["config"])) {
        if (Array.isArray(rule)) {
          if (
            rule.length === 0 ||
            !rule.every(
              (x) => typeof x === "number" || typeof x === "string" || typeof x === "boolean",
            )
          ) {
            throw new ProtocolError(
              `${fat}.config.${k} must be a non-empty list of numbers, strings or booleans, got ${describeValue(rule)}`,
            );
          }
          cap.config[k] = rule as ValueRule;
        } else if (isPlainObject(rule)) {
          range(rule, `${fat}.config.${k}`, ["min", "max"]);
          cap.config[k] = rule as ValueRule;
        } else
          throw new ProtocolError(
            `${fat}.config.${k} must be a list of values or {"min", "max"}, got ${describeValue(rule)}`,
          );
      }
    }
    if (c["dims"] !== undefined) {
      if (!isPlainObject(c["dims"]))
        throw new ProtocolError(
          `${fat}.dims must be an object from dim names to {"min", "max", "equals"}, got ${describeValue(c["dims"])}`,
        );
      cap.dims = {};
      for (const [k, rule] of Object.entries(c["dims"])) {
        if (!isPlainObject(rule))
          throw new ProtocolError(
            `${fat}.dims.${k} must be an object {"min", "max", "equals"}, got ${describeValue(rule)}`,
          );
        range(rule, `${fat}.dims.${k}`, ["min", "max", "equals"]);
        if (rule["equals"] !== undefined && typeof rule["equals"] !== "string")
          throw new ProtocolError(
            `${fat}.dims.${k}: "equals" must be a dim name, got ${describeValue(rule["equals"])}`,
          );
        cap.dims[k] = rule as DimRule;
      }
    }
    out[f] = cap;
  }
  return out;
}
