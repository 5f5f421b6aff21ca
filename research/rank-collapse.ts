/**
 * Dong, Cordonnier & Loukas 2021, "Attention is not all you need: pure attention loses rank doubly
 * exponentially with depth" (ICML). For a stack of self-attention layers alone (no skip, no FFN,
 * no norm) the residual res(X) = X − 1xᵀ — X minus its nearest matrix with identical rows —
 * converges to zero doubly exponentially in the depth: ‖res(X_l)‖ ≤ (4γβ/√d_qk)^{(3^l − 1)/2}·‖res(X_0)‖^{3^l}.
 * Skip connections break this (the identity path carries X_0 through).
 *
 * The study runs random stacks built from the registry's formulas (`mha`, `ffn`, `layer_norm`)
 * and records the relative residual ‖X_l − 1x̄ᵀ‖_F / ‖X_l‖_F at every depth l, where x̄ is the
 * column mean: the x minimising the Frobenius norm of X − 1xᵀ (Frobenius rather than the paper's
 * composite ℓ1,∞ norm, whose minimiser has no closed form).
 */
import "../spec/index.js";
import { add, input, param, type Expr } from "../spec/expr.js";
import { call1 } from "../spec/formula.js";
import { evaluate } from "../autodiff/evaluate.js";
import type { Graph } from "../autodiff/graph.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import { columnsCsv } from "./csv.js";
import { plotSpec, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import { mean, std } from "./stats.js";
import {
  checksTable,
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

export interface RankCollapseSizes {
  readonly d_model: number;
  readonly H: number;
  /** Tokens (rows of X). */
  readonly n: number;
  /** Layers applied; the residual is recorded after each. */
  readonly depth: number;
  readonly seeds: number;
}

const RANK_COLLAPSE_DEFAULT: RankCollapseSizes = { d_model: 64, H: 4, n: 32, depth: 24, seeds: 20 };
export const RANK_COLLAPSE_QUICK: RankCollapseSizes = {
  d_model: 32,
  H: 4,
  n: 16,
  depth: 12,
  seeds: 3,
};

/** How one layer maps X (every variant's attention is `mha` without biases). */
export const RANK_VARIANTS = [
  {
    id: "attention",
    label: "attention only",
    causal: false,
    skip: false,
    doc: "X ← SA(X) (Dong et al.'s pure self-attention network)",
  },
  {
    id: "attention+ffn",
    label: "attention → FFN",
    causal: false,
    skip: false,
    doc: "X ← FFN(SA(X)), ReLU FFN, no skip",
  },
  {
    id: "attention+layernorm",
    label: "attention → LayerNorm",
    causal: false,
    skip: false,
    doc: "X ← LN(SA(X)), no skip",
  },
  {
    id: "attention+skip",
    label: "attention + skip",
    causal: false,
    skip: true,
    doc: "X ← X + SA(X)",
  },
  {
    id: "pre-ln-attention+skip",
    label: "attention + skip, pre-LN",
    causal: false,
    skip: true,
    doc: "X ← X + SA(LN(X))",
  },
  {
    id: "pre-ln-block",
    label: "pre-LN block (attention, FFN, skips)",
    causal: false,
    skip: true,
    doc: "X' = X + SA(LN(X)), X ← X' + FFN(LN(X'))",
  },
  {
    id: "causal-attention",
    label: "causal attention only",
    causal: true,
    skip: false,
    doc: "X ← SA(X) with the causal mask",
  },
  {
    id: "causal-attention+skip",
    label: "causal attention + skip",
    causal: true,
    skip: true,
    doc: "X ← X + SA(X) with the causal mask",
  },
] as const;
export type RankVariant = (typeof RANK_VARIANTS)[number]["id"];
const LABEL: Record<RankVariant, string> = Object.fromEntries(
  RANK_VARIANTS.map((v) => [v.id, v.label]),
) as Record<RankVariant, string>;

/** Columns of `rank-collapse.csv`: one row per (variant, depth). */
export const RANK_COLLAPSE_COLUMNS = [
  "variant",
  "depth",
  "residual_geomean",
  "log10_residual_mean",
  "log10_residual_std",
  "residual_min",
  "residual_max",
  "centred_norm_geomean",
  "common_norm_geomean",
  "seeds",
] as const;

/**
 * Relative residual ‖X − 1x̄ᵀ‖_F / ‖X‖_F of each matrix in a [..., n, d] tensor, averaged (as
 * log10) over the leading axes; x̄ = column mean, the minimiser for the Frobenius norm. 0 for a
 * matrix of identical rows, and at most 1.
 * @throws StudyError for X = 0 (no direction to compare with).
 */
export function relativeResidual(X: Tensor): number {
  if (X.shape.length < 2)
    throw new StudyError(
      `relativeResidual: X must be [n, d] (or batched), got shape [${X.shape.join(", ")}]`,
    );
  const d = X.shape[X.shape.length - 1]!;
  const n = X.shape[X.shape.length - 2]!;
  const mats = X.size / (n * d);
  let logSum = 0;
  for (let b = 0; b < mats; b++) {
    const off = b * n * d;
    const colMean = new Float64Array(d);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < d; j++) colMean[j]! += X.data[off + i * d + j]! / n;
    let res = 0;
    let all = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < d; j++) {
        const v = X.data[off + i * d + j]!;
        res += (v - colMean[j]!) ** 2;
        all += v * v;
      }
    }
    if (!(all > 0))
      throw new StudyError(
        `relativeResidual: matrix ${b} is all zeros (or not finite); its residual relative to its norm is undefined`,
      );
    logSum += Math.log10(Math.sqrt(res / all));
  }
  return 10 ** (logSum / mats);
}

