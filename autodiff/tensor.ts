/**
 * Dense row-major tensors: the one numeric container every layer of specformer shares.
 *
 * - `f64` (Float64Array) is the reference precision.
 * - `f32` (Float32Array) predicts what a float32 implementation produces: kernels round every
 *   primitive's result to float32.
 * - `i32` (Int32Array) holds token ids and other indices.
 */
import { sizeOf } from "./kernels/ops.js";

/** A tensor's element type: `f64` (reference precision), `f32` (rounded as float32), `i32`. */
export type DType = "f64" | "f32" | "i32";
/** The float element types: `f64` (reference precision) and `f32` (every primitive's result rounded to float32). */
export type FloatDType = "f64" | "f32";
export type TensorData = Float64Array | Float32Array | Int32Array;
/** A tensor's size along each axis, outermost first; `[]` is a scalar. */
export type Shape = readonly number[];

/** The error every tensor misuse raises: it says what was wrong and where. */
export class TensorError extends Error {
  override name = "TensorError";
}

export const DTYPES: readonly DType[] = ["f64", "f32", "i32"];

export function isDType(x: unknown): x is DType {
  return x === "f64" || x === "f32" || x === "i32";
}

export function arrayFor(dtype: DType, size: number): TensorData {
  switch (dtype) {
    case "f64":
      return new Float64Array(size);
    case "f32":
      return new Float32Array(size);
    case "i32":
      return new Int32Array(size);
  }
}

export function dtypeOfArray(data: TensorData): DType {
  if (data instanceof Float64Array) return "f64";
  if (data instanceof Float32Array) return "f32";
  return "i32";
}

/** Number of elements of a shape (1 for a scalar `[]`); the kernels' own, re-exported. */
export { sizeOf };

export function shapeToString(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkShape(shape: Shape, where: string): void {
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (!Number.isInteger(d) || d < 0) {
      throw new TensorError(
        `${where}: axis ${i} has size ${String(d)}; sizes must be non-negative ` +
          `integers (shape ${shapeToString(shape)})`,
      );
    }
  }
}

/**
 * A dense row-major tensor: a dtype, a shape, and its elements in one flat typed array (Float64Array, Float32Array or
 * Int32Array). Shapes and data are checked on construction; misuse throws a {@link TensorError}.
 */
export class Tensor {
  readonly dtype: DType;
  /** Frozen copy of the shape given to the constructor. */
  readonly shape: readonly number[];
  /** The elements in row-major order (last axis fastest); its array type matches `dtype`. */
  readonly data: TensorData;

  /**
   * A tensor over `data` (not copied), or zero-filled when `data` is omitted.
   * @throws TensorError if a size is not a non-negative integer, or `data` has the wrong array type or length.
   */
  constructor(dtype: DType, shape: Shape, data?: TensorData) {
    checkShape(shape, "Tensor");
    const size = sizeOf(shape);
    if (data === undefined) {
      data = arrayFor(dtype, size);
    } else {
      const actual = dtypeOfArray(data);
      if (actual !== dtype) {
        throw new TensorError(
          `Tensor: dtype ${dtype} declared but data is a ${data.constructor.name} (${actual})`,
        );
      }
      if (data.length !== size) {
        throw new TensorError(
          `Tensor: shape ${shapeToString(shape)} needs ${size} elements but data has ${data.length}`,
        );
      }
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Element at a multi-index (bounds-checked; for tests and reports, not hot loops). */
  get(...index: number[]): number {
    return this.data[this.offset(index)]!;
  }

  offset(index: readonly number[]): number {
    if (index.length !== this.shape.length) {
      throw new TensorError(
        `index ${JSON.stringify(index)} has ${index.length} axes but the tensor has shape ${shapeToString(this.shape)}`,
      );
    }
    let off = 0;
    for (let i = 0; i < index.length; i++) {
      const k = index[i]!;
      const d = this.shape[i]!;
      if (!Number.isInteger(k) || k < 0 || k >= d) {
        throw new TensorError(
          `index ${JSON.stringify(index)} is out of bounds at axis ${i} for shape ${shapeToString(this.shape)}`,
        );
      }
      off = off * d + k;
    }
    return off;
  }

  /** Multi-index of a flat offset. */
  unravel(flat: number): number[] {
    const idx = new Array<number>(this.shape.length);
    for (let i = this.shape.length - 1; i >= 0; i--) {
      const d = this.shape[i]!;
      idx[i] = flat % d;
      flat = Math.floor(flat / d);
    }
    return idx;
  }

  /** A tensor with the same data viewed under another shape of equal size. */
  reshape(shape: Shape): Tensor {
    if (sizeOf(shape) !== this.size) {
      throw new TensorError(
        `reshape: cannot view ${shapeToString(this.shape)} (${this.size} ` +
          `elements) as ${shapeToString(shape)} (${sizeOf(shape)} elements)`,
      );
    }
    return new Tensor(this.dtype, shape, this.data);
  }

  /** Copy, optionally converting dtype (f64 -> f32 rounds to nearest; float -> i32 requires integers). */
  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return new Tensor(dtype, this.shape, this.data.slice());
    if (dtype === "i32") {
      for (let i = 0; i < this.size; i++) {
        const v = this.data[i]!;
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
          throw new TensorError(
            `to(i32): element ${JSON.stringify(this.unravel(i))} is ${v}, not a 32-bit integer`,
          );
        }
      }
    }
    const out = arrayFor(dtype, this.size);
    out.set(this.data);
    return new Tensor(dtype, this.shape, out);
  }

