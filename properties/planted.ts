/**
 * Planted bugs: broken implementations of real kinds, to prove the laws have teeth. Each is an
 * Implementation that delegates every formula to the reference except the broken one(s), which
 * are written here by hand in plain TypeScript (float64 arithmetic, rounded to the requested
 * dtype on return) with the bug in them. The laws must catch every one without golden files.
 */
import "../spec/index.js";
import type { BackwardRequest, BackwardResult, FormulaConfig, ForwardRequest, ForwardResult, Implementation } from "../autodiff/implementation.js";
import { Tensor, sizeOf, type DType, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import { hyperKeys } from "../spec/configs.js";
import { referenceImplementation } from "../reference/implementation.js";
import { gatherAxis, mapT } from "./tensor-ops.js";

// ---------------------------------------------------------------------------------------------
// Hand-written kernels (float64), each with switches for the planted mistakes

function floatDtype(req: ForwardRequest): FloatDType {
  const d = req.config["dtype"];
  if (d === "f32" || d === "f64") return d;
  for (const t of Object.values(req.inputs)) if (t.dtype === "f32") return "f32";
  return "f64";
}

function out(shape: readonly number[], values: ArrayLike<number>, dtype: DType): Tensor {
  const t = Tensor.zeros(shape, dtype);
  for (let i = 0; i < t.size; i++) t.data[i] = values[i]!;
  return t;
}

/** Rows of the last axis: softmax, optionally without subtracting the row max (overflows for large scores). */
function softmaxRows(x: ArrayLike<number>, m: number, subtractMax: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += m) {
    let mx = -Infinity;
    for (let j = 0; j < m; j++) mx = Math.max(mx, x[o + j]!);
    const shift = !subtractMax || mx === -Infinity ? 0 : mx;
    let s = 0;
    for (let j = 0; j < m; j++) {
      const e = Math.exp(x[o + j]! - shift);
      y[o + j] = e;
      s += e;
    }
    if (s === 0) continue; // a fully masked row stays zero
    for (let j = 0; j < m; j++) y[o + j] = y[o + j]! / s;
  }
  return y;
}

/** ALiBi slopes of Press et al. for H heads (non-powers of two interleave the 2c schedule). */
function alibiSlopes(H: number): number[] {
  const c = 2 ** Math.floor(Math.log2(H));
  return Array.from({ length: H }, (_, h) => (h < c ? 2 ** ((-8 * (h + 1)) / c) : 2 ** ((-4 * (2 * (h - c) + 1)) / c)));
}

interface AttentionOptions {
  readonly causal: boolean;
  readonly scale: number;
  /** Extra keys a query may see beyond the causal boundary (0 is correct). */
  readonly peek: number;
  /** Per-head ALiBi slopes (head = index along the axis before n), or none. */
  readonly slopes?: readonly number[];
  /** Soft cap c (0 = none): scores c·tanh(s/c), or c·tanh(s) when `capWithoutDivision`. */
  readonly softcap?: number;
  readonly capWithoutDivision?: boolean;
}

/** softmax(s·Q Kᵀ + bias + M) V over leading batch axes, bottom-right aligned mask. */
function attention(Q: Tensor, K: Tensor, V: Tensor, o: AttentionOptions): Float64Array {
  const n = Q.shape.at(-2)!;
  const d = Q.shape.at(-1)!;
  const m = K.shape.at(-2)!;
  const dv = V.shape.at(-1)!;
  const B = sizeOf(Q.shape.slice(0, -2));
  const y = new Float64Array(B * n * dv);
  const s = new Float64Array(m);
  for (let b = 0; b < B; b++) {
    const slope = o.slopes === undefined ? 0 : o.slopes[b % o.slopes.length]!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        let dot = 0;
        for (let k = 0; k < d; k++) dot += Q.data[(b * n + i) * d + k]! * K.data[(b * m + j) * d + k]!;
        const hidden = o.causal && j > i + (m - n) + o.peek;
        const c = o.softcap ?? 0;
        const sc = c > 0 ? c * Math.tanh(o.capWithoutDivision === true ? o.scale * dot : (o.scale * dot) / c) : o.scale * dot;
        s[j] = hidden ? -Infinity : sc + slope * (j - i - (m - n));
      }
      const p = softmaxRows(s, m, true);
      for (let c = 0; c < dv; c++) {
        let acc = 0;
        for (let j = 0; j < m; j++) acc += p[j]! * V.data[(b * m + j) * dv + c]!;
        y[(b * n + i) * dv + c] = acc;
      }
    }
  }
  return y;
}

/** RoPE on [..., n, d] rows at positions offset … offset + n − 1. */
function rope(x: Tensor, offset: number, base: number, convention: string, swapSinCos: boolean): Tensor {
  const n = x.shape.at(-2)!;
  const d = x.shape.at(-1)!;
  const h = d / 2;
  const y = Tensor.zeros(x.shape, "f64");
  for (let r = 0; r < x.size / d; r++) {
    const pos = offset + (r % n);
    for (let i = 0; i < h; i++) {
      const theta = pos * base ** ((-2 * i) / d);
      const [c, s] = swapSinCos ? [Math.sin(theta), Math.cos(theta)] : [Math.cos(theta), Math.sin(theta)];
      const [a, b] = convention === "half" ? [i, i + h] : [2 * i, 2 * i + 1];
      const x1 = x.data[r * d + a]!;
      const x2 = x.data[r * d + b]!;
      y.data[r * d + a] = x1 * c - x2 * s;
      y.data[r * d + b] = x2 * c + x1 * s;
    }
  }
  return y;
}

interface RopeOptions {
  readonly offset: number;
  readonly base: number;
  readonly convention: string;
  /** Leading dims that rotate (default all). */
  readonly rotaryDims?: number;
  /** Position of each row ([..., n], flattened), instead of offset + row. */
  readonly ids?: Tensor;
  /** Frequencies base^(−2i/d_k) over the whole head instead of over the rotated dims (the bug). */
  readonly freqOverDk?: boolean;
  /** position_ids read but not used: rows at offset + row (the bug). */
  readonly ignoreIds?: boolean;
}

