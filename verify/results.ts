/**
 * What a verify run reports: one result per check (golden case, gradient check, law), the first
 * divergence, the independent origins of the failures, the decline summary, and the options and
 * progress events of a run. The run itself is verify/run.ts.
 */
import "../spec/index.js";
import { formulaNames } from "../spec/formula.js";
import type { FloatDType, Tensor } from "../autodiff/tensor.js";
import type { Implementation, ImplementationError } from "../autodiff/implementation.js";
import type { TensorReport } from "../golden/compare.js";
import type { GradcheckResult } from "../autodiff/gradcheck.js";
import type { LawResult } from "../properties/run.js";
import type { CoverageSummary } from "./coverage.js";
import type { Hint } from "./diagnose.js";
import { faultInfo } from "./driver.js";
import { isDeclined } from "./localise.js";
import type { Localisation } from "./localise.js";

export type ResultKind = "golden" | "property" | "gradient";
/**
 * - `pass` / `fail`: the check ran and its values are (not) within tolerance.
 * - `declined`: the implementation answered the request with an error (an unsupported
 *   configuration); it is reported, not counted as a failure.
 * - `fault`: the implementation could not be driven (crash, hang, garbage, malformed answer).
 * - `skipped`: not run (formula or dtype not declared, no backward pass, program stopped).
 */
export type ResultStatus = "pass" | "fail" | "declined" | "fault" | "skipped";

/** The offending details of an implementation error. */
export interface FaultInfo {
  readonly message: string;
  readonly stderrTail?: string;
  readonly line?: string;
}

/** A failing tensor's values, kept for the HTML report's heatmaps. */
export interface FailingValues {
  readonly name: string;
  readonly expected: Tensor;
  readonly actual: Tensor;
  readonly rtol: number;
  readonly atol: number;
}

/**
 * The result of one check of a verify run: a golden case, a gradient check or a law, for one
 * formula and dtype, with its
 * status, error statistics and the details of its kind (tensor reports, gradcheck result, law result, localisation).
 */
export interface VerifyResult {
  readonly kind: ResultKind;
  readonly formula: string;
  /** The golden case, or the law's name, or (gradient checks) the case whose inputs were used. */
  readonly case: string;
  /** The precision checked (null for a check skipped before a dtype was chosen). */
  readonly dtype: FloatDType | null;
  readonly status: ResultStatus;
  /** Not failed: `pass`, `declined` and `skipped` are ok, `fail` and `fault` are not. */
  readonly ok: boolean;
  readonly maxAbsErr: number | null;
  readonly maxRelErr: number | null;
  /** Largest share of the tolerance budget used (> 1 fails). */
  readonly budget: number | null;
  /** What happened, in one sentence, when it is not a plain pass. */
  readonly message?: string;
  /** Golden checks: the comparator's report of every tensor. */
  readonly tensors?: readonly TensorReport[];
  readonly fault?: FaultInfo;
  /** Skipped because the case lies outside what the implementation declares it supports. */
  readonly outside?: boolean;
  readonly localisation?: Localisation;
  /** Hints for the case's own failing tensors. */
  readonly hints?: readonly Hint[];
  readonly law?: LawResult;
  /** A failing law that needs its formula's backward pass: it checks gradients, not values. */
  readonly checksGradients?: boolean;
  /** Laws: `specformer verify` arguments that replay the shrunk counterexample. */
  readonly replay?: string;
  readonly gradcheck?: GradcheckResult;
  /** Golden checks: values of the failing tensors (kept for the first failing results only). */
  readonly values?: readonly FailingValues[];
  /** Wall-clock time of the check, in milliseconds. */
  readonly timeMs: number;
}

/** Which check a result is of. */
export type CheckOf = Pick<VerifyResult, "kind" | "formula" | "case" | "dtype">;

/** The error measures of a check that measured nothing. */
const UNMEASURED = { maxAbsErr: null, maxRelErr: null, budget: null } as const;

/** A check that was not run, saying why (skipped fails nothing). */
export function skippedResult(check: CheckOf, message: string, timeMs = 0): VerifyResult {
  return { ...check, status: "skipped", ok: true, ...UNMEASURED, message, timeMs };
}

