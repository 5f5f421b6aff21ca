/**
 * The core formulas of the GPT pipeline, each built only from primitives and other formulas.
 * Argument and output names are the public contract of docs/NAMES.md.
 */
import { dim, dimToString, divDim, mulDim, subDim, type Dim } from "../dims.js";
import {
  add,
  concat,
  constant,
  dimValue,
  displayAs,
  div,
  eq,
  exp,
  gather,
  iota,
  le,
  log,
  lt,
  matmul,
  maxLast,
  meanLast,
  mul,
  named,
  neg,
  pow,
  reduce,
  reshape,
  rsqrt,
  sin,
  cos,
  slice,
  sqrt,
  square,
  stopGradient,
  sub,
  sumAll,
  sumLast,
  tanh,
  transpose,
  unary,
  where,
  Expr,
} from "../expr.js";
import {
  call1,
  defineFormula,
  FormulaError,
  parseDimList,
  required,
  type ArgSpec,
  type ConfigOf,
  type HyperSpec,
  type FormulaValues,
  type ValueView,
} from "../formula.js";
import type { Config } from "../node.js";

const NEG_INF = Number.NEGATIVE_INFINITY;

/** The largest |entry| among the finite entries of a value (0 for none): a cancelled magnitude. */
function maxAbs(t: ValueView | undefined): number {
  let m = 0;
  if (t !== undefined)
    for (let i = 0; i < t.data.length; i++)
      if (Number.isFinite(t.data[i]!)) m = Math.max(m, Math.abs(t.data[i]!));
  return m;
}

/**
 * Z of the loss computed from logits z: per row ℓ = logsumexp(z) − z_t. When the target dominates
 * the row, ℓ ≈ 0 while logsumexp ≈ z_t: a relative perturbation of z_t moves both terms alike (the
 * probe's κ̂ ≈ 0), but computing logsumexp rounds at u·|logsumexp| ≤ u·(max|z| + ln V) and z_t is
 * read at |z_t| ≤ max|z|, so the difference carries an absolute error of u·(2·max|z| + ln V) per
 * rounding on the path, whatever the size of ℓ (PyTorch's `F.cross_entropy` forms x − (m + log Σ):
 * 2.5e-16 on a loss of ~1e-16 in float64). Z = 2·max|z| + ln V.
 */
export function lossCancelled(logits: ValueView | undefined): number {
  const V = logits === undefined ? 0 : (logits.shape[logits.shape.length - 1] ?? 1);
  return 2 * maxAbs(logits) + Math.log(Math.max(1, V));
}
const last = (x: Expr): Dim => x.shape[x.shape.length - 1]!;
const at = (x: Expr, i: number): Dim => x.shape[x.shape.length + i]!;
/** A dim hyperparameter's value as a Dim (a number, or the caller's dim expression). */
const dimOf = (cfg: Config, k: string): Dim => {
  const v = cfg[k];
  if (typeof v === "number") return v;
  if (typeof v === "string") return dim(v);
  throw new Error(`hyperparameter ${k} is required`);
};

// ---------------------------------------------------------------------------------------------
// softmax family

/** Max over the last axis with fully masked rows (max = −∞) mapped to 0, so exp(x − m) stays NaN-free. */
function safeRowMax(x: Expr): Expr {
  const m = stopGradient(maxLast(x));
  return displayAs(where(eq(m, NEG_INF), 0, m), m);
}

/**
 * Softmax-family `axis`: counted from the end (−1 = last, PyTorch's `dim=-1`). A non-negative axis
 * counts from the front and so depends on the rank, which a formula's symbolic shape leaves open
 * (the batch prefix "..."): it is refused with the negative axis to state instead.
 */
const axisHyper = (what: string) =>
  ({
    name: "axis",
    kind: "number",
    default: -1,
    doc:
      `axis the ${what} runs over, counted from the end: −1 = last (PyTorch ` +
      `dim=-1), −2 = the one before, …; x needs at least −axis axes`,
    held: true,
  }) as const satisfies HyperSpec;

/** The axis hyperparameter as k ≥ 1 (the k-th axis from the end), or an error saying what to give. */
function axisFromEnd(cfg: Config, formula: string): number {
  const a = cfg["axis"] ?? -1;
  if (typeof a !== "number" || !Number.isInteger(a) || a === 0 || a > 0) {
    const hint =
      typeof a === "number" && Number.isInteger(a) && a >= 0
        ? ` (axis ${a} counts from the front; give it from the end, axis − rank: ` +
          `−${3 - a} for axis ${a} of a rank-3 tensor)`
        : "";
    throw new FormulaError(
      `formula ${formula}: hyperparameter axis must be a negative integer (−1 ` +
        `= last axis), got ${JSON.stringify(a)}${hint}`,
    );
  }
  if (-a > MAX_AXES)
    throw new FormulaError(
      `formula ${formula}: axis ${a} is beyond the ${MAX_AXES} trailing axes a formula may name`,
    );
  return -a;
}
const MAX_AXES = 8;

/** Names of the k − 1 axes after the reduced one: r_1 … r_{k−1} (sized by exampleDims). */
const trailing = (k: number): string[] => Array.from({ length: k - 1 }, (_, i) => `r_${i + 1}`);
/** The shape [..., m, r_1 … r_{k−1}] of a softmax-family tensor, m the axis it runs over. */
const axisShape = (cfg: Config, formula: string): string[] => [
  "...",
  "m",
  ...trailing(axisFromEnd(cfg, formula)),
];
const TRAILING_EXAMPLE: Readonly<Record<string, number>> = {
  r_1: 2,
  r_2: 3,
  r_3: 2,
  r_4: 3,
  r_5: 2,
  r_6: 2,
  r_7: 2,
};

/** Permutations moving the k-th axis from the end of a rank-r shape to the end, and back. */
function axisPerms(r: number, k: number): { perm: number[]; inv: number[] } {
  const ia = r - k;
  const perm = [...Array(r).keys()].filter((i) => i !== ia).concat(ia);
  return { perm, inv: perm.map((_, i) => perm.indexOf(i)) };
}

/** Apply `f` to tensors with their k-th axis from the end moved last, and move it back in the result. */
function overAxis(xs: readonly Expr[], k: number, f: (...xs: Expr[]) => Expr): Expr {
  if (k === 1) return f(...xs);
  const { perm, inv } = axisPerms(xs[0]!.shape.length, k);
  return permuteExpr(f(...xs.map((x) => permuteExpr(x, perm))), inv);
}

export const softmaxFormula = defineFormula({
  name: "softmax",
  description:
    "softmax over one axis (default the last), max-subtracted; a row that is entirely −∞ gives zeros",
  category: "core",
  hyper: [axisHyper("softmax")],
  exampleDims: TRAILING_EXAMPLE,
  args: (cfg) => [{ name: "x", shape: axisShape(cfg, "softmax"), role: "input", doc: "scores" }],
  outputs: (cfg) => [
    {
      name: "y",
      shape: axisShape(cfg, "softmax"),
      doc: "probabilities; rows along the axis sum to 1",
    },
  ],
  build: ({ x }, cfg) => {
    const k = axisFromEnd(cfg, "softmax");
    // another axis is the last-axis softmax of the tensor with that axis moved last
    if (k > 1) return { y: overAxis([x!], k, (t) => call1("softmax", { x: t })) };
    const e = exp(sub(x!, safeRowMax(x!)));
    const s = sumLast(e);
    // A fully masked row has s = 0; dividing by 1 there returns the zeros e already holds.
    const sSafe = displayAs(add(s, eq(s, 0)), s);
    return { y: div(e, sSafe) };
  },
  // x̄ = y ⊙ (ȳ − Σ_j ȳ ⊙ y), the sum along the axis
  vjp: ({ out, cot, config }) => ({
    x: overAxis([out, cot], axisFromEnd(config, "softmax"), (y, g) =>
      mul(y, sub(g, sumLast(mul(g, y)))),
    ),
  }),
  notes: [
    "A row whose entries are all −∞ (a query that may see no key) gives an all-zero row and zero gradient, never NaN.",
  ],
});

export const logsumexpFormula = defineFormula({
  name: "logsumexp",
  description: "log Σ exp over the last axis, max-subtracted",
  category: "core",
  hyper: [],
  args: () => [{ name: "x", shape: ["...", "m"], role: "input", doc: "scores" }],
  outputs: () => [{ name: "y", shape: ["..."], doc: "log-partition per row" }],
  build: ({ x }) => {
    const m = safeRowMax(x!);
    const lse = add(m, log(sumLast(exp(sub(x!, m)))));
    return { y: reshape(lse, x!.shape.slice(0, -1).map(dimToString) as string[]) };
  },
  // x̄ = ȳ ⊙ softmax(x) (= ȳ ⊙ exp(x − y), but exp(x − y) loses u·|y| in every entry: 0.6 % in
  // float32 for rows near −1e5; the max-subtracted softmax keeps it to a few u)
  vjp: ({ args, cot }) => {
    const x = args["x"]!;
    const keep = x.shape.slice(0, -1).map(dimToString).concat("1");
    return { x: mul(reshape(cot, keep as string[]), call1("softmax", { x })) };
  },
});