/** RoPE on [..., n, d] rows, the first r dims rotating (GPT-NeoX partial rotary), positions from ids or the offset. */
function ropeRows(x: Tensor, o: RopeOptions): Tensor {
  const n = x.shape.at(-2)!;
  const d = x.shape.at(-1)!;
  const r = o.rotaryDims ?? d;
  const h = r / 2;
  const y = x.to("f64").clone();
  const rowsPerId = o.ids === undefined ? 1 : x.size / d / o.ids.size;
  for (let row = 0; row < x.size / d; row++) {
    // ids [..., n] are shared by any axes x has between their batch and its rows (heads)
    const idRow = Math.floor(row / n / rowsPerId) * n + (row % n);
    const pos = o.ids === undefined || o.ignoreIds === true ? o.offset + (row % n) : o.ids.data[idRow]!;
    for (let i = 0; i < h; i++) {
      const theta = pos * o.base ** ((-2 * i) / (o.freqOverDk === true ? d : r));
      const [a, b] = o.convention === "half" ? [i, i + h] : [2 * i, 2 * i + 1];
      const x1 = x.data[row * d + a]!;
      const x2 = x.data[row * d + b]!;
      y.data[row * d + a] = x1 * Math.cos(theta) - x2 * Math.sin(theta);
      y.data[row * d + b] = x2 * Math.cos(theta) + x1 * Math.sin(theta);
    }
  }
  return y;
}

function ropeBug(bugs: Pick<RopeOptions, "freqOverDk" | "ignoreIds">) {
  return async (req: ForwardRequest): Promise<NamedTensors | undefined> => {
    if (req.formula !== "rope") return undefined;
    const c = req.config;
    const x = req.inputs["x"]!;
    const y = ropeRows(x, {
      offset: Number(c["offset"] ?? 0),
      base: Number(c["base"] ?? 10000),
      convention: String(c["convention"] ?? "half"),
      ...(typeof c["rotary_dims"] === "number" ? { rotaryDims: c["rotary_dims"] } : {}),
      ...(req.inputs["position_ids"] !== undefined ? { ids: req.inputs["position_ids"] } : {}),
      ...bugs,
    });
    return { y: y.to(floatDtype(req)) };
  };
}

/** dropout y = m ⊙ x/(1 − p), or m ⊙ x without the scale (the original paper's training-time form) when `unscaled`. */
function dropoutBug(unscaled: boolean) {
  return async (req: ForwardRequest): Promise<NamedTensors | undefined> => {
    if (req.formula !== "dropout") return undefined;
    const { x, keep_mask } = req.inputs as Record<string, Tensor>;
    const p = Number(req.config["p"] ?? 0.5);
    const s = unscaled ? 1 : p < 1 ? 1 / (1 - p) : 0;
    return { y: out(x!.shape, Array.from(x!.data, (v, i) => (keep_mask!.data[i] !== 0 ? v * s : 0)), floatDtype(req)) };
  };
}

/** x W (+ b) over the last axis. */
function linear(x: Tensor, W: Tensor, b: Tensor | undefined): Tensor {
  const k = W.shape[0]!;
  const m = W.shape[1]!;
  const rows = x.size / k;
  const y = Tensor.zeros([...x.shape.slice(0, -1), m], "f64");
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < m; j++) {
      let s = b === undefined ? 0 : b.data[j]!;
      for (let i = 0; i < k; i++) s += x.data[r * k + i]! * W.data[i * m + j]!;
      y.data[r * m + j] = s;
    }
  return y;
}

interface MhaBugs {
  readonly scaleByDModel?: boolean;
  /** Head h = columns h, h + H, h + 2H, … instead of the block h·d_k … */
  readonly interleavedHeads?: boolean;
  readonly ropeOnValues?: boolean;
  /** Query head h uses KV head h mod H_kv instead of ⌊h / (H/H_kv)⌋. */
  readonly tiledKvHeads?: boolean;
}

/** Multi-head attention written out: projections, head split, RoPE, GQA, attention, merge, W_O. */
function mha(a: NamedTensors, cfg: FormulaConfig, bugs: MhaBugs): NamedTensors {
  const x = a["x"]!;
  const D = x.shape.at(-1)!;
  const n = x.shape.at(-2)!;
  const pre = x.shape.slice(0, -2);
  const B = sizeOf(pre);
  const H = Number(cfg["H"]);
  const Hkv = typeof cfg["H_kv"] === "number" ? cfg["H_kv"] : H;
  const dk = D / H;
  const G = H / Hkv;
  const col = (h: number, j: number, heads: number) => (bugs.interleavedHeads === true ? h + heads * j : h * dk + j);
  // (..., n, heads·d_k) → (B, heads, n, d_k)
  const split = (t: Tensor, heads: number) => {
    const s = Tensor.zeros([B, heads, n, dk], "f64");
    for (let b = 0; b < B; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < n; i++) for (let j = 0; j < dk; j++) s.data[((b * heads + h) * n + i) * dk + j] = t.data[(b * n + i) * heads * dk + col(h, j, heads)]!;
    return s;
  };
  let Q = split(linear(x, a["W_Q"]!, a["b_Q"]), H);
  let K = split(linear(x, a["W_K"]!, a["b_K"]), Hkv);
  let V = split(linear(x, a["W_V"]!, a["b_V"]), Hkv);
  const past = cfg["kv_cache"] === true ? a["past_k"]!.shape.at(-2)! : 0;
  const offset = cfg["kv_cache"] === true && cfg["offset"] === 0 ? past : Number(cfg["offset"] ?? 0);
  const positions = String(cfg["positions"] ?? "none");
  if (positions === "rope" || positions === "rope_interleaved") {
    const conv = positions === "rope" ? "half" : "interleaved";
    const base = Number(cfg["rope_base"] ?? 10000);
    Q = rope(Q, offset, base, conv, false);
    K = rope(K, offset, base, conv, false);
    if (bugs.ropeOnValues === true) V = rope(V, offset, base, conv, false);
  }
  if (cfg["kv_cache"] === true) {
    const cat = (p: Tensor, t: Tensor) => {
      const m = past + n;
      const c = Tensor.zeros([B, Hkv, m, dk], "f64");
      for (let bh = 0; bh < B * Hkv; bh++) {
        for (let i = 0; i < past; i++) for (let j = 0; j < dk; j++) c.data[(bh * m + i) * dk + j] = p.data[(bh * past + i) * dk + j]!;
        for (let i = 0; i < n; i++) for (let j = 0; j < dk; j++) c.data[(bh * m + past + i) * dk + j] = t.data[(bh * n + i) * dk + j]!;
      }
      return c;
    };
    K = cat(a["past_k"]!, K);
    V = cat(a["past_v"]!, V);
  }
  const m = K.shape.at(-2)!;
  const kvHead = (h: number) => (bugs.tiledKvHeads === true ? h % Hkv : Math.floor(h / G));
  const rep = (t: Tensor) => {
    const r = Tensor.zeros([B, H, m, dk], "f64");
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) r.data.set(t.data.subarray((b * Hkv + kvHead(h)) * m * dk, (b * Hkv + kvHead(h) + 1) * m * dk), (b * H + h) * m * dk);
    return r;
  };
  const scale = 1 / Math.sqrt(bugs.scaleByDModel === true ? D : dk);
  const heads = attention(Q, rep(K), rep(V), { causal: cfg["causal"] !== false, scale, peek: 0, ...(positions === "alibi" ? { slopes: alibiSlopes(H) } : {}) });
  // (B, H, n, d_k) → (..., n, D), the inverse of the split
  const O = Tensor.zeros([...pre, n, D], "f64");
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < n; i++) for (let j = 0; j < dk; j++) O.data[(b * n + i) * D + col(h, j, H)] = heads[((b * H + h) * n + i) * dk + j]!;
  const res: NamedTensors = { y: linear(O, a["W_O"]!, a["b_O"]) };
  if (cfg["kv_cache"] === true) {
    res["k"] = K.reshape([...pre, Hkv, m, dk]);
    res["v"] = V.reshape([...pre, Hkv, m, dk]);
  }
  return res;
}

