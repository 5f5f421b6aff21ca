/**
 * Batched matrix multiply for the autodiff engine: `C[b] (+)= op(A[b]) · op(B[b])`.
 *
 * Three paths, chosen by size; every path computes each C entry as the same K products
 * summed in float64, so they differ only by summation order (within K·u·Σ|a·b|, u = 2⁻⁵³):
 *
 * - **small** (batch·M·N·K < `SMALL_WORK`, about 10³): a plain JS loop over the caller's
 *   arrays, k ascending from 0 exactly like the naive triple loop; no copies, no WebAssembly.
 * - **kernel**: blocks of A, B and C are staged into the WebAssembly memory (memcpy-speed
 *   `TypedArray.set`, O(n²)), then a packed, register-blocked SIMD128 kernel (`gemm-wasm.ts`)
 *   computes C += A·B (O(n³)). Staging is bounded by `STAGE_ELEMENTS`; larger problems are
 *   processed block by block, so memory stays bounded even for a 768×50257 operand.
 * - **threaded**: the same kernel with the round's work split into a grid of sub-GEMMs taken
 *   dynamically by the calling thread and the worker pool (`pool.ts`). The split never divides
 *   K, so results do not depend on the thread count or on which thread ran which tile.
 *
 * **f32 semantics.** Inputs are float32; products and sums are formed in float64 (a product of
 * two float32 values is exact in float64) and each result element is rounded to float32 once,
 * when stored (round to nearest, ties to even). With `accumulate`, C's old value is added in
 * float64 before that rounding.
 * This makes the f32 result the float32 rounding of the f64 computation on the same inputs.
 *
 * **FMA (opt-in).** `configureMatmul({ fma: true })`, or `SPECFORMER_FMA=1` in the environment,
 * switches the kernel path to relaxed-SIMD multiply-adds where the runtime has them
 * (features.ts): each term a·b is then added to the running sum with one rounding instead of
 * two, so kernel results differ from the small path's and the naive loop's in the last bits
 * (still within the K·u bound above). The small path never uses FMA.
 */
import { TensorError } from "../tensor.js";
import {
  gemmKernelShape,
  gemmRuntime,
  setGemmKernelShape,
  shutdownGemmRuntimes,
  type GemmRuntime,
  type GemmTask,
} from "./pool.js";
import { DEFAULT_SHAPE } from "./gemm-wasm.js";
import { fmaSupport, type FmaSupport } from "./features.js";

type FloatArray = Float64Array | Float32Array;

/** The sizes of a batched product: `batch` products of op(A[b]) (M×K) and op(B[b]) (K×N). */
export interface MatmulSizes {
  batch: number;
  M: number;
  N: number;
  K: number;
}

/** Arguments of `matmul`; see its TSDoc. */
export interface MatmulArgs extends MatmulSizes {
  dtype: "f64" | "f32";
  a: FloatArray;
  b: FloatArray;
  c: FloatArray;
  transA?: boolean;
  transB?: boolean;
  /** Elements between consecutive A[b]; 0 broadcasts one A over the batch. Default: rows·lda. */
  aBatchStride?: number;
  /** Elements between consecutive B[b]; 0 broadcasts one B over the batch. Default: rows·ldb. */
  bBatchStride?: number;
  /** Elements between consecutive C[b]. Default: M·ldc. */
  cBatchStride?: number;
  /**
   * Leading dimensions (BLAS): elements between consecutive stored rows of A[b], B[b], C[b].
   * Defaults: the row lengths (K, or M when `transA`; N, or K when `transB`; N), i.e.
   * contiguous matrices. Larger values address a strided view, e.g. one head of an n×d_model
   * activation: rows of d_k values, `ld` = d_model, batch stride d_k.
   */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** C += instead of C =. */
  accumulate?: boolean;
}

/**
 * Below this many multiply-adds (batch·M·N·K) the plain JS loop is used. Measured crossover
 * (RESULTS.md): 8³ = 512 takes 2.3 µs either way, 16³ takes 8.2 µs in JS and 3.1 µs staged
 * through the kernel, so the kernel wins from about a thousand multiply-adds.
 */
