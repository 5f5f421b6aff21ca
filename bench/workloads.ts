/**
 * The benchmark workloads, declared once for every engine: sizes, the tensors each needs (with
 * their seeded initialisation, see seeded.ts), how results are summarised and compared.
 *
 * A result tensor is summarised by its norm ‖t‖ and its projection r·t on a seeded random probe
 * r (uniform in (−1, 1)); two engines agree when both the norm and the projection agree within
 * the workload's tolerance. For a random probe, |r·(a − b)| ≈ rms(r)·‖a − b‖, so
 * |r·(a − b)| / (rms(r)·‖a‖) estimates the relative error ‖a − b‖/‖a‖ without shipping whole
 * tensors between processes (GPT-2-small's gradients are a gigabyte).
 */
import { resolveTopLevel, type TopLevelConfigs } from "../spec/configs.js";
import { getPreset } from "../spec/presets.js";
import { exampleShapes } from "../spec/formula.js";
import type { Config } from "../spec/node.js";
import "../spec/index.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import {
  formulaConfig,
  parameterShapes,
  resolveModelConfig,
  type GPTConfig,
} from "../reference/model.js";
import { hashTokens, hashUniform } from "./seeded.js";
import { gradGraph } from "../autodiff/grad.js";
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { graphDepth } from "../spec/rounding.js";

/** How a tensor is made: uniform in center ± halfWidth, or token ids below V. */
export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly halfWidth: number;
  readonly center: number;
  /** Integer ids in [0, V) instead of floats. */
  readonly V?: number;
}

export const SEED = 20240601;

/** One GPT block: pre-LN, GELU (tanh), causal, biases — GPT-2's block. */
export interface BlockSize {
  readonly d_model: number;
  readonly n: number;
  readonly H: number;
  readonly d_ff: number;
}

export const BLOCK_SIZES: readonly BlockSize[] = [
  { d_model: 128, n: 64, H: 4, d_ff: 512 },
  { d_model: 256, n: 128, H: 8, d_ff: 1024 },
];

/** Block configuration of the `block` formula (eps as GPT-2's). */
export function blockConfig(s: BlockSize): TopLevelConfigs["block"] {
  return resolveTopLevel("block", {
    H: s.H,
    placement: "pre",
    activation: "gelu_tanh",
    norm: "layer_norm",
    causal: true,
    eps: 1e-5,
  });
}

export function blockLabel(s: BlockSize): string {
  return `block d_model=${s.d_model} n=${s.n} H=${s.H} d_ff=${s.d_ff}`;
}

/**
 * Initialisation (the same for every engine): matrices uniform with variance 1/fan_in
 * (half-width √(3/fan_in)), norm scales 1 ± 0.1, biases ± 0.1, activations and cotangents with
 * unit variance (half-width √3), embeddings with GPT-2's standard deviation 0.02.
 */
function specFor(name: string, shape: readonly number[]): TensorSpec {
  const unit = Math.sqrt(3);
  if (name === "wte.weight" || name === "wpe.weight")
    return { name, shape, halfWidth: 0.02 * unit, center: 0 };
  if (shape.length === 2 && name !== "x" && !name.startsWith("cot."))
    return { name, shape, halfWidth: Math.sqrt(3 / shape[0]!), center: 0 };
  if (/(^|\.)ln_\w+\.weight$/.test(name)) return { name, shape, halfWidth: 0.1, center: 1 };
  if (name.endsWith(".bias")) return { name, shape, halfWidth: 0.1, center: 0 };
  return { name, shape, halfWidth: unit, center: 0 };
}

/** Inputs (x, the twelve parameters in the formula's order) and the output cotangent of a block. */
export function blockTensors(s: BlockSize): { inputs: TensorSpec[]; cot: TensorSpec } {
  const cfg = blockConfig(s);
  const shapes = exampleShapes("block", cfg, {
    n: s.n,
    d_k: s.d_model / s.H,
    H_kv: s.H,
    d_ff: s.d_ff,
  });
  const inputs = Object.entries(shapes)
    .filter(([k]) => k !== "y")
    .map(([k, shape]) => specFor(k, shape));
  return { inputs, cot: specFor("cot.y", [s.n, s.d_model]) };
}

/** A forward + backward pass to time: the graph, its seeded inputs and the output cotangents. */
export interface Pass {
  readonly g: Graph;
  readonly inputs: NamedTensors;
  readonly cot: NamedTensors;
}

