/**
 * Named mistakes of real ports, each a rewrite of formula applications (spec/rewrite.ts): "formula
 * X computed as X′", X′ built from the registry's own formulas wherever it can be. Planted bugs
 * (properties/planted.ts), verify's test mutations (verify/planted.testing.ts) and diagnosis hypotheses
 * (verify/diagnose.ts) share them. A mistake about a formula's semantics is stated through that
 * formula: the mask off by one is `causal_mask` evaluated at shifted sizes, never the rule
 * `j ≤ i + (m − n)` written again.
 */
import "../spec/index.js";
import { addDim, dimToString, type Dim } from "../spec/dims.js";
import {
  add,
  broadcastTo,
  constant,
  cos,
  dimValue,
  div,
  eq,
  exp,
  Expr,
  iota,
  log,
  maximum,
  maxLast,
  meanLast,
  mul,
  permute,
  reshape,
  rsqrt,
  sin,
  slice,
  sqrt,
  square,
  sub,
  sumLast,
  where,
} from "../spec/expr.js";
import { call1 } from "../spec/formula.js";
import type { Config, Node } from "../spec/node.js";
import { callArgs, mapBody, onFormula, type CallNode, type CallRewrite } from "../spec/rewrite.js";

const lastDim = (e: Expr): Dim => e.shape[e.shape.length - 1]!;
const names = (e: Expr): string[] => e.shape.map(dimToString);

/** Zeros of the call's shape: a formula whose contribution is left out (no mask, no positions). */
export function zerosOf(call: CallNode): Expr {
  return mul(iota(call.shape.map(dimToString), 0), 0);
}

/**
 * The causal mask whose boundary is moved by `shift` keys (+1: query i also sees the next key,
 * −1: it is denied its own), as `causal_mask` itself evaluated at other sizes. With s = |shift|:
 * bottom-right, the first m columns of the mask for m + s keys (shift > 0) or the first n rows
 * of the mask for n + s queries (shift < 0); top-left, rows s … s + n − 1 of the mask for n + s
 * queries (shift > 0) or columns s … s + m − 1 of the mask for m + s keys (shift < 0). `config`
 * overrides the call's hyperparameters (a window).
 */
export function shiftedMask(call: CallNode, shift: number, config: Config = {}): Expr {
  const [n, m] = call.shape as readonly [Dim, Dim];
  const cfg = { ...call.config, ...config };
  const mask = (rows: Dim, cols: Dim): Expr =>
    call1("causal_mask", {}, { ...cfg, n: dimToString(rows), m: dimToString(cols) });
  const s = Math.abs(shift);
  if (shift === 0) return mask(n, m);
  if (cfg["causal_align"] === "top_left") {
    if (shift > 0) return slice(mask(addDim(n, s), m), 0, String(s), n);
    return slice(mask(n, addDim(m, s)), 1, String(s), m);
  }
  if (shift > 0) return slice(mask(n, addDim(m, s)), 1, "0", m);
  return slice(mask(addDim(n, s), m), 0, "0", n);
}

/** The causal mask off by `shift` keys ({@link shiftedMask}); sliding windows are left alone. */
export function maskShift(shift: number): CallRewrite {
  return (call) =>
    call.formula === "causal_mask" && (call.config["window"] ?? 0) === 0
      ? shiftedMask(call, shift)
      : undefined;
}

/** No causal mask: every query sees every key. */
export const maskMissing: CallRewrite = (call) =>
  call.formula === "causal_mask" ? zerosOf(call) : undefined;

/** sin and cos exchanged wherever the formula's body uses them (the sinusoids, RoPE's rotation). */
export function sinCosSwapped(call: CallNode): Expr {
  return mapBody(call, (n: Node) => {
    if (n.op !== "unary" || (n.fn !== "sin" && n.fn !== "cos")) return undefined;
    return n.fn === "sin" ? cos(new Expr(n.x)) : sin(new Expr(n.x));
  });
}

/**
 * K/V heads [..., H_kv, m, ·] laid out for H query heads tiled, head h reading K/V head h mod
 * H_kv ([k_0, …, k_{H_kv−1}, k_0, …]), instead of repeated (head h reading ⌊h·H_kv/H⌋); `heads`
 * is the query heads' dim.
 */
export function tiledHeads(t: Expr, Hkv: number, G: number, heads: Dim): Expr {
  const s = names(t);
  const pre = s.slice(0, -3);
  const [m, d] = s.slice(-2) as [string, string];
  const one = reshape(t, [...pre, "1", String(Hkv), m, d]);
  const b = broadcastTo(one, [...pre, String(G), String(Hkv), m, d]);
  return reshape(b, [...pre, dimToString(heads), m, d]);
}