export const SMALL_WORK = 1024;

/**
 * A staging round with at least this many multiply-adds (≈ 80³, about 30 µs on one core) is
 * split across threads; below it, handing tiles out costs about what a second core saves.
 */
export const PARALLEL_WORK = 2 ** 19;

/** Staging budget in float64 elements (A, B and C blocks of one round together): 32 MiB. */
export const STAGE_ELEMENTS = 4 * 1024 * 1024;

/**
 * `C[b] (+)= op(A[b]) · op(B[b])` for `b < batch`; `op` transposes when the flag is set.
 *
 * `A[b]` is M×K (K×M when `transA`), `B[b]` is K×N (N×K when `transB`), `C[b]` is M×N; all
 * row-major, contiguous unless `lda`/`ldb`/`ldc` say otherwise; `A[b]` starts at
 * `b·aBatchStride`, `B[b]` at `b·bBatchStride`, `C[b]` at `b·cBatchStride` (default `b·M·N`).
 * Synchronous; uses worker threads for large problems. K = 0 gives C = 0 (or leaves C unchanged
 * with `accumulate`). `c` must not overlap `a` or `b`, and the C[b] must not overlap each other.
 *
 * @example
 * const a = new Float64Array([1, 2, 3, 4]);        // [[1, 2], [3, 4]]
 * const b = new Float64Array([5, 6, 7, 8]);        // [[5, 6], [7, 8]]
 * const c = new Float64Array(4);
 * matmul({ dtype: "f64", a, b, c, batch: 1, M: 2, N: 2, K: 2 });
 * // c = [19, 22, 43, 50]
 */
export function matmul(args: MatmulArgs): void {
  const p = validate(args);
  const { batch, M, N, K } = p;
  if (batch === 0 || M === 0 || N === 0) return;
  if (K === 0) {
    if (!p.accumulate) {
      for (let bi = 0; bi < batch; bi++)
        for (let i = 0; i < M; i++) p.c.fill(0, bi * p.sC + i * p.ldc, bi * p.sC + i * p.ldc + N);
    }
    return;
  }
  const small = batch * M * N * K < SMALL_WORK;
  if (forcedPath === "js" || (small && forcedPath !== "kernel")) matmulJS(p);
  else matmulKernel(p, gemmRuntime());
}

/** Which path `matmul` takes; for benchmarks and tests that compare the paths. */
let forcedPath: "auto" | "js" | "kernel" = "auto";
let stageElements = STAGE_ELEMENTS;

/**
 * Test and benchmark hook. `path`: `"js"` forces the plain loop, `"kernel"` the WebAssembly
 * kernel even for small problems, `"auto"` restores the size rule. `threads` (≥ 1) caps the
 * threads a call may use, the caller included (default: one per available core).
 * `stageElements` shrinks the staging budget so that small problems exercise block staging.
 * `workers`: `"adaptive"` (default) uses the worker pool only while it makes products of that
 * size faster; `"always"` uses it for every product large enough (tests of the parallel path).
 */
export function configureMatmul(options: {
  path?: "auto" | "js" | "kernel";
  threads?: number;
  stageElements?: number;
  workers?: "adaptive" | "always";
  fma?: boolean;
}): void {
  if (options.fma !== undefined) setFma(options.fma);
  if (options.path !== undefined) forcedPath = options.path;
  if (options.workers !== undefined) gemmRuntime().policy = options.workers;
  if (options.threads !== undefined) gemmRuntime().setThreads(options.threads);
  if (options.stageElements !== undefined) {
    if (!Number.isSafeInteger(options.stageElements) || options.stageElements < 3) {
      throw new RangeError(`stageElements must be an integer ≥ 3, got ${options.stageElements}`);
    }
    stageElements = options.stageElements;
  }
}

/**
 * FMA on or off for the kernel path. On needs relaxed SIMD (enabled through the V8 flag when
 * Node has it only behind one); throws when the runtime has no such instruction.
 */