/** One block's forward + backward pass at these sizes, every value seeded in `dtype`. */
export function blockPass(s: BlockSize, dtype: FloatDType): Pass {
  const t = blockTensors(s);
  return {
    g: formulaGraph("block", blockConfig(s)),
    inputs: makeTensors(t.inputs, dtype),
    cot: { y: makeTensors([t.cot], dtype)["cot.y"]! },
  };
}

/** A GPT-shaped model and the tokens it runs on. */
export interface GptSize {
  readonly name: string;
  readonly V: number;
  readonly n_ctx: number;
  readonly d_model: number;
  readonly H: number;
  readonly L: number;
  readonly d_ff: number;
  /** Tokens of the one sequence run forward and backward. */
  readonly tokens: number;
}

/**
 * The sizes of a model preset (spec/presets.ts; d_ff defaults to 4·d_model) on `tokens` tokens.
 * @throws Error if the preset leaves a size open.
 */
export function presetSize(name: string, tokens: number): GptSize {
  const { V, n_ctx, d_model, H, L, d_ff } = resolveTopLevel("gpt", getPreset(name));
  if (V === undefined || n_ctx === undefined || d_model === undefined || H === undefined)
    throw new Error(`the ${name} preset must fix V, n_ctx, d_model and H`);
  if (L === undefined) throw new Error(`the ${name} preset must fix L`);
  return { name, V, n_ctx, d_model, H, L, d_ff: d_ff ?? 4 * d_model, tokens };
}

export const GPT2_SMALL: GptSize = presetSize("gpt2-small", 64);

/**
 * The configuration as reference/model.ts resolves it (the formula's config and every
 * parameter's shape, read from the `gpt` formula's declaration).
 */
function gptModelConfig(s: GptSize): GPTConfig {
  return resolveModelConfig({
    V: s.V,
    n_ctx: s.n_ctx,
    d_model: s.d_model,
    H: s.H,
    L: s.L,
    d_ff: s.d_ff,
    placement: "pre",
    activation: "gelu_tanh",
    positions: "learned",
    tied: true,
    norm: "layer_norm",
    eps: 1e-5,
  });
}

export function gptConfig(s: GptSize): Config {
  return formulaConfig(gptModelConfig(s));
}

/** {@link fwdBwdDepth} of the `gpt` formula's loss at these sizes. */
export function gptDepth(s: GptSize): number {
  const loss = { name: "cot.loss", shape: [], halfWidth: 0, center: 0 };
  return fwdBwdDepth(formulaGraph("gpt", gptConfig(s)), ["loss"], [...gptTensors(s), loss]);
}

/** Tokens, shifted targets and every parameter (GPT-2 names) of the `gpt` formula. */
export function gptTensors(s: GptSize): TensorSpec[] {
  const out: TensorSpec[] = [
    { name: "tokens", shape: [s.tokens], halfWidth: 0, center: 0, V: s.V },
    { name: "targets", shape: [s.tokens], halfWidth: 0, center: 0, V: s.V },
  ];
  for (const [k, shape] of Object.entries(parameterShapes(gptModelConfig(s))))
    out.push(specFor(k, shape));
  return out;
}

/** Materialise tensors from their specs (floats in `dtype`). */
export function makeTensors(
  specs: readonly TensorSpec[],
  dtype: FloatDType,
  seed = SEED,
): NamedTensors {
  const out: NamedTensors = {};
  for (const sp of specs) {
    out[sp.name] =
      sp.V !== undefined
        ? hashTokens(sp.name, seed, sp.shape, sp.V)
        : hashUniform(sp.name, seed, sp.shape, sp.halfWidth, dtype, sp.center);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// summaries and agreement

/** ‖t‖, r·t for the probe r of this name, and rms(r). */
export interface Summary {
  readonly norm: number;
  readonly proj: number;
  readonly probeRms: number;
}

/** The probe for a result named `name`: uniform in (−1, 1) from the same hash. */
function probe(name: string, size: number, seed = SEED): Float64Array {
  return hashUniform(`probe:${name}`, seed, [size], 1).data as Float64Array;
}

export function summarize(name: string, t: ArrayLike<number>, seed = SEED): Summary {
  const r = probe(name, t.length, seed);
  let ss = 0,
    p = 0,
    rr = 0;
  for (let i = 0; i < t.length; i++) {
    const v = t[i]!;
    ss += v * v;
    p += r[i]! * v;
    rr += r[i]! * r[i]!;
  }
  return { norm: Math.sqrt(ss), proj: p, probeRms: t.length === 0 ? 0 : Math.sqrt(rr / t.length) };
}

/** {@link summarize} of each named array, under its name. */
export function summarizeArrays(
  values: Readonly<Record<string, ArrayLike<number>>>,
  seed = SEED,
): Record<string, Summary> {
  const out: Record<string, Summary> = {};
  for (const [k, v] of Object.entries(values)) out[k] = summarize(k, v, seed);
  return out;
}

/** {@link summarize} of each named tensor's values, under its name. */
export function summarizeAll(
  ts: Readonly<Record<string, Tensor>>,
  seed = SEED,
): Record<string, Summary> {
  const out: Record<string, Summary> = {};
  for (const [k, t] of Object.entries(ts)) out[k] = summarize(k, t.data, seed);
  return out;
}

/** Gradients by the names results compare them under: `grad.<argument>`. */
export function gradsNamed(grads: NamedTensors): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(grads)) out[`grad.${k}`] = v;
  return out;
}

