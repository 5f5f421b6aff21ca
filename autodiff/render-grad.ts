/**
 * Rendering gradient formulas: the graph `gradGraph` builds is printed with the forward outputs
 * named as in the formula (y), cotangents as ȳ and gradients as x̄, so the softmax backward reads
 * x̄ = y ⊙ (ȳ − Σ_j ȳ ⊙ y).
 */
import { Renderer, type Format } from "../spec/render.js";
import { latexName } from "../spec/formula.js";
import type { Config } from "../spec/node.js";
import { formulaGraph } from "./graph.js";
import { gradGraph } from "./grad.js";

/** Equations of the backward pass of a formula (every differentiable argument). */
export function renderGradient(
  formula: string,
  config: Config,
  fmt: Format,
  wrt?: readonly string[],
): string[] {
  const g = formulaGraph(formula, config);
  const gg = gradGraph(g, wrt ? { wrt } : {});
  const r = new Renderer(fmt);
  for (const [name, e] of Object.entries(g.outputs)) r.name(e.node, latexName(name), name);
  for (const [name, e] of Object.entries(gg.args)) {
    if (!name.startsWith("cot.")) continue;
    const o = name.slice(4);
    r.name(e.node, `\\bar{${latexName(o)}}`, `${o}̄`);
  }
  const lines: [string, string][] = [];
  for (const [name, e] of Object.entries(gg.outputs)) {
    const arg = name.slice("grad.".length);
    lines.push([fmt === "latex" ? `\\bar{${latexName(arg)}}` : `${arg}̄`, r.render(e.node)]);
  }
  return [
    ...r.equations.map((q) => `${q.lhs} = ${q.rhs}`),
    ...lines.map(([l, rhs]) => `${l} = ${rhs}`),
  ];
}