/**
 * The two parts of X = 1x̄ᵀ + R: ‖1x̄ᵀ‖_F = √n·‖x̄‖ (the common row) and ‖R‖_F (what distinguishes the
 * tokens); ‖X‖_F² is the sum of their squares.
 */
export function rowParts(X: Tensor): { common: number; centred: number } {
  if (X.shape.length !== 2)
    throw new StudyError(`rowParts: X must be [n, d], got shape [${X.shape.join(", ")}]`);
  const [n, d] = X.shape as [number, number];
  const colMean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) colMean[j]! += X.data[i * d + j]! / n;
  let res = 0;
  let m = 0;
  for (let j = 0; j < d; j++) m += colMean[j]! ** 2;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) res += (X.data[i * d + j]! - colMean[j]!) ** 2;
  return { common: Math.sqrt(n * m), centred: Math.sqrt(res) };
}

/** One layer of a variant as a graph over x [n, d_model] and that layer's parameters. */
export function rankLayerGraph(variant: RankVariant, H: number): Graph {
  const v = RANK_VARIANTS.find((r) => r.id === variant);
  if (v === undefined)
    throw new StudyError(
      `unknown rank-collapse variant "${variant}"; variants: ${RANK_VARIANTS.map((r) => r.id).join(", ")}`,
    );
  const x = input("x", ["n", "d_model"]);
  const p = {
    W_Q: param("W_Q", ["d_model", "d_model"]),
    W_K: param("W_K", ["d_model", "d_model"]),
    W_V: param("W_V", ["d_model", "d_model"]),
    W_O: param("W_O", ["d_model", "d_model"]),
    gamma: param("gamma", ["d_model"]),
    beta: param("beta", ["d_model"]),
    W_1: param("W_1", ["d_model", "d_ff"]),
    b_1: param("b_1", ["d_ff"]),
    W_2: param("W_2", ["d_ff", "d_model"]),
    b_2: param("b_2", ["d_model"]),
  };
  const sa = (h: Expr) =>
    call1(
      "mha",
      { x: h, W_Q: p.W_Q, W_K: p.W_K, W_V: p.W_V, W_O: p.W_O },
      { H, causal: v.causal, bias: false },
    );
  const ln = (h: Expr) => call1("layer_norm", { x: h, gamma: p.gamma, beta: p.beta });
  const ffn = (h: Expr) =>
    call1("ffn", { x: h, W_1: p.W_1, b_1: p.b_1, W_2: p.W_2, b_2: p.b_2 }, { activation: "relu" });
  let y: Expr;
  switch (variant) {
    case "attention":
    case "causal-attention":
      y = sa(x);
      break;
    case "attention+ffn":
      y = ffn(sa(x));
      break;
    case "attention+layernorm":
      y = ln(sa(x));
      break;
    case "attention+skip":
    case "causal-attention+skip":
      y = add(x, sa(x));
      break;
    case "pre-ln-attention+skip":
      y = add(x, sa(ln(x)));
      break;
    case "pre-ln-block": {
      const h = add(x, sa(ln(x)));
      y = add(h, ffn(ln(h)));
      break;
    }
  }
  // only the arguments the layer reads (the engine binds every argument it is given)
  const used: Record<string, Expr> = { x };
  const reads = (k: keyof typeof p) => (used[k] = p[k]);
  (["W_Q", "W_K", "W_V", "W_O"] as const).forEach(reads);
  if (variant.includes("ffn") || variant === "pre-ln-block")
    (["W_1", "b_1", "W_2", "b_2"] as const).forEach(reads);
  if (variant.includes("layernorm") || variant.startsWith("pre-ln"))
    (["gamma", "beta"] as const).forEach(reads);
  return {
    name: `rank-collapse layer (${variant})`,
    config: { H },
    args: used,
    outputs: { y },
    relations: [],
    hyper: new Map([["H", H]]),
  };
}

