/**
 * Call rewriting: a formula graph with chosen formula applications (`call` nodes) replaced by
 * other graphs built from the public builders — softmax without the max shift, layer_norm with
 * the unbiased variance, attention with the mask off by one. A mistake in a port is "formula X
 * computed as X′"; planted bugs, test mutations and diagnosis hypotheses are all such rewrites,
 * applied wherever X occurs in the call tree (JAX's habit: analyses and variants are functions of
 * the IR, never a second copy of a formula).
 */
import { dimsEqual, shapeToString } from "./dims.js";
import { add, Expr, stopGradient, sub } from "./expr.js";
import { callFormula, FormulaError, getFormula } from "./formula.js";
import { mapOperands, operands, postOrder } from "./node.js";
import type { HyperValue, Node, NodeOf } from "./node.js";
import { ShapeError } from "./shape.js";
import type { FormulaConfigOf } from "./configs.js";

export type CallNode = NodeOf<"call">;

/**
 * A call of the formula named `N`, its configuration typed by the formula's declarations
 * (`CallOf<"layer_norm">["config"]["eps"]` is a number): what {@link onFormula} hands its rewrite.
 */
export type CallOf<N extends string> = CallNode & { readonly config: FormulaConfigOf<N> };

/** Where a call stands in the graph being rewritten. */
export interface RewriteSite {
  /** The call as it is in the graph given to {@link rewriteCalls}, before any rewriting. */
  readonly original: CallNode;
  /** Formulas of the enclosing calls, outermost first, ending with this call's own formula. */
  readonly path: readonly string[];
}

/**
 * A rewrite of formula applications: for a call (its arguments and body already rewritten), the
 * expression that replaces it, or undefined to keep it.
 */
export type CallRewrite = (call: CallNode, site: RewriteSite) => Expr | undefined;

function argNodes(n: Node): readonly Node[] {
  return n.op === "call" ? Object.values(n.args) : [];
}

/**
 * The enclosing formulas of every call reachable from `roots`. A call's arguments belong to the
 * caller, its body to the call; a node shared by two bodies counts for the first found.
 */
function callPaths(roots: readonly Node[]): Map<Node, readonly string[]> {
  const paths = new Map<Node, readonly string[]>();
  const seen = new Set<Node>();
  const stack: [Node, readonly string[]][] = roots.map((r) => [r, []]);
  while (stack.length > 0) {
    const [n, path] = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.op === "call") {
      const inner = [...path, n.formula];
      paths.set(n, inner);
      // the body after the arguments: the stack pops the arguments first, with the caller's path
      stack.push([n.body, inner]);
      for (const a of argNodes(n)) stack.push([a, path]);
    } else {
      for (const x of operands(n)) stack.push([x, path]);
    }
  }
  return paths;
}

/** `b` must stand where `a` stood: same dtype and, symbolically, the same shape. */
function checkReplacement(call: CallNode, by: Node): void {
  const sameRank = by.shape.length === call.shape.length;
  const same = sameRank && by.shape.every((d, i) => dimsEqual(d, call.shape[i]!));
  if (!same || by.dtype !== call.dtype) {
    const was = `${call.dtype} ${shapeToString(call.shape)}`;
    const is = `${by.dtype} ${shapeToString(by.shape)}`;
    const what = `rewrite of ${call.formula} (output ${call.output})`;
    throw new ShapeError(`${what}: the replacement is ${is} but the call is ${was}`);
  }
}

/**
 * The graphs of `roots` with every call the rewrite answers replaced, nested calls included (a
 * formula inside `gpt` is reached through the bodies of its callers). Arguments are rewritten
 * before the calls that use them, so a rewrite sees its arguments as the new graph has them.
 * Nodes the rewrite does not reach are returned as they are: an untouched graph is the same
 * object. A replacement must have the call's shape and dtype (checked, a ShapeError otherwise).
 */
export function rewriteCalls(roots: readonly Node[], rewrite: CallRewrite): Node[] {
  return rewriteWithin(roots, rewrite, new Set());
}

/** A call's arguments before its body, so that they are mapped before the body reaches them. */
function callChildren(n: Node): readonly Node[] {
  return n.op === "call" ? [...argNodes(n), n.body] : operands(n);
}

/** {@link rewriteCalls} that treats `leaves` as given: neither they nor their operands change. */
function rewriteWithin(
  roots: readonly Node[],
  rewrite: CallRewrite,
  leaves: ReadonlySet<Node>,
): Node[] {
  const paths = callPaths(roots);
  const children = (n: Node): readonly Node[] => (leaves.has(n) ? [] : callChildren(n));
  const memo = new Map<Node, Node>();
  const m = (x: Node): Node => memo.get(x) ?? x;
  for (const n of postOrder(roots, children)) {
    if (leaves.has(n)) continue;
    let out = mapOperands(n, m);
    if (out.op === "call") {
      const site = { original: n as CallNode, path: paths.get(n) ?? [out.formula] };
      const replaced = rewrite(out, site);
      if (replaced !== undefined) {
        checkReplacement(out, replaced.node);
        out = replaced.node;
      }
    }
    memo.set(n, out);
  }
  return roots.map(m);
}

