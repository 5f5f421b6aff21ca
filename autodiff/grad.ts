/**
 * Reverse mode over graphs, and the API built on it — in the spirit of JAX and PyTorch:
 * `gradGraph` (a gradient *formula*), `vjp`, `grad`, `valueAndGrad`, `jvp` (by transposing the
 * linear map u ↦ Jᵀu), `hvp` (the VJP of the gradient). Dims are bound from the actual tensors.
 */
import { add, Expr, input } from "../spec/expr.js";
import { dimToString } from "../spec/dims.js";
import { postOrder, type Node } from "../spec/node.js";
import type { Graph } from "./graph.js";
import { evaluate, type EvalOptions } from "./evaluate.js";
import { gradOperands, vjpRule } from "./vjp.js";
import { Tensor, type NamedTensors } from "./tensor.js";

/**
 * A gradient cannot be formed: an unknown output or argument, an integer argument (token ids have
 * no gradient), or `grad`
 * of a graph without exactly one scalar output and no `output` option naming one.
 */
export class GradError extends Error {
  override name = "GradError";
}

/**
 * Cotangents of `wrt` for the given output cotangents, as graph. Nodes in `wrt` that the outputs
 * do not depend on get no entry.
 */
export function backprop(
  outputs: readonly { node: Node; cot: Expr }[],
  wrt: readonly Node[],
): Map<Node, Expr> {
  const wrtSet = new Set(wrt);
  // order over the gradient dependencies (a call with a custom VJP skips its body)
  const order = postOrder(
    outputs.map((o) => o.node),
    gradOperands,
  );
  const needs = new Set<Node>();
  for (const n of order) {
    if (n.dtype === "int") continue;
    if (wrtSet.has(n) || gradOperands(n).some((o) => needs.has(o))) needs.add(n);
  }
  const cots = new Map<Node, Expr>();
  const accumulate = (n: Node, g: Expr) => {
    const prev = cots.get(n);
    cots.set(n, prev === undefined ? g : add(prev, g));
  };
  for (const { node, cot } of outputs) if (needs.has(node)) accumulate(node, cot);
  const result = new Map<Node, Expr>();
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    const g = cots.get(n);
    if (g === undefined || !needs.has(n)) continue;
    if (wrtSet.has(n)) result.set(n, g);
    const ops = gradOperands(n);
    if (ops.length === 0) continue;
    const gs = vjpRule(n, g);
    ops.forEach((o, k) => {
      const go = gs[k];
      if (go !== undefined && needs.has(o)) accumulate(o, go);
    });
  }
  return result;
}

export interface GradGraphOptions {
  /** Arguments to differentiate with respect to (default: every float argument). */
  readonly wrt?: readonly string[];
  /** Outputs whose cotangents are taken (default: every float output). */
  readonly of?: readonly string[];
  /** Keep the original outputs in the gradient graph (value and gradient in one pass). */
  readonly withValues?: boolean;
}

/**
 * The gradient of a graph as a new graph. Its leaves are the original arguments plus a cotangent
 * `cot.<output>` per differentiated output; its outputs are `grad.<arg>` — the gradient of
 * Σ out ⊙ cot — and, with `withValues`, the original outputs.
 */
export function gradGraph(g: Graph, opts: GradGraphOptions = {}): Graph {
  const of = opts.of ?? Object.keys(g.outputs).filter((k) => g.outputs[k]!.node.dtype === "float");
  const wrt = opts.wrt ?? Object.keys(g.args).filter((k) => g.args[k]!.node.dtype === "float");
  for (const o of of)
    if (!(o in g.outputs))
      throw new GradError(
        `${g.name} has no output "${o}"; outputs: ${Object.keys(g.outputs).join(", ")}`,
      );
  for (const w of wrt) {
    const a = g.args[w];
    if (a === undefined)
      throw new GradError(
        `${g.name} has no argument "${w}"; arguments: ${Object.keys(g.args).join(", ")}`,
      );
    if (a.node.dtype === "int")
      throw new GradError(
        `${g.name}: argument ${w} holds integers (token ids) and has no gradient`,
      );
  }
  const cotArgs: Record<string, Expr> = {};
  const outs = of.map((o) => {
    const node = g.outputs[o]!.node;
    const cot = input(`cot.${o}`, node.shape.map(dimToString) as readonly string[], {
      label: { latex: `\\bar{${latexOf(o)}}`, text: `${o}̄` },
    });
    cotArgs[`cot.${o}`] = cot;
    return { node, cot };
  });
  const grads = backprop(
    outs,
    wrt.map((w) => g.args[w]!.node),
  );
  const outputs: Record<string, Expr> = {};
  if (opts.withValues) Object.assign(outputs, g.outputs);
  for (const w of wrt) {
    const gw = grads.get(g.args[w]!.node);
    // an argument the outputs do not depend on has a zero gradient
    outputs[`grad.${w}`] = gw ?? zerosLike(g.args[w]!);
  }
  return {
    name: `grad(${g.name})`,
    config: g.config,
    args: { ...g.args, ...cotArgs },
    outputs,
    relations: g.relations,
    hyper: g.hyper,
  };
}

