/**
 * Planted wrong VJP rules: gradcheck must catch each, and bisect must name the node whose rule
 * was broken (its op and formula), not just say "the gradient is wrong".
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { exampleConfig } from "../spec/formula.js";
import { Expr, mul, neg, matmul, transpose, reduce, make } from "../spec/expr.js";
import type { Node } from "../spec/node.js";
import { formulaGraph } from "./graph.js";
import { gradcheckGraph } from "./gradcheck.js";
import { withVjpOverride, type VjpOverride } from "./vjp.js";
import { sampleInputs } from "./random.js";

const E = (n: Node) => new Expr(n);

interface Plant {
  kind: string;
  formula: string;
  config?: Record<string, number | string | boolean>;
  /** Which node to break: its op description and formula scope. */
  target: { op: string; scope: string };
  rule: VjpOverride;
}

const PLANTS: Plant[] = [
  {
    kind: "a dropped term (product rule loses b̄)",
    formula: "swiglu",
    target: { op: "binary mul", scope: "swiglu" },
    rule: (n, g) =>
      n.op === "binary" && n.fn === "mul" && n.scope === "swiglu"
        ? [mul(g, E(n.b)), undefined]
        : undefined,
  },
  {
    kind: "a wrong sign (subtraction's b̄ = +ȳ)",
    formula: "rms_norm",
    target: { op: "binary mul", scope: "rms_norm" },
    // d(γ ⊙ (x·r)) with the sign of γ's partial flipped
    rule: (n, g) =>
      n.op === "binary" && n.fn === "mul" && n.scope === "rms_norm" && n.a.op === "input"
        ? [neg(mul(g, E(n.b))), mul(g, E(n.a))]
        : undefined,
  },
  {
    kind: "a transposed operand (ā = ȳ b instead of ȳ bᵀ)",
    formula: "linear",
    config: {},
    target: { op: "matmul", scope: "linear" },
    rule: (n, g) =>
      n.op === "matmul" && n.scope === "linear"
        ? [mul(matmul(g, E(n.b)) as Expr, 1), matmul(transpose(E(n.a)), g)]
        : undefined,
  },
  {
    kind: "a wrong reduction axis (sum's ȳ broadcast along the kept axis)",
    formula: "layer_norm",
    config: {},
    target: { op: "reduce sum", scope: "layer_norm" },
    rule: (n, g) => {
      if (!(n.op === "reduce" && n.fn === "sum" && n.scope === "layer_norm" && n.keepdims))
        return undefined;
      // ȳ has shape [..., 1]; summing it over the rows first spreads each row's cotangent to all rows
      const wrong = reduce("sum", g, [0], true);
      return [make({ op: "broadcast", x: wrong.node, target: n.x.shape })];
    },
  },
  {
    kind: "a missing broadcast sum (b̄ of x + b left at x's shape)",
    formula: "linear",
    target: { op: "binary add", scope: "linear" },
    rule: (n, g) =>
      n.op === "binary" && n.fn === "add" && n.scope === "linear" ? [g, g] : undefined,
  },
];

describe("planted VJP bugs are caught and located", () => {
  for (const p of PLANTS) {
    test(p.kind, async () => {
      const cfg = exampleConfig(p.formula, p.config ?? {});
      const x = sampleInputs(p.formula, cfg, { seed: 3, batch: [2] });
      // layer_norm has a custom VJP: differentiate its composition (the rule under test) instead
      const r = await withVjpOverride(p.rule, () => {
        const g = formulaGraph(p.formula, cfg);
        const inner =
          p.formula === "layer_norm"
            ? {
                ...g,
                outputs: {
                  y: new Expr((g.outputs["y"]!.node as Extract<Node, { op: "call" }>).body),
                },
              }
            : g;
        return gradcheckGraph(inner, x, { mode: "bisect" });
      });
      expect(r.ok).toBe(false);
      expect(r.failures.length > 0 || r.error !== undefined).toBe(true);
      expect(r.bisect, "bisect found nothing").toBeTruthy();
      expect(r.bisect!.node).toContain(p.target.op);
      expect(r.bisect!.formula).toBe(p.target.scope);
    });
  }
  test("the same checks pass without the plants", async () => {
    for (const p of PLANTS) {
      const cfg = exampleConfig(p.formula, p.config ?? {});
      const g = formulaGraph(p.formula, cfg);
      const r = await gradcheckGraph(g, sampleInputs(p.formula, cfg, { seed: 3, batch: [2] }), {
        mode: "bisect",
      });
      expect(r.ok, `${p.formula}: ${JSON.stringify(r.bisect ?? r.failures[0])}`).toBe(true);
      expect(r.bisect).toBeNull();
    }
  });
  test("float32 gradient checks still catch a dropped term", async () => {
    const cfg = exampleConfig("swiglu");
    const x = sampleInputs("swiglu", cfg, { seed: 3 });
    const bad = await withVjpOverride(PLANTS[0]!.rule, () =>
      gradcheckGraph(formulaGraph("swiglu", cfg), x, { mode: "full", dtype: "f32" }),
    );
    expect(bad.ok).toBe(false);
    const good = await gradcheckGraph(formulaGraph("swiglu", cfg), x, {
      mode: "full",
      dtype: "f32",
    });
    expect(good.ok, JSON.stringify(good.failures[0])).toBe(true);
  });
  test("a wrong rule deep inside gpt is named by bisect", async () => {
    const cfg = exampleConfig("gpt", { activation: "swiglu", placement: "pre" });
    const x = sampleInputs("gpt", cfg, { seed: 2 });
    const r = await withVjpOverride(PLANTS[0]!.rule, () =>
      gradcheckGraph(formulaGraph("gpt", cfg), x, { mode: "bisect" }),
    );
    expect(r.ok).toBe(false);
    expect(r.bisect!.node).toMatch(/binary mul/);
    expect(r.bisect!.formula).toBe("swiglu");
  });
});
