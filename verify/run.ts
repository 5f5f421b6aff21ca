/**
 * The verify run: every golden case of the formulas an implementation declares (outputs and,
 * where it has a backward pass, gradients), finite-difference gradient checks (verify/gradients.ts)
 * and the invariant laws (verify/laws.ts). A failing case is localised — forward when its values
 * are wrong (verify/localise.ts), backward when only its gradients are (verify/localise-backward.ts)
 * — and the run's failures are grouped by origin, the most upstream leading (verify/divergence.ts).
 * Report types are in verify/results.ts, restarts in verify/driver.ts.
 *
 * Faults never stop the run: an implementation error becomes a result entry (`declined` for an
 * error answer, which the program survives; `fault` for a crash, hang, garbage or a malformed
 * tensor), a stopped program is restarted (at most `maxRestarts` times) and the run goes on with
 * what can still be checked.
 */
import { packageFile } from "../autodiff/assets.js";
import "../spec/index.js";
import { hasFormula } from "../spec/formula.js";
import { ImplementationError, supportsBackward } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { Implementation } from "../autodiff/implementation.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { listCases, loadCase } from "../golden/cases-io.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { compareCase } from "../golden/compare.js";
import type { TensorReport } from "../golden/compare.js";
import { GoldenFormatError } from "../golden/error.js";
import { coverageOf, uncheckedLines } from "./coverage.js";
import { diagnose } from "./diagnose.js";
import type { Hint } from "./diagnose.js";
import { formulaLevel, groupByOrigin, pickFirstDivergence } from "./divergence.js";
import { Driver, lateFault, StoppedForGood } from "./driver.js";
import { gradientChecks, only } from "./gradients.js";
import { lawChecks } from "./laws.js";
import { failingCase, localise } from "./localise.js";
import { localiseBackward } from "./localise-backward.js";
import type { Localisation } from "./localise.js";
import { DECLINE_LIMIT, declineSummary, erroredResult, formulaOrder, inShard } from "./results.js";
import { percent, skippedResult } from "./results.js";
import type { FailingValues, VerifyOptions, VerifyReport, VerifyResult } from "./results.js";

export * from "./results.js";
export { formulaLevel } from "./divergence.js";

/** The bundled golden cases (`golden/cases`). */
export const BUNDLED_CASES = packageFile("golden", "cases");

function ordinal(n: number): string {
  const t = n % 100;
  return `${n}${t >= 11 && t <= 13 ? "th" : (["th", "st", "nd", "rd"][n % 10] ?? "th")}`;
}

function metrics(reports: readonly TensorReport[]): {
  maxAbsErr: number;
  maxRelErr: number;
  budget: number;
} {
  let a = 0,
    r = 0,
    b = 0;
  for (const t of reports) {
    a = Math.max(a, t.maxAbsError);
    r = Math.max(r, t.maxRelError);
    b = Math.max(b, t.budgetUsed);
  }
  return { maxAbsErr: a, maxRelErr: r, budget: b };
}

/** Failing results whose tensors are kept for heatmaps (memory stays bounded on large failures). */
const KEPT_VALUES = 40;