import { broadcastTo, constant } from "../spec/expr.js";
function zerosLike(x: Expr): Expr {
  return broadcastTo(constant(0), x.shape.map(dimToString) as readonly string[]);
}

function latexOf(name: string): string {
  return /^[A-Za-z]$/.test(name) ? name : `\\mathrm{${name.replace(/_/g, "\\_")}}`;
}

const gradCache = new WeakMap<Graph, Map<string, Graph>>();
/**
 * Gradient graphs by the nodes they differentiate: graphs that share their args and outputs and
 * differ only in their dim bindings (`hyper`: one graph serving several sizes, as the reference's
 * cache makes) share one backward graph, re-bound to each graph's sizes.
 */
const gradByNodes = new WeakMap<object, Map<string, { args: Graph["args"]; grad: Graph }>>();
function cachedGradGraph(g: Graph, opts: GradGraphOptions): Graph {
  const key = JSON.stringify([opts.wrt ?? null, opts.of ?? null, opts.withValues ?? false]);
  let m = gradCache.get(g);
  if (m === undefined) gradCache.set(g, (m = new Map()));
  let r = m.get(key);
  if (r !== undefined) return r;
  let shared = gradByNodes.get(g.outputs);
  if (shared === undefined) gradByNodes.set(g.outputs, (shared = new Map()));
  const s = shared.get(key);
  if (s !== undefined && s.args === g.args) {
    const name = `grad(${g.name})`;
    r = { ...s.grad, name, config: g.config, relations: g.relations, hyper: g.hyper };
  } else {
    r = gradGraph(g, opts);
    // a copy: plans are cached per Graph object, and the shared entry must not keep r's alive
    shared.set(key, { args: g.args, grad: { ...r } });
  }
  m.set(key, r);
  return r;
}

function splitOutputs(all: NamedTensors): { outputs: NamedTensors; grads: NamedTensors } {
  const outputs: NamedTensors = {};
  const grads: NamedTensors = {};
  for (const [k, v] of Object.entries(all)) {
    if (k.startsWith("grad.")) grads[k.slice(5)] = v;
    else outputs[k] = v;
  }
  return { outputs, grads };
}

export interface VjpOptions extends EvalOptions {
  readonly wrt?: readonly string[];
}

/** Outputs and the gradient of Σ out ⊙ cot w.r.t. each argument (PyTorch's `autograd.grad` with grad_outputs). */
export function vjp(
  g: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  cotangents: Readonly<Record<string, Tensor>>,
  opts: VjpOptions = {},
): { outputs: NamedTensors; grads: NamedTensors } {
  const of = Object.keys(cotangents);
  for (const o of of)
    if (!(o in g.outputs))
      throw new GradError(
        `${g.name} has no output "${o}" to take a cotangent for; outputs: ${Object.keys(g.outputs).join(", ")}`,
      );
  const gg = cachedGradGraph(g, { of, withValues: true, ...(opts.wrt ? { wrt: opts.wrt } : {}) });
  const all: Record<string, Tensor> = { ...inputs };
  for (const [k, v] of Object.entries(cotangents)) all[`cot.${k}`] = v;
  return splitOutputs(evaluate(gg, all, opts));
}

function scalarOutput(g: Graph, output?: string): string {
  if (output !== undefined) return output;
  const floats = Object.keys(g.outputs).filter((k) => g.outputs[k]!.node.shape.length === 0);
  if (floats.length !== 1)
    throw new GradError(
      `${g.name}: grad needs one scalar output; name it with { output } ` +
        `(outputs: ${Object.keys(g.outputs).join(", ")})`,
    );
  return floats[0]!;
}

