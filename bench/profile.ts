/**
 * Where the interpreter's time goes: every computed step of a forward + backward pass timed and
 * grouped by op and shapes, then by kind (matmul, elementwise, reductions with softmax and
 * LayerNorm, movement, garbage collection, and the rest of the wall time outside the steps).
 * `npx tsx bench/profile.ts [block|block-small|gpt2] [--reps N] [--top N] [--no-fuse] [--fma]`
 * (block: d_model 256, n 128, H 8; gpt2: the GPT-2-small shape on 64 tokens; f64). `--no-fuse`
 * plans no fused chains; `--fma` runs products with the relaxed-SIMD FMA kernel.
 */
import { PerformanceObserver } from "node:perf_hooks";
import "../spec/index.js";
import { formulaGraph } from "../autodiff/graph.js";
import { gradGraph, vjp } from "../autodiff/grad.js";
import { plan, setStepProfiler, type ProfiledStep } from "../autodiff/evaluate.js";
import {
  configureMatmul,
  matmulKernelInfo,
  shutdownMatmulWorkers,
} from "../autodiff/kernels/matmul.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import {
  BLOCK_SIZES,
  GPT2_SMALL,
  blockPass,
  gptConfig,
  gptTensors,
  makeTensors,
  type Pass,
} from "./workloads.js";

const argv = process.argv.slice(2);
const which = argv.find((a) => !a.startsWith("--")) ?? "block";
const opt = (name: string, d: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const reps = opt("--reps", which === "gpt2" ? 2 : 10);
const top = opt("--top", 40);
const evalOpts = argv.includes("--no-fuse")
  ? { optimize: { reuse: true, inPlace: true, rewrites: true, fuse: false } }
  : {};
if (argv.includes("--fma")) configureMatmul({ fma: true });

const { g, inputs, cot }: Pass =
  which === "gpt2"
    ? {
        g: formulaGraph("gpt", gptConfig(GPT2_SMALL)),
        inputs: makeTensors(gptTensors(GPT2_SMALL), "f64"),
        cot: { loss: Tensor.scalar(1) },
      }
    : blockPass(which === "block-small" ? BLOCK_SIZES[0]! : BLOCK_SIZES[1]!, "f64");
vjp(g, inputs, cot, evalOpts); // plan and warm up
vjp(g, inputs, cot, evalOpts);
const gg = gradGraph(g, { of: Object.keys(cot), withValues: true });
const all: NamedTensors = { ...inputs };
for (const [k, v] of Object.entries(cot)) all[`cot.${k}`] = v;

const acc = new Map<string, { ms: number; count: number; inPlace: number }>();
const shapeOf = (p: ProfiledStep, k: number, list: readonly ProfiledStep[]) =>
  list[p.deps[k]!]?.shape.join("×") ?? "?";
const keyOf = (s: ProfiledStep, list: readonly ProfiledStep[]): string => {
  const n = s.node;
  const out = s.shape.join("×");
  if (s.fused !== undefined) return `chain ${s.fused} → ${out}`;
  if (n.op === "permute" && s.deps.length === 2)
    return `matmul ${shapeOf(s, 0, list)} · ${shapeOf(s, 1, list)} → ${out} (permuted layout)`;
  switch (n.op) {
    case "unary":
      return `unary ${n.fn} ${out}`;
    case "binary":
      return `binary ${n.fn} ${shapeOf(s, 0, list)}, ${shapeOf(s, 1, list)}`;
    case "call":
      return `fused ${n.formula} ${out}`;
    case "matmul":
      return (
        `matmul ${shapeOf(s, 0, list)}${n.a.op === "permute" ? "ᵀ" : ""} · ` +
        `${shapeOf(s, 1, list)}${n.b.op === "permute" ? "ᵀ" : ""} → ${out}`
      );
    case "reduce":
      return `reduce ${n.fn} ${shapeOf(s, 0, list)} → ${out}`;
    default:
      return `${n.op} ${out}`;
  }
};
const planned = plan(gg, all, evalOpts).steps as readonly ProfiledStep[];
/** The kind a step's time counts under in the summary. */
const kindOf = (s: ProfiledStep): string => {
  const n = s.node;
  if (s.fused !== undefined)
    return s.fused.startsWith("sum(") || s.fused.startsWith("max(")
      ? "reductions, softmax, LayerNorm"
      : "elementwise";
  switch (n.op) {
    case "matmul":
      return "matmul";
    case "unary":
    case "binary":
    case "where":
    case "const":
    case "dim":
    case "iota":
      return "elementwise";
    case "reduce":
    case "call":
      return "reductions, softmax, LayerNorm";
    case "permute":
      // a permute with two operands is a product written in the permuted layout (Bᵀ·Aᵀ, merged heads)
      return s.deps.length === 2 ? "matmul" : "permute, copy";
    default:
      return "permute, copy";
  }
};
const kinds = new Map<string, number>();
let gcMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration / reps;
});
let total = 0;
setStepProfiler((s, ms, inPlace) => {
  kinds.set(kindOf(s), (kinds.get(kindOf(s)) ?? 0) + ms / reps);
  const k = keyOf(s, planned);
  const e = acc.get(k) ?? { ms: 0, count: 0, inPlace: 0 };
  e.ms += ms / reps;
  e.count += 1 / reps;
  if (inPlace) e.inPlace += 1 / reps;
  acc.set(k, e);
  total += ms / reps;
});
gcObserver.observe({ entryTypes: ["gc"] });
const t0 = performance.now();
for (let i = 0; i < reps; i++) vjp(g, inputs, cot, evalOpts);
const wall = (performance.now() - t0) / reps;
setStepProfiler(undefined);
await new Promise((r) => setTimeout(r, 0)); // deliver the last GC entries
gcObserver.disconnect();
console.log(
  `${which}: ${wall.toFixed(1)} ms per forward + backward (wall, with ` +
    `profiling), ${total.toFixed(1)} ms in steps, ${planned.length} planned steps`,
);
const rows = [...acc.entries()].sort((a, b) => b[1].ms - a[1].ms);
const mm = matmulKernelInfo();
console.log(
  `matmul kernel: ${mm.fma ? "relaxed-SIMD FMA" : "mul + add"} (relaxed ` +
    `SIMD ${mm.relaxedSimd.available ? `available via ${mm.relaxedSimd.via}` : "unavailable"}); ` +
    `fused chains ${"optimize" in evalOpts ? "off" : "on"}`,
);
console.log("| kind | ms per pass | share of wall |");
console.log("| --- | ---: | ---: |");
const share = (ms: number) => `${((100 * ms) / wall).toFixed(0)} %`;
for (const [k, ms] of [...kinds.entries()].sort((a, b) => b[1] - a[1]))
  console.log(`| ${k} | ${ms.toFixed(1)} | ${share(ms)} |`);
// GC pauses fall inside steps (allocation) or between them; shown apart, not subtracted
console.log(
  `| outside steps (planning lookup, pool, GC between steps, profiler) | ` +
    `${(wall - total).toFixed(1)} | ${share(wall - total)} |`,
);
console.log(`| (of which garbage collection, anywhere) | ${gcMs.toFixed(1)} | ${share(gcMs)} |`);
for (const [k, e] of rows.slice(0, top))
  console.log(
    `${e.ms.toFixed(2).padStart(9)} ms ` +
      `${String(Math.round(e.count)).padStart(4)}× ` +
      `${e.inPlace > 0 ? `(${Math.round(e.inPlace)} in place) ` : ""}${k}`,
  );
await shutdownMatmulWorkers();