export const logSoftmaxFormula = defineFormula({
  name: "log_softmax",
  description: "log softmax over one axis (default the last): (x − max x) − log Σ exp(x − max x)",
  category: "core",
  hyper: [axisHyper("log softmax")],
  exampleDims: TRAILING_EXAMPLE,
  args: (cfg) => [
    { name: "x", shape: axisShape(cfg, "log_softmax"), role: "input", doc: "scores" },
  ],
  outputs: (cfg) => [{ name: "y", shape: axisShape(cfg, "log_softmax"), doc: "log-probabilities" }],
  // Shift first, then subtract the (small) log-sum: never forms x − logsumexp(x) from two large
  // numbers, which in float32 would lose the ulp of |max x| (6e-5 at 1e3) in every entry.
  build: ({ x }, cfg) => {
    const k = axisFromEnd(cfg, "log_softmax");
    if (k > 1) return { y: overAxis([x!], k, (t) => call1("log_softmax", { x: t })) };
    const z = named(sub(x!, safeRowMax(x!)), "z", "z");
    const s = sumLast(exp(z));
    // A fully masked row has s = 0; log(1) = 0 there leaves z = −∞ (log of softmax's zeros), not −∞ − (−∞).
    const sSafe = displayAs(add(s, eq(s, 0)), s);
    return { y: sub(z, log(sSafe)) };
  },
  // x̄ = ȳ − softmax(x) Σ_j ȳ  (softmax = e^y, 0 at every −∞ entry; the sum along the axis)
  vjp: ({ out, cot, config }) => ({
    x: overAxis([out, cot], axisFromEnd(config, "log_softmax"), (y, g) =>
      sub(g, mul(exp(y), sumLast(g))),
    ),
  }),
  notes: [
    "A row whose entries are all −∞ gives −∞ in every entry (the log of " +
      "softmax's zeros) and the gradient ȳ, never NaN: each entry is treated " +
      "as a masked entry of a partly masked row, whose gradient ȳ_j − " +
      "softmax_j Σȳ is ȳ_j. PyTorch gives NaN in value and gradient for such a row.",
  ],
});

// ---------------------------------------------------------------------------------------------
// masks and attention

/** An integer hyperparameter that is also the dim of the same name (n, m, d_model). */
const dimHyper = <const N extends string>(name: N, doc: string) =>
  ({ name, kind: "integer", dim: true, doc }) as const satisfies HyperSpec;
/** A dim hyperparameter the build uses only as a dim (HyperSpec.sizeOnly). */
const sizeHyper = <const N extends string>(name: N, doc: string) =>
  ({ name, kind: "integer", dim: true, sizeOnly: true, doc }) as const satisfies HyperSpec;
/** The position of the first row (a KV cache's length): a dim the laws hold at 0 unless chosen. */
const offsetHyper = (doc: string) =>
  ({
    name: "offset",
    kind: "integer",
    dim: true,
    sizeOnly: true,
    default: 0,
    held: true,
    doc,
  }) as const satisfies HyperSpec;

/** Where a causal mask puts the last key query 0 may see (docs/NAMES.md, "Attention conventions"). */
export const CAUSAL_ALIGNMENTS = ["bottom_right", "top_left"] as const;

/**
 * M[i, j] = 0 if key j is visible to query i, else −∞. Query i stands at position
 * i' = i + (m − n) (bottom-right: the last query sees the last key, a KV cache) or i' = i
 * (top-left: query i sees keys 0 … i whatever m is); it sees j ≤ i', and with a window w ≥ 1
 * only the w most recent of those: i' − w < j ≤ i'.
 */
function causalMask(n: Dim, m: Dim, align: string = "bottom_right", window: number = 0): Expr {
  const i = iota([dimToString(n), dimToString(m)] as const, 0);
  const j = iota([dimToString(n), dimToString(m)] as const, 1);
  const pos = align === "top_left" ? i : add(i, dimValue(subDim(m, n)));
  const seen = le(j, pos);
  return where(window > 0 ? mul(seen, lt(sub(pos, window), j)) : seen, 0, NEG_INF);
}

const causalHyper = [
  {
    name: "causal_align",
    held: true,
    kind: "enum",
    choices: CAUSAL_ALIGNMENTS,
    default: "bottom_right",
    doc:
      "bottom_right: query i sees keys j ≤ i + m − n (FlashAttention ≥ 2.1, " +
      "KV-cache decoding, HF with a cache); top_left: j ≤ i (PyTorch " +
      "scaled_dot_product_attention is_causal, ONNX Attention without a " +
      "cache); equal when n = m",
  },
  {
    name: "window",
    kind: "integer",
    default: 0,
    held: true,
    doc:
      "sliding window w: each query sees only its w most recent visible keys, " +
      "itself included (Mistral sliding_window); 0 = no window",
  },
] as const satisfies readonly HyperSpec[];

export const causalMaskFormula = defineFormula({
  name: "causal_mask",
  example: { n: 4 },
  description:
    "additive causal mask M: 0 where key j may be seen by query i (j ≤ i + " +
    "m − n, or j ≤ i top-left; within the window), −∞ elsewhere",
  category: "core",
  hyper: [
    sizeHyper("n", "queries"),
    sizeHyper("m", "keys (m ≥ n with a KV cache; default n)"),
    ...causalHyper,
  ],
  args: () => [],
  outputs: (cfg) => [
    { name: "y", shape: ["n", cfg["m"] === undefined ? "n" : "m"], doc: "0 / −∞" },
  ],
  build: (_, cfg) => ({
    y: causalMask(
      dimOf(cfg, "n"),
      cfg["m"] === undefined ? dimOf(cfg, "n") : dimOf(cfg, "m"),
      cfg.causal_align,
      cfg.window,
    ),
  }),
  symbol: { latex: "M", text: "M" },
  symbolOnly: true,
  notes: [
    "bottom_right (default): query i sees key j iff j ≤ i + m − n; with n > " +
      "m the first n − m rows see no key and are all −∞.",
    "top_left: query i sees key j iff j ≤ i, whatever m is.",
    "window w ≥ 1: additionally j > i' − w, i' the aligned query position; w ≥ m is no restriction.",
  ],
});

/**
 * ALiBi slopes (Press et al.): 2^(−8(h+1)/c) for the closest power of two c ≤ H, then every other
 * slope of the 2c schedule.
 */
function alibiSlopes(H: number): Expr {
  const c = 2 ** Math.floor(Math.log2(H));
  const h = iota([String(H)] as const, 0);
  const first = pow(2, mul(-8 / c, add(h, 1)));
  // head h ≥ c takes slope 2^(−8(2(h−c)+1)/(2c)) = 2^(−4(2(h−c)+1)/c)
  const extra = pow(2, mul(-4 / c, add(mul(2, sub(h, c)), 1)));
  return c === H ? first : where(le(h, c - 1), first, extra);
}

function alibiBias(H: number, n: Dim, m: Dim, form: string): Expr {
  const shape = [String(H), dimToString(n), dimToString(m)] as const;
  const s = reshape(alibiSlopes(H), [String(H), "1", "1"] as const);
  const j = iota(shape, 2);
  if (form === "absolute") return mul(s, j);
  const i = iota(shape, 1);
  return mul(s, sub(j, add(i, dimValue(subDim(m, n)))));
}

export const alibiBiasFormula = defineFormula({
  name: "alibi_bias",
  example: { H: 3, n: 4 },
  description:
    "ALiBi attention bias s_h·(j − i − (m − n)) (relative) or s_h·j (absolute; equal after softmax)",
  category: "position",
  hyper: [
    { name: "H", kind: "integer", doc: "heads (sets the slope schedule)" },
    sizeHyper("n", "queries"),
    sizeHyper("m", "keys (default n)"),
    {
      name: "form",
      kind: "enum",
      choices: ["relative", "absolute"],
      default: "relative",
      doc: "bias form",
    },
  ],
  args: () => [],
  outputs: (cfg) => [
    { name: "y", shape: ["H", "n", cfg["m"] === undefined ? "n" : "m"], doc: "bias per head" },
  ],
  build: (_, cfg) => ({
    y: alibiBias(
      required(cfg.H, "alibi_bias", "H"),
      dimOf(cfg, "n"),
      cfg["m"] === undefined ? dimOf(cfg, "n") : dimOf(cfg, "m"),
      cfg.form,
    ),
  }),
  symbol: { latex: "B_{\\mathrm{ALiBi}}", text: "B_ALiBi" },
  symbolOnly: true,
});

/** How an attention mask input is read (docs/NAMES.md, "Attention conventions"). */
export const MASK_KINDS = ["none", "boolean", "additive"] as const;

/**
 * Shapes an attention mask may have, written as axes of the scores [..., (H,) n, m] it broadcasts
 * against by NumPy rules: "scores" is the scores' own shape; "1" is an axis of size 1 broadcast
 * over; "..." is the batch prefix of Q. A padding mask [B, 1, 1, m] is "...,1,1,m" (B leads Q
 * [B, H, n, d_k]); a per-head mask [H, n, m] is "H,n,m"; one row of keys for every query is "m".
 */
export const MASK_SHAPES = [
  "scores",
  "m",
  "n,m",
  "1,m",
  "1,n,m",
  "H,n,m",
  "1,1,m",
  "H,1,m",
  "...,1,m",
  "...,1,n,m",
  "...,1,1,m",
  "...,H,1,m",
] as const;

/** The mask's declared shape; a pattern with three explicit axes makes the head axis of Q explicit. */
function maskShape(pattern: string, heads: readonly string[]): string[] {
  return pattern === "scores" ? ["...", ...heads, "n", "m"] : pattern.split(",");
}
const maskNeedsHeads = (pattern: string): boolean =>
  pattern !== "scores" && pattern.split(",").filter((t) => t !== "...").length === 3;

