import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TensorError } from "../tensor.js";
import { LAYOUT } from "./gemm-wasm.js";
import {
  PARALLEL_WORK,
  SMALL_WORK,
  STAGE_ELEMENTS,
  configureMatmul,
  matmul,
  shutdownMatmulWorkers,
  stageBlocks,
  taskGrid,
  type MatmulArgs,
  type MatmulSizes,
} from "./matmul.js";
import { THREAD_BUFFER_BYTES, gemmRuntime } from "./pool.js";

/** Unit roundoff of float64 and the smallest subnormal (the absolute error floor of a product). */
const u = 2 ** -53;
const eta = 2 ** -1074;

type Path = "js" | "kernel";

interface Case extends MatmulSizes {
  dtype: "f64" | "f32";
  transA: boolean;
  transB: boolean;
  /** undefined: default stride; 0: broadcast; "gap": default + 3 with NaN in the gaps. */
  aStride: undefined | 0 | "gap";
  bStride: undefined | 0 | "gap";
  accumulate: boolean;
  seed: number;
  /** Extra elements per stored row (lda, ldb, ldc = row length + pad); NaN in A and B's pads,
   *  a sentinel in C's that must survive. */
  pad?: number;
}

const SENTINEL = 12345;

/** Deterministic values in [-1, 1) from a seed (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

interface Built {
  args: MatmulArgs;
  /** Logical A(b, i, k) and B(b, k, j), read through the same layout the kernel must use. */
  A: (b: number, i: number, k: number) => number;
  B: (b: number, k: number, j: number) => number;
  cOld: Float64Array;
  /** Index of C[b][i][j] in the output array. */
  cAt: (b: number, i: number, j: number) => number;
}

function build(c: Case): Built {
  const next = rng(c.seed);
  const Arr = c.dtype === "f64" ? Float64Array : Float32Array;
  const pad = c.pad ?? 0;
  const [rowsA, colsA] = c.transA ? [c.K, c.M] : [c.M, c.K];
  const [rowsB, colsB] = c.transB ? [c.N, c.K] : [c.K, c.N];
  const lda = colsA + pad;
  const ldb = colsB + pad;
  const ldc = c.N + pad;
  const aMat = rowsA * lda;
  const bMat = rowsB * ldb;
  const sA = c.aStride === undefined ? aMat : c.aStride === 0 ? 0 : aMat + 3;
  const sB = c.bStride === undefined ? bMat : c.bStride === 0 ? 0 : bMat + 3;
  const sC = c.M * ldc;
  const aLen = c.batch === 0 ? 0 : (c.batch - 1) * sA + aMat;
  const bLen = c.batch === 0 ? 0 : (c.batch - 1) * sB + bMat;
  // Gaps between strided matrices and row pads hold NaN: a kernel that reads outside its
  // matrix shows it.
  const a = new Arr(aLen).fill(NaN);
  const b = new Arr(bLen).fill(NaN);
  for (let bi = 0; bi < (sA === 0 ? 1 : c.batch); bi++)
    for (let r = 0; r < rowsA; r++)
      for (let x = 0; x < colsA; x++) a[bi * sA + r * lda + x] = next();
  for (let bi = 0; bi < (sB === 0 ? 1 : c.batch); bi++)
    for (let r = 0; r < rowsB; r++)
      for (let x = 0; x < colsB; x++) b[bi * sB + r * ldb + x] = next();
  const cArr = new Arr(c.batch * sC).fill(SENTINEL);
  const cAt = (bi: number, i: number, j: number): number => bi * sC + i * ldc + j;
  for (let bi = 0; bi < c.batch; bi++)
    for (let i = 0; i < c.M; i++)
      for (let j = 0; j < c.N; j++) cArr[cAt(bi, i, j)] = c.accumulate ? next() : NaN;
  const cOld = Float64Array.from(cArr);
  const A = (bi: number, i: number, k: number): number =>
    a[bi * sA + (c.transA ? k * lda + i : i * lda + k)]!;
  const B = (bi: number, k: number, j: number): number =>
    b[bi * sB + (c.transB ? j * ldb + k : k * ldb + j)]!;
  const args: MatmulArgs = {
    dtype: c.dtype,
    a,
    b,
    c: cArr,
    batch: c.batch,
    M: c.M,
    N: c.N,
    K: c.K,
    transA: c.transA,
    transB: c.transB,
    accumulate: c.accumulate,
  };
  if (c.aStride !== undefined) args.aBatchStride = sA;
  if (c.bStride !== undefined) args.bBatchStride = sB;
  if (pad > 0) Object.assign(args, { lda, ldb, ldc });
  return { args, A, B, cOld, cAt };
}