/** K/V heads [..., H, m, ·] repeated (head h = K/V head ⌊h/G⌋) re-laid tiled (h mod H_kv). */
export function retiledHeads(t: Expr, Hkv: number, G: number): Expr {
  const s = names(t);
  const pre = s.slice(0, -3);
  const [H, m, d] = s.slice(-3) as [string, string, string];
  // [..., H_kv, G, m, d]: the first of each group of G copies is K/V head g itself
  const first = slice(reshape(t, [...pre, String(Hkv), String(G), m, d]), -3, "0", "1");
  return tiledHeads(reshape(first, [...pre, String(Hkv), m, d]), Hkv, G, H);
}

/**
 * Heads split and merged interleaved: head h takes columns h, h + H, h + 2H, … instead of the
 * block h·d_k … (h + 1)·d_k − 1, in `split_heads` and `merge_heads` alike.
 */
export const headsInterleaved: CallRewrite = (call) => {
  const x = new Expr(call.args["x"]!);
  if (call.formula === "split_heads") {
    // (..., n, d_k·H) read as (..., n, d_k, H), column j·H + h, → (..., H, n, d_k)
    const [H, n, dk] = names(new Expr(call)).slice(-3) as [string, string, string];
    const k = x.shape.length - 2;
    const cols = reshape(x, [...names(x).slice(0, -2), n, dk, H]);
    return permute(cols, [...Array(k).keys(), k + 2, k, k + 1]);
  }
  if (call.formula === "merge_heads") {
    // (..., H, n, d_k) → (..., n, d_k, H) → (..., n, d_k·H)
    const out = names(new Expr(call));
    const k3 = x.shape.length - 3;
    const lead3 = [...Array(k3).keys()];
    return reshape(permute(x, [...lead3, k3 + 1, k3 + 2, k3]), out);
  }
  return undefined;
};

/** The running maximum a kernel seeds its max-subtraction with, not −∞ (llm.c's −10000.0f). */
export const MAX_SEED = -10000;

const SOFTMAX_FAMILY: readonly string[] = ["softmax", "log_softmax", "logsumexp"];

/**
 * softmax, log_softmax and logsumexp with the running maximum seeded at `seed` (llm.c's
 * −10000.0f) instead of −∞: rows entirely below it underflow to exp(x − m) = 0, giving 0/0
 * (softmax), +∞ (log_softmax) or −∞ (logsumexp, and so cross_entropy's loss). `guard`: an empty
 * sum gives zeros in softmax (llm.c's expsum == 0 ? 0 : 1/expsum); the others are then left alone.
 */
export function maxSeeded(seed: number, guard = false): CallRewrite {
  return (call) => {
    const arg = call.args["x"];
    if (arg === undefined || !SOFTMAX_FAMILY.includes(call.formula)) return undefined;
    if ((call.config["axis"] ?? -1) !== -1) return undefined;
    const x = new Expr(arg);
    const m = maximum(maxLast(x), constant(seed));
    const z = sub(x, m);
    const s = sumLast(exp(z));
    switch (call.formula) {
      case "softmax":
        return guard ? where(eq(s, 0), 0, div(exp(z), add(s, eq(s, 0)))) : div(exp(z), s);
      case "log_softmax":
        return guard ? undefined : sub(z, log(s));
      default:
        return guard ? undefined : reshape(add(m, log(s)), names(x).slice(0, -1));
    }
  };
}

/**
 * softmax over the last axis without subtracting the row maximum: exp(x)/Σ exp(x), ∞/∞ = NaN for
 * large scores (a row of −∞ stays 0).
 */
export const softmaxUnshifted: CallRewrite = (call) => {
  if (call.formula !== "softmax" || (call.config["axis"] ?? -1) !== -1) return undefined;
  const e = exp(new Expr(call.args["x"]!));
  const s = sumLast(e);
  return div(e, add(s, eq(s, 0)));
};

/**
 * LayerNorm (over the last axis) with the variance divided by d − 1 (unbiased, torch.var's
 * default) or with ε added to the standard deviation, (x − μ)/(σ + ε), instead of inside the root.
 */
export function layerNormVariance(kind: "unbiased" | "eps-outside"): CallRewrite {
  return onFormula("layer_norm", (call) => {
    if (call.config.normalized_axes !== 1) return undefined;
    const { x, gamma, beta } = callArgs(call) as Record<string, Expr>;
    const eps = constant(call.config.eps);
    const xc = sub(x!, meanLast(x!));
    const xhat =
      kind === "unbiased"
        ? mul(xc, rsqrt(add(div(sumLast(square(xc)), sub(dimValue(lastDim(x!)), 1)), eps)))
        : div(xc, add(sqrt(meanLast(square(xc))), eps));
    const scaled = mul(gamma!, xhat);
    return beta === undefined ? scaled : add(scaled, beta);
  });
}
