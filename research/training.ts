/**
 * What the studies that train models (variants, mup, length-extrapolation) share: the baseline
 * model they vary, the bundled corpus split into training and held-out tokens, the step-size
 * schedule, one seeded training run of `reference/train.ts` that ticks the progress bar at every
 * step, and the fixed windows the trained models are scored on.
 */
import { corpusText, corpusTokenizer } from "../reference/corpus.js";
import { resolveModelConfig, type GPT, type GPTConfig } from "../reference/model.js";
import { evalLoss, train, type TrainOptions, type TrainResult } from "../reference/train.js";
import type { Progress } from "./progress.js";
import { StudyError } from "./study.js";

/** The sizes of a baseline model. */
export interface ModelSizes {
  /** Corpus BPE vocabulary. */
  readonly V: number;
  /** Tokens per training sequence (= n_ctx). */
  readonly n: number;
  readonly d_model: number;
  readonly H: number;
  readonly L: number;
}

/**
 * The baseline the training studies vary — pre-LN, LayerNorm, GELU, learned positions — at sizes
 * `s`, with `change` (what a study varies) in place of the baseline's switches.
 */
export function baselineConfig(s: ModelSizes, change: Partial<GPTConfig> = {}): GPTConfig {
  return resolveModelConfig({
    V: s.V,
    n_ctx: s.n,
    d_model: s.d_model,
    H: s.H,
    L: s.L,
    placement: "pre",
    norm: "layer_norm",
    activation: "gelu",
    positions: "learned",
    ...change,
  });
}

/** @throws StudyError unless d_model / H is even (RoPE rotates pairs of a head's dimensions). */
export function requireEvenHeadSize(study: string, s: { d_model: number; H: number }): void {
  if ((s.d_model / s.H) % 2 !== 0)
    throw new StudyError(
      `${study}: RoPE needs an even head size; d_model / H = ${s.d_model / s.H}`,
    );
}

/** Fraction of the corpus tokens (its end) held out from training. */
export const HELD_OUT_FRACTION = 0.1;

/** The corpus ids before and after the held-out cut. */
export interface CorpusSplit {
  readonly trainIds: readonly number[];
  readonly heldIds: readonly number[];
}

/** The bundled corpus in its `V`-token BPE, the last {@link HELD_OUT_FRACTION} held out. */
export function corpusSplit(V: number): CorpusSplit {
  const ids = corpusTokenizer(V).encode(corpusText());
  const cut = Math.floor(ids.length * (1 - HELD_OUT_FRACTION));
  return { trainIds: ids.slice(0, cut), heldIds: ids.slice(cut) };
}

/** What {@link schedule} reads: the peak step size, its warm-up and the run's length. */
export interface ScheduleSizes {
  readonly lr: number;
  readonly warmup: number;
  readonly steps: number;
}

/** Linear warm-up to `lr`, then cosine decay to lr/10 at the last step. */
export function schedule(s: ScheduleSizes): (step: number) => number {
  return (t) => {
    if (t < s.warmup) return (s.lr * (t + 1)) / s.warmup;
    const p = s.steps - s.warmup <= 1 ? 1 : (t - s.warmup) / (s.steps - s.warmup - 1);
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * p)));
  };
}

/** The sizes one training run reads. */
export interface RunSizes {
  readonly steps: number;
  /** Sequences per step. */
  readonly batch: number;
  /** Tokens per training sequence. */
  readonly n: number;
  /** Global gradient-norm clip; none when absent. */
  readonly clip?: number;
}

/** One seed's run: its step sizes and where it reports progress. */
export interface SeedRun {
  readonly seed: number;
  readonly lr: TrainOptions["lr"];
  /** Per-parameter step-size multipliers (μP). */
  readonly lrScale?: TrainOptions["lrScale"];
  readonly progress: Progress;
  /** Put before "seed k, loss x" in the progress line (e.g. the learning rate of a sweep). */
  readonly tickPrefix?: string;
}

/**
 * Train `model` in place with Adam on random windows of `trainIds` (the seed draws the windows),
 * ticking `progress` after every step with "seed k, loss x".
 */
export function trainSeed(
  model: GPT,
  trainIds: ArrayLike<number>,
  s: RunSizes,
  run: SeedRun,
): TrainResult {
  const { seed, progress } = run;
  return train(model.config, trainIds, {
    model,
    steps: s.steps,
    lr: run.lr,
    batch: s.batch,
    seqLen: s.n,
    seed,
    ...(s.clip === undefined ? {} : { clip: s.clip }),
    ...(run.lrScale === undefined ? {} : { lrScale: run.lrScale }),
    onStep: (i) => progress.tick(`${run.tickPrefix ?? ""}seed ${seed}, loss ${i.loss.toFixed(3)}`),
  });
}

/**
 * Seeds of the fixed evaluation windows: every model of every study that trains is scored on the
 * same held-out windows (and, where a study reports it, the same training windows).
 */
export const EVAL_WINDOWS = { heldout: 0x4e1d, train: 0x7a1 } as const;

/** The sizes a fixed-windows loss reads. */
export interface EvalSizes {
  /** Batches of windows. */
  readonly evalBatches: number;
  /** Windows per batch. */
  readonly batch: number;
  /** Tokens per window (one more id for the last target). */
  readonly n: number;
}

/** Mean loss of `model` over `s.evalBatches` batches of `ids` windows drawn by `windowsSeed`. */
export function fixedWindowsLoss(
  model: GPT,
  ids: ArrayLike<number>,
  s: EvalSizes,
  windowsSeed: number,
): number {
  return evalLoss(model, ids, {
    batches: s.evalBatches,
    batch: s.batch,
    seqLen: s.n,
    seed: windowsSeed,
  });
}
