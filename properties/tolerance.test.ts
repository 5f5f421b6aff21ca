import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import type { Implementation } from "../autodiff/implementation.js";
import { referenceImplementation } from "../reference/implementation.js";
import { sampleInputs } from "../autodiff/random.js";
import { getLaw } from "./registry.js";
import { runLaw } from "./run.js";
import {
  conditionedBound,
  gamma,
  probeStep,
  roundingDepth,
  sensitivity,
  underflowAllowance,
  unitRoundoff,
} from "./tolerance.js";

describe("unit roundoff and γ_k", () => {
  it("uses u = 2^-53 (f64) and 2^-24 (f32)", () => {
    expect(unitRoundoff("f64")).toBe(2 ** -53);
    expect(unitRoundoff("f32")).toBe(2 ** -24);
    expect(probeStep("f32")).toBe(2 ** -12);
  });

  it("computes γ_k = k·u/(1 − k·u)", () => {
    const u = 2 ** -24;
    expect(gamma(10, "f32")).toBe((10 * u) / (1 - 10 * u));
  });

  it("refuses a depth for which the first-order bound is meaningless", () => {
    expect(() => gamma(2 ** 23, "f32")).toThrow(
      "gamma: k = 8388608 roundings is too many for f32 (k·u = 0.5 ≥ 1/2): the first-order bound is meaningless",
    );
  });

  it("allows the smallest normal per operation below the normal range", () => {
    expect(underflowAllowance("f32", 3, 2)).toBe(3 * 2 ** -126 * 2);
  });
});

describe("rounding depth K", () => {
  const t = (shape: number[]) => Tensor.zeros(shape);
  it("is the interpreter of spec/rounding.ts over the formula's graph", () => {
    // softmax over m = 5: x − max (1), exp (2), Σ (4), + [s = 0] (1), ÷ (1)
    expect(roundingDepth({ formula: "softmax", config: {}, inputs: { x: t([2, 5]) } })).toBe(5 + 4);
    // cross-entropy over V = 11, N = 3 rows: logsumexp (V + 5), − z_t (1), ×κ (1),
    // Σ over rows (N − 1), ÷ N (1)
    const ce = { logits: t([3, 11]), targets: Tensor.zeros([3], "i32") };
    const K = roundingDepth({ formula: "cross_entropy", config: {}, inputs: ce });
    expect(K).toBe(11 + 5 + 1 + 1 + 2 + 1);
    // a request's own keys (dtype) are not hyperparameters, and do not change the graph
    const f32 = { formula: "softmax", config: { dtype: "f32" }, inputs: { x: t([2, 5]) } };
    expect(roundingDepth(f32)).toBe(5 + 4);
  });

  it("takes position ids from the data: a later position rotates by a larger angle", () => {
    const at = (p: number) => {
      const inputs = { x: t([2, 4]), position_ids: Tensor.from([0, p], "i32") };
      return roundingDepth({ formula: "rope", config: { position_ids: true }, inputs });
    };
    expect(at(50)).toBeGreaterThan(at(5));
  });

  it("grows with the depth of a model", () => {
    const depth = (L: number) => {
      const config = { L, H: 2, positions: "learned", placement: "pre" };
      const inputs = sampleInputs("gpt", config, { seed: 1 });
      return roundingDepth({ formula: "gpt", config, inputs });
    };
    expect(depth(2)).toBeGreaterThan(depth(1));
  });
});

// A copy of a registry formula under another name must get the same depth: a table keyed by formula
// name (the switch this analysis replaced) would give the original a depth its copy does not get.
// The copies live in a registry loaded afresh for this block, so no other test file sees them.
describe("rounding depth of renamed copies of every formula", () => {
  let spec: typeof import("../spec/index.js");
  let tol: typeof import("./tolerance.js");
  let rnd: typeof import("../autodiff/random.js");
  beforeAll(async () => {
    vi.resetModules();
    spec = await import("../spec/index.js");
    tol = await import("./tolerance.js");
    rnd = await import("../autodiff/random.js");
  });
  afterAll(() => vi.resetModules());

  it("equals the original's, for every formula of the registry", () => {
    const names = spec.formulaNames();
    for (const name of names) {
      spec.defineFormula({ ...spec.getFormula(name), name: `${name}_renamed` });
    }
    for (const name of names) {
      const config = spec.exampleConfig(name);
      const inputs = rnd.sampleInputs(name, config, { seed: 3 });
      const depth = (formula: string) => tol.roundingDepth({ formula, config, inputs });
      expect(depth(`${name}_renamed`), name).toBe(depth(name));
    }
  });
});

