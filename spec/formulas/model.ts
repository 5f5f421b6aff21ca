/**
 * Blocks and the whole model, assembled from the core formulas. Parameter names are those of a
 * Hugging Face GPT-2 checkpoint (`ln_1.weight`, `attn.c_attn.weight` stored (in, out) with Q|K|V
 * column blocks, ...) so real checkpoints map one to one; variants extend the scheme (docs/NAMES.md).
 */
import { dimToString, type Dim } from "../dims.js";
import { add, slice, Expr, matmul, named } from "../expr.js";
import {
  call1,
  callFormula,
  defineFormula,
  FormulaError,
  omitHyper,
  required,
  sharedConfig,
  type ArgSpec,
  type ConfigOf,
  type HyperSpec,
  type OutputSpec,
} from "../formula.js";
import type { Config, HyperValue } from "../node.js";
import { LAYERS } from "../layers.js";
import { LOGITS_HYPER, lossCancelled, pastKvArgs, positionIdsArgs } from "./core.js";

export const NORMS = ["layer_norm", "rms_norm"] as const;
export const PLACEMENTS = ["post", "pre", "sandwich"] as const;
export const BLOCK_ACTIVATIONS = ["gelu", "gelu_tanh", "relu", "swiglu"] as const;
export const ATTN_POSITIONS = ["none", "rope", "rope_interleaved", "alibi"] as const;
export const MODEL_POSITIONS = [
  "learned",
  "sinusoidal",
  "rope",
  "rope_interleaved",
  "alibi",
  "none",
] as const;

const BLOCK_HYPER = [
  { name: "H", kind: "integer", dim: true, doc: "query heads" },
  { name: "H_kv", kind: "integer", dim: true, doc: "key/value heads (default H)" },
  { name: "eps", kind: "number", default: 1e-5, values: [1e-5, 1e-3, 0.1], doc: "norm ε" },
  { name: "causal", kind: "boolean", default: true, inModel: false, doc: "causal attention" },
  {
    name: "window",
    kind: "integer",
    default: 0,
    held: true,
    doc: "sliding-window attention: each position sees its w most recent positions (Mistral sliding_window); 0 = none",
  },
  {
    name: "softcap",
    kind: "number",
    default: 0,
    held: true,
    doc: "attention score cap c·tanh(s/c) (Gemma 2 attn_logit_softcapping); 0 = none",
  },
  { name: "norm", kind: "enum", choices: NORMS, default: "layer_norm", doc: "normalisation" },
  {
    name: "placement",
    kind: "enum",
    choices: PLACEMENTS,
    default: "post",
    doc: "post-LN (seed), pre-LN (GPT-2), sandwich",
  },
  {
    name: "activation",
    kind: "enum",
    choices: BLOCK_ACTIVATIONS,
    default: "gelu",
    doc: "FFN activation (swiglu: gated FFN without biases)",
  },
  {
    name: "positions",
    kind: "enum",
    choices: ATTN_POSITIONS,
    default: "none",
    doc: "positions inside attention",
  },
  { name: "rope_base", kind: "number", default: 10000, values: [10000, 100], doc: "RoPE base" },
  {
    name: "rotary_dims",
    kind: "integer",
    dim: true,
    inModel: false,
    doc:
      "RoPE on the first r dims of each head only (GPT-NeoX rotary_ndims = " +
      "int(rotary_pct·d_k), HF partial_rotary_factor); default d_k",
  },
  {
    name: "position_ids",
    kind: "boolean",
    default: false,
    held: true,
    inModel: false,
    doc:
      "RoPE (and learned) positions from the input position_ids [..., n] (HF " +
      "position_ids: left padding, packed sequences)",
  },
  { name: "bias", kind: "boolean", default: true, doc: "linear layers have biases" },
  {
    name: "parallel",
    kind: "boolean",
    default: false,
    doc: "GPT-J form x + attn(ln_1 x) + mlp(ln_1 x) (pre placement only)",
  },
  {
    name: "dropout",
    kind: "number",
    default: 0,
    inModel: false,
    doc:
      "dropout p at GPT-2's places (attention weights, both residual " +
      "branches; gpt: also the embedding) with the keep masks as inputs " +
      "(training); 0 = none",
  },
  {
    name: "kv_cache",
    kind: "boolean",
    default: false,
    held: true,
    inModel: false,
    doc: "take past_k/past_v and also return k, v",
  },
] as const satisfies readonly HyperSpec[];