function setFma(on: boolean): void {
  if (on) {
    const s = fmaSupport(true);
    if (!s.available) {
      throw new Error(
        "matmul: this WebAssembly runtime has no relaxed-SIMD multiply-add (f64x2.relaxed_madd)",
      );
    }
  }
  setGemmKernelShape({ ...DEFAULT_SHAPE, fma: on });
}

const fmaAsked = typeof process !== "undefined" && process.env["SPECFORMER_FMA"] === "1";
if (fmaAsked && fmaSupport(true).available) setFma(true);

/** Which matmul kernel runs: FMA or separate multiply and add, and what the runtime offers. */
export function matmulKernelInfo(): { readonly fma: boolean; readonly relaxedSimd: FmaSupport } {
  return { fma: gemmKernelShape().fma === true, relaxedSimd: fmaSupport(false) };
}

/** Stops the worker pool (it restarts lazily). Workers never keep the process alive, so this is
 *  only needed to release their threads early. */
export async function shutdownMatmulWorkers(): Promise<void> {
  await gemmRuntime().shutdown();
  await shutdownGemmRuntimes();
}

/** A validated call of `matmul`: every default resolved, batch strides as sA, sB, sC. */
interface Problem extends MatmulSizes {
  dtype: "f64" | "f32";
  a: FloatArray;
  b: FloatArray;
  c: FloatArray;
  transA: boolean;
  transB: boolean;
  sA: number;
  sB: number;
  sC: number;
  lda: number;
  ldb: number;
  ldc: number;
  accumulate: boolean;
}

function validate(args: MatmulArgs): Problem {
  const { dtype, a, b, c } = args;
  if (dtype !== "f64" && dtype !== "f32")
    throw new TensorError(`matmul: dtype must be "f64" or "f32", got ${JSON.stringify(dtype)}`);
  const want = dtype === "f64" ? Float64Array : Float32Array;
  for (const [name, arr] of [
    ["a", a],
    ["b", b],
    ["c", c],
  ] as const) {
    if (!(arr instanceof want)) {
      const got =
        arr === null || typeof arr !== "object" ? String(arr) : (arr as object).constructor.name;
      throw new TensorError(
        `matmul: dtype is "${dtype}" so ${name} must be a ${want.name}, got ${got}`,
      );
    }
  }
  const dim = (name: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new TensorError(`matmul: ${name} must be a non-negative integer, got ${String(v)}`);
    }
    return v;
  };
  const batch = dim("batch", args.batch);
  const M = dim("M", args.M);
  const N = dim("N", args.N);
  const K = dim("K", args.K);
  const transA = args.transA === true;
  const transB = args.transB === true;
  // Stored shapes: A[b] is rowsA×colsA, B[b] rowsB×colsB.
  const [rowsA, colsA] = transA ? [K, M] : [M, K];
  const [rowsB, colsB] = transB ? [N, K] : [K, N];
  const ld = (name: string, v: unknown, cols: number, what: string): number => {
    const x = dim(name, v ?? cols);
    if (x < cols)
      throw new TensorError(
        `matmul: ${name} (${x}) must be at least the row length of the stored ${what} (${cols})`,
      );
    return x;
  };
  const lda = ld("lda", args.lda, colsA, transA ? "Aᵀ, M" : "A, K");
  const ldb = ld("ldb", args.ldb, colsB, transB ? "Bᵀ, K" : "B, N");
  const ldc = ld("ldc", args.ldc, N, "C, N");
  const sA = dim("aBatchStride", args.aBatchStride ?? rowsA * lda);
  const sB = dim("bBatchStride", args.bBatchStride ?? rowsB * ldb);
  const sC = dim("cBatchStride", args.cBatchStride ?? M * ldc);
  const need = (
    name: string,
    arr: FloatArray,
    stride: number,
    rows: number,
    cols: number,
    ldName: string,
    ldv: number,
    strideName: string,
  ): void => {
    const n =
      batch === 0 || rows === 0 || cols === 0 ? 0 : (batch - 1) * stride + (rows - 1) * ldv + cols;
    if (arr.length < n) {
      throw new TensorError(
        `matmul: ${name} has ${arr.length} elements, but batch ${batch} × ` +
          `(${rows}×${cols}) with ${ldName} ${ldv} and ${strideName} ${stride} needs ${n}`,
      );
    }
  };
  need("a", a, sA, rowsA, colsA, "lda", lda, "aBatchStride");
  need("b", b, sB, rowsB, colsB, "ldb", ldb, "bBatchStride");
  need("c", c, sC, M, N, "ldc", ldc, "cBatchStride");
  // The C[b] must be disjoint: one after another, or interleaved within each row (heads).
  if (batch > 1 && M > 0 && N > 0) {
    const sequential = sC >= (M - 1) * ldc + N;
    const interleaved = sC >= N && (batch - 1) * sC + N <= ldc;
    if (!sequential && !interleaved) {
      throw new TensorError(
        `matmul: the C[b] overlap: with cBatchStride ${sC}, ldc ${ldc} and M×N ` +
          `= ${M}×${N}, batch ${batch} outputs would share elements`,
      );
    }
  }
  const overlaps = (x: FloatArray, y: FloatArray): boolean =>
    x.buffer === y.buffer &&
    x.byteOffset < y.byteOffset + y.byteLength &&
    y.byteOffset < x.byteOffset + x.byteLength;
  if (batch > 0 && M * N > 0 && K > 0) {
    if (overlaps(c, a))
      throw new TensorError(
        "matmul: c overlaps a (same buffer); the output must not alias an input",
      );
    if (overlaps(c, b))
      throw new TensorError(
        "matmul: c overlaps b (same buffer); the output must not alias an input",
      );
  }
  return {
    dtype,
    a,
    b,
    c,
    batch,
    M,
    N,
    K,
    transA,
    transB,
    sA,
    sB,
    sC,
    lda,
    ldb,
    ldc,
    accumulate: args.accumulate === true,
  };
}

