/**
 * A small trainer for research runs: Adam(W), a seeded data loader of random windows, global-norm
 * gradient clipping, and a loop that records the loss curve and the time of every step. The
 * gradients come from the engine (`GPT.lossAndGrads`), so training exercises the same formulas
 * that the goldens check.
 */
import {
  GPT,
  ModelError,
  resolveModelConfig,
  type GPTConfig,
  type InitOptions,
  type ModelConfigInput,
} from "./model.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";

export class TrainError extends Error {
  override name = "TrainError";
}

export interface AdamOptions {
  /** Step size α (per step it may also come from the schedule passed to {@link Adam.step}). */
  readonly lr: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /**
   * Decoupled weight decay λ (AdamW, Loshchilov & Hutter): θ ← θ − α·λ·θ before the Adam step,
   * applied to matrices and embeddings only (rank ≥ 2), not to biases or norm scales — nanoGPT's
   * grouping. Default 0 (plain Adam).
   */
  readonly weightDecay?: number;
  /**
   * Per-parameter step-size multipliers, by name: a number for the whole tensor or one factor per
   * element (e.g. W_Q's columns inside the fused `attn.c_attn.weight`). Parameters not named take
   * 1. This is how μP's per-layer learning rates are applied (reference/mup.ts).
   */
  readonly lrScale?: Readonly<Record<string, number | Float64Array>>;
}

/**
 * Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.AdamW` computes it:
 *
 *   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
 *   θ ← θ − α · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
 *
 * Moments are kept in float64 whatever the weights' dtype.
 */
export class Adam {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly lr: number;
  readonly lrScale: Readonly<Record<string, number | Float64Array>>;
  /** Steps taken. */
  t = 0;
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();

  constructor(opts: AdamOptions) {
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.lrScale = opts.lrScale ?? {};
    const check = (name: string, v: number, ok: boolean, want: string) => {
      if (!ok) throw new TrainError(`Adam: ${name} must be ${want}, got ${v}`);
    };
    check("lr", this.lr, this.lr > 0 && Number.isFinite(this.lr), "a positive number");
    check("beta1", this.beta1, this.beta1 >= 0 && this.beta1 < 1, "in [0, 1)");
    check("beta2", this.beta2, this.beta2 >= 0 && this.beta2 < 1, "in [0, 1)");
    check("eps", this.eps, this.eps >= 0 && Number.isFinite(this.eps), "a non-negative number");
    check(
      "weightDecay",
      this.weightDecay,
      this.weightDecay >= 0 && Number.isFinite(this.weightDecay),
      "a non-negative number",
    );
  }

  /** Update `params` in place from `grads` (same names and shapes); `lr` overrides the step size for this step. */
  step(params: NamedTensors, grads: NamedTensors, lr: number = this.lr): void {
    if (!(lr >= 0) || !Number.isFinite(lr))
      throw new TrainError(`Adam: step size must be a non-negative number, got ${lr}`);
    for (const [k, g] of Object.entries(grads)) {
      const p = params[k];
      if (p === undefined)
        throw new TrainError(`Adam: gradient for ${k}, which is not a parameter`);
      if (g.size !== p.size)
        throw new TrainError(
          `Adam: gradient of ${k} has ${g.size} elements but the parameter has ${p.size}`,
        );
    }
    this.t++;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    for (const [k, p] of Object.entries(params)) {
      const g = grads[k];
      if (g === undefined) throw new TrainError(`Adam: no gradient for parameter ${k}`);
      let m = this.m.get(k);
      let v = this.v.get(k);
      if (m === undefined || v === undefined) {
        m = new Float64Array(p.size);
        v = new Float64Array(p.size);
        this.m.set(k, m);
        this.v.set(k, v);
      }
      const scale = this.lrScale[k] ?? 1;
      if (typeof scale !== "number" && scale.length !== p.size)
        throw new TrainError(
          `Adam: lrScale of ${k} has ${scale.length} factors but the parameter has ${p.size} elements`,
        );
      const pd = p.data;
      const gd = g.data;
      for (let i = 0; i < pd.length; i++) {
        const lr_i = typeof scale === "number" ? lr * scale : lr * scale[i]!;
        const decay = p.shape.length >= 2 ? 1 - lr_i * this.weightDecay : 1;
        const gi = gd[i]!;
        if (!Number.isFinite(gi))
          throw new TrainError(
            `Adam: gradient of ${k} is ${gi} at index [${p.unravel(i).join(", ")}] (step ${this.t})`,
          );
        const mi = (m[i] = this.beta1 * m[i]! + (1 - this.beta1) * gi);
        const vi = (v[i] = this.beta2 * v[i]! + (1 - this.beta2) * gi * gi);
        pd[i] = pd[i]! * decay - (lr_i * (mi / bc1)) / (Math.sqrt(vi / bc2) + this.eps);
      }
    }
  }
}

