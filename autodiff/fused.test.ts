/**
 * Fused kernels are allowed only because they equal the composition of primitives: in value
 * (float64: within a few ulps of the row's scale; float32: the float32 bound) and in gradient.
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "./graph.js";
import { evaluate } from "./evaluate.js";
import { vjp } from "./grad.js";
import { Rng, sampleInputs } from "./random.js";
import { FUSED } from "./kernels/fused.js";
import type { NamedTensors } from "./tensor.js";

/** max |a − b| relative to max(|a|, floor): the floor is the size of the terms being summed. */
function maxRelDiff(a: NamedTensors, b: NamedTensors, floor = 0): number {
  let m = 0;
  for (const [k, t] of Object.entries(a)) {
    const u = b[k]!;
    let scale = floor;
    for (let i = 0; i < t.size; i++) scale = Math.max(scale, Math.abs(t.data[i]!));
    for (let i = 0; i < t.size; i++) {
      const d = Math.abs(t.data[i]! - u.data[i]!);
      if (!(d === 0 || t.data[i] === u.data[i])) m = Math.max(m, d / Math.max(scale, 1e-300));
    }
  }
  return m;
}

describe("fused kernels equal their composition", () => {
  for (const name of Object.keys(FUSED)) {
    for (const dtype of ["f64", "f32"] as const) {
      test(`${name} (${dtype}): value and gradient`, () => {
        const g = formulaGraph(name);
        for (const [seed, scale] of [
          [1, 1],
          [2, 30],
          [3, 1e3],
        ] as const) {
          const x = sampleInputs(
            name,
            {},
            { seed, dims: { m: 37, d: 37 }, batch: [3], scale, dtype },
          );
          const fused = evaluate(g, x, { dtype, fused: true });
          const plain = evaluate(g, x, { dtype, fused: false });
          // reduction of length 37: float64 ≈ 37·2⁻⁵³ ≈ 4e-15 relative to the row scale; float32 ≈ 37·2⁻²⁴ ≈ 2e-6
          const tol = dtype === "f64" ? 64 * 37 * 2 ** -53 : 8 * 37 * 2 ** -24;
          expect(maxRelDiff(fused, plain), `value, seed ${seed}`).toBeLessThan(tol);
          const cot: NamedTensors = {};
          const rng = new Rng(seed);
          for (const [k, o] of Object.entries(plain)) cot[k] = rng.normalTensor(o.shape, 1, dtype);
          // the gradient rules subtract terms of the cotangent's size (ȳ − Σ ȳ⊙y): measure against it,
          // since a peaked softmax leaves a gradient far smaller than the terms it cancels
          let cotScale = 0;
          for (const c of Object.values(cot))
            for (let i = 0; i < c.size; i++) cotScale = Math.max(cotScale, Math.abs(c.data[i]!));
          expect(
            maxRelDiff(
              vjp(g, x, cot, { dtype, fused: true }).grads,
              vjp(g, x, cot, { dtype, fused: false }).grads,
              cotScale,
            ),
            `gradient, seed ${seed}`,
          ).toBeLessThan(tol * 4);
        }
      });
    }
  }
  test("fully masked rows: fused and composed softmax both give zeros", () => {
    const g = formulaGraph("softmax");
    const x = sampleInputs("softmax", {}, { seed: 1, dims: { m: 4 } });
    for (let i = 0; i < 4; i++) x["x"]!.data[i] = -Infinity;
    for (const fused of [true, false]) {
      const y = evaluate(g, x, { fused })["y"]!;
      expect(Array.from(y.data.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    }
  });
});