/**
 * A check the implementation answered with an error: `declined` for an error answer (which fails
 * nothing), `fault` for any other.
 */
export function erroredResult(
  check: CheckOf,
  e: ImplementationError,
  timeMs: number,
): VerifyResult {
  const declined = isDeclined(e);
  return {
    ...check,
    status: declined ? "declined" : "fault",
    ok: declined,
    ...UNMEASURED,
    message: e.message,
    fault: faultInfo(e),
    timeMs,
  };
}

/** The run's answer to "which formula went wrong first, where, and by how much". */
export interface FirstDivergence {
  readonly formula: string;
  readonly case: string;
  readonly tensor: string;
  readonly kind: ResultKind;
  readonly origin: "local" | "inherited";
  readonly path: readonly string[];
  readonly explanation: string;
  readonly maxAbsErr: number | null;
  readonly budget: number | null;
  readonly hints: readonly Hint[];
  /** The comparator's report of the diverging tensor, when there is one. */
  readonly report: TensorReport | null;
  /** Its expected and actual values, when kept (for heatmaps). */
  readonly values?: { readonly expected: Tensor; readonly actual: Tensor };
  /** For a law: the command that replays its shrunk counterexample. */
  readonly replay?: string;
}

/**
 * One independent origin of a run's failures: a formula whose values (`forward`) or
 * vector-Jacobian product (`backward`) localisation found wrong, with the failing checks it
 * explains. `VerifyReport.origins` lists them most upstream first (pipeline order, a formula's
 * forward before its backward); the first is the report's headline.
 */
export interface Origin {
  readonly formula: string;
  readonly kind: "forward" | "backward";
  /** The first failing check it explains (a golden case, or the case of a gradient check, or a law). */
  readonly firstCase: string;
  /** Where it was found in that check: the site path and tensor (`h.0/mha/attention:grad.Q`). */
  readonly path: readonly string[];
  readonly tensor: string;
  /** For `backward`: the argument whose gradient is wrong. */
  readonly input?: string;
  readonly explanation: string;
  /** Failing checks it explains: those localised to it plus `presumed` ones. */
  readonly count: number;
  /**
   * Failing checks not localised themselves (past the localisation limit, gradient checks, laws)
   * whose formula and kind had failures localised here.
   */
  readonly presumed: number;
  /** The comparator's report of the diverging tensor in the first check (error vs tolerance). */
  readonly report: TensorReport | null;
  readonly hints: readonly Hint[];
}

export interface ImplementationInfo {
  readonly name: string;
  readonly command?: string;
  readonly formulas: readonly string[];
  readonly dtypes: readonly string[];
  readonly backward: boolean | readonly string[];
}

/**
 * The report of a verify run: every check's result, the origins of the failures, faults, declines and coverage. It is
 * `ok` when some check ran, none failed or faulted, declines stay within their limit, and (under
 * `strict`) every declared
 * formula was checked.
 */
export interface VerifyReport {
  readonly ok: boolean;
  readonly implementation: ImplementationInfo;
  readonly results: readonly VerifyResult[];
  /** Kept for compatibility: the first divergence by the older ordering (see `origins`). */
  readonly firstDivergence: FirstDivergence | null;
  /** The failures grouped by localised origin, most upstream first (the headline). */
  readonly origins?: readonly Origin[];
  /** Faults or restarts that concern the whole run, and anything that could not be run. */
  readonly notes: readonly string[];
  /** The implementation could not be driven for some checks (exit code 2). */
  readonly faulted: boolean;
  /** How many checks the implementation declined, and whether that fails the run. */
  readonly declines: DeclineSummary;
  /** Fresh copies of the implementation started after it stopped. */
  readonly restarts: number;
  /** Seed of the laws and gradient checks. */
  readonly seed: number;
  /** Wall-clock time of the run, in milliseconds. */
  readonly timeMs: number;
  /** Per declared formula and kind of check: what ran, was declined, lay outside the capability. */
  readonly coverage?: CoverageSummary;
  /** Set by `strict`: declared formulas left with no check of some kind (each fails the run). */
  readonly unchecked?: readonly string[];
}

