/**
 * Array kernels for the primitives other than matmul. Every kernel takes concrete shapes and
 * typed arrays and writes into a preallocated output; the output's array type does the rounding
 * (a Float32Array output rounds each result to float32 once, which is the float32 mode).
 *
 * Hot loops are plain indexed loops over typed arrays; dispatch on the op happens once per row.
 */
import type { BinaryFn, ReduceFn } from "../../spec/node.js";
import type { ScalarFnName } from "../../spec/scalar.js";
import { unaryLoop } from "./scalar.js";

export type Arr = Float64Array | Float32Array | Int32Array;

export function sizeOf(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

export function strides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/** Strides of `shape` right-aligned into `out` (0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): number[] {
  const st = strides(shape);
  const r = new Array<number>(out.length).fill(0);
  const off = out.length - shape.length;
  for (let i = 0; i < shape.length; i++)
    r[off + i] = shape[i] === 1 && out[off + i] !== 1 ? 0 : st[i]!;
  return r;
}

export function unary(fn: ScalarFnName, x: Arr, out: Arr): void {
  unaryLoop(fn)(x, out, out.length);
}

// ---------------------------------------------------------------------------------------------
// binary with broadcasting

function binaryRow(
  fn: BinaryFn,
  a: Arr,
  ao: number,
  as: number,
  b: Arr,
  bo: number,
  bs: number,
  out: Arr,
  oo: number,
  n: number,
): void {
  switch (fn) {
    case "add":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! + b[bo + i * bs]!;
      return;
    case "sub":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! - b[bo + i * bs]!;
      return;
    case "mul":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! * b[bo + i * bs]!;
      return;
    case "div":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! / b[bo + i * bs]!;
      return;
    case "pow":
      for (let i = 0; i < n; i++) out[oo + i] = Math.pow(a[ao + i * as]!, b[bo + i * bs]!);
      return;
    case "max":
      for (let i = 0; i < n; i++) {
        const x = a[ao + i * as]!;
        const y = b[bo + i * bs]!;
        out[oo + i] = x !== x || y !== y ? NaN : x > y ? x : y;
      }
      return;
    case "min":
      for (let i = 0; i < n; i++) {
        const x = a[ao + i * as]!;
        const y = b[bo + i * bs]!;
        out[oo + i] = x !== x || y !== y ? NaN : x < y ? x : y;
      }
      return;
    case "eq":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as] === b[bo + i * bs] ? 1 : 0;
      return;
    case "lt":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! < b[bo + i * bs]! ? 1 : 0;
      return;
    case "le":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * as]! <= b[bo + i * bs]! ? 1 : 0;
      return;
  }
}

/**
 * Iterate over all rows (last axis) of `outShape`, calling `row(offsets, n)`. Offsets of each
 * operand follow its (possibly zero) strides.
 */
function forEachRow(
  outShape: readonly number[],
  opStrides: readonly (readonly number[])[],
  row: (offs: number[], oo: number) => void,
): void {
  const r = outShape.length;
  const n = r === 0 ? 1 : outShape[r - 1]!;
  const rows = n === 0 ? 0 : sizeOf(outShape) / n;
  const idx = new Array<number>(Math.max(r - 1, 0)).fill(0);
  const offs = opStrides.map(() => 0);
  for (let k = 0; k < rows; k++) {
    row(offs, k * n);
    // odometer over the leading axes
    for (let ax = r - 2; ax >= 0; ax--) {
      idx[ax]!++;
      for (let o = 0; o < offs.length; o++) offs[o]! += opStrides[o]![ax]!;
      if (idx[ax]! < outShape[ax]!) break;
      for (let o = 0; o < offs.length; o++) offs[o]! -= opStrides[o]![ax]! * outShape[ax]!;
      idx[ax] = 0;
    }
  }
}

/**
 * How a row loop ({@link forEachRow}) reads broadcast operands: each operand's broadcast strides
 * into `outShape`, the row length (the last axis; 1 for a scalar) and each operand's stride along
 * a row (0 for a scalar).
 */
function rowLayout(
  shapes: readonly (readonly number[])[],
  outShape: readonly number[],
): { strides: number[][]; last: number; along: number[] } {
  const r = outShape.length;
  const strides = shapes.map((s) => broadcastStrides(s, outShape));
  const along = strides.map((s) => (r === 0 ? 0 : s[r - 1]!));
  return { strides, last: r === 0 ? 1 : outShape[r - 1]!, along };
}

export function binary(
  fn: BinaryFn,
  a: Arr,
  aShape: readonly number[],
  b: Arr,
  bShape: readonly number[],
  out: Arr,
  outShape: readonly number[],
): void {
  const n = out.length;
  if (a.length === n && b.length === n) return binaryRow(fn, a, 0, 1, b, 0, 1, out, 0, n);
  if (b.length === 1 && a.length === n) return binaryRow(fn, a, 0, 1, b, 0, 0, out, 0, n);
  if (a.length === 1 && b.length === n) return binaryRow(fn, a, 0, 0, b, 0, 1, out, 0, n);
  const { strides, last, along } = rowLayout([aShape, bShape], outShape);
  const la = along[0]!,
    lb = along[1]!;
  forEachRow(outShape, strides, (offs, oo) =>
    binaryRow(fn, a, offs[0]!, la, b, offs[1]!, lb, out, oo, last),
  );
}

export function where(
  c: Arr,
  cShape: readonly number[],
  a: Arr,
  aShape: readonly number[],
  b: Arr,
  bShape: readonly number[],
  out: Arr,
  outShape: readonly number[],
): void {
  const { strides, last, along } = rowLayout([cShape, aShape, bShape], outShape);
  const lc = along[0]!,
    la = along[1]!,
    lb = along[2]!;
  forEachRow(outShape, strides, (o, oo) => {
    const co = o[0]!,
      ao = o[1]!,
      bo = o[2]!;
    for (let i = 0; i < last; i++)
      out[oo + i] = c[co + i * lc] !== 0 ? a[ao + i * la]! : b[bo + i * lb]!;
  });
}

/** Copy `x` broadcast to `outShape`. */
export function broadcast(
  x: Arr,
  xShape: readonly number[],
  out: Arr,
  outShape: readonly number[],
): void {
  if (x.length === out.length) {
    out.set(x);
    return;
  }
  if (x.length === 1) {
    out.fill(x[0]!);
    return;
  }
  const sx = broadcastStrides(xShape, outShape);
  const r = outShape.length;
  const last = outShape[r - 1]!;
  const lx = sx[r - 1]!;
  forEachRow(outShape, [sx], (o, oo) => {
    const xo = o[0]!;
    if (lx === 1) out.set(x.subarray(xo, xo + last), oo);
    else for (let i = 0; i < last; i++) out[oo + i] = x[xo + i * lx]!;
  });
}

export function iota(out: Arr, shape: readonly number[], axis: number): void {
  const st = strides(shape);
  const s = st[axis]!;
  const d = shape[axis]!;
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(i / s) % d;
}

// ---------------------------------------------------------------------------------------------
// reductions

/**
 * Reduce over `axes` (sorted, concrete). Fast paths: the last axis only (rows) and a leading
 * block of axes (column sums, bias gradients); otherwise a general odometer.
 */
export function reduce(
  fn: ReduceFn,
  x: Arr,
  shape: readonly number[],
  axes: readonly number[],
  out: Arr,
): void {
  const r = shape.length;
  const isMax = fn === "max";
  const init = isMax ? -Infinity : 0;
  if (axes.length === 0) {
    out.set(x);
    return;
  }
  const red = axes.reduce((p, a) => p * shape[a]!, 1);
  if (red === 0) {
    out.fill(init);
    return;
  }
  const sorted = [...axes].sort((a, b) => a - b);
  const trailing = sorted.every((a, i) => a === r - sorted.length + i);
  const leading = sorted.every((a, i) => a === i);
  if (trailing) {
    // contiguous rows of length `red`
    const rows = out.length;
    for (let k = 0; k < rows; k++) {
      const o = k * red;
      if (isMax) {
        let m = -Infinity;
        for (let i = 0; i < red; i++) {
          const v = x[o + i]!;
          if (v > m || v !== v) m = v;
          if (m !== m) break;
        }
        out[k] = m;
      } else {
        let s = 0;
        for (let i = 0; i < red; i++) s += x[o + i]!;
        out[k] = s;
      }
    }
    return;
  }
  if (leading) {
    const cols = out.length;
    const acc = new Float64Array(cols).fill(init);
    for (let k = 0; k < red; k++) {
      const o = k * cols;
      if (isMax) {
        for (let j = 0; j < cols; j++) {
          const v = x[o + j]!;
          if (v > acc[j]! || v !== v) acc[j] = v;
        }
      } else for (let j = 0; j < cols; j++) acc[j]! += x[o + j]!;
    }
    out.set(acc);
    return;
  }
  // general: accumulate each input element into its output slot
  const keep = shape.map((_, i) => !sorted.includes(i));
  const outShape = shape.filter((_, i) => keep[i]);
  const outSt = strides(outShape);
  const st = new Array<number>(r).fill(0);
  let k = 0;
  for (let i = 0; i < r; i++) if (keep[i]) st[i] = outSt[k++]!;
  const acc = new Float64Array(out.length).fill(init);
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (isMax) {
      if (v > acc[o]! || v !== v) acc[o] = v;
    } else acc[o]! += v;
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]!++;
      o += st[ax]!;
      if (idx[ax]! < shape[ax]!) break;
      o -= st[ax]! * shape[ax]!;
      idx[ax] = 0;
    }
  }
  out.set(acc);
}

