/**
 * Finite-difference gradient checks of a verify run: per formula with a backward pass, the
 * smallest float64 golden case the implementation supports, one random direction per argument.
 */
import { gradcheckFunction, implementationFunction } from "../autodiff/gradcheck.js";
import type { DiffFunction, GradcheckResult } from "../autodiff/gradcheck.js";
import { ImplementationError, supportsBackward } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { NamedTensors } from "../autodiff/tensor.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { Driver, StoppedForGood } from "./driver.js";
import { erroredResult, formulaOrder, inShard, skippedResult } from "./results.js";
import type { ProgressEvent, VerifyOptions, VerifyResult } from "./results.js";

/** Only the named outputs. */
export function only(outputs: NamedTensors, names: Iterable<string>): NamedTensors {
  const keep = new Set(names);
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(outputs)) if (keep.has(k)) out[k] = v;
  return out;
}

function elements(ts: NamedTensors): number {
  return Object.values(ts).reduce((s, t) => s + t.size, 0);
}

/** The output names a formula's gradient is taken of (intermediate outputs are excluded). */
function differentiableOutputs(c: GoldenCase): string[] {
  return Object.entries(c.outputs)
    .filter(([, t]) => t.dtype !== "i32")
    .map(([k]) => k);
}

export async function gradientChecks(
  driver: Driver,
  cases: readonly GoldenCase[],
  opts: VerifyOptions,
  seed: number,
  results: VerifyResult[],
  wanted: (f: string) => boolean,
  progress: (e: ProgressEvent) => void,
): Promise<void> {
  // per formula, its float64 cases with a float argument, smallest first: the first one the
  // implementation supports is checked (cases outside its declared capability are not sent, a
  // declined one passes the turn to the next)
  const byFormula = new Map<string, GoldenCase[]>();
  for (const c of cases) {
    if (c.meta.dtype !== "f64" || !Object.values(c.inputs).some((t) => t.dtype !== "i32")) continue;
    const list = byFormula.get(c.meta.formula) ?? [];
    list.push(c);
    byFormula.set(c.meta.formula, list);
  }
  for (const list of byFormula.values())
    list.sort(
      (a, b) => elements(a.inputs) - elements(b.inputs) || (a.meta.case < b.meta.case ? -1 : 1),
    );
  const formulas = inShard(
    formulaOrder(byFormula.keys()).filter(
      (f) => wanted(f) && driver.impl.formulas.includes(f) && supportsBackward(driver.impl, f),
    ),
    opts.shard,
  );
  if (formulas.length > 0 && !driver.impl.dtypes.includes("f64")) {
    for (const f of formulas) {
      results.push(
        skippedResult(
          { kind: "gradient", formula: f, case: byFormula.get(f)![0]!.meta.case, dtype: null },
          `finite differences need float64 values and the implementation computes ` +
            `${driver.impl.dtypes.join(", ")} only; its gradients are still checked ` +
            `against the golden grad.* tensors`,
        ),
      );
    }
    return;
  }
  let done = 0;
  for (const f of formulas) {
    progress({ phase: "gradient", done: done++, total: formulas.length, label: f });
    const candidates = byFormula.get(f)!;
    const inside = candidates.filter(
      (c) =>
        outsideCapability(driver.impl, {
          formula: f,
          config: c.meta.config,
          dtype: "f64",
          dims: c.meta.dims,
          inputs: c.inputs,
        }) === undefined,
    );
    if (inside.length === 0) {
      const why = outsideCapability(driver.impl, {
        formula: f,
        config: candidates[0]!.meta.config,
        dtype: "f64",
        dims: candidates[0]!.meta.dims,
        inputs: candidates[0]!.inputs,
      })!;
      results.push({
        ...skippedResult(
          { kind: "gradient", formula: f, case: candidates[0]!.meta.case, dtype: "f64" },
          `no float64 case lies inside the declared capability ` +
            `(${candidates.length} tried; e.g. ${why})`,
        ),
        outside: true,
      });
      continue;
    }
    let declinedTries = 0;
    let last: VerifyResult | undefined;
    for (const c of inside) {
      last = await gradientCheck(driver, c, f, seed);
      if (last.status !== "declined") break;
      declinedTries++;
    }
    const skippedOutside = candidates.length - inside.length;
    const tried =
      declinedTries > 0 || skippedOutside > 0
        ? ` (` +
          [
            declinedTries > 0 && last!.status !== "declined"
              ? `${declinedTries} smaller case${declinedTries > 1 ? "s" : ""} declined`
              : "",
            skippedOutside > 0 ? `${skippedOutside} outside the declared capability` : "",
          ]
            .filter((x) => x !== "")
            .join(", ") +
          `)`
        : "";
    if (last!.status === "declined")
      results.push({
        ...last!,
        message: `every float64 case was declined (${declinedTries} tried): ${last!.message ?? ""}`,
      });
    else
      results.push(
        tried === ""
          ? last!
          : {
              ...last!,
              message:
                `${last!.message ?? (last!.status === "pass" ? "checked" : "")}${tried}`.trim(),
            },
      );
  }
}

