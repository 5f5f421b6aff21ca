/**
 * Yang et al. 2022, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter
 * Transfer", Figure 1: sweep the learning rate of Transformers of growing width. In the standard
 * parametrisation (SP) the loss-optimal learning rate moves with width; in μP it stays put, so a
 * learning rate tuned on a narrow model transfers to a wide one.
 *
 * Tiny GPTs of the `gpt` formula (untied embeddings, H fixed so d_k grows with width) are trained by
 * `reference/train.ts` at every (width, learning rate), once from GPT-2's initialisation with one
 * step size (SP) and once with μP's initialisation and per-layer step sizes (`reference/mup.ts`,
 * base width = the narrowest), on the same data; the final held-out loss is recorded.
 */
import { GPT, type GPTConfig } from "../reference/model.js";
import { mupInit, mupLrScale } from "../reference/mup.js";
import { TrainError } from "../reference/train.js";
import { toCsv } from "./csv.js";
import { plotSpec, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { mean } from "./stats.js";
import {
  checksTable,
  signed,
  mdTable,
  runInfo,
  runInfoLine,
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
  schedule,
  trainSeed,
} from "./training.js";

export interface MupSizes {
  readonly widths: readonly number[];
  readonly H: number;
  readonly L: number;
  readonly n: number;
  readonly batch: number;
  readonly V: number;
  readonly steps: number;
  readonly warmup: number;
  /** log2 of the swept peak learning rates (one sweep step = a factor 2). */
  readonly log2Lrs: readonly number[];
  readonly evalBatches: number;
  readonly seeds: number;
  /** Widths at which μP with Appendix D.2's zero readout is also swept (the readout ablation). */
  readonly zeroReadoutWidths: readonly number[];
}

/**
 * Default: widths 32 … 256, learning rates 2⁻¹¹ … 2⁻⁵, 100 steps of 8 × 32 tokens, 2 seeds:
 * 2 × 4 × 7 × 2 = 112 runs, plus μP with a zero readout at the base width (14 runs). A step costs
 * ≈ 40 ms of CPU at width 32 and ≈ 350 ms at width 256 (profiled: the engine's matmuls, which
 * already use both cores, then GELU and Adam), so width 256 is about half the run; 100 steps
 * instead of 150 is what pays for the second seed.
 */
const MUP_DEFAULT: MupSizes = {
  widths: [32, 64, 128, 256],
  H: 4,
  L: 2,
  n: 32,
  batch: 8,
  V: 256,
  steps: 100,
  warmup: 10,
  log2Lrs: [-11, -10, -9, -8, -7, -6, -5],
  evalBatches: 4,
  seeds: 2,
  zeroReadoutWidths: [32],
};
/** Quick (tests): seconds. */
export const MUP_QUICK: MupSizes = {
  widths: [8, 16],
  H: 2,
  L: 1,
  n: 8,
  batch: 4,
  V: 256,
  steps: 6,
  warmup: 1,
  log2Lrs: [-8, -6, -4],
  evalBatches: 1,
  seeds: 2,
  zeroReadoutWidths: [8],
};

/** SP; μP with Table 3's readout (std 0.02/m); μP with a zero readout (Appendix D.2). */
const PARAMETRISATIONS = ["SP", "μP", "μP, zero readout"] as const;
export type Parametrisation = (typeof PARAMETRISATIONS)[number];
/** The two parametrisations the checks compare (Figure 1's two panels). */
const COMPARED = ["SP", "μP"] as const;
export type Compared = (typeof COMPARED)[number];

/** Columns of `mup.csv`: one row per (parametrisation, width, learning rate). */
export const MUP_COLUMNS = [
  "parametrisation",
  "width",
  "log2_lr",
  "lr",
  "heldout_loss",
  "heldout_loss_min",
  "heldout_loss_max",
  "diverged",
  "tied_with_optimum",
  "seeds",
] as const;
/** Columns of `mup-seeds.csv`: every run. */
export const MUP_SEED_COLUMNS = [
  "parametrisation",
  "width",
  "log2_lr",
  "seed",
  "heldout_loss",
  "diverged",
] as const;

export interface MupPoint {
  readonly param: Parametrisation;
  readonly width: number;
  readonly log2Lr: number;
  /** Mean held-out loss over seeds; Infinity when a run diverged (a non-finite loss or gradient). */
  readonly loss: number;
  /** Held-out loss of each seed (Infinity for a diverged run). */
  readonly seedLosses: readonly number[];
  readonly diverged: boolean;
}

export interface MupResult {
  readonly sizes: MupSizes;
  readonly points: readonly MupPoint[];
  /** log2 of the loss-optimal learning rate (lowest seed mean) per parametrisation and width. */
  readonly optimum: Readonly<Record<Parametrisation, readonly number[]>>;
  /** Per parametrisation and width, the learning rates tied with the optimum. */
  readonly ties: Readonly<Record<Parametrisation, readonly (readonly number[])[]>>;
  readonly checks: readonly StudyCheck[];
}

/** The model at one width (untied: μP's readout and input embedding take different step sizes). */
export function mupConfig(width: number, s: MupSizes): GPTConfig {
  return baselineConfig({ ...s, d_model: width }, { tied: false });
}

/** The widths a parametrisation is swept at. */
export function widthsOf(param: Parametrisation, s: MupSizes): readonly number[] {
  return param === "μP, zero readout" ? s.zeroReadoutWidths : s.widths;
}

/** Half the range of a point's seed losses: its seed spread (0 for one seed). */
function halfRange(p: MupPoint): number {
  return (Math.max(...p.seedLosses) - Math.min(...p.seedLosses)) / 2;
}

/**
 * The learning rates of one sweep whose seed mean is within the seed spread of the optimum's:
 * mean(l) − mean(best) ≤ halfRange(l) + halfRange(best), i.e. the two points' seed ranges,
 * centred on their means, overlap. The optimum itself is always in the set; diverged points never.
 */
export function tiedWithOptimum(row: readonly MupPoint[]): number[] {
  const best = row.reduce((a, b) => (b.loss < a.loss ? b : a));
  const tied = (p: MupPoint) => p.loss - best.loss <= halfRange(p) + halfRange(best);
  return row.filter((p) => !p.diverged && tied(p)).map((p) => p.log2Lr);
}

export function runMup(opts: StudyOptions & { sizes?: Partial<MupSizes> } = {}): MupResult {
  const sizes = studySizes(opts, MUP_QUICK, MUP_DEFAULT);
  if (sizes.widths.length < 2 || sizes.log2Lrs.length < 3)
    throw new StudyError("mup: needs at least 2 widths and 3 learning rates");
  if (sizes.widths.some((w) => w % sizes.H !== 0))
    throw new StudyError(`mup: every width must be a multiple of H = ${sizes.H}`);
  if (sizes.zeroReadoutWidths.some((w) => !sizes.widths.includes(w))) {
    throw new StudyError("mup: the zero-readout widths must be among the widths");
  }
  const progress = opts.progress ?? Progress.silent();
  const { trainIds, heldIds } = corpusSplit(sizes.V);
  const baseWidth = sizes.widths[0]!;
  const points: MupPoint[] = [];
  for (const param of PARAMETRISATIONS) {
    for (const width of widthsOf(param, sizes)) {
      const config = mupConfig(width, sizes);
      const readout = param === "μP, zero readout" ? "zero" : "scaled";
      progress.stage(`${param}, width ${width}`, sizes.log2Lrs.length * sizes.seeds * sizes.steps);
      for (const log2Lr of sizes.log2Lrs) {
        const seedLosses: number[] = [];
        for (let seed = 0; seed < sizes.seeds; seed++) {
          // seed k: the same initial weights (up to μP's rescaling) and data windows at every
          // learning rate and in every parametrisation
          const model =
            param === "SP"
              ? GPT.init(config, { seed })
              : new GPT(config, mupInit(config, { baseWidth, seed, readout }));
          const lr = schedule({ lr: 2 ** log2Lr, warmup: sizes.warmup, steps: sizes.steps });
          try {
            trainSeed(model, trainIds, sizes, {
              seed,
              lr,
              ...(param === "SP" ? {} : { lrScale: mupLrScale(config, { baseWidth }) }),
              progress,
              tickPrefix: `lr 2^${log2Lr}, `,
            });
            const l = fixedWindowsLoss(model, heldIds, sizes, EVAL_WINDOWS.heldout);
            seedLosses.push(Number.isFinite(l) ? l : Number.POSITIVE_INFINITY);
          } catch (e) {
            if (!(e instanceof TrainError)) throw e;
            seedLosses.push(Number.POSITIVE_INFINITY);
          }
        }
        const diverged = seedLosses.some((l) => !Number.isFinite(l));
        const loss = diverged ? Number.POSITIVE_INFINITY : mean(seedLosses);
        points.push({ param, width, log2Lr, loss, seedLosses, diverged });
      }
    }
  }
  progress.end();
  const rows = (p: Parametrisation) =>
    widthsOf(p, sizes).map((w) => points.filter((x) => x.param === p && x.width === w));
  const argmin = (row: readonly MupPoint[]) =>
    row.reduce((a, b) => (b.loss < a.loss ? b : a)).log2Lr;
  const optimum = Object.fromEntries(PARAMETRISATIONS.map((p) => [p, rows(p).map(argmin)]));
  const ties = Object.fromEntries(PARAMETRISATIONS.map((p) => [p, rows(p).map(tiedWithOptimum)]));
  const o = optimum as Record<Parametrisation, number[]>;
  const t = ties as Record<Parametrisation, number[][]>;
  return { sizes, points, optimum: o, ties: t, checks: mupChecks(sizes, o, t) };
}

/** SP's optimum must move at least this many sweep steps (factors of 2) from the narrowest to the widest width. */
const SP_SHIFT_MIN = 2;
/** μP's optimum must stay within this many sweep steps across all widths. */
const MUP_SPREAD_MAX = 1;

/**
 * The smallest and largest spread (max − min) of one value picked per width from each width's set.
 * The smallest: for each candidate lower end lo, pick per width the least value ≥ lo.
 */
export function spreadRange(sets: readonly (readonly number[])[]): [number, number] {
  const all = sets.flat();
  let lo = Number.POSITIVE_INFINITY;
  for (const a of all) {
    const picks = sets.map((set) => Math.min(...set.filter((x) => x >= a)));
    if (picks.every(Number.isFinite)) lo = Math.min(lo, Math.max(...picks) - a);
  }
  return [lo, Math.max(...all) - Math.min(...all)];
}

/**
 * Yang et al. 2022, Figure 1 (Transformers on WikiText-2, widths 128 … 8192, Adam): under SP the
 * optimal log2 learning rate falls as the width grows — Adam's update of a hidden matrix moves its
 * output by ∝ η·fan_in, so the stable η ∝ 1/width, 3 sweep steps over our ×8 in width; the range
 * allows one step less for the width-independent embedding and norm parameters that dominate at
 * this size — while under μP the optimum stays put (within one sweep step).
 *
 * The optimum is the learning rate of lowest seed-mean loss; the checks' verdicts use it alone.
 * With `ties` (per width, the learning rates within the seed spread of the optimum,
 * {@link tiedWithOptimum}) each check also says whether another choice inside the ties would
 * change the verdict — reported, never used to pass.
 */
export function mupChecks(
  s: MupSizes,
  optimum: Readonly<Record<Compared, readonly number[]>>,
  ties?: Readonly<Record<Compared, readonly (readonly number[])[]>>,
): StudyCheck[] {
  const sp = optimum["SP"];
  const mu = optimum["μP"];
  const at = (o: readonly number[]) => s.widths.map((w, i) => `${w}: 2^${o[i]}`).join(", ");
  const ends = [s.log2Lrs[0], s.log2Lrs[s.log2Lrs.length - 1]];
  const edge = (o: readonly number[]) => o.some((x) => ends.includes(x));
  const edgeNote = (o: readonly number[]) =>
    edge(o) ? "; an optimum sits at the sweep's edge" : "";
  const spShift = sp[0]! - sp[sp.length - 1]!;
  const muSpread = Math.max(...mu) - Math.min(...mu);
  const spOk = spShift >= SP_SHIFT_MIN;
  const muOk = muSpread <= MUP_SPREAD_MAX && !edge(mu);
  type Pass = (x: number) => boolean;
  const verdict = (ok: boolean, lo: number, hi: number, pass: Pass, what: string) =>
    pass(lo) === ok && pass(hi) === ok
      ? `; every choice within the seed spread gives the same verdict (${what} ${lo} … ${hi})`
      : `; **within the seed spread the verdict could differ** (${what} ${lo} … ${hi})`;
  let spTies = "";
  let muTies = "";
  if (ties !== undefined) {
    const a = ties["SP"][0]!;
    const b = ties["SP"][ties["SP"].length - 1]!;
    const [lo, hi] = [Math.min(...a) - Math.max(...b), Math.max(...a) - Math.min(...b)];
    spTies = verdict(spOk, lo, hi, (x) => x >= SP_SHIFT_MIN, "shift");
    const [mlo, mhi] = spreadRange(ties["μP"]);
    muTies = verdict(muSpread <= MUP_SPREAD_MAX, mlo, mhi, (x) => x <= MUP_SPREAD_MAX, "spread");
  }
  return [
    {
      name: `SP: loss-optimal learning rate, narrowest minus widest (sweep steps of ×2)`,
      expected:
        `≥ ${SP_SHIFT_MIN} (falls with width; Yang et al. 2022, Figure 1 left: ` +
        `η ∝ 1/width for Adam's hidden matrices)`,
      measured: `${spShift} (${at(sp)})${edgeNote(sp)}${spTies}`,
      ok: spOk,
    },
    {
      name: `μP: spread of the loss-optimal learning rate over widths (sweep steps)`,
      expected:
        `≤ ${MUP_SPREAD_MAX} and not at the sweep's edge (Yang et al. 2022, ` +
        `Figure 1 right: the optimum stays put)`,
      measured: `${muSpread} (${at(mu)})${edgeNote(mu)}${muTies}`,
      ok: muOk,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// report

export function mupCsv(r: MupResult): string {
  const tied = (p: MupPoint) =>
    r.ties[p.param][widthsOf(p.param, r.sizes).indexOf(p.width)]!.includes(p.log2Lr);
  return toCsv(
    MUP_COLUMNS,
    r.points.map((p) => ({
      parametrisation: p.param,
      width: p.width,
      log2_lr: p.log2Lr,
      lr: 2 ** p.log2Lr,
      heldout_loss: p.loss,
      heldout_loss_min: Math.min(...p.seedLosses),
      heldout_loss_max: Math.max(...p.seedLosses),
      diverged: p.diverged,
      tied_with_optimum: tied(p),
      seeds: r.sizes.seeds,
    })),
  );
}

/** Every run: the numbers the means, ranges and ties come from. */
export function mupSeedsCsv(r: MupResult): string {
  return toCsv(
    MUP_SEED_COLUMNS,
    r.points.flatMap((p) =>
      p.seedLosses.map((l, seed) => ({
        parametrisation: p.param,
        width: p.width,
        log2_lr: p.log2Lr,
        seed,
        heldout_loss: l,
        diverged: !Number.isFinite(l),
      })),
    ),
  );
}

/**
 * Figure 1 at this scale: loss against log2 learning rate, a line per width (seed mean) with the
 * seeds' range as a bar, one panel per parametrisation.
 */
export function mupPlot(r: MupResult): TopLevelSpec {
  const finite = r.points.filter((p) => !p.diverged);
  const hi = Math.max(...finite.map((p) => Math.max(...p.seedLosses)));
  const lo = Math.min(...finite.map((p) => Math.min(...p.seedLosses)));
  const cap = Math.min(hi, lo + 2);
  const c = (x: number) => Math.min(x, cap);
  const values = finite.map((p) => ({
    parametrisation: p.param,
    width: p.width,
    log2_lr: p.log2Lr,
    loss: c(p.loss),
    low: c(Math.min(...p.seedLosses)),
    high: c(Math.max(...p.seedLosses)),
  }));
  const at = (p: Parametrisation, w: number, l: number) =>
    finite.find((x) => x.param === p && x.width === w && x.log2Lr === l);
  const best = PARAMETRISATIONS.flatMap((p) =>
    widthsOf(p, r.sizes).map((w, i) => {
      const l = r.optimum[p][i]!;
      return { parametrisation: p, width: w, log2_lr: l, loss: c(at(p, w, l)?.loss ?? cap) };
    }),
  );
  const color = {
    field: "width",
    type: "ordinal",
    title: "d_model",
    scale: { scheme: "viridis" },
  } as const;
  const x = { field: "log2_lr", type: "quantitative", title: "log2 learning rate" } as const;
  const y = {
    field: "loss",
    type: "quantitative",
    title: `held-out loss (nats, capped at ${sig(cap, 3)})`,
    scale: { zero: false },
  } as const;
  const seeds = r.sizes.seeds;
  return plotSpec(
    "Learning-rate sweeps across widths: standard parametrisation vs μP",
    `H = ${r.sizes.H}, L = ${r.sizes.L}, ${r.sizes.steps} Adam steps of ` +
      `${r.sizes.batch}×${r.sizes.n} tokens; μP base width ` +
      `${r.sizes.widths[0]}; mean of ${seeds} seed${seeds === 1 ? "" : "s"}, ` +
      `bars: their range; circles: each width's optimum`,
    {
      facet: {
        column: {
          field: "parametrisation",
          type: "nominal",
          title: null,
          sort: [...PARAMETRISATIONS],
        },
      },
      data: {
        values: [
          ...values.map((v) => ({ ...v, kind: "sweep" })),
          ...best.map((b) => ({ ...b, kind: "best" })),
        ],
      },
      spec: {
        width: 220,
        height: 220,
        layer: [
          {
            transform: [{ filter: "datum.kind === 'sweep'" }],
            layer: [
              { mark: { type: "line", point: { size: 20 } }, encoding: { x, y, color } },
              {
                mark: { type: "rule" },
                encoding: { x, y: { ...y, field: "low" }, y2: { field: "high" }, color },
              },
            ],
          },
          {
            transform: [{ filter: "datum.kind === 'best'" }],
            mark: { type: "point", size: 120, strokeWidth: 2 },
            encoding: { x, y, color },
          },
        ],
      },
    },
  );
}

export function mupSummary(r: MupResult, startedMs: number, startedCpu?: NodeJS.CpuUsage): string {
  const s = r.sizes;
  const cell = (p: Parametrisation, w: number, l: number) => {
    const pt = r.points.find((x) => x.param === p && x.width === w && x.log2Lr === l)!;
    const i = widthsOf(p, s).indexOf(w);
    const spread = s.seeds > 1 ? ` ± ${halfRange(pt).toFixed(3)}` : "";
    const txt = pt.diverged ? "diverged" : `${pt.loss.toFixed(3)}${spread}`;
    const tie = r.ties[p][i]!.includes(l) && r.optimum[p][i] !== l ? " ~" : "";
    return r.optimum[p][i] === l ? `**${txt}**` : txt + tie;
  };
  const header = ["d_model", ...s.log2Lrs.map((l) => `2^${l}`)];
  const table = (p: Parametrisation) =>
    mdTable(
      header,
      widthsOf(p, s).map((w) => [String(w), ...s.log2Lrs.map((l) => cell(p, w, l))]),
    );
  const tables = PARAMETRISATIONS.map((p) => `### ${p}\n\n${table(p)}`).join("\n\n");
  const point = (p: Parametrisation, w: number, l: number) =>
    r.points.find((x) => x.param === p && x.width === w && x.log2Lr === l);
  const bestLoss = (p: Parametrisation) =>
    widthsOf(p, s)
      .map((w, i) => `${w}: ${point(p, w, r.optimum[p][i]!)!.loss.toFixed(3)}`)
      .join(", ");
  const base = s.widths[0]!;
  const gap = (l: number) => point("μP, zero readout", base, l)!.loss - point("μP", base, l)!.loss;
  const readoutGap = s.zeroReadoutWidths.includes(base)
    ? s.log2Lrs
        .filter((l) => Number.isFinite(gap(l)))
        .map((l) => `2^${l}: ${signed(gap(l))}`)
        .join(", ")
    : "";
  return (
    `# mup — Yang et al. 2022 (μTransfer), Figure 1

\`gpt\` models of width d_model ∈ {${s.widths.join(", ")}}, H = ${s.H} ` +
    `(d_k = d_model / ${s.H}), L = ${s.L}, d_ff = 4·d_model, ` +
    `pre-LN,
GELU, learned positions, **untied** embeddings, byte-level corpus tokens (V = ${s.V}). Each is trained by
\`reference/train.ts\` for ${s.steps} Adam steps of ${s.batch} × ` +
    `${s.n} tokens (no clipping; peak step size η warmed up over ` +
    `${s.warmup}
steps, cosine-decayed to η/10) at η = 2^k for k ∈ ` +
    `{${s.log2Lrs.join(", ")}}, ` +
    `seed${s.seeds === 1 ? " 0" : `s 0 … ${s.seeds - 1}`} (seed k: the ` +
    `same
initial weights — up to μP's rescaling — and data windows at every learning rate), in three parametrisations:

- **SP**: GPT-2's initialisation (N(0, 0.02²), residual projections /√(2L)), one step size for every parameter.
- **μP** (\`reference/mup.ts\`, base width ${base}, m = d_model/${base}; Yang et al. 2022, Table 3): hidden matrices
  initialised /√m with step size η/m; readout initialised /m (Table 3's variance ∝ 1/fan_in², SP's at the base
  width) with step size η/m; W_Q zero-initialised (Appendix D.2); attention scaled by 1/d_k, equal to 1/√d_k at the
  base width (carried by W_Q's and b_Q's step sizes, ×1/√m — the same model under Adam); embeddings, biases and
  norm scales as SP. At the base width μP is SP with W_Q = 0.
- **μP, zero readout** ` +
    `(width${s.zeroReadoutWidths.length === 1 ? "" : "s"} ` +
    `${s.zeroReadoutWidths.join(", ")} only): μP with Appendix D.2's ` +
    `zero-initialised readout.

Loss: mean over ${s.evalBatches} fixed held-out batches. A run whose loss or gradient stopped being finite is marked
diverged (and so is its point). Cells: mean ± half the range over the ` +
    `${s.seeds} seed${s.seeds === 1 ? "" : "s"}. **Bold**: each ` +
    `width's
optimum, the lowest seed mean. **~**: tied with the optimum — its seed range and the optimum's, centred on their
means, overlap (mean − best mean ≤ half-range + best's half-range). The checks use the optimum alone; the
ties only decide whether they also say the verdict could differ within the seed spread.

![mup](mup.svg)

${tables}

Best loss per width — SP: ${bestLoss("SP")}; μP: ${bestLoss("μP")}.
${
  readoutGap === ""
    ? ""
    : `\nZero readout minus Table 3's readout, μP at the base width ${base} ` +
      `(seed means): ${readoutGap}.\n`
}
## Checks

${checksTable(r.checks)}

${runInfoLine(runInfo(startedMs, startedCpu))}
`
  );
}

export const mupStudy: Study = plottedStudy({
  name: "mup",
  description:
    "Yang et al. 2022 Fig. 1: learning-rate sweeps over widths, standard parametrisation vs muP",
  defaultSeeds: MUP_DEFAULT.seeds,
  compute: runMup,
  tables: (r) => ({ "mup.csv": mupCsv(r), "mup-seeds.csv": mupSeedsCsv(r) }),
  plot: mupPlot,
  summary: (r, t) => mupSummary(r, t.wallMs, t.cpu),
});
