/**
 * `npm run bench` (`tsx bench/run.ts`): specformer's engine against TensorFlow.js (CPU and
 * WebAssembly backends) and PyTorch, side by side in one run, on the same workloads with the same
 * seeded values. Every engine's result is checked against specformer's float64 result before its
 * time is counted. Writes `bench/results.json` and `bench/RESULTS.md`.
 *
 * Workloads: matmul (256, 512; f64, f32; A·B, A·Bᵀ, Aᵀ·B), one GPT block forward + backward at two
 * sizes, a GPT-2-small-shaped model forward + backward on 64 tokens (each engine in a process of
 * its own, for its peak memory), gradcheck (fast mode) on the tiny GPT, and laws checked per
 * second; and what each of the interpreter's optimisations buys (the same pass with them switched
 * on one by one).
 *
 * Also: the process protocol's transport (JSON numbers against binary frames, through the Node echo
 * fixture and the NumPy example; bench/transport.ts) and the wall time of `npm start` (`specformer
 * verify` on the reference; needs `npm run build`).
 *
 * Options: `--quick` (fewer repetitions), `--smoke` (every workload at a tiny size, once; what the
 * test runs), `--out DIR` (default: bench/), `--only
 * matmul,block,gpt,interpreter,gradcheck,laws,transport,gpt-process,startup`
 * (a partial run keeps the other parts of the previous bench/results.json in the report; also
 * `cli-startup` and `timings`, which print their figures only),
 * `--no-tfjs-cpu-gpt` (skip tfjs's CPU backend on the GPT-2 shape, which takes minutes),
 * `--fma` (specformer's products with the relaxed-SIMD FMA kernel, where the runtime has it; the
 * machine table says which kernel ran), `--render` (RESULTS.md again from results.json, targets
 * judged anew, nothing measured).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { availableParallelism, cpus, freemem, loadavg, totalmem } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import "../spec/index.js";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate, type Optimizations } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import { gemm } from "../autodiff/gemm.js";
import { gradcheckGraph } from "../autodiff/gradcheck.js";
import {
  configureMatmul,
  matmulKernelInfo,
  shutdownMatmulWorkers,
} from "../autodiff/kernels/matmul.js";
import { fmaSupport } from "../autodiff/kernels/features.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { runLaws } from "../properties/run.js";
import { referenceImplementation } from "../reference/implementation.js";
import { hashUniform } from "./seeded.js";
import {
  BLOCK_SIZES,
  GPT2_SMALL,
  SEED,
  agree,
  agreementTolerance,
  blockConfig,
  blockLabel,
  blockPass,
  blockTensors,
  gptConfig,
  gptTensors,
  makeTensors,
  presetSize,
  summarize,
  fwdBwdDepth,
  gptDepth,
  summarizeAll,
  summarizeArrays,
  gradsNamed,
  timeIt,
  timingOf,
  type Agreement,
  type BlockSize,
  type GptSize,
  type Summary,
  type Timing,
} from "./workloads.js";
import { TorchPeer, torchUnavailable } from "./peers/torch.js";
import type { GptChildResult, GptJob } from "./gpt-child.js";
import { renderMarkdown } from "./report.js";
import { PYTHON, transportBench, type TransportResults } from "./transport.js";
import { gptThroughProcess } from "./gpt-process.js";
import { runTimings } from "./timings.js";

export type Engine = "specformer" | "tfjs-cpu" | "tfjs-wasm" | "torch";
export const ENGINES: readonly Engine[] = ["specformer", "tfjs-cpu", "tfjs-wasm", "torch"];

export interface Row {
  readonly workload: string;
  readonly engine: Engine;
  readonly dtype: FloatDType;
  /** Set when this engine did not run this workload, with the reason. */
  readonly skipped?: string;
  readonly timing?: Timing;
  /** Forward pass alone (block workloads). */
  readonly forward?: Timing;
  readonly gflops?: number;
  /** Share of the machine's SIMD128 peak (matmul). */
  readonly peakShare?: number;
  /** Agreement with specformer's float64 result. */
  readonly agreement?: Agreement;
  /** This engine's median time over specformer's (float64) median: > 1 means specformer is faster. */
  readonly ratioToSpecformer?: number;
  readonly peakRssBytes?: number;
  readonly heapUsedBytes?: number;
  readonly arrayBuffersBytes?: number;
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly mhz: number;
  readonly memoryGiB: number;
  readonly loadavgBefore: readonly number[];
  readonly loadavgAfter?: readonly number[];
  readonly node: string;
  readonly tfjs?: string;
  readonly tfjsWasm?: { simd: boolean; threads: boolean };
  readonly torch?: {
    version: string;
    threads: number;
    blas: string;
    blasLibraries: readonly string[];
    numpy: string;
  };
  readonly torchSkipped?: string;
  /** 2 cores × clock × FLOPs per cycle: SIMD128 (what WebAssembly can use) and AVX2. */
  readonly peakGflops: {
    readonly simd128: Record<FloatDType, number>;
    readonly avx2: Record<FloatDType, number>;
  };
  /** specformer's matmul kernel in this run (FMA or mul + add) and what the runtime offers. */
  readonly matmulKernel?: string;
}