export const attentionFormula = defineFormula({
  name: "attention",
  description:
    "scaled dot-product attention softmax(s·QKᵀ + B + M)V: optionally " +
    "causal (aligned, windowed), masked, soft-capped, ALiBi-biased, with " +
    "grouped K/V heads",
  category: "core",
  hyper: [
    { name: "causal", kind: "boolean", default: true, doc: "add the causal mask M (causal_mask)" },
    ...causalHyper,
    {
      name: "mask",
      kind: "enum",
      choices: MASK_KINDS,
      default: "none",
      held: true,
      doc:
        "mask input: boolean (i32, nonzero = attend, PyTorch's bool attn_mask) " +
        "or additive (float added to the scores, −∞ = masked); none = no mask argument",
    },
    {
      name: "mask_shape",
      kind: "enum",
      choices: MASK_SHAPES,
      default: "scores",
      held: true,
      doc:
        "the mask's shape as axes of the scores [..., (H,) n, m], broadcast by " +
        "NumPy rules: scores = the same shape; 1 = an axis broadcast over; ... = " +
        "Q's batch prefix (padding mask [B, 1, 1, m] = ...,1,1,m; per-head [H, " +
        "n, m] = H,n,m); three explicit axes make Q's head axis explicit",
    },
    { name: "scale", kind: "number", doc: "score scale s (default 1/√d_k)" },
    {
      name: "softcap",
      kind: "number",
      default: 0,
      held: true,
      doc:
        "cap c: scores become c·tanh(scores/c) before masking (Gemma 2 " +
        "attn_logit_softcapping); 0 = no cap (FlashAttention's softcap = 0.0)",
    },
    {
      name: "dropout",
      kind: "number",
      default: 0,
      doc:
        "attention-probability dropout p (GPT-2 attn_pdrop): P becomes " +
        "dropout(P, dropout_mask; p), with the keep mask an input; 0 = none",
    },
    {
      name: "alibi",
      kind: "boolean",
      default: false,
      held: true,
      doc: "add the ALiBi bias (needs H and Q shaped [..., H, n, d_k])",
    },
    { name: "H", kind: "integer", dim: true, doc: "query heads (needed with alibi or H_kv)" },
    {
      name: "H_kv",
      kind: "integer",
      dim: true,
      doc:
        "key/value heads: K, V are [..., H_kv, m, ·] and query head h uses K/V " +
        "head ⌊h·H_kv/H⌋ (grouped-query); H must be a multiple",
    },
  ],
  // with ALiBi or grouped heads the head axis is an explicit axis (per-head slopes, K/V head sharing)
  args: (cfg) => {
    const mask = cfg["mask"] === "boolean" || cfg["mask"] === "additive";
    const heads = attentionHeads(cfg);
    const h = heads ? ["H"] : [];
    const hkv = cfg["H_kv"] !== undefined ? ["H_kv"] : h;
    return [
      { name: "Q", shape: ["...", ...h, "n", "d_k"], role: "input", doc: "queries" },
      { name: "K", shape: ["...", ...hkv, "m", "d_k"], role: "input", doc: "keys" },
      { name: "V", shape: ["...", ...hkv, "m", "d_v"], role: "input", doc: "values" },
      ...(mask
        ? [
            {
              name: "mask",
              shape: maskShape(cfg.mask_shape, h),
              role: "input",
              int: cfg["mask"] === "boolean",
              doc:
                cfg["mask"] === "boolean"
                  ? "1 (nonzero) where query i may attend to key j, 0 where not"
                  : "added to the scores (0 keeps, −∞ masks)",
              latex: "A",
            } as const,
          ]
        : []),
      ...(cfg.dropout > 0
        ? [
            {
              name: "dropout_mask",
              shape: ["...", ...h, "n", "m"],
              role: "input",
              int: true,
              doc: "keep mask of the attention weights (nonzero keeps)",
            } as const,
          ]
        : []),
    ];
  },
  outputs: (cfg) => [
    {
      name: "y",
      shape: ["...", ...(attentionHeads(cfg) ? ["H"] : []), "n", "d_v"],
      doc: "attended values",
    },
  ],
  build: ({ Q, K, V, mask, dropout_mask }, cfg) => {
    const n = at(Q!, -2);
    const m = at(K!, -2);
    let k = K!;
    let v = V!;
    if (cfg["H_kv"] !== undefined) {
      const H = cfg["H"];
      const Hkv = cfg["H_kv"];
      if (typeof H !== "number" || typeof Hkv !== "number")
        throw new Error("attention with grouped heads needs the head counts H and H_kv as numbers");
      if (Hkv < 1 || H % Hkv !== 0)
        throw new Error(`attention: H = ${H} is not a multiple of H_kv = ${Hkv}`);
      // query head h uses K/V head ⌊h / G⌋, G = H / H_kv: (..., H_kv, m, ·) → (..., H, m, ·)
      const asQueryHeads = (t: Expr) => {
        const s = repeatHeads(t, H / Hkv).shape.map(dimToString);
        return reshape(repeatHeads(t, H / Hkv), [
          ...s.slice(0, -3),
          dimToString(at(Q!, -3)),
          ...s.slice(-2),
        ] as string[]);
      };
      k = asQueryHeads(k);
      v = asQueryHeads(v);
    }
    const qk = matmul(Q!, transpose(k));
    let scores: Expr =
      cfg["scale"] === undefined
        ? div(qk, sqrt(dimValue(last(Q!))))
        : mul(qk, named(constant(cfg.scale), "s", "s"));
    const cap = cfg.softcap;
    if (cap < 0) throw new Error(`attention: softcap must be ≥ 0 (0 = no cap), got ${cap}`);
    if (cap > 0) {
      const c = named(constant(cap), "c", "c");
      scores = mul(c, tanh(div(scores, c)));
    }
    if (cfg["alibi"] === true) {
      const H = cfg["H"];
      if (typeof H !== "number") throw new Error("attention with alibi needs the head count H");
      scores = add(scores, call1("alibi_bias", {}, { H, n: dimToString(n), m: dimToString(m) }));
    }
    if (cfg["mask_shape"] !== "scores" && mask === undefined)
      throw new Error(
        `attention: mask_shape ${String(cfg["mask_shape"])} describes a mask input, but mask is none`,
      );
    if (cfg["mask"] === "boolean") scores = where(mask!, scores, NEG_INF);
    if (cfg["mask"] === "additive") scores = add(scores, mask!);
    if (cfg["causal"] === true) {
      scores = add(
        scores,
        call1(
          "causal_mask",
          {},
          {
            n: dimToString(n),
            m: dimToString(m),
            causal_align: cfg["causal_align"]!,
            window: cfg["window"]!,
          },
        ),
      );
    } else if (cfg.window > 0) {
      throw new Error(
        "attention: a sliding window needs causal = true (it limits how far back a causal query sees)",
      );
    }
    let P: Expr = named(call1("softmax", { x: scores }), "P", "P");
    const pDrop = cfg.dropout;
    if (pDrop > 0) P = call1("dropout", { x: P, keep_mask: dropout_mask! }, { p: pDrop });
    return { y: matmul(P, v) };
  },
  notes: [
    "The causal mask is bottom-right aligned by default: with m keys and n " +
      "queries, query i sees keys j ≤ i + m − n; causal_align = top_left gives j ≤ i.",
    "A query that sees no key (n > m bottom-right, a window, or a mask row " +
      "with no key) gets zero weights, output 0 and gradient 0.",
    "Order: scores s·QKᵀ, then the soft cap, then the ALiBi bias, the mask input and the causal mask.",
    "A mask of another shape than the scores (mask_shape) broadcasts " +
      "against them by NumPy rules: a padding mask [B, 1, 1, m] hides the same " +
      "keys from every head and query of batch row b.",
  ],
});

/** With ALiBi, grouped heads or a mask that names a head axis, Q's head axis is an explicit axis. */
function attentionHeads(cfg: {
  readonly alibi: boolean;
  readonly H_kv?: number | string;
  readonly mask: string;
  readonly mask_shape: string;
}): boolean {
  const masked = cfg["mask"] === "boolean" || cfg["mask"] === "additive";
  return (
    cfg["alibi"] === true || cfg["H_kv"] !== undefined || (masked && maskNeedsHeads(cfg.mask_shape))
  );
}

export const splitHeadsFormula = defineFormula({
  name: "split_heads",
  description:
    "split the columns into H heads: [..., n, H·d_k] → [..., H, n, d_k], head h = columns h·d_k … (h+1)·d_k − 1",
  category: "core",
  example: { H: 2 },
  hyper: [{ name: "H", kind: "integer", dim: true, doc: "heads" }],
  args: () => [{ name: "x", shape: ["...", "n", "H*d_k"], role: "input", doc: "projected rows" }],
  outputs: () => [{ name: "y", shape: ["...", "H", "n", "d_k"], doc: "per-head rows" }],
  build: ({ x }, cfg) => ({ y: splitCols(x!, String(cfg["H"]), "d_k") }),
  symbol: { latex: "\\mathrm{heads}", text: "heads" },
});

export const mergeHeadsFormula = defineFormula({
  name: "merge_heads",
  description:
    "concatenate heads as column blocks: [..., H, n, d_k] → [..., n, H·d_k] (the seed's Concat)",
  category: "core",
  example: {},
  hyper: [],
  args: () => [
    { name: "x", shape: ["...", "H", "n", "d_k"], role: "input", doc: "per-head outputs" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "n", "H*d_k"], doc: "concatenated" }],
  build: ({ x }) => {
    const s = x!.shape;
    // H·d_k kept as a product even when H = 1, so it stays comparable with d_model through d_model = H·d_k
    return { y: mergeCols(x!, dimToString({ op: "*", a: s[s.length - 3]!, b: s[s.length - 1]! })) };
  },
  symbol: { latex: "\\mathrm{Concat}_h", text: "Concat_h" },
});