/** Load the cases to run; a malformed file is bad input and stops the run before it starts. */
export function loadCases(paths: readonly string[]): GoldenCase[] {
  const files = listCases(paths);
  const problems: string[] = [];
  const cases: GoldenCase[] = [];
  for (const f of files) {
    try {
      cases.push(loadCase(f));
    } catch (e) {
      if (!(e instanceof GoldenFormatError)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length > 0)
    throw new GoldenFormatError(
      paths.join(", "),
      `${problems.length} unreadable golden case${problems.length > 1 ? "s" : ""}:\n  ${problems.join("\n  ")}`,
    );
  return cases;
}

/**
 * Verify an implementation (see the module comment). Never throws for an implementation fault;
 * throws `GoldenFormatError` for unreadable golden files and `LawUsageError` for an unknown law
 * or a malformed replay path.
 */
export async function verify(
  impl: Implementation,
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const t0 = performance.now();
  const seed = opts.seed ?? 1;
  const driver = new Driver(impl, opts);
  const results: VerifyResult[] = [];
  const notes: string[] = [];
  const progress = opts.onProgress ?? (() => undefined);
  const wanted = (f: string) => opts.formulas === undefined || opts.formulas.includes(f);
  const declares = (f: string) => driver.impl.formulas.includes(f);
  const computes = (d: FloatDType) => driver.impl.dtypes.includes(d);

  const replaying = opts.law !== undefined;
  const allCases = replaying
    ? []
    : loadCases(opts.cases ?? [BUNDLED_CASES]).filter(
        (c) => wanted(c.meta.formula) && (opts.dtype === undefined || c.meta.dtype === opts.dtype),
      );
  allCases.sort(
    (a, b) =>
      formulaLevel(a.meta.formula) - formulaLevel(b.meta.formula) ||
      (a.meta.case < b.meta.case ? -1 : 1),
  );
  const cases = inShard(allCases, opts.shard);
  const localised = new Map<string, number>();
  let kept = 0;

  try {
    // ------------------------------------------------------------------ golden cases
    let done = 0;
    for (const c of cases) {
      const m = c.meta;
      progress({ phase: "golden", done: done++, total: cases.length, label: m.case });
      const base = { kind: "golden" as const, formula: m.formula, case: m.case, dtype: m.dtype };
      const skip = (message: string): void => void results.push(skippedResult(base, message));
      if (!declares(m.formula)) {
        skip(`the implementation does not declare ${m.formula}`);
        continue;
      }
      if (!computes(m.dtype)) {
        skip(`the implementation computes ${driver.impl.dtypes.join(", ")} only`);
        continue;
      }
      const outside = outsideCapability(driver.impl, {
        formula: m.formula,
        config: m.config,
        dtype: m.dtype,
        dims: m.dims,
        inputs: c.inputs,
      });
      if (outside !== undefined) {
        results.push({
          ...skippedResult(base, `outside the declared capability: ${outside}`),
          outside: true,
        });
        continue;
      }
      if (driver.dead !== undefined) {
        skip(driver.dead);
        continue;
      }
      const t = performance.now();
      const config = { ...m.config, dtype: m.dtype };
      const wantGrads = Object.keys(c.grads).length > 0 && supportsBackward(driver.impl, m.formula);
      let actual: NamedTensors;
      let grads: NamedTensors | undefined;
      try {
        actual = (
          await driver.call((i) => i.forward({ formula: m.formula, config, inputs: c.inputs }))
        ).outputs;
        if (wantGrads)
          grads = (
            await driver.call((i) =>
              i.backwardPass!({
                formula: m.formula,
                config,
                inputs: c.inputs,
                cotangents: c.cotangents,
              }),
            )
          ).grads;
      } catch (e) {
        if (!(e instanceof ImplementationError)) throw e;
        if (e instanceof StoppedForGood) {
          skip(e.message);
          continue;
        }
        results.push(erroredResult(base, e, performance.now() - t));
        continue;
      }
      const report = compareCase(c, {
        outputs: only(actual, Object.keys(c.outputs)),
        ...(grads !== undefined ? { grads } : {}),
      });
      const mt = metrics(report.tensors);
      const failing = report.tensors.filter((r) => !r.ok);
      const result: VerifyResult = {
        ...base,
        status: report.ok ? "pass" : "fail",
        ok: report.ok,
        ...mt,
        tensors: report.tensors,
        ...(wantGrads
          ? {}
          : Object.keys(c.grads).length > 0
            ? {
                message:
                  "outputs only: the implementation declares no backward pass for this formula",
              }
            : {}),
        timeMs: performance.now() - t,
      };
      if (report.ok) {
        results.push(result);
        continue;
      }
      // explain the failure: localise it (values, else gradients), diagnose the case's own failing tensors
      const outputsFail = failing.some((r) => r.name.startsWith("out."));
      const key = `${m.formula}/${m.dtype}`;
      let localisation: Localisation | undefined;
      if (outputsFail && (localised.get(key) ?? 0) < (opts.localiseLimit ?? 2)) {
        localised.set(key, (localised.get(key) ?? 0) + 1);
        progress({ phase: "localise", done: done - 1, total: cases.length, label: m.case });
        localisation = await localise({
          ...failingCase(c, report),
          forward: (req) => driver.call((i) => i.forward(req)),
          declares: (f, d) => declares(f) && computes(d),
          actual,
          expected: c.outputs,
        });
        if (localisation.fault !== undefined)
          notes.push(
            `localising ${m.case} was cut short: ${localisation.fault.message.split("\n")[0]}`,
          );
      } else if (
        !outputsFail &&
        grads !== undefined &&
        (localised.get(`${key}/backward`) ?? 0) < (opts.localiseLimit ?? 2)
      ) {
        // right values, wrong gradients: walk the call tree backwards to the first wrong VJP
        localised.set(`${key}/backward`, (localised.get(`${key}/backward`) ?? 0) + 1);
        progress({ phase: "localise", done: done - 1, total: cases.length, label: m.case });
        localisation = await localiseBackward({
          ...failingCase(c, report),
          backward: (req) =>
            driver.call((i) => {
              if (i.backwardPass === undefined)
                throw new ImplementationError(`${i.name} has no backward pass`);
              return i.backwardPass(req);
            }),
          declaresBackward: (f, d) =>
            declares(f) && computes(d) && supportsBackward(driver.impl, f),
          cotangents: c.cotangents,
          actualGrads: grads,
          expectedGrads: c.grads,
        });
        if (localisation.fault !== undefined)
          notes.push(
            `localising the gradients of ${m.case} was cut short: ${localisation.fault.message.split("\n")[0]}`,
          );
      }
      const hints: Hint[] = [];
      if (!outputsFail) {
        for (const r of failing) {
          const name = r.name.slice(r.name.indexOf(".") + 1);
          const expected = c.grads[name];
          const got = grads?.[name];
          if (expected === undefined || got === undefined) continue;
          // gradients: the patterns of the error, and the gradient alternatives (given the cotangents)
          for (const h of await diagnose({
            formula: `grad(${m.formula})`,
            config: m.config,
            inputs: c.inputs,
            dtype: m.dtype,
            output: name,
            expected,
            actual: got,
            tolerance: r.tolerance,
            dims: m.dims,
            cotangents: c.cotangents,
          })) {
            hints.push({ ...h, message: `${r.name}: ${h.message}` });
          }
        }
      }
      const values: FailingValues[] = [];
      if (kept++ < KEPT_VALUES) {
        for (const r of failing) {
          if (r.status !== "values") continue;
          const dot = r.name.indexOf(".");
          const [exp, got] = r.name.startsWith("out.")
            ? [c.outputs, actual]
            : [c.grads, grads ?? {}];
          const e = exp[r.name.slice(dot + 1)];
          const a = got[r.name.slice(dot + 1)];
          if (e !== undefined && a !== undefined)
            values.push({
              name: r.name,
              expected: e,
              actual: a,
              rtol: r.tolerance.rtol,
              atol: r.tolerance.atol,
            });
        }
      }
      results.push({
        ...result,
        ...(localisation !== undefined ? { localisation } : {}),
        ...(hints.length > 0 ? { hints } : {}),
        ...(values.length > 0 ? { values } : {}),
      });
    }
    progress({ phase: "golden", done: cases.length, total: cases.length, label: "" });

    // ------------------------------------------------------------------ gradient checks
    if (opts.gradients !== false && !replaying)
      await gradientChecks(driver, allCases, opts, seed, results, wanted, progress);

    // ------------------------------------------------------------------ laws
    if (opts.properties === true || replaying)
      await lawChecks(driver, opts, seed, results, notes, wanted, progress);
  } finally {
    // a fault that no request met (an exit or a stray line after the last answer) still counts
    const late = lateFault(driver.impl);
    if (late !== undefined) driver.lateFault = late;
    // the caller closes the implementation it passed in; restarted copies are the run's to close
    if (driver.impl !== impl) await driver.impl.close?.().catch(() => undefined);
  }
  if (driver.lateFault !== undefined)
    notes.push(
      `the implementation faulted while no request was waiting: ${driver.lateFault.message.split("\n")[0]}`,
    );
  notes.push(...driver.notes);
  if (opts.shard !== undefined)
    notes.push(
      `shard ${opts.shard.index}/${opts.shard.count}: this run holds every ` +
        `${opts.shard.count === 1 ? "" : `${ordinal(opts.shard.count)} `}golden ` +
        `case, gradient check and law, from the ${ordinal(opts.shard.index)}`,
    );
  // the first divergence is the headline origin's (the most upstream), chosen among its checks
  const grouped = groupByOrigin(results);
  const firstDivergence = grouped.length > 0 ? pickFirstDivergence(grouped[0]!.results) : null;
  const checked = results.filter((r) => r.status === "pass" || r.status === "fail").length;
  // a restart follows a fault, even when every check after it passed
  const faulted =
    results.some((r) => r.status === "fault") ||
    driver.dead !== undefined ||
    driver.restarts > 0 ||
    driver.lateFault !== undefined;
  if (checked === 0)
    notes.push(
      "nothing was checked: no golden case, gradient check or law applies to " +
        "the formulas and dtypes the implementation declares",
    );
  const declines = declineSummary(results, opts.strict === true);
  if (declines.failsRun) {
    notes.push(
      opts.strict === true
        ? `--strict: the implementation declined ${declines.count} of the ` +
            `${declines.asked} checks sent to it; any decline fails the run`
        : `the implementation declined ${declines.count} of the ${declines.asked} ` +
            `checks sent to it (${percent(declines.share)}); more than ` +
            `${percent(DECLINE_LIMIT)} fails the run`,
    );
  }
  const coverage = coverageOf(
    results,
    formulaOrder(driver.impl.formulas.filter((f) => wanted(f) && knownFormula(f))),
  );
  const unchecked = uncheckedLines(coverage);
  if (unchecked.length > 0)
    notes.push(
      `${opts.strict === true ? "strict: " : ""}${unchecked.length} declared ` +
        `formula${unchecked.length > 1 ? "s were" : " was"} left with no check ` +
        `of some kind: ${unchecked.join("; ")}`,
    );
  const ok =
    checked > 0 &&
    results.every((r) => r.ok) &&
    !faulted &&
    !declines.failsRun &&
    !(opts.strict === true && unchecked.length > 0);
  const cur = driver.impl;
  return {
    ok,
    implementation: {
      name: cur.name,
      ...(opts.command !== undefined ? { command: opts.command } : {}),
      formulas: cur.formulas,
      dtypes: cur.dtypes,
      backward: cur.backward,
    },
    results,
    firstDivergence,
    origins: grouped.map((g) => g.origin),
    notes,
    faulted,
    declines,
    restarts: driver.restarts,
    seed,
    timeMs: performance.now() - t0,
    coverage,
    unchecked: opts.strict === true ? unchecked : [],
  };
}

/** Whether a formula is known to the registry (for `--formulas` validation). */
export function knownFormula(name: string): boolean {
  return hasFormula(name) || name === "gpt_generate";
}
