/**
 * The verify report for people and programs: a compact terminal table per formula (coloured on
 * a terminal), the first divergence spelled out, faults with the program's own words, and the
 * same facts as JSON. JUnit XML and HTML live in junit.ts and html.ts.
 */
import { textTable } from "../io/text.js";
import { REPORT_MARKER } from "./report-files.js";
import { SCHEMA_VERSION, toWire } from "../autodiff/wire.js";
import { shapeToString } from "../autodiff/tensor.js";
import { formatError, formatValue } from "../golden/compare.js";
import type { TensorReport } from "../golden/compare.js";
import type { Hint } from "./diagnose.js";
import type {
  FirstDivergence,
  Origin,
  ResultKind,
  ResultStatus,
  VerifyReport,
  VerifyResult,
} from "./run.js";
import { DECLINE_LIMIT, formulaOrder } from "./run.js";

// ---------------------------------------------------------------------------------------------
// Colour

export interface Style {
  readonly green: (s: string) => string;
  readonly red: (s: string) => string;
  readonly yellow: (s: string) => string;
  readonly dim: (s: string) => string;
  readonly bold: (s: string) => string;
}

const plain = (s: string): string => s;
const ansi = (code: string) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;

/** ANSI colours, or none. */
function style(colour: boolean): Style {
  return colour
    ? { green: ansi("32"), red: ansi("31"), yellow: ansi("33"), dim: ansi("2"), bold: ansi("1") }
    : { green: plain, red: plain, yellow: plain, dim: plain, bold: plain };
}

/**
 * Colour is used on a terminal unless `NO_COLOR` is set (https://no-color.org); `FORCE_COLOR`
 * (non-empty, not `0`) turns it on anywhere.
 */
export function wantColour(isTty: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env["FORCE_COLOR"];
  if (force !== undefined && force !== "" && force !== "0") return true;
  if (env["NO_COLOR"] !== undefined && env["NO_COLOR"] !== "") return false;
  return isTty;
}