type BlockConfig = ConfigOf<typeof BLOCK_HYPER>;

/** The parameters of one block, named as in a GPT-2 checkpoint (no `h.{l}.` prefix). */
export function blockParams(cfg: Config): ArgSpec[] {
  const ln = cfg["norm"] === "layer_norm";
  const bias = cfg["bias"] !== false;
  const norm = (k: string): ArgSpec[] => [
    { name: `${k}.weight`, shape: ["d_model"], role: "param", doc: `${k} scale γ` },
    ...(ln
      ? [{ name: `${k}.bias`, shape: ["d_model"], role: "param", doc: `${k} shift β` } as ArgSpec]
      : []),
  ];
  const qkv = "(H+2*H_kv)*d_k";
  const out: ArgSpec[] = [
    ...norm("ln_1"),
    {
      name: "attn.c_attn.weight",
      shape: ["d_model", qkv],
      role: "param",
      doc: "W_Q | W_K | W_V, (in, out)",
    },
    ...(bias
      ? [
          {
            name: "attn.c_attn.bias",
            shape: [qkv],
            role: "param",
            doc: "b_Q | b_K | b_V",
          } as ArgSpec,
        ]
      : []),
    { name: "attn.c_proj.weight", shape: ["d_model", "d_model"], role: "param", doc: "W_O" },
    ...(bias
      ? [{ name: "attn.c_proj.bias", shape: ["d_model"], role: "param", doc: "b_O" } as ArgSpec]
      : []),
  ];
  if (cfg["parallel"] !== true) out.push(...norm("ln_2"));
  if (cfg["activation"] === "swiglu") {
    out.push(
      { name: "mlp.gate_proj.weight", shape: ["d_model", "d_ff"], role: "param", doc: "W_gate" },
      { name: "mlp.up_proj.weight", shape: ["d_model", "d_ff"], role: "param", doc: "W_up" },
      { name: "mlp.down_proj.weight", shape: ["d_ff", "d_model"], role: "param", doc: "W_down" },
    );
  } else {
    out.push({ name: "mlp.c_fc.weight", shape: ["d_model", "d_ff"], role: "param", doc: "W_1" });
    if (bias) out.push({ name: "mlp.c_fc.bias", shape: ["d_ff"], role: "param", doc: "b_1" });
    out.push({ name: "mlp.c_proj.weight", shape: ["d_ff", "d_model"], role: "param", doc: "W_2" });
    if (bias) out.push({ name: "mlp.c_proj.bias", shape: ["d_model"], role: "param", doc: "b_2" });
  }
  if (cfg["placement"] === "sandwich") out.push(...norm("ln_3"), ...norm("ln_4"));
  return out;
}

/** The switches of a block (and of gpt, which passes them on) that only hold together. */
function checkBlockSwitches(cfg: Config): string | undefined {
  return cfg["parallel"] === true && cfg["placement"] !== "pre"
    ? `parallel attention + FFN is defined for placement "pre" only (GPT-J), ` +
        `got "${String(cfg["placement"])}"`
    : undefined;
}

function checkBlockConfig(cfg: Config, where: string): void {
  if (typeof cfg["H"] !== "number")
    throw new FormulaError(`${where}: hyperparameter H (heads) is required`);
}

