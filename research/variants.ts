/**
 * Train tiny GPTs that differ in one switch of the `gpt` formula from a pre-LN baseline — norm
 * placement, norm kind, FFN activation, positions, attention heads for keys/values — on the bundled
 * corpus, with the same seed, the same data windows, the same step budget and the same Adam
 * schedule, and compare their loss curves, final losses (train and held-out), time per step and
 * parameter counts. Training is `reference/train.ts` (the engine's gradients of the `gpt` formula).
 */
import { countParameters, GPT, type GPTConfig } from "../reference/model.js";
import { toCsv } from "./csv.js";
import { plotSpec, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { mean, median, pairedInterval, std, type PairedInterval } from "./stats.js";
import {
  checksTable,
  intervalText,
  signed,
  mdTable,
  runInfo,
  runInfoLine,
  requirePositiveInteger,
  studySizes,
  sig,
  StudyError,
  type Study,
  type StudyCheck,
  type StudyOptions,
  plottedStudy,
} from "./study.js";
import {
  baselineConfig,
  corpusSplit,
  EVAL_WINDOWS,
  fixedWindowsLoss,
  HELD_OUT_FRACTION,
  requireEvenHeadSize,
  schedule,
  trainSeed,
} from "./training.js";

export interface VariantsSizes {
  readonly d_model: number;
  readonly H: number;
  readonly L: number;
  /** Tokens per training sequence (= n_ctx). */
  readonly n: number;
  readonly batch: number;
  /** Corpus BPE vocabulary. */
  readonly V: number;
  readonly steps: number;
  /** Peak Adam step size (linear warm-up, then cosine decay to a tenth). */
  readonly lr: number;
  readonly warmup: number;
  /** Global gradient-norm clip. */
  readonly clip: number;
  /** Batches of the fixed evaluation windows (train and held-out). */
  readonly evalBatches: number;
  readonly seeds: number;
}

/**
 * Default: 300 steps of 16 × 32 tokens for 12 models × 5 seeds. The engine takes ≈ 40–60 ms per
 * step for these models on an idle core (measured before choosing), so the 60 runs take ≈ 15
 * minutes; more steps per run would not fit the 30-minute budget with five seeds. Five seeds are
 * what a paired interval needs to resolve differences of a few hundredths of a nat (see the
 * summary's noise paragraph).
 */
const VARIANTS_DEFAULT: VariantsSizes = {
  d_model: 32,
  H: 4,
  L: 2,
  n: 32,
  batch: 16,
  V: 512,
  steps: 300,
  lr: 3e-3,
  warmup: 30,
  clip: 1,
  evalBatches: 8,
  seeds: 5,
};
export const VARIANTS_QUICK: VariantsSizes = {
  d_model: 16,
  H: 4,
  L: 1,
  n: 16,
  batch: 4,
  V: 512,
  steps: 12,
  lr: 3e-3,
  warmup: 3,
  clip: 1,
  evalBatches: 2,
  seeds: 1,
};

/** The baseline is trained with at least this many seeds: its spread is the yardstick for every difference. */
export const BASELINE_SEEDS = 3;

export interface VariantSpec {
  readonly id: string;
  /** Which switch it changes ("baseline" for the reference point). */
  readonly group: "baseline" | "placement" | "norm" | "activation" | "positions" | "attention";
  /** What differs from the baseline. */
  readonly label: string;
  readonly config: (s: VariantsSizes) => Partial<GPTConfig>;
}

/** The baseline (pre-LN, LayerNorm, GELU, learned positions, multi-head) and one change at a time. */
export const VARIANTS: readonly VariantSpec[] = [
  {
    id: "baseline",
    group: "baseline",
    label: "pre-LN, LayerNorm, GELU, learned positions, MHA",
    config: () => ({}),
  },
  {
    id: "post-ln",
    group: "placement",
    label: "post-LN (the seed's block)",
    config: () => ({ placement: "post" }),
  },
  {
    id: "sandwich",
    group: "placement",
    label: "sandwich norm",
    config: () => ({ placement: "sandwich" }),
  },
  { id: "rmsnorm", group: "norm", label: "RMSNorm", config: () => ({ norm: "rms_norm" }) },
  { id: "relu", group: "activation", label: "ReLU FFN", config: () => ({ activation: "relu" }) },
  {
    id: "swiglu",
    group: "activation",
    label: "SwiGLU FFN (LLaMA d_ff)",
    config: () => ({ activation: "swiglu" }),
  },
  {
    id: "sinusoidal",
    group: "positions",
    label: "sinusoidal positions",
    config: () => ({ positions: "sinusoidal" }),
  },
  { id: "rope", group: "positions", label: "RoPE", config: () => ({ positions: "rope" }) },
  { id: "alibi", group: "positions", label: "ALiBi", config: () => ({ positions: "alibi" }) },
  { id: "nope", group: "positions", label: "no positions", config: () => ({ positions: "none" }) },
  { id: "mqa", group: "attention", label: "multi-query (H_kv = 1)", config: () => ({ H_kv: 1 }) },
  {
    id: "gqa",
    group: "attention",
    label: "grouped-query (H_kv = H/2)",
    config: (s) => ({ H_kv: Math.max(1, s.H / 2) }),
  },
];

/** Columns of `variants.csv`: one row per variant. */
export const VARIANTS_COLUMNS = [
  "variant",
  "group",
  "change",
  "params",
  "initial_loss",
  "train_loss",
  "heldout_loss",
  "heldout_loss_std",
  "delta",
  "delta_low",
  "delta_high",
  "significant",
  "ms_per_step",
  "steps",
  "seeds",
] as const;
/** Columns of `variants-seeds.csv`: one row per (variant, seed) run, the numbers the paired intervals come from. */
export const SEED_COLUMNS = ["variant", "seed", "train_loss", "heldout_loss"] as const;
/** Columns of `variants-curves.csv`: one row per (variant, step). */
export const CURVE_COLUMNS = ["variant", "step", "loss", "loss_smoothed"] as const;

export interface VariantResult {
  readonly spec: VariantSpec;
  readonly config: GPTConfig;
  readonly params: number;
  /** Held-out loss of the initial weights (mean over seeds). */
  readonly initialLoss: number;
  /** Final loss on fixed training windows, per seed. */
  readonly trainLoss: readonly number[];
  /** Final loss on fixed held-out windows, per seed (the seeds every variant ran). */
  readonly heldoutLoss: readonly number[];
  /** Held-out loss of every seed run (the baseline runs BASELINE_SEEDS or more, as a yardstick of seed noise). */
  readonly heldoutAllSeeds: readonly number[];
  /** Train loss of every seed run. */
  readonly trainAllSeeds: readonly number[];
  /** Batch loss of each step, mean over seeds. */
  readonly curve: readonly number[];
  /** Median milliseconds per step (forward, backward, Adam), the first step (graph building) left out. */
  readonly msPerStep: number;
}

/**
 * A direction the literature reports for one switch, at its scale: `lower` — the variant's loss is
 * below the baseline's; `higher` — above; `comparable` — not worse (the interval reaches 0 or lies below it).
 */
export interface LiteratureDirection {
  readonly variant: string;
  readonly expect: "lower" | "higher" | "comparable";
  readonly source: string;
}

/** What the papers report for the switches the baseline differs in (held-out loss of the variant vs the baseline's). */
export const LITERATURE: readonly LiteratureDirection[] = [
  {
    variant: "swiglu",
    expect: "lower",
    source:
      "Shazeer 2020, Table 1: FFN_SwiGLU log-perplexity 1.944 vs FFN_GELU 1.983 (T5 base, 65k steps)",
  },
  {
    variant: "relu",
    expect: "higher",
    source: "Shazeer 2020, Table 1: FFN_ReLU 1.997 vs FFN_GELU 1.983",
  },
  {
    variant: "rmsnorm",
    expect: "comparable",
    source:
      "Zhang & Sennrich 2019, Tables 1–4: RMSNorm matches LayerNorm's quality (BLEU, accuracy) at lower cost",
  },
  {
    variant: "post-ln",
    expect: "higher",
    source:
      "Xiong et al. 2020, Figures 4–5: pre-LN reaches a given validation loss in fewer updates than post-LN",
  },
];

/** The paired difference of a variant's held-out loss from the baseline's over the shared seeds. */
function pairedDelta(v: VariantResult, baseline: VariantResult): PairedInterval {
  return pairedInterval(v.heldoutLoss, baseline.heldoutAllSeeds.slice(0, v.heldoutLoss.length));
}

/**
 * Whether a paired interval agrees with a literature direction: `agrees`, `unresolved` (not
 * significant), or `disagrees`.
 */
export function verdict(
  d: PairedInterval,
  expect: LiteratureDirection["expect"],
): "agrees" | "unresolved" | "disagrees" {
  if (expect === "comparable") return d.significant && d.low > 0 ? "disagrees" : "agrees";
  if (!d.significant) return "unresolved";
  return (expect === "lower") === d.mean < 0 ? "agrees" : "disagrees";
}

export interface VariantsResult {
  readonly sizes: VariantsSizes;
  readonly variants: readonly VariantResult[];
  readonly trainTokens: number;
  readonly heldoutTokens: number;
  readonly checks: readonly StudyCheck[];
  readonly seconds: number;
}

function checkSizes(s: VariantsSizes): void {
  for (const k of [
    "d_model",
    "H",
    "L",
    "n",
    "batch",
    "V",
    "steps",
    "evalBatches",
    "seeds",
  ] as const)
    requirePositiveInteger("variants", k, s[k]);
  if (!Number.isInteger(s.warmup) || s.warmup < 0 || s.warmup >= s.steps)
    throw new StudyError(`variants: warmup must be an integer in [0, steps), got ${s.warmup}`);
  if (!(s.lr > 0)) throw new StudyError(`variants: lr must be positive, got ${s.lr}`);
  if (!(s.clip > 0)) throw new StudyError(`variants: clip must be positive, got ${s.clip}`);
  if (s.H < 2 || s.H % 2 !== 0)
    throw new StudyError(
      `variants: H must be even and ≥ 2 so grouped-query attention (H_kv = H/2) differs from MQA and MHA, got ${s.H}`,
    );
  requireEvenHeadSize("variants", s);
  if (s.V < 256)
    throw new StudyError(`variants: the byte-level corpus tokenizer needs V ≥ 256, got ${s.V}`);
}

/** The configuration of a variant at the study's sizes. */
export function variantConfig(spec: VariantSpec, s: VariantsSizes): GPTConfig {
  return baselineConfig(s, spec.config(s));
}

/** Moving average over the last `w` values (shorter at the start). */
export function smooth(xs: readonly number[], w: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    s += xs[i]!;
    if (i >= w) s -= xs[i - w]!;
    out.push(s / Math.min(i + 1, w));
  }
  return out;
}

