/**
 * Memory that grows with the vocabulary: GPT-2's V = 50,257, so one intermediate of V² entries is
 * 20 GB in float64 and a whole-model check of a GPT-2-sized port dies before it starts. For every
 * formula whose arguments or outputs carry the vocabulary dim V, the largest value its plan holds
 * (forward, and forward with backward) must grow linearly in V: doubling V at most doubles it. The
 * check reads the planned shapes, so a regression fails here without allocating anything.
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { dimToString } from "../spec/dims.js";
import { add, eq, iota, mul, sumAll } from "../spec/expr.js";
import { exampleConfig, exampleShapes, formulaNames, getFormula } from "../spec/formula.js";
import { plan } from "./evaluate.js";
import { formulaGraph, type Graph } from "./graph.js";
import { gradGraph } from "./grad.js";

type Shapes = Record<string, readonly number[]>;

/** Formulas with an argument or output shaped by the vocabulary dim V, from their declarations. */
function vocabularyFormulas(): string[] {
  return formulaNames().filter((name) => {
    const cfg = exampleConfig(name);
    const def = getFormula(name);
    return [...def.args(cfg), ...def.outputs(cfg)].some((a) => a.shape.includes("V"));
  });
}

function planOf(g: Graph, shapes: Shapes) {
  const inputs: Record<string, { shape: readonly number[]; dtype: string }> = {};
  for (const [k, e] of Object.entries(g.args))
    if (shapes[k] !== undefined)
      inputs[k] = { shape: shapes[k]!, dtype: e.node.dtype === "int" ? "i32" : "f64" };
  return plan(g, inputs);
}

/** The element count of the largest value the plan of `g` holds for these argument shapes. */
function largestValue(g: Graph, shapes: Shapes): number {
  return Math.max(...planOf(g, shapes).steps.map((s) => s.size));
}

/** Forward and gradient graphs of `name` at vocabulary size V, with their arguments' shapes. */
function atVocabulary(name: string, V: number) {
  // a formula that takes V as a hyperparameter (gpt) gets it there, the others through the shapes
  const cfg = exampleConfig(name, getFormula(name).hyper.some((h) => h.name === "V") ? { V } : {});
  const shapes: Shapes = exampleShapes(name, cfg, { V });
  const g = formulaGraph(name, cfg);
  const gg = gradGraph(g);
  // each cotangent is shaped like its output
  const p = planOf(g, shapes);
  for (const o of Object.keys(g.outputs))
    if (`cot.${o}` in gg.args) shapes[`cot.${o}`] = p.steps[p.outputIndex[o]!]!.shape;
  return { g, gg, shapes };
}

/** Largest planned value at V and at 2V, forward and with backward. */
function growth(name: string, wrap: (g: Graph) => Graph = (g) => g) {
  const [a, b] = [97, 194].map((V) => atVocabulary(name, V));
  return {
    forward: [largestValue(wrap(a!.g), a!.shapes), largestValue(wrap(b!.g), b!.shapes)],
    backward: [largestValue(a!.gg, a!.shapes), largestValue(b!.gg, b!.shapes)],
  };
}

describe("memory linear in the vocabulary", () => {
  const names = vocabularyFormulas();

  test("the formulas carrying V are found from their declarations", () => {
    expect(names).toContain("cross_entropy");
    expect(names).toContain("gpt");
  });

  test.each(names)("%s: the largest planned value at most doubles when V doubles", (name) => {
    const { forward, backward } = growth(name);
    expect(forward[1]!, `${name} forward: ${forward.join(" → ")}`).toBeLessThanOrEqual(
      2 * forward[0]!,
    );
    expect(backward[1]!, `${name} backward: ${backward.join(" → ")}`).toBeLessThanOrEqual(
      2 * backward[0]!,
    );
  });

  test("a V × V intermediate (the identity the one-hot targets were once read from) is caught", () => {
    // cross_entropy's loss plus 0·Σ I_V: the same value, with a V² value in the plan
    const withIdentity = (g: Graph): Graph => {
      const logits = g.args["logits"]!;
      const V = dimToString(logits.shape[logits.shape.length - 1]!);
      const eye = eq(iota([V, V] as const, 0), iota([V, V] as const, 1));
      return {
        ...g,
        outputs: { ...g.outputs, loss: add(g.outputs["loss"]!, mul(0, sumAll(eye))) },
      };
    };
    const { forward } = growth("cross_entropy", withIdentity);
    expect(forward[1]).toBeGreaterThan(2 * forward[0]!);
    expect(forward[1]).toBe(194 * 194);
  });
});
