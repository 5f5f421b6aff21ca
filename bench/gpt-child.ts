/**
 * One GPT forward + backward measurement in a process of its own, so that its peak memory is its
 * own: `tsx bench/gpt-child.ts '<json job>'` prints one JSON line with the times, the summaries
 * of the loss and every gradient, and peak RSS / heap. The job names the engine (specformer or
 * a tfjs backend), the model size, dtype and repetitions. Used by bench/run.ts.
 */
import { formulaGraph } from "../autodiff/graph.js";
import { vjp } from "../autodiff/grad.js";
import { Tensor, type FloatDType } from "../autodiff/tensor.js";
import {
  gptConfig,
  gptTensors,
  makeTensors,
  summarizeArrays,
  type GptSize,
  type Summary,
} from "./workloads.js";

export interface GptJob {
  readonly engine: "specformer" | "tfjs-cpu" | "tfjs-wasm";
  readonly size: GptSize;
  readonly dtype: FloatDType;
  readonly warmup: number;
  readonly reps: number;
  /** specformer only: the interpreter's optimisations (default all). */
  readonly optimize?: boolean;
}

export interface GptChildResult {
  readonly timesMs: number[];
  readonly summaries: Record<string, Summary>;
  readonly loss: number;
  readonly initMs: number;
  /** Peak resident set size of the process (kernel's maxrss). */
  readonly peakRssBytes: number;
  /** Largest V8 heap use and array-buffer memory seen after a pass (outputs still alive). */
  readonly heapUsedBytes: number;
  readonly arrayBuffersBytes: number;
}

async function main(job: GptJob): Promise<GptChildResult> {
  const t0 = performance.now();
  const specs = gptTensors(job.size);
  const inputs = makeTensors(specs, job.dtype);
  const initMs = performance.now() - t0;
  let heapUsed = 0,
    arrayBuffers = 0;
  const sample = () => {
    const m = process.memoryUsage();
    heapUsed = Math.max(heapUsed, m.heapUsed);
    arrayBuffers = Math.max(arrayBuffers, m.arrayBuffers);
  };
  let pass: () => Record<string, ArrayLike<number>>;
  let dispose = () => {};
  if (job.engine === "specformer") {
    const g = formulaGraph("gpt", gptConfig(job.size));
    const cot = { loss: Tensor.scalar(1, job.dtype) };
    pass = () => {
      const r = vjp(g, inputs, cot, { dtype: job.dtype, optimize: job.optimize ?? true });
      const out: Record<string, ArrayLike<number>> = { loss: r.outputs["loss"]!.data };
      for (const [k, t] of Object.entries(r.grads)) out[`grad.${k}`] = t.data;
      return out;
    };
  } else {
    const tfp = await import("./peers/tfjs.js");
    await tfp.useBackend(job.engine === "tfjs-cpu" ? "cpu" : "wasm");
    const prepared = tfp.prepareGpt(job.size, inputs, 1e-5);
    pass = () => prepared.run().values;
    dispose = () => prepared.dispose();
  }
  let last: Record<string, ArrayLike<number>> = {};
  for (let i = 0; i < job.warmup; i++) {
    last = pass();
    sample();
  }
  const timesMs: number[] = [];
  for (let i = 0; i < job.reps; i++) {
    last = {};
    const s = performance.now();
    last = pass();
    timesMs.push(performance.now() - s);
    sample();
  }
  const summaries = summarizeArrays(last);
  const loss = Number(last["loss"]![0]);
  dispose();
  return {
    timesMs,
    summaries,
    loss,
    initMs,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    heapUsedBytes: heapUsed,
    arrayBuffersBytes: arrayBuffers,
  };
}

const arg = process.argv[2];
if (arg === undefined) {
  process.stderr.write("usage: tsx bench/gpt-child.ts '<json job>'\n");
  process.exit(2);
}
main(JSON.parse(arg) as GptJob).then(
  (r) => {
    process.stdout.write(JSON.stringify(r) + "\n");
    process.exit(0);
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
