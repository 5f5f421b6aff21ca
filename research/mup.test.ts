/**
 * The mup study at its quick size (widths 8 and 16, three learning rates, 6 steps; seconds): every
 * (parametrisation, width, learning rate) is trained and lands in the table and plot, SP and μP
 * differ only in the initialisation and step sizes, and the checks read the optima they report.
 * Whether the optima behave as Yang et al. report is what the committed default run measures.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { GPT } from "../reference/model.js";
import { mupInit } from "../reference/mup.js";
import { parseCsv } from "./csv.js";
import { MUP_COLUMNS, MUP_QUICK, mupChecks, mupConfig, mupCsv, mupPlot, runMup, type MupResult } from "./mup.js";
import { renderSvg } from "./plot.js";
import { parseXml } from "./xml.js";

let r: MupResult;
beforeAll(() => {
  r = runMup({ quick: true });
});

describe("mup: runs", () => {
  it("trains every (parametrisation, width, learning rate) and picks each width's lowest loss", () => {
    expect(r.points).toHaveLength(2 * MUP_QUICK.widths.length * MUP_QUICK.log2Lrs.length);
    for (const p of ["SP", "μP"] as const) {
      MUP_QUICK.widths.forEach((w, i) => {
        const row = r.points.filter((x) => x.param === p && x.width === w);
        const best = Math.min(...row.map((x) => x.loss));
        expect(row.find((x) => x.log2Lr === r.optimum[p][i])!.loss).toBe(best);
        for (const x of row) if (!x.diverged) expect(x.loss).toBeLessThan(Math.log(MUP_QUICK.V) + 1);
      });
    }
  });
  it("SP and μP at the base width start from the same function up to the zero readout and queries", () => {
    const c = mupConfig(MUP_QUICK.widths[0]!, MUP_QUICK);
    expect(c.tied).toBe(false);
    // a zero readout gives uniform logits: the loss is exactly ln V
    const mu = new GPT(c, mupInit(c, { baseWidth: MUP_QUICK.widths[0]!, seed: 0 }));
    expect(mu.loss([1, 2, 3, 4, 5])).toBeCloseTo(Math.log(MUP_QUICK.V), 12);
  });
});

describe("mup: checks", () => {
  const sizes = { ...MUP_QUICK, widths: [32, 64, 128, 256], log2Lrs: [-12, -11, -10, -9, -8, -7, -6, -5] };
  it("pass when SP's optimum falls by ≥ 2 steps and μP's stays within one step, inside the sweep", () => {
    const c = mupChecks(sizes, { SP: [-6, -7, -8, -9], μP: [-7, -7, -8, -7] });
    expect(c.map((x) => x.ok)).toEqual([true, true]);
  });
  it("fail when SP's optimum does not move, or μP's drifts or sits at the sweep's edge", () => {
    expect(mupChecks(sizes, { SP: [-7, -7, -8, -8], μP: [-7, -9, -8, -7] }).map((x) => x.ok)).toEqual([false, false]);
    expect(mupChecks(sizes, { SP: [-6, -7, -8, -9], μP: [-5, -5, -5, -5] })[1]!.ok).toBe(false);
  });
});

describe("mup: files", () => {
  it("writes one row per run with the documented columns", () => {
    const { columns, rows } = parseCsv(mupCsv(r));
    expect(columns).toEqual([...MUP_COLUMNS]);
    expect(rows).toHaveLength(r.points.length);
    expect(new Set(rows.map((x) => x["parametrisation"]))).toEqual(new Set(["SP", "μP"]));
    for (const x of rows) expect(Number(x["lr"])).toBe(2 ** Number(x["log2_lr"]));
  });
  it("plots well-formed SVG: a line per width in each of the two panels", async () => {
    const { svg, warnings } = await renderSvg(mupPlot(r));
    expect(warnings).toEqual([]);
    const { elements } = parseXml(svg);
    const cls = (e: { attrs: Readonly<Record<string, string>> }) => (e.attrs["class"] ?? "").split(" ");
    expect(elements.filter((e) => cls(e).includes("mark-line") && cls(e).includes("role-mark"))).toHaveLength(2 * MUP_QUICK.widths.length);
    expect(svg).toContain(">μP<");
  });
});
