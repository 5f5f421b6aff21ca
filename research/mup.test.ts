/**
 * The mup study at its quick size (widths 8 and 16, three learning rates, 6 steps, 2 seeds;
 * seconds): every (parametrisation, width, learning rate, seed) is trained and lands in the tables
 * and plot, SP and μP differ only in the initialisation and step sizes, and the checks read the
 * optima they report. Whether the optima behave as Yang et al. report is what the committed
 * default run measures.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { GPT, initWeights } from "../reference/model.js";
import { mupInit } from "../reference/mup.js";
import { parseCsv } from "./csv.js";
import {
  MUP_COLUMNS,
  MUP_QUICK,
  MUP_SEED_COLUMNS,
  mupChecks,
  mupConfig,
  mupCsv,
  mupPlot,
  mupSeedsCsv,
  mupSummary,
  runMup,
  spreadRange,
  tiedWithOptimum,
  widthsOf,
  type MupPoint,
  type MupResult,
} from "./mup.js";
import { renderSvg } from "./plot.js";
import { markGroups, parseXml } from "./xml.js";

let r: MupResult;
beforeAll(() => {
  r = runMup({ quick: true });
});

const nLines = 2 * MUP_QUICK.widths.length + MUP_QUICK.zeroReadoutWidths.length;
const nRuns = nLines * MUP_QUICK.log2Lrs.length;

describe("mup: runs", () => {
  it("trains every (parametrisation, width, rate) and picks each width's lowest seed mean", () => {
    expect(r.points).toHaveLength(nRuns);
    for (const p of ["SP", "μP", "μP, zero readout"] as const) {
      widthsOf(p, MUP_QUICK).forEach((w, i) => {
        const row = r.points.filter((x) => x.param === p && x.width === w);
        expect(row).toHaveLength(MUP_QUICK.log2Lrs.length);
        const best = Math.min(...row.map((x) => x.loss));
        expect(row.find((x) => x.log2Lr === r.optimum[p][i])!.loss).toBe(best);
        expect(r.ties[p][i]).toContain(r.optimum[p][i]);
        for (const x of row) {
          expect(x.seedLosses).toHaveLength(MUP_QUICK.seeds);
          if (x.diverged) continue;
          expect(x.loss).toBeCloseTo((x.seedLosses[0]! + x.seedLosses[1]!) / 2, 12);
          expect(x.loss).toBeLessThan(Math.log(MUP_QUICK.V) + 1);
        }
      });
    }
    // seeds differ (weights and data), so the two losses of a point are not copies
    expect(r.points.some((x) => x.seedLosses[0] !== x.seedLosses[1])).toBe(true);
  });
  it("at the base width μP is SP with W_Q = 0; the zero readout starts at exactly ln V", () => {
    const c = mupConfig(MUP_QUICK.widths[0]!, MUP_QUICK);
    expect(c.tied).toBe(false);
    const base = MUP_QUICK.widths[0]!;
    const sp = initWeights(c, { seed: 0 });
    const mu = mupInit(c, { baseWidth: base, seed: 0 });
    const q = sp["h.0.attn.c_attn.weight"]!;
    const cols = q.shape[1]!;
    for (let i = 0; i < q.size; i++) if (i % cols < base) q.data[i] = 0;
    for (const [k, t] of Object.entries(sp)) {
      expect(Array.from(mu[k]!.data), k).toEqual(Array.from(t.data));
    }
    const zero = new GPT(c, mupInit(c, { baseWidth: base, seed: 0, readout: "zero" }));
    expect(zero.loss([1, 2, 3, 4, 5])).toBeCloseTo(Math.log(MUP_QUICK.V), 12);
  });
});

const pt = (log2Lr: number, seedLosses: number[]): MupPoint => {
  const loss = seedLosses.reduce((a, b) => a + b, 0) / seedLosses.length;
  return { param: "μP", width: 8, log2Lr, seedLosses, loss, diverged: false };
};

describe("mup: ties within the seed spread", () => {
  it("ties a learning rate whose seed range overlaps the optimum's, centred on the means", () => {
    // best mean 2.0 (±0.1); 2.125 ± 0.075: 0.125 ≤ 0.1 + 0.075 → tied; 2.3 ± 0.1: 0.3 > 0.2 → not
    const row = [pt(-8, [2.2, 2.4]), pt(-7, [1.9, 2.1]), pt(-6, [2.05, 2.2]), pt(-5, [2.3, 2.5])];
    expect(tiedWithOptimum(row)).toEqual([-7, -6]);
    // one seed: no spread, only the optimum itself
    expect(tiedWithOptimum([pt(-8, [2.1]), pt(-7, [2.0]), pt(-6, [2.05])])).toEqual([-7]);
    const diverged = { ...pt(-8, [2.0, 2.0]), diverged: true, loss: Infinity };
    expect(tiedWithOptimum([diverged, pt(-7, [2.0, 2.2])])).toEqual([-7]);
  });
  it("spreadRange: the least and greatest spread of one pick per set", () => {
    expect(spreadRange([[-7], [-7], [-7]])).toEqual([0, 0]);
    expect(spreadRange([[-8, -7], [-6, -5], [-7]])).toEqual([1, 3]);
    expect(spreadRange([[-9], [-7, -6], [-8]])).toEqual([2, 3]);
  });
});

describe("mup: checks", () => {
  const sizes = {
    ...MUP_QUICK,
    widths: [32, 64, 128, 256],
    log2Lrs: [-12, -11, -10, -9, -8, -7, -6, -5],
  };
  it("pass when SP's optimum falls by ≥ 2 steps and μP's stays within one step, inside the sweep", () => {
    const c = mupChecks(sizes, { SP: [-6, -7, -8, -9], μP: [-7, -7, -8, -7] });
    expect(c.map((x) => x.ok)).toEqual([true, true]);
  });
  it("fail when SP's optimum does not move, or μP's drifts or sits at the sweep's edge", () => {
    expect(
      mupChecks(sizes, { SP: [-7, -7, -8, -8], μP: [-7, -9, -8, -7] }).map((x) => x.ok),
    ).toEqual([false, false]);
    expect(mupChecks(sizes, { SP: [-6, -7, -8, -9], μP: [-5, -5, -5, -5] })[1]!.ok).toBe(false);
  });
  it("say whether a choice within the ties would change the verdict, without changing it", () => {
    const optimum = { SP: [-6, -7, -8, -9], μP: [-7, -9, -8, -7] };
    const firm = mupChecks(sizes, optimum, {
      SP: [[-6], [-7], [-8], [-9]],
      μP: [[-7], [-9], [-8], [-7]],
    });
    const loose = mupChecks(sizes, optimum, {
      SP: [[-6, -7], [-7], [-8], [-9, -8]],
      μP: [[-7], [-9, -8], [-8], [-7]],
    });
    expect(firm.map((x) => x.ok)).toEqual([true, false]);
    expect(loose.map((x) => x.ok)).toEqual([true, false]);
    const same = "every choice within the seed spread gives the same verdict";
    const differ = "within the seed spread the verdict could differ**";
    expect(firm[1]!.measured).toContain(`${same} (spread 2 … 2)`);
    expect(loose[0]!.measured).toContain(`${differ} (shift 1 … 3)`);
    expect(loose[1]!.measured).toContain(`${differ} (spread 1 … 2)`);
  });
});

describe("mup: files", () => {
  it("writes one row per point and one per run with the documented columns", () => {
    const { columns, rows } = parseCsv(mupCsv(r));
    expect(columns).toEqual([...MUP_COLUMNS]);
    expect(rows).toHaveLength(r.points.length);
    const params = new Set(rows.map((x) => x["parametrisation"]));
    expect(params).toEqual(new Set(["SP", "μP", "μP, zero readout"]));
    for (const x of rows) {
      expect(Number(x["lr"])).toBe(2 ** Number(x["log2_lr"]));
      if (x["diverged"] === "false") {
        expect(Number(x["heldout_loss_min"])).toBeLessThanOrEqual(Number(x["heldout_loss"]));
        expect(Number(x["heldout_loss"])).toBeLessThanOrEqual(Number(x["heldout_loss_max"]));
      }
    }
    const seeds = parseCsv(mupSeedsCsv(r));
    expect(seeds.columns).toEqual([...MUP_SEED_COLUMNS]);
    expect(seeds.rows).toHaveLength(nRuns * MUP_QUICK.seeds);
    const sp8 = seeds.rows.filter(
      (x) => x["parametrisation"] === "SP" && x["width"] === "8" && x["log2_lr"] === "-6",
    );
    const point = r.points.find((p) => p.param === "SP" && p.width === 8 && p.log2Lr === -6)!;
    expect(sp8.map((x) => Number(x["heldout_loss"]))).toEqual(point.seedLosses);
  });
  it("summarises every point, the checks and the run's CPU time", () => {
    const md = mupSummary(r, performance.now(), process.cpuUsage());
    const parts = ["### SP", "### μP", "### μP, zero readout", "## Checks", "CPU", "load average"];
    for (const p of parts) {
      expect(md).toContain(p);
    }
    expect(md).toContain("Zero readout minus Table 3's readout, μP at the base width 8");
  });
  it("plots well-formed SVG: a line and range bars per width in each panel", async () => {
    const { svg, warnings } = await renderSvg(mupPlot(r));
    expect(warnings).toEqual([]);
    const { elements } = parseXml(svg);
    expect(markGroups(elements, "line")).toHaveLength(nLines);
    expect(markGroups(elements, "rule").length).toBeGreaterThanOrEqual(3);
    expect(svg).toContain(">μP<");
    expect(svg).toContain(">μP, zero readout<");
  });
});
