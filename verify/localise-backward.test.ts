/**
 * Backward localisation on implementations whose forward pass is right and whose backward pass
 * carries one planted mistake (verify/planted-backward.testing.ts), on committed golden cases: from a
 * composite case whose gradients fail, the walk must end at the planted formula, name the
 * argument whose gradient is wrong, and say its error against its tolerance.
 */
import { describe, expect, test } from "vitest";
import type { Implementation } from "../autodiff/implementation.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { compareCase } from "../golden/compare.js";
import { vjp } from "../autodiff/grad.js";
import { referenceGraph, referenceImplementation } from "../reference/implementation.js";
import { localiseBackward } from "./localise-backward.js";
import { golden } from "./cases.testing.js";
import { failingCase } from "./localise.js";
import type { Localisation } from "./localise.js";
import {
  backwardPlantedImplementation,
  plantAttentionScaleBackward,
  plantFfnActivationBackward,
  plantLayerNormStatsConstant,
} from "./planted-backward.testing.js";
import type { Plant } from "./planted.testing.js";
import { knownConfig, ReferenceTrace } from "./trace.js";

async function localiseGrads(impl: Implementation, c: GoldenCase): Promise<Localisation> {
  const m = c.meta;
  const config = { ...m.config, dtype: m.dtype };
  const outputs = (await impl.forward({ formula: m.formula, config, inputs: c.inputs })).outputs;
  const grads = (
    await impl.backwardPass!({
      formula: m.formula,
      config,
      inputs: c.inputs,
      cotangents: c.cotangents,
    })
  ).grads;
  const report = compareCase(c, {
    outputs: Object.fromEntries(Object.entries(outputs).filter(([k]) => k in c.outputs)),
    grads,
  });
  // the planted mistake is in the backward pass only: outputs match, some gradient does not
  expect(report.tensors.filter((t) => t.name.startsWith("out.")).every((t) => t.ok)).toBe(true);
  expect(report.ok).toBe(false);
  return localiseBackward({
    ...failingCase(c, report),
    backward: (req) => impl.backwardPass!(req),
    declaresBackward: (f, d) => impl.formulas.includes(f) && impl.dtypes.includes(d),
    cotangents: c.cotangents,
    actualGrads: grads,
    expectedGrads: c.grads,
  });
}

const cases: Array<{
  bug: string;
  plant: Plant;
  formula: string;
  where: Record<string, readonly string[]>;
}> = [
  {
    bug: "attention's backward drops the score scale",
    plant: plantAttentionScaleBackward,
    formula: "attention",
    where: {
      "mha/f64/n7_d12_h3_causal": ["mha", "attention"],
      "mha/f32/b2_n5_d8_h2_causal": ["mha", "attention"],
      "block_pre_ln/f64/n7_d12_h3": ["block_pre_ln", "mha", "attention"],
      "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8": ["gpt", "h.1", "mha", "attention"],
      "gpt/f32/gpt2_pre_ln_V64_d16_h4_L2_n8": ["gpt", "h.1", "mha", "attention"],
    },
  },
  {
    bug: "layer_norm's backward treats the row mean and variance as constants",
    plant: plantLayerNormStatsConstant,
    formula: "layer_norm",
    where: {
      "block_pre_ln/f64/n7_d12_h3": ["block_pre_ln", "layer_norm[ln_2]"],
      "block_pre_ln/f32/n7_d12_h3": ["block_pre_ln", "layer_norm[ln_2]"],
      "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8": ["gpt", "ln_f"],
    },
  },
  {
    bug: "ffn's backward skips the activation's derivative",
    plant: plantFfnActivationBackward,
    formula: "ffn",
    where: {
      "block_post_ln/f64/n7_d12_h3": ["block_post_ln", "ffn"],
      "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8": ["gpt", "h.1", "ffn"],
      "gpt/f32/gpt2_pre_ln_V64_d16_h4_L2_n8": ["gpt", "h.1", "ffn"],
    },
  },
];

describe("a backward-only mistake is localised from composite cases", () => {
  for (const { bug, plant, formula, where } of cases) {
    const impl = backwardPlantedImplementation(bug, plant);
    for (const [name, path] of Object.entries(where)) {
      test(`${bug}: ${name}`, async () => {
        const loc = await localiseGrads(impl, golden(name));
        const d = loc.divergence!;
        expect(d.kind).toBe("backward");
        expect(d.formula).toBe(formula);
        expect(d.how).toBe("isolated");
        expect(d.path).toEqual(path);
        expect(d.input).toBeDefined();
        expect(d.tensor).toBe(`${path.slice(1).join("/")}:grad.${d.input}`);
        // the error is stated against a derived tolerance, and exceeds it
        expect(d.report!.ok).toBe(false);
        expect(d.report!.budgetUsed).toBeGreaterThan(1);
        expect(d.report!.tolerance.reason).toMatch(/float(32|64) rule/);
        // its own parts' backward passes were checked and match (the error is local to it)
        const inside = loc.steps.filter((s) => s.tensor.startsWith(`${path.slice(1).join("/")}/`));
        if (formula !== "layer_norm") expect(inside.length).toBeGreaterThan(0);
        expect(inside.every((s) => s.status === "match")).toBe(true);
        expect(loc.fault).toBeUndefined();
      });
    }
  }
});

