/**
 * Hints at every level: each named mistake planted consistently through the call tree
 * (verify/planted.testing.ts, written apart from the variants verify/diagnose.ts evaluates) in a port
 * that declares only `gpt`, diagnosed from the failing output of a committed PyTorch golden case
 * the way a gpt-only port's failure is (its output is all there is). The expected values are
 * the goldens.
 */
import { describe, expect, test } from "vitest";
import type { Implementation } from "../autodiff/implementation.js";
import type { Tensor } from "../autodiff/tensor.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { compareCase } from "../golden/compare.js";
import { plantedImplementation } from "../properties/planted.js";
import { forwardChecked, golden } from "./cases.testing.js";
import { diagnose } from "./diagnose.js";
import type { Hint, HintId } from "./diagnose.js";
import { verify } from "./run.js";
import {
  plantDropArgument,
  plantedGraphImplementation,
  plantEmbeddingScaled,
  plantEpsOutsideSqrt,
  plantGeluTanh,
  plantLogitsScaled,
  plantLossSummed,
  plantMaskShift,
  plantMaxSeed,
  plantNoPositions,
  plantPrePlacement,
  plantScaleDModel,
  plantSkipFinalNorm,
  plantTiedLogitsNoGrad,
  plantUnbiasedVariance,
} from "./planted.testing.js";
import type { Plant } from "./planted.testing.js";

const PRE = "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8"; // GPT-2: pre-LN, tanh GELU, learned positions, ln_f
const POST = "gpt/f64/seed_post_ln_V50_d16_h2_L2_n8"; // the seed: post-LN, erf GELU, sinusoidal positions

/** The hints for the first failing output of `c` computed by `impl` (how a gpt-only port's failure is explained). */
async function outputHints(impl: Implementation, c: GoldenCase): Promise<Hint[]> {
  const m = c.meta;
  const { actual, report } = await forwardChecked(impl, c);
  const failing = report.tensors.find((r) => !r.ok && r.name.startsWith("out."));
  expect(failing, "the planted bug must make the case fail").toBeDefined();
  const o = failing!.name.slice(4);
  return diagnose({
    formula: m.formula,
    config: m.config,
    inputs: c.inputs,
    dtype: m.dtype,
    output: o,
    expected: c.outputs[o]!,
    actual: actual[o]!,
    tolerance: failing!.tolerance,
    dims: m.dims,
  });
}

const gptOnly = (name: string, plant: Plant): Implementation =>
  plantedGraphImplementation(name, plant, ["gpt"]);
const matchIds = (hs: readonly Hint[]): HintId[] =>
  hs.filter((h) => h.evidence === "match").map((h) => h.id);