/**
 * The plain loop. Each C entry is Σ_k a_ik·b_kj summed from k = 0 upward starting at 0, then
 * (with `accumulate`) added to C's old value — in float64, then stored (rounded once for f32).
 */
function matmulJS(p: Problem): void {
  const { a, b, c, M, N, K } = p;
  // Element (i, k) of A[b] is at aOff + i·rsA + k·csA; likewise for B.
  const rsA = p.transA ? 1 : p.lda;
  const csA = p.transA ? p.lda : 1;
  const row = new Float64Array(N);
  for (let bi = 0; bi < p.batch; bi++) {
    const aOff = bi * p.sA;
    const bOff = bi * p.sB;
    const cOff = bi * p.sC;
    for (let i = 0; i < M; i++) {
      if (p.transB) {
        // B[b] is N×K: B(k, j) = b[bOff + j·K + k]; dot products along its rows.
        for (let j = 0; j < N; j++) {
          let s = 0;
          const bRow = bOff + j * p.ldb;
          for (let k = 0; k < K; k++) s += a[aOff + i * rsA + k * csA]! * b[bRow + k]!;
          row[j] = s;
        }
      } else {
        // B[b] is K×N: accumulate a_ik·B[k, :] into the row, k ascending (same order per entry).
        row.fill(0);
        for (let k = 0; k < K; k++) {
          const aik = a[aOff + i * rsA + k * csA]!;
          const bRow = bOff + k * p.ldb;
          for (let j = 0; j < N; j++) row[j]! += aik * b[bRow + j]!;
        }
      }
      const cRow = cOff + i * p.ldc;
      if (p.accumulate) for (let j = 0; j < N; j++) c[cRow + j] = c[cRow + j]! + row[j]!;
      else c.set(row, cRow);
    }
  }
}