/** Unit roundoff of a dtype. */
function unitRoundoff(dtype: FloatDType): number {
  return dtype === "f64" ? 2 ** -53 : 2 ** -24;
}

/**
 * Tolerance on the relative error ‖a − b‖/‖a‖ between two engines: depth · K · u, the worst-case
 * growth of rounding error through `depth` sequential stages each summing at most K terms,
 * with u the roundoff of the less precise engine. With K from {@link fwdBwdDepth} (the roundings
 * on the longest chain, every stage's sum included) depth is 1.
 */
export function agreementTolerance(
  dtypeA: FloatDType,
  dtypeB: FloatDType,
  K: number,
  depth = 1,
): number {
  return depth * K * Math.max(unitRoundoff(dtypeA), unitRoundoff(dtypeB));
}

/**
 * K of a forward and backward pass: the roundings on the longest chain from an argument to a
 * value or gradient of `outputs` (spec/rounding.ts over the gradient graph with the forward
 * outputs kept), at the sizes of these tensors (`cot.<output>` for the cotangents).
 */
export function fwdBwdDepth(
  g: Graph,
  outputs: readonly string[],
  specs: readonly TensorSpec[],
): number {
  const shapes: Record<string, { shape: readonly number[]; dtype: string }> = {};
  for (const s of specs) {
    shapes[s.name] = { shape: s.shape, dtype: s.V === undefined ? "f64" : "i32" };
  }
  return graphDepth(gradGraph(g, { of: outputs, withValues: true }), shapes);
}

export interface Agreement {
  readonly ok: boolean;
  /** Largest estimated relative error over tensors (norm difference or projected difference). */
  readonly worst: number;
  readonly worstTensor: string;
  readonly tolerance: number;
  readonly missing: readonly string[];
}

/** Compare an engine's summaries with the reference's. */
export function agree(
  ref: Readonly<Record<string, Summary>>,
  other: Readonly<Record<string, Summary>>,
  tolerance: number,
): Agreement {
  let worst = 0;
  let worstTensor = "";
  const missing: string[] = [];
  for (const [k, a] of Object.entries(ref)) {
    const b = other[k];
    if (b === undefined) {
      missing.push(k);
      continue;
    }
    const scale = a.norm === 0 ? 1 : a.norm;
    const eNorm = Math.abs(a.norm - b.norm) / scale;
    const eProj = a.probeRms === 0 ? 0 : Math.abs(a.proj - b.proj) / (a.probeRms * scale);
    const e = Number.isNaN(eNorm) || Number.isNaN(eProj) ? Infinity : Math.max(eNorm, eProj);
    if (e >= worst) {
      worst = e;
      worstTensor = k;
    }
  }
  return { ok: missing.length === 0 && worst <= tolerance, worst, worstTensor, tolerance, missing };
}

// ---------------------------------------------------------------------------------------------
// timing

export interface Timing {
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  readonly reps: number;
  readonly samplesMs: readonly number[];
}

export function timingOf(samples: readonly number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  const m = s.length;
  const median = m === 0 ? NaN : m % 2 === 1 ? s[(m - 1) / 2]! : (s[m / 2 - 1]! + s[m / 2]!) / 2;
  return {
    medianMs: median,
    minMs: s[0] ?? NaN,
    maxMs: s[m - 1] ?? NaN,
    reps: m,
    samplesMs: samples,
  };
}

/** Warm up, then time `reps` calls (ms each). */
export async function timeIt(f: () => unknown, warmup: number, reps: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await f();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    samples.push(performance.now() - t0);
  }
  return timingOf(samples);
}