export interface Results {
  readonly date: string;
  readonly mode: "full" | "quick" | "smoke";
  readonly machine: Machine;
  readonly rows: Row[];
  readonly gradcheck?: {
    readonly formula: string;
    readonly tokens: number;
    readonly ok: boolean;
    readonly timing: Timing;
    readonly directions: number;
  };
  /** The same pass with the interpreter's optimisations switched on one by one (what each buys). */
  readonly interpreter?: readonly {
    readonly workload: string;
    readonly config: string;
    readonly timing: Timing;
    readonly peakRssBytes?: number;
  }[];
  /** The process protocol's transport: JSON numbers against binary frames (bench/transport.ts). */
  readonly transport?: TransportResults & {
    readonly date: string;
    readonly loadavg: readonly number[];
  };
  /** GPT-2-small shape verified through the process protocol with examples/numpy as the peer (bench/gpt-process.ts). */
  readonly gptProcess?: {
    readonly date: string;
    readonly loadavg: readonly number[];
    readonly transport?: string;
    readonly wallMs?: number;
    readonly forwardMs?: number;
    readonly backwardMs?: number;
    readonly transportMs?: number;
    readonly transportShare?: number;
    readonly kept?: boolean;
    readonly requestMiB?: number;
    readonly answerMiB?: number;
    readonly agreement?: Agreement;
    readonly loss?: number;
    readonly skipped?: string;
  };
  /** Wall time of `npm start` (`node bin/specformer.mjs verify`, compiled). */
  readonly startup?: {
    readonly date: string;
    readonly loadavg: readonly number[];
    readonly timing?: Timing;
    readonly summary?: string;
    readonly skipped?: string;
  };
  readonly laws?: {
    readonly available: boolean;
    readonly note?: string;
    readonly runs?: number;
    readonly timeMs?: number;
    readonly perSecond?: number;
    readonly passed?: number;
    readonly failed?: number;
    readonly skipped?: number;
  };
  readonly targets: {
    readonly name: string;
    readonly value: number | undefined;
    readonly goal: string;
    readonly met: boolean | undefined;
  }[];
  readonly notes: string[];
}

export interface RunOptions {
  readonly mode?: "full" | "quick" | "smoke";
  readonly outDir?: string;
  readonly only?: readonly string[];
  readonly tfjsCpuGpt?: boolean;
  /** specformer's products with the relaxed-SIMD FMA kernel, where the runtime has it. */
  readonly fma?: boolean;
  readonly log?: (line: string) => void;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

// tiny sizes for the smoke run
const SMOKE_BLOCK: BlockSize = { d_model: 8, n: 5, H: 2, d_ff: 12 };
const SMOKE_GPT: GptSize = {
  name: "gpt-smoke",
  V: 40,
  n_ctx: 12,
  d_model: 8,
  H: 2,
  L: 2,
  d_ff: 12,
  tokens: 6,
};

/** The torch peer's job for a GPT forward + backward pass in f64 on the seeded values. */
function torchGptJob(size: GptSize, warmup: number, reps: number): Record<string, unknown> {
  return {
    kind: "gpt",
    size,
    dtype: "f64",
    tensors: gptTensors(size),
    eps: gptConfig(size)["eps"],
    seed: SEED,
    warmup,
    reps,
  };
}

function reps(mode: RunOptions["mode"], full: number): { warmup: number; reps: number } {
  if (mode === "smoke") return { warmup: 0, reps: 1 };
  if (mode === "quick") return { warmup: 2, reps: Math.max(3, Math.ceil(full / 3)) };
  return { warmup: 3, reps: full };
}

function machineInfo(): Omit<
  Machine,
  "torch" | "torchSkipped" | "tfjs" | "tfjsWasm" | "loadavgAfter"
> {
  let cpu = cpus()[0]?.model ?? "unknown";
  let mhz = cpus()[0]?.speed ?? 0;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const model = /model name\s*:\s*(.*)/.exec(info);
    if (model) cpu = model[1]!.trim();
    const m = /cpu MHz\s*:\s*([\d.]+)/.exec(info);
    if (m) mhz = Number(m[1]);
  } catch {
    // not Linux: os.cpus() is the best available
  }
  const cores = availableParallelism();
  const ghz = mhz / 1000;
  // two FMA pipes per core: SIMD128 = 2 lanes f64 (4 f32) × 2 FLOPs × 2 pipes; AVX2 twice that
  const simd128 = { f64: cores * ghz * 8, f32: cores * ghz * 16 };
  return {
    cpu,
    cores,
    mhz,
    memoryGiB: totalmem() / 2 ** 30,
    loadavgBefore: loadavg(),
    node: process.version,
    peakGflops: { simd128, avx2: { f64: simd128.f64 * 2, f32: simd128.f32 * 2 } },
    matmulKernel: matmulKernelText(),
  };
}

function matmulKernelText(): string {
  const k = matmulKernelInfo();
  // what the runtime offers, the V8 flag included (setting it changes nothing else)
  const rs = fmaSupport(true);
  const offer = rs.available
    ? `relaxed-SIMD f64x2.relaxed_madd available ` +
      `(${rs.via === "flag" ? "after --experimental-wasm-relaxed-simd, set at run time" : "without flags"}, ` +
      `${rs.fused ? "fused: one rounding" : "not fused on this CPU"})`
    : "relaxed SIMD not available";
  return `WebAssembly SIMD128, ${k.fma ? "FMA (relaxed_madd)" : "separate multiply and add"}; ${offer}`;
}

function blasName(libs: readonly string[], config: string | null): string {
  if (config) return config;
  if (libs.some((l) => l.includes("openblas"))) return `OpenBLAS (${libs.join(", ")})`;
  if (libs.length > 0) return libs.join(", ");
  return "unknown (no BLAS library mapped)";
}

async function runChild(job: GptJob): Promise<GptChildResult> {
  const tsx = path.join(HERE, "..", "node_modules", ".bin", "tsx");
  const cmd = existsSync(tsx) ? tsx : "tsx";
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [path.join(HERE, "gpt-child.ts"), JSON.stringify(job)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "",
      err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on("exit", (code) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code === 0 && line.startsWith("{")) resolve(JSON.parse(line) as GptChildResult);
      else {
        // the error's message line, not the stack under it
        const lines = err.trim().split("\n");
        const message = lines.find((l) => /Error\b|error:/.test(l)) ?? lines.at(-1) ?? "";
        reject(new Error(`gpt-child (${job.engine}) exited with code ${code}: ${message.trim()}`));
      }
    });
  });
}

/**
 * Run the benchmark; returns the results and writes results.json and RESULTS.md (not in smoke mode
 * unless outDir is given).
 */
