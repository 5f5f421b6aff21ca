/**
 * Weights for tests and gradient checks: unlike a fresh initialisation, every part of the model
 * is switched on (non-zero biases, norm scales away from 1), so a wrong gradient or a dropped term
 * anywhere shows.
 */
import { Rng } from "../autodiff/random.js";
import type { NamedTensors } from "../autodiff/tensor.js";
import { GPT, initWeights, resolveModelConfig, type GPTConfig } from "./model.js";

/** Xavier matrices, biases N(0, 0.1²), norm scales 1 + N(0, 0.1²); seeded. */
export function livelyWeights(config: GPTConfig, seed: number): NamedTensors {
  const w = initWeights(config, { seed, init: "xavier" });
  const rng = new Rng(seed + 1000);
  for (const [k, t] of Object.entries(w)) {
    if (k.endsWith(".bias")) for (let i = 0; i < t.size; i++) t.data[i] = 0.1 * rng.normal();
    if (/ln_(\d|f)\.weight$/.test(k))
      for (let i = 0; i < t.size; i++) t.data[i] = 1 + 0.1 * rng.normal();
  }
  return w;
}

/** The reference model for `fields` (over the `tiny` preset) with {@link livelyWeights}. */
export function livelyModel(fields: Partial<GPTConfig>, seed = 1): GPT {
  const c = resolveModelConfig({ preset: "tiny", ...fields });
  return new GPT(c, livelyWeights(c, seed));
}

/** max_i |a_i − b_i| / max_i |b_i|: the error of `a` relative to the largest entry of `b`. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0,
    s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / s;
}
