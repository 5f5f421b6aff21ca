/**
 * The variants study at its quick size (d_model = 16, L = 1, 12 steps; a few seconds): every
 * variant is the configuration it claims to be, trains, and lands in the table, the curves and the plot.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { parseCsv } from "./csv.js";
import { renderSvg } from "./plot.js";
import { pairedInterval } from "./stats.js";
import { schedule } from "./training.js";
import {
  BASELINE_SEEDS,
  CURVE_COLUMNS,
  curvesCsv,
  LITERATURE,
  runVariants,
  SEED_COLUMNS,
  seedsCsv,
  smooth,
  variantConfig,
  VARIANTS,
  VARIANTS_COLUMNS,
  VARIANTS_QUICK,
  variantsCsv,
  variantsPlot,
  variantsSummary,
  verdict,
  type VariantsResult,
} from "./variants.js";
import { childCounts, markGroups, parseXml } from "./xml.js";

let r: VariantsResult;
beforeAll(() => {
  r = runVariants({ quick: true });
});
const byId = (id: string) => r.variants.find((v) => v.spec.id === id)!;

describe("variants: configurations", () => {
  it("each variant changes exactly the switch it names", () => {
    const base = variantConfig(VARIANTS[0]!, VARIANTS_QUICK);
    expect(base).toMatchObject({
      placement: "pre",
      norm: "layer_norm",
      activation: "gelu",
      positions: "learned",
      H_kv: base.H,
    });
    const diff = (id: string) => {
      const c = variantConfig(VARIANTS.find((v) => v.id === id)!, VARIANTS_QUICK);
      return Object.fromEntries(
        Object.entries(c).filter(([k, v]) => (base as unknown as Record<string, unknown>)[k] !== v),
      );
    };
    expect(diff("post-ln")).toEqual({ placement: "post" });
    expect(diff("sandwich")).toEqual({ placement: "sandwich" });
    expect(diff("rmsnorm")).toEqual({ norm: "rms_norm" });
    expect(diff("relu")).toEqual({ activation: "relu" });
    // SwiGLU takes LLaMA's hidden size: 4·⌈⌊8·16/3⌋/4⌉ = 4·⌈42/4⌉ = 44
    expect(diff("swiglu")).toEqual({ activation: "swiglu", d_ff: 44 });
    expect(diff("rope")).toEqual({ positions: "rope" });
    expect(diff("alibi")).toEqual({ positions: "alibi" });
    expect(diff("nope")).toEqual({ positions: "none" });
    expect(diff("sinusoidal")).toEqual({ positions: "sinusoidal" });
    expect(diff("mqa")).toEqual({ H_kv: 1 });
    expect(diff("gqa")).toEqual({ H_kv: 2 });
  });
  it("parameter counts differ from the baseline's by what the switch adds or removes", () => {
    const { d_model: d, H, L, n } = VARIANTS_QUICK;
    const d_k = d / H;
    const base = byId("baseline").params;
    // K and V shrink from H to H_kv heads: weight d·2(H − H_kv)·d_k plus bias 2(H − H_kv)·d_k, per layer
    const kv = (Hkv: number) => L * 2 * (H - Hkv) * d_k * (d + 1);
    expect(base - byId("mqa").params).toBe(kv(1));
    expect(base - byId("gqa").params).toBe(kv(2));
    // positions inside attention or none: no wpe [n_ctx, d]
    for (const id of ["rope", "alibi", "nope", "sinusoidal"])
      expect(base - byId(id).params).toBe(n * d);
    // RMSNorm: no β in ln_1, ln_2 (per layer) and ln_f
    expect(base - byId("rmsnorm").params).toBe((2 * L + 1) * d);
    // post-LN has no final norm
    expect(base - byId("post-ln").params).toBe(2 * d);
    // sandwich adds ln_3, ln_4 (γ and β) per layer
    expect(byId("sandwich").params - base).toBe(L * 4 * d);
    expect(byId("relu").params).toBe(base);
  });
  it("warms up linearly, then decays by a cosine to a tenth of the peak", () => {
    const s = { ...VARIANTS_QUICK, steps: 11, warmup: 2, lr: 1 };
    const f = schedule(s);
    expect([f(0), f(1)]).toEqual([0.5, 1]);
    expect(f(2)).toBeCloseTo(1, 15);
    expect(f(10)).toBeCloseTo(0.1, 15);
    // halfway through the decay: 0.1 + 0.9·0.5
    expect(f(6)).toBeCloseTo(0.55, 15);
  });
  it("smooths by a trailing mean", () => {
    expect(smooth([1, 2, 3, 4, 5], 2)).toEqual([1, 1.5, 2.5, 3.5, 4.5]);
    expect(smooth([2, 4], 5)).toEqual([2, 3]);
  });
});

describe("variants: training", () => {
  it("every variant trains on the same budget and its held-out loss falls", () => {
    expect(r.variants.map((v) => v.spec.id)).toEqual(VARIANTS.map((v) => v.id));
    for (const v of r.variants) {
      expect(v.curve).toHaveLength(VARIANTS_QUICK.steps);
      expect(v.heldoutLoss[0]!, v.spec.id).toBeLessThan(v.initialLoss);
      expect(v.msPerStep).toBeGreaterThan(0);
    }
    for (const c of r.checks) expect(c.ok, `${c.name}: ${c.measured}`).toBe(true);
  });
  it("starts every variant near ln V (GPT-2's small initial weights give near-uniform logits)", () => {
    for (const v of r.variants)
      expect(Math.abs(v.initialLoss - Math.log(VARIANTS_QUICK.V))).toBeLessThan(0.05);
  });
  it(`trains the baseline from ${BASELINE_SEEDS} seeds, as a yardstick of seed noise`, () => {
    expect(byId("baseline").heldoutAllSeeds).toHaveLength(BASELINE_SEEDS);
    expect(new Set(byId("baseline").heldoutAllSeeds).size).toBe(BASELINE_SEEDS);
    expect(byId("relu").heldoutAllSeeds).toHaveLength(1);
  });
  it("names bad sizes and unknown variants", () => {
    expect(() => runVariants({ quick: true, sizes: { H: 3 } })).toThrow("H must be even and ≥ 2");
    expect(() => runVariants({ quick: true, sizes: { d_model: 20, H: 4 } })).toThrow(
      "RoPE needs an even head size; d_model / H = 5",
    );
    expect(() => runVariants({ quick: true, sizes: { warmup: 12 } })).toThrow(
      "warmup must be an integer in [0, steps), got 12",
    );
    expect(() => runVariants({ quick: true, only: ["gelu"] })).toThrow('unknown variant "gelu"');
  });
});

describe("variants: files", () => {
  it("writes the table with the documented columns, one row per variant", () => {
    const { columns, rows } = parseCsv(variantsCsv(r));
    expect(columns).toEqual([...VARIANTS_COLUMNS]);
    expect(rows.map((x) => x["variant"])).toEqual(VARIANTS.map((v) => v.id));
    for (const row of rows) {
      expect(Number(row["params"])).toBe(byId(row["variant"]!).params);
      expect(Number(row["heldout_loss"])).toBeLessThan(Number(row["initial_loss"]));
      expect(Number(row["steps"])).toBe(VARIANTS_QUICK.steps);
    }
  });
  it("writes the curves with the documented columns, one row per (variant, step)", () => {
    const { columns, rows } = parseCsv(curvesCsv(r));
    expect(columns).toEqual([...CURVE_COLUMNS]);
    expect(rows).toHaveLength(VARIANTS.length * VARIANTS_QUICK.steps);
    const first = rows.find((x) => x["variant"] === "baseline" && x["step"] === "0")!;
    expect(Number(first["loss"])).toBe(byId("baseline").curve[0]);
    expect(Number(first["loss_smoothed"])).toBe(Number(first["loss"]));
  });
  it(
    "plots well-formed SVG: a curve per variant in its group's panel (the " +
      "baseline in all five) and a bar per variant",
    async () => {
      const { svg, warnings } = await renderSvg(variantsPlot(r));
      expect(warnings).toEqual([]);
      const { elements } = parseXml(svg);
      // 11 variants in one panel each + the baseline in 5 panels
      expect(markGroups(elements, "line")).toHaveLength(VARIANTS.length - 1 + 5);
      // bars (held-out) and ticks (train) are both drawn as rects: one of each per variant
      expect(childCounts(elements, markGroups(elements, "rect"))).toEqual([
        VARIANTS.length,
        VARIANTS.length,
      ]);
      for (const v of VARIANTS) expect(svg).toContain(`>${v.id}<`);
    },
  );
});

describe("variants: paired differences over seeds", () => {
  let p: VariantsResult;
  beforeAll(() => {
    p = runVariants({ quick: true, seeds: 3, only: ["baseline", "swiglu", "rmsnorm", "post-ln"] });
  });
  it("reports each difference as the paired t interval of the per-seed runs it writes", () => {
    const seeds = parseCsv(seedsCsv(p));
    expect(seeds.columns).toEqual([...SEED_COLUMNS]);
    expect(seeds.rows).toHaveLength(4 * 3);
    const held = (id: string) =>
      seeds.rows.filter((x) => x["variant"] === id).map((x) => Number(x["heldout_loss"]));
    const table = parseCsv(variantsCsv(p)).rows;
    for (const id of ["swiglu", "rmsnorm", "post-ln"]) {
      const row = table.find((x) => x["variant"] === id)!;
      const d = pairedInterval(held(id), held("baseline"));
      expect(Number(row["delta"])).toBe(d.mean);
      expect(Number(row["delta_low"])).toBe(d.low);
      expect(Number(row["delta_high"])).toBe(d.high);
      expect(row["significant"]).toBe(String(d.significant));
    }
    const base = table.find((x) => x["variant"] === "baseline")!;
    expect([Number(base["delta"]), Number(base["delta_low"]), Number(base["delta_high"])]).toEqual([
      0, 0, 0,
    ]);
  });
  it("checks each literature direction it has the variant for, and says which way the interval points", () => {
    const names = p.checks.map((c) => c.name);
    for (const lit of LITERATURE.filter((l) =>
      ["swiglu", "rmsnorm", "post-ln"].includes(l.variant),
    )) {
      expect(names.some((n) => n.startsWith(`${lit.variant} vs baseline`))).toBe(true);
    }
    expect(names.some((n) => n.startsWith("relu"))).toBe(false);
    const summary = variantsSummary(p, performance.now());
    expect(summary).toContain("## Against the literature");
    expect(summary).toContain("Shazeer 2020, Table 1");
  });
  it("reads an interval against a direction: agrees, unresolved or disagrees", () => {
    const iv = (low: number, high: number) => ({
      mean: (low + high) / 2,
      halfWidth: (high - low) / 2,
      low,
      high,
      sd: 1,
      n: 5,
      significant: low > 0 || high < 0,
    });
    expect(verdict(iv(-0.3, -0.1), "lower")).toBe("agrees");
    expect(verdict(iv(-0.3, 0.1), "lower")).toBe("unresolved");
    expect(verdict(iv(0.1, 0.3), "lower")).toBe("disagrees");
    expect(verdict(iv(0.1, 0.3), "higher")).toBe("agrees");
    expect(verdict(iv(-0.1, 0.1), "comparable")).toBe("agrees");
    expect(verdict(iv(-0.3, -0.1), "comparable")).toBe("agrees");
    expect(verdict(iv(0.1, 0.3), "comparable")).toBe("disagrees");
  });
  it("draws the intervals: one rule and one point per variant besides the baseline", async () => {
    const { svg, warnings } = await renderSvg(variantsPlot(p));
    expect(warnings).toEqual([]);
    const { elements } = parseXml(svg);
    const kids = (type: string) => childCounts(elements, markGroups(elements, type));
    expect(kids("symbol")).toEqual([3]);
    // the zero line (one) and the intervals (three)
    expect(kids("rule").sort()).toEqual([1, 3]);
  });
});