/**
 * The call's own body with the calls inside it rewritten, its arguments left as they are: a
 * mistake inside one formula (the value heads' split inside `mha`) that needs the outer call's
 * configuration. The bare body is returned (no longer an application of the formula).
 */
export function rewriteBody(call: CallNode, rewrite: CallRewrite): Expr {
  return new Expr(rewriteWithin([call.body], rewrite, new Set(argNodes(call)))[0]!);
}

/** {@link rewriteCalls} over named outputs (a built formula's or a Graph's). */
export function rewriteOutputs(
  outputs: Readonly<Record<string, Expr>>,
  rewrite: CallRewrite,
): Record<string, Expr> {
  const names = Object.keys(outputs);
  const nodes = rewriteCalls(
    names.map((k) => outputs[k]!.node),
    rewrite,
  );
  const kept = (k: string, i: number): Expr =>
    nodes[i] === outputs[k]!.node ? outputs[k]! : new Expr(nodes[i]!);
  return Object.fromEntries(names.map((k, i) => [k, kept(k, i)]));
}

/** Every rewrite in turn: the first that answers a call replaces it. */
export function firstOf(...rewrites: readonly CallRewrite[]): CallRewrite {
  return (call, site) => {
    for (const r of rewrites) {
      const e = r(call, site);
      if (e !== undefined) return e;
    }
    return undefined;
  };
}

/** A call's arguments as expressions. */
export function callArgs(call: CallNode): Record<string, Expr> {
  const out: Record<string, Expr> = {};
  for (const [k, v] of Object.entries(call.args)) out[k] = new Expr(v);
  return out;
}

/**
 * The call's formula applied again, with some arguments or hyperparameters changed (the same
 * output): attention with `scale` 1, a block with the other placement, logits with W_vocab
 * under stop-gradient. `formula` applies another formula to the same arguments (gelu_tanh for
 * gelu); its configuration is then `config` alone. A hyperparameter given as undefined takes its
 * default.
 */
export function reapply(
  call: CallNode,
  change: {
    config?: Readonly<Record<string, HyperValue | undefined>>;
    args?: Readonly<Record<string, Expr | undefined>>;
    formula?: string;
  } = {},
): Expr {
  const args: Record<string, Expr> = callArgs(call);
  // an argument given as undefined is left out (a mask argument that a new configuration drops)
  for (const [k, v] of Object.entries(change.args ?? {})) {
    if (v === undefined) delete args[k];
    else args[k] = v;
  }
  const other = change.formula !== undefined && change.formula !== call.formula;
  const formula = other ? change.formula! : call.formula;
  const config: Record<string, HyperValue> = other ? {} : { ...call.config };
  for (const [k, v] of Object.entries(change.config ?? {})) {
    if (v === undefined) delete config[k];
    else config[k] = v;
  }
  const outs = callFormula(formula, args, config);
  const y = outs[call.output];
  if (y === undefined) {
    const what = `rewrite of ${call.formula}`;
    throw new FormulaError(`${what}: formula ${formula} has no output ${call.output}`);
  }
  return y;
}

/**
 * The call's own body with its primitive nodes passed through `f` (operands first; undefined keeps
 * a node), its arguments left as they are: a formula computed with one of its operations changed
 * (sin and cos exchanged in a table of sinusoids). Nested calls in the body are rewritten through.
 */
export function mapBody(call: CallNode, f: (n: Node) => Expr | undefined): Expr {
  const args = new Set<Node>(argNodes(call));
  const memo = new Map<Node, Node>();
  const m = (x: Node): Node => memo.get(x) ?? x;
  for (const n of postOrder([call.body], (x) => (args.has(x) ? [] : callChildren(x)))) {
    if (args.has(n)) continue;
    const kept = mapOperands(n, m);
    const r = kept.op === "call" ? undefined : f(kept);
    memo.set(n, r === undefined ? kept : r.node);
  }
  // the bare body: no longer an application of the formula (no fused kernel, no custom VJP)
  return new Expr(m(call.body));
}

/** A rewrite of the applications of `formulas` only (by name; each must be registered). */
export function onFormula<N extends string>(
  formulas: N | readonly N[],
  rewrite: (call: CallOf<N>, site: RewriteSite) => Expr | undefined,
): CallRewrite {
  const names = new Set(typeof formulas === "string" ? [formulas] : formulas);
  for (const f of names) getFormula(f);
  return (call, site) =>
    names.has(call.formula as N) ? rewrite(call as CallOf<N>, site) : undefined;
}

/**
 * The value of `value` with the gradient of `gradient`: sg(value) + (gradient − sg(gradient)), sg
 * stopping gradients. A backward-pass mistake is the formula rewritten this way, its forward
 * value unchanged.
 */
export function withGradientOf(value: Expr, gradient: Expr): Expr {
  return add(stopGradient(value), sub(gradient, stopGradient(gradient)));
}