/** The finite-difference check of one formula on one case's inputs. */
async function gradientCheck(
  driver: Driver,
  c: GoldenCase,
  f: string,
  seed: number,
): Promise<VerifyResult> {
  const base = { kind: "gradient" as const, formula: f, case: c.meta.case, dtype: "f64" as const };
  if (driver.dead !== undefined) return skippedResult(base, driver.dead);
  const t = performance.now();
  const outs = differentiableOutputs(c);
  let lastError: ImplementationError | undefined;
  const impl = driver.asImplementation();
  const inner = implementationFunction(impl, f, { ...c.meta.config, dtype: "f64" });
  const fn: DiffFunction = {
    name: inner.name,
    value: async (x) => {
      try {
        return only(await inner.value(x), outs);
      } catch (e) {
        if (e instanceof ImplementationError) lastError = e;
        throw e;
      }
    },
    vjp: async (x, cot) => {
      try {
        return await inner.vjp(x, cot);
      } catch (e) {
        if (e instanceof ImplementationError) lastError = e;
        throw e;
      }
    },
  };
  let g: GradcheckResult;
  try {
    // one direction per argument (names the wrong gradient) up to 8 arguments, else 4 joint ones
    const args = Object.values(c.inputs).filter((x) => x.dtype !== "i32").length;
    g = await gradcheckFunction(fn, c.inputs, {
      mode: "fast",
      seed,
      ...(args > 8 ? { directions: 4 } : {}),
    });
  } catch (e) {
    if (!(e instanceof ImplementationError)) throw e;
    lastError = e;
    g = {
      formula: f,
      ok: false,
      mode: "fast",
      checked: [],
      maxAbsErr: 0,
      maxRelErr: 0,
      failures: [],
      error: e.message,
      seed,
    };
  }
  if (g.error !== undefined && lastError instanceof StoppedForGood)
    return skippedResult(base, lastError.message, performance.now() - t);
  if (g.error !== undefined && lastError !== undefined)
    return { ...erroredResult(base, lastError, performance.now() - t), gradcheck: g };
  const worst = g.failures.reduce(
    (b, x) => Math.max(b, x.allowed > 0 ? x.absErr / x.allowed : Infinity),
    0,
  );
  return {
    ...base,
    status: g.ok ? "pass" : "fail",
    ok: g.ok,
    maxAbsErr: g.maxAbsErr,
    maxRelErr: g.maxRelErr,
    budget: g.ok ? null : worst,
    ...(g.error !== undefined
      ? { message: g.error }
      : g.ok
        ? {}
        : {
            message:
              `the backward pass disagrees with central differences along ` +
              `${g.failures.map((x) => x.input).join(", ")}`,
          }),
    gradcheck: g,
    timeMs: performance.now() - t,
  };
}