describe("the sensitivity probe", () => {
  // y = 3x: perturbing x_i by a factor 1 ± η moves y_i by 3η|x_i|
  const triple: Implementation = {
    name: "triple",
    formulas: ["relu"],
    backward: false,
    dtypes: ["f64"],
    async forward(req) {
      const x = req.inputs["x"]!;
      return {
        outputs: {
          y: new Tensor(
            "f64",
            x.shape,
            Float64Array.from(x.data, (v) => 3 * v),
          ),
        },
      };
    },
  };

  it("measures κ̂ = √(2N)·Δ/η for a linear map, deterministically, skipping zeros and ids", async () => {
    const x = Tensor.from([0, -2, 1, 0.5]);
    const req = { formula: "relu", config: {}, inputs: { x, ids: Tensor.from([1, 2], "i32") } };
    const base = (await triple.forward(req)).outputs;
    const s = await sensitivity(triple, req, base, "f64");
    // N = 3 non-zero floats; the largest move is 3·η·2
    expect(s["y"]!.perturbed).toBe(3);
    expect(s["y"]!.S).toBe(6);
    expect(s["y"]!.kappa).toBeCloseTo(Math.sqrt(6) * 6, 6);
    expect(await sensitivity(triple, req, base, "f64")).toEqual(s);
  });

  it("gives the conditioned bound 2·γ_K·(S + κ̂) plus K smallest normals", () => {
    expect(conditionedBound("f64", 4, { S: 2, kappa: 1, perturbed: 1 })).toBe(
      2 * gamma(4, "f64") * 3 + 4 * 2 ** -1022,
    );
  });

  it("adds the cancelled magnitude Z to the scale of the conditioned bound: 2·γ_K·(S + κ̂ + Z)", () => {
    // PyTorch float32 gelu(−2.75) batched (vectorised erf) vs alone (scalar erf): 1.64e-7 apart,
    // above 2·γ_8·(S + κ̂) = 9.0e-8 (S = 0.0082, κ̂ = 0.086) but within the bound with Z = |x| = 2.75
    const scale = { S: 0.008194, kappa: 0.08571, perturbed: 1 };
    expect(conditionedBound("f32", 8, scale)).toBeLessThan(1.64e-7);
    expect(conditionedBound("f32", 8, scale, 2.75)).toBeGreaterThan(1.64e-7);
    expect(conditionedBound("f32", 8, scale, 2.75)).toBe(
      2 * gamma(8, "f32") * (scale.S + scale.kappa + 2.75) + 8 * 2 ** -126,
    );
  });
});

describe("the cancelled magnitudes Z of the oracle law still catch the smallest precision bug", () => {
  // A float64 request computed in float32 (errors ~u₃₂·|z| = 6e-8·|z|): the loosening Z allows
  // γ_K(f64)·Z ≈ K·1e-16·|z|, nine orders of magnitude less.
  const ref = referenceImplementation();
  const inFloat32: Implementation = {
    ...ref,
    name: "float64 requests computed in float32",
    async forward(req) {
      const inputs: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(req.inputs))
        inputs[k] = t.dtype === "f64" ? t.to("f32") : t;
      const outs = (await ref.forward({ ...req, config: { ...req.config, dtype: "f32" }, inputs }))
        .outputs;
      const back: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(outs)) back[k] = t.dtype === "f32" ? t.to("f64") : t;
      return { outputs: back };
    },
  };
  for (const formula of ["cross_entropy", "layer_norm", "gelu"]) {
    it(`fails reference_error_bound on ${formula}`, async () => {
      const r = await runLaw(inFloat32, getLaw("reference_error_bound"), {
        formula,
        runs: 40,
        seed: 7,
        shrinkTimeMs: 0,
        dtype: "f64",
      });
      expect(r.status, formula).toBe("failed");
      expect(r.failure!.message).toContain("vs the float64 reference");
    });
  }
});