/** The block body over named parameters `p` (names without prefix). */
export function blockBody(
  x: Expr,
  p: Readonly<Record<string, Expr>>,
  cfg: BlockConfig,
  past?: { k: Expr; v: Expr },
): { y: Expr; k?: Expr; v?: Expr } {
  const H = cfg.H;
  if (typeof H !== "number") throw new FormulaError("a block needs the head count H as a number");
  const Hkv = typeof cfg.H_kv === "number" ? cfg.H_kv : H;
  const eps = cfg.eps;
  const norm = (k: string, h: Expr): Expr =>
    cfg["norm"] === "layer_norm"
      ? call1("layer_norm", { x: h, gamma: p[`${k}.weight`]!, beta: p[`${k}.bias`]! }, { eps })
      : call1("rms_norm", { x: h, gamma: p[`${k}.weight`]! }, { eps });

  const D: Dim = x.shape[x.shape.length - 1]!;
  const Dkv = `${Hkv}*(${dimToString(D)}/${H})`;
  const Ds = dimToString(D);
  const cAttn = p["attn.c_attn.weight"]!;
  const cAttnB = p["attn.c_attn.bias"];
  const cols = (t: Expr, start: string, size: string) => slice(t, -1, start, size);
  let kv: { k: Expr; v: Expr } | undefined;
  const attn = (h: Expr): Expr => {
    const args: Record<string, Expr> = {
      x: h,
      W_Q: cols(cAttn, "0", Ds),
      W_K: cols(cAttn, Ds, Dkv),
      W_V: cols(cAttn, `${Ds}+${Dkv}`, Dkv),
      W_O: p["attn.c_proj.weight"]!,
    };
    if (cAttnB !== undefined) {
      args["b_Q"] = cols(cAttnB, "0", Ds);
      args["b_K"] = cols(cAttnB, Ds, Dkv);
      args["b_V"] = cols(cAttnB, `${Ds}+${Dkv}`, Dkv);
      args["b_O"] = p["attn.c_proj.bias"]!;
    }
    // the block's own attention switches, as mha declares them; the projections' bias: the weights'
    const mhaCfg: Record<string, HyperValue> = {
      ...sharedConfig("mha", cfg),
      H_kv: Hkv,
      bias: cAttnB !== undefined,
    };
    if (cfg["position_ids"] === true) args["position_ids"] = p["position_ids"]!;
    if (cfg.dropout > 0) args["attn_dropout_mask"] = p["dropout.attn"]!;
    if (past === undefined) {
      return dropBranch(call1("mha", args, { ...mhaCfg, kv_cache: false }), "dropout.attn_out");
    }
    const outs = callFormula(
      "mha",
      { ...args, past_k: past.k, past_v: past.v },
      { ...mhaCfg, kv_cache: true },
    );
    kv = { k: outs["k"]!, v: outs["v"]! };
    return outs["y"]!;
  };
  // GPT-2's resid_dropout on each branch output before the residual sum
  const dropBranch = (y: Expr, mask: string): Expr => {
    return cfg.dropout > 0
      ? call1("dropout", { x: y, keep_mask: p[mask]! }, { p: cfg.dropout })
      : y;
  };
  const mlp = (h: Expr): Expr => dropBranch(mlpBody(h), "dropout.mlp_out");
  const mlpBody = (h: Expr): Expr => {
    if (cfg["activation"] === "swiglu") {
      return call1("swiglu", {
        x: h,
        W_gate: p["mlp.gate_proj.weight"]!,
        W_up: p["mlp.up_proj.weight"]!,
        W_down: p["mlp.down_proj.weight"]!,
      });
    }
    if (p["mlp.c_fc.bias"] !== undefined) {
      return call1(
        "ffn",
        {
          x: h,
          W_1: p["mlp.c_fc.weight"]!,
          b_1: p["mlp.c_fc.bias"]!,
          W_2: p["mlp.c_proj.weight"]!,
          b_2: p["mlp.c_proj.bias"]!,
        },
        { activation: cfg.activation },
      );
    }
    // bias-free FFN: φ(x W_1) W_2
    const a = call1(cfg.activation, {
      x: matmul(h as Expr<["n", "d"]>, p["mlp.c_fc.weight"]! as Expr<["d", "f"]>),
    });
    return matmul(a as Expr<["n", "f"]>, p["mlp.c_proj.weight"]! as Expr<["f", "d"]>);
  };

  let y: Expr;
  if (cfg["parallel"] === true) {
    const h = norm("ln_1", x);
    y = add(add(x, attn(h)), mlp(h));
  } else {
    switch (cfg["placement"]) {
      // Z' names the intermediate as the seed does (Z'^{(l)})
      case "post": {
        const x1 = named(norm("ln_1", add(x, attn(x))), "Z'", "Z'");
        y = norm("ln_2", add(x1, mlp(x1)));
        break;
      }
      case "pre": {
        const x1 = named(add(x, attn(norm("ln_1", x))), "Z'", "Z'");
        y = add(x1, mlp(norm("ln_2", x1)));
        break;
      }
      case "sandwich": {
        const x1 = named(add(x, norm("ln_3", attn(norm("ln_1", x)))), "Z'", "Z'");
        y = add(x1, norm("ln_4", mlp(norm("ln_2", x1))));
        break;
      }
      default:
        throw new FormulaError(`unknown placement ${String(cfg["placement"])}`);
    }
  }
  const res: { y: Expr; k?: Expr; v?: Expr } = { y };
  if (kv !== undefined) Object.assign(res, kv);
  return res;
}