// ---------------------------------------------------------------------------------------------
// movement

export function permute(x: Arr, shape: readonly number[], perm: readonly number[], out: Arr): void {
  const r = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const st = strides(shape);
  const ps = perm.map((p) => st[p]!);
  if (out.length === 0) return;
  if (r === 2 && perm[0] === 1) {
    const [R, C] = shape as [number, number];
    // blocked transpose
    const B = 32;
    for (let i0 = 0; i0 < R; i0 += B) {
      for (let j0 = 0; j0 < C; j0 += B) {
        const iM = Math.min(i0 + B, R),
          jM = Math.min(j0 + B, C);
        for (let i = i0; i < iM; i++) for (let j = j0; j < jM; j++) out[j * R + i] = x[i * C + j]!;
      }
    }
    return;
  }
  const last = outShape[r - 1]!;
  const ls = ps[r - 1]!;
  forEachRow(outShape, [ps], (o, oo) => {
    const xo = o[0]!;
    if (ls === 1) out.set(x.subarray(xo, xo + last), oo);
    else for (let i = 0; i < last; i++) out[oo + i] = x[xo + i * ls]!;
  });
}

/** out = x[..., start:start+size, ...] along axis. */
export function slice(
  x: Arr,
  shape: readonly number[],
  axis: number,
  start: number,
  size: number,
  out: Arr,
): void {
  const outer = sizeOf(shape.slice(0, axis));
  const inner = sizeOf(shape.slice(axis + 1));
  const d = shape[axis]!;
  for (let o = 0; o < outer; o++) {
    const src = (o * d + start) * inner;
    out.set(x.subarray(src, src + size * inner), o * size * inner);
  }
}