export async function runBenchmarks(opts: RunOptions = {}): Promise<Results> {
  const mode = opts.mode ?? "full";
  const smoke = mode === "smoke";
  const log = opts.log ?? ((l: string) => process.stdout.write(l + "\n"));
  const only = (w: string) => opts.only === undefined || opts.only.includes(w);
  if (opts.fma === true && fmaSupport(true).available) {
    configureMatmul({ fma: true });
    // the GPT-2 child processes choose their kernel from the environment
    process.env["SPECFORMER_FMA"] = "1";
  }
  const base = machineInfo();
  const rows: Row[] = [];
  const notes: string[] = [];

  const noTorch = torchUnavailable();
  const torch = noTorch === undefined ? new TorchPeer() : undefined;
  let torchInfo: Machine["torch"];
  if (torch) {
    const info = await torch.request<{
      torch: string;
      numpy: string;
      threads: number;
      blas: { libraries: string[]; openblas_config: string | null };
    }>({ kind: "info", threads: base.cores });
    torchInfo = {
      version: info.torch,
      threads: info.threads,
      blas: blasName(info.blas.libraries, info.blas.openblas_config),
      blasLibraries: info.blas.libraries,
      numpy: info.numpy,
    };
    log(`torch ${info.torch}, ${info.threads} threads, BLAS: ${torchInfo.blas}`);
  } else {
    notes.push(`PyTorch skipped: ${noTorch}`);
    log(`torch skipped: ${noTorch}`);
  }
  // loaded here, not at the top: tfjs takes seconds to load and `--only cli-startup,timings`
  // (runStandalone) never needs it
  const tfp = await import("./peers/tfjs.js");
  const tfBackends: { engine: Engine; backend: "cpu" | "wasm" }[] = [
    { engine: "tfjs-cpu", backend: "cpu" },
    { engine: "tfjs-wasm", backend: "wasm" },
  ];

  try {
    // -------------------------------------------------------------------------------- matmul
    if (only("matmul")) {
      const sizes = smoke ? [16] : [256, 512];
      const variants = [
        { name: "A·B", key: "AB", transA: false, transB: false },
        { name: "A·Bᵀ", key: "ABt", transA: false, transB: true },
        { name: "Aᵀ·B", key: "AtB", transA: true, transB: false },
      ] as const;
      for (const m of sizes) {
        for (const dtype of ["f64", "f32"] as const) {
          for (const v of variants) {
            const workload = `matmul ${m} ${v.name}`;
            const flops = 2 * m * m * m;
            const a = hashUniform("A", SEED, [m, m], 1, dtype).data as Float64Array | Float32Array;
            const b = hashUniform("B", SEED, [m, m], 1, dtype).data as Float64Array | Float32Array;
            const c = dtype === "f64" ? new Float64Array(m * m) : new Float32Array(m * m);
            const { warmup, reps: r } = reps(mode, 15);
            const run = () =>
              gemm({
                dtype,
                a,
                b,
                c,
                batch: 1,
                M: m,
                N: m,
                K: m,
                transA: v.transA,
                transB: v.transB,
              });
            run();
            const ref = { C: summarize("C", c) };
            const tol = agreementTolerance(dtype, dtype, m);
            const timing = await timeIt(run, warmup, r);
            const peak = base.peakGflops.simd128[dtype];
            const gf = (t: Timing) => flops / (t.medianMs * 1e6);
            rows.push({
              workload,
              engine: "specformer",
              dtype,
              timing,
              gflops: gf(timing),
              peakShare: gf(timing) / peak,
              agreement: agree(ref, ref, tol),
            });
            const specMs = timing.medianMs;
            log(`${workload} ${dtype} specformer ${gf(timing).toFixed(1)} GFLOP/s`);
            for (const { engine, backend } of tfBackends) {
              if (dtype === "f64") {
                rows.push({ workload, engine, dtype, skipped: "tfjs has no float64" });
                continue;
              }
              await tfp.useBackend(backend);
              const p = tfp.prepareMatmul(
                a as Float32Array,
                b as Float32Array,
                m,
                v.transA,
                v.transB,
              );
              const agreement = agree(ref, { C: summarize("C", p.run()) }, tol);
              const t = await timeIt(
                () => p.run(),
                warmup,
                backend === "cpu" ? Math.max(1, Math.ceil(r / 3)) : r,
              );
              p.dispose();
              rows.push({
                workload,
                engine,
                dtype,
                timing: t,
                gflops: gf(t),
                peakShare: gf(t) / peak,
                agreement,
                ratioToSpecformer: t.medianMs / specMs,
              });
              log(`${workload} ${dtype} ${engine} ${gf(t).toFixed(1)} GFLOP/s`);
            }
            if (torch) {
              const res = await torch.request<{
                timesMs: number[];
                summaries: Record<string, Summary>;
              }>({ kind: "matmul", size: m, dtype, variant: v.key, seed: SEED, warmup, reps: r });
              const t = timingOf(res.timesMs);
              rows.push({
                workload,
                engine: "torch",
                dtype,
                timing: t,
                gflops: gf(t),
                peakShare: gf(t) / peak,
                agreement: agree(ref, res.summaries, tol),
                ratioToSpecformer: t.medianMs / specMs,
              });
              log(`${workload} ${dtype} torch ${gf(t).toFixed(1)} GFLOP/s`);
            } else rows.push({ workload, engine: "torch", dtype, skipped: noTorch! });
          }
        }
      }
    }

    // -------------------------------------------------------------------------------- block
    if (only("block")) {
      for (const size of smoke ? [SMOKE_BLOCK] : BLOCK_SIZES) {
        const workload = `${blockLabel(size)} fwd+bwd`;
        const { inputs: inSpecs, cot: cotSpec } = blockTensors(size);
        const cfg = blockConfig(size);
        const g = formulaGraph("block", cfg);
        const eps = cfg.eps;
        // the roundings on the longest chain of the forward and backward pass
        const K = fwdBwdDepth(g, ["y"], [...inSpecs, cotSpec]);
        const depth = 1;
        const { warmup, reps: r } = reps(mode, size.d_model >= 256 ? 15 : 25);
        let ref: Record<string, Summary> | undefined;
        let specMs = NaN;
        for (const dtype of ["f64", "f32"] as const) {
          const inputs = makeTensors(inSpecs, dtype);
          const cot = makeTensors([cotSpec], dtype);
          const run = () => vjp(g, inputs, { y: cot["cot.y"]! }, { dtype });
          const res = run();
          const sums = summarizeAll({ y: res.outputs["y"]!, ...gradsNamed(res.grads) });
          ref ??= sums;
          const timing = await timeIt(run, warmup, r);
          const forward = await timeIt(() => evaluate(g, inputs, { dtype }), warmup, r);
          if (dtype === "f64") specMs = timing.medianMs;
          rows.push({
            workload,
            engine: "specformer",
            dtype,
            timing,
            forward,
            agreement: agree(ref, sums, agreementTolerance("f64", dtype, K, depth)),
            ratioToSpecformer: timing.medianMs / specMs,
          });
          log(
            `${workload} ${dtype} specformer ${timing.medianMs.toFixed(1)} ms (fwd ${forward.medianMs.toFixed(1)} ms)`,
          );
        }
        const f32In = makeTensors(inSpecs, "f32");
        const f32Cot = makeTensors([cotSpec], "f32");
        for (const { engine, backend } of tfBackends) {
          await tfp.useBackend(backend);
          const p = tfp.prepareBlock(size, f32In, f32Cot, eps);
          const agreement = agree(
            ref!,
            summarizeArrays(p.run().values),
            agreementTolerance("f64", "f32", K, depth),
          );
          const slow = backend === "cpu" && !smoke;
          const timing = await timeIt(
            () => p.run(),
            slow ? 1 : warmup,
            slow ? Math.max(3, Math.ceil(r / 3)) : r,
          );
          const forward = await timeIt(
            () => p.forward(),
            slow ? 1 : warmup,
            slow ? Math.max(3, Math.ceil(r / 3)) : r,
          );
          p.dispose();
          rows.push({
            workload,
            engine,
            dtype: "f32",
            timing,
            forward,
            agreement,
            ratioToSpecformer: timing.medianMs / specMs,
          });
          log(
            `${workload} f32 ${engine} ${timing.medianMs.toFixed(1)} ms (agreement ` +
              `${agreement.worst.toExponential(1)})`,
          );
        }
        for (const dtype of ["f64", "f32"] as const) {
          if (!torch) {
            rows.push({ workload, engine: "torch", dtype, skipped: noTorch! });
            continue;
          }
          const res = await torch.request<{
            timesMs: number[];
            forwardMs: number[];
            summaries: Record<string, Summary>;
          }>({
            kind: "block",
            size,
            dtype,
            inputs: inSpecs,
            cot: cotSpec,
            eps,
            seed: SEED,
            warmup,
            reps: r,
          });
          const timing = timingOf(res.timesMs);
          const agreement = agree(ref!, res.summaries, agreementTolerance("f64", dtype, K, depth));
          rows.push({
            workload,
            engine: "torch",
            dtype,
            timing,
            forward: timingOf(res.forwardMs),
            agreement,
            ratioToSpecformer: timing.medianMs / specMs,
          });
          log(
            `${workload} ${dtype} torch ${timing.medianMs.toFixed(1)} ms (agreement ` +
              `${agreement.worst.toExponential(1)})`,
          );
        }
      }
    }

    // -------------------------------------------------------------------------------- GPT-2 small
    if (only("gpt")) {
      const size = smoke ? SMOKE_GPT : GPT2_SMALL;
      const workload = `${size.name} (${size.tokens} tokens) fwd+bwd`;
      const { warmup, reps: r } = smoke
        ? { warmup: 0, reps: 1 }
        : mode === "quick"
          ? { warmup: 1, reps: 2 }
          : { warmup: 1, reps: 3 };
      // the roundings on the longest chain of the loss's forward and backward pass
      const K = gptDepth(size);
      const depth = 1;
      const spec = await runChild({ engine: "specformer", size, dtype: "f64", warmup, reps: r });
      const ref = spec.summaries;
      const specT = timingOf(spec.timesMs);
      rows.push({
        workload,
        engine: "specformer",
        dtype: "f64",
        timing: specT,
        agreement: agree(ref, ref, 0),
        ratioToSpecformer: 1,
        peakRssBytes: spec.peakRssBytes,
        heapUsedBytes: spec.heapUsedBytes,
        arrayBuffersBytes: spec.arrayBuffersBytes,
      });
      log(
        `${workload} f64 specformer ${specT.medianMs.toFixed(0)} ms, peak RSS ` +
          `${(spec.peakRssBytes / 2 ** 30).toFixed(2)} GiB, loss ${spec.loss}`,
      );
      for (const engine of ["tfjs-wasm", "tfjs-cpu"] as const) {
        if (engine === "tfjs-cpu" && !smoke && opts.tfjsCpuGpt === false) {
          rows.push({ workload, engine, dtype: "f32", skipped: "skipped with --no-tfjs-cpu-gpt" });
          continue;
        }
        try {
          const slow = engine === "tfjs-cpu" && !smoke;
          const res = await runChild({
            engine,
            size,
            dtype: "f32",
            warmup: slow ? 0 : warmup,
            reps: slow ? 1 : r,
          });
          const t = timingOf(res.timesMs);
          rows.push({
            workload,
            engine,
            dtype: "f32",
            timing: t,
            agreement: agree(ref, res.summaries, agreementTolerance("f64", "f32", K, depth)),
            ratioToSpecformer: t.medianMs / specT.medianMs,
            peakRssBytes: res.peakRssBytes,
            heapUsedBytes: res.heapUsedBytes,
            arrayBuffersBytes: res.arrayBuffersBytes,
          });
          log(`${workload} f32 ${engine} ${t.medianMs.toFixed(0)} ms`);
        } catch (e) {
          rows.push({ workload, engine, dtype: "f32", skipped: `failed: ${(e as Error).message}` });
          log(`${workload} ${engine} failed: ${(e as Error).message}`);
        }
      }
      if (noTorch === undefined) {
        // a process of its own, so its peak RSS is this workload's
        const peer = new TorchPeer();
        try {
          await peer.request({ kind: "info", threads: base.cores });
          const res = await peer.request<{
            timesMs: number[];
            summaries: Record<string, Summary>;
            peakRssBytes: number;
            loss: number;
          }>(torchGptJob(size, warmup, r));
          const t = timingOf(res.timesMs);
          rows.push({
            workload,
            engine: "torch",
            dtype: "f64",
            timing: t,
            agreement: agree(ref, res.summaries, agreementTolerance("f64", "f64", K, depth)),
            ratioToSpecformer: t.medianMs / specT.medianMs,
            peakRssBytes: res.peakRssBytes,
          });
          log(
            `${workload} f64 torch ${t.medianMs.toFixed(0)} ms, peak RSS ` +
              `${(res.peakRssBytes / 2 ** 30).toFixed(2)} GiB, loss ${res.loss}`,
          );
        } finally {
          await peer.close();
        }
      } else rows.push({ workload, engine: "torch", dtype: "f64", skipped: noTorch });
    }

    // -------------------------------------------------------------------------------- interpreter steps
    const interpreter: {
      workload: string;
      config: string;
      timing: Timing;
      peakRssBytes?: number;
    }[] = [];
    if (only("interpreter")) {
      const size = smoke ? SMOKE_BLOCK : BLOCK_SIZES[1]!;
      const workload = `${blockLabel(size)} fwd+bwd f64`;
      const { g, inputs, cot } = blockPass(size, "f64");
      const { warmup, reps: r } = reps(mode, 15);
      const fmaRun = matmulKernelInfo().fma;
      const configs: [string, Optimizations | boolean, boolean][] = [
        ["plain (fresh arrays)", false, fmaRun],
        ["+ reuse of dead arrays", { reuse: true, inPlace: false, rewrites: false }, fmaRun],
        ["+ in-place elementwise steps", { reuse: true, inPlace: true, rewrites: false }, fmaRun],
        [
          "+ rewrites (transposed products, accumulation into sums)",
          { reuse: true, inPlace: true, rewrites: true, fuse: false },
          fmaRun,
        ],
        ["+ fused elementwise chains and row reductions", true, fmaRun],
      ];
      // what the FMA kernel adds, when the runtime has it and the run did not already use it
      if (!fmaRun && fmaSupport(true).available)
        configs.push(["+ relaxed-SIMD FMA in products", true, true]);
      // interleaved repetitions, so that a change in the machine's load falls on every configuration alike
      const samples = configs.map(() => [] as number[]);
      for (const [, o, fma] of configs) {
        configureMatmul({ fma });
        for (let i = 0; i < warmup; i++) vjp(g, inputs, cot, { optimize: o });
      }
      for (let k = 0; k < r; k++) {
        configs.forEach(([, o, fma], c) => {
          configureMatmul({ fma });
          const t0 = performance.now();
          vjp(g, inputs, cot, { optimize: o });
          samples[c]!.push(performance.now() - t0);
        });
      }
      configureMatmul({ fma: fmaRun });
      configs.forEach(([name], c) =>
        interpreter.push({ workload, config: name, timing: timingOf(samples[c]!) }),
      );
      log(
        `interpreter, ${workload}: ` +
          `${interpreter.map((x) => `${x.config} ${x.timing.medianMs.toFixed(1)} ms`).join("; ")}`,
      );
      // (the smoke run skips this second GPT process: its plain path is the tested block's)
      if (only("gpt") && !smoke) {
        const gsize = GPT2_SMALL;
        const { warmup: w, reps: rr } = { warmup: 1, reps: 2 };
        const plain = await runChild({
          engine: "specformer",
          size: gsize,
          dtype: "f64",
          warmup: w,
          reps: rr,
          optimize: false,
        });
        interpreter.push({
          workload: `${gsize.name} (${gsize.tokens} tokens) fwd+bwd f64`,
          config: "plain (fresh arrays)",
          timing: timingOf(plain.timesMs),
          peakRssBytes: plain.peakRssBytes,
        });
        const gptRow = rows.find(
          (x) => x.workload.startsWith(gsize.name) && x.engine === "specformer",
        );
        if (gptRow?.timing)
          interpreter.push({
            workload: `${gsize.name} (${gsize.tokens} tokens) fwd+bwd f64`,
            config: "all optimisations",
            timing: gptRow.timing,
            ...(gptRow.peakRssBytes ? { peakRssBytes: gptRow.peakRssBytes } : {}),
          });
        log(
          `interpreter, ${gsize.name}: plain ` +
            `${timingOf(plain.timesMs).medianMs.toFixed(0)} ms, peak RSS ` +
            `${(plain.peakRssBytes / 2 ** 30).toFixed(2)} GiB`,
        );
      }
    }

    // -------------------------------------------------------------------------------- gradcheck
    let gradcheck: Results["gradcheck"];
    if (only("gradcheck")) {
      const size = presetSize("tiny", smoke ? 4 : 16);
      const g = formulaGraph("gpt", gptConfig(size));
      const inputs = makeTensors(gptTensors(size), "f64");
      let ok = true;
      let directions = 0;
      const { warmup, reps: r } = reps(mode, 5);
      const timing = await timeIt(
        async () => {
          const res = await gradcheckGraph(g, inputs, { mode: "fast", seed: 1 });
          ok &&= res.ok;
          directions = res.checked.length;
        },
        Math.min(warmup, 1),
        r,
      );
      gradcheck = {
        formula: `gpt (preset tiny, ${size.tokens} tokens)`,
        tokens: size.tokens,
        ok,
        timing,
        directions,
      };
      log(`gradcheck fast, tiny GPT: ${timing.medianMs.toFixed(0)} ms, ok ${ok}`);
    }

    // -------------------------------------------------------------------------------- laws
    let laws: Results["laws"];
    if (only("laws")) laws = await lawsPerSecond(smoke ? 1 : mode === "quick" ? 5 : 20, log);

    // -------------------------------------------------------------------------------- transport
    let transport: Results["transport"];
    if (only("transport")) {
      const before = loadavg();
      const numpy = pythonHasNumpy();
      const res = await transportBench({
        elements: smoke ? 1000 : 1_250_000,
        repsJson: smoke || mode === "quick" ? 1 : 3,
        repsBinary: smoke ? 1 : mode === "quick" ? 3 : 7,
        numpy,
        log,
      });
      transport = { ...res, date: new Date().toISOString(), loadavg: before };
      if (res.numpyBlas?.netlib) {
        const w =
          `WARNING: the NumPy peer runs on the reference netlib BLAS ` +
          `(${res.numpyBlas.libraries.join(", ")}), about 10× slower than ` +
          `OpenBLAS: install libopenblas0-openmp (see bench/README.md) for a fair peer.`;
        notes.push(w);
        log(w);
      }
    }

    // -------------------------------------------------------------------------------- gpt through the process protocol
    let gptProcess: Results["gptProcess"];
    if (only("gpt-process")) {
      const before = loadavg();
      const date = new Date().toISOString();
      const size = smoke ? SMOKE_GPT : GPT2_SMALL;
      if (!pythonHasNumpy())
        gptProcess = { date, loadavg: before, skipped: `${PYTHON} with numpy not available` };
      else {
        try {
          const res = await gptThroughProcess(size, log);
          const K = gptDepth(size);
          const depth = 1;
          // the reference: PyTorch in float64 on the same seeded values (a process of its own; at
          // full size specformer's own engine needs several GiB more than this check is worth)
          let agreement: Agreement | undefined;
          if (noTorch === undefined) {
            const peer = new TorchPeer();
            try {
              await peer.request({ kind: "info", threads: base.cores });
              const ref = await peer.request<{ summaries: Record<string, Summary> }>(
                torchGptJob(size, 0, 1),
              );
              agreement = agree(
                ref.summaries,
                res.summaries,
                agreementTolerance("f64", "f32", K, depth),
              );
            } finally {
              await peer.close();
            }
          } else
            notes.push(
              `GPT-2 small through the process protocol: not checked against PyTorch (${noTorch})`,
            );
          gptProcess = {
            date,
            loadavg: before,
            transport: res.transport,
            wallMs: res.wallMs,
            forwardMs: res.forward.wallMs,
            backwardMs: res.backward.wallMs,
            transportMs: res.transportMs,
            transportShare: res.transportShare,
            kept: res.kept,
            requestMiB: (res.forward.requestBytes + res.backward.requestBytes) / 2 ** 20,
            answerMiB: (res.forward.answerBytes + res.backward.answerBytes) / 2 ** 20,
            ...(agreement ? { agreement } : {}),
            loss: res.loss,
          };
          log(
            `gpt through numpy: ${res.wallMs.toFixed(0)} ms wall, transport ` +
              `${(100 * res.transportShare).toFixed(1)} %, agreement with PyTorch f64 ` +
              `${
                agreement === undefined
                  ? "not checked"
                  : `${agreement.ok ? "ok" : "DISAGREES"} ` +
                    `(${agreement.worst.toExponential(1)} ≤ ` +
                    `${agreement.tolerance.toExponential(1)})`
              }`,
          );
        } catch (e) {
          gptProcess = {
            date,
            loadavg: before,
            skipped: `failed: ${(e as Error).message.split("\n")[0]}`,
          };
          log(`gpt through numpy failed: ${(e as Error).message}`);
        }
      }
    }

    // -------------------------------------------------------------------------------- startup
    let startup: Results["startup"];
    if (only("startup"))
      startup = await startupTiming(smoke ? 1 : mode === "quick" ? 2 : 3, smoke, log);

    const after = loadavg();
    const tfjsVersion = tfp.tfjsVersion();
    await tfp.useBackend("wasm");
    const machine: Machine = {
      ...base,
      loadavgAfter: after,
      tfjs: tfjsVersion,
      tfjsWasm: tfp.wasmInfo(),
      ...(torchInfo ? { torch: torchInfo } : {}),
      ...(noTorch ? { torchSkipped: noTorch } : {}),
    };
    if (after[0]! > base.cores * 0.75 || base.loadavgBefore[0]! > base.cores * 0.75) {
      notes.push(
        `The machine was busy (load average ` +
          `${base.loadavgBefore[0]!.toFixed(1)} before, ${after[0]!.toFixed(1)} ` +
          `after, on ${base.cores} cores): other processes competed for the cores, ` +
          `so times are slower and noisier than on an idle machine; the ranges ` +
          `show how much.`,
      );
    }
    if (torchInfo && isNetlibName(torchInfo.blasLibraries)) {
      const w =
        `WARNING: PyTorch runs on the reference netlib BLAS ` +
        `(${torchInfo.blasLibraries.join(", ")}), about 10× slower than ` +
        `OpenBLAS: install libopenblas0-openmp (see bench/README.md) for a fair peer.`;
      notes.push(w);
      log(w);
    }
    let results: Results = {
      date: new Date().toISOString(),
      mode,
      machine,
      rows,
      ...(gradcheck ? { gradcheck } : {}),
      ...(interpreter.length > 0 ? { interpreter } : {}),
      ...(laws ? { laws } : {}),
      ...(transport ? { transport } : {}),
      ...(gptProcess ? { gptProcess } : {}),
      ...(startup ? { startup } : {}),
      targets: targetsOf(rows, machine, transport, startup, gptProcess),
      notes,
    };
    if (opts.outDir !== undefined || !smoke) {
      const out = opts.outDir ?? HERE;
      mkdirSync(out, { recursive: true });
      if (opts.only !== undefined && existsSync(path.join(out, "results.json")))
        results = mergeWithPrevious(
          JSON.parse(readFileSync(path.join(out, "results.json"), "utf8")) as Results,
          results,
          opts.only,
        );
      writeReport(out, results);
    }
    return results;
  } finally {
    await torch?.close();
    await shutdownMatmulWorkers();
  }
}