/** d_model = H·d_k, and H_kv = H unless grouped-query attention is asked for. */
const blockRelations = (cfg: Config) => [
  `d_model = ${typeof cfg["H"] === "number" ? cfg["H"] : "H"}*d_k`,
  ...(cfg["H_kv"] === undefined ? ["H_kv = H"] : []),
];

function blockOutputs(cfg: Config): OutputSpec[] {
  return [
    { name: "y", shape: ["...", "n", "d_model"], doc: "block output" },
    ...(cfg["kv_cache"] === true
      ? [
          { name: "k", shape: ["...", "H_kv", "p+n", "d_k"], doc: "keys incl. the new rows" },
          { name: "v", shape: ["...", "H_kv", "p+n", "d_k"], doc: "values incl. the new rows" },
        ]
      : []),
  ];
}

/** Keep masks of a block's dropout (training): attention weights [..., H, n, n] and the two branch outputs. */
function blockDropoutArgs(cfg: { readonly dropout: number }, prefix: string): ArgSpec[] {
  if (!(cfg.dropout > 0)) return [];
  return [
    {
      name: `${prefix}dropout.attn`,
      shape: ["...", "H", "n", "n"],
      role: "input",
      int: true,
      doc: "keep mask of the attention weights (attn_pdrop)",
    },
    {
      name: `${prefix}dropout.attn_out`,
      shape: ["...", "n", "d_model"],
      role: "input",
      int: true,
      doc: "keep mask of the attention branch output (resid_pdrop)",
    },
    {
      name: `${prefix}dropout.mlp_out`,
      shape: ["...", "n", "d_model"],
      role: "input",
      int: true,
      doc: "keep mask of the FFN branch output (resid_pdrop)",
    },
  ];
}

function blockArgs(cfg: BlockConfig): ArgSpec[] {
  return [
    { name: "x", shape: ["...", "n", "d_model"], role: "input", doc: "block input" },
    ...positionIdsArgs(cfg["position_ids"] === true, "RoPE position of each row"),
    ...blockDropoutArgs(cfg, ""),
    ...(cfg["kv_cache"] === true
      ? pastKvArgs(["past_k", "past_v"], ["cached keys", "cached values"])
      : []),
    ...blockParams(cfg),
  ];
}

function blockBuild(name: string) {
  return (a: Readonly<Record<string, Expr>>, cfg: BlockConfig) => {
    checkBlockConfig(cfg, `formula ${name}`);
    const past = cfg["kv_cache"] === true ? { k: a["past_k"]!, v: a["past_v"]! } : undefined;
    const r = blockBody(a["x"]!, a, cfg, past);
    const out: Record<string, Expr> = { y: r.y };
    if (r.k !== undefined) Object.assign(out, { k: r.k, v: r.v! });
    return out;
  };
}

