/**
 * The law runner: every law (or one) against an Implementation, with fast-check's seed and
 * path reported for each failure and the exact command that replays it.
 *
 * A run has two phases per law: `runs` generated cases without shrinking (stopping at the first
 * failure), then shrinking from that failure's path within a time budget. The reported path
 * replays the shrunk counterexample exactly: `fc.check(..., { seed, path, endOnFailure })`
 * regenerates the same case from the same seed, and the laws' checks are deterministic.
 */
import { textTable } from "../io/text.js";
import fc from "fast-check";
import "../spec/index.js";
import { formulaNames, hasFormula } from "../spec/formula.js";
import type { Implementation } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import { supportsBackward } from "../autodiff/implementation.js";
import { Tensor, shapeToString, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import { LawUsageError, fmt, runCheck, type Law, type LawCase, type LawFailure } from "./law.js";
import { getLaw, LAWS } from "./registry.js";
import { isBatched } from "./laws/generic.js";
import { wireJSON } from "../autodiff/wire.js";

/**
 * Options of a law run (exported as `LawRunOptions`): which laws and formulas, how many cases, the
 * seed, the dtype, shrinking.
 */
export interface RunOptions {
  /** Only cases of these formulas. */
  readonly formulas?: readonly string[];
  /** Only cases of this formula (the same as `formulas: [formula]`). */
  readonly formula?: string;
  /** Only this law. */
  readonly law?: string;
  /** Generated cases per law (default 100). */
  readonly runs?: number;
  /** fast-check seed (default: time-based, reported). */
  readonly seed?: number;
  /** Replay this fast-check path (needs `seed` and `law`). */
  readonly path?: string;
  /** Precision of the generated cases (default f64); every law is skipped if the implementation does not compute it. */
  readonly dtype?: FloatDType;
  /** Time budget for shrinking one failure, in ms (default 10 000; 0 reports the first failing case unshrunk). */
  readonly shrinkTimeMs?: number;
  /** How the replay command names the implementation (e.g. `--planted mask_missing`). */
  readonly implementationArgs?: string;
  /**
   * Recognises an error answer (the implementation declined a configuration it does not
   * support). When given, a declined case is a filter, not a failure: it is counted and
   * generation goes on with other cases, within {@link RunOptions.skipBudget}.
   */
  readonly declined?: (e: unknown) => boolean;
  /** Rejected cases (declined or outside the declared capability) allowed per run (default 20). */
  readonly skipBudget?: number;
}

/** Cases of one formula a law generated: run, declined by the implementation, outside its declared capability. */
export interface FormulaCoverage {
  ran: number;
  declined: number;
  outside: number;
  /** The first decline's or capability's reason. */
  reason?: string;
}

export interface ReplayInfo {
  readonly seed: number;
  readonly path: string;
  readonly numShrinks: number;
  /** Shrinking stopped at the time budget (the counterexample is the smallest found by then). */
  readonly shrinkInterrupted: boolean;
  /** `npx specformer properties --law L --seed S --path P …` */
  readonly command: string;
}

/**
 * The outcome of one law: passed, failed (with the shrunk counterexample and the command that
 * replays it) or skipped (with why).
 */
export interface LawResult {
  readonly law: string;
  /** The law in words. */
  readonly statement: string;
  readonly status: "passed" | "failed" | "skipped";
  /** Formulas the cases were drawn from. */
  readonly formulas: readonly string[];
  /** Cases run (passed ones, or up to and including the first failure). */
  readonly runs: number;
  /** Wall-clock time of the law, in milliseconds. */
  readonly timeMs: number;
  /** Why the law did not run. */
  readonly skipped?: string;
  /** Formulas left out and why (missing companion formula, no backward pass). */
  readonly excluded?: readonly string[];
  readonly failure?: LawFailure;
  readonly replay?: ReplayInfo;
  /** Arguments of the shrunk counterexample: shapes, and values of small tensors. */
  readonly counterexample?: CaseSummary;
  /** The law's tolerance: how its bound is derived, and what the bound multiplies. */
  readonly tolerance: { readonly derivation: string; readonly scale: string };
  /** Per formula, the generated cases that ran, were declined, or lay outside the declared capability. */
  readonly coverage?: Readonly<Record<string, FormulaCoverage>>;
}

export interface CaseSummary {
  readonly formula: string;
  readonly config: Readonly<Record<string, number | string | boolean>>;
  readonly dtype: FloatDType;
  readonly shapes: Readonly<Record<string, readonly number[]>>;
  /** Values of arguments with at most 64 elements. */
  readonly values: Readonly<Record<string, readonly number[]>>;
  /** Total elements of the arguments (the counterexample's size). */
  readonly elements: number;
  /** The law's own choices beyond the arguments (a position, a permutation, the commands run). */
  readonly choices: Readonly<Record<string, string>>;
}

/** The report of a law run: the implementation, dtype, seed and cases per law, a result per law and the counts. */
export interface LawReport {
  /** The implementation's name. */
  readonly implementation: string;
  readonly dtype: FloatDType;
  /** The fast-check seed every law used (given, or chosen from the time). */
  readonly seed: number;
  /** Generated cases per law. */
  readonly runs: number;
  readonly ok: boolean;
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  /** Wall-clock time of the run, in milliseconds. */
  readonly timeMs: number;
  readonly results: readonly LawResult[];
}

/** Where a law's cases may come from for this implementation, and what was left out. */
function lawScope(
  law: Law,
  impl: Implementation,
  opts: Pick<RunOptions, "formula" | "formulas" | "dtype">,
): { formulas: string[]; excluded: string[]; reason?: string } {
  const declared = new Set(impl.formulas);
  let candidates: string[];
  if (law.formulas === "all") candidates = formulaNames();
  else if (law.formulas === "batched") candidates = formulaNames().filter(isBatched);
  else candidates = [...law.formulas];
  const only = chosenFormulas(opts);
  if (only !== undefined) {
    const applicable = candidates.filter((f) => only.includes(f));
    if (applicable.length === 0)
      return {
        formulas: [],
        excluded: [],
        reason: `the law does not apply to ${describeList(only)} (it applies to ${describeList(candidates)})`,
      };
    candidates = applicable;
  }
  const excluded: string[] = [];
  const formulas: string[] = [];
  for (const f of candidates) {
    if (!declared.has(f)) continue;
    const dtypes = impl.capabilities?.[f]?.dtypes;
    if (opts.dtype !== undefined && dtypes !== undefined && !dtypes.includes(opts.dtype)) {
      excluded.push(`${f}: declared for ${dtypes.join(", ")} only`);
      continue;
    }
    const missing = (law.requires?.(f) ?? []).filter((r) => !declared.has(r));
    if (missing.length > 0) {
      excluded.push(`${f}: needs ${missing.join(", ")}`);
      continue;
    }
    const needs = typeof law.backward === "function" ? law.backward(f) : law.backward;
    if (needs === "required" && !supportsBackward(impl, f)) {
      excluded.push(`${f}: needs its backward pass`);
      continue;
    }
    formulas.push(f);
  }
  if (formulas.length === 0) {
    const declaredNone = candidates.every((f) => !declared.has(f));
    const reason = declaredNone
      ? `the implementation declares none of ${describeList(candidates)}`
      : `no applicable formula (${excluded.join("; ")})`;
    return { formulas, excluded, reason };
  }
  return { formulas, excluded };
}

/** `formulas` and `formula` together, or undefined when neither restricts the run. */
function chosenFormulas(
  opts: Pick<RunOptions, "formula" | "formulas">,
): readonly string[] | undefined {
  if (opts.formula === undefined) return opts.formulas;
  return [...(opts.formulas ?? []), opts.formula];
}

function describeList(xs: readonly string[]): string {
  return xs.length > 8 ? `${xs.slice(0, 8).join(", ")} … (${xs.length} formulas)` : xs.join(", ");
}

/** Summary of a case for reports. */
function summarizeCase(c: LawCase): CaseSummary {
  const shapes: Record<string, number[]> = {};
  const values: Record<string, number[]> = {};
  let elements = 0;
  for (const [k, t] of Object.entries(c.inputs)) {
    shapes[k] = [...t.shape];
    elements += t.size;
    if (t.size <= 64) values[k] = Array.from(t.data);
  }
  const choices: Record<string, string> = {};
  for (const [k, v] of Object.entries(c as unknown as Record<string, unknown>)) {
    if (["formula", "config", "dtype", "dims", "inputs"].includes(k)) continue;
    const text = describeValue(v);
    choices[k] = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  }
  return {
    formula: c.formula,
    config: c.config,
    dtype: c.dtype,
    shapes,
    values,
    elements,
    choices,
  };
}

function replayCommand(law: string, seed: number, path: string, opts: RunOptions): string {
  const parts = ["npx specformer properties", `--law ${law}`, `--seed ${seed}`, `--path ${path}`];
  const only = chosenFormulas(opts);
  if (only !== undefined) parts.push(`--formulas ${only.join(",")}`);
  if ((opts.dtype ?? "f64") !== "f64") parts.push(`--dtype ${opts.dtype}`);
  if (opts.implementationArgs !== undefined && opts.implementationArgs !== "")
    parts.push(opts.implementationArgs);
  return parts.join(" ");
}

/** Run one law (see {@link runLaws}). */
export async function runLaw(
  impl: Implementation,
  law: Law,
  opts: RunOptions & { seed: number },
): Promise<LawResult> {
  const t0 = performance.now();
  const dtype = opts.dtype ?? "f64";
  const base = {
    law: law.name,
    statement: law.statement,
    tolerance: { derivation: law.tolerance.derivation, scale: law.tolerance.scale },
  };
  /** The law skipped before any case was generated: why, and the formulas left out. */
  const notRun = (skipped: string, excluded?: readonly string[]): LawResult => ({
    ...base,
    status: "skipped",
    formulas: [],
    runs: 0,
    timeMs: 0,
    skipped,
    ...(excluded !== undefined ? { excluded } : {}),
  });
  if (!impl.dtypes.includes(dtype))
    return notRun(
      `the implementation does not compute ${dtype} (it declares ${impl.dtypes.join(", ")})`,
    );
  const scope = lawScope(law, impl, { ...opts, dtype });
  if (scope.formulas.length === 0)
    return notRun(scope.reason ?? "no applicable formula", scope.excluded);
  // a path may carry fc.commands' replay hint after "@" (model-based laws shrink by the commands that ran)
  const [fcPath, commandsReplay] =
    opts.path === undefined ? [undefined, undefined] : splitPath(opts.path);
  const arb = law.arbitrary({
    formulas: scope.formulas,
    dtype,
    declared: impl.formulas,
    backward: impl.formulas.filter((f) => supportsBackward(impl, f)),
    ...(commandsReplay !== undefined ? { replayPath: commandsReplay } : {}),
    ...(impl.capabilities !== undefined ? { capabilities: impl.capabilities } : {}),
  });
  // cases outside the declared capability, or declined, are preconditions that did not hold
  // (fc.pre): fast-check draws another case, up to skipBudget rejections per run
  const coverage: Record<string, FormulaCoverage> = {};
  const cover = (f: string): FormulaCoverage =>
    (coverage[f] ??= { ran: 0, declined: 0, outside: 0 });
  let counting = true;
  const filtering = impl.capabilities !== undefined || opts.declined !== undefined;
  const property = fc.asyncProperty(arb, async (c) => {
    const outside = outsideCapability(impl, {
      formula: c.formula,
      config: c.config,
      dtype: c.dtype,
      dims: numericDims(c.dims),
    });
    if (outside !== undefined) {
      if (counting) (cover(c.formula).outside++, (cover(c.formula).reason ??= outside));
      fc.pre(false);
    }
    let declined: unknown;
    const target =
      opts.declined === undefined
        ? impl
        : watchDeclines(impl, opts.declined, (e) => (declined ??= e));
    const verdict = await runCheck(law, target, c);
    if (!verdict.ok && declined !== undefined) {
      if (counting)
        (cover(c.formula).declined++, (cover(c.formula).reason ??= (declined as Error).message));
      fc.pre(false);
    }
    if (counting) cover(c.formula).ran++;
    return verdict.ok;
  });
  const runs = opts.runs ?? 100;
  const budget = filtering ? { maxSkipsPerRun: opts.skipBudget ?? 20 } : {};
  let details: fc.RunDetails<[LawCase]>;
  let shrinkInterrupted = false;
  if (fcPath !== undefined) {
    details = await fc.check(property, {
      seed: opts.seed,
      path: fcPath,
      numRuns: runs,
      endOnFailure: true,
      ...budget,
    });
  } else {
    details = await fc.check(property, {
      seed: opts.seed,
      numRuns: runs,
      endOnFailure: true,
      ...budget,
    });
    counting = false;
    if (
      details.failed &&
      details.counterexamplePath !== null &&
      (opts.shrinkTimeMs ?? 10_000) > 0
    ) {
      const firstRuns = details.numRuns;
      const shrunk = await fc.check(property, {
        seed: opts.seed,
        path: details.counterexamplePath,
        plugins: [fc.interruptAfterTimeLimit(opts.shrinkTimeMs ?? 10_000)],
      });
      if (shrunk.failed && shrunk.counterexamplePath !== null) {
        shrinkInterrupted = shrunk.interrupted;
        details = { ...shrunk, numRuns: firstRuns } as fc.RunDetails<[LawCase]>;
      }
    }
  }
  counting = false;
  const timeMs = performance.now() - t0;
  const extra = {
    ...(scope.excluded.length > 0 ? { excluded: scope.excluded } : {}),
    ...(filtering ? { coverage } : {}),
  };
  /** The law's result once cases were generated: its status, the cases counted, and the rest. */
  const result = (
    status: LawResult["status"],
    runs: number,
    rest: Partial<LawResult> = {},
  ): LawResult => ({
    ...base,
    ...extra,
    status,
    formulas: scope.formulas,
    runs,
    timeMs,
    ...rest,
  });
  if (!details.failed) return result("passed", details.numRuns);
  const ran = Object.values(coverage).reduce((s, x) => s + x.ran, 0);
  if (filtering && details.counterexample === null && !details.interrupted) {
    // the rejection budget ran out: what ran passed; when nothing ran, the law was not checked
    const rejected = Object.entries(coverage).filter(([, x]) => x.declined + x.outside > 0);
    const why = rejected
      .map(
        ([f, x]) =>
          `${f}: ${x.declined} declined, ${x.outside} outside the declared ` +
          `capability${x.reason !== undefined ? ` (${x.reason.split("\n")[0]})` : ""}`,
      )
      .join("; ");
    if (ran > 0) return result("passed", ran);
    return result("skipped", 0, {
      skipped: `no generated case could be run: ${why || "every case was rejected"}`,
    });
  }
  if (details.counterexample === null || details.counterexamplePath === null) {
    const why = details.interrupted
      ? "the run was interrupted before a case ran"
      : `too many cases were rejected by preconditions (${details.numSkips})`;
    return result("failed", details.numRuns, {
      failure: { law: law.name, formula: "", config: {}, dtype, shapes: {}, message: why },
    });
  }
  const c = details.counterexample[0];
  const hint = commandsReplayOf(c);
  const path =
    hint === undefined ? details.counterexamplePath : `${details.counterexamplePath}@${hint}`;
  const verdict = await runCheck(law, impl, c);
  const failure: LawFailure = verdict.ok
    ? {
        law: law.name,
        formula: c.formula,
        config: c.config,
        dtype,
        shapes: shapesOf(c.inputs),
        message:
          "the counterexample passed when checked again: the implementation is " +
          "not deterministic (see the determinism law)",
      }
    : verdict.failure;
  return result("failed", details.numRuns, {
    failure,
    counterexample: summarizeCase(c),
    replay: {
      seed: details.seed,
      path,
      numShrinks: details.numShrinks,
      shrinkInterrupted,
      command: replayCommand(law.name, details.seed, path, opts),
    },
  });
}

/** The numeric dims of a law case (batch axes left out). */
function numericDims(d: LawCase["dims"]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(d)) if (typeof v === "number") out[k] = v;
  return out;
}