/** Workloads that produce rows of the main table (the rest have sections of their own). */
const ROW_WORKLOADS = ["matmul", "block", "gpt"];

/**
 * A partial run (`--only`) merged into the previous results: the parts it ran replace theirs,
 * the rest (and their dates) are kept, so RESULTS.md stays whole. Rows are replaced when any
 * row-producing workload ran.
 */
export function mergeWithPrevious(prev: Results, cur: Results, only: readonly string[]): Results {
  const ranRows = only.some((w) => ROW_WORKLOADS.includes(w));
  const pick = <
    K extends "gradcheck" | "interpreter" | "laws" | "transport" | "gptProcess" | "startup",
  >(
    k: K,
    w: string,
  ): Partial<Results> =>
    (only.includes(w)
      ? cur[k] !== undefined
        ? { [k]: cur[k] }
        : {}
      : prev[k] !== undefined
        ? { [k]: prev[k] }
        : {}) as Partial<Results>;
  const rows = ranRows ? cur.rows : prev.rows;
  const machine = ranRows
    ? cur.machine
    : { ...cur.machine, ...(prev.machine.torch ? { torch: prev.machine.torch } : {}) };
  const merged: Results = {
    ...cur,
    date: ranRows ? cur.date : prev.date,
    mode: ranRows ? cur.mode : prev.mode,
    machine,
    rows,
    ...pick("gradcheck", "gradcheck"),
    ...pick("interpreter", "interpreter"),
    ...pick("laws", "laws"),
    ...pick("transport", "transport"),
    ...pick("gptProcess", "gpt-process"),
    ...pick("startup", "startup"),
    // a note of an earlier run of the same parts goes with the figures it was about
    notes: [
      ...(ranRows
        ? []
        : prev.notes.filter(
            (n) => !cur.notes.includes(n) && !n.includes(`(--only ${only.join(",")}): `),
          )),
      ...cur.notes.map((n) => `${cur.date.slice(0, 16)}Z (--only ${only.join(",")}): ${n}`),
    ],
    targets: [],
  };
  return {
    ...merged,
    targets: targetsOf(
      merged.rows,
      merged.machine,
      merged.transport,
      merged.startup,
      merged.gptProcess,
    ),
  };
}

