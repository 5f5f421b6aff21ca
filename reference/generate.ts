/**
 * Autoregressive generation: logits for the last position → softmax → next token, repeated.
 * Decoding either recomputes the whole prefix each step or reuses a KV cache (the `gpt` formula
 * with `kv_cache`: past keys/values in, present keys/values out; masks bottom-right aligned).
 * Sampling: greedy, or temperature + top-k + top-p with a seeded generator.
 */
import "../spec/index.js";
import { required, sharedConfig } from "../spec/formula.js";
import { resolveTopLevel } from "../spec/configs.js";
import type { Config } from "../spec/node.js";
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";

/**
 * Generation cannot proceed: a bad option (temperature, top-k, top-p, maxNewTokens), a prompt or stop token outside the
 * vocabulary, a prompt longer than learned positions allow, or logits that give no distribution.
 */
export class GenerateError extends Error {
  override name = "GenerateError";
}

/** How the next token is chosen: greedy (the default), or sampled with a temperature and optional top-k and top-p. */
export interface SamplingOptions {
  /** 0 (or undefined with no top-k/top-p) means greedy. */
  readonly temperature?: number;
  /** Sample among the k most likely ids only (a positive integer). */
  readonly topK?: number;
  /** Sample among the smallest set of most likely ids whose probability reaches p, in (0, 1]. */
  readonly topP?: number;
  /** Seed of the sampling draws (default 0). */
  readonly seed?: number;
}

/** Options of {@link generate}: sampling, how many tokens, when to stop, caching and precision. */
export interface GenerateOptions extends SamplingOptions {
  /** Generate at most this many tokens (a non-negative integer). */
  readonly maxNewTokens: number;
  /** Stop after emitting any of these ids. */
  readonly stop?: readonly number[];
  /** Reuse keys/values across steps (default true). */
  readonly cache?: boolean;
  /** Precision of the forward passes (default f64). */
  readonly dtype?: FloatDType;
  /** Called with each new token as it is chosen (streaming). */
  readonly onToken?: (token: number, step: number) => void;
}

/** The result of {@link generate}: the tokens, the logits of each step, and why generation stopped. */
export interface GenerateResult {
  /** Prompt followed by the generated ids. */
  readonly tokens: number[];
  /** The logits that chose each new token, [steps, V]. */
  readonly stepLogits: Float64Array[];
  /**
   * `max_tokens`: maxNewTokens were generated; `stop_token`: a stop id was emitted; `context`:
   * learned positions ran out (n_ctx).
   */
  readonly stopped: "max_tokens" | "stop_token" | "context";
}

const graphCache = new Map<string, Graph>();
function graphFor(config: Config, cache: boolean): Graph {
  const key = JSON.stringify([config, cache]);
  let g = graphCache.get(key);
  if (g === undefined) {
    g = formulaGraph("gpt", { ...config, kv_cache: cache });
    if (!cache) g = { ...g, outputs: { logits: g.outputs["logits"]! } };
    graphCache.set(key, g);
  }
  return g;
}

/** The smallest positive normal double, 2^−1022: below it 1/T overflows and the logits/T lose all precision. */
export const MIN_TEMPERATURE = 2 ** -1022;

/**
 * Check sampling options: temperature exactly 0 (greedy) or a finite positive normal number (a
 * subnormal such as 1e-310 makes 1/T infinite and every probability NaN); top-k a positive
 * integer; top-p in (0, 1].
 * @throws GenerateError naming the option and the value.
 */
function checkSampling(opts: SamplingOptions): void {
  const T = opts.temperature;
  if (T !== undefined && T !== 0) {
    if (!(T > 0) || !Number.isFinite(T))
      throw new GenerateError(`temperature must be a positive number, got ${T}`);
    if (T < MIN_TEMPERATURE)
      throw new GenerateError(
        `temperature ${T} is below the smallest normal number ${MIN_TEMPERATURE} (2^-1022); use 0 for greedy decoding`,
      );
  }
  if (opts.topK !== undefined && (!Number.isInteger(opts.topK) || opts.topK < 1))
    throw new GenerateError(`top-k must be a positive integer, got ${opts.topK}`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1))
    throw new GenerateError(`top-p must be in (0, 1], got ${opts.topP}`);
}