describe("no false alarm", () => {
  test("the reference's own backward passes match in isolation on every application of a gpt case", async () => {
    const ref = referenceImplementation();
    for (const name of [
      "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8",
      "gpt/f32/seed_post_ln_V50_d16_h2_L2_n8",
    ]) {
      const c = golden(name);
      const m = c.meta;
      // the reference's gradients stand in for a failing case's: the walk compares every part
      const grads = (
        await ref.backwardPass!({
          formula: m.formula,
          config: { ...m.config, dtype: m.dtype },
          inputs: c.inputs,
          cotangents: c.cotangents,
        })
      ).grads;
      const loc = await localiseBackward({
        backward: (req) => ref.backwardPass!(req),
        declaresBackward: () => true,
        formula: m.formula,
        config: m.config,
        inputs: c.inputs,
        cotangents: c.cotangents,
        dtype: m.dtype,
        reports: {},
        actualGrads: grads,
        expectedGrads: c.grads,
      });
      expect(loc.steps.length).toBeGreaterThan(10);
      expect(
        loc.steps
          .filter((s) => s.status !== "match")
          .map((s) => `${s.tensor} ${s.status} ${s.report?.budgetUsed}`),
      ).toEqual([]);
      expect(loc.divergence!.how).toBe("output");
    }
  });
  test("a part the implementation declares no backward pass of is named, not checked", async () => {
    const impl = backwardPlantedImplementation("attention scale", plantAttentionScaleBackward, {
      formulas: ["mha", "linear", "split_heads", "merge_heads"],
    });
    const loc = await localiseGrads(impl, golden("mha/f64/n7_d12_h3_causal"));
    expect(loc.steps.find((s) => s.formula === "attention")?.status).toBe("not declared");
    expect(loc.divergence!.formula).toBe("mha");
    expect(loc.divergence!.explanation).toMatch(/not checked: attention \(not declared\)/);
  });
});

describe("the reference's cotangents of intermediates", () => {
  test(
    "chain through separate graphs: ȳ of logits is cross_entropy's VJP " +
      "(plus the logits' own cotangent), ȳ of ln_f is logits' VJP",
    () => {
      const c = golden("gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8");
      const trace = ReferenceTrace.build("gpt", c.meta.config, c.inputs, "f64");
      const site = (name: string) => trace.root.children.find((s) => s.name === name)!;
      const [ce, logits, lnf] = [site("cross_entropy"), site("logits"), site("ln_f")];
      // the root's own outputs get the case's cotangents
      const rootCot = trace.siteCotangents(trace.root, c.cotangents);
      for (const [k, t] of Object.entries(c.cotangents))
        expect(Array.from(rootCot[k]!.data)).toEqual(Array.from(t.data));
      // logits feed the loss and are an output themselves: both contributions add up
      const viaLoss = vjp(
        referenceGraph("cross_entropy", knownConfig("cross_entropy", ce.config)),
        trace.argValues(ce),
        { loss: c.cotangents["loss"]! },
      ).grads["logits"]!;
      const own = c.cotangents["logits"];
      const want = Array.from(viaLoss.data, (x, i) => x + (own?.data[i] ?? 0));
      const got = trace.siteCotangents(logits, c.cotangents)["y"]!;
      got.data.forEach((x, i) =>
        expect(Math.abs(x - want[i]!)).toBeLessThanOrEqual(1e-15 * Math.max(1, Math.abs(want[i]!))),
      );
      const wantLnf = vjp(
        referenceGraph("logits", knownConfig("logits", logits.config)),
        trace.argValues(logits),
        { y: got },
      ).grads["x"]!;
      const gotLnf = trace.siteCotangents(lnf, c.cotangents)["y"]!;
      gotLnf.data.forEach((x, i) =>
        expect(Math.abs(x - wantLnf.data[i]!)).toBeLessThanOrEqual(
          1e-13 * Math.max(1, Math.abs(wantLnf.data[i]!)),
        ),
      );
    },
  );
  test(
    "a cotangent for an output the formula does not have is reported with " +
      "the outputs it has, not thrown",
    async () => {
      const c = golden("mha/f64/n7_d12_h3_causal");
      const impl = backwardPlantedImplementation("attention scale", plantAttentionScaleBackward);
      const loc = await localiseBackward({
        backward: (req) => impl.backwardPass!(req),
        declaresBackward: () => true,
        formula: "mha",
        config: c.meta.config,
        inputs: c.inputs,
        cotangents: { nope: c.cotangents["y"]! },
        dtype: "f64",
        reports: {},
        actualGrads: {},
        expectedGrads: c.grads,
      });
      expect(loc.requests).toBe(0);
      expect(loc.divergence!.how).toBe("output");
      expect(loc.divergence!.explanation).toContain(
        `mha has no output "nope" to take a cotangent for; outputs: y`,
      );
    },
  );
});