/**
 * Scale gradients in place so their global L2 norm is at most `maxNorm`
 * (`torch.nn.utils.clip_grad_norm_`: factor maxNorm / (‖g‖ + 1e-6) when ‖g‖ > maxNorm).
 * Returns the norm before clipping.
 */
export function clipGradNorm(grads: NamedTensors, maxNorm: number): number {
  if (!(maxNorm > 0))
    throw new TrainError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  let sq = 0;
  for (const g of Object.values(grads))
    for (let i = 0; i < g.size; i++) sq += g.data[i]! * g.data[i]!;
  const norm = Math.sqrt(sq);
  if (norm > maxNorm) {
    const f = maxNorm / (norm + 1e-6);
    for (const g of Object.values(grads))
      for (let i = 0; i < g.size; i++) g.data[i] = g.data[i]! * f;
  }
  return norm;
}

/**
 * Random windows of `length` consecutive ids from a token array, drawn with a seeded generator:
 * each batch is an i32 tensor [batch, length]. A window of n_ctx + 1 ids gives n_ctx inputs and
 * their n_ctx next-token targets.
 */
export class TokenWindows {
  private readonly rng: Rng;
  readonly tokens: Int32Array;

  constructor(
    tokens: ArrayLike<number>,
    readonly length: number,
    seed = 0,
  ) {
    if (!Number.isInteger(length) || length < 2)
      throw new TrainError(`TokenWindows: window length must be an integer ≥ 2, got ${length}`);
    if (tokens.length < length)
      throw new TrainError(
        `TokenWindows: ${tokens.length} tokens cannot fill one window of ${length}`,
      );
    this.tokens = Int32Array.from(tokens);
    this.rng = new Rng(seed);
  }

  /** Start offsets are uniform over 0 … N − length. */
  next(batch: number): Tensor {
    if (!Number.isInteger(batch) || batch < 1)
      throw new TrainError(`TokenWindows: batch must be a positive integer, got ${batch}`);
    const out = Tensor.zeros([batch, this.length], "i32");
    const starts = this.tokens.length - this.length + 1;
    for (let b = 0; b < batch; b++) {
      const s = this.rng.int(starts);
      out.data.set(this.tokens.subarray(s, s + this.length), b * this.length);
    }
    return out;
  }
}