export const blockFormula = defineFormula({
  name: "block",
  example: { H: 2 },
  description:
    "one transformer block: multi-head self-attention and FFN, each with a " +
    "residual connection and a norm, in the chosen placement",
  category: "block",
  hyper: BLOCK_HYPER,
  relations: blockRelations,
  check: checkBlockSwitches,
  args: blockArgs,
  outputs: blockOutputs,
  build: blockBuild("block"),
});

/** The hyperparameters of a block of fixed placement: `block`'s less the ones it implies. */
const fixedHyper = omitHyper(BLOCK_HYPER, ["placement", "norm", "parallel"]);
const POST_LN = { placement: "post", norm: "layer_norm", parallel: false } as const;
const PRE_LN = { placement: "pre", norm: "layer_norm", parallel: false } as const;

/** A fixed-placement block: `block` with the switches of `implied` set, not hyperparameters. */
function fixedBlock<const N extends string>(
  name: N,
  description: string,
  implied: typeof POST_LN | typeof PRE_LN,
) {
  return defineFormula({
    name,
    example: { H: 2 },
    description,
    category: "block",
    hyper: fixedHyper,
    implied,
    relations: blockRelations,
    args: (cfg) => blockArgs({ ...cfg, ...implied }),
    outputs: blockOutputs,
    build: (a, cfg) => blockBuild(name)(a, { ...cfg, ...implied }),
  });
}

export const blockPostLnFormula = fixedBlock(
  "block_post_ln",
  "the seed's block: Z' = LN(Z + MHA(Z)), Z_out = LN(Z' + FFN(Z'))",
  POST_LN,
);

export const blockPreLnFormula = fixedBlock(
  "block_pre_ln",
  "GPT-2's block: Z' = Z + MHA(LN(Z)), Z_out = Z' + FFN(LN(Z'))",
  PRE_LN,
);

// ---------------------------------------------------------------------------------------------
// the model

const GPT_HYPER = [
  { name: "V", kind: "integer", dim: true, sizeOnly: true, doc: "vocabulary size" },
  {
    name: "n_ctx",
    kind: "integer",
    dim: true,
    sizeOnly: true,
    doc: "maximum context (rows of wpe)",
  },
  { name: "d_model", kind: "integer", dim: true, sizeOnly: true, doc: "width" },
  // the graph, its passes and the reference model grow with L; the deepest public GPTs have ~100 blocks
  { name: "L", kind: "integer", values: [1, 2], doc: "blocks", max: 256 },
  { name: "d_ff", kind: "integer", dim: true, sizeOnly: true, doc: "FFN hidden size" },
  ...omitHyper(BLOCK_HYPER, ["positions", "kv_cache"]),
  {
    name: "positions",
    kind: "enum",
    choices: MODEL_POSITIONS,
    default: "learned",
    doc: "learned/sinusoidal are added to the embedding; rope/alibi act inside attention",
  },
  {
    name: "tied",
    kind: "boolean",
    default: true,
    doc: "logits use the embedding matrix (W_vocab = E)",
  },
  ...LOGITS_HYPER,
  {
    name: "kv_cache",
    kind: "boolean",
    default: false,
    held: true,
    inModel: false,
    doc: "decoding step: take past.{l}.k/v, return present.{l}.k/v, no targets or loss",
  },
] as const satisfies readonly HyperSpec[];

function finalNorm(cfg: Config): boolean {
  return cfg["placement"] === "pre" || cfg["placement"] === "sandwich";
}

