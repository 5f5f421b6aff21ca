/**
 * The reference with formula applications rewritten (spec/rewrite.ts): a formula's graph is
 * rebuilt with the rewrite applied wherever the formulas it names occur in the call tree, then
 * evaluated and differentiated by the engine. Planted bugs, test mutations and diagnosis
 * hypotheses run this way, so a mistake is carried consistently through every formula that
 * contains it, as in a real port.
 */
import "../spec/index.js";
import { rewriteOutputs, type CallRewrite } from "../spec/rewrite.js";
import type { Config } from "../spec/node.js";
import type { Graph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type {
  BackwardRequest,
  BackwardResult,
  ForwardRequest,
  ForwardResult,
  Implementation,
} from "../autodiff/implementation.js";
import { knownConfig, referenceGraph, referenceImplementation } from "./implementation.js";
import { requestDType } from "../autodiff/implementation.js";

/** The graph with every call the rewrite answers replaced; the graph itself when none is. */
export function rewriteGraph(g: Graph, rewrite: CallRewrite): Graph {
  const outputs = rewriteOutputs(g.outputs, rewrite);
  const same = Object.keys(outputs).every((k) => outputs[k] === g.outputs[k]);
  return same ? g : { ...g, name: `${g.name} (rewritten)`, outputs };
}

/** Options of {@link rewrittenImplementation}. */
export interface RewrittenOptions {
  /** The rewrite of the forward pass; without it the forward pass is the reference's. */
  readonly forward?: CallRewrite;
  /** The rewrite whose gradients the backward pass returns; without it, the reference's. */
  readonly backward?: CallRewrite;
  /** Formulas whose requests are rewritten (default every one); others are the reference's. */
  readonly only?: readonly string[];
  /** Formulas the implementation declares (default the reference's). */
  readonly formulas?: readonly string[];
}

/**
 * An Implementation that evaluates the reference's graph of each requested formula with the
 * rewrites applied. Rewritten graphs run without fused kernels: a fused kernel computes its
 * formula from the call's arguments, which would undo a rewrite inside it.
 */
export function rewrittenImplementation(name: string, opts: RewrittenOptions): Implementation {
  const ref = referenceImplementation();
  const only = opts.only === undefined ? undefined : new Set(opts.only);
  const graphs = new Map<string, Graph>();
  type Pass = "forward" | "backward";
  const graphOf = (which: Pass, rewrite: CallRewrite, formula: string, config: Config): Graph => {
    const cfg = knownConfig(formula, config);
    const key = `${which}|${formula}|${JSON.stringify(cfg)}`;
    let g = graphs.get(key);
    if (g === undefined) {
      g = rewriteGraph(referenceGraph(formula, cfg), rewrite);
      if (graphs.size > 256) graphs.clear();
      graphs.set(key, g);
    }
    return g;
  };
  const applies = (formula: string): boolean => only === undefined || only.has(formula);
  return {
    name,
    formulas: opts.formulas ?? ref.formulas,
    backward: ref.backward,
    dtypes: ref.dtypes,
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      if (opts.forward === undefined || !applies(req.formula)) return ref.forward(req);
      const g = graphOf("forward", opts.forward, req.formula, req.config);
      const dtype = requestDType(req);
      return { outputs: evaluate(g, req.inputs, { dtype, fused: false }) };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      if (opts.backward === undefined || !applies(req.formula)) return ref.backwardPass!(req);
      const g = graphOf("backward", opts.backward, req.formula, req.config);
      const dtype = requestDType(req);
      return { grads: vjp(g, req.inputs, req.cotangents, { dtype, fused: false }).grads };
    },
  };
}