  clone(): Tensor {
    return new Tensor(this.dtype, this.shape, this.data.slice());
  }

  /** Nested JavaScript arrays (for printing and JSON). */
  toNested(): unknown {
    const rec = (axis: number, off: number): unknown => {
      if (axis === this.shape.length) return this.data[off];
      const d = this.shape[axis]!;
      const stride = sizeOf(this.shape.slice(axis + 1));
      const out: unknown[] = [];
      for (let i = 0; i < d; i++) out.push(rec(axis + 1, off + i * stride));
      return out;
    };
    return rec(0, 0);
  }

  toString(): string {
    return `Tensor(${this.dtype}, ${shapeToString(this.shape)})`;
  }

  static zeros(shape: Shape, dtype: DType = "f64"): Tensor {
    return new Tensor(dtype, shape);
  }

  static full(shape: Shape, value: number, dtype: DType = "f64"): Tensor {
    const t = new Tensor(dtype, shape);
    t.data.fill(value);
    return t;
  }

  static scalar(value: number, dtype: DType = "f64"): Tensor {
    return Tensor.full([], value, dtype);
  }

  /**
   * From flat data or nested arrays. With nested arrays the shape is inferred and must be
   * rectangular.
   * @example Tensor.from([[1, 2], [3, 4]]).shape // [2, 2]
   */
  static from(values: unknown, dtype: DType = "f64", shape?: Shape): Tensor {
    const flat: number[] = [];
    const inferred: number[] = [];
    const walk = (v: unknown, depth: number): void => {
      if (Array.isArray(v) || ArrayBuffer.isView(v)) {
        const arr = v as ArrayLike<unknown>;
        if (inferred.length === depth) inferred.push(arr.length);
        else if (inferred[depth] !== arr.length) {
          throw new TensorError(
            `Tensor.from: ragged nested array at depth ${depth} (${arr.length} vs ${inferred[depth]})`,
          );
        }
        for (let i = 0; i < arr.length; i++) walk(arr[i], depth + 1);
      } else if (typeof v === "number") {
        if (depth !== inferred.length && shape === undefined) {
          throw new TensorError(
            `Tensor.from: ragged nested array (a number at depth ${depth}, expected depth ${inferred.length})`,
          );
        }
        flat.push(v);
      } else {
        throw new TensorError(`Tensor.from: expected numbers or arrays, found ${typeof v}`);
      }
    };
    walk(values, 0);
    const sh = shape ?? inferred;
    const data = arrayFor(dtype, flat.length);
    for (let i = 0; i < flat.length; i++) data[i] = flat[i]!;
    return new Tensor(dtype, sh, data);
  }
}

/** Tensors by name: a graph's inputs or outputs, a case's tensors, gradients keyed by argument. */
export type NamedTensors = Record<string, Tensor>;

/** Count NaN, +/-Inf and -0 (reports never mask these). */
export function specialCounts(t: Tensor): {
  nan: number;
  posInf: number;
  negInf: number;
  negZero: number;
} {
  let nan = 0,
    posInf = 0,
    negInf = 0,
    negZero = 0;
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v !== v) nan++;
    else if (v === Infinity) posInf++;
    else if (v === -Infinity) negInf++;
    else if (v === 0 && 1 / v < 0) negZero++;
  }
  return { nan, posInf, negInf, negZero };
}
