/**
 * The reference as an Implementation: every registry formula evaluated and differentiated by
 * the autodiff engine interpreting the spec, plus `gpt_generate` (greedy decoding).
 * Float inputs decide the precision: f32 inputs run the float32 mode.
 */
import "../spec/index.js";
import {
  formulaNames,
  getFormula,
  hyperDims,
  resolveConfig,
  sizeFreeConfig,
} from "../spec/formula.js";
import type { Config } from "../spec/node.js";
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type {
  BackwardRequest,
  BackwardResult,
  ForwardRequest,
  ForwardResult,
  Implementation,
} from "../autodiff/implementation.js";
import { requestDType } from "../autodiff/implementation.js";
import { generateGreedyCase } from "./generate.js";

const sizeFree = new Map<string, Graph>();
const graphs = new Map<string, Graph>();
/** Bound on the size-free graphs (`npm start` draws ~1,100 structural configurations). */
const MAX_SIZE_FREE = 2048;
/** Bound on the graphs by full configuration (each holds its plans and gradient graphs). */
const MAX_CACHED = 256;

const configKey = (config: Config): string =>
  JSON.stringify(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : 1)));

/**
 * The graph of a formula for a configuration. Its nodes are built once per size-free
 * configuration (spec/formula.ts `sizeFreeConfig`: sizes such as `n` or `V` left as dims) and
 * shared by every size, which the returned graph binds through its `hyper` dims; so a law that
 * draws new sizes plans a cached graph instead of building one. Cached by configuration too, so a
 * repeated request gets the same Graph object (and so the gradient graphs and plans cached on it).
 */
export function referenceGraph(formula: string, config: Config): Graph {
  const key = `${formula}|${configKey(config)}`;
  let g = graphs.get(key);
  if (g !== undefined) return g;
  const def = getFormula(formula);
  const resolved = resolveConfig(def, config);
  const freeKey = `${formula}|${configKey(sizeFreeConfig(def, resolved))}`;
  let base = sizeFree.get(freeKey);
  if (base === undefined) {
    base = formulaGraph(formula, sizeFreeConfig(def, resolved));
    if (sizeFree.size >= MAX_SIZE_FREE) sizeFree.clear();
    sizeFree.set(freeKey, base);
  }
  g = { ...base, config: resolved, hyper: hyperDims(def, resolved) };
  if (graphs.size >= MAX_CACHED) graphs.clear();
  graphs.set(key, g);
  return g;
}

/** Keys a request's configuration may carry besides the formula's hyperparameters. */
const REQUEST_KEYS = new Set(["dtype"]);

/**
 * The formula's resolved hyperparameters (defaults filled) from a request's configuration: request
 * keys such as `dtype` are dropped, and so is a hyperparameter the formula implies (its declared
 * `implied`: block_pre_ln's placement pre) stated at its implied value. Any other key the formula
 * does not declare is an error naming the closest known key, not silently ignored: a misspelt
 * `causl` must not run the default.
 */
export function knownConfig(formula: string, config: Config): Config {
  const def = getFormula(formula);
  const out: Record<string, Config[string]> = {};
  for (const [k, v] of Object.entries(config)) {
    if (REQUEST_KEYS.has(k) || def.implied?.[k] === v) continue;
    out[k] = v;
  }
  return resolveConfig(def, out);
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
      if (req.formula === "gpt_generate")
        return { outputs: generateGreedyCase(req.inputs, req.config) };
      const g = referenceGraph(req.formula, knownConfig(req.formula, req.config));
      return {
        outputs: evaluate(g, req.inputs, { dtype: requestDType(req), fused: opts.fused ?? true }),
      };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      const g = referenceGraph(req.formula, knownConfig(req.formula, req.config));
      return {
        grads: vjp(g, req.inputs, req.cotangents, {
          dtype: requestDType(req),
          fused: opts.fused ?? true,
        }).grads,
      };
    },
  };
}
