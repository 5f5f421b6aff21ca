/**
 * The invariant laws of a verify run: every law in each dtype the implementation computes, a
 * law that got no case on some formula run again on that formula alone, each result with the
 * command that replays its shrunk counterexample.
 */
import { hasFormula } from "../spec/formula.js";
import type { FloatDType } from "../autodiff/tensor.js";
import { getLaw, lawNames } from "../properties/registry.js";
import { runLaws } from "../properties/run.js";
import type { LawReport, LawResult } from "../properties/run.js";
import type { Driver } from "./driver.js";
import { isDeclined } from "./localise.js";
import { inShard } from "./results.js";
import type { ProgressEvent, VerifyOptions, VerifyResult } from "./results.js";

export async function lawChecks(
  driver: Driver,
  opts: VerifyOptions,
  seed: number,
  results: VerifyResult[],
  notes: string[],
  wanted: (f: string) => boolean,
  progress: (e: ProgressEvent) => void,
): Promise<void> {
  const dtypes: FloatDType[] =
    opts.dtype !== undefined
      ? [opts.dtype]
      : driver.impl.dtypes.includes("f64")
        ? ["f64"]
        : driver.impl.dtypes.includes("f32")
          ? ["f32"]
          : [];
  const formulas =
    opts.formulas === undefined
      ? [undefined]
      : opts.formulas.filter((f) => hasFormula(f) && wanted(f));
  // sharded: each law by itself (same seed, so the same cases as in one run of all laws)
  const laws: (string | undefined)[] =
    opts.shard === undefined || opts.law !== undefined
      ? [opts.law]
      : inShard(lawNames(), opts.shard);
  const impl = driver.asImplementation();
  const lawOpts = (dtype: FloatDType) => ({
    runs: opts.lawRuns ?? 50,
    seed,
    dtype,
    declined: isDeclined,
    shrinkTimeMs: 5000,
    ...(opts.law !== undefined ? { law: opts.law } : {}),
    ...(opts.lawPath !== undefined ? { path: opts.lawPath } : {}),
  });
  // a law's counterexample is replayed by the same generator: the same law, seed, path, dtype
  // and formula scope, against the same implementation
  const replayOf = (
    r: LawResult,
    dtype: FloatDType,
    formula: string | undefined,
  ): string | undefined =>
    r.replay === undefined
      ? undefined
      : [
          "npx specformer verify",
          ...(opts.command !== undefined ? [`--impl ${JSON.stringify(opts.command)}`] : []),
          `--law ${r.law}`,
          `--seed ${r.replay.seed}`,
          `--path ${r.replay.path}`,
          ...(formula !== undefined ? [`--formulas ${formula}`] : []),
          `--dtype ${dtype}`,
        ].join(" ");
  // a law that needs its formula's backward pass checks gradients (origins tell values from gradients)
  const needsBackward = (law: string, f: string): boolean => {
    try {
      const b = getLaw(law).backward;
      return (typeof b === "function" ? b(f) : b) === "required";
    } catch {
      return false;
    }
  };
  const push = (r: LawResult, dtype: FloatDType, formula: string | undefined): void => {
    const f = r.failure;
    const budget =
      f?.absError !== undefined && f.allowed !== undefined && f.allowed > 0
        ? f.absError / f.allowed
        : null;
    // a case the implementation answered with an error (a configuration it does not support)
    // says nothing about the law: declined, like a golden case it declines
    const declined =
      (r.status === "failed" && f?.errorKind === "declined") ||
      (r.status === "skipped" && Object.values(r.coverage ?? {}).some((x) => x.declined > 0));
    // a case the implementation could not be driven through (crash, timeout, garbage) is a fault
    const fault = r.status === "failed" && f?.errorKind !== undefined && f.errorKind !== "declined";
    const outside =
      r.status === "skipped" &&
      !declined &&
      Object.values(r.coverage ?? {}).some((x) => x.outside > 0);
    results.push({
      kind: "property",
      formula:
        f !== undefined && f.formula !== ""
          ? f.formula
          : (formula ?? (r.formulas.join(", ") || "-")),
      case: r.law,
      dtype,
      status:
        r.status === "passed"
          ? "pass"
          : declined
            ? "declined"
            : fault
              ? "fault"
              : r.status === "failed"
                ? "fail"
                : "skipped",
      ok: r.status !== "failed" || declined,
      maxAbsErr: declined ? null : (f?.absError ?? null),
      maxRelErr: declined ? null : (f?.relError ?? null),
      budget: declined ? null : budget,
      ...(outside ? { outside: true } : {}),
      message:
        r.status === "skipped"
          ? (r.skipped ?? "skipped")
          : declined && f !== undefined
            ? `not checked: a case the law generated was declined by the implementation — ${f.message}`
            : r.status === "failed"
              ? (f?.message ?? "failed")
              : r.statement,
      law: r,
      ...(r.status === "failed" &&
      (needsBackward(
        r.law,
        f !== undefined && f.formula !== "" ? f.formula : (formula ?? r.formulas[0] ?? ""),
      ) ||
        f?.afterBackward === true)
        ? { checksGradients: true }
        : {}),
      ...(replayOf(r, dtype, formula) !== undefined
        ? { replay: replayOf(r, dtype, formula)! }
        : {}),
      timeMs: r.timeMs,
    });
  };
  let done = 0;
  for (const dtype of dtypes) {
    for (const formula of formulas)
      for (const law of laws) {
        progress({
          phase: "property",
          done: done++,
          total: dtypes.length * formulas.length * laws.length,
          label: `${law !== undefined ? `${law}, ` : ""}${formula ?? "all formulas"} (${dtype})`,
        });
        let report: LawReport;
        try {
          report = await runLaws(impl, {
            ...lawOpts(dtype),
            ...(law !== undefined ? { law } : {}),
            ...(formula !== undefined ? { formula } : {}),
          });
        } catch (e) {
          // an unknown law or a malformed replay path is bad input, not a finding
          if (e instanceof Error && e.name === "LawUsageError") throw e;
          notes.push(
            `the laws${formula !== undefined ? ` of ${formula}` : ""} could not be run: ${(e as Error).message}`,
          );
          continue;
        }
        for (const r of report.results) {
          if (formula !== undefined && r.status === "skipped") continue;
          push(r, dtype, formula);
          // a law stops at its first failing case, and a formula whose cases were mostly declined
          // may get none run in a joint run: run the law again on each formula that got no case,
          // so what the implementation does support is still checked
          if (r.status === "skipped" || formula !== undefined || opts.lawPath !== undefined)
            continue;
          for (const g of r.formulas) {
            if (g === r.failure?.formula || (r.coverage?.[g]?.ran ?? 0) > 0) continue;
            progress({
              phase: "property",
              done: done - 1,
              total: dtypes.length * formulas.length * laws.length,
              label: `${r.law} on ${g} (${dtype})`,
            });
            try {
              const again = await runLaws(impl, { ...lawOpts(dtype), law: r.law, formula: g });
              for (const x of again.results) push(x, dtype, g);
            } catch (e) {
              notes.push(`law ${r.law} on ${g} could not be run: ${(e as Error).message}`);
            }
          }
        }
      }
  }
}