export function concat(
  xs: readonly Arr[],
  shapes: readonly (readonly number[])[],
  axis: number,
  out: Arr,
): void {
  const s0 = shapes[0]!;
  const outer = sizeOf(s0.slice(0, axis));
  const inner = sizeOf(s0.slice(axis + 1));
  const total = shapes.reduce((p, s) => p + s[axis]!, 0);
  let at = 0;
  xs.forEach((x, k) => {
    const d = shapes[k]![axis]!;
    const block = d * inner;
    for (let o = 0; o < outer; o++)
      out.set(x.subarray(o * block, o * block + block), (o * total + at) * inner);
    at += d;
  });
}

// ---------------------------------------------------------------------------------------------
// indexing

function checkIndex(v: number, V: number, i: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v >= V) {
    throw new RangeError(`${what}: index ${v} at position ${i} is outside the table's ${V} rows`);
  }
  return v;
}

/** out[i, :] = table[idx[i], :]. */
export function gather(
  table: Arr,
  tableShape: readonly number[],
  idx: Arr,
  out: Arr,
  what = "gather",
): void {
  const V = tableShape[0]!;
  const row = sizeOf(tableShape.slice(1));
  for (let i = 0; i < idx.length; i++) {
    const t = checkIndex(idx[i]!, V, i, what);
    out.set(table.subarray(t * row, t * row + row), i * row);
  }
}