export function gptParams(cfg: Config): ArgSpec[] {
  const L = cfg["L"];
  if (typeof L !== "number")
    throw new FormulaError("formula gpt: hyperparameter L (number of blocks) is required");
  const out: ArgSpec[] = [
    {
      name: "wte.weight",
      shape: ["V", "d_model"],
      role: "param",
      doc: "token embedding E",
      latex: "E",
    },
  ];
  if (cfg["positions"] === "learned")
    out.push({
      name: "wpe.weight",
      shape: ["n_ctx", "d_model"],
      role: "param",
      doc: "learned positions P",
    });
  const block = blockParams(cfg);
  for (let l = 0; l < L; l++) {
    for (const p of block) out.push({ ...p, name: LAYERS.prefix(l) + p.name });
  }
  if (finalNorm(cfg)) {
    out.push({ name: "ln_f.weight", shape: ["d_model"], role: "param", doc: "final norm γ" });
    if (cfg["norm"] === "layer_norm")
      out.push({ name: "ln_f.bias", shape: ["d_model"], role: "param", doc: "final norm β" });
  }
  if (cfg["tied"] === false)
    out.push({
      name: "lm_head.weight",
      shape: ["V", "d_model"],
      role: "param",
      doc: "W_vocab (untied)",
    });
  return out;
}

function attnPositions(cfg: Config): string {
  const p = cfg.positions;
  return p === "rope" || p === "rope_interleaved" || p === "alibi" ? p : "none";
}