/**
 * One layer's weights: Xavier normal N(0, 2/(fan_in + fan_out)) for every matrix (the paper's
 * random-weight setting), biases 0, LayerNorm γ = 1, β = 0.
 */
function layerWeights(rng: Rng, d: number, d_ff: number): NamedTensors {
  const xavier = (a: number, b: number) => rng.normalTensor([a, b], Math.sqrt(2 / (a + b)));
  return {
    W_Q: xavier(d, d),
    W_K: xavier(d, d),
    W_V: xavier(d, d),
    W_O: xavier(d, d),
    gamma: Tensor.full([d], 1),
    beta: Tensor.zeros([d]),
    W_1: xavier(d, d_ff),
    b_1: Tensor.zeros([d_ff]),
    W_2: xavier(d_ff, d),
    b_2: Tensor.zeros([d]),
  };
}

export interface RankCollapseRow {
  readonly variant: RankVariant;
  readonly depth: number;
  /** Relative residual after `depth` layers, per seed. */
  readonly perSeed: readonly number[];
  readonly residual_geomean: number;
  readonly log10_residual_mean: number;
  readonly log10_residual_std: number;
  readonly residual_min: number;
  readonly residual_max: number;
  /** ‖X − 1x̄ᵀ‖_F, geometric mean over seeds. */
  readonly centred_norm_geomean: number;
  /** ‖1x̄ᵀ‖_F, geometric mean over seeds. */
  readonly common_norm_geomean: number;
}

export interface RankCollapseResult {
  readonly sizes: RankCollapseSizes;
  readonly rows: readonly RankCollapseRow[];
  readonly checks: readonly StudyCheck[];
  readonly seconds: number;
}

/**
 * Below this relative residual the rows of X agree to within float64 rounding of their entries
 * (u = 2⁻⁵³ ≈ 1.1e−16 per entry, so ‖res‖/‖X‖ cannot be resolved much below ~1e−15).
 */
const FLOAT64_FLOOR = 1e-14;