/**
 * The integer input position_ids [..., n] (HF position_ids: each row's position) when the formula's
 * position_ids switch is on, else none: arguments to spread into a formula's args.
 */
export function positionIdsArgs(on: boolean, doc: string, latex?: string): ArgSpec[] {
  if (!on) return [];
  const arg: ArgSpec = { name: "position_ids", shape: ["...", "n"], role: "input", int: true, doc };
  return [latex === undefined ? arg : { ...arg, latex }];
}

/** A KV cache's inputs: the cached keys and values, [..., H_kv, p, d_k] each (p cached rows). */
export function pastKvArgs(
  names: readonly [keys: string, values: string],
  docs: readonly [keys: string, values: string],
): ArgSpec[] {
  const shape = ["...", "H_kv", "p", "d_k"];
  return [
    { name: names[0], shape, role: "input", doc: docs[0] },
    { name: names[1], shape, role: "input", doc: docs[1] },
  ];
}

const MHA_HYPER = [
  { name: "H", kind: "integer", dim: true, doc: "query heads" },
  {
    name: "H_kv",
    kind: "integer",
    dim: true,
    doc: "key/value heads (default H; 1 = multi-query, else grouped-query)",
  },
  { name: "causal", kind: "boolean", default: true, doc: "causal mask" },
  {
    name: "window",
    kind: "integer",
    default: 0,
    held: true,
    doc: "sliding window of attention (Mistral sliding_window); 0 = none",
  },
  {
    name: "softcap",
    kind: "number",
    default: 0,
    held: true,
    doc: "attention score cap c (Gemma 2); 0 = none",
  },
  {
    name: "positions",
    kind: "enum",
    choices: ["none", "rope", "rope_interleaved", "alibi"],
    default: "none",
    doc: "positions applied inside attention",
  },
  { name: "rope_base", kind: "number", default: 10000, values: [10000, 100], doc: "RoPE base" },
  dimHyper(
    "rotary_dims",
    "RoPE on the first r dims of each head only (rope rotary_dims; GPT-NeoX rotary_ndims); default d_k",
  ),
  {
    name: "position_ids",
    kind: "boolean",
    default: false,
    held: true,
    doc: "RoPE positions from the input position_ids [..., n] (HF position_ids) instead of offset … offset + n − 1",
  },
  {
    name: "offset",
    kind: "integer",
    dim: true,
    default: 0,
    held: true,
    doc: "position of the first query (KV-cache decoding)",
  },
  { name: "bias", kind: "boolean", default: true, doc: "projections have biases" },
  {
    name: "dropout",
    kind: "number",
    default: 0,
    doc:
      "attention-probability dropout p with the keep mask attn_dropout_mask " +
      "[..., H, n, n] as an input (training; not with kv_cache); 0 = none",
  },
  {
    name: "kv_cache",
    kind: "boolean",
    default: false,
    held: true,
    doc: "take past keys/values (past_k, past_v) and also return the full k, v",
  },
] as const satisfies readonly HyperSpec[];

export const mhaFormula = defineFormula({
  name: "mha",
  example: { H: 2 },
  description:
    "multi-head causal self-attention: heads are column blocks of W_Q, W_K, W_V; Concat(heads) W_O",
  category: "core",
  hyper: MHA_HYPER,
  relations: (cfg) => ["d_model = H*d_k", `d_kv = ${cfg["H_kv"] ?? cfg["H"] ?? "H"}*d_k`],
  args: (cfg) => [
    { name: "x", shape: ["...", "n", "d_model"], role: "input", doc: "token representations" },
    {
      name: "W_Q",
      shape: ["d_model", "d_model"],
      role: "param",
      doc: "query projection, head h = columns h·d_k…",
    },
    {
      name: "W_K",
      shape: ["d_model", "d_kv"],
      role: "param",
      doc: "key projection (d_kv = H_kv·d_k)",
    },
    { name: "W_V", shape: ["d_model", "d_kv"], role: "param", doc: "value projection" },
    { name: "W_O", shape: ["d_model", "d_model"], role: "param", doc: "output projection" },
    ...(cfg["bias"] === false
      ? []
      : ([
          { name: "b_Q", shape: ["d_model"], role: "param", doc: "query bias" },
          { name: "b_K", shape: ["d_kv"], role: "param", doc: "key bias" },
          { name: "b_V", shape: ["d_kv"], role: "param", doc: "value bias" },
          { name: "b_O", shape: ["d_model"], role: "param", doc: "output bias" },
        ] as const)),
    ...positionIdsArgs(cfg["position_ids"] === true, "RoPE position of each row", "p"),
    ...(cfg.dropout > 0
      ? ([
          {
            name: "attn_dropout_mask",
            shape: ["...", "H", "n", "n"],
            role: "input",
            int: true,
            doc: "keep mask of the attention weights",
          },
        ] as const)
      : []),
    ...(cfg["kv_cache"] === true
      ? pastKvArgs(["past_k", "past_v"], ["cached keys (after RoPE)", "cached values"])
      : []),
  ],
  outputs: (cfg) => [
    { name: "y", shape: ["...", "n", "d_model"], doc: "attention branch output" },
    ...(cfg["kv_cache"] === true
      ? [
          { name: "k", shape: ["...", "H_kv", "p+n", "d_k"], doc: "keys incl. the new rows" },
          { name: "v", shape: ["...", "H_kv", "p+n", "d_k"], doc: "values incl. the new rows" },
        ]
      : []),
  ],
  build: (a, cfg) => {
    if (cfg["kv_cache"] !== true) return { y: mhaBody(a, cfg).y } as Record<string, Expr>;
    const { y, k, v } = mhaBody(
      a,
      { ...cfg, offset: cfg["offset"] === 0 ? dimToString(at(a["past_k"]!, -2)) : cfg["offset"]! },
      { k: a["past_k"]!, v: a["past_v"]! },
    );
    return { y, k, v };
  },
});

/** Shared by mha and the KV-cache step: returns y and the full K, V (heads split). */
export function mhaBody(
  a: Readonly<Record<string, Expr>>,
  cfg: ConfigOf<typeof MHA_HYPER>,
  past?: { k: Expr; v: Expr },
): { y: Expr; k: Expr; v: Expr } {
  const x = a["x"]!;
  const H = cfg.H;
  if (typeof H !== "number") throw new Error("mha needs the head count H");
  const Hkv = typeof cfg.H_kv === "number" ? cfg.H_kv : H;
  if (H % Hkv !== 0) throw new Error(`mha: H = ${H} is not a multiple of H_kv = ${Hkv}`);
  const lin = (W: string, b: string) =>
    a[b] === undefined
      ? matmul(x as Expr<["n", "d"]>, a[W]! as Expr<["d", "e"]>)
      : call1("linear", { x, W: a[W]!, b: a[b]! }, {});
  const positions = cfg.positions;
  const rope = positions === "rope" || positions === "rope_interleaved";
  const ropeCfg: Config = {
    base: cfg.rope_base,
    offset: cfg.offset,
    convention: positions === "rope" ? "half" : "interleaved",
    ...(cfg["rotary_dims"] !== undefined ? { rotary_dims: cfg["rotary_dims"] } : {}),
    ...(cfg["position_ids"] === true ? { position_ids: true } : {}),
  };
  if (!rope && (cfg["position_ids"] === true || cfg["rotary_dims"] !== undefined)) {
    throw new Error(
      `mha: position_ids and rotary_dims apply to RoPE positions, but positions is ${positions}`,
    );
  }
  const ids: Record<string, Expr> =
    cfg["position_ids"] === true ? { position_ids: a["position_ids"]! } : {};
  // (..., n, d_model) → (..., H, n, d_k)
  const split = (t: Expr, heads: number) => call1("split_heads", { x: t }, { H: heads });
  let Q: Expr = split(lin("W_Q", "b_Q"), H);
  let K: Expr = split(lin("W_K", "b_K"), Hkv);
  let V: Expr = split(lin("W_V", "b_V"), Hkv);
  if (rope) {
    Q = call1("rope", { x: Q, ...ids }, ropeCfg);
    K = call1("rope", { x: K, ...ids }, ropeCfg);
  }
  if (past !== undefined) {
    // (..., H_kv, p, d_k) ++ (..., H_kv, n, d_k) → (..., H_kv, p + n, d_k)
    K = concat([past.k, K], -2);
    V = concat([past.v, V], -2);
  }
  const kFull = K;
  const vFull = V;
  if (Hkv !== H) {
    // query head h uses KV head ⌊h / G⌋, G = H / H_kv: (..., H_kv, m, d_k) → (..., H_kv, G, m, d_k) → (..., H, m, d_k)
    K = repeatHeads(K, H / Hkv);
    V = repeatHeads(V, H / Hkv);
  }
  const pDrop = cfg.dropout;
  if (pDrop > 0 && past !== undefined)
    throw new Error(
      "mha: dropout is a training-time switch; it does not combine with kv_cache decoding",
    );
  const drop: Record<string, Expr> = pDrop > 0 ? { dropout_mask: a["attn_dropout_mask"]! } : {};
  const heads = call1(
    "attention",
    { Q, K, V, ...drop },
    {
      dropout: pDrop,
      causal: cfg.causal,
      window: cfg.window,
      softcap: cfg.softcap,
      alibi: positions === "alibi",
      H,
    },
  );
  // (..., H, n, d_k) → (..., n, d_model): heads concatenated as column blocks
  const O = call1("merge_heads", { x: heads });
  const y =
    a["b_O"] === undefined
      ? matmul(O as Expr<["n", "d"]>, a["W_O"]! as Expr<["d", "e"]>)
      : call1("linear", { x: O, W: a["W_O"]!, b: a["b_O"]! }, {});
  return { y, k: kFull, v: vFull };
}