/** The implementation with every error it raises shown to `seen` first when `declined` recognises it. */
function watchDeclines(
  impl: Implementation,
  declined: (e: unknown) => boolean,
  seen: (e: unknown) => void,
): Implementation {
  const watch = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      if (declined(e)) seen(e);
      throw e;
    }
  };
  const out: Implementation = {
    name: impl.name,
    formulas: impl.formulas,
    backward: impl.backward,
    dtypes: impl.dtypes,
    ...(impl.capabilities !== undefined ? { capabilities: impl.capabilities } : {}),
    forward: (req) => watch(impl.forward(req)),
  };
  if (impl.backwardPass !== undefined) {
    const bw = impl.backwardPass.bind(impl);
    (out as { backwardPass?: Implementation["backwardPass"] }).backwardPass = (req) =>
      watch(bw(req));
  }
  return out;
}

/**
 * A law's extra case value as text: small tensors by value, records of tensors by shape, commands
 * by their own text.
 */
function describeValue(v: unknown): string {
  if (v instanceof Tensor)
    return v.size <= 16
      ? JSON.stringify(Array.from(v.data))
      : `${v.dtype}${shapeToString(v.shape)}`;
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? String(v);
  if (Array.isArray(v)) return JSON.stringify(v);
  const own = (v as { toString?: unknown }).toString;
  if (typeof own === "function" && own !== Object.prototype.toString) return String(v);
  return `{${Object.entries(v as Record<string, unknown>)
    .map(
      ([k, x]) =>
        `${k}: ${x instanceof Tensor ? `${x.dtype}${shapeToString(x.shape)}` : describeValue(x)}`,
    )
    .join(", ")}}`;
}

