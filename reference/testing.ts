/**
 * Weights for tests and gradient checks: unlike a fresh initialisation, every part of the model
 * is switched on (non-zero biases, norm scales away from 1), so a wrong gradient or a dropped term
 * anywhere shows.
 */
import { Rng } from "../autodiff/random.js";
import type { NamedTensors } from "../autodiff/tensor.js";
import { initWeights, type GPTConfig } from "./model.js";

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
