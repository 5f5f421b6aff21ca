/**
 * Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" (ICML): at
 * initialisation, the gradient of the last FFN layer's output weight W^{2,L} (`h.{L−1}.mlp.c_proj.weight`)
 * is O(d·√(ln d)) for post-LN — independent of the depth L — and O(d·√(ln d / L)) for pre-LN
 * (Theorem 1), and in their Figure 3 the post-LN gradient grows with the layer index while
 * pre-LN's stays level.
 *
 * The study measures ‖∂loss/∂W_2‖_F of every layer of post-LN and pre-LN GPTs at initialisation
 * for depths L ∈ {2, 4, 8, 16, 32}, averaged over seeds (each seed: its own weights and its own
 * batch of corpus windows, shared by every depth and placement), in the paper's setting —
 * Xavier-initialised weights, W_Q = W_K = 0, ReLU FFN — and, for contrast, with GPT-2's own
 * initialisation of the same architecture. The gradients are the `gpt` formula's, differentiated
 * by the engine (only with respect to the W_2 matrices, which is all the study reads).
 */
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { valueAndGrad } from "../autodiff/grad.js";
import type { Tensor } from "../autodiff/tensor.js";
import { corpusText, corpusTokenizer } from "../reference/corpus.js";
import {
  formulaConfig,
  initWeights,
  resolveModelConfig,
  shiftTargets,
  type GPTConfig,
  type InitOptions,
  type Placement,
} from "../reference/model.js";
import { TokenWindows } from "../reference/train.js";
import { columnsCsv } from "./csv.js";
import { plotSpec, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { logLogFit, mean, std, type LineFit } from "./stats.js";
import {
  checksTable,
  mdTable,
  runInfo,
  runInfoLine,
  requirePositiveInteger,
  studySizes,
  sig,
  StudyError,
  withSE,
  type Study,
  type StudyCheck,
  type StudyOptions,
  plottedStudy,
} from "./study.js";

/** Sizes of one run. */
export interface LnPlacementSizes {
  readonly d_model: number;
  readonly H: number;
  /** Tokens per sequence. */
  readonly n: number;
  /** Sequences per gradient. */
  readonly batch: number;
  /** Vocabulary of the corpus tokenizer (256: bytes). */
  readonly V: number;
  readonly depths: readonly number[];
  /** The depth whose per-layer profile is fitted (one of `depths`). */
  readonly perLayerDepth: number;
  readonly seeds: number;
}

/** Default: every trend clear beyond its seed-to-seed error, a couple of minutes on 2 cores. */
const LN_PLACEMENT_DEFAULT: LnPlacementSizes = {
  d_model: 64,
  H: 4,
  n: 32,
  batch: 8,
  V: 256,
  depths: [2, 4, 8, 16, 32],
  perLayerDepth: 16,
  seeds: 12,
};
/** Quick (tests): seconds. */
export const LN_PLACEMENT_QUICK: LnPlacementSizes = {
  d_model: 32,
  H: 4,
  n: 16,
  batch: 4,
  V: 256,
  depths: [2, 4, 8, 16],
  perLayerDepth: 8,
  seeds: 4,
};

/** The two initialisations compared. */
const LN_INITS = [
  {
    id: "xavier",
    label: "Xavier, W_Q = W_K = 0 (Xiong et al.)",
    init: { init: "xavier", zeroQK: true },
  },
  { id: "gpt2", label: "GPT-2 initialisation", init: { init: "gpt2" } },
] as const satisfies readonly { id: string; label: string; init: Omit<InitOptions, "seed"> }[];
export type LnInit = (typeof LN_INITS)[number]["id"];

const LN_PLACEMENTS = ["post", "pre"] as const satisfies readonly Placement[];

/** Columns of `ln-placement.csv`: one row per (init, placement, L, layer). */
export const LN_PLACEMENT_COLUMNS = [
  "init",
  "placement",
  "L",
  "layer",
  "depth_from_top",
  "grad_norm_mean",
  "grad_norm_std",
  "seeds",
] as const;

export interface LayerGradRow {
  readonly init: LnInit;
  readonly placement: "post" | "pre";
  readonly L: number;
  /** 1-based layer index (1 = nearest the embedding). */
  readonly layer: number;
  /** L − layer + 1 (1 = the last layer). */
  readonly depth_from_top: number;
  /** ‖∂loss/∂W_2‖_F of this layer for each seed. */
  readonly perSeed: readonly number[];
  readonly grad_norm_mean: number;
  readonly grad_norm_std: number;
}

/** A log-log slope from the seed-averaged curve, with the spread of the per-seed slopes. */
export interface SlopeFit {
  /** Fit of log(mean over seeds) against log x. */
  readonly fit: LineFit;
  /** Slope fitted to each seed's own curve. */
  readonly perSeed: readonly number[];
  /** Standard error of the slope: std(per-seed slopes)/√seeds. */
  readonly se: number;
}

export interface LnPlacementFits {
  /** Last layer's ‖∇W_2‖ against L. */
  readonly lastVsDepth: SlopeFit;
  /** At `perLayerDepth`: against the layer index l = 1 … L. */
  readonly perLayerVsIndex: SlopeFit;
  /** At `perLayerDepth`: against the depth from the top L − l + 1. */
  readonly perLayerVsFromTop: SlopeFit;
}

export interface LnPlacementResult {
  readonly sizes: LnPlacementSizes;
  readonly rows: readonly LayerGradRow[];
  readonly fits: Readonly<Record<LnInit, Readonly<Record<"post" | "pre", LnPlacementFits>>>>;
  readonly checks: readonly StudyCheck[];
  /** Mean loss at initialisation over every model and seed. */
  readonly initialLoss: number;
  readonly seconds: number;
}

function checkSizes(s: LnPlacementSizes): void {
  for (const k of ["d_model", "H", "n", "batch", "V", "perLayerDepth", "seeds"] as const)
    requirePositiveInteger("ln-placement", k, s[k]);
  if (s.depths.length < 2)
    throw new StudyError(
      `ln-placement: a slope against depth needs at least 2 depths, got ${s.depths.length}`,
    );
  s.depths.forEach((L) => requirePositiveInteger("ln-placement", "depths", L));
  if (!s.depths.includes(s.perLayerDepth))
    throw new StudyError(
      `ln-placement: perLayerDepth ${s.perLayerDepth} is not one of the depths ${s.depths.join(", ")}`,
    );
  if (s.perLayerDepth < 2)
    throw new StudyError(
      `ln-placement: a per-layer slope needs perLayerDepth ≥ 2, got ${s.perLayerDepth}`,
    );
  if (s.d_model % s.H !== 0)
    throw new StudyError(`ln-placement: d_model = ${s.d_model} is not a multiple of H = ${s.H}`);
}

/** The configuration of one model of the study (ReLU FFN, as in the paper's analysis). */
export function lnPlacementConfig(s: LnPlacementSizes, placement: Placement, L: number): GPTConfig {
  return resolveModelConfig({
    V: s.V,
    n_ctx: s.n,
    d_model: s.d_model,
    H: s.H,
    L,
    placement,
    activation: "relu",
  });
}

const w2 = (l: number) => `h.${l}.mlp.c_proj.weight`;

function frobenius(t: Tensor): number {
  let s = 0;
  for (let i = 0; i < t.size; i++) s += t.data[i]! * t.data[i]!;
  return Math.sqrt(s);
}

function slopeFit(
  xs: readonly number[],
  meanYs: readonly number[],
  seedYs: readonly (readonly number[])[],
): SlopeFit {
  const fit = logLogFit(xs, meanYs);
  const perSeed = seedYs.map((ys) => logLogFit(xs, ys).slope);
  return {
    fit,
    perSeed,
    se: perSeed.length > 1 ? std(perSeed) / Math.sqrt(perSeed.length) : Number.NaN,
  };
}

/**
 * Measure every layer's ‖∂loss/∂W_2‖_F at initialisation for both placements, both
 * initialisations and every depth, and fit the slopes.
 */
export function runLnPlacement(
  opts: StudyOptions & { sizes?: Partial<LnPlacementSizes> } = {},
): LnPlacementResult {
  const started = performance.now();
  const sizes = studySizes(opts, LN_PLACEMENT_QUICK, LN_PLACEMENT_DEFAULT);
  checkSizes(sizes);
  const progress = opts.progress ?? Progress.silent();
  const ids = corpusTokenizer(sizes.V).encode(corpusText());
  // one batch per seed, shared by every model of that seed (paired comparisons)
  const batches = Array.from({ length: sizes.seeds }, (_, s) =>
    shiftTargets(new TokenWindows(ids, sizes.n + 1, 0x1a7e + s).next(sizes.batch)),
  );
  const graphs = new Map<string, Graph>();
  const perSeed = new Map<string, number[][]>(); // key init/placement/L → [layer][seed]
  const losses: number[] = [];
  const layersPerSeed = sizes.depths.reduce((a, b) => a + b, 0);
  for (const init of LN_INITS) {
    for (const placement of LN_PLACEMENTS) {
      progress.stage(`${placement}-LN, ${init.label}`, sizes.seeds * layersPerSeed);
      for (const L of sizes.depths)
        perSeed.set(
          `${init.id}/${placement}/${L}`,
          Array.from({ length: L }, () => []),
        );
      for (let seed = 0; seed < sizes.seeds; seed++) {
        const { tokens, targets } = batches[seed]!;
        for (const L of sizes.depths) {
          const config = lnPlacementConfig(sizes, placement, L);
          const key = `${placement}/${L}`;
          let g = graphs.get(key);
          if (g === undefined) graphs.set(key, (g = formulaGraph("gpt", formulaConfig(config))));
          const weights = initWeights(config, { ...init.init, seed });
          const wrt = Array.from({ length: L }, (_, l) => w2(l));
          const r = valueAndGrad(
            g,
            { tokens, targets, ...weights },
            { output: "loss", wrt, dtype: config.dtype },
          );
          losses.push(r.value.data[0]!);
          const acc = perSeed.get(`${init.id}/${placement}/${L}`)!;
          for (let l = 0; l < L; l++) {
            const v = frobenius(r.grads[w2(l)]!);
            if (!(v > 0) || !Number.isFinite(v))
              throw new StudyError(
                `ln-placement: ‖∇W_2‖ of layer ${l + 1} is ${v} (${placement}-LN, L = ${L}, ${init.id}, seed ${seed})`,
              );
            acc[l]!.push(v);
          }
          for (let l = 0; l < L; l++) progress.tick(`L = ${L}, seed ${seed}`);
        }
      }
    }
  }
  progress.end();

  const rows: LayerGradRow[] = [];
  for (const init of LN_INITS) {
    for (const placement of LN_PLACEMENTS) {
      for (const L of sizes.depths) {
        perSeed.get(`${init.id}/${placement}/${L}`)!.forEach((vals, l) => {
          rows.push({
            init: init.id,
            placement,
            L,
            layer: l + 1,
            depth_from_top: L - l,
            perSeed: vals,
            grad_norm_mean: mean(vals),
            grad_norm_std: std(vals),
          });
        });
      }
    }
  }
  const fitsFor = (init: LnInit, placement: "post" | "pre"): LnPlacementFits => {
    const mine = rows.filter((r) => r.init === init && r.placement === placement);
    const last = sizes.depths.map((L) => mine.find((r) => r.L === L && r.depth_from_top === 1)!);
    const profile = mine.filter((r) => r.L === sizes.perLayerDepth);
    const seeds = Array.from({ length: sizes.seeds }, (_, s) => s);
    return {
      lastVsDepth: slopeFit(
        last.map((r) => r.L),
        last.map((r) => r.grad_norm_mean),
        seeds.map((s) => last.map((r) => r.perSeed[s]!)),
      ),
      perLayerVsIndex: slopeFit(
        profile.map((r) => r.layer),
        profile.map((r) => r.grad_norm_mean),
        seeds.map((s) => profile.map((r) => r.perSeed[s]!)),
      ),
      perLayerVsFromTop: slopeFit(
        profile.map((r) => r.depth_from_top),
        profile.map((r) => r.grad_norm_mean),
        seeds.map((s) => profile.map((r) => r.perSeed[s]!)),
      ),
    };
  };
  const fits = {
    xavier: { post: fitsFor("xavier", "post"), pre: fitsFor("xavier", "pre") },
    gpt2: { post: fitsFor("gpt2", "post"), pre: fitsFor("gpt2", "pre") },
  };
  return {
    sizes,
    rows,
    fits,
    checks: lnPlacementChecks(fits.xavier, sizes),
    initialLoss: mean(losses),
    seconds: (performance.now() - started) / 1000,
  };
}

/** Expected ranges, from Theorem 1 and Figure 3 of Xiong et al. (see docs/RESEARCH.md for the derivation). */
export const LN_EXPECTED = {
  /** Theorem 1, pre-LN: ‖∇W^{2,L}‖ = O(d√(ln d / L)) → slope −1/2; ±1/4 for the finite-depth offset and seed noise. */
  preLast: [-0.75, -0.25],
  /** Theorem 1, post-LN: O(d√(ln d)), no L → slope 0; ±0.2 as above. */
  postLast: [-0.2, 0.2],
} as const;

function lnPlacementChecks(
  f: Readonly<Record<"post" | "pre", LnPlacementFits>>,
  s: LnPlacementSizes,
): StudyCheck[] {
  const inRange = (x: number, [lo, hi]: readonly [number, number]) => x >= lo && x <= hi;
  const range = ([lo, hi]: readonly [number, number]) => `[${lo}, ${hi}]`.replace(/-/g, "−");
  const preLast = f.pre.lastVsDepth;
  const postLast = f.post.lastVsDepth;
  const postTop = f.post.perLayerVsFromTop;
  const preTop = f.pre.perLayerVsFromTop;
  const diff = postTop.fit.slope - preTop.fit.slope;
  const diffSE = Math.hypot(postTop.se, preTop.se);
  // with one seed there is no standard error: the sign alone decides, and the text says so
  const margin = (se: number) => (Number.isFinite(se) ? 2 * se : 0);
  const oneSeed = s.seeds === 1 ? " (one seed: no standard error)" : "";
  return [
    {
      name: "pre-LN: last layer's ‖∇W_2‖ against L (log-log slope)",
      expected: `in ${range(LN_EXPECTED.preLast)}: −1/2 (Theorem 1, O(d√(ln d / L)))`,
      measured: withSE(preLast.fit.slope, preLast.se),
      ok: inRange(preLast.fit.slope, LN_EXPECTED.preLast),
    },
    {
      name: "post-LN: last layer's ‖∇W_2‖ against L (log-log slope)",
      expected: `in ${range(LN_EXPECTED.postLast)}: 0 (Theorem 1, O(d√(ln d)), independent of L)`,
      measured: withSE(postLast.fit.slope, postLast.se),
      ok: inRange(postLast.fit.slope, LN_EXPECTED.postLast),
    },
    {
      name: `post-LN: ‖∇W_2‖ per layer at L = ${s.perLayerDepth} against depth from the top (slope)`,
      expected: "negative by more than 2 standard errors (Figure 3: grows with the layer index)",
      measured: withSE(postTop.fit.slope, postTop.se) + oneSeed,
      ok: postTop.fit.slope + margin(postTop.se) < 0,
    },
    {
      name: `per-layer slope against depth from the top, post-LN minus pre-LN (L = ${s.perLayerDepth})`,
      expected:
        "negative by more than 2 standard errors (Figure 3: post-LN's gradient " +
        "is concentrated near the output, pre-LN's is not)",
      measured: withSE(diff, diffSE) + oneSeed,
      ok: diff + margin(diffSE) < 0,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// report

const PLACEMENT_LABEL = { post: "post-LN", pre: "pre-LN" } as const;
const INIT_LABEL: Record<LnInit, string> = Object.fromEntries(
  LN_INITS.map((i) => [i.id, i.label]),
) as Record<LnInit, string>;

/** The plot: last layer against L (left) and per layer at one depth (right), one row per initialisation. */
export function lnPlacementPlot(r: LnPlacementResult): TopLevelSpec {
  const points = r.rows.map((row) => ({
    init: INIT_LABEL[row.init],
    placement: PLACEMENT_LABEL[row.placement],
    L: row.L,
    layer: row.layer,
    last: row.depth_from_top === 1,
    mean: row.grad_norm_mean,
    lo: Math.max(row.grad_norm_mean - row.grad_norm_std, row.grad_norm_mean * 0.05),
    hi: row.grad_norm_mean + row.grad_norm_std,
  }));
  const fitLines: object[] = [];
  for (const init of LN_INITS) {
    for (const placement of LN_PLACEMENTS) {
      const f = r.fits[init.id][placement];
      for (const L of r.sizes.depths)
        fitLines.push({
          panel: "last",
          init: init.label,
          placement: PLACEMENT_LABEL[placement],
          x: L,
          y: Math.exp(f.lastVsDepth.fit.intercept + f.lastVsDepth.fit.slope * Math.log(L)),
        });
      for (let l = 1; l <= r.sizes.perLayerDepth; l++)
        fitLines.push({
          panel: "layer",
          init: init.label,
          placement: PLACEMENT_LABEL[placement],
          x: l,
          y: Math.exp(f.perLayerVsIndex.fit.intercept + f.perLayerVsIndex.fit.slope * Math.log(l)),
        });
    }
  }
  const color = {
    field: "placement",
    type: "nominal",
    title: "placement",
    scale: { domain: ["post-LN", "pre-LN"], range: ["#d62728", "#1f77b4"] },
  } as const;
  const yAxis = {
    type: "quantitative",
    scale: { type: "log" },
    title: "‖∂loss/∂W₂‖_F (mean over seeds)",
  } as const;
  const panel = (
    which: "last" | "layer",
    init: string,
    xField: string,
    xTitle: string,
    xMax: number,
    filter: string,
  ) => {
    const x = {
      type: "quantitative",
      scale: { type: "log", base: 2, domain: [1, xMax], nice: false },
      axis: { values: powersOfTwo(xMax) },
      title: xTitle,
    } as const;
    return {
      width: 260,
      height: 190,
      layer: [
        {
          data: { values: points },
          transform: [{ filter }],
          mark: { type: "rule", strokeWidth: 1.5 },
          encoding: {
            x: { ...x, field: xField },
            y: { ...yAxis, field: "lo" },
            y2: { field: "hi" },
            color,
          },
        },
        {
          data: { values: points },
          transform: [{ filter }],
          mark: { type: "point", filled: true, size: 40, opacity: 1 },
          encoding: { x: { ...x, field: xField }, y: { ...yAxis, field: "mean" }, color },
        },
        {
          data: { values: fitLines },
          transform: [{ filter: `datum.panel === '${which}' && datum.init === '${init}'` }],
          mark: { type: "line", strokeDash: [4, 3], strokeWidth: 1.2 },
          encoding: {
            x: { ...x, field: "x" },
            y: { ...yAxis, field: "y" },
            color,
            order: { field: "x", type: "quantitative" },
          },
        },
      ],
    };
  };
  const lastTitle = "last layer against depth L";
  const layerTitle = `each layer at L = ${r.sizes.perLayerDepth}`;
  return plotSpec(
    "Gradient of the FFN output weight W₂ at initialisation (Xiong et al. 2020)",
    `d_model = ${r.sizes.d_model}, H = ${r.sizes.H}, ReLU FFN, ` +
      `${r.sizes.batch}×${r.sizes.n} tokens, ${r.sizes.seeds} seeds; bars ±1 ` +
      `std; dashed: log-log fit`,
    {
      vconcat: LN_INITS.map((init) => ({
        title: init.label,
        hconcat: [
          {
            title: lastTitle,
            ...panel(
              "last",
              init.label,
              "L",
              "depth L",
              Math.max(...r.sizes.depths),
              `datum.init === '${init.label}' && datum.last`,
            ),
          },
          {
            title: layerTitle,
            ...panel(
              "layer",
              init.label,
              "layer",
              "layer index l",
              r.sizes.perLayerDepth,
              `datum.init === '${init.label}' && datum.L === ${r.sizes.perLayerDepth}`,
            ),
          },
        ],
      })),
      resolve: { scale: { color: "shared" } },
    },
  );
}

/** 1, 2, 4, … up to `max` (axis ticks of a base-2 log axis). */
function powersOfTwo(max: number): number[] {
  const out: number[] = [];
  for (let v = 1; v <= max; v *= 2) out.push(v);
  return out;
}

/** The CSV of {@link LN_PLACEMENT_COLUMNS}. */
export function lnPlacementCsv(r: LnPlacementResult): string {
  return columnsCsv(
    LN_PLACEMENT_COLUMNS,
    r.rows.map((row) => ({ ...row, seeds: row.perSeed.length })),
  );
}

/** summary.md: setting, slopes, per-depth values, the checks and what they rest on. */
function lnPlacementSummary(r: LnPlacementResult, startedMs: number): string {
  const s = r.sizes;
  const fitRows: (string | number)[][] = [];
  for (const init of LN_INITS) {
    for (const placement of LN_PLACEMENTS) {
      const f = r.fits[init.id][placement];
      fitRows.push([
        init.label,
        PLACEMENT_LABEL[placement],
        withSE(f.lastVsDepth.fit.slope, f.lastVsDepth.se),
        withSE(f.perLayerVsIndex.fit.slope, f.perLayerVsIndex.se),
        withSE(f.perLayerVsFromTop.fit.slope, f.perLayerVsFromTop.se),
      ]);
    }
  }
  const lastRows = (init: LnInit) =>
    s.depths.map((L) => {
      const get = (p: "post" | "pre") =>
        r.rows.find(
          (x) => x.init === init && x.placement === p && x.L === L && x.depth_from_top === 1,
        )!;
      return [
        L,
        `${sig(get("post").grad_norm_mean)} ± ${sig(get("post").grad_norm_std, 2)}`,
        `${sig(get("pre").grad_norm_mean)} ± ${sig(get("pre").grad_norm_std, 2)}`,
      ];
    });
  const profile = (init: LnInit, p: "post" | "pre") =>
    r.rows
      .filter((x) => x.init === init && x.placement === p && x.L === s.perLayerDepth)
      .map((x) => sig(x.grad_norm_mean))
      .join(", ");
  const pre = r.fits.xavier.pre;
  const minL = Math.min(...s.depths);
  const maxL = Math.max(...s.depths);
  const grad = (p: "post" | "pre", L: number, layer: (L: number) => number) =>
    r.rows.find(
      (x) => x.init === "xavier" && x.placement === p && x.L === L && x.layer === layer(L),
    )!.grad_norm_mean;
  const firstRatio = grad("pre", maxL, () => 1) / grad("pre", minL, () => 1);
  const lastRatio = grad("pre", maxL, (L) => L) / grad("pre", minL, (L) => L);
  const postLastText = s.depths
    .map(
      (L) =>
        `${sig(
          grad("post", L, (x) => x),
          3,
        )} at L = ${L}`,
    )
    .join(", ");
  return (
    `# ln-placement — gradient of W₂ at initialisation, post-LN vs pre-LN

Reproduces Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" (ICML),
Theorem 1 and Figure 3: the Frobenius norm of ∂loss/∂W₂ of each FFN layer (\`h.{l}.mlp.c_proj.weight\`)
of a freshly initialised GPT, for depths L ∈ {${s.depths.join(", ")}}, averaged over ${s.seeds} seeds.

**Setting.** The \`gpt\` formula with d_model = ${s.d_model}, H = ${s.H}, d_ff = ${4 * s.d_model}, ReLU FFN,
LayerNorm, learned positions, tied embeddings, V = ${s.V} (corpus tokenizer); loss = mean next-token
cross-entropy of ${s.batch} windows × ${s.n} tokens of the bundled corpus. Seed k draws the weights and
one batch, shared by every depth, placement and initialisation (paired comparisons; with Xavier the
layer-l weights are the same at every depth). Two initialisations: the paper's (Xavier uniform
weights, W_Q = W_K = 0 so every attention row starts uniform, embeddings N(0, 1/d_model)) and
GPT-2's (N(0, 0.02²), residual projections N(0, 0.02²/(2L))) on the same architecture.
Slopes are least squares on (log x, log ‖∇W₂‖) of the seed means; ± is the standard error of the
same slope fitted to each seed separately (std/√seeds). Mean loss at ` +
    `initialisation: ${sig(r.initialLoss, 4)} (ln V = ` +
    `${sig(Math.log(s.V), 4)}).

![gradient norms](ln-placement.svg)

## Slopes

` +
    mdTable(
      [
        "initialisation",
        "placement",
        `last layer vs L`,
        `per layer vs layer index (L = ${s.perLayerDepth})`,
        `per layer vs depth from top (L = ${s.perLayerDepth})`,
      ],
      fitRows,
    ) +
    `

Last layer's ‖∇W₂‖ (mean ± std over seeds), Xavier with W_Q = W_K = 0:

` +
    mdTable(["L", "post-LN", "pre-LN"], lastRows("xavier")) +
    `

GPT-2 initialisation:

` +
    mdTable(["L", "post-LN", "pre-LN"], lastRows("gpt2")) +
    `

Per layer at L = ${s.perLayerDepth} (layer 1 … ${s.perLayerDepth}), ` +
    `Xavier: post-LN ${profile("xavier", "post")}; pre-LN ` +
    `${profile("xavier", "pre")}.

## Checks against the paper

${checksTable(r.checks)}

**Where the ranges come from.** Theorem 1 bounds the last layer's gradient by O(d·√(ln d)) for post-LN
(no L) and O(d·√(ln d / L)) for pre-LN: in pre-LN the residual stream x_L is a sum of L branch outputs,
so E‖x_L‖² grows linearly in L (a lemma of the paper), and the final LayerNorm divides the gradient
reaching every block by ‖x_L‖ ∝ √L. So the log-log slope against L is 0 for post-LN and −1/2 for
pre-LN. The ranges allow ±1/4 (pre-LN) and ±0.2 (post-LN) around these for what a finite sweep adds:
a slope fitted over L = ${minL} … ${maxL} carries the small-L corrections the O(·) hides (the embedding's and the
first blocks' share of ‖x_L‖²), and a slope fitted to one seed's curve ` +
    `scatters by ${sig(std(pre.lastVsDepth.perSeed), 2)} (pre-LN) and ` +
    `${sig(std(r.fits.xavier.post.lastVsDepth.perSeed), 2)} (post-LN) ` +
    `between seeds in this run. Figure 3 has ` +
    `the
post-LN gradient growing with the layer index, i.e. falling with the depth from the top: the per-layer
slope against depth-from-top must be negative, and more negative than pre-LN's.

**Post-LN last layer.** Its gradient is not exactly flat in L here: ${postLastText} (slope
${withSE(r.fits.xavier.post.lastVsDepth.fit.slope, r.fits.xavier.post.lastVsDepth.se)}). ` +
    `Theorem 1 bounds it by a constant; it does not say the gradient is ` +
    `constant below that ` +
    `bound.

**Pre-LN per layer.** The paper's Figure 3 shows pre-LN's per-layer gradient level. Here it is not:
at L = ${s.perLayerDepth} it falls with the layer index, slope ` +
    `${withSE(pre.perLayerVsIndex.fit.slope, pre.perLayerVsIndex.se)} ` +
    `against l. Across depths the
gradient of a given layer hardly moves — layer 1's changes by ` +
    `×${sig(firstRatio, 3)} from L = ${minL} to L = ${maxL}, the ` +
    `last
layer's by ×${sig(lastRatio, 3)} — so the last layer's L^(−1/2) is this profile read at l = L. A heuristic in the
spirit of Theorem 1 gives l^(−1/2): the gradient entering the stream is scaled by the final norm's
1/‖x_L‖, and on the way down each later block adds its branch Jacobian, which is ∝ 1/‖x_k‖ because the
branch reads LN(x_k); with E‖x_k‖² linear in k the product grows like (L/l)^(1/2) when the branches'
forward and backward gains match, leaving ∝ l^(−1/2) at layer l whatever L. A level profile needs
‖x_l‖ nearly constant over the layers shown, e.g. an embedding large compared with what the blocks add
(fairseq's Transformer multiplies embeddings by √d_model; the \`gpt\` formula, like GPT-2, does not).
Shleifer et al. 2021 (NormFormer) report the same mismatch for pre-LN models in training: early layers
get much larger gradients than late ones.

${runInfoLine(runInfo(startedMs))}
`
  );
}

export const lnPlacementStudy: Study = plottedStudy({
  name: "ln-placement",
  description:
    "Xiong et al. 2020: ‖∇W₂‖ at initialisation, post-LN vs pre-LN, against depth and layer",
  defaultSeeds: LN_PLACEMENT_DEFAULT.seeds,
  compute: runLnPlacement,
  tables: (r) => ({ "ln-placement.csv": lnPlacementCsv(r) }),
  plot: lnPlacementPlot,
  summary: (r, t) => lnPlacementSummary(r, t.wallMs),
});