/** out = 0; out[idx[i], :] += upd[i, :]. */
export function scatterAdd(
  upd: Arr,
  idx: Arr,
  out: Arr,
  outShape: readonly number[],
  what = "scatter_add",
): void {
  const V = outShape[0]!;
  const row = sizeOf(outShape.slice(1));
  out.fill(0);
  if (out instanceof Float32Array) {
    // accumulate in float64, round once
    const acc = new Float64Array(out.length);
    for (let i = 0; i < idx.length; i++) {
      const t = checkIndex(idx[i]!, V, i, what) * row;
      for (let j = 0; j < row; j++) acc[t + j]! += upd[i * row + j]!;
    }
    out.set(acc);
    return;
  }
  for (let i = 0; i < idx.length; i++) {
    const t = checkIndex(idx[i]!, V, i, what) * row;
    for (let j = 0; j < row; j++) out[t + j]! += upd[i * row + j]!;
  }
}

// ---------------------------------------------------------------------------------------------
// accumulation (X + concat(…), X + scatter_add(…) without building the concat or the table)

/**
 * out[o·stride + offset + j] += part[o·len + j] for o < outer, j < len: one concat part added
 * into its slab. Without a part (a zero part) adds +0, which changes only −0 into +0.
 */
export function addSlab(
  out: Arr,
  part: Arr | undefined,
  outer: number,
  stride: number,
  offset: number,
  len: number,
): void {
  for (let o = 0; o < outer; o++) {
    const base = o * stride + offset;
    if (part === undefined) {
      for (let j = 0; j < len; j++) if (out[base + j] === 0) out[base + j] = 0;
    } else {
      const pb = o * len;
      for (let j = 0; j < len; j++) out[base + j]! += part[pb + j]!;
    }
  }
}

/**
 * out += scatter_add(upd, idx) with scatter_add's exact values: each id's rows summed from 0 in
 * order in float64, rounded to float32 once when `f32` (as scatterAdd stores them), then added.
 * Rows no id names get +0 (only −0 changes).
 */
export function addScatter(
  out: Arr,
  upd: Arr,
  idx: Arr,
  V: number,
  row: number,
  f32: boolean,
  what = "scatter_add",
): void {
  const first = new Map<number, number[]>();
  for (let i = 0; i < idx.length; i++) {
    const t = checkIndex(idx[i]!, V, i, what);
    const list = first.get(t);
    if (list === undefined) first.set(t, [i]);
    else list.push(i);
  }
  for (let t = 0; t < V; t++) {
    if (first.has(t)) continue;
    const b = t * row;
    for (let j = 0; j < row; j++) if (out[b + j] === 0) out[b + j] = 0;
  }
  const acc = new Float64Array(row);
  for (const [t, rows] of first) {
    acc.fill(0);
    for (const i of rows) for (let j = 0; j < row; j++) acc[j]! += upd[i * row + j]!;
    const b = t * row;
    if (f32) for (let j = 0; j < row; j++) out[b + j]! += Math.fround(acc[j]!);
    else for (let j = 0; j < row; j++) out[b + j]! += acc[j]!;
  }
}

// ---------------------------------------------------------------------------------------------
// matmul fallback (the fast kernels live in matmul.ts)

/** C[b] = op(A[b]) op(B[b]) with row-major M×K / K×N; f64 accumulation, one rounding on store. */
export function naiveMatmul(
  a: Arr,
  b: Arr,
  c: Arr,
  batch: number,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  aStride: number,
  bStride: number,
): void {
  const row = new Float64Array(N);
  for (let p = 0; p < batch; p++) {
    const ao = p * aStride,
      bo = p * bStride,
      co = p * M * N;
    for (let i = 0; i < M; i++) {
      row.fill(0);
      for (let k = 0; k < K; k++) {
        const av = transA ? a[ao + k * M + i]! : a[ao + i * K + k]!;
        if (transB) for (let j = 0; j < N; j++) row[j]! += av * b[bo + j * K + k]!;
        else {
          const bb = bo + k * N;
          for (let j = 0; j < N; j++) row[j]! += av * b[bb + j]!;
        }
      }
      for (let j = 0; j < N; j++) c[co + i * N + j] = row[j]!;
    }
  }
}
