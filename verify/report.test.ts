/**
 * The terminal report's pieces: colour only where wanted, the progress line (stderr on a
 * terminal), budget shares as people read them, and the exit-code rule.
 */
import { describe, expect, test } from "vitest";
import {
  budgetText,
  exitCodeOf,
  formulaRows,
  formatVerifyReport,
  progressLine,
  wantColour,
} from "./report.js";
import { declineSummary } from "./run.js";
import type { VerifyReport, VerifyResult } from "./run.js";

function report(statuses: VerifyResult["status"][], faulted = false, strict = false): VerifyReport {
  const results: VerifyResult[] = statuses.map((status) => ({
    kind: "golden",
    formula: "f",
    case: "f/f64/c",
    dtype: "f64",
    status,
    ok: status !== "fail" && status !== "fault",
    maxAbsErr: null,
    maxRelErr: null,
    budget: null,
    timeMs: 0,
  }));
  return {
    ok: false,
    implementation: { name: "x", formulas: [], dtypes: [], backward: false },
    results,
    firstDivergence: null,
    notes: [],
    faulted,
    declines: declineSummary(results, strict),
    restarts: 0,
    seed: 1,
    timeMs: 0,
  };
}

describe("terminal report", () => {
  test("colour on a terminal, unless NO_COLOR; FORCE_COLOR anywhere", () => {
    expect(wantColour(true, {})).toBe(true);
    expect(wantColour(false, {})).toBe(false);
    expect(wantColour(true, { NO_COLOR: "1" })).toBe(false);
    expect(wantColour(false, { FORCE_COLOR: "1" })).toBe(true);
    expect(wantColour(false, { FORCE_COLOR: "0" })).toBe(false);
  });
  test("the progress line rewrites itself and is cleared at the end", () => {
    const written: string[] = [];
    let t = 1000;
    const p = progressLine(
      (s) => written.push(s),
      () => t,
    );
    p.update({ phase: "golden", done: 0, total: 330, label: "softmax/f64/n7_m12" });
    t += 50;
    p.update({ phase: "golden", done: 1, total: 330, label: "too soon: dropped" });
    t += 50;
    p.update({ phase: "golden", done: 2, total: 330, label: "softmax/f64/vec_m9" });
    t += 1;
    p.update({ phase: "golden", done: 330, total: 330, label: "" });
    p.clear();
    expect(written).toEqual([
      "\r\x1b[Kgolden 0/330 softmax/f64/n7_m12",
      "\r\x1b[Kgolden 2/330 softmax/f64/vec_m9",
      "\r\x1b[Kgolden 330/330 ",
      "\r\x1b[K",
    ]);
  });
  test("budget shares", () => {
    expect([
      budgetText(null),
      budgetText(0),
      budgetText(0.0000004),
      budgetText(0.0072),
      budgetText(0.684),
      budgetText(1.2939),
      budgetText(3e12),
      budgetText(Infinity),
    ]).toEqual(["-", "0 %", "4e-5 %", "0.72 %", "68 %", "130 %", "×3.0e+12", "×inf"]);
  });
  test("exit codes: 0 all pass, 1 a failure, 2 a fault or nothing checked", () => {
    expect(exitCodeOf(report(["pass", "declined", "skipped"]))).toBe(0);
    expect(exitCodeOf(report(["pass", "fail"]))).toBe(1);
    expect(exitCodeOf(report(["pass", "fail", "fault"], true))).toBe(2);
    expect(exitCodeOf(report(["declined", "skipped"]))).toBe(2);
  });
  test(
    "exit codes: a fault result is 2 even when the run did not flag it; " +
      "more than half declined, or any under strict, is 1",
    () => {
      expect(exitCodeOf(report(["pass", "fault"]))).toBe(2);
      expect(exitCodeOf(report(["pass", "declined"]))).toBe(0);
      expect(exitCodeOf(report(["pass", "declined", "declined"]))).toBe(1);
      expect(
        exitCodeOf(report(["pass", "pass", "declined", "skipped", "skipped"], false, true)),
      ).toBe(1);
      expect(
        declineSummary(report(["pass", "declined", "declined", "skipped"]).results, false),
      ).toEqual({ count: 2, asked: 3, share: 2 / 3, failsRun: true });
    },
  );
});

describe("the formula table's error columns", () => {
  // a passing case's near-zero element has a relative error of 1e3 inside its tolerance (budget
  // 40 %); the failing case of the same formula has relative error 2 (budget 300 %)
  const golden = (
    formula: string,
    status: "pass" | "fail",
    maxRelErr: number,
    budget: number,
  ): VerifyResult => ({
    kind: "golden",
    formula,
    case: `${formula}/f64/c-${status}`,
    dtype: "f64",
    status,
    ok: status === "pass",
    maxAbsErr: maxRelErr / 10,
    maxRelErr,
    budget,
    timeMs: 0,
  });
  const r: VerifyReport = {
    ...report([]),
    implementation: {
      name: "x",
      formulas: ["softmax", "attention"],
      dtypes: ["f64"],
      backward: false,
    },
    results: [
      golden("softmax", "pass", 1e3, 0.4),
      golden("attention", "pass", 1e3, 0.4),
      golden("attention", "fail", 2, 3),
    ],
  };
  test("a failing row shows the errors of its failing cases only; a passing row says ok", () => {
    const rows = formulaRows(r);
    expect(rows.map((x) => [x.formula, x.maxRel, x.budget])).toEqual([
      ["softmax", null, 0.4],
      ["attention", 2, 3],
    ]);
    const lines = formatVerifyReport(r).split("\n");
    expect(lines.find((l) => l.startsWith("softmax "))).toMatch(/^softmax\s+1\/1\s+ok\s+ok\s+40 %/);
    expect(lines.find((l) => l.startsWith("attention "))).toMatch(
      /^attention\s+1\/2\s+2\.0e-01\s+2\.0e\+00\s+300 %/,
    );
  });
});
