/**
 * rewriteCalls and its helpers: untouched graphs stay the same objects, nested calls are reached,
 * shapes are re-checked.
 */
import { describe, expect, test } from "vitest";
import "./index.js";
import { constant, Expr, mul, sub, sumLast, unary } from "./expr.js";
import { buildFormula, exampleConfig, FormulaError } from "./formula.js";
import { topoSort, type Node } from "./node.js";
import { callArgs, firstOf, mapBody, onFormula, reapply } from "./rewrite.js";
import { rewriteCalls, rewriteOutputs } from "./rewrite.js";
import type { CallNode } from "./rewrite.js";
import { ShapeError } from "./shape.js";

const gpt = buildFormula("gpt", exampleConfig("gpt", { L: 2 }));
const roots = Object.values(gpt.outputs).map((e) => e.node);
const calls = (rs: readonly Node[], formula: string): CallNode[] =>
  topoSort(rs).filter((n): n is CallNode => n.op === "call" && n.formula === formula);

describe("rewriteCalls", () => {
  test("a rewrite that answers nothing returns every root itself", () => {
    const seen: string[] = [];
    const out = rewriteCalls(roots, (call) => {
      seen.push(call.formula);
      return undefined;
    });
    out.forEach((r, i) => expect(r).toBe(roots[i]));
    // it was asked about every call, nested ones included
    expect(seen.filter((f) => f === "causal_mask").length).toBe(2);
    expect(new Set(seen)).toContain("gpt");
  });

  test("reaches a formula nested inside gpt, with its path through the call tree", () => {
    const paths: string[] = [];
    const out = rewriteCalls(roots, (call, site) => {
      if (call.formula !== "causal_mask") return undefined;
      paths.push(site.path.join(" › "));
      expect(site.original.formula).toBe("causal_mask");
      return mul(new Expr(call), constant(0));
    });
    expect(paths).toEqual(Array(2).fill("gpt › block › mha › attention › causal_mask"));
    expect(calls(roots, "causal_mask").length).toBe(2);
    // the masks are gone from the new graph; every caller up to gpt is rebuilt, the original kept
    for (const f of ["attention", "mha", "block", "gpt"]) {
      const before = calls(roots, f);
      const after = calls(out, f);
      expect(after.length, f).toBe(before.length);
      for (const c of after) expect(before.includes(c), f).toBe(false);
    }
    expect(calls(out, "causal_mask").length).toBe(2);
    for (const m of calls(out, "causal_mask")) {
      // each remaining mask call is the operand of the planted product, not of attention's scores
      const users = topoSort(out).filter((n) => n.op === "binary" && n.fn === "mul" && n.a === m);
      expect(users.length).toBe(1);
    }
    // parts the rewrite did not touch are shared with the original graph
    const embedding = calls(out, "embedding");
    expect(embedding.length).toBe(1);
    expect(calls(roots, "embedding")[0]).toBe(embedding[0]);
  });

  test("re-checks the shape and dtype of a replacement", () => {
    const softmax = buildFormula("softmax", {});
    // Σ over the last axis, kept as size 1: the wrong shape for a softmax
    const y = softmax.outputs["y"]!.node;
    const wrong = () => rewriteCalls([y], (call) => sumLast(new Expr(call)));
    expect(wrong).toThrow(ShapeError);
    expect(wrong).toThrow(
      "rewrite of softmax (output y): the replacement is float [..., 1] but the call is float [..., m]",
    );
  });

  test("rewriteOutputs keeps untouched outputs and replaces the others", () => {
    const doubled = onFormula("cross_entropy", (call) => mul(new Expr(call), constant(2)));
    const outs = rewriteOutputs(gpt.outputs, doubled);
    expect(outs["logits"]).toBe(gpt.outputs["logits"]);
    expect(outs["loss"]).not.toBe(gpt.outputs["loss"]);
    // the output is still the gpt call, rebuilt around the doubled cross_entropy
    const loss = outs["loss"]!.node as CallNode;
    expect([loss.op, loss.formula, loss.body.op]).toEqual(["call", "gpt", "binary"]);
  });

  test("firstOf: the first rewrite that answers wins", () => {
    const a = onFormula("softmax", (call) => mul(new Expr(call), constant(2)));
    const b = onFormula("softmax", (call) => sub(new Expr(call), constant(1)));
    const [y] = rewriteCalls([buildFormula("softmax", {}).outputs["y"]!.node], firstOf(a, b));
    expect(y!.op === "binary" && y!.fn).toBe("mul");
  });

  test("onFormula refuses a formula name the registry does not have", () => {
    expect(() => onFormula("sofmax", () => undefined)).toThrow(FormulaError);
  });
});

describe("reapply and mapBody", () => {
  test("reapply: the formula with another hyperparameter, or another on its arguments", () => {
    const block = buildFormula("block", exampleConfig("block", { placement: "post" }));
    const pre = onFormula("block", (call) => reapply(call, { config: { placement: "pre" } }));
    const [out] = rewriteCalls([block.outputs["y"]!.node], pre);
    expect(out!.op === "call" && out!.config["placement"]).toBe("pre");
    const ffn = buildFormula("ffn", exampleConfig("ffn", { activation: "gelu" }));
    const tanh = onFormula("gelu", (call) => reapply(call, { formula: "gelu_tanh" }));
    const [g] = rewriteCalls([ffn.outputs["y"]!.node], tanh);
    expect(calls([g!], "gelu").length).toBe(0);
    expect(calls([g!], "gelu_tanh").length).toBe(1);
    const before = calls([ffn.outputs["y"]!.node], "gelu")[0]!;
    expect(callArgs(calls([g!], "gelu_tanh")[0]!)["x"]!.node).toBe(before.args["x"]);
  });

  test("mapBody changes the body's own operations and leaves its arguments alone", () => {
    const table = buildFormula("positional_sinusoidal", { n: 4, d_model: 6 });
    const fns = (rs: readonly Node[]) =>
      topoSort(rs).flatMap((n) => (n.op === "unary" ? [n.fn] : []));
    const [swapped] = rewriteCalls(
      [table.outputs["y"]!.node],
      onFormula("positional_sinusoidal", (call) =>
        mapBody(call, (n) => {
          if (n.op !== "unary" || (n.fn !== "sin" && n.fn !== "cos")) return undefined;
          return unary(n.fn === "sin" ? "cos" : "sin", new Expr(n.x));
        }),
      ),
    );
    expect(swapped!.op).toBe("where");
    const w = swapped as Extract<Node, { op: "where" }>;
    const orig = table.outputs["y"]!.node as CallNode;
    const ow = orig.body as Extract<Node, { op: "where" }>;
    const branches = (n: Extract<Node, { op: "where" }>) =>
      [n.a, n.b].map((x) => x.op === "unary" && x.fn);
    expect(branches(ow)).toEqual(["sin", "cos"]);
    expect(branches(w)).toEqual(["cos", "sin"]);
    expect(fns([swapped!]).sort()).toEqual(fns([orig]).sort());
    // the arguments of a formula with arguments are the very same nodes
    const ln = buildFormula("layer_norm", {});
    const y = ln.outputs["y"]!.node as CallNode;
    const same = mapBody(y, () => undefined);
    expect(same.node).toBe(y.body);
  });
});