interface NormBugs {
  readonly unbiased?: boolean;
  readonly epsOutsideSqrt?: boolean;
}

/** LayerNorm rows: μ, σ², x̂, γ x̂ + β. */
function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number, bugs: NormBugs): Float64Array {
  const d = x.shape.at(-1)!;
  const y = new Float64Array(x.size);
  for (let o = 0; o < x.size; o += d) {
    let mu = 0;
    for (let j = 0; j < d; j++) mu += x.data[o + j]!;
    mu /= d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x.data[o + j]! - mu) ** 2;
    v /= bugs.unbiased === true ? d - 1 : d;
    const denom = bugs.epsOutsideSqrt === true ? Math.sqrt(v) + eps : Math.sqrt(v + eps);
    for (let j = 0; j < d; j++) y[o + j] = gamma.data[j]! * ((x.data[o + j]! - mu) / denom) + beta.data[j]!;
  }
  return y;
}

/** LayerNorm's VJP with the x̂·mean(ĝ ⊙ x̂) term of x̄ left out. */
function layerNormBackwardMissingTerm(x: Tensor, gamma: Tensor, eps: number, cot: Tensor): NamedTensors {
  const d = x.shape.at(-1)!;
  const gx = new Float64Array(x.size);
  const gg = new Float64Array(d);
  const gb = new Float64Array(d);
  for (let o = 0; o < x.size; o += d) {
    let mu = 0;
    for (let j = 0; j < d; j++) mu += x.data[o + j]!;
    mu /= d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x.data[o + j]! - mu) ** 2;
    const rstd = 1 / Math.sqrt(v / d + eps);
    let meanG = 0;
    for (let j = 0; j < d; j++) meanG += (cot.data[o + j]! * gamma.data[j]!) / d;
    for (let j = 0; j < d; j++) {
      const xhat = (x.data[o + j]! - mu) * rstd;
      gx[o + j] = rstd * (cot.data[o + j]! * gamma.data[j]! - meanG);
      gg[j] = gg[j]! + cot.data[o + j]! * xhat;
      gb[j] = gb[j]! + cot.data[o + j]!;
    }
  }
  return { x: out(x.shape, gx, x.dtype), gamma: out([d], gg, gamma.dtype), beta: out([d], gb, gamma.dtype) };
}

/** RMSNorm that also subtracts the row mean (a LayerNorm without β under RMSNorm's name). */
function rmsNormCentred(x: Tensor, gamma: Tensor, eps: number): Float64Array {
  const d = x.shape.at(-1)!;
  const y = new Float64Array(x.size);
  for (let o = 0; o < x.size; o += d) {
    let mu = 0;
    for (let j = 0; j < d; j++) mu += x.data[o + j]! / d;
    let ms = 0;
    for (let j = 0; j < d; j++) ms += (x.data[o + j]! - mu) ** 2 / d;
    for (let j = 0; j < d; j++) y[o + j] = (gamma.data[j]! * (x.data[o + j]! - mu)) / Math.sqrt(ms + eps);
  }
  return y;
}

/** P[i, 2k] = sin, P[i, 2k+1] = cos of i/10000^(2k/d) — or swapped. */
function sinusoidal(n: number, d: number, offset: number, swapped: boolean): Float64Array {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < d; c++) {
      const k = Math.floor(c / 2);
      const angle = (offset + i) / 10000 ** ((2 * k) / d);
      const even = c % 2 === 0;
      y[i * d + c] = even !== swapped ? Math.sin(angle) : Math.cos(angle);
    }
  return y;
}

// ---------------------------------------------------------------------------------------------
// The bugs

/** One planted bug: which formulas it breaks and how. */
export interface PlantedBug {
  readonly name: string;
  /** What is wrong, in the words of a code review. */
  readonly description: string;
  /** The formulas whose hand-written version carries the bug. */
  readonly formulas: readonly string[];
  /**
   * Laws (oracle excluded) that caught it in the run recorded in docs/PLANTED-BUGS.md;
   * planted.test.ts asserts that at least one of them still does.
   */
  readonly caughtBy: readonly string[];
  /** A broken forward, or undefined to use the reference. */
  readonly forward?: (req: ForwardRequest, ref: Implementation) => Promise<NamedTensors | undefined>;
  /** A broken backward, or undefined to use the reference. */
  readonly backward?: (req: BackwardRequest, ref: Implementation) => Promise<NamedTensors | undefined>;
}

