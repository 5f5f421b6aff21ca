/**
 * The core formulas of the GPT pipeline, each built only from primitives and other formulas.
 * Argument and output names are the public contract of docs/NAMES.md.
 */
import { dim, dimToString, divDim, mulDim, subDim, type Dim } from "../dims.js";
import {
  add, concat, constant, dimValue, displayAs, div, eq, exp, gather, iota, le, log, lt, matmul, maxLast, meanLast, mul,
  named, neg, pow, reduce, reshape, rsqrt, sin, cos, slice, sqrt, square, stopGradient, sub, sumAll, sumLast,
  tanh, transpose, unary, where, Expr,
} from "../expr.js";
import { call1, defineFormula, type HyperSpec } from "../formula.js";
import type { Config } from "../node.js";

const NEG_INF = Number.NEGATIVE_INFINITY;
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

defineFormula({
  name: "softmax",
  description: "softmax over the last axis, max-subtracted; a row that is entirely −∞ gives zeros",
  category: "core",
  hyper: [],
  args: () => [{ name: "x", shape: ["...", "m"], role: "input", doc: "scores" }],
  outputs: () => [{ name: "y", shape: ["...", "m"], doc: "probabilities; rows sum to 1" }],
  build: ({ x }) => {
    const e = exp(sub(x!, safeRowMax(x!)));
    const s = sumLast(e);
    // A fully masked row has s = 0; dividing by 1 there returns the zeros e already holds.
    const sSafe = displayAs(add(s, eq(s, 0)), s);
    return { y: div(e, sSafe) };
  },
  // x̄ = y ⊙ (ȳ − Σ_j ȳ ⊙ y)
  vjp: ({ out, cot }) => ({ x: mul(out, sub(cot, sumLast(mul(cot, out)))) }),
  notes: ["A row whose entries are all −∞ (a query that may see no key) gives an all-zero row and zero gradient, never NaN."],
});