/** Train every variant and evaluate it. */
export function runVariants(
  opts: StudyOptions & { sizes?: Partial<VariantsSizes>; only?: readonly string[] } = {},
): VariantsResult {
  const started = performance.now();
  const sizes = studySizes(opts, VARIANTS_QUICK, VARIANTS_DEFAULT);
  checkSizes(sizes);
  const specs =
    opts.only === undefined ? VARIANTS : VARIANTS.filter((v) => opts.only!.includes(v.id));
  for (const id of opts.only ?? [])
    if (!VARIANTS.some((v) => v.id === id))
      throw new StudyError(
        `unknown variant "${id}"; variants: ${VARIANTS.map((v) => v.id).join(", ")}`,
      );
  const progress = opts.progress ?? Progress.silent();
  const { trainIds, heldIds } = corpusSplit(sizes.V);
  const lr = schedule(sizes);
  const results: VariantResult[] = [];
  for (const spec of specs) {
    const config = variantConfig(spec, sizes);
    const seeds = spec.id === "baseline" ? Math.max(sizes.seeds, BASELINE_SEEDS) : sizes.seeds;
    progress.stage(`${spec.id} (${spec.label})`, seeds * sizes.steps);
    const trainLoss: number[] = [];
    const heldoutLoss: number[] = [];
    const initial: number[] = [];
    const curves: number[][] = [];
    const ms: number[] = [];
    for (let seed = 0; seed < seeds; seed++) {
      const model = GPT.init(config, { seed });
      initial.push(fixedWindowsLoss(model, heldIds, sizes, EVAL_WINDOWS.heldout));
      const r = trainSeed(model, trainIds, sizes, { seed, lr, progress });
      curves.push(r.losses);
      ms.push(...r.stepMs.slice(1));
      trainLoss.push(fixedWindowsLoss(r.model, trainIds, sizes, EVAL_WINDOWS.train));
      heldoutLoss.push(fixedWindowsLoss(r.model, heldIds, sizes, EVAL_WINDOWS.heldout));
    }
    // the curve and the final losses of the shared seeds 0 … seeds−1, so every variant is compared on the same runs
    const shared = sizes.seeds;
    const curve = curves[0]!.map((_, t) => mean(curves.slice(0, shared).map((c) => c[t]!)));
    results.push({
      spec,
      config,
      params: countParameters(config),
      initialLoss: mean(initial.slice(0, shared)),
      trainLoss: trainLoss.slice(0, shared),
      heldoutLoss: heldoutLoss.slice(0, shared),
      heldoutAllSeeds: heldoutLoss,
      trainAllSeeds: trainLoss,
      curve,
      msPerStep: median(ms.length > 0 ? ms : [Number.NaN]),
    });
  }
  progress.end();
  const checks: StudyCheck[] = [
    {
      name: "every variant: held-out loss after training below its loss at initialisation",
      expected: `lower for all ${results.length} (a shared budget that trains every variant)`,
      measured: results
        .map((v) => `${v.spec.id} ${sig(v.initialLoss, 3)} → ${sig(mean(v.heldoutLoss), 3)}`)
        .join("; "),
      ok: results.every((v) => mean(v.heldoutLoss) < v.initialLoss),
    },
  ];
  const baseline = results.find((v) => v.spec.id === "baseline");
  if (baseline !== undefined && sizes.seeds > 1) {
    for (const lit of LITERATURE) {
      const v = results.find((x) => x.spec.id === lit.variant);
      if (v === undefined) continue;
      const d = pairedDelta(v, baseline);
      const word = verdict(d, lit.expect);
      checks.push({
        name: `${lit.variant} vs baseline, paired Δ held-out (${sizes.seeds} seeds)`,
        expected:
          String(
            lit.expect === "comparable"
              ? "not worse (95% CI reaches 0 or lies below)"
              : `${lit.expect} (95% CI excludes 0)`,
          ) +
          ` ` +
          `— ${lit.source}`,
        measured: `${fmtDelta(d)}: ${word}`,
        ok: word === "agrees",
      });
    }
  }
  return {
    sizes,
    variants: results,
    trainTokens: trainIds.length,
    heldoutTokens: heldIds.length,
    checks,
    seconds: (performance.now() - started) / 1000,
  };
}