/** "12:0:3" → ["12:0:3"], "12:0:3@CJ:C" → ["12:0:3", "CJ:C"]. */
function splitPath(path: string): [string, string | undefined] {
  const at = path.indexOf("@");
  return at < 0 ? [path, undefined] : [path.slice(0, at), path.slice(at + 1)];
}

/** fc.commands prints its replay hint as a comment: `append([0]) /*replayPath="CJ:C"*\/`. */
function commandsReplayOf(c: LawCase): string | undefined {
  for (const v of Object.values(c as unknown as Record<string, unknown>)) {
    if (v === null || typeof v !== "object" || v instanceof Tensor) continue;
    const m = /\/\*replayPath="([^"]*)"\*\//.exec(describeValue(v));
    if (m !== null) return m[1];
  }
  return undefined;
}

function shapesOf(ts: NamedTensors): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(ts)) out[k] = [...v.shape];
  return out;
}

/**
 * Run the laws (all, or `opts.law`) against an implementation. Laws whose formulas the
 * implementation does not declare (or whose companion formulas or backward pass it lacks) are
 * reported as skipped, not passed.
 */
export async function runLaws(impl: Implementation, opts: RunOptions = {}): Promise<LawReport> {
  for (const f of chosenFormulas(opts) ?? [])
    if (!hasFormula(f))
      throw new LawUsageError(
        `unknown formula "${f}"; known formulas: ${formulaNames().join(", ")}`,
      );
  if (opts.runs !== undefined && (!Number.isInteger(opts.runs) || opts.runs < 1))
    throw new LawUsageError(`runs must be a positive integer, got ${opts.runs}`);
  if (opts.path !== undefined) {
    if (opts.law === undefined)
      throw new LawUsageError("--path replays one law's counterexample: give --law too");
    if (opts.seed === undefined)
      throw new LawUsageError("--path replays a counterexample from its seed: give --seed too");
    if (!/^\d+(:\d+)*(@[A-Za-z0-9+/=:]*)?$/.test(opts.path))
      throw new LawUsageError(
        `--path must look like 12:0:3 (fast-check's counterexample path, with ` +
          `@hint for model-based laws), got "${opts.path}"`,
      );
  }
  const laws = opts.law !== undefined ? [getLaw(opts.law)] : LAWS;
  const seed = opts.seed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 1;
  const t0 = performance.now();
  const results: LawResult[] = [];
  for (const law of laws) results.push(await runLaw(impl, law, { ...opts, seed }));
  const count = (s: LawResult["status"]) => results.filter((r) => r.status === s).length;
  return {
    implementation: impl.name,
    dtype: opts.dtype ?? "f64",
    seed,
    runs: opts.runs ?? 100,
    ok: count("failed") === 0,
    passed: count("passed"),
    failed: count("failed"),
    skipped: count("skipped"),
    timeMs: performance.now() - t0,
    results,
  };
}

