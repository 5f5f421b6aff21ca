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
import { corpusText, corpusTokenizer } from "../reference/corpus.js";
import { GPT, resolveModelConfig, type GPTConfig } from "../reference/model.js";
import { mupInit, mupLrScale } from "../reference/mup.js";
import { evalLoss, train, TrainError } from "../reference/train.js";
import { toCsv } from "./csv.js";
import { renderSvg, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { mean } from "./stats.js";
import { checksTable, mdTable, runInfo, runInfoLine, seedCount, sig, StudyError, type Study, type StudyCheck, type StudyOptions, type StudyReport } from "./study.js";
import { HELD_OUT_FRACTION, schedule, VARIANTS_DEFAULT } from "./variants.js";

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
}

/**
 * Default: widths 32 … 256, learning rates 2⁻¹² … 2⁻⁵, 150 steps of 8 × 32 tokens: 2 × 4 × 8 = 64
 * runs, ≈ 10 minutes on an idle core (50–100 ms a step from width 32 to 256, measured first).
 */
export const MUP_DEFAULT: MupSizes = { widths: [32, 64, 128, 256], H: 4, L: 2, n: 32, batch: 8, V: 256, steps: 150, warmup: 15, log2Lrs: [-12, -11, -10, -9, -8, -7, -6, -5], evalBatches: 4, seeds: 1 };
/** Quick (tests): seconds. */
export const MUP_QUICK: MupSizes = { widths: [8, 16], H: 2, L: 1, n: 8, batch: 4, V: 256, steps: 6, warmup: 1, log2Lrs: [-8, -6, -4], evalBatches: 1, seeds: 1 };

export const PARAMETRISATIONS = ["SP", "μP"] as const;
export type Parametrisation = (typeof PARAMETRISATIONS)[number];

/** Columns of `mup.csv`: one row per (parametrisation, width, learning rate). */
export const MUP_COLUMNS = ["parametrisation", "width", "log2_lr", "lr", "heldout_loss", "diverged", "seeds"] as const;

export interface MupPoint {
  readonly param: Parametrisation;
  readonly width: number;
  readonly log2Lr: number;
  /** Mean held-out loss over seeds; Infinity when a run diverged (a non-finite loss or gradient). */
  readonly loss: number;
  readonly diverged: boolean;
}

export interface MupResult {
  readonly sizes: MupSizes;
  readonly points: readonly MupPoint[];
  /** log2 of the loss-optimal learning rate per parametrisation and width. */
  readonly optimum: Readonly<Record<Parametrisation, readonly number[]>>;
  readonly checks: readonly StudyCheck[];
}

/** The model at one width (untied: μP's readout and input embedding take different step sizes). */
export function mupConfig(width: number, s: MupSizes): GPTConfig {
  return resolveModelConfig({ V: s.V, n_ctx: s.n, d_model: width, H: s.H, L: s.L, placement: "pre", norm: "layer_norm", activation: "gelu", positions: "learned", tied: false });
}

export function runMup(opts: StudyOptions & { sizes?: Partial<MupSizes> } = {}): MupResult {
  const base = opts.quick ? MUP_QUICK : MUP_DEFAULT;
  const sizes: MupSizes = { ...base, ...opts.sizes, seeds: seedCount(opts, opts.sizes?.seeds ?? base.seeds) };
  if (sizes.widths.length < 2 || sizes.log2Lrs.length < 3) throw new StudyError("mup: needs at least 2 widths and 3 learning rates");
  if (sizes.widths.some((w) => w % sizes.H !== 0)) throw new StudyError(`mup: every width must be a multiple of H = ${sizes.H}`);
  const progress = opts.progress ?? Progress.silent();
  const ids = corpusTokenizer(sizes.V).encode(corpusText());
  const cut = Math.floor(ids.length * (1 - HELD_OUT_FRACTION));
  const trainIds = ids.slice(0, cut);
  const heldIds = ids.slice(cut);
  const baseWidth = sizes.widths[0]!;
  const points: MupPoint[] = [];
  for (const param of PARAMETRISATIONS) {
    for (const width of sizes.widths) {
      const config = mupConfig(width, sizes);
      progress.stage(`${param}, width ${width}`, sizes.log2Lrs.length * sizes.seeds * sizes.steps);
      for (const log2Lr of sizes.log2Lrs) {
        const losses: number[] = [];
        let diverged = false;
        for (let seed = 0; seed < sizes.seeds; seed++) {
          const model = param === "SP" ? GPT.init(config, { seed }) : new GPT(config, mupInit(config, { baseWidth, seed }));
          const lr = schedule({ ...VARIANTS_DEFAULT, lr: 2 ** log2Lr, warmup: sizes.warmup, steps: sizes.steps });
          try {
            train(config, trainIds, {
              model,
              steps: sizes.steps,
              lr,
              batch: sizes.batch,
              seqLen: sizes.n,
              seed,
              ...(param === "μP" ? { lrScale: mupLrScale(config, { baseWidth }) } : {}),
              onStep: (i) => progress.tick(`lr 2^${log2Lr}, seed ${seed}, loss ${i.loss.toFixed(3)}`),
            });
            const l = evalLoss(model, heldIds, { batches: sizes.evalBatches, batch: sizes.batch, seqLen: sizes.n, seed: 0x4e1d });
            if (!Number.isFinite(l)) diverged = true;
            losses.push(l);
          } catch (e) {
            if (!(e instanceof TrainError)) throw e;
            diverged = true;
          }
        }
        points.push({ param, width, log2Lr, loss: diverged ? Number.POSITIVE_INFINITY : mean(losses), diverged });
      }
    }
  }
  progress.end();
  const optimum = Object.fromEntries(
    PARAMETRISATIONS.map((p) => [
      p,
      sizes.widths.map((w) => {
        const row = points.filter((x) => x.param === p && x.width === w);
        return row.reduce((a, b) => (b.loss < a.loss ? b : a)).log2Lr;
      }),
    ]),
  ) as Record<Parametrisation, number[]>;
  return { sizes, points, optimum, checks: mupChecks(sizes, optimum) };
}

