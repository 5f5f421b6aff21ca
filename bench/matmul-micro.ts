/**
 * Matmul micro-benchmark: GFLOP/s (2·batch·M·N·K / seconds) of
 *   naive    — the textbook i-j-k triple loop in JS,
 *   js       — the library's small-problem path (i-k-j loop, float64 row accumulator),
 *   kernel×1 — the WebAssembly SIMD kernel on the calling thread only,
 *   kernel×T — the same kernel with the worker pool (T threads, caller included) on every
 *              product large enough to split,
 *   auto     — the default: the pool only while it makes products of that size faster,
 * for square sizes (A·B, A·Bᵀ, Aᵀ·B; f64 and f32) and the GPT shapes.
 *
 * Each cell is the median of ≥ 5 timed repetitions after warm-up runs (which also let V8 tier
 * the WebAssembly up from its baseline compiler). Run: `npx tsx bench/matmul-micro.ts`
 * Options: `--quick` (3 warm-ups, 5 repetitions, square sizes only), `--no-naive`,
 * `--steps` (only the kernel-variant table: what SIMD, the register block, unrolling, cache
 * blocking and SIMD packing each buy, measured on data already in the module's memory),
 * `--block` (only the 18 products of one GPT block's forward and backward pass).
 */
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import {
  DEFAULT_SHAPE,
  LAYOUT,
  buildGemmModule,
  type GemmKernelShape,
} from "../autodiff/kernels/gemm-wasm.js";
import {
  configureMatmul,
  matmul,
  shutdownMatmulWorkers,
  type MatmulArgs,
  type MatmulSizes,
} from "../autodiff/kernels/matmul.js";
import { BLOCKING, gemmRuntime } from "../autodiff/kernels/pool.js";
import { wasm } from "../autodiff/kernels/wasm-api.js";

const quick = process.argv.includes("--quick");
const noNaive = process.argv.includes("--no-naive");
const stepsOnly = process.argv.includes("--steps");
const blockOnly = process.argv.includes("--block");
const REPS = 5;
const threads = availableParallelism();

interface Shape extends MatmulSizes {
  name: string;
  transA: boolean;
  transB: boolean;
}

function naive(p: MatmulArgs): void {
  const { a, b, c, M, N, K } = p;
  for (let bi = 0; bi < p.batch; bi++) {
    const aOff = bi * M * K;
    const bOff = bi * K * N;
    const cOff = bi * M * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          s +=
            a[aOff + (p.transA ? k * M + i : i * K + k)]! *
            b[bOff + (p.transB ? j * K + k : k * N + j)]!;
        }
        c[cOff + i * N + j] = s;
      }
    }
  }
}

function args(s: Shape, dtype: "f64" | "f32"): MatmulArgs {
  const Arr = dtype === "f64" ? Float64Array : Float32Array;
  const fill = (n: number, seed: number): Float64Array | Float32Array => {
    const x = new Arr(n);
    for (let i = 0; i < n; i++) x[i] = (((i * 2654435761 + seed) >>> 0) % 2001) / 1000 - 1;
    return x;
  };
  return {
    dtype,
    a: fill(s.batch * s.M * s.K, 1),
    b: fill(s.batch * s.K * s.N, 2),
    c: new Arr(s.batch * s.M * s.N),
    batch: s.batch,
    M: s.M,
    N: s.N,
    K: s.K,
    transA: s.transA,
    transB: s.transB,
  };
}

/** Busy CPU time of the whole machine so far, in ms (Linux /proc/stat; undefined elsewhere). */
function machineBusyMs(): number | undefined {
  try {
    const fields = readFileSync("/proc/stat", "utf8")
      .split("\n")[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    // user nice system idle iowait irq softirq steal …; jiffies of 10 ms (USER_HZ = 100)
    const busy = fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!;
    return busy * 10;
  } catch {
    return undefined;
  }
}

/** Starts a clock of other processes' CPU use: call the result to get their average number
 *  of busy cores since then (machine busy time minus this process's, over wall time). */
function othersLoad(): () => string {
  const busy0 = machineBusyMs();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const busy1 = machineBusyMs();
    if (busy0 === undefined || busy1 === undefined) return "?";
    const own = process.cpuUsage(own0);
    const others = busy1 - busy0 - (own.user + own.system) / 1000;
    return Math.max(0, others / (performance.now() - t0)).toFixed(2);
  };
}

