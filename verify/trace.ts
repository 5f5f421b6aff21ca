/**
 * The reference's view of one request: every formula application (`call` node) inside a
 * formula's graph, as a tree in pipeline order, with the value of each application and of its
 * arguments — in the request's dtype (what an implementation should produce), in float64 (the
 * exact values a float32 tolerance is measured against) and unfused in float64 (a second
 * computation a float64 tolerance is measured against).
 *
 * Localisation walks this tree: it feeds an application's reference arguments to the
 * implementation's own version of that formula and compares the answer with the reference value.
 */
import "../spec/index.js";
import { formulasOf, getFormula, hasFormula } from "../spec/formula.js";
import { dim, dimToString, evalDim } from "../spec/dims.js";
import { Expr, input } from "../spec/expr.js";
import type { Config, Node, NodeOf } from "../spec/node.js";
import { operands, topoSort } from "../spec/node.js";
import { plan } from "../autodiff/evaluate.js";
import { backprop } from "../autodiff/grad.js";
import type { Graph } from "../autodiff/graph.js";
import type { FormulaConfig } from "../autodiff/implementation.js";
import { Tensor } from "../autodiff/tensor.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { knownConfig, referenceGraph } from "../reference/implementation.js";

export type CallNode = NodeOf<"call">;

/** How a value is computed: in the request's dtype, exactly (float64), or float64 without fused kernels. */
export type Precision = "request" | "f64" | "f64-unfused";

/** A site's path below the traced formula, `/`-joined (`h.0/mha/attention`): how reports name its tensors. */
export function sitePath(site: CallSite): string {
  return site.path.slice(1).join("/");
}

/** One application of a formula inside another: all output nodes of one call (they share `args`). */
export interface CallSite {
  readonly formula: string;
  /** Output name → call node (one for most formulas; `y`, `k`, `v` for a KV-cache `mha`). */
  readonly outputs: Readonly<Record<string, CallNode>>;
  /** Argument name → node (shared by every output node of the call). */
  readonly args: Readonly<Record<string, Node>>;
  /** The call's configuration with dim expressions (`"n"`, `"p+n"`) replaced by their sizes. */
  readonly config: FormulaConfig;
  /** Readable name of the site, unique among its siblings: `h.0`, `ln_f`, `mha`, `linear[W_O]`, `linear#2`. */
  readonly name: string;
  /** Names from the root: `["gpt", "h.0", "mha", "attention"]`. */
  readonly path: readonly string[];
  readonly children: readonly CallSite[];
  /** Position in the graph's evaluation order (pipeline order). */
  readonly order: number;
}

/** A request's configuration as the reference reads it (defined in reference/implementation.ts). */
export { knownConfig };

function upcast(inputs: NamedTensors): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, t] of Object.entries(inputs)) out[k] = t.dtype === "f32" ? t.to("f64") : t;
  return out;
}

/**
 * The reference trace of one request. Build it with {@link ReferenceTrace.build}; values are
 * computed on first use and kept.
 */
export class ReferenceTrace {
  /** The formula's own call sites (its outputs), whose children are the applications inside it. */
  readonly root: CallSite;
  /** Every site, in pipeline order (the root first). */
  readonly sites: readonly CallSite[];
  private readonly keys = new Map<Node, string>();
  private readonly values = new Map<Precision, NamedTensors>();
  private readonly dims: ReadonlyMap<string, number>;
  private readonly orderMap: ReadonlyMap<Node, number>;