// eslint-disable-next-line no-control-regex
const ANSI_RE = /\x1b\[[0-9;]*m/g;

function width(s: string): number {
  return [...s.replace(ANSI_RE, "")].length;
}

function pad(s: string, w: number): string {
  return s + " ".repeat(Math.max(0, w - width(s)));
}

/** A text table whose cells may carry ANSI colours (measured without them), bold header. */
function table(header: string[], rows: string[][], st: Style): string[] {
  return textTable(header, rows, { width, header: st.bold });
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** Share of the tolerance budget: `12 %` up to 1000 %, else `×3.4e+11`; `-` when unknown. */
export function budgetText(b: number | null): string {
  if (b === null) return "-";
  if (b === Infinity) return "×inf";
  if (b > 10) return `×${b.toExponential(1)}`;
  const pct = 100 * b;
  if (pct === 0) return "0 %";
  return pct < 0.01 ? `${pct.toExponential(0)} %` : `${Number(pct.toPrecision(2))} %`;
}

function err(x: number | null): string {
  return x === null ? "-" : formatError(x).replace(/(\.\d)\d+e/, "$1e");
}

// ---------------------------------------------------------------------------------------------
// Summary

export interface Counts {
  pass: number;
  fail: number;
  declined: number;
  fault: number;
  skipped: number;
}

/** How many results (of one kind, or all) ended in each status. */
export function countsOf(results: readonly VerifyResult[], kind?: ResultKind): Counts {
  const c: Counts = { pass: 0, fail: 0, declined: 0, fault: 0, skipped: 0 };
  for (const r of results) if (kind === undefined || r.kind === kind) c[r.status]++;
  return c;
}

/**
 * The exit code of a report: 0 every check passed, 1 a check failed or too many were declined
 * (`DeclineSummary.failsRun`), 2 the implementation faulted (or nothing was checked).
 */
export function exitCodeOf(report: VerifyReport): number {
  const c = countsOf(report.results);
  if (report.faulted || c.fault > 0) return 2;
  if (c.pass + c.fail === 0) return 2;
  return c.fail > 0 || report.declines.failsRun ? 1 : 0;
}

/** "3 of 20 checks declined (15 %)", with what that does to the run. */
function declinedText(report: VerifyReport): string {
  const d = report.declines;
  const pct = `${Math.round(d.share * 1000) / 10} %`;
  return (
    `${d.count} of ${d.asked} check${d.asked === 1 ? "" : "s"} declined ` +
    `(${pct})${d.failsRun ? " — too many: the run fails" : ""}`
  );
}

export interface FormulaRow {
  formula: string;
  golden: Counts;
  maxAbs: number | null;
  maxRel: number | null;
  budget: number | null;
  gradient: ResultStatus | null;
  laws: { pass: number; fail: number };
}

function max(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/** Per formula (pipeline order): golden counts, errors of the failing cases, budget, gradient check, laws. */
export function formulaRows(report: VerifyReport): FormulaRow[] {
  const rows = new Map<string, FormulaRow>();
  const row = (f: string): FormulaRow => {
    let r = rows.get(f);
    if (r === undefined) {
      r = {
        formula: f,
        golden: { pass: 0, fail: 0, declined: 0, fault: 0, skipped: 0 },
        maxAbs: null,
        maxRel: null,
        budget: null,
        gradient: null,
        laws: { pass: 0, fail: 0 },
      };
      rows.set(f, r);
    }
    return r;
  };
  for (const r of report.results) {
    if (r.kind === "golden") {
      const x = row(r.formula);
      x.golden[r.status]++;
      if (r.status === "pass" || r.status === "fail") x.budget = max(x.budget, r.budget);
      // errors of failing cases only: a passing case's near-zero element has a large relative
      // error well inside its tolerance, which would only alarm next to a real failure
      if (r.status === "fail") {
        x.maxAbs = max(x.maxAbs, r.maxAbsErr);
        x.maxRel = max(x.maxRel, r.maxRelErr);
      }
    } else if (r.kind === "gradient") {
      const x = row(r.formula);
      x.gradient = r.status;
    } else if (r.law !== undefined && (r.status === "pass" || r.status === "fail")) {
      for (const f of r.law.formulas) {
        if (!rows.has(f) && !report.implementation.formulas.includes(f)) continue;
        const x = row(f);
        if (r.status === "pass") x.laws.pass++;
        else x.laws.fail++;
      }
    }
  }
  return formulaOrder(rows.keys()).map((f) => rows.get(f)!);
}

/**
 * The table's rows: formulas the implementation declares (or that ran a golden case), and the
 * rest, which reports collapse to one line.
 */
export function splitDeclared(report: VerifyReport): {
  declared: FormulaRow[];
  undeclared: FormulaRow[];
} {
  const all = formulaRows(report);
  const declared = all.filter(
    (r) =>
      report.implementation.formulas.includes(r.formula) ||
      r.golden.pass + r.golden.fail + r.golden.declined + r.golden.fault > 0,
  );
  return { declared, undeclared: all.filter((r) => !declared.includes(r)) };
}

/** What the formula table's columns mean (terminal and HTML reports). */
export const LEGEND: readonly string[] = [
  "golden: cases within tolerance / run. budget: the largest share of its " +
    "tolerance any element used, |a − e| / (atol + rtol·|e|); > 100 % fails.",
  'max abs / rel err: of the failing cases only ("ok": every element ' +
    "within tolerance). gradient: backward pass vs central differences of the forward",
  "pass, on the smallest supported float64 case, one random direction per " +
    "argument (fast mode). laws: laws passed / run on the formula.",
];

function statusWord(s: ResultStatus | null, st: Style): string {
  switch (s) {
    case null:
      return st.dim("-");
    case "pass":
      return st.green("pass");
    case "fail":
      return st.red("FAIL");
    case "fault":
      return st.red("FAULT");
    case "declined":
      return st.yellow("declined");
    case "skipped":
      return st.dim("skipped");
  }
}

function hintLines(hints: readonly Hint[], indent: string, st: Style): string[] {
  return hints.map(
    (h) => `${indent}${st.yellow(h.evidence === "match" ? "hint (match):" : "hint:")} ${h.message}`,
  );
}

/** One origin's error against its tolerance: `×4.1e+3 of its tolerance (max abs err …, rtol …, atol …)`. */
export function originErrorText(o: Origin): string {
  const r = o.report;
  if (r === null) return "";
  if (r.problem !== null) return r.problem;
  return (
    `error ${budgetText(r.budgetUsed)} of its tolerance (max abs err ` +
    `${err(r.maxAbsError)}; rtol ${formatError(r.tolerance.rtol)}, atol ` +
    `${formatError(r.tolerance.atol)})`
  );
}

/** Where an origin was found, in words: `grad.Q of attention at gpt › h.0 › mha › attention`. */
export function originWhereText(o: Origin): string {
  const what =
    o.kind === "backward"
      ? `its gradient of ${o.input ?? "an argument"}`
      : `its output (${o.tensor})`;
  return o.path.length > 1 ? `${what}, at ${o.path.join(" › ")}` : what;
}

/** The failures grouped by origin, the headline (most upstream) first. */
function originsText(origins: readonly Origin[], st: Style = style(false)): string[] {
  const lines = [
    st.bold(st.red(`origins of the failures (${origins.length}), most upstream first:`)),
  ];
  origins.forEach((o, i) => {
    const explains =
      `explains ${o.count} failing ` +
      `check${o.count === 1 ? "" : "s"}` +
      `${o.presumed > 0 ? ` (${o.presumed} by their formula, not localised themselves)` : ""}`;
    lines.push(
      `  ${i + 1}. ${st.bold(`${o.formula} (${o.kind})`)} — ` +
        `${originWhereText(o)}; first in ${o.firstCase}; ${explains}`,
    );
    const e = originErrorText(o);
    if (e !== "") lines.push(`     ${e}`);
    lines.push(`     ${o.explanation}`);
    lines.push(...hintLines(o.hints, "     ", st));
  });
  return lines;
}

/** The first divergence in a few lines. */
export function firstDivergenceText(d: FirstDivergence, st: Style = style(false)): string[] {
  const lines = [
    st.bold(st.red(`first divergence: ${d.formula}`)) +
      ` — ${d.kind === "golden" ? "golden case" : d.kind === "gradient" ? "gradient check on" : "law"} ` +
      `${d.case}, tensor ${d.tensor}`,
    `  ${d.explanation}`,
  ];
  if (d.path.length > 1) lines.push(`  where: ${d.path.join(" › ")} (${d.origin})`);
  else lines.push(`  origin: ${d.origin}`);
  const r = d.report;
  if (r !== null) {
    if (r.problem !== null) lines.push(`  ${r.problem}`);
    else {
      lines.push(
        `  ${r.mismatched} of ${r.size} elements outside tolerance; max abs err ` +
          `${err(r.maxAbsError)}, max rel err ${err(r.maxRelError)}, budget ` +
          `${budgetText(r.budgetUsed)} (rtol ${formatError(r.tolerance.rtol)}, ` +
          `atol ${formatError(r.tolerance.atol)})`,
      );
      if (r.worst !== null) {
        lines.push(
          `  worst element ${shapeToString(r.worst.index)}: expected ` +
            `${formatValue(r.worst.expected, r.expectedDtype, r.worst.actual)}, ` +
            `actual ${formatValue(r.worst.actual, r.actualDtype, r.worst.expected)}`,
        );
      }
    }
  } else if (d.maxAbsErr !== null)
    lines.push(`  max abs err ${err(d.maxAbsErr)}, budget ${budgetText(d.budget)}`);
  lines.push(...hintLines(d.hints, "  ", st));
  if (d.replay !== undefined) lines.push(`  replay: ${d.replay}`);
  return lines;
}

/** One failing tensor in a few words: `out.y 96/120 mismatched, max abs err 1.4e+00, budget ×5.0e+4`. */
function compactTensor(t: TensorReport): string {
  if (t.problem !== null) return `${t.name}: ${t.problem}`;
  return (
    `${t.name} ${t.mismatched}/${t.size} mismatched, max abs err ` +
    `${err(t.maxAbsError)}, budget ${budgetText(t.budgetUsed)}`
  );
}

/** Outputs before gradients (a wrong output explains wrong gradients, not the reverse). */
export function outputsFirst(ts: readonly TensorReport[]): TensorReport[] {
  return [...ts].sort(
    (a, b) => Number(b.name.startsWith("out.")) - Number(a.name.startsWith("out.")),
  );
}

export interface TextOptions {
  readonly colour?: boolean;
  /** Failing results listed individually (default 12). */
  readonly maxListed?: number;
}

/** The report for a terminal. */
export function formatVerifyReport(report: VerifyReport, opts: TextOptions = {}): string {
  const st = style(opts.colour === true);
  const impl = report.implementation;
  const out: string[] = [];
  out.push(st.bold(`specformer verify: ${impl.name}`));
  if (impl.command !== undefined) out.push(`  command: ${impl.command}`);
  const back =
    impl.backward === true
      ? "all"
      : impl.backward === false
        ? "none"
        : `${impl.backward.length} formulas`;
  out.push(
    `  declares ${impl.formulas.length} formulas, dtypes ${impl.dtypes.join(", ")}, backward: ${back}`,
  );
  out.push("");

  const origins = report.origins ?? [];
  if (origins.length > 0) out.push(...originsText(origins, st), "");

  const { declared, undeclared } = splitDeclared(report);
  const rows = declared.map((r) => {
    const g = r.golden;
    const ran = g.pass + g.fail;
    const golden =
      ran + g.fault === 0
        ? st.dim("-")
        : g.fail + g.fault > 0
          ? st.red(`${g.pass}/${ran + g.fault}`)
          : st.green(`${g.pass}/${ran}`);
    const other = [
      g.declined > 0 ? st.yellow(`${g.declined} declined`) : "",
      g.fault > 0 ? st.red(`${g.fault} fault`) : "",
      g.skipped > 0 ? st.dim(`${g.skipped} skipped`) : "",
    ]
      .filter(Boolean)
      .join(", ");
    const laws =
      r.laws.pass + r.laws.fail === 0
        ? st.dim("-")
        : r.laws.fail > 0
          ? st.red(`${r.laws.pass}/${r.laws.pass + r.laws.fail}`)
          : st.green(`${r.laws.pass}/${r.laws.pass}`);
    const bad =
      g.fail + g.fault > 0 || r.gradient === "fail" || r.gradient === "fault" || r.laws.fail > 0;
    const budget =
      r.budget === null
        ? st.dim("-")
        : r.budget > 1
          ? st.red(budgetText(r.budget))
          : budgetText(r.budget);
    // a passing row's errors are within their tolerances (its budget says how far): the raw
    // relative error of a near-zero element would only alarm
    const failing = g.fail > 0;
    return [
      bad ? st.red(r.formula) : r.formula,
      golden,
      other,
      failing ? err(r.maxAbs) : st.dim("ok"),
      failing ? err(r.maxRel) : st.dim("ok"),
      budget,
      statusWord(r.gradient, st),
      laws,
    ];
  });
  out.push(
    ...table(
      ["formula", "golden", "not run", "max abs err", "max rel err", "budget", "gradient", "laws"],
      rows,
      st,
    ),
  );
  if (undeclared.length > 0)
    out.push(st.dim(`not declared (not checked): ${undeclared.map((r) => r.formula).join(", ")}`));
  out.push(...LEGEND.map((l) => st.dim(l)));
  out.push("");

  if (report.firstDivergence !== null) {
    out.push(...firstDivergenceText(report.firstDivergence, st), "");
  }

  const maxListed = opts.maxListed ?? 12;
  const failing = report.results.filter((r) => r.status === "fail");
  if (failing.length > 0) {
    out.push(st.bold(`failures (${failing.length}):`));
    const goldenRows: string[][] = [];
    const others: string[] = [];
    for (const r of failing.slice(0, maxListed)) {
      if (r.kind === "golden") {
        const bad = outputsFirst((r.tensors ?? []).filter((x) => !x.ok));
        const first = bad[0];
        const more =
          bad.length > 1 ? `; +${bad.length - 1} more tensor${bad.length > 2 ? "s" : ""}` : "";
        const div = r.localisation?.divergence;
        const where =
          div !== null && div !== undefined && (div.formula !== r.formula || div.how !== "output")
            ? ` → ${div.tensor} (${div.formula}${div.kind === "backward" ? ", backward" : ""}, ${div.origin})`
            : "";
        goldenRows.push([
          `  ${st.red("FAIL")} ${r.case}`,
          `${first === undefined ? "" : compactTensor(first)}${more}${where}`,
        ]);
        continue;
      }
      const what =
        r.kind === "gradient"
          ? `gradient check of ${r.formula} (${r.case})`
          : `law ${r.case} (${r.formula}, ${r.dtype ?? ""})`;
      others.push(`  ${st.red("FAIL")} ${what}`);
      if (r.kind === "gradient") others.push(`       ${r.message ?? ""}`);
      if (r.kind === "property" && r.law !== undefined) {
        others.push(`       ${r.law.failure?.message ?? r.message ?? ""}`);
        if (r.replay !== undefined) others.push(`       replay: ${r.replay}`);
      }
      others.push(...hintLines(r.hints ?? [], "       ", st));
    }
    const w = Math.max(0, ...goldenRows.map((x) => width(x[0]!)));
    out.push(...goldenRows.map(([a, b]) => `${pad(a!, w)}  ${b}`), ...others);
    if (failing.length > maxListed)
      out.push(
        `  … and ${failing.length - maxListed} more (--json, --junit or --html list them all)`,
      );
    // where the localised failures point
    const at = new Map<string, number>();
    for (const r of failing) {
      const d = r.localisation?.divergence;
      if (d !== null && d !== undefined) at.set(d.formula, (at.get(d.formula) ?? 0) + 1);
    }
    if (at.size > 0 && (report.origins ?? []).length === 0)
      out.push(
        `  localised failures diverge first at: ${[...at]
          .sort((a, b) => b[1] - a[1])
          .map(([f, n]) => `${f} (${n} case${n > 1 ? "s" : ""})`)
          .join(", ")}`,
      );
    out.push("");
  }

  const faults = report.results.filter((r) => r.status === "fault");
  if (faults.length > 0) {
    out.push(st.bold(st.red(`faults: the implementation could not be driven (${faults.length}):`)));
    for (const r of faults.slice(0, maxListed)) {
      out.push(`  ${st.red("FAULT")} ${r.kind} ${r.case}: ${r.fault?.message ?? r.message ?? ""}`);
      if (r.fault?.line !== undefined && !r.fault.message.includes(r.fault.line.slice(0, 40)))
        out.push(`       line: ${r.fault.line}`);
      const tail = r.fault?.stderrTail;
      if (tail !== undefined && !r.fault!.message.includes(tail.trim().slice(-40))) {
        out.push("       stderr (last lines):");
        for (const l of tail.trimEnd().split("\n").slice(-6)) out.push(`         ${l}`);
      }
    }
    if (faults.length > maxListed) out.push(`  … and ${faults.length - maxListed} more`);
    out.push("");
  }

  const declined = report.results.filter((r) => r.status === "declined");
  if (declined.length > 0) {
    out.push(
      st.bold(
        st.yellow(
          `declined by the implementation (${declined.length}; error answers, not counted as failures):`,
        ),
      ),
    );
    const byMessage = new Map<string, string[]>();
    for (const r of declined) {
      const msg = (r.message ?? "")
        .replace(/ \(request \d+\)/, "")
        .replace(/^implementation `[^`]*` reported an error for /, "");
      const k = msg.replace(/^(forward|backward) \S+: /, "").slice(0, 160);
      const list = byMessage.get(k) ?? [];
      list.push(r.case);
      byMessage.set(k, list);
    }
    for (const [msg, list] of byMessage)
      out.push(
        `  ${list.length} × ${msg}  ${st.dim(`(${list.slice(0, 3).join(", ")}${list.length > 3 ? ", …" : ""})`)}`,
      );
    out.push("");
  }

  for (const n of report.notes) out.push(st.yellow(`note: ${n}`));
  if (report.notes.length > 0) out.push("");

  const parts: string[] = [];
  for (const kind of ["golden", "gradient", "property"] as const) {
    const c = countsOf(report.results, kind);
    const total = c.pass + c.fail + c.declined + c.fault + c.skipped;
    if (total === 0) continue;
    const name =
      kind === "golden" ? "golden cases" : kind === "gradient" ? "gradient checks" : "laws";
    const bits = [
      `${c.pass} pass`,
      c.fail > 0 ? st.red(`${c.fail} fail`) : "",
      c.fault > 0 ? st.red(`${c.fault} fault`) : "",
      c.declined > 0 ? st.yellow(`${c.declined} declined`) : "",
      c.skipped > 0 ? `${c.skipped} skipped` : "",
    ].filter(Boolean);
    parts.push(`${name}: ${bits.join(", ")}`);
  }
  const code = exitCodeOf(report);
  const verdict =
    code === 0
      ? st.green(st.bold("OK"))
      : code === 1
        ? st.red(st.bold("FAILED"))
        : st.red(st.bold("COULD NOT VERIFY"));
  if (report.declines.count > 0)
    parts.push(
      report.declines.failsRun ? st.red(declinedText(report)) : st.yellow(declinedText(report)),
    );
  out.push(
    `${parts.join("; ")} — ${verdict} in ` +
      `${(report.timeMs / 1000).toFixed(1)} ` +
      `s${report.restarts > 0 ? ` (${report.restarts} restart${report.restarts > 1 ? "s" : ""})` : ""}`,
  );
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// JSON

function num(x: number | null | undefined): number | string | null {
  if (x === null || x === undefined) return null;
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  return x;
}

function tensorJSON(t: TensorReport): Record<string, unknown> {
  return {
    name: t.name,
    status: t.status,
    ok: t.ok,
    max_abs_err: num(t.maxAbsError),
    max_rel_err: num(t.maxRelError),
    max_ulp: num(t.maxUlp),
    budget: num(t.budgetUsed),
    mismatched: t.mismatched,
    size: t.size,
    rtol: t.tolerance.rtol,
    atol: t.tolerance.atol,
    tolerance_reason: t.tolerance.reason,
    ...(t.problem !== null ? { problem: t.problem } : {}),
    ...(t.worst !== null
      ? {
          worst: {
            index: t.worst.index,
            expected: num(t.worst.expected),
            actual: num(t.worst.actual),
          },
        }
      : {}),
  };
}

function hintsJSON(hints: readonly Hint[]): Array<Record<string, string>> {
  return hints.map((h) => ({ id: h.id, evidence: h.evidence, message: h.message }));
}

/** One origin as the JSON report holds it (`origins`, most upstream first). */
function originJSON(o: Origin): Record<string, unknown> {
  return {
    formula: o.formula,
    kind: o.kind,
    first_case: o.firstCase,
    count: o.count,
    presumed: o.presumed,
    path: o.path,
    tensor: o.tensor,
    input: o.input ?? null,
    explanation: o.explanation,
    max_abs_err: num(o.report?.maxAbsError),
    budget: num(o.report?.budgetUsed),
    rtol: o.report?.tolerance.rtol ?? null,
    atol: o.report?.tolerance.atol ?? null,
    hints: hintsJSON(o.hints),
  };
}

/** One result as the JSON report holds it. */
function resultJSON(r: VerifyResult): Record<string, unknown> {
  const out: Record<string, unknown> = {
    kind: r.kind,
    formula: r.formula,
    case: r.case,
    dtype: r.dtype,
    status: r.status,
    ok: r.ok,
    max_abs_err: num(r.maxAbsErr),
    max_rel_err: num(r.maxRelErr),
    budget: num(r.budget),
    time_ms: Math.round(r.timeMs),
  };
  if (r.message !== undefined) out["message"] = r.message;
  if (r.outside === true) out["outside"] = true;
  if (r.law?.coverage !== undefined) out["law_coverage"] = r.law.coverage;
  if (r.tensors !== undefined) out["tensors"] = r.tensors.map(tensorJSON);
  if (r.fault !== undefined)
    out["fault"] = {
      message: r.fault.message,
      stderr_tail: r.fault.stderrTail ?? null,
      line: r.fault.line ?? null,
    };
  if (r.hints !== undefined) out["hints"] = hintsJSON(r.hints);
  if (r.localisation !== undefined) {
    const l = r.localisation;
    out["localisation"] = {
      requests: l.requests,
      divergence:
        l.divergence === null
          ? null
          : {
              formula: l.divergence.formula,
              tensor: l.divergence.tensor,
              path: l.divergence.path,
              origin: l.divergence.origin,
              how: l.divergence.how,
              kind: l.divergence.kind,
              ...(l.divergence.input !== undefined ? { input: l.divergence.input } : {}),
              explanation: l.divergence.explanation,
              max_abs_err: num(l.divergence.report?.maxAbsError),
              budget: num(l.divergence.report?.budgetUsed),
              rtol: l.divergence.report?.tolerance.rtol ?? null,
              atol: l.divergence.report?.tolerance.atol ?? null,
              hints: hintsJSON(l.divergence.hints),
            },
      steps: l.steps.map((s) => ({
        how: s.how,
        formula: s.formula,
        tensor: s.tensor,
        status: s.status,
        ...(s.origin !== undefined ? { origin: s.origin } : {}),
        ...(s.report !== undefined
          ? {
              max_abs_err: num(s.report.maxAbsError),
              budget: num(s.report.budgetUsed),
              rtol: s.report.tolerance.rtol,
              atol: s.report.tolerance.atol,
            }
          : {}),
        ...(s.message !== undefined ? { message: s.message } : {}),
      })),
      ...(l.fault !== undefined ? { fault: l.fault.message } : {}),
    };
  }
  if (r.law !== undefined) {
    out["law"] = {
      statement: r.law.statement,
      formulas: r.law.formulas,
      runs: r.law.runs,
      ...(r.law.failure !== undefined ? { failure: r.law.failure } : {}),
      ...(r.law.replay !== undefined ? { seed: r.law.replay.seed, path: r.law.replay.path } : {}),
      ...(r.replay !== undefined ? { replay: r.replay } : {}),
      ...(r.law.counterexample !== undefined ? { counterexample: r.law.counterexample } : {}),
      tolerance: r.law.tolerance,
    };
  }
  if (r.gradcheck !== undefined) {
    out["gradcheck"] = {
      mode: r.gradcheck.mode,
      seed: r.gradcheck.seed,
      checked: r.gradcheck.checked,
      failures: r.gradcheck.failures,
      ...(r.gradcheck.error !== undefined ? { error: r.gradcheck.error } : {}),
    };
  }
  return out;
}

/**
 * The report as JSON text: `{report, schema_version, ok, implementation, summary, results,
 * first_divergence, notes, ...}`, snake_case throughout (docs/schema/verify.schema.json).
 */
export function verifyReportToJSON(report: VerifyReport): string {
  const d = report.firstDivergence;
  const doc = {
    // first, so that an earlier report is recognised from the file's start (verify/report-files.ts)
    report: `${REPORT_MARKER}: specformer verify`,
    schema_version: SCHEMA_VERSION,
    ok: report.ok,
    exit_code: exitCodeOf(report),
    implementation: {
      name: report.implementation.name,
      command: report.implementation.command ?? null,
      formulas: report.implementation.formulas,
      dtypes: report.implementation.dtypes,
      backward: report.implementation.backward,
    },
    summary: {
      golden: countsOf(report.results, "golden"),
      gradient: countsOf(report.results, "gradient"),
      property: countsOf(report.results, "property"),
      declined: {
        count: report.declines.count,
        asked: report.declines.asked,
        share: report.declines.share,
        limit: DECLINE_LIMIT,
        fails_run: report.declines.failsRun,
      },
    },
    results: report.results.map(resultJSON),
    first_divergence:
      d === null
        ? null
        : {
            formula: d.formula,
            case: d.case,
            tensor: d.tensor,
            kind: d.kind,
            origin: d.origin,
            path: d.path,
            explanation: d.explanation,
            max_abs_err: num(d.maxAbsErr),
            budget: num(d.budget),
            hints: hintsJSON(d.hints),
            ...(d.report !== null ? { report: tensorJSON(d.report) } : {}),
            ...(d.replay !== undefined ? { replay: d.replay } : {}),
          },
    ...(report.origins !== undefined ? { origins: report.origins.map(originJSON) } : {}),
    ...(report.coverage !== undefined
      ? { coverage: { law_pairs: report.coverage.lawPairs, formulas: report.coverage.formulas } }
      : {}),
    ...(report.unchecked !== undefined && report.unchecked.length > 0
      ? { unchecked: report.unchecked }
      : {}),
    notes: report.notes,
    restarts: report.restarts,
    seed: report.seed,
    time_ms: Math.round(report.timeMs),
  };
  // toWire: the law failures and gradient checks carried over from properties/ and autodiff/ in snake_case too
  return JSON.stringify(toWire(doc), null, 2) + "\n";
}

// ---------------------------------------------------------------------------------------------
// Progress

/** A one-line progress display rewritten in place (for stderr on a terminal). */
export function progressLine(
  write: (s: string) => void,
  clock: () => number = Date.now,
): {
  update: (e: { phase: string; done: number; total: number; label: string }) => void;
  clear: () => void;
} {
  let shown = false;
  let last = -Infinity;
  return {
    update(e) {
      const now = clock();
      if (now - last < 80 && e.done !== e.total) return; // at most ~12 redraws a second
      last = now;
      const label = e.label.length > 60 ? `${e.label.slice(0, 57)}…` : e.label;
      write(`\r\x1b[K${e.phase} ${e.done}/${e.total} ${label}`);
      shown = true;
    },
    clear() {
      if (shown) write("\r\x1b[K");
      shown = false;
    },
  };
}
