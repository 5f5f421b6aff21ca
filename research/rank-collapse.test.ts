/**
 * The rank-collapse study at its quick size (d_model = 32, n = 16, depth 12, 3 seeds; under a
 * second): pure attention collapses doubly exponentially, skips hold the residual (Dong et al. 2021).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { Rng } from "../autodiff/random.js";
import { Tensor } from "../autodiff/tensor.js";
import { parseCsv } from "./csv.js";
import { renderSvg } from "./plot.js";
import {
  COLLAPSE_DEPTH,
  decadeDrops,
  RANK_COLLAPSE_COLUMNS,
  RANK_COLLAPSE_QUICK,
  RANK_VARIANTS,
  rankCollapseCsv,
  rankCollapsePlot,
  rankLayerGraph,
  relativeResidual,
  rowParts,
  runRankCollapse,
  SKIP_DEPTH,
  type RankCollapseResult,
  type RankVariant,
} from "./rank-collapse.js";
import { markGroups, parseXml } from "./xml.js";

const sumSq = (t: Tensor) => Array.from(t.data).reduce((a, v) => a + v * v, 0);

let r: RankCollapseResult;
beforeAll(() => {
  r = runRankCollapse({ quick: true });
});
const at = (variant: RankVariant, depth: number) =>
  r.rows.find((x) => x.variant === variant && x.depth === depth)!;

describe("relativeResidual", () => {
  it("is 0 for identical rows, 1 for rows with zero mean, and ‖X − 1x̄ᵀ‖/‖X‖ in between", () => {
    expect(
      relativeResidual(
        Tensor.from([
          [1, 2, 3],
          [1, 2, 3],
        ]),
      ),
    ).toBe(0);
    expect(
      relativeResidual(
        Tensor.from([
          [1, 0],
          [-1, 0],
        ]),
      ),
    ).toBe(1);
    // x̄ = (1, 0): X − 1x̄ᵀ = [[0, 1], [0, −1]], ‖·‖ = √2, ‖X‖ = 2
    expect(
      relativeResidual(
        Tensor.from([
          [1, 1],
          [1, -1],
        ]),
      ),
    ).toBeCloseTo(Math.SQRT1_2, 15);
  });
  it("uses the minimising x: any other common row leaves a larger residual", () => {
    const rng = new Rng(3);
    const X = rng.normalTensor([7, 5]);
    const best = relativeResidual(X) * Math.sqrt(sumSq(X));
    for (let trial = 0; trial < 20; trial++) {
      const x = rng.normalTensor([5], 0.3);
      let s = 0;
      for (let i = 0; i < 7; i++)
        for (let j = 0; j < 5; j++) s += (X.data[i * 5 + j]! - x.data[j]!) ** 2;
      expect(Math.sqrt(s)).toBeGreaterThan(best);
    }
  });
  it("averages batched matrices geometrically", () => {
    const a = [
      [1, 1],
      [1, -1],
    ];
    const b = [
      [1, 0],
      [-1, 0],
    ];
    expect(relativeResidual(Tensor.from([a, b]))).toBeCloseTo(Math.sqrt(Math.SQRT1_2 * 1), 15);
  });
  it("splits ‖X‖² into the common row and the centred part", () => {
    const X = new Rng(4).normalTensor([6, 3]);
    const { common, centred } = rowParts(X);
    expect(common ** 2 + centred ** 2).toBeCloseTo(sumSq(X), 12);
  });
  it("names bad input", () => {
    expect(() => relativeResidual(Tensor.zeros([2, 3]))).toThrow("matrix 0 is all zeros");
    expect(() => relativeResidual(Tensor.from([1, 2]))).toThrow(
      "X must be [n, d] (or batched), got shape [2]",
    );
  });
});

describe("rank-collapse layers are the registry's formulas", () => {
  const d = 8;
  const rng = new Rng(9);
  const X = rng.normalTensor([5, d]);
  const w = {
    W_Q: rng.normalTensor([d, d], 0.4),
    W_K: rng.normalTensor([d, d], 0.4),
    W_V: rng.normalTensor([d, d], 0.4),
    W_O: rng.normalTensor([d, d], 0.4),
  };
  const mha = evaluate(formulaGraph("mha", { H: 2, causal: false, bias: false }), { x: X, ...w })[
    "y"
  ]!;
  it("attention only = mha without biases, bidirectional", () => {
    const y = evaluate(rankLayerGraph("attention", 2), { x: X, ...w })["y"]!;
    expect(Array.from(y.data)).toEqual(Array.from(mha.data));
  });
  it("attention + skip = x + mha(x)", () => {
    const y = evaluate(rankLayerGraph("attention+skip", 2), { x: X, ...w })["y"]!;
    y.data.forEach((v, i) => expect(v).toBeCloseTo(X.data[i]! + mha.data[i]!, 14));
  });
  it("causal attention = mha with the causal mask: the first token attends only to itself", () => {
    const y = evaluate(rankLayerGraph("causal-attention", 2), { x: X, ...w })["y"]!;
    const causal = evaluate(formulaGraph("mha", { H: 2, causal: true, bias: false }), {
      x: X,
      ...w,
    })["y"]!;
    expect(Array.from(y.data)).toEqual(Array.from(causal.data));
  });
  it("rejects an unknown variant by name", () => {
    expect(() => rankLayerGraph("attention+magic" as never, 2)).toThrow(
      'unknown rank-collapse variant "attention+magic"',
    );
  });
});

describe("rank-collapse: the trend of Dong et al. 2021", () => {
  it(`pure attention: every seed's residual is below 1e−6 by depth ${COLLAPSE_DEPTH}`, () => {
    expect(at("attention", 0).residual_min).toBeGreaterThan(0.9);
    expect(at("attention", COLLAPSE_DEPTH).residual_max).toBeLessThan(1e-6);
  });
  it("pure attention: the fall accelerates (doubly exponential), unlike an exponential decay", () => {
    const drops = decadeDrops(r.rows, "attention");
    expect(drops.length).toBeGreaterThanOrEqual(3);
    // each layer before the float64 floor drops more than the one before
    for (let i = 1; i < drops.length; i++) expect(drops[i]!).toBeGreaterThan(drops[i - 1]!);
    expect(Math.max(...drops)).toBeGreaterThanOrEqual(3 * drops[0]!);
  });
  it(
    `with skips the residual stays above 0.1 through depth ${SKIP_DEPTH} ` +
      `and never drops more than a quarter decade in a layer`,
    () => {
      for (const v of ["attention+skip", "pre-ln-attention+skip", "pre-ln-block"] as const) {
        expect(
          at(v, Math.min(SKIP_DEPTH, RANK_COLLAPSE_QUICK.depth)).residual_geomean,
          v,
        ).toBeGreaterThan(0.1);
        expect(Math.max(...decadeDrops(r.rows, v)), v).toBeLessThan(0.25);
      }
    },
  );
  it("neither an FFN nor a LayerNorm after attention stops the collapse", () => {
    expect(at("attention+ffn", COLLAPSE_DEPTH).residual_max).toBeLessThan(1e-6);
    expect(at("attention+layernorm", COLLAPSE_DEPTH).residual_max).toBeLessThan(1e-6);
  });
  it("reports the same verdicts as its checks", () => {
    expect(r.checks).toHaveLength(4);
    for (const c of r.checks)
      expect(c.ok, `${c.name}: ${c.measured}, expected ${c.expected}`).toBe(true);
  });
});

describe("rank-collapse: files", () => {
  it("writes a CSV with the documented columns, one row per (variant, depth 0 … D)", () => {
    const { columns, rows } = parseCsv(rankCollapseCsv(r));
    expect(columns).toEqual([...RANK_COLLAPSE_COLUMNS]);
    expect(rows).toHaveLength(RANK_VARIANTS.length * (RANK_COLLAPSE_QUICK.depth + 1));
    for (const row of rows) {
      const res = Number(row["residual_geomean"]);
      expect(res).toBeGreaterThan(0);
      expect(res).toBeLessThanOrEqual(1);
      expect(Math.log10(res)).toBeCloseTo(Number(row["log10_residual_mean"]), 10);
      expect(Number(row["residual_min"])).toBeLessThanOrEqual(Number(row["residual_max"]));
    }
  });
  it("plots well-formed SVG with one line per variant and the float64 floor", async () => {
    const { svg, warnings } = await renderSvg(rankCollapsePlot(r));
    expect(warnings).toEqual([]);
    const { elements } = parseXml(svg);
    expect(markGroups(elements, "line")).toHaveLength(RANK_VARIANTS.length);
    for (const v of RANK_VARIANTS) expect(svg).toContain(`>${v.label}<`);
    expect(markGroups(elements, "rule").length).toBeGreaterThan(0);
  });
  it("names bad sizes", () => {
    expect(() => runRankCollapse({ quick: true, sizes: { n: 1 } })).toThrow("n must be at least 2");
    expect(() => runRankCollapse({ quick: true, sizes: { H: 5 } })).toThrow(
      "d_model = 32 is not a multiple of H = 5",
    );
    expect(() => runRankCollapse({ quick: true, sizes: { depth: 0 } })).toThrow(
      "depth must be a positive integer, got 0",
    );
  });
});