  private constructor(
    readonly formula: string,
    readonly config: Config,
    readonly graph: Graph,
    readonly inputs: NamedTensors,
    readonly dtype: FloatDType,
  ) {
    const roots = Object.values(graph.outputs).map((e) => e.node);
    const order = new Map<Node, number>();
    topoSort(roots).forEach((n, i) => order.set(n, i));
    this.orderMap = order;
    this.dims = plan(graph, inputs, { dtype }).binding.dims;
    const rootCalls = roots.filter((n): n is CallNode => n.op === "call");
    if (rootCalls.length !== roots.length || rootCalls.length === 0)
      throw new Error(`ReferenceTrace: the outputs of ${formula} are not formula calls`);
    this.root = this.site(rootCalls, [], order, undefined);
    const all: CallSite[] = [];
    const walk = (s: CallSite): void => {
      all.push(s);
      s.children.forEach(walk);
    };
    walk(this.root);
    this.sites = all;
    this.trackSites();
  }

  /**
   * Trace `formula` on `inputs`. `dtype` is the request's precision (float inputs must have it).
   * @throws when the formula is unknown or the inputs do not fit it (the reference's own message).
   */
  static build(
    formula: string,
    config: FormulaConfig,
    inputs: NamedTensors,
    dtype: FloatDType,
  ): ReferenceTrace {
    if (!hasFormula(formula))
      throw new Error(`ReferenceTrace: ${formula} is not a registry formula`);
    const cfg = knownConfig(formula, config);
    return new ReferenceTrace(formula, cfg, referenceGraph(formula, cfg), inputs, dtype);
  }

  /** Position of a node in the evaluation order (pipeline order); -1 for nodes outside the graph. */
  order(node: Node): number {
    return this.orderMap.get(node) ?? -1;
  }