/** SP's optimum must move at least this many sweep steps (factors of 2) from the narrowest to the widest width. */
export const SP_SHIFT_MIN = 2;
/** μP's optimum must stay within this many sweep steps across all widths. */
export const MUP_SPREAD_MAX = 1;

/**
 * Yang et al. 2022, Figure 1 (Transformers on WikiText-2, widths 128 … 8192, Adam): under SP the
 * optimal log2 learning rate falls as the width grows — Adam's update of a hidden matrix moves its
 * output by ∝ η·fan_in, so the stable η ∝ 1/width, 3 sweep steps over our ×8 in width; the range
 * allows one step less for the width-independent embedding and norm parameters that dominate at
 * this size — while under μP the optimum stays put (within one sweep step).
 */
export function mupChecks(s: MupSizes, optimum: Readonly<Record<Parametrisation, readonly number[]>>): StudyCheck[] {
  const sp = optimum["SP"];
  const mu = optimum["μP"];
  const at = (o: readonly number[]) => s.widths.map((w, i) => `${w}: 2^${o[i]}`).join(", ");
  const edge = (o: readonly number[]) => o.some((x) => x === s.log2Lrs[0] || x === s.log2Lrs[s.log2Lrs.length - 1]);
  const spShift = sp[0]! - sp[sp.length - 1]!;
  const muSpread = Math.max(...mu) - Math.min(...mu);
  return [
    {
      name: `SP: loss-optimal learning rate, narrowest minus widest (sweep steps of ×2)`,
      expected: `≥ ${SP_SHIFT_MIN} (falls with width; Yang et al. 2022, Figure 1 left: η ∝ 1/width for Adam's hidden matrices)`,
      measured: `${spShift} (${at(sp)})${edge(sp) ? "; an optimum sits at the sweep's edge" : ""}`,
      ok: spShift >= SP_SHIFT_MIN,
    },
    {
      name: `μP: spread of the loss-optimal learning rate over widths (sweep steps)`,
      expected: `≤ ${MUP_SPREAD_MAX} and not at the sweep's edge (Yang et al. 2022, Figure 1 right: the optimum stays put)`,
      measured: `${muSpread} (${at(mu)})`,
      ok: muSpread <= MUP_SPREAD_MAX && !edge(mu),
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// report

export function mupCsv(r: MupResult): string {
  return toCsv(
    MUP_COLUMNS,
    r.points.map((p) => ({ parametrisation: p.param, width: p.width, log2_lr: p.log2Lr, lr: 2 ** p.log2Lr, heldout_loss: p.loss, diverged: p.diverged, seeds: r.sizes.seeds })),
  );
}

/** Figure 1 at this scale: loss against log2 learning rate, a line per width, SP and μP side by side. */
export function mupPlot(r: MupResult): TopLevelSpec {
  const finite = r.points.filter((p) => !p.diverged);
  const hi = Math.max(...finite.map((p) => p.loss));
  const lo = Math.min(...finite.map((p) => p.loss));
  const cap = Math.min(hi, lo + 2);
  const values = finite.map((p) => ({ parametrisation: p.param, width: p.width, log2_lr: p.log2Lr, loss: Math.min(p.loss, cap) }));
  const best = PARAMETRISATIONS.flatMap((p) => r.sizes.widths.map((w, i) => ({ parametrisation: p, width: w, log2_lr: r.optimum[p][i]!, loss: finite.find((x) => x.param === p && x.width === w && x.log2Lr === r.optimum[p][i])?.loss ?? cap })));
  const color = { field: "width", type: "ordinal", title: "d_model", scale: { scheme: "viridis" } } as const;
  const x = { field: "log2_lr", type: "quantitative", title: "log2 learning rate" } as const;
  const y = { field: "loss", type: "quantitative", title: `held-out loss (nats, capped at ${sig(cap, 3)})`, scale: { zero: false } } as const;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: {
      text: "Learning-rate sweeps across widths: standard parametrisation vs μP",
      subtitle: `H = ${r.sizes.H}, L = ${r.sizes.L}, ${r.sizes.steps} Adam steps of ${r.sizes.batch}×${r.sizes.n} tokens; μP base width ${r.sizes.widths[0]}; circles: each width's optimum`,
    },
    facet: { column: { field: "parametrisation", type: "nominal", title: null, sort: [...PARAMETRISATIONS] } },
    data: { values: [...values.map((v) => ({ ...v, kind: "sweep" })), ...best.map((b) => ({ ...b, kind: "best" }))] },
    spec: {
      width: 260,
      height: 220,
      layer: [
        { transform: [{ filter: "datum.kind === 'sweep'" }], mark: { type: "line", point: { size: 20 } }, encoding: { x, y, color } },
        { transform: [{ filter: "datum.kind === 'best'" }], mark: { type: "point", size: 120, strokeWidth: 2 }, encoding: { x, y, color } },
      ],
    },
  } as unknown as TopLevelSpec;
}

export function mupSummary(r: MupResult, startedMs: number): string {
  const s = r.sizes;
  const cell = (p: Parametrisation, w: number, l: number) => {
    const pt = r.points.find((x) => x.param === p && x.width === w && x.log2Lr === l)!;
    const txt = pt.diverged ? "diverged" : sig(pt.loss, 4);
    return r.optimum[p][s.widths.indexOf(w)] === l ? `**${txt}**` : txt;
  };
  const tables = PARAMETRISATIONS.map((p) => `### ${p}\n\n${mdTable(["d_model", ...s.log2Lrs.map((l) => `2^${l}`)], s.widths.map((w) => [String(w), ...s.log2Lrs.map((l) => cell(p, w, l))]))}`).join("\n\n");
  return `# mup — Yang et al. 2022 (μTransfer), Figure 1

\`gpt\` models of width d_model ∈ {${s.widths.join(", ")}}, H = ${s.H} (d_k = d_model / ${s.H}), L = ${s.L}, d_ff = 4·d_model, pre-LN,
GELU, learned positions, **untied** embeddings, byte-level corpus tokens (V = ${s.V}). Each is trained by
\`reference/train.ts\` for ${s.steps} Adam steps of ${s.batch} × ${s.n} tokens (no clipping; peak step size η warmed up over ${s.warmup}
steps, cosine-decayed to η/10) at η = 2^k for k ∈ {${s.log2Lrs.join(", ")}}, seed${s.seeds === 1 ? " 0" : `s 0 … ${s.seeds - 1}`}, in two parametrisations:

- **SP**: GPT-2's initialisation (N(0, 0.02²), residual projections /√(2L)), one step size for every parameter.
- **μP** (\`reference/mup.ts\`, base width ${s.widths[0]}, m = d_model/${s.widths[0]}): hidden matrices initialised /√m with step
  size η/m; readout and W_Q zero-initialised, readout step size η/m; attention scaled by 1/d_k (carried by W_Q's
  and b_Q's step sizes, ×1/√m — the same model under Adam); embeddings, biases and norm scales as SP.

Loss: mean over ${s.evalBatches} fixed held-out batches. A run whose loss or gradient stopped being finite is marked
diverged. Bold: each width's optimum.

![mup](mup.svg)

${tables}

## Checks

${checksTable(r.checks)}

${runInfoLine(runInfo(startedMs))}
`;
}

export const mupStudy: Study = {
  name: "mup",
  description: "Yang et al. 2022 Fig. 1: learning-rate sweeps over widths, standard parametrisation vs muP",
  defaultSeeds: MUP_DEFAULT.seeds,
  async run(opts: StudyOptions): Promise<StudyReport> {
    const started = performance.now();
    const r = runMup(opts);
    const { svg } = await renderSvg(mupPlot(r));
    return { study: "mup", files: { "mup.csv": mupCsv(r), "mup.svg": svg }, summary: mupSummary(r, started), checks: r.checks };
  },
};