/** (..., n, D) → (..., heads, n, size): column block h is head h. */
function splitCols(x: Expr, heads: string, size: string): Expr {
  const s = x.shape.map(dimToString);
  const pre = s.slice(0, -2);
  const r = reshape(x, [...pre, s[s.length - 2]!, heads, size] as string[]);
  const k = pre.length;
  return permuteExpr(r, [...pre.map((_, i) => i), k + 1, k, k + 2]);
}

/** (..., heads, n, size) → (..., n, D). */
function mergeCols(x: Expr, D: string): Expr {
  const s = x.shape.map(dimToString);
  const k = s.length - 3;
  const p = permuteExpr(x, [...s.slice(0, k).map((_, i) => i), k + 1, k, k + 2]);
  return reshape(p, [...s.slice(0, k), s[k + 1]!, D] as string[]);
}

function repeatHeads(x: Expr, G: number): Expr {
  const s = x.shape.map(dimToString);
  const k = s.length - 3;
  const pre = s.slice(0, k);
  const [hkv, m, dk] = [s[k]!, s[k + 1]!, s[k + 2]!];
  const r = reshape(x, [...pre, hkv, "1", m, dk] as string[]);
  const b = broadcastExpr(r, [...pre, hkv, String(G), m, dk]);
  return reshape(b, [...pre, dimToString(mulDim(dim(hkv), G)), m, dk] as string[]);
}

import { permute as permuteRaw, broadcastTo as broadcastRaw } from "../expr.js";
const permuteExpr = (x: Expr, perm: number[]): Expr => permuteRaw(x, perm) as Expr;
const broadcastExpr = (x: Expr, shape: string[]): Expr =>
  broadcastRaw(x, shape as string[]) as Expr;

// ---------------------------------------------------------------------------------------------
// normalisation

/** Mean over the last k axes, kept (k = 1: meanLast, the graph every existing case was made with). */
function meanLastK(x: Expr, k: number): Expr {
  if (k === 1) return meanLast(x);
  const axes = Array.from({ length: k }, (_, i) => i - k);
  const count = x.shape.slice(-k).reduce<Dim>((p, d) => mulDim(p, d), 1);
  return mul(div(1, dimValue(count)), reduce("sum", x, axes, true));
}

/** LayerNorm's normalized_axes as k ≥ 1, or an error. */
function normAxes(cfg: { readonly normalized_axes: number }): number {
  const k = cfg.normalized_axes;
  if (!Number.isInteger(k) || k < 1 || k > MAX_AXES)
    throw new FormulaError(
      `formula layer_norm: hyperparameter normalized_axes must be an integer ` +
        `from 1 to ${MAX_AXES} (the number of trailing axes normalised ` +
        `together), got ${k}`,
    );
  return k;
}

/** The normalised shape r_1 … r_{k−1}, d (PyTorch's normalized_shape). */
const normShape = (k: number): string[] => [...trailing(k), "d"];

export const layerNormFormula = defineFormula({
  name: "layer_norm",
  description:
    "LayerNorm over the last axis (or the last k): γ ⊙ (x − μ)/√(σ² + ε) + " +
    "β, biased variance, ε inside the square root; β optional",
  category: "core",
  hyper: [
    {
      name: "eps",
      kind: "number",
      default: 1e-5,
      values: [1e-5, 1e-3, 0.1],
      doc: "ε added to the variance (PyTorch nn.LayerNorm eps = 1e-5; HF GPT-2 layer_norm_epsilon = 1e-5)",
    },
    {
      name: "bias",
      kind: "boolean",
      default: true,
      held: true,
      doc:
        "with the shift β (false: no beta argument, nanoGPT's " +
        "LayerNorm(bias=False), torch ≥ 2.1 nn.LayerNorm(bias=False))",
    },
    {
      name: "normalized_axes",
      kind: "integer",
      default: 1,
      max: MAX_AXES,
      doc:
        "k: normalise over the last k axes together (PyTorch normalized_shape " +
        "of length k); gamma and beta have those k axes' shape",
    },
  ],
  exampleDims: TRAILING_EXAMPLE,
  args: (cfg) => {
    const ns = normShape(normAxes(cfg));
    return [
      { name: "x", shape: ["...", ...ns], role: "input", doc: "rows to normalise" },
      { name: "gamma", shape: ns, role: "param", doc: "scale γ" },
      ...(cfg["bias"] === false
        ? []
        : [{ name: "beta", shape: ns, role: "param", doc: "shift β" } as const]),
    ];
  },
  outputs: (cfg) => [
    { name: "y", shape: ["...", ...normShape(normAxes(cfg))], doc: "normalised rows" },
  ],
  // Fused kernels (PyTorch's CPU kernel) compute y = x·s + (β − μ·s) with s = γ·rstd, rstd =
  // 1/√(σ² + ε): two products of magnitude |x|·rstd·|γ| cancel down to γ·x̂. A probe of the
  // arguments sees this amplification when a row has two or more entries (a relative perturbation
  // of x_j moves x − μ), but not for d = 1, where x − μ ≡ 0 and y ≡ β whatever x is:
  // Z = max over rows r of max|x_r|·rstd_r·max|γ|.
  cancelled: ({ args }, cfg): Record<string, number> => {
    const x = args["x"];
    const d = x === undefined ? 0 : (x.shape[x.shape.length - 1] ?? 1);
    if (x === undefined || d === 0) return {};
    let z = 0;
    for (let o = 0; o < x.data.length; o += d) {
      let mu = 0;
      let big = 0;
      for (let j = 0; j < d; j++) {
        mu += x.data[o + j]! / d;
        big = Math.max(big, Math.abs(x.data[o + j]!));
      }
      let v = 0;
      for (let j = 0; j < d; j++) v += (x.data[o + j]! - mu) ** 2 / d;
      z = Math.max(z, big / Math.sqrt(v + cfg.eps));
    }
    return { y: z * maxAbs(args["gamma"]) };
  },
  build: ({ x, gamma, beta }, cfg) => {
    const k = normAxes(cfg);
    const mu = named(meanLastK(x!, k), "\\mu", "μ");
    const xc = sub(x!, mu);
    const var_ = named(meanLastK(square(xc), k), "\\sigma^2", "σ²");
    const xhat = named(
      mul(xc, rsqrt(add(var_, named(constant(cfg.eps), "\\varepsilon", "ε")))),
      "\\hat{x}",
      "x̂",
    );
    const scaled = mul(gamma!, xhat);
    return { y: beta === undefined ? scaled : add(scaled, beta) };
  },
  // x̄ = (1/σ)(ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)), ĝ = ȳ ⊙ γ, means over the k normalised axes;
  // γ̄ = Σ_rows ȳ ⊙ x̂;  β̄ = Σ_rows ȳ
  vjp: ({ args, cot, config }) => {
    const k = normAxes(config);
    const x = args["x"]!;
    const gamma = args["gamma"]!;
    const mu = named(meanLastK(x, k), "\\mu", "μ");
    const xc = sub(x, mu);
    const rstd = named(
      rsqrt(add(meanLastK(square(xc), k), config.eps)),
      "\\frac{1}{\\sigma}",
      "1/σ",
    );
    const xhat = named(mul(xc, rstd), "\\hat{x}", "x̂");
    const gh = named(mul(cot, gamma), "\\hat{g}", "ĝ");
    const dx = mul(rstd, sub(sub(gh, meanLastK(gh, k)), mul(xhat, meanLastK(mul(gh, xhat), k))));
    const rows = x.shape.slice(0, -k).map((_, i) => i);
    return {
      x: dx,
      gamma: reduce("sum", mul(cot, xhat), rows),
      ...(args["beta"] === undefined ? {} : { beta: reduce("sum", cot, rows) }),
    };
  },
});