/**
 * Choose the next token from one row of logits. Greedy picks the first maximum; sampling
 * divides by the temperature, keeps the top-k ids and the smallest set whose probability
 * reaches top-p, renormalises, and draws with `rng`. Logits may be −∞ (a masked id) but not NaN
 * or +∞, and at least one must be finite: nothing is ever chosen from NaN probabilities.
 * @throws GenerateError for bad options ({@link checkSampling}) or logits that give no distribution.
 */
export function chooseToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: Rng): number {
  checkSampling(opts);
  const V = logits.length;
  let best = -1;
  for (let i = 0; i < V; i++) {
    const z = logits[i]!;
    if (Number.isNaN(z) || z === Infinity)
      throw new GenerateError(`the logit of id ${i} is ${z}: the probabilities would be NaN`);
    if (z !== -Infinity && (best < 0 || z > logits[best]!)) best = i;
  }
  if (best < 0)
    throw new GenerateError(
      `every logit is −Infinity (or there are none, V = ${V}): no token can be chosen`,
    );
  const greedy = opts.temperature === undefined || opts.temperature === 0;
  if (greedy) return best;
  const T = opts.temperature!;
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (opts.topK !== undefined) ids = ids.slice(0, opts.topK);
  // exp((z − max z) / T): the largest term is exp(0) = 1, so no T ≥ 2^−1022 can give ∞ − ∞
  const m = logits[best]!;
  let p = ids.map((i) => Math.exp((logits[i]! - m) / T));
  let s = p.reduce((a, b) => a + b, 0);
  p = p.map((x) => x / s);
  if (opts.topP !== undefined) {
    let c = 0;
    let keep = 0;
    while (keep < p.length && c < opts.topP) c += p[keep++]!;
    ids = ids.slice(0, keep);
    p = p.slice(0, keep);
    s = p.reduce((a, b) => a + b, 0);
    p = p.map((x) => x / s);
  }
  if (!(s > 0) || p.some((x) => Number.isNaN(x)))
    throw new GenerateError(
      `the sampling probabilities are not a distribution (sum ${s}) at temperature ${T}`,
    );
  let u = rng.uniform();
  for (let k = 0; k < ids.length; k++) {
    u -= p[k]!;
    if (u < 0) return ids[k]!;
  }
  return ids[ids.length - 1]!;
}

/** One decoding step: the chosen token and the logits row it was chosen from. */
export interface DecodeStep {
  readonly step: number;
  readonly token: number;
  readonly logits: Float64Array;
}

/**
 * Decode step by step (a generator, so callers can stream): each step evaluates the `gpt` formula
 * on the new tokens only, with the keys/values of the earlier ones (`cache`, default), or on the
 * whole sequence; picks a token with {@link chooseToken}; stops after `maxNewTokens`, after a
 * stop token, or when learned positions run out (n_ctx). Returns how it stopped.
 */