/**
 * Checks every entry against the naive float64 loop (k ascending from C's old value or 0) with
 * the per-entry summation-order bound |Δ| ≤ n·u·(Σ_k |a_ik·b_kj| + |c_old|) + n·η, n the number
 * of terms (K, or K+1 with accumulate). For f32 the kernel's float64 value is rounded once to
 * float32, which adds at most 2⁻²⁴ relative (plus 2⁻¹⁵⁰ absolute for subnormals).
 * Returns a description of the first failure, or undefined.
 */
function check(c: Case, built: Built): string | undefined {
  const out = built.args.c;
  const terms = c.K + (c.accumulate ? 1 : 0);
  for (let bi = 0; bi < c.batch; bi++) {
    for (let i = 0; i < c.M; i++) {
      for (let j = 0; j < c.N; j++) {
        const at = built.cAt(bi, i, j);
        const old = c.accumulate ? built.cOld[at]! : 0;
        let s = old;
        let mag = Math.abs(old);
        for (let k = 0; k < c.K; k++) {
          const p = built.A(bi, i, k) * built.B(bi, k, j);
          s += p;
          mag += Math.abs(p);
        }
        let bound = terms * u * mag + terms * eta;
        if (c.dtype === "f32") bound += 2 ** -24 * (Math.abs(s) + bound) + 2 ** -150;
        const got = out[at]!;
        const ok = Number.isNaN(s) ? Number.isNaN(got) : Math.abs(got - s) <= bound || got === s;
        if (!ok) {
          return (
            `${JSON.stringify(c)}: C[${bi}][${i}][${j}] = ${got}, naive ${s}, |Δ| = ` +
            `${Math.abs(got - s)} > bound ${bound}`
          );
        }
      }
    }
  }
  for (let x = 0; x < out.length; x++) {
    if (built.cOld[x] === SENTINEL && out[x] !== SENTINEL)
      return `${JSON.stringify(c)}: C element ${x} outside every C[b] was written (${out[x]})`;
  }
  return undefined;
}

function run(c: Case, path: Path): string | undefined {
  const built = build(c);
  configureMatmul({ path });
  try {
    matmul(built.args);
  } finally {
    configureMatmul({ path: "auto" });
  }
  return check(c, built);
}

const base: Case = {
  dtype: "f64",
  batch: 1,
  M: 1,
  N: 1,
  K: 1,
  transA: false,
  transB: false,
  aStride: undefined,
  bStride: undefined,
  accumulate: false,
  seed: 1,
};
const flags: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

beforeAll(() => {
  configureMatmul({ threads: 2, workers: "always" });
});

afterAll(async () => {
  configureMatmul({ path: "auto", stageElements: 4 * 1024 * 1024 });
  await shutdownMatmulWorkers();
});