// ---------------------------------------------------------------------------------------------
// report

/** "−0.041 [−0.060, −0.022]" (a single seed: the difference alone). */
function fmtDelta(d: PairedInterval): string {
  return d.n > 1 ? intervalText(d) : signed(d.mean);
}

function smoothWindow(s: VariantsSizes): number {
  return Math.max(1, Math.round(s.steps / 20));
}

/**
 * The table of {@link VARIANTS_COLUMNS}; `delta*` are the paired difference from the baseline and
 * its 95% interval (NaN with one seed).
 */
export function variantsCsv(r: VariantsResult): string {
  const baseline = r.variants.find((v) => v.spec.id === "baseline");
  return toCsv(
    VARIANTS_COLUMNS,
    r.variants.map((v) => {
      const d = baseline === undefined ? undefined : pairedDelta(v, baseline);
      return {
        variant: v.spec.id,
        group: v.spec.group,
        change: v.spec.label,
        params: v.params,
        initial_loss: v.initialLoss,
        train_loss: mean(v.trainLoss),
        heldout_loss: mean(v.heldoutLoss),
        heldout_loss_std: std(v.heldoutLoss),
        delta: d?.mean ?? Number.NaN,
        delta_low: d?.low ?? Number.NaN,
        delta_high: d?.high ?? Number.NaN,
        significant: d?.significant ?? false,
        ms_per_step: v.msPerStep,
        steps: r.sizes.steps,
        seeds: v.heldoutLoss.length,
      };
    }),
  );
}