/** Block sizes for staging one batch item: Ms·Ks + Ks·Ns + Ms·Ns ≤ budget, halving the largest. */
export function stageBlocks(
  M: number,
  N: number,
  K: number,
  budget: number,
): { Ms: number; Ns: number; Ks: number } {
  let Ms = M;
  let Ns = N;
  let Ks = K;
  while (Ms * Ks + Ks * Ns + Ms * Ns > budget) {
    if (Ks >= Ms && Ks >= Ns) Ks = Math.ceil(Ks / 2);
    else if (Ns >= Ms) Ns = Math.ceil(Ns / 2);
    else Ms = Math.ceil(Ms / 2);
  }
  return { Ms, Ns, Ks };
}

/**
 * Copies rows r0…r0+rows, columns c0…c0+cols of a row-major matrix (rows `ld` elements apart,
 * starting at `srcOff`) to `dst[at…]` as a contiguous rows×cols matrix. Float32 sources are
 * widened exactly by `TypedArray.set`.
 */
function stageIn(
  src: FloatArray,
  srcOff: number,
  ld: number,
  r0: number,
  rows: number,
  c0: number,
  cols: number,
  dst: Float64Array,
  at: number,
): void {
  if (cols === ld) {
    dst.set(src.subarray(srcOff + r0 * ld, srcOff + (r0 + rows) * ld), at);
    return;
  }
  for (let r = 0; r < rows; r++) {
    const from = srcOff + (r0 + r) * ld + c0;
    dst.set(src.subarray(from, from + cols), at + r * cols);
  }
}

/** The inverse of `stageIn`; a Float32Array destination rounds each element once (ties to even). */
function stageOut(
  src: Float64Array,
  at: number,
  dst: FloatArray,
  dstOff: number,
  ld: number,
  r0: number,
  rows: number,
  c0: number,
  cols: number,
): void {
  if (cols === ld) {
    dst.set(src.subarray(at, at + rows * cols), dstOff + r0 * ld);
    return;
  }
  for (let r = 0; r < rows; r++)
    dst.set(src.subarray(at + r * cols, at + (r + 1) * cols), dstOff + (r0 + r) * ld + c0);
}