export function* decodeSteps(
  config: Config,
  weights: NamedTensors,
  prompt: readonly number[],
  opts: GenerateOptions,
): Generator<DecodeStep, GenerateResult["stopped"]> {
  const cfg = resolveTopLevel("gpt", config);
  const V = required(cfg.V, "gpt", "V");
  const nCtx = required(cfg.n_ctx, "gpt", "n_ctx");
  const L = required(cfg.L, "gpt", "L");
  const dtype = opts.dtype ?? "f64";
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0)
    throw new GenerateError(
      `maxNewTokens must be a non-negative integer, got ${opts.maxNewTokens}`,
    );
  if (prompt.length === 0) throw new GenerateError("the prompt must hold at least one token");
  for (const [i, t] of prompt.entries()) {
    if (!Number.isInteger(t) || t < 0 || t >= V)
      throw new GenerateError(
        `prompt token ${t} at position ${i} is outside the vocabulary of ${V}`,
      );
  }
  for (const t of opts.stop ?? [])
    if (!Number.isInteger(t) || t < 0 || t >= V)
      throw new GenerateError(`stop token ${t} is outside the vocabulary of ${V}`);
  checkSampling(opts);
  const learned = cfg["positions"] === "learned";
  if (learned && prompt.length > nCtx)
    throw new GenerateError(
      `the prompt has ${prompt.length} tokens but learned positions hold n_ctx = ${nCtx}`,
    );
  const cache = opts.cache ?? true;
  const rng = new Rng(opts.seed ?? 0);
  const tokens = [...prompt];
  const H = required(cfg.H, "gpt", "H");
  const Hkv = cfg.H_kv ?? H;
  const dk = required(cfg.d_model, "gpt", "d_model") / H;
  let past: NamedTensors = {};
  if (cache)
    for (let l = 0; l < L; l++) {
      // (H_kv, 0, d_k): nothing cached yet
      past[`past.${l}.k`] = Tensor.zeros([Hkv, 0, dk], dtype);
      past[`past.${l}.v`] = Tensor.zeros([Hkv, 0, dk], dtype);
    }
  let fed = 0; // tokens already in the cache
  for (let step = 0; step < opts.maxNewTokens; step++) {
    if (learned && tokens.length > nCtx) return "context";
    let row: Float64Array;
    if (cache) {
      const fresh = tokens.slice(fed);
      const out = evaluate(
        graphFor(cfg, true),
        { tokens: Tensor.from(fresh, "i32"), ...past, ...weights },
        { dtype },
      );
      const logits = out["logits"]!; // (fresh, V)
      row = Float64Array.from(logits.data.subarray((fresh.length - 1) * V, fresh.length * V));
      past = {};
      for (let l = 0; l < L; l++) {
        // (H_kv, fed + fresh, d_k)
        past[`past.${l}.k`] = out[`present.${l}.k`]!;
        past[`past.${l}.v`] = out[`present.${l}.v`]!;
      }
      fed = tokens.length;
    } else {
      const logits = evaluate(
        graphFor(cfg, false),
        { tokens: Tensor.from(tokens, "i32"), ...weights },
        { dtype },
      )["logits"]!; // (n, V)
      row = Float64Array.from(logits.data.subarray((tokens.length - 1) * V, tokens.length * V));
    }
    let next: number;
    try {
      next = chooseToken(row, opts, rng);
    } catch (e) {
      if (e instanceof GenerateError)
        throw new GenerateError(`step ${step} (position ${tokens.length}): ${e.message}`);
      throw e;
    }
    tokens.push(next);
    yield { step, token: next, logits: row };
    if (opts.stop?.includes(next)) return "stop_token";
  }
  return "max_tokens";
}

/** Generate from a prompt with the model `config` and its weights (parameter names of `gpt`). */
export function generate(
  config: Config,
  weights: NamedTensors,
  prompt: readonly number[],
  opts: GenerateOptions,
): GenerateResult {
  const tokens = [...prompt];
  const stepLogits: Float64Array[] = [];
  const it = decodeSteps(config, weights, prompt, opts);
  for (;;) {
    const r = it.next();
    if (r.done === true) return { tokens, stepLogits, stopped: r.value };
    stepLogits.push(r.value.logits);
    tokens.push(r.value.token);
    opts.onToken?.(r.value.token, r.value.step);
  }
}

/** The `gpt_generate` golden formula: greedy steps from `tokens` with the given parameters. */
export function generateGreedyCase(inputs: NamedTensors, config: Config): NamedTensors {
  const steps = config["steps"];
  if (typeof steps !== "number") throw new GenerateError("gpt_generate needs config.steps");
  // the model's hyperparameters; decoding sets kv_cache itself
  const { kv_cache: _cache, ...cfg } = sharedConfig("gpt", config);
  const prompt = inputs["tokens"];
  if (prompt === undefined)
    throw new GenerateError("gpt_generate needs the prompt as input tokens");
  const weights: NamedTensors = {};
  let dtype: FloatDType = "f64";
  for (const [k, v] of Object.entries(inputs)) {
    if (k === "tokens") continue;
    weights[k] = v;
    if (v.dtype === "f32") dtype = "f32";
  }
  const r = generate(cfg, weights, Array.from(prompt.data), {
    maxNewTokens: steps,
    dtype,
    cache: true,
  });
  const V = required(resolveTopLevel("gpt", cfg).V, "gpt", "V");
  const logits = Tensor.zeros([r.stepLogits.length, V], dtype);
  r.stepLogits.forEach((row, i) => logits.data.set(row, i * V));
  return { tokens: Tensor.from(r.tokens, "i32"), step_logits: logits };
}