describe("matmul agrees with the naive float64 loop within the summation-order bound", () => {
  it("on odd sizes 1, 3, 7, 17, 65, 129 in every transpose combination (kernel path)", () => {
    const sizes = [1, 3, 7, 17, 65, 129];
    let seed = 100;
    for (const M of sizes) {
      for (const N of sizes) {
        for (const K of [1, 7, 65, 129]) {
          for (const [transA, transB] of flags) {
            // Large K only on a few shapes, to keep the naive reference fast.
            if (K === 129 && M * N > 17 * 65) continue;
            const c = { ...base, M, N, K, transA, transB, seed: seed++ };
            expect(run(c, "kernel")).toBeUndefined();
          }
        }
      }
    }
  });

  it("on random shapes, flags, strides, dtypes and paths (fast-check)", () => {
    const caseArb = fc.record({
      dtype: fc.constantFrom("f64" as const, "f32" as const),
      batch: fc.integer({ min: 1, max: 3 }),
      M: fc.integer({ min: 1, max: 40 }),
      N: fc.integer({ min: 1, max: 40 }),
      K: fc.integer({ min: 1, max: 70 }),
      transA: fc.boolean(),
      transB: fc.boolean(),
      aStride: fc.constantFrom(undefined, 0 as const, "gap" as const),
      bStride: fc.constantFrom(undefined, 0 as const, "gap" as const),
      accumulate: fc.boolean(),
      seed: fc.integer(),
      pad: fc.constantFrom(0, 0, 2),
    });
    fc.assert(
      fc.property(caseArb, fc.constantFrom<Path>("js", "kernel"), (c, path) => {
        const failure = run(c, path);
        if (failure !== undefined) throw new Error(`${path} path: ${failure}`);
      }),
      { numRuns: 300 },
    );
  });

  it("reads and writes strided views (attention heads of an n×d_model activation) on every path", () => {
    // Q, K, V: n×d with H heads of d_k columns; head h is rows of d_k values at offset h·d_k,
    // ld = d. scores_h = Q_h·K_hᵀ (n×n, contiguous), out_h = P_h·V_h written back interleaved.
    const H = 3;
    const dk = 5;
    const d = H * dk + 2; // two extra columns that must be neither read nor written
    for (const [n, path] of [
      [4, "js"],
      [37, "kernel"],
      [150, "kernel"],
    ] as const) {
      const next = rng(n);
      const q = Float64Array.from({ length: n * d }, next);
      const k = Float64Array.from({ length: n * d }, next);
      const v = Float64Array.from({ length: n * d }, next);
      for (let i = 0; i < n; i++)
        for (const x of [q, k, v]) x.fill(NaN, i * d + H * dk, (i + 1) * d);
      const scores = new Float64Array(H * n * n);
      const out = new Float64Array(n * d).fill(7);
      configureMatmul({ path });
      matmul({
        dtype: "f64",
        a: q,
        b: k,
        c: scores,
        batch: H,
        M: n,
        N: n,
        K: dk,
        transB: true,
        lda: d,
        ldb: d,
        aBatchStride: dk,
        bBatchStride: dk,
      });
      matmul({
        dtype: "f64",
        a: scores,
        b: v,
        c: out,
        batch: H,
        M: n,
        N: dk,
        K: n,
        ldb: d,
        bBatchStride: dk,
        ldc: d,
        cBatchStride: dk,
      });
      configureMatmul({ path: "auto" });
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            let mag = 0;
            for (let x = 0; x < dk; x++) {
              const p = q[i * d + h * dk + x]! * k[j * d + h * dk + x]!;
              s += p;
              mag += Math.abs(p);
            }
            expect(
              Math.abs(scores[(h * n + i) * n + j]! - s),
              `${path} n=${n} scores[${h}][${i}][${j}]`,
            ).toBeLessThanOrEqual(dk * u * mag);
          }
          for (let j = 0; j < dk; j++) {
            let s = 0;
            let mag = 0;
            for (let x = 0; x < n; x++) {
              const p = scores[(h * n + i) * n + x]! * v[x * d + h * dk + j]!;
              s += p;
              mag += Math.abs(p);
            }
            expect(
              Math.abs(out[i * d + h * dk + j]! - s),
              `${path} n=${n} out[${i}][${h * dk + j}]`,
            ).toBeLessThanOrEqual(n * u * mag);
          }
        }
      }
      // The two columns past the heads are untouched.
      for (let i = 0; i < n; i++)
        expect([out[i * d + H * dk], out[i * d + H * dk + 1]]).toEqual([7, 7]);
    }
  });

  it("uses the JS loop below SMALL_WORK and the kernel above, both correct at the boundary", () => {
    const M = 8;
    const N = 8;
    const rt = gemmRuntime();
    for (const K of [SMALL_WORK / (M * N) - 1, SMALL_WORK / (M * N)]) {
      const before = rt.tasksRunBy(0) + rt.tasksRunBy(1);
      const built = build({ ...base, M, N, K, seed: 6 });
      matmul(built.args);
      expect(check({ ...base, M, N, K, seed: 6 }, built)).toBeUndefined();
      const kernelTasks = rt.tasksRunBy(0) + rt.tasksRunBy(1) - before;
      if (M * N * K < SMALL_WORK) expect(kernelTasks).toBe(0);
      else expect(kernelTasks).toBeGreaterThan(0);
    }
  });

  it("handles M = N = 1 with a long K and N = 1 / M = 1 vectors on the kernel path", () => {
    for (const [M, N, K] of [
      [1, 1, 300_000],
      [1, 300, 1000],
      [300, 1, 1000],
    ] as const) {
      for (const [transA, transB] of flags) {
        expect(run({ ...base, M, N, K, transA, transB, seed: M + N }, "kernel")).toBeUndefined();
      }
    }
  });

  it("stages large problems block by block (M, N and K split) with one rounding for f32", () => {
    // A 4096-element budget forces splits in every dimension for these shapes.
    configureMatmul({ stageElements: 4096 });
    try {
      const { Ms, Ns, Ks } = stageBlocks(100, 90, 150, 4096);
      expect([Ms < 100, Ns < 90, Ks < 150]).toEqual([true, true, true]);
      expect(Ms * Ks + Ks * Ns + Ms * Ns).toBeLessThanOrEqual(4096);
      let seed = 7;
      for (const dtype of ["f64", "f32"] as const) {
        for (const [transA, transB] of flags) {
          for (const accumulate of [false, true]) {
            const c = {
              ...base,
              dtype,
              M: 100,
              N: 90,
              K: 150,
              transA,
              transB,
              accumulate,
              seed: seed++,
              pad: accumulate ? 3 : 0,
            };
            expect(run(c, "kernel")).toBeUndefined();
          }
        }
      }
      // Batched with broadcast B, several items per round.
      expect(
        run({ ...base, batch: 5, M: 20, N: 20, K: 20, bStride: 0, seed: 3 }, "kernel"),
      ).toBeUndefined();
      expect(
        run(
          { ...base, batch: 5, M: 20, N: 20, K: 20, aStride: 0, accumulate: true, seed: 4 },
          "kernel",
        ),
      ).toBeUndefined();
    } finally {
      configureMatmul({ stageElements: 4 * 1024 * 1024 });
    }
  });
});