  /**
   * Nodes computed at a site's own level, in pipeline order: reachable from its outputs' bodies
   * without leaving through its arguments or entering a nested call (a nested call's arguments
   * are computed at this level, its body is not).
   */
  ownNodes(site: CallSite): Node[] {
    const argSet = new Set(Object.values(site.args));
    const seen = new Set<Node>();
    const stack: Node[] = Object.values(site.outputs).map((c) => c.body);
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (seen.has(n) || argSet.has(n)) continue;
      seen.add(n);
      stack.push(...(n.op === "call" ? Object.values(n.args) : operands(n)));
    }
    return [...seen].sort((a, b) => this.order(a) - this.order(b));
  }

  /** The value of a node of the graph (a call output or an argument of one), in a precision. */
  value(node: Node, precision: Precision = "request"): Tensor {
    if (node.op === "input") {
      const t = this.inputs[node.name];
      if (t === undefined) throw new Error(`ReferenceTrace: input ${node.name} was not given`);
      return precision === "request" || t.dtype !== "f32" ? t : t.to("f64");
    }
    const key = this.keys.get(node);
    if (key === undefined)
      throw new Error(`ReferenceTrace: node #${node.id} (${node.op}) is not traced`);
    return this.evaluate(precision)[key]!;
  }

  /** The values of a site's arguments (what the implementation is fed in isolation). */
  argValues(site: CallSite, precision: Precision = "request"): NamedTensors {
    const out: NamedTensors = {};
    for (const [k, n] of Object.entries(site.args)) out[k] = this.value(n, precision);
    return out;
  }

  /** Values of extra nodes of the graph (e.g. residual-branch outputs), computed with the traced ones. */
  track(nodes: readonly Node[]): void {
    let added = false;
    for (const n of nodes) {
      if (n.op === "input" || this.keys.has(n)) continue;
      this.keys.set(n, `t${this.keys.size}`);
      added = true;
    }
    if (added) this.values.clear();
  }

  /**
   * The reference's cotangent of every site output (ȳ of each application) when the case's
   * outputs get `cotangents` (output name → tensor, as a backward request carries them), in a
   * precision. A site inside a formula that the reference differentiates as one piece (a custom
   * VJP: softmax, layer_norm) gets none; neither does an output the case's outputs do not depend on.
   */
  siteCotangents(
    site: CallSite,
    cotangents: NamedTensors,
    precision: Precision = "request",
  ): NamedTensors {
    const all = this.cotangentValues(cotangents, precision);
    const out: NamedTensors = {};
    for (const [o, node] of Object.entries(site.outputs)) {
      const t = all.get(node);
      if (t !== undefined) out[o] = t;
    }
    return out;
  }

  private readonly cotangentCache = new Map<
    string,
    { cots: NamedTensors; values: Map<Node, Tensor> }
  >();

  private cotangentValues(cotangents: NamedTensors, precision: Precision): Map<Node, Tensor> {
    const hit = this.cotangentCache.get(precision);
    if (hit !== undefined && hit.cots === cotangents) return hit.values;
    const args: Record<string, Expr> = { ...this.graph.args };
    const outs: { node: Node; cot: Expr }[] = [];
    const feed: Record<string, Tensor> = {
      ...(precision === "request" ? this.inputs : upcast(this.inputs)),
    };
    for (const [name, t] of Object.entries(cotangents)) {
      const out = this.graph.outputs[name];
      if (out === undefined)
        throw new Error(
          `ReferenceTrace: ${this.formula} has no output "${name}" to take a ` +
            `cotangent for; outputs: ${Object.keys(this.graph.outputs).join(", ")}`,
        );
      const cot = input(`cot.${name}`, out.node.shape.map(dimToString) as readonly string[]);
      args[`cot.${name}`] = cot;
      outs.push({ node: out.node, cot });
      feed[`cot.${name}`] = precision === "request" || t.dtype !== "f32" ? t : t.to("f64");
    }
    const wrt = this.sites.flatMap((s) => Object.values(s.outputs));
    const grads = backprop(outs, wrt);
    const keyed: Record<string, Expr> = {};
    const names = new Map<Node, string>();
    for (const [node, g] of grads) {
      const k = `c${names.size}`;
      names.set(node, k);
      keyed[k] = g;
    }
    const values = new Map<Node, Tensor>();
    if (names.size > 0) {
      const aux: Graph = {
        ...this.graph,
        name: `${this.graph.name} (cotangents)`,
        args,
        outputs: keyed,
      };
      const dtype = precision === "request" ? this.dtype : "f64";
      const got = plan(aux, feed, { dtype, fused: precision !== "f64-unfused" }).run(feed).outputs;
      for (const [node, k] of names) values.set(node, got[k]!);
    }
    this.cotangentCache.set(precision, { cots: cotangents, values });
    return values;
  }

  private evaluate(precision: Precision): NamedTensors {
    let v = this.values.get(precision);
    if (v !== undefined) return v;
    const outputs: Record<string, Expr> = {};
    for (const [n, k] of this.keys) outputs[k] = new Expr(n);
    const aux: Graph = { ...this.graph, name: `${this.graph.name} (trace)`, outputs };
    const inputs = precision === "request" ? this.inputs : upcast(this.inputs);
    const dtype = precision === "request" ? this.dtype : "f64";
    v = plan(aux, inputs, { dtype, fused: precision !== "f64-unfused" }).run(inputs).outputs;
    this.values.set(precision, v);
    return v;
  }

  private trackSites(): void {
    const nodes: Node[] = [];
    for (const s of this.sites) nodes.push(...Object.values(s.outputs), ...Object.values(s.args));
    this.track(nodes);
  }

  /** Concrete configuration: dim hyperparameters given as dim expressions are evaluated. */
  private concrete(formula: string, config: Config): FormulaConfig {
    const def = getFormula(formula);
    const out: Record<string, number | string | boolean> = {};
    for (const [k, v] of Object.entries(config)) {
      const h = def.hyper.find((x) => x.name === k);
      if (h?.dim === true && typeof v === "string") {
        const size = evalDim(dim(v), this.dims);
        if (size === undefined)
          throw new Error(
            `ReferenceTrace: hyperparameter ${k} = "${v}" of ${formula} names an unbound dim`,
          );
        out[k] = size;
      } else out[k] = v;
    }
    return out;
  }

  private site(
    calls: readonly CallNode[],
    parentPath: readonly string[],
    order: ReadonlyMap<Node, number>,
    name: string | undefined,
  ): CallSite {
    const first = calls[0]!;
    const args = first.args;
    const path = [...parentPath, name ?? first.formula];
    // children: calls reachable from the bodies without leaving through an argument or entering another call
    const argSet = new Set(Object.values(args));
    const found = new Map<Readonly<Record<string, Node>>, CallNode[]>();
    const seen = new Set<Node>();
    const stack: Node[] = calls.map((c) => c.body);
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (seen.has(n) || argSet.has(n)) continue;
      seen.add(n);
      if (n.op === "call") {
        const group = found.get(n.args);
        if (group === undefined) found.set(n.args, [n]);
        else if (!group.includes(n)) group.push(n);
        // what the child reads was computed here, in the parent's scope
        stack.push(...Object.values(n.args));
        continue;
      }
      stack.push(...operands(n));
    }
    const groups = [...found.values()].map((g) =>
      g.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0)),
    );
    groups.sort((a, b) => (order.get(a[0]!) ?? 0) - (order.get(b[0]!) ?? 0));
    const names = siblingNames(first, groups);
    const children = groups.map((g, i) => this.site(g, path, order, names[i]));
    const outputs: Record<string, CallNode> = {};
    for (const c of calls) outputs[c.output] = c;
    return {
      formula: first.formula,
      outputs,
      args,
      config: this.concrete(first.formula, first.config),
      name: path[path.length - 1]!,
      path,
      children,
      order: Math.min(...calls.map((c) => order.get(c) ?? 0)),
    };
  }
}