function checkSizes(s: RankCollapseSizes): void {
  for (const k of ["d_model", "H", "n", "depth", "seeds"] as const)
    requirePositiveInteger("rank-collapse", k, s[k]);
  if (s.n < 2)
    throw new StudyError(
      `rank-collapse: n must be at least 2 (one token is always rank one), got ${s.n}`,
    );
  if (s.d_model % s.H !== 0)
    throw new StudyError(`rank-collapse: d_model = ${s.d_model} is not a multiple of H = ${s.H}`);
}

/** Apply `depth` random layers of every variant to seeded Gaussian inputs and record the residual after each. */
export function runRankCollapse(
  opts: StudyOptions & { sizes?: Partial<RankCollapseSizes> } = {},
): RankCollapseResult {
  const started = performance.now();
  const sizes = studySizes(opts, RANK_COLLAPSE_QUICK, RANK_COLLAPSE_DEFAULT);
  checkSizes(sizes);
  const progress = opts.progress ?? Progress.silent();
  const d = sizes.d_model;
  const d_ff = 4 * d;
  const rows: RankCollapseRow[] = [];
  for (const v of RANK_VARIANTS) {
    progress.stage(v.label, sizes.seeds * sizes.depth);
    const g = rankLayerGraph(v.id, sizes.H);
    const perDepth: number[][] = Array.from({ length: sizes.depth + 1 }, () => []);
    const parts: { common: number; centred: number }[][] = Array.from(
      { length: sizes.depth + 1 },
      () => [],
    );
    for (let seed = 0; seed < sizes.seeds; seed++) {
      // the same input and the same weights for every variant of a seed
      const rng = new Rng(0x5ca1e + seed);
      let X = rng.normalTensor([sizes.n, d]);
      perDepth[0]!.push(relativeResidual(X));
      parts[0]!.push(rowParts(X));
      for (let l = 1; l <= sizes.depth; l++) {
        const w = layerWeights(rng, d, d_ff);
        const inputs: NamedTensors = { x: X };
        for (const k of Object.keys(g.args)) if (k !== "x") inputs[k] = w[k]!;
        X = evaluate(g, inputs)["y"]!;
        perDepth[l]!.push(relativeResidual(X));
        parts[l]!.push(rowParts(X));
        progress.tick(`seed ${seed}, depth ${l}`);
      }
    }
    perDepth.forEach((vals, depth) => {
      const logs = vals.map((r) => Math.log10(r));
      // a norm of exactly 0 (the common row of a centred input) has no logarithm: floor it at the smallest double
      const geo = (xs: number[]) =>
        10 ** mean(xs.map((x) => Math.log10(Math.max(x, Number.MIN_VALUE))));
      rows.push({
        variant: v.id,
        depth,
        perSeed: vals,
        residual_geomean: 10 ** mean(logs),
        log10_residual_mean: mean(logs),
        log10_residual_std: std(logs),
        residual_min: Math.min(...vals),
        residual_max: Math.max(...vals),
        centred_norm_geomean: geo(parts[depth]!.map((p) => p.centred)),
        common_norm_geomean: geo(parts[depth]!.map((p) => p.common)),
      });
    });
  }
  progress.end();
  return {
    sizes,
    rows,
    checks: rankCollapseChecks(rows, sizes),
    seconds: (performance.now() - started) / 1000,
  };
}

/** Depth by which pure attention must have collapsed ("orders of magnitude by depth ~8"). */
export const COLLAPSE_DEPTH = 8;
/**
 * Depth at which skip connections must still hold the residual above SKIP_FLOOR (same window as
 * COLLAPSE_DEPTH's "~8–16").
 */
export const SKIP_DEPTH = 12;
/** "Bounded away from zero": within one order of magnitude of the start (≈ 1 for Gaussian X). */
const SKIP_FLOOR = 0.1;