const cast = (outs: NamedTensors, dtype: FloatDType): NamedTensors => {
  const r: NamedTensors = {};
  for (const [k, v] of Object.entries(outs)) r[k] = v.dtype === "i32" || v.dtype === dtype ? v : v.to(dtype);
  return r;
};

/** The hand-written softmax runs over the last axis; another axis is left to the reference. */
const lastAxis = (c: FormulaConfig): boolean => Number(c["axis"] ?? -1) === -1;

/** Conventions the hand-written attention does not implement (it leaves them to the reference). */
function otherConventions(c: FormulaConfig): boolean {
  return (c["mask"] ?? "none") !== "none" || (c["causal_align"] ?? "bottom_right") !== "bottom_right" || Number(c["window"] ?? 0) > 0 || c["scale"] !== undefined || c["H_kv"] !== undefined;
}

function attentionBug(peek: number, causal: "config" | "never", capWithoutDivision = false) {
  return async (req: ForwardRequest): Promise<NamedTensors | undefined> => {
    if (req.formula !== "attention" || otherConventions(req.config)) return undefined;
    const { Q, K, V } = req.inputs as Record<string, Tensor>;
    const c = req.config;
    const H = Number(c["H"] ?? 1);
    const y = attention(Q!, K!, V!, {
      causal: causal === "config" ? c["causal"] !== false : false,
      scale: 1 / Math.sqrt(Q!.shape.at(-1)!),
      peek,
      softcap: Number(c["softcap"] ?? 0),
      capWithoutDivision,
      ...(c["alibi"] === true ? { slopes: alibiSlopes(H) } : {}),
    });
    return { y: out([...Q!.shape.slice(0, -1), V!.shape.at(-1)!], y, floatDtype(req)) };
  };
}

function mhaBug(bugs: MhaBugs) {
  return async (req: ForwardRequest): Promise<NamedTensors | undefined> => (req.formula === "mha" ? cast(mha(req.inputs, req.config, bugs), floatDtype(req)) : undefined);
}

function layerNormBug(bugs: NormBugs) {
  return async (req: ForwardRequest): Promise<NamedTensors | undefined> => {
    if (req.formula !== "layer_norm" || req.config["bias"] === false || Number(req.config["normalized_axes"] ?? 1) !== 1) return undefined;
    const { x, gamma, beta } = req.inputs as Record<string, Tensor>;
    return { y: out(x!.shape, layerNorm(x!, gamma!, beta!, Number(req.config["eps"] ?? 1e-5), bugs), floatDtype(req)) };
  };
}


/**
 * The model written out of reference sub-formulas: embedding, positions, blocks, final norm,
 * logits, loss. `positions`: "added" (correct), "skipped" (learned/sinusoidal never added) or
 * "from_zero" (with a KV cache the new tokens get positions 0, 1, … instead of p, p + 1, …).
 */
async function composedGpt(req: ForwardRequest, ref: Implementation, positions: "added" | "skipped" | "from_zero"): Promise<NamedTensors> {
  const c = req.config;
  const a = req.inputs;
  const dtype = floatDtype(req);
  const call = async (formula: string, config: FormulaConfig, inputs: NamedTensors) => (await ref.forward({ formula, config: { ...config, dtype }, inputs })).outputs;
  const L = Number(c["L"]);
  const cache = c["kv_cache"] === true;
  const tokens = a["tokens"]!;
  const n = tokens.shape.at(-1)!;
  const past = cache ? a["past.0.k"]!.shape.at(-2)! : 0;
  const offset = positions === "from_zero" ? 0 : past;
  let x = (await call("embedding", {}, { tokens, E: a["wte.weight"]! }))["y"]!;
  const pos = String(c["positions"] ?? "learned");
  if (positions !== "skipped" && (pos === "learned" || pos === "sinusoidal")) {
    const p = pos === "learned" ? (await call("positional_learned", { n, offset }, { P: a["wpe.weight"]! }))["y"]! : (await call("positional_sinusoidal", { n, d_model: x.shape.at(-1)!, offset }, {}))["y"]!;
    const d = x.shape.at(-1)!;
    const sum = Tensor.zeros(x.shape, dtype);
    for (let i = 0; i < x.size; i++) sum.data[i] = x.data[i]! + p.data[i % (n * d)]!;
    x = sum;
  }
  const blockCfg: Record<string, number | string | boolean> = {};
  for (const k of hyperKeys("block")) if (c[k] !== undefined) blockCfg[k] = c[k]!;
  blockCfg["positions"] = pos === "rope" || pos === "rope_interleaved" || pos === "alibi" ? pos : "none";
  const res: NamedTensors = {};
  for (let l = 0; l < L; l++) {
    const p: NamedTensors = { x };
    const prefix = `h.${l}.`;
    for (const [k, v] of Object.entries(a)) if (k.startsWith(prefix)) p[k.slice(prefix.length)] = v;
    if (cache) {
      const o = await call("block", { ...blockCfg, kv_cache: true }, { ...p, past_k: a[`past.${l}.k`]!, past_v: a[`past.${l}.v`]! });
      x = o["y"]!;
      res[`present.${l}.k`] = o["k"]!;
      res[`present.${l}.v`] = o["v"]!;
    } else {
      x = (await call("block", blockCfg, p))["y"]!;
    }
  }
  if (c["placement"] === "pre" || c["placement"] === "sandwich") {
    const eps = Number(c["eps"] ?? 1e-5);
    x = c["norm"] === "rms_norm" ? (await call("rms_norm", { eps }, { x, gamma: a["ln_f.weight"]! }))["y"]! : (await call("layer_norm", { eps }, { x, gamma: a["ln_f.weight"]!, beta: a["ln_f.bias"]! }))["y"]!;
  }
  const logits = (await call("logits", {}, { x, W_vocab: c["tied"] === false ? a["lm_head.weight"]! : a["wte.weight"]! }))["y"]!;
  res["logits"] = logits;
  if (!cache) res["loss"] = (await call("cross_entropy", {}, { logits, targets: a["targets"]! }))["loss"]!;
  return res;
}