export const gptFormula = defineFormula({
  name: "gpt",
  example: { V: 11, n_ctx: 9, d_model: 6, L: 2, d_ff: 10, H: 2 },
  description:
    "the whole model: tokens → E[t] (+ P) → L blocks → (final norm) → " +
    "logits Z W_vocabᵀ → mean cross-entropy against the targets",
  category: "model",
  hyper: GPT_HYPER,
  relations: blockRelations,
  check: checkBlockSwitches,
  args: (cfg) => [
    {
      name: "tokens",
      shape: ["...", "n"],
      role: "input",
      int: true,
      doc: "token ids t",
      latex: "t",
    },
    ...positionIdsArgs(
      cfg["position_ids"] === true,
      "position of each token (learned positions: the wpe row; RoPE: the angle)",
    ),
    ...(cfg["kv_cache"] === true
      ? Array.from({ length: required(cfg.L, "gpt", "L") }, (_, l) =>
          pastKvArgs(
            [`past.${l}.k`, `past.${l}.v`],
            [`block ${l} cached keys`, `block ${l} cached values`],
          ),
        ).flat()
      : [
          {
            name: "targets",
            shape: ["...", "n"],
            role: "input",
            int: true,
            doc: "next-token ids (already shifted)",
          } as ArgSpec,
        ]),
    ...(cfg.dropout > 0 && cfg["kv_cache"] !== true
      ? [
          {
            name: "dropout.embd",
            shape: ["...", "n", "d_model"],
            role: "input",
            int: true,
            doc: "keep mask of the embedding (embd_pdrop)",
          } as ArgSpec,
          ...Array.from({ length: required(cfg.L, "gpt", "L") }, (_, l) =>
            blockDropoutArgs(cfg, LAYERS.prefix(l)),
          ).flat(),
        ]
      : []),
    ...gptParams(cfg),
  ],
  outputs: (cfg) =>
    cfg["kv_cache"] === true
      ? [
          { name: "logits", shape: ["...", "n", "V"], doc: "next-token logits" },
          ...Array.from({ length: required(cfg.L, "gpt", "L") }, (_, l) => [
            {
              name: `present.${l}.k`,
              shape: ["...", "H_kv", "p+n", "d_k"],
              doc: `block ${l} keys`,
            },
            {
              name: `present.${l}.v`,
              shape: ["...", "H_kv", "p+n", "d_k"],
              doc: `block ${l} values`,
            },
          ]).flat(),
        ]
      : [
          { name: "logits", shape: ["...", "n", "V"], doc: "next-token logits" },
          { name: "loss", shape: [], doc: "mean cross-entropy" },
        ],
  // the loss cancels like cross_entropy's, on the logits the model computed
  cancelled: ({ outputs }, cfg): Record<string, number> =>
    cfg.kv_cache === true ? {} : { loss: lossCancelled(outputs["logits"]) },
  build: (a, cfg) => {
    checkBlockConfig(cfg, "formula gpt");
    const L = required(cfg.L, "gpt", "L");
    const cache = cfg["kv_cache"] === true;
    const tokens = a["tokens"]!;
    const n = dimToString(tokens.shape[tokens.shape.length - 1]!);
    const offset = cache
      ? dimToString(a["past.0.k"]!.shape[a["past.0.k"]!.shape.length - 2]!)
      : "0";
    let x: Expr = call1("embedding", { tokens, E: a["wte.weight"]! });
    const ids = cfg["position_ids"] === true;
    if (
      ids &&
      cfg["positions"] !== "learned" &&
      cfg["positions"] !== "rope" &&
      cfg["positions"] !== "rope_interleaved"
    ) {
      throw new FormulaError(
        `formula gpt: position_ids apply to learned and RoPE positions, not ${String(cfg["positions"])}`,
      );
    }
    // learned positions with ids are the wpe rows the ids pick (HF GPT-2's wpe(position_ids))
    if (cfg["positions"] === "learned")
      x = add(
        x,
        ids
          ? call1("embedding", { tokens: a["position_ids"]!, E: a["wpe.weight"]! })
          : call1("positional_learned", { P: a["wpe.weight"]! }, { n, offset }),
      );
    if (cfg["positions"] === "sinusoidal")
      x = add(x, call1("positional_sinusoidal", {}, { n, d_model: "d_model", offset }));
    const pDrop = cfg.dropout;
    if (pDrop > 0 && cache)
      throw new FormulaError(
        "formula gpt: dropout is a training-time switch; it does not combine with kv_cache decoding",
      );
    if (pDrop > 0) x = call1("dropout", { x, keep_mask: a["dropout.embd"]! }, { p: pDrop });
    x = named(x, "Z^{(0)}", "Z⁽⁰⁾");
    const blockCfg: Record<string, HyperValue> = {};
    for (const h of BLOCK_HYPER) if (cfg[h.name] !== undefined) blockCfg[h.name] = cfg[h.name]!;
    blockCfg["positions"] = attnPositions(cfg);
    // position_ids reach the blocks only for RoPE (learned positions took them above)
    blockCfg["position_ids"] = ids && cfg["positions"] !== "learned";
    const outs: Record<string, Expr> = {};
    for (let l = 0; l < L; l++) {
      const p: Record<string, Expr> = {
        x,
        ...(ids && cfg["positions"] !== "learned" ? { position_ids: a["position_ids"]! } : {}),
      };
      for (const s of blockParams(cfg)) p[s.name] = a[LAYERS.prefix(l) + s.name]!;
      for (const s of blockDropoutArgs(cfg, "")) p[s.name] = a[LAYERS.prefix(l) + s.name]!;
      if (cache) {
        const r = callFormula(
          "block",
          { ...p, past_k: a[`past.${l}.k`]!, past_v: a[`past.${l}.v`]! },
          { ...blockCfg, kv_cache: true },
        );
        x = r["y"]!;
        outs[`present.${l}.k`] = r["k"]!;
        outs[`present.${l}.v`] = r["v"]!;
      } else {
        x = named(call1("block", p, blockCfg), `Z^{(${l + 1})}`, `Z⁽${superscript(l + 1)}⁾`);
      }
    }
    if (finalNorm(cfg)) {
      const eps = cfg.eps;
      x =
        cfg["norm"] === "layer_norm"
          ? call1("layer_norm", { x, gamma: a["ln_f.weight"]!, beta: a["ln_f.bias"]! }, { eps })
          : call1("rms_norm", { x, gamma: a["ln_f.weight"]! }, { eps });
    }
    const logits = call1(
      "logits",
      { x, W_vocab: cfg["tied"] === false ? a["lm_head.weight"]! : a["wte.weight"]! },
      sharedConfig("logits", cfg),
    );
    if (cache) return { logits, ...outs } as Record<string, Expr>;
    return { logits, loss: call1("cross_entropy", { logits, targets: a["targets"]! }) };
  },
});

function superscript(k: number): string {
  return String(k).replace(/\d/g, (d) => "⁰¹²³⁴⁵⁶⁷⁸⁹"[Number(d)]!);
}