function isNetlibName(libs: readonly string[]): boolean {
  const blas = libs.filter((l) => /blas/i.test(path.basename(l)));
  return blas.length > 0 && blas.every((l) => !/openblas|blis|mkl|atlas/i.test(l));
}

function pythonHasNumpy(): boolean {
  try {
    execFileSync(PYTHON, ["-c", "import numpy"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

/** Wall time of `node bin/specformer.mjs verify` (what `npm start` runs) on the compiled dist/. */
async function startupTiming(
  runs: number,
  smoke: boolean,
  log: (l: string) => void,
): Promise<Results["startup"]> {
  const before = loadavg();
  const date = new Date().toISOString();
  const root = path.join(HERE, "..");
  if (!existsSync(path.join(root, "dist", "cli", "main.js"))) {
    const skipped = "dist/ is missing: run `npm run build` first";
    log(`startup skipped: ${skipped}`);
    return { date, loadavg: before, skipped };
  }
  const args = [
    path.join(root, "bin", "specformer.mjs"),
    "verify",
    ...(smoke ? ["--formulas", "softmax"] : []),
  ];
  const times: number[] = [];
  let summary = "";
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, SPECFORMER_SOURCE: "" },
      });
      let text = "";
      child.stdout.on("data", (d: Buffer) => (text += d.toString()));
      child.on("exit", (code) =>
        code === 0
          ? resolve(text)
          : reject(
              new Error(
                `specformer verify exited with code ${code}: ${text.trim().split("\n").at(-1) ?? ""}`,
              ),
            ),
      );
    });
    times.push(performance.now() - t0);
    summary = out.trim().split("\n").at(-1) ?? "";
  }
  const timing = timingOf(times);
  log(
    `npm start (specformer verify): ${timing.medianMs.toFixed(0)} ms median of ${runs}; ${summary}`,
  );
  return { date, loadavg: before, timing, summary };
}