describe("threads", () => {
  it("split work between the caller and a worker, with the same results", async () => {
    const rt = gemmRuntime();
    // The first parallel call starts the worker; it joins later calls once booted.
    run({ ...base, M: 130, N: 130, K: 70, seed: 9 }, "kernel");
    for (let waited = 0; rt.readyWorkers < 1 && waited < 20_000; waited += 10)
      await new Promise((r) => setTimeout(r, 10));
    expect(rt.readyWorkers).toBe(1);
    const before = rt.tasksRunBy(1);
    let seed = 20;
    for (const [transA, transB] of flags) {
      for (const dtype of ["f64", "f32"] as const) {
        // 131·133·67 > PARALLEL_WORK multiply-adds, so the round is split into tiles.
        expect(131 * 133 * 67).toBeGreaterThan(PARALLEL_WORK);
        const pad = seed % 3 === 0 ? 5 : 0;
        expect(
          run(
            {
              ...base,
              dtype,
              M: 131,
              N: 133,
              K: 67,
              transA,
              transB,
              accumulate: seed % 2 === 0,
              seed: seed++,
              pad,
            },
            "kernel",
          ),
        ).toBeUndefined();
      }
    }
    // Batched: 8 × 65×67×33 splits by batch item.
    expect(
      run({ ...base, batch: 8, M: 65, N: 67, K: 33, aStride: "gap", seed: 30 }, "kernel"),
    ).toBeUndefined();
    expect(
      run({ ...base, batch: 8, M: 65, N: 67, K: 33, bStride: 0, transB: true, seed: 31 }, "kernel"),
    ).toBeUndefined();
    // The products above are short enough that a napping worker may find every task taken.
    // Longer ones, until it has taken part (the first, unless other processes hold the CPUs).
    for (let seed = 32; seed < 132 && rt.tasksRunBy(1) === before; seed++) {
      expect(
        run({ ...base, M: 400, N: 300, K: 200, transA: true, seed }, "kernel"),
      ).toBeUndefined();
    }
    expect(rt.tasksRunBy(1)).toBeGreaterThan(before);
  });

  it("give bit-identical results whatever the thread count", () => {
    const c = { ...base, M: 150, N: 170, K: 300, transB: true, seed: 40 };
    const one = build(c);
    const two = build(c);
    configureMatmul({ threads: 1 });
    matmul(one.args);
    configureMatmul({ threads: 2 });
    matmul(two.args);
    expect(Array.from(two.args.c)).toEqual(Array.from(one.args.c));
  });

  it("taskGrid prefers square-ish tiles and reaches the asked piece count", () => {
    expect(taskGrid(512, 512, 8)).toEqual([2, 4]);
    expect(taskGrid(64, 4096, 8)).toEqual([1, 8]);
    // 8 rows make at most 2 tiles of the 4-row register block; columns make up the rest.
    const [gm, gn] = taskGrid(8, 400, 8);
    const mt = Math.ceil(Math.ceil(8 / gm) / 4) * 4;
    const nt = Math.ceil(Math.ceil(400 / gn) / 4) * 4;
    expect(Math.ceil(8 / mt) * Math.ceil(400 / nt)).toBeGreaterThanOrEqual(8);
  });
});