/** Value and gradient of a scalar output (JAX `value_and_grad`). */
export function valueAndGrad(
  g: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  opts: VjpOptions & { output?: string } = {},
): { value: Tensor; outputs: NamedTensors; grads: NamedTensors } {
  const out = scalarOutput(g, opts.output);
  const dtype = opts.dtype ?? "f64";
  const r = vjp(g, inputs, { [out]: Tensor.scalar(1, dtype) }, opts);
  return { value: r.outputs[out]!, outputs: r.outputs, grads: r.grads };
}

/** Gradient of a scalar output w.r.t. every float argument (or `wrt`). */
export function grad(
  g: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  opts: VjpOptions & { output?: string } = {},
): NamedTensors {
  return valueAndGrad(g, inputs, opts).grads;
}

/**
 * Forward mode by transposition: u ↦ Jᵀu is linear, so its VJP with cotangent v is J v.
 * Returns the outputs and their tangents for argument tangents `tangents`.
 */
function jvpGraph(g: Graph, wrt: readonly string[], of?: readonly string[]): Graph {
  const back = gradGraph(g, { wrt, withValues: true, ...(of ? { of } : {}) });
  const cotNames = Object.keys(back.args).filter((k) => k.startsWith("cot."));
  // differentiate grad.<w> (linear in the cotangents) w.r.t. the cotangents: cotangent v = tangent
  const fwd = gradGraph(back, { wrt: cotNames, of: wrt.map((w) => `grad.${w}`), withValues: true });
  return { ...fwd, name: `jvp(${g.name})` };
}

/**
 * Jacobian-vector product (forward mode, by transposing the VJP): `tangents` holds a tangent per argument, keyed by
 * argument name and shaped like it; the result holds the outputs (or those named in `of`) and their tangents J·t, keyed
 * by output name.
 * @throws GradError for an unknown output or argument, or an integer argument.
 */
export function jvp(
  g: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  tangents: Readonly<Record<string, Tensor>>,
  opts: EvalOptions & { of?: readonly string[] } = {},
): { outputs: NamedTensors; tangents: NamedTensors } {
  const wrt = Object.keys(tangents);
  const jg = jvpGraph(g, wrt, opts.of);
  const all: Record<string, Tensor> = { ...inputs };
  const dtype = opts.dtype ?? "f64";
  for (const k of Object.keys(jg.args)) {
    if (k.startsWith("cot.grad.")) all[k] = tangents[k.slice("cot.grad.".length)]!;
  }
  // the primal cotangents u: the map is linear in u, so any value works; zeros of the output shapes
  const shapes = evaluate(g, inputs, opts);
  for (const k of Object.keys(jg.args)) {
    if (k.startsWith("cot.") && !k.startsWith("cot.grad.")) {
      const o = shapes[k.slice(4)]!;
      all[k] = Tensor.zeros(o.shape, dtype);
    }
  }
  const res = evaluate(jg, all, opts);
  const outputs: NamedTensors = {};
  const tans: NamedTensors = {};
  for (const [k, v] of Object.entries(res)) {
    if (k.startsWith("grad.cot.")) tans[k.slice("grad.cot.".length)] = v;
    else if (!k.startsWith("grad.")) outputs[k] = v;
  }
  return { outputs, tangents: tans };
}

/** Hessian-vector product of a scalar output: the VJP of the gradient with cotangent v. */
function hvpGraph(g: Graph, wrt: readonly string[], output?: string): Graph {
  const out = scalarOutput(g, output);
  const first = gradGraph(g, { wrt, of: [out] });
  return { ...gradGraph(first, { wrt, of: wrt.map((w) => `grad.${w}`) }), name: `hvp(${g.name})` };
}

/**
 * Hessian-vector product H·v of a scalar output (the one scalar output, or `output`): `v` is keyed by argument name and
 * shaped like each argument; the result is keyed the same way.
 * @throws GradError if the scalar output is ambiguous or missing, or an argument is unknown or integer.
 */
export function hvp(
  g: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  v: Readonly<Record<string, Tensor>>,
  opts: EvalOptions & { output?: string } = {},
): NamedTensors {
  const wrt = Object.keys(v);
  const hg = hvpGraph(g, wrt, opts.output);
  const out = scalarOutput(g, opts.output);
  const all: Record<string, Tensor> = {
    ...inputs,
    [`cot.${out}`]: Tensor.scalar(1, opts.dtype ?? "f64"),
  };
  for (const w of wrt) all[`cot.grad.${w}`] = v[w]!;
  const res = evaluate(hg, all, opts);
  const r: NamedTensors = {};
  for (const w of wrt) r[w] = res[`grad.${w}`]!;
  return r;
}