/** Laws checked per second by properties/run.ts's runLaws on the reference. */
async function lawsPerSecond(runs: number, log: (l: string) => void): Promise<Results["laws"]> {
  const report = await runLaws(referenceImplementation(), { runs, seed: 1 });
  const total = report.results.reduce((s, r) => s + r.runs, 0);
  const perSecond = total / (report.timeMs / 1000);
  log(
    `laws: ${total} cases in ${report.timeMs.toFixed(0)} ms = ` +
      `${perSecond.toFixed(1)} cases/s (${report.passed} passed, ` +
      `${report.failed} failed, ${report.skipped} skipped)`,
  );
  return {
    available: true,
    runs: total,
    timeMs: report.timeMs,
    perSecond,
    passed: report.passed,
    failed: report.failed,
    skipped: report.skipped,
  };
}

function targetsOf(
  rows: readonly Row[],
  machine: Machine,
  transport?: Results["transport"],
  startup?: Results["startup"],
  gptProcess?: Results["gptProcess"],
): Results["targets"] {
  const find = (w: (s: string) => boolean, engine: Engine, dtype: FloatDType) =>
    rows.find((r) => w(r.workload) && r.engine === engine && r.dtype === dtype && r.timing);
  const bigBlock = (s: string) => s.startsWith("block d_model=256 n=128 H=8");
  const smallBlock = (s: string) => s.startsWith("block d_model=128 n=64 H=4");
  const spec = find(bigBlock, "specformer", "f64");
  const wasm = find(bigBlock, "tfjs-wasm", "f32");
  const torch = find(bigBlock, "torch", "f64");
  const gptSpec = find((s) => s.startsWith("gpt2-small"), "specformer", "f64");
  const gptTorch = find((s) => s.startsWith("gpt2-small"), "torch", "f64");
  const mm = rows.filter(
    (r) =>
      r.workload.startsWith("matmul 512") &&
      r.engine === "specformer" &&
      r.dtype === "f64" &&
      r.gflops !== undefined,
  );
  const ratio = (a: Row | undefined, b: Row | undefined) =>
    a?.timing && b?.timing ? b.timing.medianMs / a.timing.medianMs : undefined;
  const vsWasm = ratio(spec, wasm);
  const vsTorch = ratio(spec, torch);
  const vsTorchSmall = ratio(
    find(smallBlock, "specformer", "f64"),
    find(smallBlock, "torch", "f64"),
  );
  const gptRatio =
    gptSpec && gptTorch ? gptSpec.timing!.medianMs / gptTorch.timing!.medianMs : undefined;
  const mmMin = mm.length > 0 ? Math.min(...mm.map((r) => r.gflops!)) : undefined;
  const mem = gptSpec?.peakRssBytes;
  void machine;
  /** A target: `value` against `goal`, met when `ok(value)`; undefined when not measured. */
  const target = (
    name: string,
    value: number | undefined,
    goal: string,
    ok: (v: number) => boolean,
  ) => ({ name, value, goal, met: value === undefined ? undefined : ok(value) });
  return [
    target(
      "GPT block (256, 128, 8) f64 fwd+bwd: tfjs-wasm (f32) time / specformer time",
      vsWasm,
      "≥ 5",
      (v) => v >= 5,
    ),
    target(
      "GPT block (256, 128, 8) f64 fwd+bwd: torch f64 time / specformer time",
      vsTorch,
      "≥ 0.5 (within 2×)",
      (v) => v >= 0.5,
    ),
    target(
      "GPT block (128, 64, 4) f64 fwd+bwd: torch f64 time / specformer time",
      vsTorchSmall,
      "≥ 0.4 (within 2.5×)",
      (v) => v >= 0.4,
    ),
    target("matmul 512 f64 (slowest of A·B, A·Bᵀ, Aᵀ·B), GFLOP/s", mmMin, "≥ 10", (v) => v >= 10),
    target(
      "GPT-2 small, 64 tokens, f64 fwd+bwd: specformer time / torch time",
      gptRatio,
      "≤ 1.5",
      (v) => v <= 1.5,
    ),
    // mem / 2³⁰ is exact, so v ≤ 2 is mem ≤ 2 GiB
    target(
      "GPT-2 small, 64 tokens, f64 fwd+bwd: specformer peak RSS, GiB",
      mem === undefined ? undefined : mem / 2 ** 30,
      "≤ 2",
      (v) => v <= 2,
    ),
    ...(["node-echo", "numpy"] as const).map((peer) => {
      const through = peer === "node-echo" ? "the Node echo program" : "examples/numpy (relu)";
      return target(
        `1.25 M float64 round trip through ${through}: JSON time / binary time`,
        transport?.speedup[peer],
        "≥ 10",
        (v) => v >= 10,
      );
    }),
    target(
      "GPT-2 small through the process protocol (NumPy peer, f32 fwd+bwd): transport share of wall time",
      gptProcess?.transportShare,
      "≤ 0.25",
      (v) => v <= 0.25,
    ),
    {
      name: "npm start (specformer verify on the reference), wall s",
      value: startup?.timing ? startup.timing.medianMs / 1000 : undefined,
      goal: "≤ 5",
      met: startup?.timing ? startup.timing.medianMs <= 5000 : undefined,
    },
  ];
}