describe("GPT-2-small-sized operands", () => {
  it("are computed block by block with the kernel memory bounded by the staging budget", () => {
    // logits = X · W_teᵀ with X 64×768 and W_te 50257×768 (f32, so the test's own arrays stay
    // at 150 MiB), then the FFN's 64×768 · 768×3072 and its weight gradient Xᵀ · dY.
    const next = rng(77);
    const shapes = [
      { M: 64, N: 50257, K: 768, transA: false, transB: true },
      { M: 64, N: 3072, K: 768, transA: false, transB: false },
      { M: 768, N: 3072, K: 64, transA: true, transB: false },
    ];
    for (const { M, N, K, transA, transB } of shapes) {
      const a = new Float32Array(M * K);
      const b = new Float32Array(K * N);
      for (let x = 0; x < a.length; x++) a[x] = next();
      for (let x = 0; x < b.length; x++) b[x] = next();
      const c = new Float32Array(M * N);
      matmul({ dtype: "f32", a, b, c, batch: 1, M, N, K, transA, transB });
      // 300 sampled entries against the naive float64 dot product, with the f32 bound of check().
      for (let s = 0; s < 300; s++) {
        const i = Math.floor(((next() + 1) / 2) * M);
        const j = Math.floor(((next() + 1) / 2) * N);
        let sum = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const p = a[transA ? k * M + i : i * K + k]! * b[transB ? j * K + k : k * N + j]!;
          sum += p;
          mag += Math.abs(p);
        }
        const delta = K * u * mag + K * eta;
        const bound = delta + 2 ** -24 * (Math.abs(sum) + delta) + 2 ** -150;
        expect(Math.abs(c[i * N + j]! - sum), `${M}×${N}×${K} C[${i}][${j}]`).toBeLessThanOrEqual(
          bound,
        );
      }
    }
    const rt = gemmRuntime();
    const limit = LAYOUT.reserved + rt.threadCount * THREAD_BUFFER_BYTES + STAGE_ELEMENTS * 8;
    expect(rt.memory.buffer.byteLength).toBeLessThanOrEqual(Math.ceil(limit / 65536) * 65536);
    expect(rt.memory.buffer.byteLength).toBeLessThan(64 * 2 ** 20);
  });
});