// ---------------------------------------------------------------------------------------------
// Reports

function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Failure details as indented lines. */
export function formatFailure(r: LawResult): string[] {
  const f = r.failure;
  if (f === undefined) return [];
  const lines = [`FAILED ${r.law}: ${r.statement}`, `  ${f.message}`];
  if (f.formula !== "")
    lines.push(`  formula: ${f.formula}  dtype: ${f.dtype}  config: ${configText(f.config)}`);
  const shapes = Object.entries(f.shapes).map(([k, s]) => `${k}${shapeToString(s)}`);
  if (shapes.length > 0)
    lines.push(
      `  shapes: ` +
        (shapes.length > 12
          ? `${shapes.slice(0, 12).join(" ")} … (${shapes.length} arguments)`
          : shapes.join(" ")),
    );
  if (f.quantity !== undefined) {
    const where = f.index !== undefined ? ` at ${JSON.stringify(f.index)}` : "";
    lines.push(
      `  ${f.quantity}${where}: expected ` +
        `${f.expected !== undefined ? fmt(f.expected) : "?"}, actual ` +
        `${f.actual !== undefined ? fmt(f.actual) : "?"}`,
    );
    if (f.absError !== undefined)
      lines.push(
        `  abs error ${fmt(f.absError)}, rel error ` +
          `${f.relError !== undefined ? fmt(f.relError) : "?"}, allowed ` +
          `${f.allowed !== undefined ? fmt(f.allowed) : "?"}`,
      );
  }
  if (f.toleranceReason !== undefined) lines.push(`  bound: ${f.toleranceReason}`);
  if (f.values !== undefined)
    for (const [k, v] of Object.entries(f.values)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
  if (r.counterexample !== undefined) {
    const small = Object.entries(r.counterexample.values).filter(([, v]) => v.length <= 16);
    for (const [k, v] of small.slice(0, 8))
      lines.push(`  ${k} = ${JSON.stringify(v.map((x) => Number(fmt(x)) || x))}`);
    for (const [k, v] of Object.entries(r.counterexample.choices)) lines.push(`  ${k}: ${v}`);
    lines.push(`  counterexample size: ${r.counterexample.elements} elements`);
  }
  if (r.replay !== undefined) {
    lines.push(
      `  seed ${r.replay.seed}, path ${r.replay.path}, ${r.replay.numShrinks} ` +
        `shrinks${r.replay.shrinkInterrupted ? " (shrinking stopped at its time budget)" : ""}`,
    );
    lines.push(`  replay: ${r.replay.command}`);
  }
  return lines;
}

function configText(c: Readonly<Record<string, number | string | boolean>>): string {
  const parts = Object.entries(c).map(([k, v]) => `${k}=${String(v)}`);
  return parts.length === 0 ? "(none)" : parts.join(" ");
}

/** The report as a table (one row per law) followed by the failures in detail. */
export function formatLawReport(report: LawReport): string {
  const rows = report.results.map((r) => [
    r.law,
    r.status === "skipped" ? "-" : describeList(r.formulas).slice(0, 48),
    String(r.runs),
    r.status === "passed" ? "passed" : r.status === "failed" ? "FAILED" : "skipped",
    r.status === "skipped" ? (r.skipped ?? "") : seconds(r.timeMs),
  ]);
  const lines = [
    `laws against ${report.implementation} (${report.dtype}, seed ${report.seed}, ${report.runs} runs per law)`,
    "",
    ...textTable(["law", "formulas", "runs", "result", "time / reason"], rows),
    "",
    `${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped in ${seconds(report.timeMs)}`,
  ];
  for (const r of report.results) if (r.status === "failed") lines.push("", ...formatFailure(r));
  return lines.join("\n") + "\n";
}

/**
 * The report as JSON: `schema_version` first, keys in snake_case (`time_ms`, `num_shrinks`),
 * non-finite numbers as strings so the document stays valid JSON (docs/schema/properties.schema.json).
 */
export function lawReportToJSON(report: LawReport): string {
  return wireJSON(report) + "\n";
}

/** The laws as a table: name, the formulas they apply to, statement. */
export function formatLawList(): string {
  const rows = LAWS.map((l) => [
    l.name,
    typeof l.formulas === "string" ? l.formulas : describeList(l.formulas),
    l.statement,
  ]);
  return textTable(["law", "formulas", "statement"], rows).join("\n") + "\n";
}