/**
 * Softmax rows with the running maximum seeded at −10000 instead of −∞ (a C kernel's
 * `float m = -10000.f;`): a row whose entries all lie below −10000 gives exp(x + 10000) = 0 and 0/0.
 */
function softmaxRowsSeeded(x: ArrayLike<number>, m: number, seed: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += m) {
    let mx = seed;
    for (let j = 0; j < m; j++) mx = Math.max(mx, x[o + j]!);
    let s = 0;
    for (let j = 0; j < m; j++) s += (y[o + j] = Math.exp(x[o + j]! - mx));
    for (let j = 0; j < m; j++) y[o + j] = y[o + j]! / s;
  }
  return y;
}

/** The reference's attention on other arguments or another configuration (a convention misread). */
async function refAttention(ref: Implementation, req: ForwardRequest, config: FormulaConfig, inputs: NamedTensors): Promise<NamedTensors> {
  return (await ref.forward({ ...req, config, inputs })).outputs;
}

/** attention with a window, where each query sees i' − w < j < i' (its own key dropped), as an explicit additive mask. */
async function windowWithoutOwnKey(req: ForwardRequest, ref: Implementation): Promise<NamedTensors | undefined> {
  const c = req.config;
  const w = Number(c["window"] ?? 0);
  if (req.formula !== "attention" || w === 0 || c["causal"] === false || (c["mask"] ?? "none") !== "none") return undefined;
  const { Q, K } = req.inputs as Record<string, Tensor>;
  const n = Q!.shape.at(-2)!;
  const m = K!.shape.at(-2)!;
  const shift = c["causal_align"] === "top_left" ? 0 : m - n;
  const mask = Tensor.zeros([...Q!.shape.slice(0, -1), m], Q!.dtype);
  for (let f = 0; f < mask.size; f++) {
    const j = f % m;
    const i = Math.floor(f / m) % n + shift;
    mask.data[f] = i - w < j && j < i ? 0 : -Infinity;
  }
  const { window: _w, ...rest } = c;
  return refAttention(ref, req, { ...rest, causal: false, mask: "additive" }, { ...req.inputs, mask });
}

