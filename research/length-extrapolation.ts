/**
 * Press, Smith & Lewis 2022, "Train Short, Test Long: Attention with Linear Biases Enables Input
 * Length Extrapolation" (ICLR), Figure 1: language models that differ only in how they encode
 * positions are trained at one length L_train and evaluated on longer inputs. ALiBi's loss stays
 * put (or falls) beyond L_train; sinusoidal and rotary positions rise. Kazemnejad et al. 2023
 * ("The Impact of Positional Encoding on Length Generalization in Transformers", NeurIPS) add the
 * model with no positional encoding at all (NoPE), whose causal mask alone lets it infer positions.
 *
 * Tiny GPTs of the `gpt` formula — learned, sinusoidal, RoPE, ALiBi and no positions, everything
 * else equal — are trained by `reference/train.ts` on windows of L_train tokens of the bundled
 * corpus, then evaluated on held-out windows of 1×, 2×, 4× and 8× L_train. Learned positions
 * cannot go beyond L_train: `wpe` has L_train rows, and the model refuses longer inputs.
 */
import { GPT, type GPTConfig, type Positions } from "../reference/model.js";
import { toCsv } from "./csv.js";
import { plotSpec, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { mean, pairedInterval, std, type PairedInterval } from "./stats.js";
import {
  checksTable,
  intervalText,
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
  HELD_OUT_FRACTION,
  requireEvenHeadSize,
  schedule,
  trainSeed,
} from "./training.js";

export interface LengthSizes {
  readonly d_model: number;
  readonly H: number;
  readonly L: number;
  /** Training length L_train (= n_ctx, the rows of `wpe` for learned positions). */
  readonly n: number;
  /** Evaluation lengths as multiples of L_train. */
  readonly factors: readonly number[];
  readonly batch: number;
  readonly V: number;
  readonly steps: number;
  readonly lr: number;
  readonly warmup: number;
  readonly clip: number;
  /** Held-out tokens predicted at every length (at most; rounded down to a multiple of the longest length). */
  readonly evalTokens: number;
  readonly seeds: number;
}

/**
 * Default: L_train = 64, 5 × 4 models of 300 steps of 8 × 64 tokens (≈ 60 ms a step on an idle
 * core for these sizes: ≈ 6 minutes of training), each evaluated on the whole held-out split
 * (11,776 predicted tokens) at every length.
 */
const LENGTH_DEFAULT: LengthSizes = {
  d_model: 32,
  H: 4,
  L: 2,
  n: 64,
  factors: [1, 2, 4, 8],
  batch: 8,
  V: 512,
  steps: 300,
  lr: 3e-3,
  warmup: 30,
  clip: 1,
  evalTokens: 1 << 20,
  seeds: 4,
};
/** Quick (tests): seconds. */
export const LENGTH_QUICK: LengthSizes = {
  d_model: 16,
  H: 4,
  L: 1,
  n: 8,
  factors: [1, 2, 4, 8],
  batch: 4,
  V: 512,
  steps: 12,
  lr: 3e-3,
  warmup: 3,
  clip: 1,
  evalTokens: 256,
  seeds: 2,
};

/**
 * Mean next-token loss over the first `tokens` predictions of `ids` (a multiple of `length`), cut
 * into windows of `length` + 1 ids at stride `length`: every target 1 … tokens is predicted once,
 * from the context its window gives it — so every length scores the same targets and differs only
 * in how much context precedes them (Press et al.'s non-overlapping evaluation).
 */
export function tiledLoss(
  model: GPT,
  ids: ArrayLike<number>,
  length: number,
  tokens: number,
): number {
  if (tokens % length !== 0 || tokens + 1 > ids.length)
    throw new StudyError(
      `tiledLoss: ${tokens} predictions must be a multiple of ${length} within ${ids.length - 1}`,
    );
  const windows = tokens / length;
  let sum = 0;
  for (let w0 = 0; w0 < windows; w0 += 8) {
    const batch: number[][] = [];
    for (let w = w0; w < Math.min(windows, w0 + 8); w++)
      batch.push(Array.from({ length: length + 1 }, (_, i) => ids[w * length + i]!));
    sum += model.loss(batch) * batch.length;
  }
  return sum / windows;
}

/** The position encodings compared, in the order of the plot's legend. */
export const LENGTH_POSITIONS: readonly { id: Positions; label: string }[] = [
  { id: "learned", label: "learned (GPT-2)" },
  { id: "sinusoidal", label: "sinusoidal (Vaswani et al.)" },
  { id: "rope", label: "RoPE (Su et al.)" },
  { id: "alibi", label: "ALiBi (Press et al.)" },
  { id: "none", label: "no positions (NoPE)" },
];

/** Columns of `length-extrapolation.csv`: one row per (positions, factor). */
export const LENGTH_COLUMNS = [
  "positions",
  "factor",
  "length",
  "loss_mean",
  "loss_std",
  "rise_mean",
  "rise_low",
  "rise_high",
  "seeds",
  "evaluable",
] as const;

export interface LengthRow {
  readonly positions: Positions;
  readonly factor: number;
  readonly length: number;
  /** Held-out loss per seed (empty when the model cannot take this length). */
  readonly perSeed: readonly number[];
  /** loss(length) − loss(L_train), per seed, with its paired 95% interval (undefined when not evaluable). */
  readonly rise: PairedInterval | undefined;
}

export interface LengthResult {
  readonly sizes: LengthSizes;
  readonly rows: readonly LengthRow[];
  readonly params: Readonly<Record<string, number>>;
  readonly trainTokens: number;
  readonly heldoutTokens: number;
  /** Targets scored at every length. */
  readonly evalTokens: number;
  readonly checks: readonly StudyCheck[];
}

function checkSizes(s: LengthSizes): void {
  for (const k of ["d_model", "H", "L", "n", "batch", "V", "steps", "evalTokens", "seeds"] as const)
    requirePositiveInteger("length-extrapolation", k, s[k]);
  if (
    s.factors.length < 2 ||
    s.factors[0] !== 1 ||
    s.factors.some((f, i) => !Number.isInteger(f) || (i > 0 && f <= s.factors[i - 1]!))
  ) {
    throw new StudyError(
      `length-extrapolation: factors must start at 1 and increase (integers), got ${s.factors.join(", ")}`,
    );
  }
  requireEvenHeadSize("length-extrapolation", s);
  if (s.seeds < 2)
    throw new StudyError("length-extrapolation: the bands need a seed spread: seeds must be ≥ 2");
}

/** A model with these positions at the study's sizes (n_ctx = L_train). */
export function lengthConfig(positions: Positions, s: LengthSizes): GPTConfig {
  return baselineConfig(s, { positions });
}

/** Train each position encoding at L_train and evaluate it at every factor × L_train. */
export function runLength(
  opts: StudyOptions & { sizes?: Partial<LengthSizes> } = {},
): LengthResult {
  const sizes = studySizes(opts, LENGTH_QUICK, LENGTH_DEFAULT);
  checkSizes(sizes);
  const progress = opts.progress ?? Progress.silent();
  const { trainIds, heldIds } = corpusSplit(sizes.V);
  const longest = sizes.n * sizes.factors[sizes.factors.length - 1]!;
  const evalTokens = Math.floor(Math.min(sizes.evalTokens, heldIds.length - 1) / longest) * longest;
  if (evalTokens === 0)
    throw new StudyError(
      `length-extrapolation: ${heldIds.length} held-out tokens cannot fill a window of ${longest + 1}`,
    );
  const lr = schedule(sizes);
  const rows: LengthRow[] = [];
  const params: Record<string, number> = {};
  for (const pos of LENGTH_POSITIONS) {
    const config = lengthConfig(pos.id, sizes);
    const evaluable = sizes.factors.map((f) => pos.id !== "learned" || f * sizes.n <= config.n_ctx);
    progress.stage(
      `${pos.id} positions`,
      sizes.seeds * (sizes.steps + evaluable.filter(Boolean).length),
    );
    const losses: number[][] = sizes.factors.map(() => []);
    for (let seed = 0; seed < sizes.seeds; seed++) {
      const model = GPT.init(config, { seed });
      params[pos.id] = model.parameterCount;
      trainSeed(model, trainIds, sizes, { seed, lr, progress });
      sizes.factors.forEach((f, k) => {
        if (!evaluable[k]) return;
        losses[k]!.push(tiledLoss(model, heldIds, f * sizes.n, evalTokens));
        progress.tick(`seed ${seed}, ${f * sizes.n} tokens`);
      });
    }
    sizes.factors.forEach((f, k) => {
      rows.push({
        positions: pos.id,
        factor: f,
        length: f * sizes.n,
        perSeed: losses[k]!,
        rise: evaluable[k] ? pairedInterval(losses[k]!, losses[0]!) : undefined,
      });
    });
  }
  progress.end();
  return {
    sizes,
    rows,
    params,
    trainTokens: trainIds.length,
    heldoutTokens: heldIds.length,
    evalTokens,
    checks: lengthChecks(sizes, rows),
  };
}

// ---------------------------------------------------------------------------------------------
// checks

/**
 * The band ALiBi's loss must stay in beyond L_train: at most this many nats above its loss at
 * L_train (≈ 5% perplexity).
 */
const ALIBI_BAND = 0.05;
/**
 * What "rises" means for sinusoidal and RoPE at the longest length: more than this many nats above
 * their own loss at L_train.
 */
const RISE_MIN = 0.1;

function row(rows: readonly LengthRow[], p: Positions, f: number): LengthRow | undefined {
  return rows.find((r) => r.positions === p && r.factor === f);
}

/**
 * Press et al. 2022, Figure 1 (WikiText-103, L_train = 512 and 1024, inference up to 16k tokens):
 * ALiBi's perplexity beyond L_train stays within a few percent of its value at L_train or falls,
 * while the sinusoidal model's explodes and the rotary model's climbs steadily. Kazemnejad et al.
 * 2023 (§4) find no positional encoding extrapolating better than absolute ones.
 */
export function lengthChecks(s: LengthSizes, rows: readonly LengthRow[]): StudyCheck[] {
  const top = s.factors[s.factors.length - 1]!;
  const beyond = s.factors.filter((f) => f > 1);
  const checks: StudyCheck[] = [];
  const alibi = beyond
    .map((f) => row(rows, "alibi", f)?.rise)
    .filter((d): d is PairedInterval => d !== undefined);
  if (alibi.length === beyond.length) {
    const worst = Math.max(...alibi.map((d) => d.high));
    checks.push({
      name:
        `ALiBi: loss at ${beyond.map((f) => `${f}×`).join(", ")} L_train minus ` +
        `its loss at L_train (upper end of the 95% CI over seeds)`,
      expected:
        `≤ +${ALIBI_BAND} nats, a band of ≈ 5% perplexity — Press et al. 2022, ` +
        `Figure 1: ALiBi's perplexity stays level or falls beyond L_train`,
      measured: alibi.map((d, i) => `${beyond[i]}×: ${intervalText(d)}`).join("; "),
      ok: worst <= ALIBI_BAND,
    });
  }
  for (const p of ["sinusoidal", "rope"] as const) {
    const d = row(rows, p, top)?.rise;
    const a = row(rows, "alibi", top);
    if (d === undefined || a?.rise === undefined) continue;
    const own = row(rows, p, top)!;
    const vsAlibi = pairedInterval(
      own.perSeed.map((x, i) => x - row(rows, p, 1)!.perSeed[i]!),
      a.perSeed.map((x, i) => x - row(rows, "alibi", 1)!.perSeed[i]!),
    );
    checks.push({
      name:
        `${p === "rope" ? "RoPE" : "sinusoidal"}: rise at ${top}× L_train, and ` +
        `that rise minus ALiBi's (paired over seeds)`,
      expected:
        `rise > +${RISE_MIN} nats and above ALiBi's (95% CI > 0) — Press et al. ` +
        `2022, Figure 1: ` +
        String(
          p === "rope"
            ? "the rotary model's perplexity climbs beyond L_train"
            : "the sinusoidal model's perplexity explodes beyond L_train",
        ),
      measured: `rise ${intervalText(d)}; minus ALiBi's ${intervalText(vsAlibi)}`,
      ok: d.mean > RISE_MIN && vsAlibi.low > 0,
    });
  }
  const none = row(rows, "none", top)?.rise;
  const sin = row(rows, "sinusoidal", top);
  if (none !== undefined && sin?.rise !== undefined) {
    const diff = pairedInterval(
      row(rows, "none", top)!.perSeed.map((x, i) => x - row(rows, "none", 1)!.perSeed[i]!),
      sin.perSeed.map((x, i) => x - row(rows, "sinusoidal", 1)!.perSeed[i]!),
    );
    checks.push({
      name: `no positions: rise at ${top}× L_train minus the sinusoidal model's (paired over seeds)`,
      expected:
        "< 0 (95% CI below 0) — Kazemnejad et al. 2023, §4: NoPE extrapolates better than absolute position encodings",
      measured: `NoPE rise ${intervalText(none)}; minus sinusoidal's ${intervalText(diff)}`,
      ok: diff.high < 0,
    });
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// report

/** The table of {@link LENGTH_COLUMNS} (NaN and evaluable = false where learned positions cannot go). */
export function lengthCsv(r: LengthResult): string {
  return toCsv(
    LENGTH_COLUMNS,
    r.rows.map((x) => ({
      positions: x.positions,
      factor: x.factor,
      length: x.length,
      loss_mean: x.perSeed.length > 0 ? mean(x.perSeed) : Number.NaN,
      loss_std: x.perSeed.length > 0 ? std(x.perSeed) : Number.NaN,
      rise_mean: x.rise?.mean ?? Number.NaN,
      rise_low: x.rise?.low ?? Number.NaN,
      rise_high: x.rise?.high ?? Number.NaN,
      seeds: x.perSeed.length,
      evaluable: x.rise !== undefined,
    })),
  );
}

/** Press et al.'s Figure 1 at this scale: held-out loss against the inference length, L_train marked. */
export function lengthPlot(r: LengthResult): TopLevelSpec {
  const s = r.sizes;
  const pts = r.rows
    .filter((x) => x.perSeed.length > 0)
    .map((x) => ({
      positions: LENGTH_POSITIONS.find((p) => p.id === x.positions)!.label,
      length: x.length,
      loss: mean(x.perSeed),
      low: mean(x.perSeed) - std(x.perSeed),
      high: mean(x.perSeed) + std(x.perSeed),
    }));
  const domain = LENGTH_POSITIONS.map((p) => p.label);
  const color = {
    field: "positions",
    type: "nominal",
    title: "positions",
    scale: { domain, scheme: "category10" },
  } as const;
  const x = {
    field: "length",
    type: "quantitative",
    title: "inference length (tokens)",
    scale: { type: "log", base: 2 },
    axis: { values: s.factors.map((f) => f * s.n) },
  } as const;
  return plotSpec(
    "Length extrapolation: trained at L_train, evaluated on longer held-out windows",
    `L_train = ${s.n} (dashed); d_model = ${s.d_model}, H = ${s.H}, L = ` +
      `${s.L}, ${s.steps} Adam steps of ${s.batch}×${s.n} tokens; mean ± std ` +
      `over ${s.seeds} seeds`,
    {
      width: 420,
      height: 280,
      layer: [
        {
          data: { values: [{ length: s.n }] },
          mark: { type: "rule", color: "#888", strokeDash: [4, 4] },
          encoding: { x },
        },
        {
          data: { values: pts },
          layer: [
            {
              mark: { type: "line", point: true },
              encoding: {
                x,
                y: {
                  field: "loss",
                  type: "quantitative",
                  title: "held-out loss (nats)",
                  scale: { zero: false },
                },
                color,
              },
            },
            {
              mark: { type: "rule" },
              encoding: {
                x,
                y: { field: "low", type: "quantitative" },
                y2: { field: "high" },
                color,
              },
            },
          ],
        },
      ],
    },
  );
}

function lengthSummary(r: LengthResult, startedMs: number): string {
  const s = r.sizes;
  const cell = (x: LengthRow | undefined) => {
    if (x === undefined) return "";
    if (x.perSeed.length === 0) return `— (wpe has ${s.n} rows)`;
    return `${sig(mean(x.perSeed), 4)} ± ${sig(std(x.perSeed), 2)}`;
  };
  const lossRows = LENGTH_POSITIONS.map((p) => [
    p.label,
    r.params[p.id]?.toLocaleString("en-US") ?? "",
    ...s.factors.map((f) => cell(row(r.rows, p.id, f))),
  ]);
  const riseRows = LENGTH_POSITIONS.map((p) => [
    p.label,
    ...s.factors.slice(1).map((f) => {
      const x = row(r.rows, p.id, f);
      return x?.rise === undefined ? "cannot" : intervalText(x.rise);
    }),
  ]);
  return (
    `# length-extrapolation — Press, Smith & Lewis 2022, Figure 1

Five \`gpt\` models that differ only in \`positions\` (learned, sinusoidal, RoPE, ALiBi, none), pre-LN,
LayerNorm, GELU, d_model = ${s.d_model}, H = ${s.H}, L = ${s.L}, tied embeddings, corpus BPE with V = ${s.V}
(${r.trainTokens.toLocaleString("en-US")} training tokens, the last ` +
    `${Math.round(HELD_OUT_FRACTION * 100)}% — ` +
    `${r.heldoutTokens.toLocaleString("en-US")} tokens — held ` +
    `out).
Each is trained by \`reference/train.ts\` from GPT-2's initialisation for ${s.steps} Adam steps of ${s.batch} windows
of L_train = ${s.n} tokens (step size warmed up over ${s.warmup} steps ` +
    `to ${sig(s.lr)}, cosine-decayed to ${sig(s.lr / 10)}, gradient
norm clipped at ${s.clip}), seeds 0 … ${s.seeds - 1} (weights and data ` +
    `order). Evaluation: the first ${r.evalTokens.toLocaleString("en-US")} ` +
    `held-out
tokens as targets, cut into windows of the evaluation length (each window's first input is the previous window's
last target): every length scores the same targets, for every model and seed, and differs only in the context
that precedes them — Press et al.'s non-overlapping evaluation.

![length extrapolation](length-extrapolation.svg)

Held-out loss (nats), mean ± std over ${s.seeds} seeds:

${mdTable(["positions", "parameters", ...s.factors.map((f) => `${f}× (${f * s.n})`)], lossRows)}

Rise over the loss at L_train, paired over seeds: mean [95% CI]:

${mdTable(["positions", ...s.factors.slice(1).map((f) => `${f}×`)], riseRows)}

Learned positions cannot be evaluated beyond L_train: \`wpe.weight\` has n_ctx = ${s.n} rows, and the model
refuses longer inputs rather than inventing rows.

## Checks

${checksTable(r.checks)}

${runInfoLine(runInfo(startedMs))}
`
  );
}

export const lengthExtrapolationStudy: Study = plottedStudy({
  name: "length-extrapolation",
  description:
    "Press et al. 2022 Fig. 1: train at L_train, evaluate at 1-8x L_train (learned, sinusoidal, RoPE, ALiBi, none)",
  defaultSeeds: LENGTH_DEFAULT.seeds,
  compute: runLength,
  tables: (r) => ({ "length-extrapolation.csv": lengthCsv(r) }),
  plot: lengthPlot,
  summary: (r, t) => lengthSummary(r, t.wallMs),
});
