/**
 * Matmul micro-benchmark: GFLOP/s (2·batch·M·N·K / seconds) of
 *   naive    — the textbook i-j-k triple loop in JS,
 *   js       — the library's small-problem path (i-k-j loop, float64 row accumulator),
 *   kernel×1 — the WebAssembly SIMD kernel on the calling thread only,
 *   kernel×T — the same kernel with the worker pool (T threads, caller included),
 * for square sizes (A·B, A·Bᵀ, Aᵀ·B; f64 and f32) and the GPT shapes.
 *
 * Each cell is the median of ≥ 5 timed repetitions after warm-up runs (which also let V8 tier
 * the WebAssembly up from its baseline compiler). Run: `npx tsx bench/matmul-micro.ts`
 * Options: `--quick` (3 warm-ups, 5 repetitions, square sizes only), `--no-naive`.
 */
import { availableParallelism, cpus } from "node:os";
import { configureMatmul, matmul, shutdownMatmulWorkers, type MatmulArgs } from "../autodiff/kernels/matmul.js";
import { gemmRuntime } from "../autodiff/kernels/pool.js";

const quick = process.argv.includes("--quick");
const noNaive = process.argv.includes("--no-naive");
const REPS = 5;
const threads = availableParallelism();

interface Shape {
  name: string;
  batch: number;
  M: number;
  N: number;
  K: number;
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
          s += a[aOff + (p.transA ? k * M + i : i * K + k)]! * b[bOff + (p.transB ? j * K + k : k * N + j)]!;
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

async function main(): Promise<void> {
  console.log(`# matmul micro-benchmark, ${new Date().toISOString().slice(0, 10)}`);
  console.log(`node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"}, ${threads} threads available`);
  console.log(`GFLOP/s, median of ${REPS} after warm-up\n`);

  // Start the workers and wait until they have booted, so the threaded column measures work.
  configureMatmul({ threads });
  const warmup = args({ name: "", batch: 1, M: 256, N: 256, K: 256, transA: false, transB: false }, "f64");
  matmul(warmup);
  const rt = gemmRuntime();
  for (let waited = 0; rt.readyWorkers < threads - 1 && waited < 10_000; waited += 10) await new Promise((r) => setTimeout(r, 10));

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
    shapes.push({ name: "64×768 · 768×2304 (QKV)", batch: 1, M: 64, N: 2304, K: 768, transA: false, transB: false });
    shapes.push({ name: "64×768 · (50257×768)ᵀ (logits)", batch: 1, M: 64, N: 50257, K: 768, transA: false, transB: true });
    shapes.push({ name: "128×256 · 256×768", batch: 1, M: 128, N: 768, K: 256, transA: false, transB: false });
    shapes.push({ name: "8 × 128×32 · 32×128 (scores)", batch: 8, M: 128, N: 128, K: 32, transA: false, transB: false });
  }

  const header = `| shape | dtype | naive | js | kernel×1 | kernel×${threads} |`;
  console.log(header);
  console.log("|---|---|---:|---:|---:|---:|");
  for (const s of shapes) {
    for (const dtype of ["f64", "f32"] as const) {
      const p = args(s, dtype);
      const flops = 2 * s.batch * s.M * s.N * s.K;
      const big = flops > 1e9;
      const warm = quick ? 3 : 5;
      const cells: string[] = [];
      cells.push(noNaive ? "–" : measure(() => naive(p), flops, big ? 1 : 2).toFixed(2));
      configureMatmul({ path: "js" });
      cells.push(noNaive ? "–" : measure(() => matmul(p), flops, big ? 1 : 2).toFixed(2));
      configureMatmul({ path: "kernel", threads: 1 });
      cells.push(measure(() => matmul(p), flops, warm).toFixed(2));
      configureMatmul({ path: "auto", threads });
      cells.push(measure(() => matmul(p), flops, warm).toFixed(2));
      console.log(`| ${s.name} | ${dtype} | ${cells.join(" | ")} |`);
    }
  }
  const mem = rt.memory.buffer.byteLength / 2 ** 20;
  console.log(`\nkernel memory after the run: ${mem.toFixed(1)} MiB`);
  await shutdownMatmulWorkers();
}

await main();