/** The per-layer drops −Δlog10(res) of a variant's mean curve, up to the float64 floor. */
export function decadeDrops(rows: readonly RankCollapseRow[], variant: RankVariant): number[] {
  const curve = rows.filter((r) => r.variant === variant).sort((a, b) => a.depth - b.depth);
  const drops: number[] = [];
  for (let l = 1; l < curve.length; l++) {
    if (curve[l - 1]!.residual_geomean <= FLOAT64_FLOOR) break;
    drops.push(curve[l - 1]!.log10_residual_mean - curve[l]!.log10_residual_mean);
  }
  return drops;
}

/** Largest one-layer fall of log10 res allowed "with skips": an order below pure attention's first real drop. */
const SKIP_MAX_DROP = 0.25;

function rankCollapseChecks(rows: readonly RankCollapseRow[], s: RankCollapseSizes): StudyCheck[] {
  const at = (v: RankVariant, depth: number) =>
    rows.find((r) => r.variant === v && r.depth === Math.min(depth, s.depth))!;
  const pure = at("attention", COLLAPSE_DEPTH);
  const drops = decadeDrops(rows, "attention");
  const first = drops[0] ?? 0;
  const biggest = Math.max(...drops);
  return [
    {
      name: `attention only: relative residual at depth ${pure.depth}, every seed`,
      expected: "below 1e−6: rows collapse to one by orders of magnitude (Dong et al., Sec. 2)",
      measured: `worst seed ${sig(pure.residual_max, 2)} (geometric mean ${sig(pure.residual_geomean, 2)})`,
      ok: pure.residual_max < 1e-6,
    },
    {
      name: "attention only: largest one-layer drop ÷ first layer's drop (decades of res)",
      expected:
        "≥ 3: the fall accelerates — doubly exponential, the bound's exponent " +
        "of res(X_0) triples per layer (Dong et al., Sec. 2); an exponential " +
        "decay drops the same amount every layer",
      measured: `${sig(biggest, 3)} ÷ ${sig(first, 2)} = ${sig(biggest / first, 3)}`,
      ok: first > 0 && biggest >= 3 * first,
    },
    ...(["attention+skip", "pre-ln-attention+skip"] as const).map((v) => {
      const row = at(v, SKIP_DEPTH);
      const worstDrop = Math.max(...decadeDrops(rows, v).slice(0, row.depth));
      return {
        name: `${LABEL[v]}: residual at depth ${row.depth}; largest one-layer drop up to there`,
        expected:
          `≥ ${SKIP_FLOOR} (within a decade of the start) and ≤ ${SKIP_MAX_DROP} ` +
          `decade per layer: skips keep the rank (Dong et al., Sec. 3: the ` +
          `identity path carries X through)`,
        measured: `${sig(row.residual_geomean, 3)}; ${sig(worstDrop, 2)} decade`,
        ok: row.residual_geomean >= SKIP_FLOOR && worstDrop <= SKIP_MAX_DROP,
      };
    }),
  ];
}

// ---------------------------------------------------------------------------------------------
// report