describe("a port that declares only gpt: each planted mistake gets its hint, and no other match", () => {
  const cases: Array<[string, Plant, string, HintId, "match" | "pattern", string]> = [
    [
      "mask off by one",
      plantMaskShift(1),
      PRE,
      "mask-off-by-one",
      "match",
      "causal_mask inside gpt",
    ],
    ["no mask", plantMaskShift(100), PRE, "mask-missing", "match", "no causal mask"],
    [
      "1/√d_model scale",
      plantScaleDModel,
      PRE,
      "attention-scale",
      "match",
      "1/√d_model (d_model = H·d_k = 16)",
    ],
    ["tanh GELU", plantGeluTanh, POST, "gelu-tanh", "match", "gelu inside gpt"],
    [
      "pre-LN blocks",
      plantPrePlacement,
      POST,
      "placement",
      "match",
      "pre-LN blocks where placement = post",
    ],
    ["unbiased variance", plantUnbiasedVariance, PRE, "layernorm-unbiased", "match", "d − 1"],
    ["eps outside", plantEpsOutsideSqrt, PRE, "eps-outside-sqrt", "match", "(x − μ)/(√σ² + ε)"],
    [
      "b_2 dropped",
      plantDropArgument("ffn", "b_2"),
      PRE,
      "bias-dropped",
      "match",
      "mlp.c_proj.bias left out (zero) in every block (2 of them)",
    ],
    [
      "positions not added",
      plantNoPositions,
      PRE,
      "positions-missing",
      "match",
      "the first block's input is the token embedding alone",
    ],
    [
      "sinusoidal positions not added",
      plantNoPositions,
      POST,
      "positions-missing",
      "match",
      "positional_sinusoidal inside gpt",
    ],
    ["embedding × √d_model", plantEmbeddingScaled, PRE, "scale-factor", "match", "√d_model"],
    [
      "logits ÷ √d_model",
      plantLogitsScaled,
      PRE,
      "scale-factor",
      "pattern",
      "1/√d_model = 0.25 (d_model = 16)",
    ],
    ["ln_f skipped", plantSkipFinalNorm, PRE, "part-skipped", "match", "ln_f (layer_norm) skipped"],
  ];
  for (const [name, plant, c, id, evidence, text] of cases) {
    test(`${name}: ${id}`, async () => {
      const hints = await outputHints(gptOnly(name, plant), golden(c));
      const h = hints.find((x) => x.id === id);
      expect(h, JSON.stringify(hints)).toBeDefined();
      expect(h!.evidence).toBe(evidence);
      expect(h!.message).toContain(text);
      // no false match: every other named mistake differs from this one
      expect(matchIds(hints).filter((x) => x !== id)).toEqual([]);
    });
  }
  test("the skipped ln_f is laid on gpt, the composite that skipped it, not on layer_norm", async () => {
    const h = (await outputHints(gptOnly("skip", plantSkipFinalNorm), golden(PRE))).find(
      (x) => x.id === "part-skipped",
    )!;
    expect(h.message).toContain(
      "gpt does not apply this part — the mistake is in gpt, not in layer_norm",
    );
  });
  test("a summed loss (logits right, the loss N = 8 times too large)", async () => {
    const hints = await outputHints(gptOnly("summed", plantLossSummed), golden(PRE));
    expect(hints.map((h) => [h.id, h.evidence])).toEqual([["loss-summed", "pattern"]]);
    expect(hints[0]!.message).toContain("N = 8, the number of counted targets");
  });
  test("a summed loss over a batch of 2: N = 16 counted targets", async () => {
    const hints = await outputHints(
      gptOnly("summed", plantLossSummed),
      golden("gpt/f64/gpt2_pre_ln_b2_V64_d16_h4_L2_n8"),
    );
    expect(hints[0]?.message).toContain("N = 16");
  });
  test("a float32 case: the unbiased variance is still named", async () => {
    const hints = await outputHints(
      gptOnly("unbiased", plantUnbiasedVariance),
      golden("gpt/f32/gpt2_pre_ln_V64_d16_h4_L2_n8"),
    );
    expect(matchIds(hints)).toEqual(["layernorm-unbiased"]);
  });
  test("the tied embedding's gradient misses the logits use (backward)", async () => {
    const c = golden(PRE);
    const impl = gptOnly("tied", plantTiedLogitsNoGrad);
    const grads = (
      await impl.backwardPass!({
        formula: "gpt",
        config: { ...c.meta.config, dtype: "f64" },
        inputs: c.inputs,
        cotangents: c.cotangents,
      })
    ).grads;
    const report = compareCase(c, { outputs: c.outputs, grads });
    const failing = report.tensors.filter((r) => !r.ok).map((r) => r.name);
    expect(failing).toEqual(["grad.wte.weight"]);
    const tol = report.tensors.find((r) => r.name === "grad.wte.weight")!.tolerance;
    const hints = await diagnose({
      formula: "grad(gpt)",
      config: c.meta.config,
      inputs: c.inputs,
      dtype: "f64",
      output: "wte.weight",
      expected: c.grads["wte.weight"]!,
      actual: grads["wte.weight"]!,
      tolerance: tol,
      cotangents: c.cotangents,
    });
    expect(hints.map((h) => [h.id, h.evidence])).toContainEqual(["tied-gradient", "match"]);
    expect(hints.find((h) => h.id === "tied-gradient")!.message).toContain("output projection");
  });
  test("noise of the size of the error on the logits gets no hint", async () => {
    const c = golden(PRE);
    const y = c.outputs["logits"]!.clone();
    let seed = 11;
    for (let i = 0; i < y.size; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      y.data[i] = y.data[i]! + (seed / 2 ** 31 - 0.5) * 0.1;
    }
    const tol = c.tolerance["out.logits"]!;
    const hints = await diagnose({
      formula: "gpt",
      config: c.meta.config,
      inputs: c.inputs,
      dtype: "f64",
      output: "logits",
      expected: c.outputs["logits"]!,
      actual: y,
      tolerance: tol,
      dims: c.meta.dims,
    });
    expect(hints).toEqual([]);
  });
});