export interface TrainOptions {
  readonly steps: number;
  /** Step size, or a schedule of the step index (0-based). */
  readonly lr: number | ((step: number) => number);
  /** Sequences per step. */
  readonly batch: number;
  /** Seeds the data loader and (unless `model` is given) the initialisation. */
  readonly seed?: number;
  /** Tokens per sequence fed to the model (default n_ctx); windows hold one more for the targets. */
  readonly seqLen?: number;
  /** Clip the global gradient norm to this value. */
  readonly clip?: number;
  readonly weightDecay?: number;
  /** Per-parameter step-size multipliers (see {@link AdamOptions.lrScale}). */
  readonly lrScale?: AdamOptions["lrScale"];
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Initialisation of a fresh model (default GPT-2's; the seed is `seed`). */
  readonly init?: Omit<InitOptions, "seed">;
  /** Continue from this model instead (its weights are updated in place). */
  readonly model?: GPT;
  /** Called after each step. */
  readonly onStep?: (info: StepInfo) => void;
}

export interface StepInfo {
  readonly step: number;
  /** Loss of this step's batch, before the update. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  readonly lr: number;
  readonly ms: number;
}

export interface TrainResult {
  readonly model: GPT;
  /** Loss of each step's batch, before its update. */
  readonly losses: number[];
  readonly gradNorms: number[];
  /** Wall time of each step in milliseconds (forward, backward and update). */
  readonly stepMs: number[];
}

/**
 * Train a GPT with Adam on random windows of `tokens` (next-token cross-entropy).
 * @throws TrainError for bad options or a non-finite gradient; ModelError for ids outside V.
 */
export function train(
  config: ModelConfigInput | GPTConfig,
  tokens: ArrayLike<number>,
  opts: TrainOptions,
): TrainResult {
  const seed = opts.seed ?? 0;
  const model = opts.model ?? GPT.init(resolveModelConfig(config), { ...(opts.init ?? {}), seed });
  const c = model.config;
  const seqLen = opts.seqLen ?? c.n_ctx;
  if (!Number.isInteger(opts.steps) || opts.steps < 0)
    throw new TrainError(`train: steps must be a non-negative integer, got ${opts.steps}`);
  if (!Number.isInteger(seqLen) || seqLen < 1)
    throw new TrainError(`train: seqLen must be a positive integer, got ${seqLen}`);
  if (c.positions === "learned" && seqLen > c.n_ctx)
    throw new TrainError(`train: seqLen ${seqLen} exceeds n_ctx = ${c.n_ctx} (learned positions)`);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= c.V)
      throw new ModelError(
        `train: token ${t} at position ${i} is outside the vocabulary 0…${c.V - 1}`,
      );
  }
  const data = new TokenWindows(tokens, seqLen + 1, seed ^ 0x7a11);
  // dropout masks (when the configuration has dropout) come from their own seeded stream
  const dropRng = new Rng(seed ^ 0x0d20);
  const lrOf = typeof opts.lr === "function" ? opts.lr : () => opts.lr as number;
  const adam = new Adam({
    lr: typeof opts.lr === "number" ? opts.lr : 1,
    ...(opts.beta1 !== undefined ? { beta1: opts.beta1 } : {}),
    ...(opts.beta2 !== undefined ? { beta2: opts.beta2 } : {}),
    ...(opts.eps !== undefined ? { eps: opts.eps } : {}),
    ...(opts.weightDecay !== undefined ? { weightDecay: opts.weightDecay } : {}),
    ...(opts.lrScale !== undefined ? { lrScale: opts.lrScale } : {}),
  });
  const losses: number[] = [];
  const gradNorms: number[] = [];
  const stepMs: number[] = [];
  for (let step = 0; step < opts.steps; step++) {
    const t0 = performance.now();
    const batch = data.next(opts.batch);
    const { loss, grads } = model.lossAndGrads(batch, dropRng);
    if (!Number.isFinite(loss)) throw new TrainError(`train: loss is ${loss} at step ${step}`);
    const gradNorm = opts.clip !== undefined ? clipGradNorm(grads, opts.clip) : globalNorm(grads);
    const lr = lrOf(step);
    adam.step(model.weights, grads, lr);
    const ms = performance.now() - t0;
    losses.push(loss);
    gradNorms.push(gradNorm);
    stepMs.push(ms);
    opts.onStep?.({ step, loss, gradNorm, lr, ms });
  }
  return { model, losses, gradNorms, stepMs };
}

function globalNorm(grads: NamedTensors): number {
  let sq = 0;
  for (const g of Object.values(grads))
    for (let i = 0; i < g.size; i++) sq += g.data[i]! * g.data[i]!;
  return Math.sqrt(sq);
}

/** Mean loss over `batches` fixed windows (seeded), for before/after comparisons. */
export function evalLoss(
  model: GPT,
  tokens: ArrayLike<number>,
  opts: { batches?: number; batch?: number; seqLen?: number; seed?: number } = {},
): number {
  const seqLen = opts.seqLen ?? model.config.n_ctx;
  const data = new TokenWindows(tokens, seqLen + 1, opts.seed ?? 12345);
  const n = opts.batches ?? 4;
  let s = 0;
  for (let i = 0; i < n; i++) s += model.loss(data.next(opts.batch ?? 8));
  return s / n;
}