const BLOCKS = new Set(formulasOf("block"));
const NORMS = new Set(["layer_norm", "rms_norm"]);

/**
 * Names of a parent's child sites: blocks of a `gpt` are `h.{l}` and its final norm `ln_f`
 * (docs/NAMES.md); a formula applied once is its name; repeated ones are told apart by the
 * parent's arguments they take (`linear[W_O]`, `layer_norm[ln_2]`) or else by their order
 * (`linear#0`).
 */
function siblingNames(parent: CallNode, groups: readonly CallNode[][]): string[] {
  const formulas = groups.map((g) => g[0]!.formula);
  const parentArgs = new Map<Node, string>();
  for (const [k, n] of Object.entries(parent.args)) parentArgs.set(n, k);
  let block = 0;
  const counts = new Map<string, number>();
  const names = groups.map((g, i) => {
    const f = formulas[i]!;
    if (parent.formula === "gpt" && BLOCKS.has(f)) return `h.${block++}`;
    if (parent.formula === "gpt" && NORMS.has(f) && formulas.slice(0, i).some((x) => BLOCKS.has(x)))
      return "ln_f";
    if (formulas.filter((x) => x === f).length === 1) return f;
    const taken = Object.entries(g[0]!.args)
      .filter(([name]) => name !== "x")
      .map(([, n]) => parentArgs.get(n))
      .filter((x): x is string => x !== undefined);
    const label = commonPrefix(taken) || taken[0] || "";
    return label === "" ? "" : `${f}[${label}]`;
  });
  // unlabelled or clashing repeats are numbered in pipeline order
  return names.map((n, i) => {
    if (n !== "" && names.filter((x) => x === n).length === 1) return n;
    const f = formulas[i]!;
    const k = counts.get(f) ?? 0;
    counts.set(f, k + 1);
    return `${f}#${k}`;
  });
}

/**
 * Dot-separated common prefix of parameter names: `ln_1.weight`, `ln_1.bias` → `ln_1`; one name →
 * itself without `.weight`.
 */
function commonPrefix(names: readonly string[]): string {
  if (names.length === 0) return "";
  if (names.length === 1) return names[0]!.replace(/\.(weight|bias)$/, "");
  const parts = names.map((n) => n.split("."));
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const p = parts[0]![i];
    if (p === undefined || !parts.every((x) => x[i] === p)) break;
    out.push(p);
  }
  return out.join(".");
}
