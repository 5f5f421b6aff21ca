/**
 * The ln-placement study at its quick size (d_model = 32, L ∈ {2, 4, 8, 16}, 4 seeds; a few
 * seconds): the fitted slopes fall where Xiong et al. 2020 put them.
 *
 * Ranges, from the paper:
 * - Theorem 1, pre-LN: ‖∂L/∂W^{2,L}‖_F = O(d·√(ln d / L)) → log-log slope against L of −1/2.
 *   Allow ±1/4: over a finite sweep starting at L = 2 the embedding's share of ‖x_L‖² makes the
 *   slope shallower than its large-L value, and the seed-to-seed spread of a fitted slope is ≈ 0.05–0.07.
 * - Theorem 1, post-LN: O(d·√(ln d)) with no L → slope 0; allow ±0.2 for the same reasons.
 * - Figure 3: post-LN's gradient grows with the layer index, so against the depth from the top
 *   (1 = last layer) its per-layer slope is negative, and below pre-LN's, by more than 2 standard errors.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { GPT } from "../reference/model.js";
import { corpusText, corpusTokenizer } from "../reference/corpus.js";
import { TokenWindows } from "../reference/train.js";
import { parseCsv } from "./csv.js";
import {
  LN_EXPECTED,
  LN_PLACEMENT_COLUMNS,
  LN_PLACEMENT_QUICK,
  lnPlacementConfig,
  lnPlacementCsv,
  lnPlacementPlot,
  runLnPlacement,
  type LnPlacementResult,
} from "./ln-placement.js";
import { renderSvg } from "./plot.js";
import { childCounts, markGroups, parseXml } from "./xml.js";

let r: LnPlacementResult;
beforeAll(() => {
  r = runLnPlacement({ quick: true });
});

describe("ln-placement: slopes against Xiong et al. 2020 (Xavier, W_Q = W_K = 0, ReLU)", () => {
  it("uses the ranges derived above", () => {
    expect(LN_EXPECTED.preLast).toEqual([-0.75, -0.25]);
    expect(LN_EXPECTED.postLast).toEqual([-0.2, 0.2]);
  });
  it("pre-LN: the last layer's gradient falls like L^(−1/2) (Theorem 1)", () => {
    const s = r.fits.xavier.pre.lastVsDepth.fit.slope;
    expect(s).toBeGreaterThanOrEqual(-0.75);
    expect(s).toBeLessThanOrEqual(-0.25);
  });
  it("post-LN: the last layer's gradient does not depend on L (Theorem 1)", () => {
    const s = r.fits.xavier.post.lastVsDepth.fit.slope;
    expect(s).toBeGreaterThanOrEqual(-0.2);
    expect(s).toBeLessThanOrEqual(0.2);
  });
  it("post-LN: per layer, the gradient falls with the depth from the top (Figure 3)", () => {
    const f = r.fits.xavier.post.perLayerVsFromTop;
    expect(f.fit.slope + 2 * f.se).toBeLessThan(0);
  });
  it("post-LN concentrates its gradient near the output more than pre-LN (Figure 3)", () => {
    const post = r.fits.xavier.post.perLayerVsFromTop;
    const pre = r.fits.xavier.pre.perLayerVsFromTop;
    expect(post.fit.slope - pre.fit.slope + 2 * Math.hypot(post.se, pre.se)).toBeLessThan(0);
  });
  it("reports the same verdicts as its checks", () => {
    expect(r.checks).toHaveLength(4);
    for (const c of r.checks)
      expect(c.ok, `${c.name}: ${c.measured}, expected ${c.expected}`).toBe(true);
  });
  it(
    "GPT-2's initialisation, whose residual projections shrink as 1/√(2L), " +
      "keeps the pre-LN last-layer gradient level",
    () => {
      // GPT-2's scaling keeps ‖x_L‖ from growing with L, which is what made pre-LN's gradient fall
      expect(Math.abs(r.fits.gpt2.pre.lastVsDepth.fit.slope)).toBeLessThan(0.2);
    },
  );
});

describe("ln-placement: the measurement", () => {
  it("is the gradient GPT.lossAndGrads computes for the same weights and batch", () => {
    const s = { ...LN_PLACEMENT_QUICK, seeds: 1 };
    const config = lnPlacementConfig(s, "pre", 2);
    const model = GPT.init(config, { seed: 0, init: "xavier", zeroQK: true });
    const ids = corpusTokenizer(s.V).encode(corpusText());
    const batch = new TokenWindows(ids, s.n + 1, 0x1a7e).next(s.batch);
    const g = model.lossAndGrads(batch).grads["h.1.mlp.c_proj.weight"]!;
    const norm = Math.sqrt(Array.from(g.data).reduce((a, v) => a + v * v, 0));
    const row = r.rows.find(
      (x) => x.init === "xavier" && x.placement === "pre" && x.L === 2 && x.layer === 2,
    )!;
    // same graph and inputs, different wrt lists: equal up to float64 summation order
    expect(Math.abs(row.perSeed[0]! - norm) / norm).toBeLessThan(1e-12);
  });
  it("writes a CSV with the documented columns and one row per (init, placement, L, layer)", () => {
    const { columns, rows } = parseCsv(lnPlacementCsv(r));
    expect(columns).toEqual([...LN_PLACEMENT_COLUMNS]);
    const layers = LN_PLACEMENT_QUICK.depths.reduce((a, b) => a + b, 0);
    expect(rows).toHaveLength(2 * 2 * layers);
    for (const row of rows) {
      expect(Number(row["grad_norm_mean"])).toBeGreaterThan(0);
      expect(Number(row["L"]) - Number(row["layer"]) + 1).toBe(Number(row["depth_from_top"]));
      expect(Number(row["seeds"])).toBe(LN_PLACEMENT_QUICK.seeds);
    }
  });
  it("plots well-formed SVG with points, error bars and fitted lines in each of the 4 panels", async () => {
    const { svg, warnings } = await renderSvg(lnPlacementPlot(r));
    expect(warnings).toEqual([]);
    const { root, elements } = parseXml(svg);
    expect(root.name).toBe("svg");
    const marks = (type: string) => childCounts(elements, markGroups(elements, type));
    const { depths, perLayerDepth } = LN_PLACEMENT_QUICK;
    // panels in order: (xavier: last, per layer), (gpt2: last, per layer); 2 placements each
    const perPanel = [2 * depths.length, 2 * perLayerDepth, 2 * depths.length, 2 * perLayerDepth];
    expect(marks("symbol")).toEqual(perPanel);
    expect(marks("rule")).toEqual(perPanel);
    // one dashed fit line per placement in each panel (vega draws each series as its own mark group)
    expect(marks("line")).toEqual(Array(8).fill(1));
    expect(svg).toContain("post-LN");
    expect(svg).toContain("pre-LN");
  });
  it("with one seed the sign decides the per-layer checks, and the report says there is no standard error", () => {
    const one = runLnPlacement({
      quick: true,
      seeds: 1,
      sizes: { depths: [2, 4, 8], perLayerDepth: 8 },
    });
    expect(Number.isNaN(one.fits.xavier.post.perLayerVsFromTop.se)).toBe(true);
    const perLayer = one.checks.filter((c) => c.name.includes("depth from the top"));
    expect(perLayer).toHaveLength(2);
    for (const c of perLayer) {
      expect(c.measured).toContain("(one seed: no standard error)");
      expect(c.measured).not.toContain("±");
    }
    expect(perLayer[0]!.ok).toBe(one.fits.xavier.post.perLayerVsFromTop.fit.slope < 0);
  });
  it("names bad sizes", () => {
    expect(() => runLnPlacement({ quick: true, sizes: { perLayerDepth: 5 } })).toThrow(
      "perLayerDepth 5 is not one of the depths 2, 4, 8, 16",
    );
    expect(() => runLnPlacement({ quick: true, sizes: { depths: [4] } })).toThrow(
      "a slope against depth needs at least 2 depths, got 1",
    );
    expect(() => runLnPlacement({ quick: true, sizes: { d_model: 30 } })).toThrow(
      "d_model = 30 is not a multiple of H = 4",
    );
    expect(() => runLnPlacement({ quick: true, seeds: 0 })).toThrow(
      "seeds must be a positive integer, got 0",
    );
  });
});