/** results.json and RESULTS.md (the generated tables, then the hand-written notes) in `out`. */
function writeReport(out: string, results: Results): void {
  writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 1) + "\n");
  const notesText = ["OPTIMISATION.md", "STARTUP.md", "TRANSPORT.md"]
    .map((f) => path.join(HERE, f))
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");
  writeFileSync(path.join(out, "RESULTS.md"), renderMarkdown(results, notesText));
}

/**
 * `--render`: RESULTS.md again from the measurements in results.json, with the targets judged
 * anew and the hand-written notes as they are now; nothing is measured.
 */
function rerender(out: string): void {
  const r = JSON.parse(readFileSync(path.join(out, "results.json"), "utf8")) as Results;
  const targets = targetsOf(r.rows, r.machine, r.transport, r.startup, r.gptProcess);
  writeReport(out, { ...r, targets });
}

function parseArgs(argv: readonly string[]): RunOptions {
  const opts: {
    mode?: RunOptions["mode"];
    outDir?: string;
    only?: string[];
    tfjsCpuGpt?: boolean;
    fma?: boolean;
  } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") opts.mode = "quick";
    else if (a === "--smoke") opts.mode = "smoke";
    else if (a === "--out") opts.outDir = argv[++i];
    else if (a === "--only") opts.only = (argv[++i] ?? "").split(",");
    else if (a === "--no-tfjs-cpu-gpt") opts.tfjsCpuGpt = false;
    else if (a === "--fma") opts.fma = true;
    else if (a === "--render") continue;
    else
      throw new Error(
        `unknown option ${a}; options: --quick, --smoke, --out DIR, --only ` +
          `matmul,block,gpt,interpreter,gradcheck,laws,transport,gpt-process,startup,cli-startup,timings, ` +
          `--no-tfjs-cpu-gpt, --fma, --render`,
      );
  }
  const known = [
    "matmul",
    "block",
    "gpt",
    "interpreter",
    "gradcheck",
    "laws",
    "transport",
    "gpt-process",
    "startup",
    ...STANDALONE,
  ];
  for (const w of opts.only ?? [])
    if (!known.includes(w))
      throw new Error(`--only: unknown workload "${w}"; workloads: ${known.join(", ")}`);
  return opts;
}

