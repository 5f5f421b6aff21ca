/**
 * The length-extrapolation study at its quick size (d_model = 16, L = 1, L_train = 8, 12 steps, 2
 * seeds; seconds): the models differ only in positions, every length scores the same targets,
 * learned positions are refused beyond L_train, and the checks read the rises they report. The
 * paper's ranges themselves are checked by the committed default run (12 steps train too little
 * for positions to matter).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { corpusText, corpusTokenizer } from "../reference/corpus.js";
import { GPT } from "../reference/model.js";
import { parseCsv } from "./csv.js";
import {
  LENGTH_COLUMNS,
  LENGTH_POSITIONS,
  LENGTH_QUICK,
  lengthChecks,
  lengthConfig,
  lengthCsv,
  lengthPlot,
  runLength,
  tiledLoss,
  type LengthResult,
  type LengthRow,
} from "./length-extrapolation.js";
import { renderSvg } from "./plot.js";
import { pairedInterval } from "./stats.js";
import { markGroups, parseXml } from "./xml.js";

let r: LengthResult;
beforeAll(() => {
  r = runLength({ quick: true });
});

describe("length-extrapolation: models and evaluation", () => {
  it("the models differ only in positions", () => {
    const base = lengthConfig("learned", LENGTH_QUICK);
    for (const p of LENGTH_POSITIONS) {
      const c = lengthConfig(p.id, LENGTH_QUICK);
      const diff = Object.keys(c).filter(
        (k) =>
          (c as unknown as Record<string, unknown>)[k] !==
          (base as unknown as Record<string, unknown>)[k],
      );
      expect(diff).toEqual(p.id === "learned" ? [] : ["positions"]);
    }
  });
  it("scores targets 1 … tokens once at every length, in windows of length + 1 at stride length", () => {
    const ids = corpusTokenizer(512).encode(corpusText()).slice(0, 200);
    const model = GPT.init(lengthConfig("none", LENGTH_QUICK), { seed: 0 });
    const one = tiledLoss(model, ids, 64, 64);
    const eight = [0, 1, 2, 3, 4, 5, 6, 7].map((w) => model.loss(ids.slice(w * 8, w * 8 + 9)));
    expect(tiledLoss(model, ids, 8, 64)).toBeCloseTo(eight.reduce((a, b) => a + b) / 8, 12);
    expect(one).toBeCloseTo(model.loss(ids.slice(0, 65)), 12);
    expect(() => tiledLoss(model, ids, 8, 60)).toThrow("must be a multiple of 8");
  });
  it("learned positions are evaluated at L_train only; the others at every length", () => {
    for (const row of r.rows) {
      const evaluable = row.positions !== "learned" || row.factor === 1;
      expect(row.perSeed.length, `${row.positions} ${row.factor}×`).toBe(
        evaluable ? LENGTH_QUICK.seeds : 0,
      );
      expect(row.rise === undefined).toBe(!evaluable);
    }
    expect(() =>
      GPT.init(lengthConfig("learned", LENGTH_QUICK)).forward(new Array(16).fill(1)),
    ).toThrow("16 positions exceed n_ctx = 8");
  });
  it("each rise is the paired interval of the loss at that length against the loss at L_train", () => {
    for (const p of ["sinusoidal", "rope", "alibi", "none"] as const) {
      const at = (f: number) => r.rows.find((x) => x.positions === p && x.factor === f)!;
      const d = pairedInterval(at(8).perSeed, at(1).perSeed);
      expect(at(8).rise).toEqual(d);
      expect(at(1).rise!.mean).toBe(0);
    }
  });
});

describe("length-extrapolation: checks", () => {
  const fake = (rise: Record<string, number[]>): LengthRow[] =>
    LENGTH_POSITIONS.flatMap((p) =>
      LENGTH_QUICK.factors.map((f, k) => {
        const perSeed =
          p.id === "learned" && f > 1
            ? []
            : [4, 4.1, 4.2].map(
                (x, s) => x + (k === 0 ? 0 : (rise[p.id]?.[k - 1] ?? 0) + 0.001 * s),
              );
        const first = [4, 4.1, 4.2];
        return {
          positions: p.id,
          factor: f,
          length: f * 8,
          perSeed,
          rise: perSeed.length === 0 ? undefined : pairedInterval(perSeed, first),
        };
      }),
    );
  it("pass on Press et al.'s picture: ALiBi level, sinusoidal and RoPE rising, NoPE below sinusoidal", () => {
    const rows = fake({
      sinusoidal: [0.3, 0.6, 1],
      rope: [0.1, 0.2, 0.4],
      alibi: [0, -0.01, -0.01],
      none: [0.05, 0.1, 0.2],
    });
    const c = lengthChecks({ ...LENGTH_QUICK, seeds: 3 }, rows);
    expect(c).toHaveLength(4);
    for (const x of c) expect(x.ok, `${x.name}: ${x.measured}`).toBe(true);
  });
  it("fail when ALiBi rises beyond the band or RoPE stays level", () => {
    const rows = fake({
      sinusoidal: [0.3, 0.6, 1],
      rope: [0, 0, 0],
      alibi: [0.02, 0.08, 0.2],
      none: [0.05, 0.1, 0.2],
    });
    const c = lengthChecks({ ...LENGTH_QUICK, seeds: 3 }, rows);
    expect(c.find((x) => x.name.startsWith("ALiBi"))!.ok).toBe(false);
    expect(c.find((x) => x.name.startsWith("RoPE"))!.ok).toBe(false);
    expect(c.find((x) => x.name.startsWith("sinusoidal"))!.ok).toBe(true);
  });
});

describe("length-extrapolation: files", () => {
  it("writes one row per (positions, factor) with the documented columns", () => {
    const { columns, rows } = parseCsv(lengthCsv(r));
    expect(columns).toEqual([...LENGTH_COLUMNS]);
    expect(rows).toHaveLength(LENGTH_POSITIONS.length * LENGTH_QUICK.factors.length);
    expect(
      rows.filter((x) => x["evaluable"] === "false").map((x) => `${x["positions"]} ${x["factor"]}`),
    ).toEqual(["learned 2", "learned 4", "learned 8"]);
    expect(
      rows.find((x) => x["positions"] === "learned" && x["factor"] === "2")!["loss_mean"],
    ).toBe("NaN");
  });
  it("plots well-formed SVG: a line per position encoding, L_train marked", async () => {
    const { svg, warnings } = await renderSvg(lengthPlot(r));
    expect(warnings).toEqual([]);
    const { elements } = parseXml(svg);
    // one line group per position encoding (learned: a single point at L_train)
    expect(markGroups(elements, "line")).toHaveLength(LENGTH_POSITIONS.length);
    for (const p of LENGTH_POSITIONS) expect(svg).toContain(p.label.replace(/&/g, "&amp;"));
  });
});