/** Relative residual against depth, one line per variant, on a log axis down to the float64 floor. */
export function rankCollapsePlot(r: RankCollapseResult): TopLevelSpec {
  const values = r.rows.map((row) => ({
    variant: LABEL[row.variant],
    depth: row.depth,
    // values at the float64 floor are drawn on it (a log axis has no 0)
    residual: Math.max(row.residual_geomean, 1e-17),
    lo: Math.max(10 ** (row.log10_residual_mean - row.log10_residual_std), 1e-17),
    hi: Math.min(10 ** (row.log10_residual_mean + row.log10_residual_std), 1),
  }));
  const order = RANK_VARIANTS.map((v) => v.label);
  // the legend is shared with the faint bands: draw its swatches as opaque line strokes
  const color = {
    field: "variant",
    type: "nominal",
    title: "layer",
    scale: { domain: order, scheme: "tableau10" },
    legend: { symbolType: "stroke", symbolOpacity: 1, symbolStrokeWidth: 2 },
  } as const;
  const x = {
    field: "depth",
    type: "quantitative",
    title: "depth (layers applied)",
    scale: { domain: [0, r.sizes.depth], nice: false },
  } as const;
  const y = {
    type: "quantitative",
    scale: { type: "log", domain: [1e-17, 1] },
    axis: { format: ".0e" },
    title: "‖X − 1x̄ᵀ‖_F / ‖X‖_F",
  } as const;
  return plotSpec(
    "Rank collapse of random attention stacks (Dong et al. 2021)",
    `d_model = ${r.sizes.d_model}, H = ${r.sizes.H}, n = ${r.sizes.n} ` +
      `tokens, Xavier-normal weights, ${r.sizes.seeds} seeds; geometric mean, ` +
      `band ±1 std of log10; grey line: float64 floor`,
    {
      width: 520,
      height: 320,
      layer: [
        {
          data: { values },
          mark: { type: "area", opacity: 0.15 },
          encoding: { x, y: { ...y, field: "lo" }, y2: { field: "hi" }, color },
        },
        {
          data: { values },
          mark: { type: "line", point: { size: 18 }, strokeWidth: 1.6 },
          encoding: { x, y: { ...y, field: "residual" }, color },
        },
        {
          data: { values: [{ floor: FLOAT64_FLOOR }] },
          mark: { type: "rule", color: "#888", strokeDash: [2, 2] },
          encoding: { y: { field: "floor", type: "quantitative" } },
        },
      ],
    },
  );
}

/** The CSV of {@link RANK_COLLAPSE_COLUMNS}. */
export function rankCollapseCsv(r: RankCollapseResult): string {
  return columnsCsv(
    RANK_COLLAPSE_COLUMNS,
    r.rows.map((row) => ({ ...row, seeds: row.perSeed.length })),
  );
}