/**
 * Workloads that print their figures instead of writing results.json and RESULTS.md: `cli-startup`
 * (bench/startup.mjs, the compiled command beside `node -e 0`; needs `npm run build`) and
 * `timings` (bench/timings.ts, the bounds that left the unit tests).
 */
const STANDALONE = ["cli-startup", "timings"];

async function runStandalone(only: readonly string[]): Promise<number> {
  let code = 0;
  if (only.includes("cli-startup")) {
    const r = spawnSync(process.execPath, [path.join(HERE, "startup.mjs")], { stdio: "inherit" });
    code = Math.max(code, r.status ?? 1);
  }
  if (only.includes("timings")) for (const l of await runTimings()) process.stdout.write(`${l}\n`);
  return code;
}

if (
  process.argv[1] !== undefined &&
  path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  let opts: RunOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
  if (process.argv.includes("--render")) {
    rerender(opts.outDir ?? HERE);
    process.stdout.write(
      `wrote ${path.join(opts.outDir ?? HERE, "RESULTS.md")} from results.json\n`,
    );
    process.exit(0);
  }
  const standalone = (opts.only ?? []).filter((w) => STANDALONE.includes(w));
  if (standalone.length > 0) {
    const code = await runStandalone(standalone);
    opts = { ...opts, only: opts.only!.filter((w) => !STANDALONE.includes(w)) };
    if (opts.only!.length === 0) process.exit(code);
  }
  runBenchmarks(opts).then(
    (r) => {
      process.stdout.write(
        `wrote ${path.join(opts.outDir ?? HERE, "results.json")} and RESULTS.md ` +
          `(${r.rows.length} rows); free memory ` +
          `${(freemem() / 2 ** 30).toFixed(1)} GiB\n`,
      );
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