/** Median GFLOP/s over REPS timed runs after `warm` untimed ones. */
function measure(fn: () => void, flops: number, warm: number, reps = REPS): number {
  for (let i = 0; i < warm; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  return flops / (times[Math.floor(reps / 2)]! * 1e6);
}

/**
 * Kernel variants on one thread, called directly on a 512×512 · 512×512 product already in the
 * module's memory (no staging): GFLOP/s, median of REPS after warm-up. Then packing speed.
 */
function kernelSteps(): void {
  const n = 512;
  const variants: {
    label: string;
    shape: GemmKernelShape;
    blocking?: { mc: number; kc: number; nc: number };
  }[] = [
    {
      label: "scalar f64, 2×2 register block",
      shape: { ...DEFAULT_SHAPE, MR: 2, NR: 2, simd: false },
    },
    { label: "scalar f64, 4×4 register block", shape: { ...DEFAULT_SHAPE, simd: false } },
    { label: "SIMD f64x2, 2×2", shape: { ...DEFAULT_SHAPE, MR: 2, NR: 2 } },
    { label: "SIMD f64x2, 4×4, k unrolled ×4", shape: { ...DEFAULT_SHAPE, unroll: 4 } },
    { label: "SIMD f64x2, 4×4 (default)", shape: DEFAULT_SHAPE },
    { label: "SIMD f64x2, 2×8", shape: { ...DEFAULT_SHAPE, MR: 2, NR: 8 } },
    { label: "SIMD f64x2, 6×4", shape: { ...DEFAULT_SHAPE, MR: 6, NR: 4 } },
    { label: "SIMD f64x2, 4×8", shape: { ...DEFAULT_SHAPE, MR: 4, NR: 8 } },
    {
      label: "default, no cache blocking (mc = kc = nc = 4096)",
      shape: DEFAULT_SHAPE,
      blocking: { mc: 4096, kc: 4096, nc: 4096 },
    },
  ];
  console.log(`## kernel variants, ${n}³ f64 A·B on one thread, data already in wasm memory\n`);
  console.log("| variant | GFLOP/s |");
  console.log("|---|---:|");
  const instantiate = (shape: GemmKernelShape) => {
    const memory = new wasm.Memory({ initial: 2048, maximum: 32768, shared: true });
    const exports = new wasm.Instance(new wasm.Module(buildGemmModule(shape)), { env: { memory } })
      .exports;
    return { memory, exports: exports as Record<string, (...args: number[]) => void> };
  };
  for (const v of variants) {
    const { memory, exports } = instantiate(v.shape);
    const header = new Int32Array(memory.buffer, 0, 64);
    const blocking = v.blocking ?? BLOCKING;
    header[LAYOUT.mc / 4] = blocking.mc;
    header[LAYOUT.kc / 4] = blocking.kc;
    header[LAYOUT.nc / 4] = blocking.nc;
    const A = 1 << 20;
    const B = A + n * n * 8;
    const C = B + n * n * 8;
    const pa = C + n * n * 8;
    const pb = pa + Math.min(blocking.mc, n) * Math.min(blocking.kc, n) * 8 + 64;
    const tile = pb + Math.min(blocking.kc, n) * Math.min(blocking.nc, n) * 8 + 64;
    const f64 = new Float64Array(memory.buffer);
    for (let i = 0; i < 2 * n * n; i++) f64[A / 8 + i] = (i % 1001) / 1000 - 0.5;
    const gemm = exports.gemm!;
    const gflops = measure(
      () => gemm(n, n, n, A, n, 1, B, n, 1, C, n, pa, pb, tile),
      2 * n ** 3,
      8,
    );
    console.log(`| ${v.label} | ${gflops.toFixed(2)} |`);
  }

  // Packing a 256×2048 block of B (row-major, 2304 columns), each way the kernel can.
  const kb = 256;
  const nb = 2048;
  console.log(`\n## packing a ${kb}×${nb} block of B, ns per element (best of 40)\n`);
  console.log("| copy loop | ns/element |");
  console.log("|---|---:|");
  const cases: { label: string; group: number; ws: number; ls: number }[] = [
    { label: "B row-major, v128 copies, one panel per pass", group: 1, ws: 8, ls: 2304 * 8 },
    {
      label: "B row-major, v128 copies, 4 panels per pass (default)",
      group: 4,
      ws: 8,
      ls: 2304 * 8,
    },
    { label: "B transposed, 2×2 shuffle transpose", group: 4, ws: 768 * 8, ls: 8 },
    { label: "any stride (scalar loop)", group: 4, ws: 16, ls: 4608 * 8 },
  ];
  for (const c of cases) {
    const { memory, exports } = instantiate({ ...DEFAULT_SHAPE, packGroup: c.group });
    // Real data in the source: untouched pages all map the kernel's shared zero page, which
    // would make every read a cache hit.
    const src = new Float64Array(memory.buffer, 1 << 20, kb * 4608);
    for (let i = 0; i < src.length; i++) src[i] = i;
    const packB = exports.pack_b!;
    let best = Infinity;
    for (let rep = 0; rep < 40; rep++) {
      const t0 = performance.now();
      packB(1 << 20, c.ws, c.ls, nb, kb, 40 << 20);
      best = Math.min(best, performance.now() - t0);
    }
    console.log(`| ${c.label} | ${((best * 1e6) / (kb * nb)).toFixed(3)} |`);
  }
  console.log();
}

/**
 * The 18 products of one GPT block's forward and backward pass (d_model 256, n 128, H 8,
 * d_k 32, d_ff 1024; fused QKV): for Y = A·B the backward pass needs dA = dY·Bᵀ and dB = Aᵀ·dY.
 */
const GPT_BLOCK: Shape[] = (() => {
  const n = 128;
  const d = 256;
  const H = 8;
  const dk = d / H;
  const ff = 4 * d;
  const forward: Shape[] = [
    { name: "QKV", batch: 1, M: n, N: 3 * d, K: d, transA: false, transB: false },
    { name: "scores", batch: H, M: n, N: n, K: dk, transA: false, transB: true },
    { name: "P·V", batch: H, M: n, N: dk, K: n, transA: false, transB: false },
    { name: "out", batch: 1, M: n, N: d, K: d, transA: false, transB: false },
    { name: "FFN up", batch: 1, M: n, N: ff, K: d, transA: false, transB: false },
    { name: "FFN down", batch: 1, M: n, N: d, K: ff, transA: false, transB: false },
  ];
  const backward = forward.flatMap((f): Shape[] => [
    // dA (M×K) = dY (M×N) · Bᵀ: B is K×N as stored (or N×K when f.transB).
    {
      name: `d${f.name} dA`,
      batch: f.batch,
      M: f.M,
      N: f.K,
      K: f.N,
      transA: false,
      transB: !f.transB,
    },
    // dB (K×N) = Aᵀ (K×M) · dY (M×N); when f.transB, dBᵀ (N×K) = dYᵀ · A instead.
    f.transB
      ? {
          name: `d${f.name} dB`,
          batch: f.batch,
          M: f.N,
          N: f.K,
          K: f.M,
          transA: true,
          transB: false,
        }
      : {
          name: `d${f.name} dB`,
          batch: f.batch,
          M: f.K,
          N: f.N,
          K: f.M,
          transA: true,
          transB: false,
        },
  ]);
  return [...forward, ...backward];
})();

function gptBlock(): void {
  const mats = GPT_BLOCK.map((s) => args(s, "f64"));
  const flops = GPT_BLOCK.reduce((sum, s) => sum + 2 * s.batch * s.M * s.N * s.K, 0);
  const all = (): void => {
    for (const p of mats) matmul(p);
  };
  console.log(
    `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}`,
  );
  console.log(
    `\n## one GPT block, forward + backward products (${GPT_BLOCK.length} ` +
      `calls, ${(flops / 1e6).toFixed(0)} MFLOP, f64)\n`,
  );
  console.log("| path | ms | GFLOP/s |");
  console.log("|---|---:|---:|");
  for (const [label, options] of [
    ["kernel×1", { path: "kernel", threads: 1 }],
    [`kernel×${threads}`, { path: "auto", threads, workers: "always" }],
    ["auto", { path: "auto", threads, workers: "adaptive" }],
  ] as const) {
    configureMatmul(options);
    const gflops = measure(all, flops, 5, 9);
    console.log(`| ${label} | ${(flops / gflops / 1e6).toFixed(2)} | ${gflops.toFixed(2)} |`);
  }
}

async function main(): Promise<void> {
  console.log(`# matmul micro-benchmark, ${new Date().toISOString().slice(0, 10)}`);
  console.log(
    `node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"}, ${threads} threads available`,
  );
  console.log(`GFLOP/s, median of ${REPS} after warm-up\n`);
  if (!blockOnly) kernelSteps();
  if (stepsOnly) return;

  // Start the workers and wait until they have booted, so the threaded column measures work.
  configureMatmul({ threads });
  // Warm-up: V8 first runs WebAssembly with its baseline compiler and tiers hot functions up.
  const warmup = args(
    { name: "", batch: 1, M: 256, N: 256, K: 256, transA: false, transB: false },
    "f64",
  );
  for (let i = 0; i < 20; i++) matmul(warmup);
  const rt = gemmRuntime();
  for (let waited = 0; rt.readyWorkers < threads - 1 && waited < 10_000; waited += 10)
    await new Promise((r) => setTimeout(r, 10));

  const shapes: Shape[] = [];
  for (const n of [64, 128, 256, 512]) {
    for (const [transA, transB, op] of [
      [false, false, "A·B"],
      [false, true, "A·Bᵀ"],
      [true, false, "Aᵀ·B"],
    ] as const) {
      shapes.push({ name: `${n}³ ${op}`, batch: 1, M: n, N: n, K: n, transA, transB });
    }
  }
  if (!quick) {
    shapes.push({
      name: "64×768 · 768×2304 (QKV)",
      batch: 1,
      M: 64,
      N: 2304,
      K: 768,
      transA: false,
      transB: false,
    });
    shapes.push({
      name: "64×768 · (50257×768)ᵀ (logits)",
      batch: 1,
      M: 64,
      N: 50257,
      K: 768,
      transA: false,
      transB: true,
    });
    shapes.push({
      name: "128×256 · 256×768",
      batch: 1,
      M: 128,
      N: 768,
      K: 256,
      transA: false,
      transB: false,
    });
    shapes.push({
      name: "8 × 128×32 · 32×128 (scores)",
      batch: 8,
      M: 128,
      N: 128,
      K: 32,
      transA: false,
      transB: false,
    });
  }

  if (blockOnly) {
    gptBlock();
    await shutdownMatmulWorkers();
    return;
  }
  console.log(
    `load average before: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}`,
  );
  console.log("(others: cores busy with other processes during the row, from /proc/stat)\n");
  const header = `| shape | dtype | naive | js | kernel×1 | kernel×${threads} | auto | others |`;
  console.log(header);
  console.log("|---|---|---:|---:|---:|---:|---:|---:|");
  for (const s of shapes) {
    for (const dtype of ["f64", "f32"] as const) {
      const p = args(s, dtype);
      const flops = 2 * s.batch * s.M * s.N * s.K;
      const big = flops > 1e9;
      const warm = quick ? 3 : 5;
      const others = othersLoad();
      const cells: string[] = [];
      cells.push(noNaive ? "–" : measure(() => naive(p), flops, big ? 1 : 2).toFixed(2));
      configureMatmul({ path: "js" });
      cells.push(noNaive ? "–" : measure(() => matmul(p), flops, big ? 1 : 2).toFixed(2));
      configureMatmul({ path: "kernel", threads: 1 });
      cells.push(measure(() => matmul(p), flops, warm).toFixed(2));
      configureMatmul({ path: "auto", threads, workers: "always" });
      cells.push(measure(() => matmul(p), flops, warm).toFixed(2));
      configureMatmul({ workers: "adaptive" });
      cells.push(measure(() => matmul(p), flops, warm).toFixed(2));
      cells.push(others());
      console.log(`| ${s.name} | ${dtype} | ${cells.join(" | ")} |`);
    }
  }
  gptBlock();
  const mem = rt.memory.buffer.byteLength / 2 ** 20;
  console.log(`\nkernel memory after the run: ${mem.toFixed(1)} MiB`);
  await shutdownMatmulWorkers();
}

await main();