export const rmsNormFormula = defineFormula({
  name: "rms_norm",
  description: "RMSNorm over the last axis: γ ⊙ x/√(mean(x²) + ε), ε = 1e-6 unless stated",
  category: "core",
  hyper: [
    {
      name: "eps",
      values: [1e-5, 1e-3, 0.1],
      kind: "number",
      default: 1e-6,
      doc:
        "ε added to the mean square; default 1e-6 = HF LlamaRMSNorm and " +
        "T5LayerNorm (some configs set rms_norm_eps = 1e-5, e.g. Llama 2); " +
        "torch.nn.RMSNorm (torch ≥ 2.4) with eps=None uses " +
        "torch.finfo(dtype).eps (2.2e-16 float64, 1.2e-7 float32): state eps explicitly",
    },
  ],
  args: () => [
    { name: "x", shape: ["...", "d"], role: "input", doc: "rows to normalise" },
    { name: "gamma", shape: ["d"], role: "param", doc: "scale γ" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d"], doc: "normalised rows" }],
  build: ({ x, gamma }, cfg) => {
    const ms = named(meanLast(square(x!)), "\\overline{x^2}", "mean(x²)");
    return {
      y: mul(gamma!, mul(x!, rsqrt(add(ms, named(constant(cfg.eps), "\\varepsilon", "ε"))))),
    };
  },
  notes: [
    "The eps default differs between libraries: 1e-6 here and in Hugging " +
      "Face LlamaRMSNorm / T5LayerNorm; many configs set rms_norm_eps = 1e-5 " +
      "(Llama 2, Mistral); torch.nn.RMSNorm (torch ≥ 2.4) defaults to eps = " +
      "None, meaning torch.finfo(x.dtype).eps. Declare the value the port uses.",
  ],
});

// ---------------------------------------------------------------------------------------------
// activations

const activation = <const N extends "gelu" | "gelu_tanh" | "relu" | "silu">(
  name: N,
  description: string,
  leftTail = false,
) =>
  defineFormula({
    name,
    description,
    category: "core",
    hyper: [],
    // ½x·(1 + erf(x/√2)) (or 1 + tanh(…)) in the left tail: 1 + erf ≈ 0 is formed from two terms of
    // magnitude 1, an absolute u that the factor ½|x| carries into y (NumPy's float32 gelu at
    // x = −3.8: 2.4e-8 on y = −1.9e-3, while the probe sees only the response to x). Z = max|x|.
    ...(leftTail ? { cancelled: ({ args }: FormulaValues) => ({ y: maxAbs(args["x"]) }) } : {}),
    args: () => [{ name: "x", shape: ["..."], role: "input", doc: "any tensor" }],
    outputs: () => [{ name: "y", shape: ["..."], doc: "elementwise" }],
    build: ({ x }) => ({ y: unary(name, x!) }),
  });
export const geluFormula = activation(
  "gelu",
  "GELU, exact: x·Φ(x) = ½x(1 + erf(x/√2)) (PyTorch default)",
  true,
);
export const geluTanhFormula = activation(
  "gelu_tanh",
  "GELU, tanh approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (GPT-2 gelu_new)",
  true,
);
export const reluFormula = activation("relu", "ReLU: max(x, 0)");
export const siluFormula = activation("silu", "SiLU (swish): x·σ(x)");

// ---------------------------------------------------------------------------------------------
// dropout

export const dropoutFormula = defineFormula({
  name: "dropout",
  example: { p: 0.25 },
  description:
    "inverted dropout with the keep mask as an input: y = m ⊙ x/(1 − p), m " +
    "= 1 keeps an entry and 0 drops it; p = 1 gives zeros",
  category: "core",
  hyper: [
    {
      name: "p",
      kind: "number",
      default: 0.5,
      values: [0.5, 0.1, 0, 1],
      doc:
        "drop probability p ∈ [0, 1] (PyTorch F.dropout p, default 0.5; HF " +
        "GPT-2 embd_pdrop, attn_pdrop, resid_pdrop, 0.1); kept entries are " +
        "scaled by 1/(1 − p)",
    },
  ],
  args: () => [
    { name: "x", shape: ["..."], role: "input", doc: "any tensor" },
    {
      name: "keep_mask",
      shape: ["..."],
      role: "input",
      int: true,
      doc: "nonzero keeps the entry, 0 drops it (drawn with P(keep) = 1 − p by the caller)",
      latex: "m",
    },
  ],
  outputs: () => [{ name: "y", shape: ["..."], doc: "m ⊙ x/(1 − p)" }],
  build: ({ x, keep_mask }, cfg) => {
    const p = cfg.p;
    if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must lie in [0, 1], got ${p}`);
    // p = 1 drops every entry: the scale 1/(1 − p) = ∞ is never formed, so a kept entry gives 0, not ∞ or NaN
    const s = named(constant(p < 1 ? 1 / (1 - p) : 0), "\\tfrac{1}{1-p}", "1/(1−p)");
    return { y: where(keep_mask!, mul(x!, s), 0) };
  },
  notes: [
    "p = 0 is the identity for a mask of ones; p = 1 gives zeros in value " +
      "and gradient whatever the mask (PyTorch F.dropout(p=1) gives zeros).",
    "A dropped entry is 0 even when x is ±∞ or NaN (PyTorch's x·m/(1 − p) gives NaN there).",
  ],
});

// ---------------------------------------------------------------------------------------------
// linear layers

export const linearFormula = defineFormula({
  name: "linear",
  description: "affine map x W + b (W stored (in, out), the GPT-2 Conv1D layout); b optional",
  category: "core",
  hyper: [
    {
      name: "bias",
      kind: "boolean",
      default: true,
      held: true,
      doc: "with the bias b (false: x W, no b argument; nn.Linear(bias=False), LLaMA projections)",
    },
  ],
  args: (cfg) => [
    { name: "x", shape: ["...", "d_in"], role: "input", doc: "rows" },
    { name: "W", shape: ["d_in", "d_out"], role: "param", doc: "weight (in, out)" },
    ...(cfg["bias"] === false
      ? []
      : [{ name: "b", shape: ["d_out"], role: "param", doc: "bias" } as const]),
  ],
  outputs: (cfg) => [
    { name: "y", shape: ["...", "d_out"], doc: cfg["bias"] === false ? "x W" : "x W + b" },
  ],
  build: ({ x, W, b }) => {
    const xW = matmul(x! as Expr<["n", "i"]>, W! as Expr<["i", "o"]>);
    return { y: b === undefined ? xW : add(xW, b) };
  },
});

/** Which matmul operands are 1-D (torch.matmul / NumPy semantics). */
export const MATMUL_VECTORS = ["none", "a", "b", "both"] as const;

/** NumPy broadcasting of two dim lists (right-aligned; "1" gives way; "..." leads the result if either has it). */
function broadcastDimLists(a: readonly string[], b: readonly string[]): string[] {
  const batch = a[0] === "..." || b[0] === "...";
  const ea = a.filter((d) => d !== "...");
  const eb = b.filter((d) => d !== "...");
  const n = Math.max(ea.length, eb.length);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const x = ea[ea.length - n + i];
    const y = eb[eb.length - n + i];
    out.push(x === undefined ? y! : y === undefined ? x : x === "1" ? y : x);
  }
  return batch ? ["...", ...out] : out;
}

/** Operand shapes and result shape of matmul under its configuration. */
function matmulShapes(cfg: {
  readonly vector?: string;
  readonly a_batch?: string;
  readonly b_batch?: string;
}): { a: string[]; b: string[]; y: string[] } {
  const vec = cfg.vector ?? "none";
  const va = vec === "a" || vec === "both";
  const vb = vec === "b" || vec === "both";
  const ba = parseDimList(cfg.a_batch ?? "...");
  const bb = parseDimList(cfg.b_batch ?? "...");
  if (va && ba.length > 0)
    throw new FormulaError(
      `formula matmul: a 1-D operand a (vector = ${vec}) has no batch axes; set a_batch = "" (got "${cfg["a_batch"]}")`,
    );
  if (vb && bb.length > 0)
    throw new FormulaError(
      `formula matmul: a 1-D operand b (vector = ${vec}) has no batch axes; set b_batch = "" (got "${cfg["b_batch"]}")`,
    );
  const batch = broadcastDimLists(ba, bb);
  return {
    a: va ? ["d_in"] : [...ba, "n", "d_in"],
    b: vb ? ["d_in"] : [...bb, "d_in", "d_out"],
    y: [...batch, ...(va ? [] : ["n"]), ...(vb ? [] : ["d_out"])],
  };
}

export const matmulFormula = defineFormula({
  name: "matmul",
  description:
    "matrix product a b over the last two axes with NumPy/torch.matmul " +
    "broadcasting of the batch axes; a 1-D operand is a row (a) or column " +
    "(b) vector whose axis is dropped",
  category: "core",
  exampleDims: { B: 2 },
  hyper: [
    {
      name: "a_batch",
      kind: "dims",
      default: "...",
      doc:
        'batch axes of a before its [n, d_in]: "..." the shared batch prefix ' +
        '(default), "" or "none" for none, or dims such as "B,1" (a 1 broadcasts ' +
        "against b's axis)",
    },
    {
      name: "b_batch",
      kind: "dims",
      default: "...",
      doc: 'batch axes of b before its [d_in, d_out], as a_batch ("none" for a plain weight matrix)',
    },
    {
      name: "vector",
      kind: "enum",
      choices: MATMUL_VECTORS,
      default: "none",
      held: true,
      doc:
        "1-D operands as in torch.matmul: a = a is [d_in] (a row, its axis " +
        "dropped from y), b = b is [d_in] (a column), both = the dot product",
    },
  ],
  args: (cfg) => {
    const s = matmulShapes(cfg);
    return [
      { name: "a", shape: s.a, role: "input", doc: "left operand" },
      { name: "b", shape: s.b, role: "input", doc: "right operand" },
    ];
  },
  outputs: (cfg) => [{ name: "y", shape: matmulShapes(cfg).y, doc: "a b, batch axes broadcast" }],
  build: ({ a, b }, cfg) => {
    const s = matmulShapes(cfg);
    const a2 = s.a.length === 1 ? reshape(a!, ["1", "d_in"] as const) : a!;
    const b2 = s.b.length === 1 ? reshape(b!, ["d_in", "1"] as const) : b!;
    const y = matmul(a2 as Expr<["n", "k"]>, b2 as Expr<["k", "p"]>);
    // the gradient of a broadcast batch axis sums over it (the matmul rule unbroadcasts)
    return { y: s.a.length === 1 || s.b.length === 1 ? reshape(y, s.y) : y };
  },
  notes: [
    "Batch axes broadcast as in NumPy: right-aligned, a 1 gives way to the " +
      "other operand's size; the gradient of a broadcast operand sums over the " +
      "axes it was broadcast along.",
    "A 1-D a is treated as [1, d_in] and a 1-D b as [d_in, 1]; the added axis is removed from y (torch.matmul).",
  ],
});

const ACTIVATIONS = ["gelu", "gelu_tanh", "relu", "silu"] as const;

export const ffnFormula = defineFormula({
  name: "ffn",
  description: "position-wise feed-forward network φ(xW₁ + b₁)W₂ + b₂",
  category: "core",
  hyper: [{ name: "activation", kind: "enum", choices: ACTIVATIONS, default: "gelu", doc: "φ" }],
  args: () => [
    { name: "x", shape: ["...", "d_model"], role: "input", doc: "token representations" },
    { name: "W_1", shape: ["d_model", "d_ff"], role: "param", doc: "expansion" },
    { name: "b_1", shape: ["d_ff"], role: "param", doc: "expansion bias" },
    { name: "W_2", shape: ["d_ff", "d_model"], role: "param", doc: "contraction" },
    { name: "b_2", shape: ["d_model"], role: "param", doc: "contraction bias" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d_model"], doc: "FFN output" }],
  build: ({ x, W_1, b_1, W_2, b_2 }, cfg) => {
    const h = callAs(
      cfg.activation,
      { x: call1("linear", { x: x!, W: W_1!, b: b_1! }) },
      { latex: "\\phi", text: "φ" },
    );
    return { y: call1("linear", { x: h, W: W_2!, b: b_2! }) };
  },
});

import { callFormula } from "../formula.js";
import { make } from "../expr.js";
import type { Label, Node } from "../node.js";
/** Call a single-output formula displayed under another function symbol (φ). */
function callAs(name: string, args: Record<string, Expr>, symbol: Label): Expr {
  const out = Object.values(callFormula(name, args))[0]!;
  const n = out.node as Extract<Node, { op: "call" }>;
  return make({
    op: "call",
    formula: n.formula,
    config: n.config,
    args: n.args,
    output: n.output,
    body: n.body,
    symbol,
  });
}

export const swigluFormula = defineFormula({
  name: "swiglu",
  description: "SwiGLU feed-forward (LLaMA): (SiLU(x W_gate) ⊙ x W_up) W_down, no biases",
  category: "core",
  hyper: [],
  args: () => [
    { name: "x", shape: ["...", "d_model"], role: "input", doc: "token representations" },
    {
      name: "W_gate",
      shape: ["d_model", "d_ff"],
      role: "param",
      doc: "gate projection",
      latex: "W_{\\mathrm{gate}}",
    },
    {
      name: "W_up",
      shape: ["d_model", "d_ff"],
      role: "param",
      doc: "up projection",
      latex: "W_{\\mathrm{up}}",
    },
    {
      name: "W_down",
      shape: ["d_ff", "d_model"],
      role: "param",
      doc: "down projection",
      latex: "W_{\\mathrm{down}}",
    },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d_model"], doc: "FFN output" }],
  build: ({ x, W_gate, W_up, W_down }) => {
    const xm = x! as Expr<["n", "d"]>;
    const g = call1("silu", { x: matmul(xm, W_gate! as Expr<["d", "f"]>) });
    return {
      y: matmul(
        mul(g, matmul(xm, W_up! as Expr<["d", "f"]>)) as Expr<["n", "f"]>,
        W_down! as Expr<["f", "d"]>,
      ),
    };
  },
});

// ---------------------------------------------------------------------------------------------
// embeddings and positions

export const embeddingFormula = defineFormula({
  name: "embedding",
  description: "token embedding e_i = E[t_i]",
  category: "core",
  hyper: [],
  args: () => [
    { name: "tokens", shape: ["...", "n"], role: "input", int: true, doc: "token ids", latex: "t" },
    { name: "E", shape: ["V", "d_model"], role: "param", doc: "embedding matrix" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "n", "d_model"], doc: "embeddings" }],
  build: ({ tokens, E }) => ({ y: gather(E! as Expr<["V", "d"]>, tokens!) }),
});

/** p[i, 2k] = sin(i / 10000^(2k/d_model)), p[i, 2k+1] = cos(i / 10000^(2k/d_model)), i counted from offset. */
function sinusoid(n: Dim, d: Dim, offset: Dim): Expr {
  const shape = [dimToString(n), dimToString(d)] as const;
  const i = add(iota(shape, 0), dimValue(offset));
  const col = iota(shape, 1);
  const half = unary("floor", div(col, 2));
  const angle = div(i, pow(10000, div(mul(2, half), dimValue(d))));
  const isEven = eq(sub(col, mul(2, half)), 0);
  return where(isEven, sin(angle), cos(angle));
}

export const positionalSinusoidalFormula = defineFormula({
  name: "positional_sinusoidal",
  example: { n: 5, d_model: 6 },
  description:
    "fixed sinusoidal positions p_{i,2k} = sin(i/10000^{2k/d_model}), p_{i,2k+1} = cos(…)",
  category: "position",
  hyper: [
    sizeHyper("n", "positions"),
    sizeHyper("d_model", "width"),
    offsetHyper("first position"),
  ],
  args: () => [],
  outputs: () => [{ name: "y", shape: ["n", "d_model"], doc: "P" }],
  build: (_, cfg) => ({
    y: sinusoid(dimOf(cfg, "n"), dimOf(cfg, "d_model"), dimOf(cfg, "offset")),
  }),
  symbol: { latex: "P", text: "P" },
  symbolOnly: true,
});

export const positionalLearnedFormula = defineFormula({
  name: "positional_learned",
  example: { n: 4 },
  description: "learned positions: rows offset … offset+n−1 of P",
  category: "position",
  hyper: [sizeHyper("n", "positions"), offsetHyper("first position")],
  args: () => [
    { name: "P", shape: ["n_ctx", "d_model"], role: "param", doc: "position table (wpe)" },
  ],
  outputs: () => [{ name: "y", shape: ["n", "d_model"], doc: "P rows" }],
  build: ({ P }, cfg) => ({ y: slice(P!, 0, dimOf(cfg, "offset"), dimOf(cfg, "n")) }),
});

export const ropeFormula = defineFormula({
  name: "rope",
  exampleDims: { d_k: 4 },
  description:
    "rotary position embedding: rotate pairs of the first r dims of x by " +
    "angle p·base^(−2i/r), p the row's position; dims r … d_k − 1 pass through",
  category: "position",
  hyper: [
    { name: "base", kind: "number", default: 10000, values: [10000, 100], doc: "frequency base" },
    offsetHyper("position of the first row (without position_ids)"),
    {
      name: "convention",
      kind: "enum",
      choices: ["half", "interleaved"],
      default: "half",
      doc: "half: pairs (i, i + r/2) (GPT-NeoX, HF); interleaved: pairs (2i, 2i+1) (RoFormer, GPT-J)",
    },
    dimHyper(
      "rotary_dims",
      "r, the leading dims of each head that rotate (even, ≤ d_k; default " +
        "d_k): GPT-NeoX rotary_ndims = int(rotary_pct·d_k), HF " +
        "int(partial_rotary_factor·head_dim), GPT-J rotary_dim; the frequencies are over r",
    ),
    {
      name: "position_ids",
      kind: "boolean",
      default: false,
      held: true,
      doc:
        "take the rows' positions as an integer input position_ids [..., n] (HF " +
        "position_ids: packed or left-padded sequences) instead of offset … " +
        "offset + n − 1",
    },
  ],
  args: (cfg) => [
    { name: "x", shape: ["...", "n", "d_k"], role: "input", doc: "queries or keys, per head" },
    ...positionIdsArgs(cfg["position_ids"] === true, "position of each row", "p"),
  ],
  outputs: () => [{ name: "y", shape: ["...", "n", "d_k"], doc: "rotated" }],
  build: ({ x, position_ids }, cfg) => {
    const n = at(x!, -2);
    const dk = last(x!);
    const r: Dim = cfg["rotary_dims"] === undefined ? dk : dimOf(cfg, "rotary_dims");
    if (typeof r === "number" && r % 2 !== 0)
      throw new Error(`rope: rotary_dims must be even (dims rotate in pairs), got ${r}`);
    // r = 0 rotates nothing: y = x (GPT-NeoX rotary_pct = 0)
    if (r === 0) return { y: mul(x!, 1) };
    const h = divDim(r, 2);
    const i = iota([dimToString(h)] as const, 0);
    const freq = named(pow(cfg.base, div(mul(-2, i), dimValue(r))), "\omega", "ω");
    const pre = x!.shape.slice(0, -2).map(dimToString);
    let pos: Expr;
    if (position_ids === undefined)
      pos = reshape(add(iota([dimToString(n)] as const, 0), dimValue(dimOf(cfg, "offset"))), [
        dimToString(n),
        "1",
      ] as const);
    else {
      // [..., n] → [..., 1 (per explicit axis of x before n), n, 1]: one position per row, shared
      // by x's extra axes (heads)
      const ids = position_ids.shape.map(dimToString);
      const extra = explicitCount(x!.shape) - 2 - (explicitCount(position_ids.shape) - 1);
      if (extra < 0)
        throw new Error(
          `rope: position_ids ${JSON.stringify(ids)} has more axes than x ` +
            `${JSON.stringify(x!.shape.map(dimToString))} before its rows`,
        );
      pos = reshape(position_ids, [
        ...ids.slice(0, -1),
        ...Array<string>(extra).fill("1"),
        ids.at(-1)!,
        "1",
      ] as string[]);
    }
    const theta = named(mul(pos, freq), "\theta", "θ");
    const c = cos(theta);
    const s = sin(theta);
    const xr = dimsEqualLoose(r, dk) ? x! : slice(x!, -1, 0, r);
    let yr: Expr;
    if (cfg["convention"] === "half") {
      const x1 = slice(xr, -1, 0, h);
      const x2 = slice(xr, -1, h, h);
      yr = concat([sub(mul(x1, c), mul(x2, s)), add(mul(x2, c), mul(x1, s))], -1);
    } else {
      // (..., n, r) → (..., n, r/2, 2): pairs (2i, 2i+1)
      const xp = reshape(xr, [...pre, dimToString(n), dimToString(h), "2"] as string[]);
      const xe = slice(xp, -1, 0, 1);
      const xo = slice(xp, -1, 1, 1);
      const c3 = reshape(c, [...c.shape.map(dimToString), "1"] as string[]);
      const s3 = reshape(s, [...s.shape.map(dimToString), "1"] as string[]);
      const yp = concat([sub(mul(xe, c3), mul(xo, s3)), add(mul(xo, c3), mul(xe, s3))], -1);
      yr = reshape(yp, [...pre, dimToString(n), dimToString(r)] as string[]);
    }
    return { y: xr === x! ? yr : concat([yr, slice(x!, -1, r, subDim(dk, r))], -1) };
  },
  notes: [
    "With rotary_dims r < d_k only dims 0 … r − 1 rotate, with frequencies " +
      "base^(−2i/r) over r (GPT-NeoX, HF partial_rotary_factor); dims r … d_k " +
      "− 1 pass through unchanged.",
    "position_ids [..., n] give each row its position (left padding, packed " +
      "sequences); without them row i has position offset + i.",
  ],
});

const explicitCount = (s: readonly Dim[]): number => s.filter((d) => d !== "...").length;
const dimsEqualLoose = (a: Dim, b: Dim): boolean => dimToString(a) === dimToString(b);

// ---------------------------------------------------------------------------------------------
// output

/** The logits' hyperparameters (gpt takes them too and passes them on). */
export const LOGITS_HYPER = [
  {
    name: "final_softcap",
    kind: "number",
    default: 0,
    values: [0, 5],
    doc: "cap c: logits become c·tanh(z/c) (Gemma 2 uses 30); 0 = no cap",
  },
] as const satisfies readonly HyperSpec[];

export const logitsFormula = defineFormula({
  name: "logits",
  description:
    "vocabulary logits Z W_vocabᵀ (W_vocab = E when tied), optionally soft-capped c·tanh(z/c)",
  category: "core",
  hyper: LOGITS_HYPER,
  args: () => [
    { name: "x", shape: ["...", "n", "d_model"], role: "input", doc: "final representations Z" },
    {
      name: "W_vocab",
      shape: ["V", "d_model"],
      role: "param",
      doc: "vocabulary matrix",
      latex: "W_{\\mathrm{vocab}}",
    },
  ],
  outputs: () => [{ name: "y", shape: ["...", "n", "V"], doc: "logits" }],
  build: ({ x, W_vocab }, cfg) => {
    const z = matmul(x! as Expr<["n", "d"]>, transpose(W_vocab! as Expr<["V", "d"]>));
    const cap = cfg.final_softcap;
    if (cap < 0)
      throw new FormulaError(`formula logits: final_softcap must be ≥ 0 (0 = no cap), got ${cap}`);
    if (cap === 0) return { y: z };
    const c = named(constant(cap), "c", "c");
    return { y: mul(c, tanh(div(z, c))) };
  },
});

/** How cross_entropy reduces its per-position losses (PyTorch's `reduction`). */
export const CE_REDUCTIONS = ["mean", "sum", "none"] as const;

export const crossEntropyFormula = defineFormula({
  name: "cross_entropy",
  description:
    "cross-entropy of logits against target ids: per position logsumexp(z) " +
    "− z[target] (weighted, label-smoothed), reduced by the (weighted) mean " +
    "over the counted positions, their sum, or none; targets equal to " +
    "ignore_index are not counted",
  category: "core",
  hyper: [
    {
      name: "ignore_index",
      kind: "number",
      default: -100,
      doc:
        "a target id that marks a position to leave out of the loss and its " +
        "mean (PyTorch's default −100; HF labels use −100 for padding)",
    },
    {
      name: "label_smoothing",
      kind: "number",
      default: 0,
      held: true,
      doc:
        "ε in [0, 1]: the target distribution is (1 − ε)·onehot + ε/V (PyTorch " +
        "label_smoothing, HF label_smoothing_factor); each counted position adds " +
        "ε/V·Σ_c w_c(logsumexp(z) − z_c)",
    },
    {
      name: "reduction",
      kind: "enum",
      choices: CE_REDUCTIONS,
      default: "mean",
      held: true,
      doc:
        "mean: Σ losses / Σ w[target] over counted positions (the count without " +
        "weights); sum: Σ losses; none: the loss of every position, 0 where " +
        "ignored (PyTorch reduction)",
    },
    {
      name: "weight",
      kind: "boolean",
      default: false,
      held: true,
      doc:
        "take a class-weight argument weight [V] (PyTorch weight): position i's " +
        "loss is scaled by w[t_i] (the smoothing term by each w_c), and the mean " +
        "divides by Σ w[t_i] over counted positions",
    },
  ],
  args: (cfg) => [
    { name: "logits", shape: ["...", "n", "V"], role: "input", doc: "logits z" },
    {
      name: "targets",
      shape: ["...", "n"],
      role: "input",
      int: true,
      doc: "next-token ids in [0, V), or ignore_index",
      latex: "t",
    },
    ...(cfg["weight"] === true
      ? [
          {
            name: "weight",
            shape: ["V"],
            role: "input",
            doc: "class weights w (PyTorch does not differentiate them; the formula does)",
            latex: "w",
          } as const,
        ]
      : []),
  ],
  outputs: (cfg) => [
    cfg["reduction"] === "none"
      ? {
          name: "loss",
          shape: ["...", "n"],
          doc: "negative log-likelihood of every position (0 where ignored)",
        }
      : {
          name: "loss",
          shape: [],
          doc:
            cfg["reduction"] === "sum"
              ? "summed negative log-likelihood of the counted positions"
              : "mean negative log-likelihood over the counted positions",
        },
  ],
  // the loss cancels logsumexp(z) against z_t (lossCancelled)
  cancelled: ({ args }) => ({ loss: lossCancelled(args["logits"]) }),
  build: ({ logits, targets, weight }, cfg) => {
    const z = logits!;
    const t = targets!;
    const ignoreIndex = cfg.ignore_index;
    if (!Number.isInteger(ignoreIndex))
      throw new Error(`cross_entropy: ignore_index must be an integer, got ${ignoreIndex}`);
    const eps = cfg.label_smoothing;
    if (!(eps >= 0 && eps <= 1))
      throw new FormulaError(
        `formula cross_entropy: label_smoothing must be in [0, 1] (PyTorch's range), got ${eps}`,
      );
    const V = dimToString(last(z));
    const rows = z.shape.slice(0, -1).map(dimToString);
    const ignored = eq(t, ignoreIndex);
    const keep = named(sub(1, ignored), "\\kappa", "κ");
    // the targets read through a V-row table of their own ids: an id outside [0, V) other than
    // ignore_index is refused by the gather with its position and value (ignored positions read row
    // 0 and are weighted 0). O(V) memory: an identity table would be V² (20 GB for GPT-2's vocab).
    const ids = where(ignored, sub(t, t), t);
    const checked = gather(iota([V, "1"] as const, 0), ids);
    const onehot = named(
      eq(iota([V] as const, 0), reshape(checked, [...rows, "1"] as string[])),
      "\\mathbb{1}_{t}",
      "onehot(t)",
    );
    // where, not z ⊙ onehot: a masked logit (−∞) off the target must give 0, not −∞·0 = NaN
    const picked = named(reduce("sum", where(onehot, z, 0), [-1]), "z_{t}", "z_t");
    const lse = call1("logsumexp", { x: z });
    let perPos: Expr = sub(lse, picked);
    // w[t_i], the weight of each position's target (read off the one-hot row)
    const wt =
      weight === undefined
        ? undefined
        : named(reduce("sum", where(onehot, weight, 0), [-1]), "w_{t}", "w_t");
    if (wt !== undefined) perPos = mul(wt, perPos);
    if (eps > 0) {
      // Σ_c w_c (logsumexp(z) − z_c): the cross-entropy against the uniform distribution, weighted
      const lseCol = reshape(lse, [...rows, "1"] as string[]);
      const gap = sub(lseCol, z);
      const smooth = named(
        reduce("sum", weight === undefined ? gap : mul(weight, gap), [-1]),
        "u",
        "u",
      );
      perPos = add(mul(1 - eps, perPos), mul(div(eps, dimValue(V)), smooth));
    }
    const counted = mul(perPos, keep);
    const reduction = cfg.reduction;
    if (reduction === "none") return { loss: counted };
    if (reduction === "sum") return { loss: sumAll(counted) };
    // N = number of counted positions (all of them when no target is ignore_index), or their weight
    const N = named(sumAll(wt === undefined ? keep : mul(wt, keep)), "N", "N");
    return { loss: div(sumAll(counted), N) };
  },
  notes: [
    "A target outside [0, V) that is not ignore_index is an error naming its position and value.",
    "When every target is ignore_index the mean is 0/0 = NaN, as in PyTorch.",
    "label_smoothing ε with weights follows PyTorch: loss_i = (1 − " +
      "ε)·w[t_i]·(lse_i − z_{i,t_i}) + (ε/V)·Σ_c w_c (lse_i − z_{i,c}); the " +
      "mean divides the sum by Σ w[t_i] over counted positions.",
  ],
});

export { causalMask, alibiBias, sinusoid, splitCols, mergeCols, repeatHeads, ACTIVATIONS, neg };
