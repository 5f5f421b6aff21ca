/**
 * The reference as an Implementation: every registry formula evaluated and differentiated by
 * the autodiff engine interpreting the spec, plus `gpt_generate` (greedy decoding).
 * Float inputs decide the precision: f32 inputs run the float32 mode.
 */
import "../spec/index.js";
import { formulaNames, getFormula, resolveConfig } from "../spec/formula.js";
import type { Config } from "../spec/node.js";
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type { BackwardRequest, BackwardResult, ForwardRequest, ForwardResult, Implementation } from "../autodiff/implementation.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { generateGreedyCase } from "./generate.js";

const graphs = new Map<string, Graph>();

/** The graph of a formula for a configuration (cached by formula and configuration). */
export function referenceGraph(formula: string, config: Config): Graph {
  const key = `${formula}|${JSON.stringify(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
  let g = graphs.get(key);
  if (g === undefined) {
    g = formulaGraph(formula, config);
    if (graphs.size > 256) graphs.clear();
    graphs.set(key, g);
  }
  return g;
}

/**
 * Precision of a request: `config.dtype` when given (formulas without float inputs, such as
 * causal_mask, need it), else float32 when any float input is float32.
 */
export function dtypeOf(inputs: NamedTensors, config: Config): FloatDType {
  const d = config["dtype"];
  if (d === "f32" || d === "f64") return d;
  for (const t of Object.values(inputs)) if (t.dtype === "f32") return "f32";
  return "f64";
}

/** Keys a request's configuration may carry besides the formula's hyperparameters. */
const REQUEST_KEYS = new Set(["dtype"]);
/** Hyperparameters a fixed-placement block implies; a request may state them if it states them right. */
const IMPLIED: Readonly<Record<string, Config>> = {
  block_post_ln: { placement: "post", norm: "layer_norm", parallel: false },
  block_pre_ln: { placement: "pre", norm: "layer_norm", parallel: false },
};

/**
 * The formula's hyperparameters from a request's configuration. An unknown key is an error, not
 * silently ignored: a misspelt `causl` must not run the default.
 */
export function knownConfig(formula: string, config: Config): Config {
  const def = getFormula(formula);
  const names = new Set(def.hyper.map((h) => h.name));
  const out: Record<string, Config[string]> = {};
  for (const [k, v] of Object.entries(config)) {
    if (names.has(k)) out[k] = v;
    else if (REQUEST_KEYS.has(k)) continue;
    else if (IMPLIED[formula]?.[k] === v) continue;
    else resolveConfig(def, { [k]: v }); // throws: formula F has no hyperparameter "k"; it takes …
  }
  resolveConfig(def, out);
  return out;
}

/** Options of {@link referenceImplementation}. */
export interface ReferenceOptions {
  /** Use fused kernels (default true). */
  readonly fused?: boolean;
}

/**
 * The reference as an {@link Implementation}: every registry formula (plus `gpt_generate`, greedy decoding) evaluated
 * and differentiated by the engine, in f64, or in f32 when a float input is f32 or `config.dtype` says so. A request
 * whose configuration has a key the formula does not take is rejected with a FormulaError.
 */
export function referenceImplementation(opts: ReferenceOptions = {}): Implementation {
  const formulas = [...formulaNames(), "gpt_generate"];
  return {
    name: "specformer reference",
    formulas,
    backward: formulaNames(),
    dtypes: ["f64", "f32"],
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      if (req.formula === "gpt_generate") return { outputs: generateGreedyCase(req.inputs, req.config) };
      const g = referenceGraph(req.formula, knownConfig(req.formula, req.config));
      return { outputs: evaluate(g, req.inputs, { dtype: dtypeOf(req.inputs, req.config), fused: opts.fused ?? true }) };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      const g = referenceGraph(req.formula, knownConfig(req.formula, req.config));
      return { grads: vjp(g, req.inputs, req.cotangents, { dtype: dtypeOf(req.inputs, req.config), fused: opts.fused ?? true }).grads };
    },
  };
}
