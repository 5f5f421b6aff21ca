/**
 * Gradients of attention under every convention of issue 13 (alignment with n ≠ m, window, mask
 * inputs with padded keys and a fully masked row, scale, soft cap, grouped heads), full and fast
 * gradcheck against central differences, and the documented zeros of a fully masked row.
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "./graph.js";
import { gradcheckGraph } from "./gradcheck.js";
import { vjp } from "./grad.js";
import { sampleInputs } from "./random.js";
import { Tensor, type NamedTensors } from "./tensor.js";
import type { Config } from "../spec/node.js";

const dims = { n: 3, m: 5, d_k: 3, d_v: 2 };

/** Key 1 padded for every query, query 2 sees no key; `additive` as 0 / −∞. */
function paddingMask(shape: readonly number[], additive: boolean): Tensor {
  const t = Tensor.zeros(shape, additive ? "f64" : "i32");
  const [n, m] = shape.slice(-2) as [number, number];
  for (let f = 0; f < t.size; f++) {
    const j = f % m;
    const i = Math.floor(f / m) % n;
    const keep = j !== 1 && i !== 2;
    t.data[f] = additive ? (keep ? 0 : -Infinity) : keep ? 1 : 0;
  }
  return t;
}

const CASES: [string, Config][] = [
  ["top-left, n < m", { causal_align: "top_left" }],
  ["bottom-right, n < m", { causal_align: "bottom_right" }],
  ["window 2", { window: 2 }],
  ["window 1, top-left", { window: 1, causal_align: "top_left" }],
  ["boolean mask", { mask: "boolean", causal: false }],
  ["additive mask (finite)", { mask: "additive" }],
  ["scale 0.4", { scale: 0.4 }],
  ["softcap 1.5", { softcap: 1.5 }],
  ["grouped heads H = 4, H_kv = 2", { H: 4, H_kv: 2 }],
  [
    "everything: H = 3, H_kv = 1, boolean mask, softcap, window, top-left",
    { H: 3, H_kv: 1, mask: "boolean", softcap: 2, window: 2, causal_align: "top_left" },
  ],
];

describe("attention conventions pass gradcheck", () => {
  for (const [what, cfg] of CASES) {
    for (const mode of ["full", "fast"] as const) {
      test(`${what} (${mode})`, async () => {
        const inputs: NamedTensors = sampleInputs("attention", cfg, { seed: 3, dims, batch: [2] });
        if (cfg["mask"] === "boolean") inputs["mask"] = paddingMask(inputs["mask"]!.shape, false);
        const r = await gradcheckGraph(formulaGraph("attention", cfg), inputs, { mode, seed: 1 });
        expect(r.failures).toEqual([]);
        expect(r.ok).toBe(true);
      });
    }
  }
  test(
    "an additive −∞ mask: gradients of Q, K, V check, and padded keys and " +
      "the empty row get exact zeros",
    async () => {
      const cfg: Config = { mask: "additive", causal: false };
      const inputs: NamedTensors = sampleInputs("attention", cfg, { seed: 4, dims, batch: [2] });
      inputs["mask"] = paddingMask(inputs["mask"]!.shape, true);
      const r = await gradcheckGraph(formulaGraph("attention", cfg), inputs, {
        mode: "full",
        seed: 2,
        wrt: ["Q", "K", "V"],
      });
      expect(r.ok).toBe(true);
      const g = formulaGraph("attention", cfg);
      const cot = Tensor.full([2, 3, 2], 1);
      const { outputs, grads } = vjp(g, inputs, { y: cot });
      const y = outputs["y"]!;
      for (let b = 0; b < 2; b++) for (let e = 0; e < 2; e++) expect(y.get(b, 2, e)).toBe(0);
      for (let b = 0; b < 2; b++)
        for (let e = 0; e < 3; e++) expect(grads["Q"]!.get(b, 2, e)).toBe(0);
      for (let b = 0; b < 2; b++)
        for (let e = 0; e < 3; e++) expect(grads["K"]!.get(b, 1, e)).toBe(0);
      for (let b = 0; b < 2; b++)
        for (let e = 0; e < 2; e++) expect(grads["V"]!.get(b, 1, e)).toBe(0);
      for (let f = 0; f < grads["mask"]!.size; f++)
        expect(Number.isNaN(grads["mask"]!.data[f])).toBe(false);
    },
  );
});