/** Every run's final losses ({@link SEED_COLUMNS}), the baseline's extra seeds included. */
export function seedsCsv(r: VariantsResult): string {
  return toCsv(
    SEED_COLUMNS,
    r.variants.flatMap((v) =>
      v.heldoutAllSeeds.map((h, seed) => ({
        variant: v.spec.id,
        seed,
        train_loss: v.trainAllSeeds[seed]!,
        heldout_loss: h,
      })),
    ),
  );
}

/**
 * The loss curves of {@link CURVE_COLUMNS} (batch loss of each step, mean over the shared seeds,
 * and its trailing mean).
 */
export function curvesCsv(r: VariantsResult): string {
  const w = smoothWindow(r.sizes);
  return toCsv(
    CURVE_COLUMNS,
    r.variants.flatMap((v) => {
      const sm = smooth(v.curve, w);
      return v.curve.map((loss, step) => ({
        variant: v.spec.id,
        step,
        loss,
        loss_smoothed: sm[step]!,
      }));
    }),
  );
}

/** Loss curves per switch group (the baseline in every panel) above a bar chart of the final losses. */
export function variantsPlot(r: VariantsResult): TopLevelSpec {
  const w = smoothWindow(r.sizes);
  const groups = ["placement", "norm", "activation", "positions", "attention"] as const;
  const curves: object[] = [];
  const every = Math.max(1, Math.floor(r.sizes.steps / 100));
  for (const v of r.variants) {
    const sm = smooth(v.curve, w);
    const panels = v.spec.group === "baseline" ? groups : [v.spec.group];
    for (const panel of panels) {
      for (let t = 0; t < sm.length; t += every)
        curves.push({ panel, variant: v.spec.id, step: t + 1, loss: sm[t] });
      if ((sm.length - 1) % every !== 0)
        curves.push({ panel, variant: v.spec.id, step: sm.length, loss: sm[sm.length - 1] });
    }
  }
  const bars = r.variants.map((v) => ({
    variant: v.spec.id,
    group: v.spec.group,
    heldout: mean(v.heldoutLoss),
    train: mean(v.trainLoss),
  }));
  const base = r.variants.find((v) => v.spec.id === "baseline");
  const deltas =
    base === undefined || r.sizes.seeds < 2
      ? []
      : r.variants
          .filter((v) => v !== base)
          .map((v) => {
            const d = pairedDelta(v, base);
            return {
              variant: v.spec.id,
              delta: d.mean,
              low: d.low,
              high: d.high,
              significant: d.significant,
            };
          });
  const domain = r.variants.map((v) => v.spec.id);
  /** The variants along y, in the order of their smallest `sortField`; `title: null` hides it. */
  const variantAxis = (sortField: string, title?: null) => ({
    field: "variant",
    type: "nominal",
    sort: { field: sortField, op: "min", order: "ascending" },
    ...(title === null ? { title } : {}),
  });
  const color = {
    field: "variant",
    type: "nominal",
    title: "variant",
    scale: { domain, scheme: "tableau20" },
  } as const;
  const lo = Math.min(...bars.map((b) => Math.min(b.heldout, b.train)));
  const hi = Math.max(...bars.map((b) => Math.max(b.heldout, b.train)));
  const pad = Math.max(0.05, (hi - lo) * 0.15);
  return plotSpec(
    "Tiny GPT variants trained on the bundled corpus (same seed, data, steps and schedule)",
    `d_model = ${r.sizes.d_model}, H = ${r.sizes.H}, L = ${r.sizes.L}, ` +
      `${r.sizes.batch}×${r.sizes.n} tokens per step, ${r.sizes.steps} Adam ` +
      `steps, V = ${r.sizes.V}; curves: batch loss, mean of the last ${w} steps`,
    {
      vconcat: [
        {
          data: { values: curves },
          facet: { field: "panel", type: "nominal", title: null, sort: [...groups] },
          columns: 3,
          spec: {
            width: 230,
            height: 150,
            mark: { type: "line", strokeWidth: 1.4 },
            encoding: {
              x: { field: "step", type: "quantitative", title: "step" },
              y: {
                field: "loss",
                type: "quantitative",
                title: "loss (nats)",
                scale: { zero: false },
              },
              color,
            },
          },
        },
        {
          data: { values: bars },
          title: "final loss on fixed windows: held-out (bar) and train (tick)",
          width: 520,
          height: 18 * bars.length,
          layer: [
            {
              mark: { type: "bar" },
              encoding: {
                y: variantAxis("heldout", null),
                x: {
                  field: "heldout",
                  type: "quantitative",
                  title: "loss (nats)",
                  scale: { domain: [lo - pad, hi + pad], clamp: true, zero: false },
                },
                color,
              },
            },
            {
              mark: { type: "tick", color: "black", thickness: 2 },
              encoding: {
                y: variantAxis("heldout"),
                x: { field: "train", type: "quantitative" },
              },
            },
          ],
        },
        ...(deltas.length === 0
          ? []
          : [
              {
                data: { values: deltas },
                title:
                  `held-out loss minus the baseline's, paired over ${r.sizes.seeds} ` +
                  `seeds: mean and 95% CI (filled: excludes 0)`,
                width: 520,
                height: 18 * deltas.length,
                layer: [
                  {
                    data: { values: [{ zero: 0 }] },
                    mark: { type: "rule", color: "#888", strokeDash: [3, 3] },
                    encoding: { x: { field: "zero", type: "quantitative" } },
                  },
                  {
                    mark: { type: "rule", strokeWidth: 1.5 },
                    encoding: {
                      y: variantAxis("delta", null),
                      x: { field: "low", type: "quantitative", title: "Δ loss (nats)" },
                      x2: { field: "high" },
                      color,
                    },
                  },
                  {
                    mark: { type: "point", size: 50 },
                    encoding: {
                      y: variantAxis("delta"),
                      x: { field: "delta", type: "quantitative" },
                      color,
                      fill: {
                        condition: {
                          test: "datum.significant",
                          field: "variant",
                          type: "nominal",
                          scale: { domain, scheme: "tableau20" },
                        },
                        value: "white",
                      },
                    },
                  },
                ],
              },
            ]),
      ],
    },
  );
}