/** Every planted bug. */
export const PLANTED: readonly PlantedBug[] = [
  {
    name: "causal_mask_off_by_one",
    description: "attention: query i also sees key i + 1 (mask j > i + 1 instead of j > i)",
    formulas: ["attention"],
    caughtBy: ["causality", "prefix_consistency", "masked_zero", "mha_decomposition", "uniform_keys"],
    forward: attentionBug(1, "config"),
  },
  {
    name: "causal_mask_missing",
    description: "attention: the causal mask is never applied",
    formulas: ["attention"],
    caughtBy: ["causality", "prefix_consistency", "masked_zero", "mha_decomposition", "uniform_keys"],
    forward: attentionBug(0, "never"),
  },
  {
    name: "top_left_as_bottom_right",
    description: "attention: causal_align top_left is computed bottom-right aligned (query i sees j ≤ i + m − n instead of j ≤ i)",
    formulas: ["attention"],
    caughtBy: ["causal_alignment"],
    forward: async (req, ref) =>
      req.formula === "attention" && req.config["causal_align"] === "top_left" && req.config["causal"] !== false
        ? refAttention(ref, req, { ...req.config, causal_align: "bottom_right" }, req.inputs)
        : undefined,
  },
  {
    name: "boolean_mask_inverted",
    description: "attention: a boolean mask read with true = masked (nn.MultiheadAttention's key_padding_mask sense) instead of true = attend",
    formulas: ["attention"],
    caughtBy: ["mask_padding"],
    forward: async (req, ref) => {
      if (req.formula !== "attention" || req.config["mask"] !== "boolean") return undefined;
      const mask = req.inputs["mask"]!;
      return refAttention(ref, req, req.config, { ...req.inputs, mask: mapT(mask, (v) => (v !== 0 ? 0 : 1)) });
    },
  },
  {
    name: "window_drops_own_key",
    description: "attention with a sliding window: each query sees i' − w < j < i', dropping its own key",
    formulas: ["attention"],
    caughtBy: ["window_limit"],
    forward: windowWithoutOwnKey,
  },
  {
    name: "softcap_without_division",
    description: "attention: the soft cap computed as c·tanh(s) instead of c·tanh(s/c)",
    formulas: ["attention"],
    caughtBy: ["softcap_limit"],
    forward: async (req) => (Number(req.config["softcap"] ?? 0) > 0 ? attentionBug(0, "config", true)(req) : undefined),
  },
  {
    name: "attention_kv_heads_tiled",
    description: "attention with H_kv < H: query head h uses K/V head h mod H_kv (tiled) instead of ⌊h/(H/H_kv)⌋ (repeated)",
    formulas: ["attention"],
    caughtBy: ["grouped_heads"],
    forward: async (req, ref) => {
      const { H, H_kv, ...rest } = req.config;
      if (req.formula !== "attention" || typeof H_kv !== "number" || H_kv === H) return undefined;
      const idx = Array.from({ length: Number(H) }, (_, h) => h % H_kv);
      const { K, V } = req.inputs as Record<string, Tensor>;
      return refAttention(ref, req, { ...rest, H: H! }, { ...req.inputs, K: gatherAxis(K!, -3, idx), V: gatherAxis(V!, -3, idx) });
    },
  },
  {
    name: "broadcast_mask_ignored",
    description: "attention: a mask of another shape than the scores (a padding mask [B, 1, 1, m], a key row [m]) is silently skipped; only full-shape masks are applied",
    formulas: ["attention"],
    caughtBy: ["mask_padding"],
    forward: async (req, ref) => {
      const c = req.config;
      if (req.formula !== "attention" || (c["mask"] ?? "none") === "none" || (c["mask_shape"] ?? "scores") === "scores") return undefined;
      const { mask: _m, mask_shape: _s, ...rest } = c;
      const { mask: _t, ...inputs } = req.inputs;
      return refAttention(ref, req, { ...rest, mask: "none" }, inputs);
    },
  },
  {
    name: "rope_partial_freq_over_dk",
    description: "rope with rotary_dims r < d_k: the frequencies base^(−2i/d_k) are taken over the whole head instead of over the r rotated dims (HF GPT-NeoX uses r)",
    formulas: ["rope"],
    caughtBy: ["rope_fraction"],
    forward: ropeBug({ freqOverDk: true }),
  },
  {
    name: "position_ids_ignored",
    description: "rope: position_ids are accepted but the rows are rotated at offset, offset + 1, … (left padding and packed sequences get the wrong positions)",
    formulas: ["rope"],
    caughtBy: ["rope_position_ids"],
    forward: ropeBug({ ignoreIds: true }),
  },
  {
    name: "dropout_unscaled",
    description: "dropout: kept entries are not scaled by 1/(1 − p) (the non-inverted dropout of the original paper, whose eval pass must scale by 1 − p instead)",
    formulas: ["dropout"],
    caughtBy: ["dropout_scaling"],
    forward: dropoutBug(true),
  },
  {
    name: "ignored_targets_counted",
    description: "cross_entropy: positions with target = ignore_index add nothing to the sum but are still counted in the mean",
    formulas: ["cross_entropy"],
    caughtBy: ["ignored_targets"],
    forward: async (req, ref) => {
      if (req.formula !== "cross_entropy") return undefined;
      const t = req.inputs["targets"]!;
      const ignore = Number(req.config["ignore_index"] ?? -100);
      const counted = Array.from(t.data).filter((v) => v !== ignore).length;
      if (counted === t.size) return undefined;
      const loss = (await ref.forward(req)).outputs["loss"]!;
      return { loss: mapT(loss, (v) => (v * counted) / t.size) };
    },
  },
  {
    name: "scale_sqrt_d_model",
    description: "mha: scores scaled by 1/√d_model instead of 1/√d_k",
    formulas: ["mha"],
    caughtBy: ["mha_decomposition"],
    forward: mhaBug({ scaleByDModel: true }),
  },
  {
    name: "softmax_no_max_subtraction",
    description: "softmax: exp(x)/Σexp(x) without subtracting the row max (overflows to ∞/∞ = NaN for large scores)",
    formulas: ["softmax"],
    caughtBy: ["softmax_simplex", "softmax_shift"],
    forward: async (req) => {
      if (req.formula !== "softmax" || !lastAxis(req.config)) return undefined;
      const x = req.inputs["x"]!;
      return { y: out(x.shape, softmaxRows(x.data, x.shape.at(-1)!, false), floatDtype(req)) };
    },
  },
  {
    name: "layer_norm_unbiased_variance",
    description: "layer_norm: variance divided by d − 1 (unbiased) instead of d",
    formulas: ["layer_norm"],
    caughtBy: ["norm_moments", "norm_gradient", "zero_branches"],
    forward: layerNormBug({ unbiased: true }),
  },
  {
    name: "layer_norm_eps_outside_sqrt",
    description: "layer_norm: (x − μ)/(σ + ε) instead of (x − μ)/√(σ² + ε)",
    formulas: ["layer_norm"],
    caughtBy: ["norm_moments", "norm_gradient", "zero_branches"],
    forward: layerNormBug({ epsOutsideSqrt: true }),
  },
  {
    name: "heads_interleaved",
    description: "mha: head h takes columns h, h + H, h + 2H, … instead of the column block h·d_k … (h+1)·d_k − 1",
    formulas: ["mha"],
    caughtBy: ["heads_permutation", "mha_decomposition", "grouped_query"],
    forward: mhaBug({ interleavedHeads: true }),
  },
  {
    name: "positions_not_added",
    description: "gpt: learned/sinusoidal position vectors are computed but never added to the embeddings",
    formulas: ["gpt"],
    caughtBy: ["positions_break_equivariance"],
    forward: async (req, ref) => (req.formula === "gpt" ? composedGpt(req, ref, "skipped") : undefined),
  },
  {
    name: "rope_on_values",
    description: "mha: RoPE rotates the values as well as the queries and keys",
    formulas: ["mha"],
    caughtBy: ["mha_decomposition", "rope_relative"],
    forward: mhaBug({ ropeOnValues: true }),
  },
  {
    name: "sinusoidal_sin_cos_swapped",
    description: "positional_sinusoidal: cos in the even columns and sin in the odd ones",
    formulas: ["positional_sinusoidal"],
    caughtBy: ["sinusoidal_rotation"],
    forward: async (req) => {
      if (req.formula !== "positional_sinusoidal") return undefined;
      const n = Number(req.config["n"]);
      const d = Number(req.config["d_model"]);
      return { y: out([n, d], sinusoidal(n, d, Number(req.config["offset"] ?? 0), true), floatDtype(req)) };
    },
  },
  {
    name: "gqa_heads_tiled",
    description: "mha with H_kv < H: query head h uses KV head h mod H_kv (tiled) instead of ⌊h/(H/H_kv)⌋ (repeated)",
    formulas: ["mha"],
    caughtBy: ["grouped_query"],
    forward: mhaBug({ tiledKvHeads: true }),
  },
  {
    name: "cross_entropy_summed",
    description: "cross_entropy: the loss is summed over positions instead of averaged",
    formulas: ["cross_entropy"],
    caughtBy: ["batch_independence", "cross_entropy"],
    forward: async (req) => {
      if (req.formula !== "cross_entropy") return undefined;
      const z = req.inputs["logits"]!;
      const t = req.inputs["targets"]!;
      const V = z.shape.at(-1)!;
      let s = 0;
      for (let r = 0; r < t.size; r++) {
        let mx = -Infinity;
        for (let j = 0; j < V; j++) mx = Math.max(mx, z.data[r * V + j]!);
        let e = 0;
        for (let j = 0; j < V; j++) e += Math.exp(z.data[r * V + j]! - mx);
        s += mx + Math.log(e) - z.data[r * V + t.data[r]!]!;
      }
      return { loss: out([], [s], floatDtype(req)) };
    },
  },
  {
    name: "softmax_grad_no_subtraction",
    description: "softmax backward: x̄ = y ⊙ ȳ, missing the − y·⟨ȳ, y⟩ term",
    formulas: ["softmax"],
    caughtBy: ["softmax_gradient"],
    backward: async (req, ref) => {
      if (req.formula !== "softmax" || !lastAxis(req.config)) return undefined;
      const y = (await ref.forward(req)).outputs["y"]!;
      const cot = req.cotangents["y"]!;
      return { x: out(y.shape, Array.from(y.data, (v, i) => v * cot.data[i]!), y.dtype) };
    },
  },
  {
    name: "layer_norm_grad_missing_term",
    description: "layer_norm backward: x̄ = (ĝ − mean ĝ)/σ, missing the − x̂·mean(ĝ ⊙ x̂) term",
    formulas: ["layer_norm"],
    caughtBy: ["norm_gradient"],
    backward: async (req) => {
      if (req.formula !== "layer_norm") return undefined;
      const { x, gamma } = req.inputs as Record<string, Tensor>;
      return layerNormBackwardMissingTerm(x!, gamma!, Number(req.config["eps"] ?? 1e-5), req.cotangents["y"]!);
    },
  },
  {
    name: "tied_grad_one_use",
    description: "gpt backward with tied embeddings: ∂L/∂E keeps the embedding use only and drops the logits use (x W_vocabᵀ)",
    formulas: ["gpt"],
    caughtBy: ["tied_embedding"],
    backward: async (req, ref) => {
      if (req.formula !== "gpt" || req.config["tied"] === false || req.config["kv_cache"] === true) return undefined;
      const untied = await ref.backwardPass!({ ...req, config: { ...req.config, tied: false }, inputs: { ...req.inputs, "lm_head.weight": req.inputs["wte.weight"]! } });
      const grads = { ...untied.grads };
      delete grads["lm_head.weight"];
      return grads;
    },
  },
  {
    name: "rope_sin_cos_swapped",
    description: "rope: sin and cos exchanged in the rotation (still orthogonal, but position 0 is no longer the identity)",
    formulas: ["rope"],
    caughtBy: ["mha_decomposition", "rope_relative"],
    forward: async (req) => {
      if (req.formula !== "rope") return undefined;
      const x = req.inputs["x"]!;
      const y = rope(x, Number(req.config["offset"] ?? 0), Number(req.config["base"] ?? 10000), String(req.config["convention"] ?? "half"), true);
      return { y: y.to(floatDtype(req)) };
    },
  },
  {
    name: "kv_positions_from_zero",
    description: "gpt with a KV cache: the new tokens get learned/sinusoidal positions 0, 1, … instead of p, p + 1, …",
    formulas: ["gpt"],
    caughtBy: ["kv_cache"],
    forward: async (req, ref) => (req.formula === "gpt" && req.config["kv_cache"] === true ? composedGpt(req, ref, "from_zero") : undefined),
  },
  {
    name: "rms_norm_centred",
    description: "rms_norm: subtracts the row mean before normalising (LayerNorm without β under RMSNorm's name)",
    formulas: ["rms_norm"],
    caughtBy: ["norm_moments", "norm_invariance", "norm_gradient", "zero_branches"],
    forward: async (req) => {
      if (req.formula !== "rms_norm") return undefined;
      const { x, gamma } = req.inputs as Record<string, Tensor>;
      return { y: out(x!.shape, rmsNormCentred(x!, gamma!, Number(req.config["eps"] ?? 1e-6)), floatDtype(req)) };
    },
  },
  {
    name: "softmax_running_max_minus_10000",
    description: "softmax and cross_entropy: the running maximum starts at −10000 instead of −∞ (rows entirely below −1e4 give 0/0, a loss of −∞)",
    formulas: ["softmax", "cross_entropy"],
    caughtBy: ["softmax_simplex", "cross_entropy"],
    forward: async (req): Promise<NamedTensors | undefined> => {
      if (req.formula === "softmax" && lastAxis(req.config)) {
        const x = req.inputs["x"]!;
        return { y: out(x.shape, softmaxRowsSeeded(x.data, x.shape.at(-1)!, -10000), floatDtype(req)) };
      }
      if (req.formula !== "cross_entropy") return undefined;
      const z = req.inputs["logits"]!;
      const t = req.inputs["targets"]!;
      const V = z.shape.at(-1)!;
      let s = 0;
      for (let r = 0; r < t.size; r++) {
        let mx = -10000;
        for (let j = 0; j < V; j++) mx = Math.max(mx, z.data[r * V + j]!);
        let e = 0;
        for (let j = 0; j < V; j++) e += Math.exp(z.data[r * V + j]! - mx);
        s += mx + Math.log(e) - z.data[r * V + t.data[r]!]!;
      }
      return { loss: out([], [s / Math.max(1, t.size)], floatDtype(req)) };
    },
  },
  {
    name: "softmax_axis_ignored",
    description: "softmax: the axis hyperparameter is ignored, every call normalises over the last axis",
    formulas: ["softmax"],
    caughtBy: ["softmax_axis"],
    forward: async (req, ref) => {
      if (req.formula !== "softmax" || lastAxis(req.config)) return undefined;
      const { axis: _, ...rest } = req.config;
      return (await ref.forward({ ...req, config: rest })).outputs;
    },
  },
  {
    name: "label_smoothing_over_other_classes",
    description: "cross_entropy: label smoothing spreads ε over the V − 1 other classes (ε/(V − 1) each) instead of ε/V over all V, as some hand-written losses do",
    formulas: ["cross_entropy"],
    caughtBy: ["loss_conventions"],
    forward: async (req, ref) => {
      const eps = Number(req.config["label_smoothing"] ?? 0);
      const V = req.inputs["logits"]?.shape.at(-1) ?? 1;
      if (req.formula !== "cross_entropy" || eps === 0 || V < 2) return undefined;
      // L0 = w_t·nll, L1 = (1/V)·Σ_c w_c·nll_c (per position, or reduced alike): the bug is
      // (1 − ε)·L0 + ε/(V − 1)·(Σ_c w_c·nll_c − w_t·nll)
      const at = async (e: number) => (await ref.forward({ ...req, config: { ...req.config, label_smoothing: e } })).outputs["loss"]!;
      const L0 = await at(0);
      const L1 = await at(1);
      return { loss: mapT(L0, (v, i) => (1 - eps) * v + (eps / (V - 1)) * (V * L1.data[i]! - v)) };
    },
  },
  {
    name: "weighted_mean_by_count",
    description: "cross_entropy: with class weights the mean divides by the number of counted positions instead of Σ w[t_i]",
    formulas: ["cross_entropy"],
    caughtBy: ["loss_conventions"],
    forward: async (req, ref) => {
      if (req.formula !== "cross_entropy" || req.config["weight"] !== true || (req.config["reduction"] ?? "mean") !== "mean") return undefined;
      const ignore = Number(req.config["ignore_index"] ?? -100);
      const counted = Array.from(req.inputs["targets"]!.data).filter((v) => v !== ignore).length;
      const sum = (await ref.forward({ ...req, config: { ...req.config, reduction: "sum" } })).outputs["loss"]!;
      return { loss: mapT(sum, (v) => v / counted) };
    },
  },
  {
    name: "layer_norm_last_axis_only",
    description: "layer_norm: normalized_axes is ignored, each last-axis row is normalised on its own (γ and β still applied over the k axes)",
    formulas: ["layer_norm"],
    caughtBy: ["affine_options"],
    forward: async (req, ref) => {
      const k = Number(req.config["normalized_axes"] ?? 1);
      if (req.formula !== "layer_norm" || k === 1) return undefined;
      const { x, gamma, beta } = req.inputs as Record<string, Tensor>;
      const d = x!.shape.at(-1)!;
      const dtype = floatDtype(req);
      const unit = { x: x!, gamma: Tensor.full([d], 1, dtype), beta: Tensor.zeros([d], dtype) };
      const y1 = (await ref.forward({ ...req, config: { ...req.config, normalized_axes: 1, bias: true }, inputs: unit })).outputs["y"]!;
      const g = gamma!.size;
      return { y: mapT(y1, (v, i) => v * gamma!.data[i % g]! + (beta === undefined ? 0 : beta.data[i % g]!)) };
    },
  },
  {
    name: "matmul_broadcast_grad_first_copy",
    description: "matmul: the gradient of an operand broadcast over batch axes is the gradient of its first copy, not the sum over the copies",
    formulas: ["matmul"],
    caughtBy: ["matmul_broadcast"],
    backward: async (req, ref) => {
      const a = req.inputs["a"];
      const b = req.inputs["b"];
      if (req.formula !== "matmul" || a === undefined || b === undefined || a.shape.length !== 2 || b.shape.length <= 2 || req.config["a_batch"] !== "none") return undefined;
      const copies = sizeOf(b.shape.slice(0, -2));
      const repeated = gatherAxis(a.reshape([1, ...a.shape]), 0, Array(copies).fill(0)).reshape([...b.shape.slice(0, -2), ...a.shape]);
      const { a_batch: _, ...rest } = req.config;
      const g = (await ref.backwardPass!({ ...req, config: rest, inputs: { a: repeated, b } })).grads;
      const first = Tensor.zeros(a.shape, a.dtype);
      for (let i = 0; i < first.size; i++) first.data[i] = g["a"]!.data[i]!;
      return { a: first, b: g["b"]! };
    },
  },
];