defineFormula({
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

defineFormula({
  name: "log_softmax",
  description: "log softmax over the last axis: (x − max x) − log Σ exp(x − max x)",
  category: "core",
  hyper: [],
  args: () => [{ name: "x", shape: ["...", "m"], role: "input", doc: "scores" }],
  outputs: () => [{ name: "y", shape: ["...", "m"], doc: "log-probabilities" }],
  // Shift first, then subtract the (small) log-sum: never forms x − logsumexp(x) from two large
  // numbers, which in float32 would lose the ulp of |max x| (6e-5 at 1e3) in every entry.
  build: ({ x }) => {
    const z = named(sub(x!, safeRowMax(x!)), "z", "z");
    const s = sumLast(exp(z));
    // A fully masked row has s = 0; log(1) = 0 there leaves z = −∞ (log of softmax's zeros), not −∞ − (−∞).
    const sSafe = displayAs(add(s, eq(s, 0)), s);
    return { y: sub(z, log(sSafe)) };
  },
  // x̄ = ȳ − softmax(x) Σ_j ȳ  (softmax = e^y, 0 at every −∞ entry)
  vjp: ({ out, cot }) => ({ x: sub(cot, mul(exp(out), sumLast(cot))) }),
  notes: [
    "A row whose entries are all −∞ gives −∞ in every entry (the log of softmax's zeros) and the gradient ȳ, never NaN: each entry is treated as a masked entry of a partly masked row, whose gradient ȳ_j − softmax_j Σȳ is ȳ_j. PyTorch gives NaN in value and gradient for such a row.",
  ],
});

// ---------------------------------------------------------------------------------------------
// masks and attention

const dimHyper = (name: string, doc: string, dflt?: number): HyperSpec => ({ name, kind: "integer", dim: true, doc, ...(dflt !== undefined ? { default: dflt } : {}) });

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

const causalHyper: readonly HyperSpec[] = [
  {
    name: "causal_align",
    kind: "enum",
    choices: CAUSAL_ALIGNMENTS,
    default: "bottom_right",
    doc: "bottom_right: query i sees keys j ≤ i + m − n (FlashAttention ≥ 2.1, KV-cache decoding, HF with a cache); top_left: j ≤ i (PyTorch scaled_dot_product_attention is_causal, ONNX Attention without a cache); equal when n = m",
  },
  { name: "window", kind: "integer", default: 0, doc: "sliding window w: each query sees only its w most recent visible keys, itself included (Mistral sliding_window); 0 = no window" },
];

defineFormula({
  name: "causal_mask",
  example: { n: 4 },
  description: "additive causal mask M: 0 where key j may be seen by query i (j ≤ i + m − n, or j ≤ i top-left; within the window), −∞ elsewhere",
  category: "core",
  hyper: [dimHyper("n", "queries"), dimHyper("m", "keys (m ≥ n with a KV cache; default n)"), ...causalHyper],
  args: () => [],
  outputs: (cfg) => [{ name: "y", shape: ["n", cfg["m"] === undefined ? "n" : "m"], doc: "0 / −∞" }],
  build: (_, cfg) => ({
    y: causalMask(dimOf(cfg, "n"), cfg["m"] === undefined ? dimOf(cfg, "n") : dimOf(cfg, "m"), cfg["causal_align"] as string, cfg["window"] as number),
  }),
  symbol: { latex: "M", text: "M" },
  symbolOnly: true,
  notes: [
    "bottom_right (default): query i sees key j iff j ≤ i + m − n; with n > m the first n − m rows see no key and are all −∞.",
    "top_left: query i sees key j iff j ≤ i, whatever m is.",
    "window w ≥ 1: additionally j > i' − w, i' the aligned query position; w ≥ m is no restriction.",
  ],
});

/** ALiBi slopes (Press et al.): 2^(−8(h+1)/c) for the closest power of two c ≤ H, then every other slope of the 2c schedule. */
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

defineFormula({
  name: "alibi_bias",
  example: { H: 3, n: 4 },
  description: "ALiBi attention bias s_h·(j − i − (m − n)) (relative) or s_h·j (absolute; equal after softmax)",
  category: "position",
  hyper: [
    { name: "H", kind: "integer", doc: "heads (sets the slope schedule)" },
    dimHyper("n", "queries"),
    dimHyper("m", "keys (default n)"),
    { name: "form", kind: "enum", choices: ["relative", "absolute"], default: "relative", doc: "bias form" },
  ],
  args: () => [],
  outputs: (cfg) => [{ name: "y", shape: ["H", "n", cfg["m"] === undefined ? "n" : "m"], doc: "bias per head" }],
  build: (_, cfg) => ({ y: alibiBias(cfg["H"] as number, dimOf(cfg, "n"), cfg["m"] === undefined ? dimOf(cfg, "n") : dimOf(cfg, "m"), cfg["form"] as string) }),
  symbol: { latex: "B_{\\mathrm{ALiBi}}", text: "B_ALiBi" },
  symbolOnly: true,
});

/** How an attention mask input is read (docs/NAMES.md, "Attention conventions"). */
export const MASK_KINDS = ["none", "boolean", "additive"] as const;

defineFormula({
  name: "attention",
  description: "scaled dot-product attention softmax(s·QKᵀ + B + M)V: optionally causal (aligned, windowed), masked, soft-capped, ALiBi-biased, with grouped K/V heads",
  category: "core",
  hyper: [
    { name: "causal", kind: "boolean", default: true, doc: "add the causal mask M (causal_mask)" },
    ...causalHyper,
    { name: "mask", kind: "enum", choices: MASK_KINDS, default: "none", doc: "mask input: boolean (i32, nonzero = attend, PyTorch's bool attn_mask) or additive (float added to the scores, −∞ = masked); none = no mask argument" },
    { name: "scale", kind: "number", doc: "score scale s (default 1/√d_k)" },
    { name: "softcap", kind: "number", default: 0, doc: "cap c: scores become c·tanh(scores/c) before masking (Gemma 2 attn_logit_softcapping); 0 = no cap (FlashAttention's softcap = 0.0)" },
    { name: "alibi", kind: "boolean", default: false, doc: "add the ALiBi bias (needs H and Q shaped [..., H, n, d_k])" },
    { name: "H", kind: "integer", dim: true, doc: "query heads (needed with alibi or H_kv)" },
    { name: "H_kv", kind: "integer", dim: true, doc: "key/value heads: K, V are [..., H_kv, m, ·] and query head h uses K/V head ⌊h·H_kv/H⌋ (grouped-query); H must be a multiple" },
  ],
  // with ALiBi or grouped heads the head axis is an explicit axis (per-head slopes, K/V head sharing)
  args: (cfg) => {
    const heads = cfg["alibi"] === true || cfg["H_kv"] !== undefined;
    const h = heads ? ["H"] : [];
    const hkv = cfg["H_kv"] !== undefined ? ["H_kv"] : h;
    const mask = cfg["mask"] === "boolean" || cfg["mask"] === "additive";
    return [
      { name: "Q", shape: ["...", ...h, "n", "d_k"], role: "input", doc: "queries" },
      { name: "K", shape: ["...", ...hkv, "m", "d_k"], role: "input", doc: "keys" },
      { name: "V", shape: ["...", ...hkv, "m", "d_v"], role: "input", doc: "values" },
      ...(mask
        ? [{ name: "mask", shape: ["...", ...h, "n", "m"], role: "input", int: cfg["mask"] === "boolean", doc: cfg["mask"] === "boolean" ? "1 (nonzero) where query i may attend to key j, 0 where not" : "added to the scores (0 keeps, −∞ masks)", latex: "A" } as const]
        : []),
    ];
  },
  outputs: (cfg) => [{ name: "y", shape: ["...", ...(cfg["alibi"] === true || cfg["H_kv"] !== undefined ? ["H"] : []), "n", "d_v"], doc: "attended values" }],
  build: ({ Q, K, V, mask }, cfg) => {
    const n = at(Q!, -2);
    const m = at(K!, -2);
    let k = K!;
    let v = V!;
    if (cfg["H_kv"] !== undefined) {
      const H = cfg["H"];
      const Hkv = cfg["H_kv"];
      if (typeof H !== "number" || typeof Hkv !== "number") throw new Error("attention with grouped heads needs the head counts H and H_kv as numbers");
      if (Hkv < 1 || H % Hkv !== 0) throw new Error(`attention: H = ${H} is not a multiple of H_kv = ${Hkv}`);
      // query head h uses K/V head ⌊h / G⌋, G = H / H_kv: (..., H_kv, m, ·) → (..., H, m, ·)
      const asQueryHeads = (t: Expr) => {
        const s = repeatHeads(t, H / Hkv).shape.map(dimToString);
        return reshape(repeatHeads(t, H / Hkv), [...s.slice(0, -3), dimToString(at(Q!, -3)), ...s.slice(-2)] as string[]);
      };
      k = asQueryHeads(k);
      v = asQueryHeads(v);
    }
    const qk = matmul(Q!, transpose(k));
    let scores: Expr = cfg["scale"] === undefined ? div(qk, sqrt(dimValue(last(Q!)))) : mul(qk, named(constant(cfg["scale"] as number), "s", "s"));
    const cap = cfg["softcap"] as number;
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
    if (cfg["mask"] === "boolean") scores = where(mask!, scores, NEG_INF);
    if (cfg["mask"] === "additive") scores = add(scores, mask!);
    if (cfg["causal"] === true) {
      scores = add(scores, call1("causal_mask", {}, { n: dimToString(n), m: dimToString(m), causal_align: cfg["causal_align"]!, window: cfg["window"]! }));
    } else if ((cfg["window"] as number) > 0) {
      throw new Error("attention: a sliding window needs causal = true (it limits how far back a causal query sees)");
    }
    const P = named(call1("softmax", { x: scores }), "P", "P");
    return { y: matmul(P, v) };
  },
  notes: [
    "The causal mask is bottom-right aligned by default: with m keys and n queries, query i sees keys j ≤ i + m − n; causal_align = top_left gives j ≤ i.",
    "A query that sees no key (n > m bottom-right, a window, or a mask row with no key) gets zero weights, output 0 and gradient 0.",
    "Order: scores s·QKᵀ, then the soft cap, then the ALiBi bias, the mask input and the causal mask.",
  ],
});

defineFormula({
  name: "split_heads",
  description: "split the columns into H heads: [..., n, H·d_k] → [..., H, n, d_k], head h = columns h·d_k … (h+1)·d_k − 1",
  category: "core",
  example: { H: 2 },
  hyper: [{ name: "H", kind: "integer", dim: true, doc: "heads" }],
  args: () => [{ name: "x", shape: ["...", "n", "H*d_k"], role: "input", doc: "projected rows" }],
  outputs: () => [{ name: "y", shape: ["...", "H", "n", "d_k"], doc: "per-head rows" }],
  build: ({ x }, cfg) => ({ y: splitCols(x!, String(cfg["H"]), "d_k") }),
  symbol: { latex: "\\mathrm{heads}", text: "heads" },
});

defineFormula({
  name: "merge_heads",
  description: "concatenate heads as column blocks: [..., H, n, d_k] → [..., n, H·d_k] (the seed's Concat)",
  category: "core",
  example: {},
  hyper: [],
  args: () => [{ name: "x", shape: ["...", "H", "n", "d_k"], role: "input", doc: "per-head outputs" }],
  outputs: () => [{ name: "y", shape: ["...", "n", "H*d_k"], doc: "concatenated" }],
  build: ({ x }) => {
    const s = x!.shape;
    // H·d_k kept as a product even when H = 1, so it stays comparable with d_model through d_model = H·d_k
    return { y: mergeCols(x!, dimToString({ op: "*", a: s[s.length - 3]!, b: s[s.length - 1]! })) };
  },
  symbol: { latex: "\\mathrm{Concat}_h", text: "Concat_h" },
});

defineFormula({
  name: "mha",
  example: { H: 2 },
  description: "multi-head causal self-attention: heads are column blocks of W_Q, W_K, W_V; Concat(heads) W_O",
  category: "core",
  hyper: [
    { name: "H", kind: "integer", dim: true, doc: "query heads" },
    { name: "H_kv", kind: "integer", dim: true, doc: "key/value heads (default H; 1 = multi-query, else grouped-query)" },
    { name: "causal", kind: "boolean", default: true, doc: "causal mask" },
    { name: "window", kind: "integer", default: 0, doc: "sliding window of attention (Mistral sliding_window); 0 = none" },
    { name: "softcap", kind: "number", default: 0, doc: "attention score cap c (Gemma 2); 0 = none" },
    { name: "positions", kind: "enum", choices: ["none", "rope", "rope_interleaved", "alibi"], default: "none", doc: "positions applied inside attention" },
    { name: "rope_base", kind: "number", default: 10000, doc: "RoPE base" },
    { name: "offset", kind: "integer", dim: true, default: 0, doc: "position of the first query (KV-cache decoding)" },
    { name: "bias", kind: "boolean", default: true, doc: "projections have biases" },
    { name: "kv_cache", kind: "boolean", default: false, doc: "take past keys/values (past_k, past_v) and also return the full k, v" },
  ],
  relations: (cfg) => ["d_model = H*d_k", `d_kv = ${cfg["H_kv"] ?? cfg["H"] ?? "H"}*d_k`],
  args: (cfg) => [
    { name: "x", shape: ["...", "n", "d_model"], role: "input", doc: "token representations" },
    { name: "W_Q", shape: ["d_model", "d_model"], role: "param", doc: "query projection, head h = columns h·d_k…" },
    { name: "W_K", shape: ["d_model", "d_kv"], role: "param", doc: "key projection (d_kv = H_kv·d_k)" },
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
    ...(cfg["kv_cache"] === true
      ? ([
          { name: "past_k", shape: ["...", "H_kv", "p", "d_k"], role: "input", doc: "cached keys (after RoPE)" },
          { name: "past_v", shape: ["...", "H_kv", "p", "d_k"], role: "input", doc: "cached values" },
        ] as const)
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
    const { y, k, v } = mhaBody(a, { ...cfg, offset: cfg["offset"] === 0 ? dimToString(at(a["past_k"]!, -2)) : cfg["offset"]! }, { k: a["past_k"]!, v: a["past_v"]! });
    return { y, k, v };
  },
});

/** Shared by mha and the KV-cache step: returns y and the full K, V (heads split). */
export function mhaBody(a: Readonly<Record<string, Expr>>, cfg: Config, past?: { k: Expr; v: Expr }): { y: Expr; k: Expr; v: Expr } {
  const x = a["x"]!;
  const H = cfg["H"];
  if (typeof H !== "number") throw new Error("mha needs the head count H");
  const Hkv = typeof cfg["H_kv"] === "number" ? (cfg["H_kv"] as number) : H;
  if (H % Hkv !== 0) throw new Error(`mha: H = ${H} is not a multiple of H_kv = ${Hkv}`);
  const lin = (W: string, b: string) => (a[b] === undefined ? matmul(x as Expr<["n", "d"]>, a[W]! as Expr<["d", "e"]>) : call1("linear", { x, W: a[W]!, b: a[b]! }, {}));
  const positions = cfg["positions"] as string;
  const rope = positions === "rope" || positions === "rope_interleaved";
  const ropeCfg = { base: cfg["rope_base"] as number, offset: cfg["offset"] as number | string, convention: positions === "rope" ? "half" : "interleaved" };
  // (..., n, d_model) → (..., H, n, d_k)
  const split = (t: Expr, heads: number) => call1("split_heads", { x: t }, { H: heads });
  let Q: Expr = split(lin("W_Q", "b_Q"), H);
  let K: Expr = split(lin("W_K", "b_K"), Hkv);
  let V: Expr = split(lin("W_V", "b_V"), Hkv);
  if (rope) {
    Q = call1("rope", { x: Q }, ropeCfg);
    K = call1("rope", { x: K }, ropeCfg);
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
  const heads = call1("attention", { Q, K, V }, { causal: cfg["causal"] as boolean, window: (cfg["window"] as number | undefined) ?? 0, softcap: (cfg["softcap"] as number | undefined) ?? 0, alibi: positions === "alibi", H });
  // (..., H, n, d_k) → (..., n, d_model): heads concatenated as column blocks
  const O = call1("merge_heads", { x: heads });
  const y = a["b_O"] === undefined ? matmul(O as Expr<["n", "d"]>, a["W_O"]! as Expr<["d", "e"]>) : call1("linear", { x: O, W: a["W_O"]!, b: a["b_O"]! }, {});
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
const broadcastExpr = (x: Expr, shape: string[]): Expr => broadcastRaw(x, shape as string[]) as Expr;

// ---------------------------------------------------------------------------------------------
// normalisation

defineFormula({
  name: "layer_norm",
  description: "LayerNorm over the last axis: γ ⊙ (x − μ)/√(σ² + ε) + β, biased variance, ε inside the square root",
  category: "core",
  hyper: [{ name: "eps", kind: "number", default: 1e-5, doc: "ε added to the variance" }],
  args: () => [
    { name: "x", shape: ["...", "d"], role: "input", doc: "rows to normalise" },
    { name: "gamma", shape: ["d"], role: "param", doc: "scale γ" },
    { name: "beta", shape: ["d"], role: "param", doc: "shift β" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d"], doc: "normalised rows" }],
  build: ({ x, gamma, beta }, cfg) => {
    const mu = named(meanLast(x!), "\\mu", "μ");
    const xc = sub(x!, mu);
    const var_ = named(meanLast(square(xc)), "\\sigma^2", "σ²");
    const xhat = named(mul(xc, rsqrt(add(var_, named(constant(cfg["eps"] as number), "\\varepsilon", "ε")))), "\\hat{x}", "x̂");
    return { y: add(mul(gamma!, xhat), beta!) };
  },
  // x̄ = (1/σ)(ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)), ĝ = ȳ ⊙ γ;  γ̄ = Σ_rows ȳ ⊙ x̂;  β̄ = Σ_rows ȳ
  vjp: ({ args, cot, config }) => {
    const x = args["x"]!;
    const gamma = args["gamma"]!;
    const mu = named(meanLast(x), "\\mu", "μ");
    const xc = sub(x, mu);
    const rstd = named(rsqrt(add(meanLast(square(xc)), config["eps"] as number)), "\\frac{1}{\\sigma}", "1/σ");
    const xhat = named(mul(xc, rstd), "\\hat{x}", "x̂");
    const gh = named(mul(cot, gamma), "\\hat{g}", "ĝ");
    const dx = mul(rstd, sub(sub(gh, meanLast(gh)), mul(xhat, meanLast(mul(gh, xhat)))));
    const rows = x.shape.slice(0, -1).map((_, i) => i);
    return {
      x: dx,
      gamma: reduce("sum", mul(cot, xhat), rows),
      beta: reduce("sum", cot, rows),
    };
  },
});

defineFormula({
  name: "rms_norm",
  description: "RMSNorm over the last axis: γ ⊙ x/√(mean(x²) + ε)",
  category: "core",
  hyper: [{ name: "eps", kind: "number", default: 1e-6, doc: "ε added to the mean square" }],
  args: () => [
    { name: "x", shape: ["...", "d"], role: "input", doc: "rows to normalise" },
    { name: "gamma", shape: ["d"], role: "param", doc: "scale γ" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d"], doc: "normalised rows" }],
  build: ({ x, gamma }, cfg) => {
    const ms = named(meanLast(square(x!)), "\\overline{x^2}", "mean(x²)");
    return { y: mul(gamma!, mul(x!, rsqrt(add(ms, named(constant(cfg["eps"] as number), "\\varepsilon", "ε"))))) };
  },
});

// ---------------------------------------------------------------------------------------------
// activations

const activation = (name: "gelu" | "gelu_tanh" | "relu" | "silu", description: string) =>
  defineFormula({
    name,
    description,
    category: "core",
    hyper: [],
    args: () => [{ name: "x", shape: ["..."], role: "input", doc: "any tensor" }],
    outputs: () => [{ name: "y", shape: ["..."], doc: "elementwise" }],
    build: ({ x }) => ({ y: unary(name, x!) }),
  });
activation("gelu", "GELU, exact: x·Φ(x) = ½x(1 + erf(x/√2)) (PyTorch default)");
activation("gelu_tanh", "GELU, tanh approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (GPT-2 gelu_new)");
activation("relu", "ReLU: max(x, 0)");
activation("silu", "SiLU (swish): x·σ(x)");

// ---------------------------------------------------------------------------------------------
// linear layers

defineFormula({
  name: "linear",
  description: "affine map x W + b (W stored (in, out), the GPT-2 Conv1D layout)",
  category: "core",
  hyper: [],
  args: () => [
    { name: "x", shape: ["...", "d_in"], role: "input", doc: "rows" },
    { name: "W", shape: ["d_in", "d_out"], role: "param", doc: "weight (in, out)" },
    { name: "b", shape: ["d_out"], role: "param", doc: "bias" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d_out"], doc: "x W + b" }],
  build: ({ x, W, b }) => ({ y: add(matmul(x! as Expr<["n", "i"]>, W! as Expr<["i", "o"]>), b!) }),
});

const ACTIVATIONS = ["gelu", "gelu_tanh", "relu", "silu"] as const;

defineFormula({
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
    const h = callAs(cfg["activation"] as string, { x: call1("linear", { x: x!, W: W_1!, b: b_1! }) }, { latex: "\\phi", text: "φ" });
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
  return make({ op: "call", formula: n.formula, config: n.config, args: n.args, output: n.output, body: n.body, symbol });
}

defineFormula({
  name: "swiglu",
  description: "SwiGLU feed-forward (LLaMA): (SiLU(x W_gate) ⊙ x W_up) W_down, no biases",
  category: "core",
  hyper: [],
  args: () => [
    { name: "x", shape: ["...", "d_model"], role: "input", doc: "token representations" },
    { name: "W_gate", shape: ["d_model", "d_ff"], role: "param", doc: "gate projection", latex: "W_{\\mathrm{gate}}" },
    { name: "W_up", shape: ["d_model", "d_ff"], role: "param", doc: "up projection", latex: "W_{\\mathrm{up}}" },
    { name: "W_down", shape: ["d_ff", "d_model"], role: "param", doc: "down projection", latex: "W_{\\mathrm{down}}" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "d_model"], doc: "FFN output" }],
  build: ({ x, W_gate, W_up, W_down }) => {
    const xm = x! as Expr<["n", "d"]>;
    const g = call1("silu", { x: matmul(xm, W_gate! as Expr<["d", "f"]>) });
    return { y: matmul(mul(g, matmul(xm, W_up! as Expr<["d", "f"]>)) as Expr<["n", "f"]>, W_down! as Expr<["f", "d"]>) };
  },
});

// ---------------------------------------------------------------------------------------------
// embeddings and positions

defineFormula({
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

defineFormula({
  name: "positional_sinusoidal",
  example: { n: 5, d_model: 6 },
  description: "fixed sinusoidal positions p_{i,2k} = sin(i/10000^{2k/d_model}), p_{i,2k+1} = cos(…)",
  category: "position",
  hyper: [dimHyper("n", "positions"), dimHyper("d_model", "width"), dimHyper("offset", "first position", 0)],
  args: () => [],
  outputs: () => [{ name: "y", shape: ["n", "d_model"], doc: "P" }],
  build: (_, cfg) => ({ y: sinusoid(dimOf(cfg, "n"), dimOf(cfg, "d_model"), dimOf(cfg, "offset")) }),
  symbol: { latex: "P", text: "P" },
  symbolOnly: true,
});

defineFormula({
  name: "positional_learned",
  example: { n: 4 },
  description: "learned positions: rows offset … offset+n−1 of P",
  category: "position",
  hyper: [dimHyper("n", "positions"), dimHyper("offset", "first position", 0)],
  args: () => [{ name: "P", shape: ["n_ctx", "d_model"], role: "param", doc: "position table (wpe)" }],
  outputs: () => [{ name: "y", shape: ["n", "d_model"], doc: "P rows" }],
  build: ({ P }, cfg) => ({ y: slice(P!, 0, dimOf(cfg, "offset"), dimOf(cfg, "n")) }),
});

defineFormula({
  name: "rope",
  exampleDims: { d_k: 4 },
  description: "rotary position embedding: rotate pairs of x by angle p·base^(−2i/d_k)",
  category: "position",
  hyper: [
    { name: "base", kind: "number", default: 10000, doc: "frequency base" },
    dimHyper("offset", "position of the first row", 0),
    { name: "convention", kind: "enum", choices: ["half", "interleaved"], default: "half", doc: "half: pairs (i, i + d_k/2) (GPT-NeoX, HF); interleaved: pairs (2i, 2i+1) (RoFormer, GPT-J)" },
  ],
  args: () => [{ name: "x", shape: ["...", "n", "d_k"], role: "input", doc: "queries or keys, per head" }],
  outputs: () => [{ name: "y", shape: ["...", "n", "d_k"], doc: "rotated" }],
  build: ({ x }, cfg) => {
    const n = at(x!, -2);
    const dk = last(x!);
    const h = divDim(dk, 2);
    const shape = [dimToString(n), dimToString(h)] as const;
    const pos = add(iota(shape, 0), dimValue(dimOf(cfg, "offset")));
    const i = iota(shape, 1);
    const theta = named(mul(pos, pow(cfg["base"] as number, div(mul(-2, i), dimValue(dk)))), "\\theta", "θ");
    const c = cos(theta);
    const s = sin(theta);
    const pre = x!.shape.slice(0, -2).map(dimToString);
    if (cfg["convention"] === "half") {
      const x1 = slice(x!, -1, 0, h);
      const x2 = slice(x!, -1, h, h);
      return { y: concat([sub(mul(x1, c), mul(x2, s)), add(mul(x2, c), mul(x1, s))], -1) };
    }
    // (..., n, d_k) → (..., n, d_k/2, 2): pairs (2i, 2i+1)
    const xp = reshape(x!, [...pre, dimToString(n), dimToString(h), "2"] as string[]);
    const xe = slice(xp, -1, 0, 1);
    const xo = slice(xp, -1, 1, 1);
    const c3 = reshape(c, [dimToString(n), dimToString(h), "1"] as const);
    const s3 = reshape(s, [dimToString(n), dimToString(h), "1"] as const);
    const yp = concat([sub(mul(xe, c3), mul(xo, s3)), add(mul(xo, c3), mul(xe, s3))], -1);
    return { y: reshape(yp, [...pre, dimToString(n), dimToString(dk)] as string[]) };
  },
});

// ---------------------------------------------------------------------------------------------
// output

defineFormula({
  name: "logits",
  description: "vocabulary logits Z W_vocabᵀ (W_vocab = E when tied)",
  category: "core",
  hyper: [],
  args: () => [
    { name: "x", shape: ["...", "n", "d_model"], role: "input", doc: "final representations Z" },
    { name: "W_vocab", shape: ["V", "d_model"], role: "param", doc: "vocabulary matrix", latex: "W_{\\mathrm{vocab}}" },
  ],
  outputs: () => [{ name: "y", shape: ["...", "n", "V"], doc: "logits" }],
  build: ({ x, W_vocab }) => ({ y: matmul(x! as Expr<["n", "d"]>, transpose(W_vocab! as Expr<["V", "d"]>)) }),
});

defineFormula({
  name: "cross_entropy",
  description: "mean over the counted positions of logsumexp(z) − z[target]; targets equal to ignore_index are not counted",
  category: "core",
  hyper: [
    { name: "ignore_index", kind: "number", default: -100, doc: "a target id that marks a position to leave out of the loss and its mean (PyTorch's default −100; HF labels use −100 for padding)" },
  ],
  args: () => [
    { name: "logits", shape: ["...", "n", "V"], role: "input", doc: "logits z" },
    { name: "targets", shape: ["...", "n"], role: "input", int: true, doc: "next-token ids in [0, V), or ignore_index", latex: "t" },
  ],
  outputs: () => [{ name: "loss", shape: [], doc: "mean negative log-likelihood over the counted positions" }],
  build: ({ logits, targets }, cfg) => {
    const z = logits!;
    const t = targets!;
    const ignoreIndex = cfg["ignore_index"] as number;
    if (!Number.isInteger(ignoreIndex)) throw new Error(`cross_entropy: ignore_index must be an integer, got ${ignoreIndex}`);
    const V = dimToString(last(z));
    const rows = z.shape.slice(0, -1).map(dimToString);
    const ignored = eq(t, ignoreIndex);
    const keep = named(sub(1, ignored), "\\kappa", "κ");
    // one-hot rows of the identity, gathered by target: an id outside [0, V) other than ignore_index
    // is refused by the gather with its position and value (ignored positions pick row 0, weighted 0)
    const eye = eq(iota([V, V] as const, 0), iota([V, V] as const, 1));
    const ids = where(ignored, sub(t, t), t);
    const onehot = named(reshape(gather(eye as Expr<["V", "V"]>, ids), [...rows, V] as string[]), "\\mathbb{1}_{t}", "onehot(t)");
    // where, not z ⊙ onehot: a masked logit (−∞) off the target must give 0, not −∞·0 = NaN
    const picked = named(reduce("sum", where(onehot, z, 0), [-1]), "z_{t}", "z_t");
    const lse = call1("logsumexp", { x: z });
    // N = number of counted positions (all of them when no target is ignore_index)
    const N = named(sumAll(keep), "N", "N");
    return { loss: div(sumAll(mul(sub(lse, picked), keep)), N) };
  },
  notes: [
    "A target outside [0, V) that is not ignore_index is an error naming its position and value.",
    "When every target is ignore_index the mean is 0/0 = NaN, as in PyTorch.",
  ],
});

export { causalMask, alibiBias, sinusoid, splitCols, mergeCols, repeatHeads, ACTIVATIONS, neg };
