/**
 * Values of the registry's own formulas that laws and diagnoses need as facts — which keys a
 * query sees — evaluated from the declarations (autodiff interpreting spec/), never restated.
 */
import "../spec/index.js";
import type { Config } from "../spec/node.js";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { rewriteGraph } from "../reference/rewritten.js";
import { maskShift } from "./mistakes.js";
import { hyperKeys } from "../spec/configs.js";

/** Which keys each query sees: `visible(i, j)`, and the last key query i sees (−1: none). */
export interface Visibility {
  readonly n: number;
  readonly m: number;
  visible(i: number, j: number): boolean;
  lastVisible(i: number): number;
}

const cache = new Map<string, Visibility>();

/**
 * The registry's `causal_mask` for n queries and m keys, evaluated: `config` may carry its
 * alignment and window (other keys are ignored); `shift` moves the boundary by that many keys
 * (properties/mistakes.ts: the mask off by one).
 */
export function causalVisibility(n: number, m: number, config: Config = {}, shift = 0): Visibility {
  const cfg: Record<string, Config[string]> = { n, m };
  // the mask's own switches (alignment, window), taken from its declaration; the sizes are n, m
  for (const k of hyperKeys("causal_mask")) {
    if (k !== "n" && k !== "m" && config[k] !== undefined) cfg[k] = config[k]!;
  }
  const key = `${JSON.stringify(cfg)}|${shift}`;
  let v = cache.get(key);
  if (v !== undefined) return v;
  const g = formulaGraph("causal_mask", cfg);
  const shifted = shift === 0 ? g : rewriteGraph(g, maskShift(shift));
  const y = evaluate(shifted, {}, { dtype: "f64" })["y"]!;
  const last = Array.from({ length: n }, (_, i) => {
    for (let j = m - 1; j >= 0; j--) if (y.data[i * m + j] === 0) return j;
    return -1;
  });
  v = { n, m, visible: (i, j) => y.data[i * m + j] === 0, lastVisible: (i) => last[i]! };
  if (cache.size > 256) cache.clear();
  cache.set(key, v);
  return v;
}