describe("end to end: verify on a gpt-only port", () => {
  test("the unbiased LayerNorm is named in the first divergence", async () => {
    const r = await verify(gptOnly("unbiased", plantUnbiasedVariance), {
      formulas: ["gpt"],
      dtype: "f64",
      gradients: false,
    });
    expect(r.ok).toBe(false);
    expect(r.firstDivergence?.formula).toBe("gpt");
    expect(r.firstDivergence?.hints.map((h) => h.id)).toContain("layernorm-unbiased");
  });
});

describe("the running maximum seeded at −10000 and the unbiased variance, where they are declared", () => {
  test("softmax (a planted bug of properties/): rows below −1e4 give NaN, named by match and pattern", async () => {
    const hints = await outputHints(
      plantedImplementation("softmax_running_max_minus_10000"),
      golden("softmax/f64/below1e4_n4_m8"),
    );
    expect(hints.map((h) => [h.id, h.evidence])).toContainEqual(["max-seed", "match"]);
  });
  test("cross_entropy (a planted bug of properties/): a loss of −∞", async () => {
    const hints = await outputHints(
      plantedImplementation("softmax_running_max_minus_10000"),
      golden("cross_entropy/f64/below1e4_n4_V10"),
    );
    expect(hints.map((h) => h.id)).toContain("max-seed");
  });
  for (const c of [
    "attention/f64/below1e4_n5_dk4_causal",
    "attention/f32/below1e4_n4_m6_dk4_noncausal",
    "log_softmax/f64/below1e4_n4_m8",
    "logsumexp/f32/below1e4_n4_m8",
  ]) {
    test(`${c}: the seeded softmax inside it`, async () => {
      const hints = await outputHints(
        plantedGraphImplementation("seed", plantMaxSeed, [
          "softmax",
          "attention",
          "log_softmax",
          "logsumexp",
        ]),
        golden(c),
      );
      expect(matchIds(hints)).toEqual(["max-seed"]);
    });
  }
  test("layer_norm (a planted bug of properties/): the unbiased variance", async () => {
    for (const c of ["layer_norm/f64/n7_d12", "layer_norm/f32/offset1e4_n3_d8"]) {
      const hints = await outputHints(
        plantedImplementation("layer_norm_unbiased_variance"),
        golden(c),
      );
      expect(matchIds(hints), c).toEqual(["layernorm-unbiased"]);
    }
  });
  test("layer_norm (a planted bug of properties/): ε outside the square root", async () => {
    const hints = await outputHints(
      plantedImplementation("layer_norm_eps_outside_sqrt"),
      golden("layer_norm/f64/offset1e4_spread1e-6_n3_d8"),
    );
    expect(matchIds(hints)).toEqual(["eps-outside-sqrt"]);
  });
  test(
    "verify: the seeded softmax fails softmax and attention with the " +
      "max-seed hint; the unbiased LayerNorm with its own",
    async () => {
      const r = await verify(
        plantedGraphImplementation("seed", plantMaxSeed, ["softmax", "attention"]),
        { formulas: ["softmax", "attention"], dtype: "f64", gradients: false },
      );
      const failing = r.results.filter((x) => x.status === "fail");
      expect(failing.map((x) => x.case).sort()).toEqual(
        expect.arrayContaining([
          "attention/f64/below1e4_n5_dk4_causal",
          "softmax/f64/below1e4_n4_m8",
        ]),
      );
      // localisation (and so its hints) runs for the first two failing cases of a formula and dtype
      const localised = failing.filter((x) => x.localisation !== undefined);
      expect(localised.length).toBeGreaterThanOrEqual(3);
      for (const f of localised)
        expect(
          f.localisation!.divergence!.hints.map((h) => h.id),
          f.case,
        ).toContain("max-seed");
      expect(r.firstDivergence?.hints.map((h) => h.id)).toContain("max-seed");
      const ln = await verify(plantedImplementation("layer_norm_unbiased_variance"), {
        formulas: ["layer_norm"],
        dtype: "f64",
        gradients: false,
      });
      expect(ln.firstDivergence?.hints.map((h) => h.id)).toContain("layernorm-unbiased");
    },
  );
});