let shared: Implementation | undefined;

/** The implementation with the named bug planted (everything else is the reference). */
export function plantedImplementation(name: string): Implementation {
  const bug = PLANTED.find((b) => b.name === name);
  if (bug === undefined) throw new RangeError(`unknown planted bug "${name}"; planted bugs: ${PLANTED.map((b) => b.name).join(", ")}`);
  shared ??= referenceImplementation();
  const ref = shared;
  return {
    name: `planted bug ${bug.name}`,
    formulas: ref.formulas,
    backward: ref.backward,
    dtypes: ref.dtypes,
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      const outs = bug.forward === undefined ? undefined : await bug.forward(req, ref);
      return outs === undefined ? ref.forward(req) : { outputs: outs };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      const grads = bug.backward === undefined ? undefined : await bug.backward(req, ref);
      return grads === undefined ? ref.backwardPass!(req) : { grads };
    },
  };
}

/**
 * The hand-written kernels above with every bug switched off, for the formulas the planted
 * forwards replace: it must pass every law, which shows that a planted implementation fails
 * because of its bug and not because of the harness around it.
 */
export function controlImplementation(): Implementation {
  shared ??= referenceImplementation();
  const ref = shared;
  const own: Record<string, (req: ForwardRequest) => Promise<NamedTensors | undefined>> = {
    attention: attentionBug(0, "config"),
    mha: mhaBug({}),
    layer_norm: layerNormBug({}),
    softmax: async (req) => {
      if (!lastAxis(req.config)) return undefined;
      const x = req.inputs["x"]!;
      return { y: out(x.shape, softmaxRows(x.data, x.shape.at(-1)!, true), floatDtype(req)) };
    },
    positional_sinusoidal: async (req) => {
      const n = Number(req.config["n"]);
      const d = Number(req.config["d_model"]);
      return { y: out([n, d], sinusoidal(n, d, Number(req.config["offset"] ?? 0), false), floatDtype(req)) };
    },
    rope: ropeBug({}),
    dropout: dropoutBug(false),
    rms_norm: async (req) => {
      const { x, gamma } = req.inputs as Record<string, Tensor>;
      const d = x!.shape.at(-1)!;
      const eps = Number(req.config["eps"] ?? 1e-6);
      const y = new Float64Array(x!.size);
      for (let o = 0; o < x!.size; o += d) {
        let ms = 0;
        for (let j = 0; j < d; j++) ms += x!.data[o + j]! ** 2 / d;
        for (let j = 0; j < d; j++) y[o + j] = (gamma!.data[j]! * x!.data[o + j]!) / Math.sqrt(ms + eps);
      }
      return { y: out(x!.shape, y, floatDtype(req)) };
    },
    gpt: async (req) => composedGpt(req, ref, "added"),
  };
  return {
    name: "hand-written kernels without bugs",
    formulas: ref.formulas,
    backward: ref.backward,
    dtypes: ref.dtypes,
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      const f = own[req.formula];
      const outs = f === undefined ? undefined : await f(req);
      return outs === undefined ? ref.forward(req) : { outputs: outs };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      return ref.backwardPass!(req);
    },
  };
}

