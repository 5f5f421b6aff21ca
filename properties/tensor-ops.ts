/**
 * Small float64 tensor helpers the laws use to build related inputs (slices, permutations,
 * stacks, repeated head blocks) and to inspect results (row sums, norms). They never compute a
 * formula of the model: what a law knows about the model it learns from the implementation.
 */
import {
  Tensor,
  shapeToString,
  sizeOf,
  type DType,
  type NamedTensors,
} from "../autodiff/tensor.js";

/** Float64 copy of a tensor's values (ints included). */
export function toF64(t: Tensor): Float64Array {
  return Float64Array.from(t.data);
}

/** Normalise a possibly negative axis. */
function axisOf(t: { shape: readonly number[] }, axis: number): number {
  const r = t.shape.length;
  const a = axis < 0 ? r + axis : axis;
  if (a < 0 || a >= r)
    throw new RangeError(`axis ${axis} out of range for shape ${shapeToString(t.shape)}`);
  return a;
}

/**
 * Gather along one axis: result index k along `axis` takes source index `idx[k]`.
 * Covers slices, permutations and repetitions (of rows, columns or column blocks).
 */
export function gatherAxis(t: Tensor, axis: number, idx: readonly number[]): Tensor {
  const a = axisOf(t, axis);
  const outer = sizeOf(t.shape.slice(0, a));
  const inner = sizeOf(t.shape.slice(a + 1));
  const len = t.shape[a]!;
  for (const k of idx)
    if (!Number.isInteger(k) || k < 0 || k >= len)
      throw new RangeError(
        `gatherAxis: index ${k} out of range 0..${len - 1} on axis ${a} of ${shapeToString(t.shape)}`,
      );
  const shape = [...t.shape];
  shape[a] = idx.length;
  const out = Tensor.zeros(shape, t.dtype);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < idx.length; k++) {
      const src = (o * len + idx[k]!) * inner;
      const dst = (o * idx.length + k) * inner;
      for (let i = 0; i < inner; i++) out.data[dst + i] = t.data[src + i]!;
    }
  }
  return out;
}

/** `t[..., start : start + len, ...]` along `axis`. */
export function sliceAxis(t: Tensor, axis: number, start: number, len: number): Tensor {
  return gatherAxis(
    t,
    axis,
    Array.from({ length: len }, (_, i) => start + i),
  );
}

/** Concatenate along an axis (all other sizes equal, same dtype). */
export function concatAxis(ts: readonly Tensor[], axis: number): Tensor {
  const first = ts[0];
  if (first === undefined) throw new RangeError("concatAxis: nothing to concatenate");
  const a = axisOf(first, axis);
  const outer = sizeOf(first.shape.slice(0, a));
  const inner = sizeOf(first.shape.slice(a + 1));
  const total = ts.reduce((s, t) => s + t.shape[a]!, 0);
  const shape = [...first.shape];
  shape[a] = total;
  const out = Tensor.zeros(shape, first.dtype);
  let off = 0;
  for (const t of ts) {
    const len = t.shape[a]!;
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < len; k++) {
        const src = (o * len + k) * inner;
        const dst = (o * total + off + k) * inner;
        for (let i = 0; i < inner; i++) out.data[dst + i] = t.data[src + i]!;
      }
    }
    off += len;
  }
  return out;
}

/**
 * Values V = I_m for keys `K` [..., m, d_k]: an m×m identity in every batch member (and K/V head),
 * so that attention(Q, K, V) = P V returns the attention weights P.
 */
export function identityValues(K: Tensor, dtype: DType): Tensor {
  const m = K.shape.at(-2)!;
  const batch = K.shape.slice(0, -2);
  const eye = Tensor.zeros([...batch, m, m], dtype);
  for (let b = 0; b < sizeOf(batch); b++)
    for (let j = 0; j < m; j++) eye.data[b * m * m + j * m + j] = 1;
  return eye;
}

/** Stack equal-shaped tensors along a new leading axis. */
export function stack(ts: readonly Tensor[]): Tensor {
  const first = ts[0];
  if (first === undefined) throw new RangeError("stack: nothing to stack");
  const out = Tensor.zeros([ts.length, ...first.shape], first.dtype);
  ts.forEach((t, b) => out.data.set(t.data, b * first.size));
  return out;
}

/** Element `b` of the leading axis. */
export function unstackAt(t: Tensor, b: number): Tensor {
  const inner = t.shape.slice(1);
  const size = sizeOf(inner);
  return new Tensor(t.dtype, inner, t.data.slice(b * size, (b + 1) * size) as Tensor["data"]);
}

/** Elementwise map in float64, stored in `dtype` (default the input's). */
export function mapT(
  t: Tensor,
  f: (v: number, i: number) => number,
  dtype: DType = t.dtype,
): Tensor {
  const out = Tensor.zeros(t.shape, dtype);
  for (let i = 0; i < t.size; i++) out.data[i] = f(t.data[i]!, i);
  return out;
}

/** max |t| over finite elements (0 for an empty tensor). */
export function maxAbs(t: Tensor | ArrayLike<number>): number {
  const d = t instanceof Tensor ? t.data : t;
  let m = 0;
  for (let i = 0; i < d.length; i++) {
    const v = Math.abs(d[i]!);
    if (v > m && v !== Infinity) m = v;
  }
  return m;
}

/** Rows of the last axis as float64 arrays. */
export function lastAxisRows(t: Tensor): Float64Array[] {
  const len = t.shape[t.shape.length - 1] ?? 1;
  const rows: Float64Array[] = [];
  if (len === 0) return rows;
  for (let o = 0; o < t.size; o += len) rows.push(Float64Array.from(t.data.subarray(o, o + len)));
  return rows;
}

/**
 * `a [..., n, k] · b [k, m] → [..., n, m]` in float64 (the law's own arithmetic when it must
 * build an input such as a projected query; never used to produce an expected output).
 */
export function matmulLast(a: Tensor, b: Tensor, dtype: DType = "f64"): Tensor {
  const k = a.shape[a.shape.length - 1]!;
  if (b.shape.length !== 2 || b.shape[0] !== k)
    throw new RangeError(`matmulLast: ${shapeToString(a.shape)} · ${shapeToString(b.shape)}`);
  const m = b.shape[1]!;
  const rows = k === 0 ? sizeOf(a.shape.slice(0, -1)) : a.size / k;
  const out = Tensor.zeros([...a.shape.slice(0, -1), m], dtype);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += a.data[r * k + i]! * b.data[i * m + j]!;
      out.data[r * m + j] = s;
    }
  }
  return out;
}

/** Shapes of named tensors, for reports. */
export function shapesOf(ts: NamedTensors): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(ts)) out[k] = [...v.shape];
  return out;
}

/** Bitwise equality of two tensors' values (−0 ≠ +0, NaN payloads compared as NaN). */
export function firstBitDifference(a: Tensor, b: Tensor): number {
  if (a.dtype !== b.dtype || a.size !== b.size) return 0;
  for (let i = 0; i < a.size; i++) {
    const x = a.data[i]!;
    const y = b.data[i]!;
    if (x !== x && y !== y) continue;
    if (x !== y || (x === 0 && 1 / x !== 1 / y)) return i;
  }
  return -1;
}