describe("edge cases", () => {
  it("K = 0 gives zeros, or leaves C bit-for-bit unchanged with accumulate", () => {
    for (const path of ["js", "kernel"] as const) {
      configureMatmul({ path });
      const c = new Float64Array([NaN, -0, 5, Infinity, 1, 2]);
      matmul({
        dtype: "f64",
        a: new Float64Array(0),
        b: new Float64Array(0),
        c,
        batch: 2,
        M: 1,
        N: 3,
        K: 0,
      });
      expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
      const d = new Float32Array([NaN, -0, 5, Infinity]);
      matmul({
        dtype: "f32",
        a: new Float32Array(0),
        b: new Float32Array(0),
        c: d,
        batch: 1,
        M: 2,
        N: 2,
        K: 0,
        accumulate: true,
      });
      expect(Object.is(d[1], -0)).toBe(true);
      expect(Array.from(d)).toEqual([NaN, -0, 5, Infinity]);
    }
    configureMatmul({ path: "auto" });
  });

  it("M, N or batch = 0 leaves C untouched", () => {
    const c = new Float64Array([7, 8]);
    matmul({
      dtype: "f64",
      a: new Float64Array(0),
      b: new Float64Array(6),
      c,
      batch: 1,
      M: 0,
      N: 2,
      K: 3,
    });
    matmul({
      dtype: "f64",
      a: new Float64Array(6),
      b: new Float64Array(0),
      c,
      batch: 1,
      M: 2,
      N: 0,
      K: 3,
    });
    matmul({
      dtype: "f64",
      a: new Float64Array(0),
      b: new Float64Array(0),
      c,
      batch: 0,
      M: 1,
      N: 2,
      K: 3,
    });
    expect(Array.from(c)).toEqual([7, 8]);
  });

  it("works on the documented example", () => {
    const a = new Float64Array([1, 2, 3, 4]);
    const b = new Float64Array([5, 6, 7, 8]);
    const c = new Float64Array(4);
    matmul({ dtype: "f64", a, b, c, batch: 1, M: 2, N: 2, K: 2 });
    expect(Array.from(c)).toEqual([19, 22, 43, 50]);
  });

  it("propagates NaN and Inf exactly to the entries they reach, on every path", () => {
    // Sizes: small (JS), medium (kernel, edge tiles), large (threaded).
    for (const [M, N, K, path] of [
      [5, 6, 7, "js"],
      [37, 29, 41, "kernel"],
      [131, 129, 70, "kernel"],
    ] as const) {
      for (const [transA, transB] of flags) {
        const c = { ...base, M, N, K, transA, transB, seed: M };
        const built = build(c);
        const { a, b } = built.args;
        const at = (i: number, k: number): number => (transA ? k * M + i : i * K + k);
        const bt = (k: number, j: number): number => (transB ? j * K + k : k * N + j);
        const r = M - 1; // last row: the edge tile when M is not a multiple of the block
        const col = N - 1;
        a[at(r, K - 1)] = NaN; // row r of C becomes NaN
        b[bt(0, col)] = NaN; // column col of C becomes NaN
        // Row 0 of A: +Inf at k = 1 times B[1, :] with one zero → that entry is Inf·0 = NaN.
        a[at(0, 1)] = Infinity;
        for (let j = 0; j < N; j++) b[bt(1, j)] = j === 2 ? 0 : 1;
        for (let k = 0; k < K; k++) if (k !== 1) a[at(0, k)] = 0;
        configureMatmul({ path });
        matmul(built.args);
        configureMatmul({ path: "auto" });
        const out = built.args.c;
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            const v = out[i * N + j]!;
            const where = `${path} ${M}×${N}×${K} transA=${transA} transB=${transB} C[${i}][${j}] = ${v}`;
            if (i === r || j === col || (i === 0 && j === 2))
              expect(Number.isNaN(v), where).toBe(true);
            else if (i === 0) expect(v, where).toBe(Infinity);
            else expect(Number.isFinite(v), where).toBe(true);
          }
        }
        expect(check(c, built)).toBeUndefined();
      }
    }
  });

  it("keeps extreme magnitudes within the bound (no overflow in the blocked sums)", () => {
    for (const scale of [1e150, 1e-160]) {
      for (const path of ["js", "kernel"] as const) {
        const c = { ...base, M: 33, N: 35, K: 67, seed: 11 };
        const built = build(c);
        const { a, b } = built.args;
        for (let x = 0; x < a.length; x++) a[x]! *= scale;
        for (let x = 0; x < b.length; x++) b[x]! *= scale;
        configureMatmul({ path });
        matmul(built.args);
        configureMatmul({ path: "auto" });
        expect(check(c, built)).toBeUndefined();
        expect(built.args.c.some((v) => v !== 0 && Number.isFinite(v))).toBe(true);
      }
    }
  });

  it("rounds f32 results once: 1 + (2⁻²⁴ + 2⁻⁴⁸) stored as 1 + 2⁻²³, not 1", () => {
    // Rounding the dot product to float32 first would give 2⁻²⁴ (a tie, to even), and then
    // 1 + 2⁻²⁴ ties to 1. Rounding the float64 sum 1 + 2⁻²⁴ + 2⁻⁴⁸ once gives 1 + 2⁻²³.
    for (const [K, path] of [
      [2, "js"],
      [300, "kernel"],
    ] as const) {
      const a = new Float32Array(K);
      const b = new Float32Array(K);
      a[0] = 1;
      a[1] = 1;
      b[0] = 2 ** -24;
      b[1] = 2 ** -48;
      const c = new Float32Array([1]);
      configureMatmul({ path });
      matmul({ dtype: "f32", a, b, c, batch: 1, M: 1, N: 1, K, accumulate: true });
      configureMatmul({ path: "auto" });
      expect(c[0]).toBe(1 + 2 ** -23);
    }
  });
});