/** summary.md: setting, the table sorted by held-out loss, the check, seed noise and the scale reading. */
export function variantsSummary(r: VariantsResult, startedMs: number): string {
  const s = r.sizes;
  const baseline = r.variants.find((v) => v.spec.id === "baseline");
  const sorted = [...r.variants].sort((a, b) => mean(a.heldoutLoss) - mean(b.heldoutLoss));
  const embNorm = 0.02 * Math.sqrt(s.d_model);
  const sinNorm = Math.sqrt(s.d_model / 2);
  const normOut = Math.sqrt(s.d_model);
  const noise =
    baseline === undefined || baseline.heldoutAllSeeds.length < 2
      ? "(no baseline seeds to estimate it from)"
      : `The baseline trained from ${baseline.heldoutAllSeeds.length} seeds ` +
        `reaches a held-out loss of ` +
        `${baseline.heldoutAllSeeds.map((x) => sig(x, 4)).join(", ")}: mean ` +
        `${sig(mean(baseline.heldoutAllSeeds), 4)}, standard deviation ` +
        `${sig(std(baseline.heldoutAllSeeds), 2)} nats.`;
  const sd =
    baseline !== undefined && baseline.heldoutAllSeeds.length >= 2
      ? std(baseline.heldoutAllSeeds)
      : Number.NaN;
  const behind = (id: string) => {
    const v = r.variants.find((x) => x.spec.id === id);
    return v !== undefined && baseline !== undefined && Number.isFinite(sd)
      ? mean(v.heldoutLoss) - mean(baseline.heldoutLoss)
      : Number.NaN;
  };
  const lagging = ["sinusoidal", "sandwich"].filter((id) => behind(id) > 3 * sd);
  const scaleVerdict =
    lagging.length === 0
      ? "Here neither ends more than three baseline standard deviations behind the baseline."
      : `Here ${lagging
          .map(
            (id) =>
              `${id} ends ${sig(behind(id), 2)} nats (${sig(behind(id) / sd, 2)} ` +
              `baseline standard deviations) behind the baseline`,
          )
          .join(" and ")}, ` + `as that imbalance would make one expect.`;
  const deltaOf = (v: VariantResult) =>
    baseline === undefined ? undefined : pairedDelta(v, baseline);
  const rows = sorted.map((v) => {
    const d = deltaOf(v);
    return [
      v.spec.id,
      v.spec.label,
      v.params.toLocaleString("en-US"),
      sig(mean(v.trainLoss), 4),
      s.seeds > 1
        ? `${sig(mean(v.heldoutLoss), 4)} ± ${sig(std(v.heldoutLoss), 2)}`
        : sig(mean(v.heldoutLoss), 4),
      d === undefined || v === baseline ? (v === baseline ? "0" : "") : fmtDelta(d),
      d === undefined || v === baseline || s.seeds < 2 ? "" : d.significant ? "**yes**" : "no",
      sig(v.msPerStep, 3),
    ];
  });
  const others =
    baseline === undefined || s.seeds < 2
      ? []
      : r.variants.filter((v) => v !== baseline).map((v) => ({ v, d: pairedDelta(v, baseline) }));
  const nSig = others.filter((o) => o.d.significant).length;
  const pairedSds = others.map((o) => o.d.sd);
  const absDeltas = others.map((o) => Math.abs(o.d.mean));
  const pairedNoise =
    others.length === 0
      ? "With one seed there are no intervals: run with `--seeds 5` or more."
      : `Paired over the same seeds (the same shared initial weights and data ` +
        `windows), the differences scatter far less: the standard deviation of a ` +
        `variant's per-seed difference from the baseline has median ` +
        `${sig(median(pairedSds), 2)} nats (range ` +
        `${sig(Math.min(...pairedSds), 2)}–${sig(Math.max(...pairedSds), 2)}), ` +
        `against a median |Δ| of ${sig(median(absDeltas), 2)}. ${nSig} of ` +
        `${others.length} differences have a 95% interval that excludes 0 ` +
        `(marked **yes**); the others are not evidence either way at this budget.`;
  const litRows = LITERATURE.flatMap((lit) => {
    const v = r.variants.find((x) => x.spec.id === lit.variant);
    if (v === undefined || baseline === undefined || s.seeds < 2) return [];
    const d = pairedDelta(v, baseline);
    return [[lit.variant, lit.expect, lit.source, fmtDelta(d), verdict(d, lit.expect)]];
  });
  return (
    `# variants — tiny GPTs, one switch at a time

Every model is the \`gpt\` formula trained by \`reference/train.ts\` from GPT-2's initialisation (seed
${s.seeds === 1 ? "0" : `0 … ${s.seeds - 1}`}; a parameter's initial values depend only on its name and the seed, so
variants share all the weights they have in common), on the same random windows of the bundled corpus,
tokenised with its ${s.V}-token BPE: ` +
    `${r.trainTokens.toLocaleString("en-US")} training tokens and the last ` +
    `${Math.round(HELD_OUT_FRACTION * 100)}% ` +
    `(${r.heldoutTokens.toLocaleString("en-US")} tokens) held out.
d_model = ${s.d_model}, H = ${s.H}, L = ${s.L}, n_ctx = ${s.n}, d_ff = ` +
    `${4 * s.d_model} (SwiGLU: LLaMA's rule), tied embeddings;
${s.steps} Adam steps (β = 0.9, 0.999) of ${s.batch} × ${s.n} tokens, ` +
    `step size warmed up linearly over ${s.warmup} steps to ` +
    `${sig(s.lr)}
then cosine-decayed to ${sig(s.lr / 10)}, gradient norm clipped at ` +
    `${s.clip}. Final losses are the mean over ${s.evalBatches} fixed ` +
    `batches
of windows (the same for every variant) from each split. Time per step is the median wall time of
forward, backward and update (first step excluded), on a machine shared with other work, so it is
indicative only.

![loss curves and final losses](variants.svg)

Held-out loss: mean ± standard deviation over seeds. Δ: the variant's held-out loss minus the
baseline's, seed by seed, averaged, with its paired 95% t interval over the ${s.seeds} seed${s.seeds === 1 ? "" : "s"}
(\`variants-seeds.csv\` holds every run's numbers).

` +
    mdTable(
      [
        "variant",
        "change from the baseline",
        "parameters",
        "train loss",
        "held-out loss",
        "Δ held-out vs baseline [95% CI]",
        "significant",
        "ms / step",
      ],
      rows,
    ) +
    `

## Checks

${checksTable(r.checks)}

## Against the literature

` +
    (litRows.length === 0
      ? "(needs the baseline and at least two seeds)"
      : mdTable(
          ["variant", "literature (variant vs baseline)", "source", "Δ here [95% CI]", "here"],
          litRows,
        )) +
    `

The papers measure models of 10⁸ parameters trained for 10⁴–10⁵ steps; ` +
    `these have ${sig((baseline?.params ?? 0) / 1000, 2)} k ` +
    `parameters
and ${s.steps} steps. "unresolved" means the interval includes 0: this budget cannot tell.

## Reading

**Seed noise.** ${noise}
An unpaired comparison would need differences several times that spread. ${pairedNoise}

**Scale at initialisation.** Under GPT-2's initialisation a token embedding has norm ≈ 0.02·√d_model =
${sig(embNorm, 2)}, while a sinusoidal position vector has norm √(d_model/2) = ${sig(sinNorm, 2)}, and in the sandwich
placement every branch output passes a norm (γ = 1) and arrives with norm ≈ √d_model = ${sig(normOut, 2)}. In those two
variants what is added to the stream starts one to two orders of magnitude larger than the token
identity (the original Transformer multiplies embeddings by √d_model; the \`gpt\` formula, like GPT-2,
does not). ${scaleVerdict}

These are ${s.steps}-step runs of ${s.L}-layer models. They say how each switch behaves at this scale,
initialisation and budget, not how it would at GPT-2's.

${runInfoLine(runInfo(startedMs))}
`
  );
}

export const variantsStudy: Study = plottedStudy({
  name: "variants",
  description:
    "train tiny GPTs that differ in one switch (placement, norm, activation, positions, MHA/MQA/GQA) and compare",
  defaultSeeds: VARIANTS_DEFAULT.seeds,
  compute: runVariants,
  tables: (r) => ({
    "variants.csv": variantsCsv(r),
    "variants-seeds.csv": seedsCsv(r),
    "variants-curves.csv": curvesCsv(r),
  }),
  plot: variantsPlot,
  summary: (r, t) => variantsSummary(r, t.wallMs),
});