/** Declined checks among those sent to the implementation (pass, fail, declined or fault). */
export interface DeclineSummary {
  readonly count: number;
  readonly asked: number;
  /** count / asked (0 when nothing was asked). */
  readonly share: number;
  /** More than `DECLINE_LIMIT` of the checks were declined, or any was under `strict`: the run fails (exit 1). */
  readonly failsRun: boolean;
}

/**
 * Largest share of declined checks a run may have and still pass. An implementation that
 * declines most of what it declared has not shown that it computes those formulas.
 */
export const DECLINE_LIMIT = 0.5;

/** Count the declined checks and decide whether they fail the run. */
export function declineSummary(results: readonly VerifyResult[], strict: boolean): DeclineSummary {
  const asked = results.filter((r) => r.status !== "skipped").length;
  const count = results.filter((r) => r.status === "declined").length;
  const share = asked === 0 ? 0 : count / asked;
  return { count, asked, share, failsRun: count > 0 && (strict || share > DECLINE_LIMIT) };
}

export function percent(x: number): string {
  return `${Math.round(x * 1000) / 10} %`;
}

export interface ProgressEvent {
  readonly phase: "golden" | "gradient" | "property" | "localise";
  readonly done: number;
  readonly total: number;
  readonly label: string;
}

/** Options of `verify`: which cases, formulas and dtype; which kinds of check; seeds, limits, restarts and sharding. */
export interface VerifyOptions {
  /** Golden case files or folders (default: the bundled cases). */
  readonly cases?: readonly string[];
  /** Only these formulas. */
  readonly formulas?: readonly string[];
  /** Only this dtype. */
  readonly dtype?: FloatDType;
  /** Run the invariant laws. */
  readonly properties?: boolean;
  /** Finite-difference checks of the backward pass (default true). */
  readonly gradients?: boolean;
  /** fast-check runs per law (default 50). */
  readonly lawRuns?: number;
  /**
   * Only this law (with `properties`); no golden cases or gradient checks. With `lawPath` (and
   * `seed`) it replays one shrunk counterexample, as the replay commands of a report do.
   */
  readonly law?: string;
  /** fast-check path of the counterexample to replay (with `law` and `seed`). */
  readonly lawPath?: string;
  /** Seed of the laws and gradient checks (default 1). */
  readonly seed?: number;
  /** Failing cases localised per formula and dtype (default 2; localisation costs requests). */
  readonly localiseLimit?: number;
  /** Starts a fresh copy of the implementation after it stopped (a crash or timeout). */
  readonly restart?: () => Promise<Implementation>;
  /**
   * Any declined check fails the run (without it, only more than `DECLINE_LIMIT` of them do), and so
   * does a declared formula left with no check of some kind (golden, gradient, law).
   */
  readonly strict?: boolean;
  /** Restarts allowed in one run (default 3). */
  readonly maxRestarts?: number;
  /** How the implementation was started (shown in reports and replay commands). */
  readonly command?: string;
  /** Called as checks complete, for progress display. */
  readonly onProgress?: (e: ProgressEvent) => void;
  /**
   * Run only shard `index` of `count` (1-based, `verify --shard K/N`): golden cases, gradient
   * checks and laws are dealt round-robin in the report's order, so the N shards together run
   * exactly the checks of the unsharded run, each once.
   */
  readonly shard?: Shard;
}

/** One of `count` disjoint parts of a verify run (`index` is 1-based). */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** The items of `list` that belong to `shard` (every item when there is no shard). */
export function inShard<T>(list: readonly T[], shard: Shard | undefined): T[] {
  return shard === undefined
    ? [...list]
    : list.filter((_, i) => i % shard.count === shard.index - 1);
}
/** The formula order of reports: the registry's (pipeline) order, then others by name. */
export function formulaOrder(names: Iterable<string>): string[] {
  const reg = formulaNames();
  const all = [...new Set(names)];
  const rank = (f: string) => {
    const i = reg.indexOf(f);
    return i < 0 ? reg.length : i;
  };
  return all.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}