describe("bad input", () => {
  const ok = (): MatmulArgs => ({
    dtype: "f64",
    a: new Float64Array(6),
    b: new Float64Array(12),
    c: new Float64Array(8),
    batch: 1,
    M: 2,
    N: 4,
    K: 3,
  });

  it("names the array whose type does not match the dtype", () => {
    expect(() => matmul({ ...ok(), b: new Float32Array(12) })).toThrow(
      new TensorError('matmul: dtype is "f64" so b must be a Float64Array, got Float32Array'),
    );
    expect(() => matmul({ ...ok(), dtype: "f32" })).toThrow(
      'matmul: dtype is "f32" so a must be a Float32Array, got Float64Array',
    );
    expect(() => matmul({ ...ok(), dtype: "i32" as "f64" })).toThrow(
      'matmul: dtype must be "f64" or "f32", got "i32"',
    );
  });

  it("rejects negative, fractional and non-number sizes", () => {
    expect(() => matmul({ ...ok(), M: -1 })).toThrow(
      "matmul: M must be a non-negative integer, got -1",
    );
    expect(() => matmul({ ...ok(), K: 1.5 })).toThrow(
      "matmul: K must be a non-negative integer, got 1.5",
    );
    expect(() => matmul({ ...ok(), batch: NaN })).toThrow(
      "matmul: batch must be a non-negative integer, got NaN",
    );
    expect(() => matmul({ ...ok(), aBatchStride: -6 })).toThrow(
      "matmul: aBatchStride must be a non-negative integer, got -6",
    );
  });

  it("says how many elements each operand needs", () => {
    expect(() => matmul({ ...ok(), a: new Float64Array(5) })).toThrow(
      "matmul: a has 5 elements, but batch 1 × (2×3) with lda 3 and aBatchStride 6 needs 6",
    );
    expect(() => matmul({ ...ok(), transB: true, b: new Float64Array(11) })).toThrow(
      "matmul: b has 11 elements, but batch 1 × (4×3) with ldb 3 and bBatchStride 12 needs 12",
    );
    expect(() => matmul({ ...ok(), batch: 2, aBatchStride: 0, b: new Float64Array(24) })).toThrow(
      "matmul: c has 8 elements, but batch 2 × (2×4) with ldc 4 and cBatchStride 8 needs 16",
    );
    // A strided view needs (rows − 1)·ld + cols elements, not rows·ld.
    expect(() => matmul({ ...ok(), lda: 5, a: new Float64Array(7) })).toThrow(
      "matmul: a has 7 elements, but batch 1 × (2×3) with lda 5 and aBatchStride 10 needs 8",
    );
    expect(() => matmul({ ...ok(), lda: 5, a: new Float64Array(8) })).not.toThrow();
  });

  it("rejects leading dimensions shorter than a row, and C[b] that overlap", () => {
    expect(() => matmul({ ...ok(), lda: 2 })).toThrow(
      "matmul: lda (2) must be at least the row length of the stored A, K (3)",
    );
    expect(() => matmul({ ...ok(), transB: true, ldb: 2 })).toThrow(
      "matmul: ldb (2) must be at least the row length of the stored Bᵀ, K (3)",
    );
    expect(() => matmul({ ...ok(), ldc: 3 })).toThrow(
      "matmul: ldc (3) must be at least the row length of the stored C, N (4)",
    );
    const c = new Float64Array(64);
    const b = new Float64Array(24);
    expect(() => matmul({ ...ok(), b, c, batch: 2, aBatchStride: 0, cBatchStride: 4 })).toThrow(
      "matmul: the C[b] overlap: with cBatchStride 4, ldc 4 and M×N = 2×4, batch 2 outputs would share elements",
    );
    // Interleaved within rows (two heads side by side) is fine.
    expect(() =>
      matmul({ ...ok(), b, c, batch: 2, aBatchStride: 0, cBatchStride: 4, ldc: 8 }),
    ).not.toThrow();
  });

  it("refuses an output that aliases an input", () => {
    const buf = new Float64Array(20);
    expect(() => matmul({ ...ok(), a: buf.subarray(0, 6), c: buf.subarray(4, 12) })).toThrow(
      "matmul: c overlaps a (same buffer); the output must not alias an input",
    );
    expect(() =>
      matmul({ ...ok(), b: buf.subarray(0, 12), c: buf.subarray(12, 20) }),
    ).not.toThrow();
  });
});