/** summary.md: setting, the residual table, the checks and the reading of the curves. */
function rankCollapseSummary(r: RankCollapseResult, startedMs: number): string {
  const s = r.sizes;
  const shown = [1, 2, 3, 4, 6, 8, 12, 16, 24].filter((dd) => dd <= s.depth);
  const table = RANK_VARIANTS.map((v) => [
    v.label,
    v.doc,
    ...shown.map((dd) => {
      const row = r.rows.find((x) => x.variant === v.id && x.depth === dd)!;
      return row.residual_geomean <= FLOAT64_FLOOR
        ? `${sig(row.residual_geomean, 2)}*`
        : sig(row.residual_geomean, 2);
    }),
  ]);
  const half = Math.floor(s.depth / 2);
  /** Mean fall of log10 res per layer over the second half of the depths (the float64 floor ends it early). */
  const rate = (v: RankVariant) => {
    const d = decadeDrops(r.rows, v).slice(half);
    return d.length === 0 ? Number.NaN : mean(d);
  };
  const floorDepth = (v: RankVariant) =>
    r.rows.find((x) => x.variant === v && x.residual_geomean <= FLOAT64_FLOOR)?.depth;
  const floorText = (v: RankVariant) => {
    const dd = floorDepth(v);
    return dd === undefined
      ? `above the floor at depth ${s.depth} ` +
          `(${sig(r.rows.find((x) => x.variant === v && x.depth === s.depth)!.residual_geomean, 2)})`
      : `at the floor by depth ${dd}`;
  };
  const drops = decadeDrops(r.rows, "attention");
  const skipRates = RANK_VARIANTS.filter((v) => v.skip).map(
    (v) => `${v.label} ${sig(rate(v.id), 2)}`,
  );
  const causalDrops = decadeDrops(r.rows, "causal-attention");
  const growth = (v: RankVariant, k: "centred_norm_geomean" | "common_norm_geomean") => {
    const a = r.rows.find((x) => x.variant === v && x.depth === half)!;
    const b = r.rows.find((x) => x.variant === v && x.depth === s.depth)!;
    return (b[k] / a[k]) ** (1 / (s.depth - half));
  };
  const partsText = (v: RankVariant) =>
    `common row ×${sig(growth(v, "common_norm_geomean"), 3)}, centred part ` +
    `×${sig(growth(v, "centred_norm_geomean"), 3)} per layer`;
  return (
    `# rank-collapse — pure attention loses rank, skips keep it

Reproduces Dong, Cordonnier & Loukas 2021, "Attention is not all you need: pure attention loses
rank doubly exponentially with depth" (ICML). Random stacks of layers built from the registry's
\`mha\` (no biases, H = ${s.H}), \`ffn\` (ReLU, d_ff = ${4 * s.d_model}) and \`layer_norm\` formulas act on a Gaussian
X ∈ R^{${s.n}×${s.d_model}}; every layer draws fresh Xavier-normal weights N(0, 2/(fan_in + fan_out)) (biases 0,
γ = 1, β = 0). Seed k fixes X and all weights, the same for every variant. The measure is the relative
residual **‖X − 1x̄ᵀ‖_F / ‖X‖_F**, x̄ the column mean — the exact minimiser over x for the
**Frobenius** norm (the paper's res(X) = X − 1xᵀ; it states its bounds in the composite ℓ1,∞ norm,
whose minimiser has no closed form). It is 0 exactly when all rows (tokens) are equal.
Geometric mean over ${s.seeds} seeds; * marks values at the float64 floor (< ${FLOAT64_FLOOR}: the rows agree to
rounding). Attention is bidirectional, as in the paper, unless marked causal.

![relative residual against depth](rank-collapse.svg)

${mdTable(["layer", "map", ...shown.map((dd) => `depth ${dd}`)], table)}

## Checks against the paper

${checksTable(r.checks)}

## Reading

- **Pure attention** collapses doubly exponentially: log10 res falls ` +
    `by ${drops.map((x) => sig(x, 2)).join(", ")} decades in layers 1, 2, … ` +
    `—
  each drop several times the last — and reaches the float64 floor by depth ${floorDepth("attention") ?? "—"}.
- **An FFN or a LayerNorm after each attention layer does not stop it** at random initialisation:
  attention → FFN is ${floorText("attention+ffn")}, attention → LayerNorm ${floorText("attention+layernorm")}.
  (Dong et al.: an FFN can only slow the collapse through its Lipschitz constant; LayerNorm rescales
  each row, which cannot make equal rows different again.)
- **Skip connections** keep the residual within about a decade of its start over the depths where
  pure attention collapses. It still decays, slowly and at a steady rate — mean fall per layer over depths
  ${half}…${s.depth}: ${skipRates.join("; ")} decades. The norms of the two parts of X = 1x̄ᵀ + R
  over the same depths say why: with X ← X + SA(X) (unit-gain W_V·W_O) the near-rank-one attention
  output feeds the common row through W every layer — ${partsText("attention+skip")} —
  while with the branch input normalised (pre-LN) the common row ` +
    `nearly stops outgrowing the rest: ` +
    `${partsText("pre-ln-attention+skip")}.
- **Causal attention** (outside the paper's analysis) collapses only exponentially: its per-layer drops
  stay about one size (${causalDrops
    .slice(0, 8)
    .map((x) => sig(x, 2))
    .join(", ")}, … decades). The first token attends only to
  itself, so the rows cannot all be averaged into one in a single step; they converge towards the first.

${runInfoLine(runInfo(startedMs))}
`
  );
}

export const rankCollapseStudy: Study = plottedStudy({
  name: "rank-collapse",
  description:
    "Dong et al. 2021: pure attention loses rank doubly exponentially with depth; skips prevent it",
  defaultSeeds: RANK_COLLAPSE_DEFAULT.seeds,
  compute: runRankCollapse,
  tables: (r) => ({ "rank-collapse.csv": rankCollapseCsv(r) }),
  plot: rankCollapsePlot,
  summary: (r, t) => rankCollapseSummary(r, t.wallMs),
});