function matmulKernel(p: Problem, rt: GemmRuntime): void {
  const { batch, M, N, K } = p;
  const { Ms, Ns, Ks } = stageBlocks(M, N, K, stageElements);
  const whole = Ms === M && Ns === N && Ks === K;
  const aShared = p.sA === 0;
  const bShared = p.sB === 0;
  // Whole matrices fit: stage as many batch items per round as the budget holds.
  const sharedElems = (aShared ? M * K : 0) + (bShared ? K * N : 0);
  const itemElems = (aShared ? 0 : M * K) + (bShared ? 0 : K * N) + M * N;
  const perRound = whole
    ? Math.max(1, Math.min(batch, Math.floor((stageElements - sharedElems) / itemElems)))
    : 1;
  const roundElems =
    perRound * Ms * Ns + (aShared ? 1 : perRound) * Ms * Ks + (bShared ? 1 : perRound) * Ks * Ns;
  rt.reserve(roundElems * 8);
  const base = rt.heapStart;
  const threads = rt.threadCount;

  for (let b0 = 0; b0 < batch; b0 += perRound) {
    const items = Math.min(perRound, batch - b0);
    for (let i0 = 0; i0 < M; i0 += Ms) {
      const ms = Math.min(Ms, M - i0);
      for (let j0 = 0; j0 < N; j0 += Ns) {
        const ns = Math.min(Ns, N - j0);
        // Staged layout (f64 element indices): C blocks, then A blocks, then B blocks.
        let f64 = rt.f64;
        const cAt = base / 8;
        for (let t = 0; t < items; t++) {
          const at = cAt + t * ms * ns;
          if (p.accumulate) stageIn(p.c, (b0 + t) * p.sC, p.ldc, i0, ms, j0, ns, f64, at);
          else f64.fill(0, at, at + ms * ns);
        }
        for (let k0 = 0; k0 < K; k0 += Ks) {
          const ks = Math.min(Ks, K - k0);
          f64 = rt.f64;
          const aAt = cAt + items * ms * ns;
          const aCount = aShared ? 1 : items;
          const bAt = aAt + aCount * ms * ks;
          const bCount = bShared ? 1 : items;
          for (let t = 0; t < aCount; t++) {
            const off = (b0 + t) * p.sA;
            if (p.transA) stageIn(p.a, off, p.lda, k0, ks, i0, ms, f64, aAt + t * ms * ks);
            else stageIn(p.a, off, p.lda, i0, ms, k0, ks, f64, aAt + t * ms * ks);
          }
          for (let t = 0; t < bCount; t++) {
            const off = (b0 + t) * p.sB;
            if (p.transB) stageIn(p.b, off, p.ldb, j0, ns, k0, ks, f64, bAt + t * ks * ns);
            else stageIn(p.b, off, p.ldb, k0, ks, j0, ns, f64, bAt + t * ks * ns);
          }
          const work = items * ms * ns * ks;
          const parallel = threads > 1 && work >= PARALLEL_WORK;
          const tasks: GemmTask[] = [];
          const [gm, gn] = parallel ? taskGrid(ms, ns, Math.ceil((4 * threads) / items)) : [1, 1];
          const mt = roundUp(Math.ceil(ms / gm), DEFAULT_SHAPE.MR);
          const nt = roundUp(Math.ceil(ns / gn), DEFAULT_SHAPE.NR);
          for (let t = 0; t < items; t++) {
            const A = (aAt + (aShared ? 0 : t) * ms * ks) * 8;
            const B = (bAt + (bShared ? 0 : t) * ks * ns) * 8;
            const C = (cAt + t * ms * ns) * 8;
            // Staged A is ms×ks (ks×ms when transposed), B is ks×ns (ns×ks), C is ms×ns.
            const [rsA, csA] = p.transA ? [1, ms] : [ks, 1];
            const [rsB, csB] = p.transB ? [1, ks] : [ns, 1];
            for (let ti = 0; ti < ms; ti += mt) {
              for (let tj = 0; tj < ns; tj += nt) {
                tasks.push({
                  M: Math.min(mt, ms - ti),
                  N: Math.min(nt, ns - tj),
                  K: ks,
                  A: A + 8 * ti * rsA,
                  rsA,
                  csA,
                  B: B + 8 * tj * csB,
                  rsB,
                  csB,
                  C: C + 8 * (ti * ns + tj),
                  ldc: ns,
                });
              }
            }
          }
          rt.execute(tasks, parallel);
        }
        f64 = rt.f64;
        for (let t = 0; t < items; t++)
          stageOut(f64, cAt + t * ms * ns, p.c, (b0 + t) * p.sC, p.ldc, i0, ms, j0, ns);
      }
    }
  }
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Splits an m×n output into a gm×gn grid of tiles with gm·gn = `pieces`. A tile of mt×nt packs
 * (mt + nt)·K elements for mt·nt·K multiply-adds, so among the grids that give the most tiles
 * (up to `pieces`) the one minimising 1/mt + 1/nt, the packing overhead per multiply-add, wins.
 */
export function taskGrid(m: number, n: number, pieces: number): [number, number] {
  let best: [number, number] = [1, 1];
  let bestCount = 0;
  let bestCost = Infinity;
  for (let gm = 1; gm <= pieces; gm++) {
    if (pieces % gm !== 0) continue;
    const gn = pieces / gm;
    const mt = roundUp(Math.ceil(m / gm), DEFAULT_SHAPE.MR);
    const nt = roundUp(Math.ceil(n / gn), DEFAULT_SHAPE.NR);
    // Rounding tiles up to the register block can leave fewer tiles than asked for.
    const count = Math.ceil(m / mt) * Math.ceil(n / nt);
    const cost = 1 / mt + 1 / nt;
    if (count > bestCount || (count === bestCount && cost < bestCost)) {
      best = [gm, gn];
      bestCount = count;
      bestCost = cost;
    }
  }
  return best;
}
