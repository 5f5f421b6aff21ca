/**
 * The verify run: every golden case of the formulas an implementation declares (outputs and,
 * where it has a backward pass, gradients), finite-difference gradient checks, and the invariant
 * laws — then localisation of each failing composite case and a first divergence for the whole
 * run.
 *
 * Faults never stop the run: an implementation error becomes a result entry (`declined` for an
 * error answer, which the program survives; `fault` for a crash, hang, garbage or a malformed
 * tensor), a stopped program is restarted (at most `maxRestarts` times) and the run goes on with
 * what can still be checked.
 */
import { packageFile } from "../autodiff/assets.js";
import "../spec/index.js";
import { exampleConfig, formulaNames, hasFormula } from "../spec/formula.js";
import { operands, type Node } from "../spec/node.js";
import { formulaGraph } from "../autodiff/graph.js";
import { gradcheckFunction, implementationFunction } from "../autodiff/gradcheck.js";
import type { DiffFunction, GradcheckResult } from "../autodiff/gradcheck.js";
import { ImplementationError, supportsBackward } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { BackwardRequest, ForwardRequest, Implementation } from "../autodiff/implementation.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { listCases, loadCase } from "../golden/cases-io.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { compareCase } from "../golden/compare.js";
import type { TensorReport } from "../golden/compare.js";
import { GoldenFormatError } from "../golden/safetensors.js";
import type { LawReport, LawResult } from "../properties/run.js";
import { coverageOf, uncheckedLines } from "./coverage.js";
import type { CoverageSummary } from "./coverage.js";
import { diagnose } from "./diagnose.js";
import type { Hint } from "./diagnose.js";
import { isDeclined, localise } from "./localise.js";
import type { Divergence, Localisation } from "./localise.js";

/** The bundled golden cases (`golden/cases`). */
export const BUNDLED_CASES = packageFile("golden", "cases");

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

export interface VerifyResult {
  readonly kind: ResultKind;
  readonly formula: string;
  /** The golden case, or the law's name, or (gradient checks) the case whose inputs were used. */
  readonly case: string;
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
  /** Laws: `specformer verify` arguments that replay the shrunk counterexample. */
  readonly replay?: string;
  readonly gradcheck?: GradcheckResult;
  /** Golden checks: values of the failing tensors (kept for the first failing results only). */
  readonly values?: readonly FailingValues[];
  readonly timeMs: number;
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

export interface ImplementationInfo {
  readonly name: string;
  readonly command?: string;
  readonly formulas: readonly string[];
  readonly dtypes: readonly string[];
  readonly backward: boolean | readonly string[];
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly implementation: ImplementationInfo;
  readonly results: readonly VerifyResult[];
  readonly firstDivergence: FirstDivergence | null;
  /** Faults or restarts that concern the whole run, and anything that could not be run. */
  readonly notes: readonly string[];
  /** The implementation could not be driven for some checks (exit code 2). */
  readonly faulted: boolean;
  /** How many checks the implementation declined, and whether that fails the run. */
  readonly declines: DeclineSummary;
  readonly restarts: number;
  readonly seed: number;
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

function percent(x: number): string {
  return `${Math.round(x * 1000) / 10} %`;
}

export interface ProgressEvent {
  readonly phase: "golden" | "gradient" | "property" | "localise";
  readonly done: number;
  readonly total: number;
  readonly label: string;
}

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

function ordinal(n: number): string {
  const t = n % 100;
  return `${n}${t >= 11 && t <= 13 ? "th" : (["th", "st", "nd", "rd"][n % 10] ?? "th")}`;
}

/** The items of `list` that belong to `shard` (every item when there is no shard). */
export function inShard<T>(list: readonly T[], shard: Shard | undefined): T[] {
  return shard === undefined ? [...list] : list.filter((_, i) => i % shard.count === shard.index - 1);
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

const levels = new Map<string, number>();

/**
 * Nesting depth of a formula: 0 for one that applies no other formula (softmax, causal_mask),
 * 1 + the deepest formula it applies otherwise (attention 1, mha 2, block 3, gpt 4). Formulas
 * outside the registry rank last.
 */
export function formulaLevel(name: string): number {
  const cached = levels.get(name);
  if (cached !== undefined) return cached;
  let level = 99;
  if (hasFormula(name)) {
    try {
      const g = formulaGraph(name, exampleConfig(name));
      const depth = new Map<Node, number>();
      // depth of the calls nested inside a call, not counting the call itself: its body is
      // searched up to its arguments (computed by the caller); a nested call's arguments belong
      // to this level, its body to the next
      const nested = (call: Extract<Node, { op: "call" }>): number => {
        const stop = new Set(Object.values(call.args));
        let best = 0;
        const seen = new Set<Node>();
        const stack: Node[] = [call.body];
        while (stack.length > 0) {
          const n = stack.pop()!;
          if (seen.has(n) || stop.has(n)) continue;
          seen.add(n);
          if (n.op === "call") {
            let d = depth.get(n);
            if (d === undefined) {
              d = 1 + nested(n);
              depth.set(n, d);
            }
            best = Math.max(best, d);
            stack.push(...Object.values(n.args));
            continue;
          }
          stack.push(...operands(n));
        }
        return best;
      };
      level = Math.max(...Object.values(g.outputs).map((e) => (e.node.op === "call" ? nested(e.node) : 0)));
    } catch {
      level = 99;
    }
  }
  levels.set(name, level);
  return level;
}


function faultInfo(e: ImplementationError): FaultInfo {
  return {
    message: e.message,
    ...(e.detail?.stderrTail !== undefined && e.detail.stderrTail !== "" ? { stderrTail: e.detail.stderrTail } : {}),
    ...(e.detail?.line !== undefined ? { line: e.detail.line } : {}),
  };
}

/** The implementation is stopped for good: the check was not run (it is skipped, not failed again). */
class StoppedForGood extends ImplementationError {
  override name = "StoppedForGood";
  constructor(message: string) {
    super(message, { kind: "stopped" });
  }
}

/** A program that was stopped after a fault answers every later request with an error of kind `stopped`. */
function isStopped(e: unknown): e is ImplementationError {
  return e instanceof ImplementationError && e.kind === "stopped" && !(e instanceof StoppedForGood);
}

/** The fault an implementation met while no request was waiting (process implementations record one). */
function lateFault(impl: Implementation): ImplementationError | undefined {
  const f = (impl as { readonly fault?: unknown }).fault;
  return f instanceof ImplementationError && f.kind !== "declined" ? f : undefined;
}

/**
 * The implementation as the run drives it: requests go to the current program; when it has been
 * stopped by an earlier fault, a fresh one is started (if allowed) and the request retried once.
 */
class Driver {
  impl: Implementation;
  restarts = 0;
  dead: string | undefined;
  lateFault: ImplementationError | undefined;
  readonly notes: string[] = [];

  constructor(impl: Implementation, private readonly opts: VerifyOptions) {
    this.impl = impl;
  }

  async call<T>(f: (impl: Implementation) => Promise<T>): Promise<T> {
    if (this.dead !== undefined) throw new StoppedForGood(this.dead);
    try {
      return await f(this.impl).catch((e: unknown) => {
        // an in-process implementation's own exception is its fault, reported like a process's
        if (e instanceof ImplementationError) throw e;
        throw new ImplementationError(`${this.impl.name} threw ${e instanceof Error ? `${e.name}: ${e.message}` : `a non-Error value: ${String(e)}`}`, { kind: "failed" });
      });
    } catch (e) {
      if (!isStopped(e)) throw e;
      const max = this.opts.maxRestarts ?? 3;
      if (this.opts.restart === undefined || this.restarts >= max) {
        this.dead =
          this.opts.restart === undefined
            ? `the implementation was stopped by an earlier fault and cannot be restarted: ${(e as Error).message}`
            : `the implementation was stopped by an earlier fault and was not restarted again (${max} restart${max === 1 ? "" : "s"} already): ${(e as Error).message}`;
        this.notes.push(this.dead);
        throw new StoppedForGood(this.dead);
      }
      this.restarts++;
      const old = this.impl;
      await old.close?.().catch(() => undefined);
      try {
        this.impl = await this.opts.restart();
      } catch (err) {
        this.dead = `the implementation could not be restarted after a fault: ${(err as Error).message}`;
        this.notes.push(this.dead);
        throw new StoppedForGood(this.dead);
      }
      this.notes.push(`restarted the implementation after it was stopped (${(e as Error).message.split("\n")[0]})`);
      return await f(this.impl);
    }
  }

  /** The driver as an Implementation (for laws and gradient checks, which call it directly). */
  asImplementation(): Implementation {
    const self = this;
    const base = this.impl;
    const out: Implementation = {
      name: base.name,
      formulas: base.formulas,
      backward: base.backward,
      dtypes: base.dtypes,
      ...(base.capabilities !== undefined ? { capabilities: base.capabilities } : {}),
      forward: (req: ForwardRequest) => self.call((i) => i.forward(req)),
    };
    if (base.backwardPass !== undefined) {
      (out as { backwardPass?: Implementation["backwardPass"] }).backwardPass = (req: BackwardRequest) =>
        self.call((i) => {
          if (i.backwardPass === undefined) throw new ImplementationError(`${i.name} has no backward pass`);
          return i.backwardPass(req);
        });
    }
    return out;
  }
}

function metrics(reports: readonly TensorReport[]): { maxAbsErr: number; maxRelErr: number; budget: number } {
  let a = 0, r = 0, b = 0;
  for (const t of reports) {
    a = Math.max(a, t.maxAbsError);
    r = Math.max(r, t.maxRelError);
    b = Math.max(b, t.budgetUsed);
  }
  return { maxAbsErr: a, maxRelErr: r, budget: b };
}

function only(outputs: NamedTensors, names: Iterable<string>): NamedTensors {
  const keep = new Set(names);
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(outputs)) if (keep.has(k)) out[k] = v;
  return out;
}

function elements(ts: NamedTensors): number {
  return Object.values(ts).reduce((s, t) => s + t.size, 0);
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
  if (problems.length > 0) throw new GoldenFormatError(paths.join(", "), `${problems.length} unreadable golden case${problems.length > 1 ? "s" : ""}:\n  ${problems.join("\n  ")}`);
  return cases;
}

/**
 * Verify an implementation (see the module comment). Never throws for an implementation fault;
 * throws `GoldenFormatError` for unreadable golden files and `LawUsageError` for an unknown law
 * or a malformed replay path.
 */
export async function verify(impl: Implementation, opts: VerifyOptions = {}): Promise<VerifyReport> {
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
  const allCases = replaying ? [] : loadCases(opts.cases ?? [BUNDLED_CASES]).filter((c) => wanted(c.meta.formula) && (opts.dtype === undefined || c.meta.dtype === opts.dtype));
  allCases.sort((a, b) => formulaLevel(a.meta.formula) - formulaLevel(b.meta.formula) || (a.meta.case < b.meta.case ? -1 : 1));
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
      const skip = (message: string): void => void results.push({ ...base, status: "skipped", ok: true, maxAbsErr: null, maxRelErr: null, budget: null, message, timeMs: 0 });
      if (!declares(m.formula)) {
        skip(`the implementation does not declare ${m.formula}`);
        continue;
      }
      if (!computes(m.dtype)) {
        skip(`the implementation computes ${driver.impl.dtypes.join(", ")} only`);
        continue;
      }
      const outside = outsideCapability(driver.impl, { formula: m.formula, config: m.config, dtype: m.dtype, dims: m.dims, inputs: c.inputs });
      if (outside !== undefined) {
        results.push({ ...base, status: "skipped", outside: true, ok: true, maxAbsErr: null, maxRelErr: null, budget: null, message: `outside the declared capability: ${outside}`, timeMs: 0 });
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
        actual = (await driver.call((i) => i.forward({ formula: m.formula, config, inputs: c.inputs }))).outputs;
        if (wantGrads) grads = (await driver.call((i) => i.backwardPass!({ formula: m.formula, config, inputs: c.inputs, cotangents: c.cotangents }))).grads;
      } catch (e) {
        if (!(e instanceof ImplementationError)) throw e;
        if (e instanceof StoppedForGood) {
          skip(e.message);
          continue;
        }
        const declined = isDeclined(e);
        results.push({
          ...base,
          status: declined ? "declined" : "fault",
          ok: declined,
          maxAbsErr: null,
          maxRelErr: null,
          budget: null,
          message: e.message,
          fault: faultInfo(e),
          timeMs: performance.now() - t,
        });
        continue;
      }
      const report = compareCase(c, { outputs: only(actual, Object.keys(c.outputs)), ...(grads !== undefined ? { grads } : {}) });
      const mt = metrics(report.tensors);
      const failing = report.tensors.filter((r) => !r.ok);
      const result: VerifyResult = {
        ...base,
        status: report.ok ? "pass" : "fail",
        ok: report.ok,
        ...mt,
        tensors: report.tensors,
        ...(wantGrads ? {} : Object.keys(c.grads).length > 0 ? { message: "outputs only: the implementation declares no backward pass for this formula" } : {}),
        timeMs: performance.now() - t,
      };
      if (report.ok) {
        results.push(result);
        continue;
      }
      // explain the failure: localise forward failures, diagnose the case's own failing tensors
      const outputsFail = failing.some((r) => r.name.startsWith("out."));
      const key = `${m.formula}/${m.dtype}`;
      let localisation: Localisation | undefined;
      if (outputsFail && (localised.get(key) ?? 0) < (opts.localiseLimit ?? 2)) {
        localised.set(key, (localised.get(key) ?? 0) + 1);
        progress({ phase: "localise", done: done - 1, total: cases.length, label: m.case });
        localisation = await localise({
          forward: (req) => driver.call((i) => i.forward(req)),
          declares: (f, d) => declares(f) && computes(d),
          formula: m.formula,
          config: m.config,
          inputs: c.inputs,
          dtype: m.dtype,
          actual,
          expected: c.outputs,
          reports: Object.fromEntries(report.tensors.map((r) => [r.name, r])),
          dims: m.dims,
        });
        if (localisation.fault !== undefined) notes.push(`localising ${m.case} was cut short: ${localisation.fault.message.split("\n")[0]}`);
      }
      const hints: Hint[] = [];
      if (!outputsFail) {
        for (const r of failing) {
          const name = r.name.slice(r.name.indexOf(".") + 1);
          const expected = c.grads[name];
          const got = grads?.[name];
          if (expected === undefined || got === undefined) continue;
          // gradients: only the patterns of the error apply (the alternatives compute outputs)
          for (const h of await diagnose({ formula: `grad(${m.formula})`, config: m.config, inputs: c.inputs, dtype: m.dtype, output: name, expected, actual: got, tolerance: r.tolerance, dims: m.dims })) {
            hints.push({ ...h, message: `${r.name}: ${h.message}` });
          }
        }
      }
      const values: FailingValues[] = [];
      if (kept++ < KEPT_VALUES) {
        for (const r of failing) {
          if (r.status !== "values") continue;
          const dot = r.name.indexOf(".");
          const [exp, got] = r.name.startsWith("out.") ? [c.outputs, actual] : [c.grads, grads ?? {}];
          const e = exp[r.name.slice(dot + 1)];
          const a = got[r.name.slice(dot + 1)];
          if (e !== undefined && a !== undefined) values.push({ name: r.name, expected: e, actual: a, rtol: r.tolerance.rtol, atol: r.tolerance.atol });
        }
      }
      results.push({ ...result, ...(localisation !== undefined ? { localisation } : {}), ...(hints.length > 0 ? { hints } : {}), ...(values.length > 0 ? { values } : {}) });
    }
    progress({ phase: "golden", done: cases.length, total: cases.length, label: "" });

    // ------------------------------------------------------------------ gradient checks
    if (opts.gradients !== false && !replaying) await gradientChecks(driver, allCases, opts, seed, results, wanted, progress);

    // ------------------------------------------------------------------ laws
    if (opts.properties === true || replaying) await lawChecks(driver, opts, seed, results, notes, wanted, progress);

  } finally {
    // a fault that no request met (an exit or a stray line after the last answer) still counts
    const late = lateFault(driver.impl);
    if (late !== undefined) driver.lateFault = late;
    // the caller closes the implementation it passed in; restarted copies are the run's to close
    if (driver.impl !== impl) await driver.impl.close?.().catch(() => undefined);
  }
  if (driver.lateFault !== undefined) notes.push(`the implementation faulted while no request was waiting: ${driver.lateFault.message.split("\n")[0]}`);
  notes.push(...driver.notes);
  if (opts.shard !== undefined) notes.push(`shard ${opts.shard.index}/${opts.shard.count}: this run holds every ${opts.shard.count === 1 ? "" : `${ordinal(opts.shard.count)} `}golden case, gradient check and law, from the ${ordinal(opts.shard.index)}`);
  const firstDivergence = pickFirstDivergence(results);
  const checked = results.filter((r) => r.status === "pass" || r.status === "fail").length;
  // a restart follows a fault, even when every check after it passed
  const faulted = results.some((r) => r.status === "fault") || driver.dead !== undefined || driver.restarts > 0 || driver.lateFault !== undefined;
  if (checked === 0) notes.push("nothing was checked: no golden case, gradient check or law applies to the formulas and dtypes the implementation declares");
  const declines = declineSummary(results, opts.strict === true);
  if (declines.failsRun) {
    notes.push(
      opts.strict === true
        ? `--strict: the implementation declined ${declines.count} of the ${declines.asked} checks sent to it; any decline fails the run`
        : `the implementation declined ${declines.count} of the ${declines.asked} checks sent to it (${percent(declines.share)}); more than ${percent(DECLINE_LIMIT)} fails the run`,
    );
  }
  const coverage = coverageOf(results, formulaOrder(driver.impl.formulas.filter((f) => wanted(f) && knownFormula(f))));
  const unchecked = uncheckedLines(coverage);
  if (unchecked.length > 0) notes.push(`${opts.strict === true ? "strict: " : ""}${unchecked.length} declared formula${unchecked.length > 1 ? "s were" : " was"} left with no check of some kind: ${unchecked.join("; ")}`);
  const ok = checked > 0 && results.every((r) => r.ok) && !faulted && !declines.failsRun && !(opts.strict === true && unchecked.length > 0);
  const cur = driver.impl;
  return {
    ok,
    implementation: { name: cur.name, ...(opts.command !== undefined ? { command: opts.command } : {}), formulas: cur.formulas, dtypes: cur.dtypes, backward: cur.backward },
    results,
    firstDivergence,
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

/** The output names a formula's gradient is taken of (intermediate outputs are excluded). */
function differentiableOutputs(c: GoldenCase): string[] {
  return Object.entries(c.outputs).filter(([, t]) => t.dtype !== "i32").map(([k]) => k);
}

async function gradientChecks(
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
  for (const list of byFormula.values()) list.sort((a, b) => elements(a.inputs) - elements(b.inputs) || (a.meta.case < b.meta.case ? -1 : 1));
  const formulas = inShard(formulaOrder(byFormula.keys()).filter((f) => wanted(f) && driver.impl.formulas.includes(f) && supportsBackward(driver.impl, f)), opts.shard);
  if (formulas.length > 0 && !driver.impl.dtypes.includes("f64")) {
    for (const f of formulas) {
      results.push({
        kind: "gradient", formula: f, case: byFormula.get(f)![0]!.meta.case, dtype: null, status: "skipped", ok: true, maxAbsErr: null, maxRelErr: null, budget: null, timeMs: 0,
        message: `finite differences need float64 values and the implementation computes ${driver.impl.dtypes.join(", ")} only; its gradients are still checked against the golden grad.* tensors`,
      });
    }
    return;
  }
  let done = 0;
  for (const f of formulas) {
    progress({ phase: "gradient", done: done++, total: formulas.length, label: f });
    const candidates = byFormula.get(f)!;
    const inside = candidates.filter((c) => outsideCapability(driver.impl, { formula: f, config: c.meta.config, dtype: "f64", dims: c.meta.dims, inputs: c.inputs }) === undefined);
    if (inside.length === 0) {
      const why = outsideCapability(driver.impl, { formula: f, config: candidates[0]!.meta.config, dtype: "f64", dims: candidates[0]!.meta.dims, inputs: candidates[0]!.inputs })!;
      results.push({ kind: "gradient", formula: f, case: candidates[0]!.meta.case, dtype: "f64", status: "skipped", outside: true, ok: true, maxAbsErr: null, maxRelErr: null, budget: null, timeMs: 0, message: `no float64 case lies inside the declared capability (${candidates.length} tried; e.g. ${why})` });
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
    const tried = declinedTries > 0 || skippedOutside > 0 ? ` (${[declinedTries > 0 && last!.status !== "declined" ? `${declinedTries} smaller case${declinedTries > 1 ? "s" : ""} declined` : "", skippedOutside > 0 ? `${skippedOutside} outside the declared capability` : ""].filter((x) => x !== "").join(", ")})` : "";
    if (last!.status === "declined") results.push({ ...last!, message: `every float64 case was declined (${declinedTries} tried): ${last!.message ?? ""}` });
    else results.push(tried === "" ? last! : { ...last!, message: `${last!.message ?? (last!.status === "pass" ? "checked" : "")}${tried}`.trim() });
  }
}

/** The finite-difference check of one formula on one case's inputs. */
async function gradientCheck(driver: Driver, c: GoldenCase, f: string, seed: number): Promise<VerifyResult> {
  const base = { kind: "gradient" as const, formula: f, case: c.meta.case, dtype: "f64" as const };
  if (driver.dead !== undefined) return { ...base, status: "skipped", ok: true, maxAbsErr: null, maxRelErr: null, budget: null, message: driver.dead, timeMs: 0 };
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
    g = await gradcheckFunction(fn, c.inputs, { mode: "fast", seed, ...(args > 8 ? { directions: 4 } : {}) });
  } catch (e) {
    if (!(e instanceof ImplementationError)) throw e;
    lastError = e;
    g = { formula: f, ok: false, mode: "fast", checked: [], maxAbsErr: 0, maxRelErr: 0, failures: [], error: e.message, seed };
  }
  if (g.error !== undefined && lastError instanceof StoppedForGood) {
    return { ...base, status: "skipped", ok: true, maxAbsErr: null, maxRelErr: null, budget: null, message: lastError.message, timeMs: performance.now() - t };
  }
  if (g.error !== undefined && lastError !== undefined) {
    const declined = isDeclined(lastError);
    return { ...base, status: declined ? "declined" : "fault", ok: declined, maxAbsErr: null, maxRelErr: null, budget: null, message: lastError.message, fault: faultInfo(lastError), gradcheck: g, timeMs: performance.now() - t };
  }
  const worst = g.failures.reduce((b, x) => Math.max(b, x.allowed > 0 ? x.absErr / x.allowed : Infinity), 0);
  return {
    ...base,
    status: g.ok ? "pass" : "fail",
    ok: g.ok,
    maxAbsErr: g.maxAbsErr,
    maxRelErr: g.maxRelErr,
    budget: g.ok ? null : worst,
    ...(g.error !== undefined ? { message: g.error } : g.ok ? {} : { message: `the backward pass disagrees with central differences along ${g.failures.map((x) => x.input).join(", ")}` }),
    gradcheck: g,
    timeMs: performance.now() - t,
  };
}

async function lawChecks(
  driver: Driver,
  opts: VerifyOptions,
  seed: number,
  results: VerifyResult[],
  notes: string[],
  wanted: (f: string) => boolean,
  progress: (e: ProgressEvent) => void,
): Promise<void> {
  let run: typeof import("../properties/run.js");
  try {
    run = await import("../properties/run.js");
  } catch (e) {
    notes.push(`the invariant laws could not be run: properties/run.ts failed to load (${(e as Error).message.split("\n")[0]})`);
    return;
  }
  const dtypes: FloatDType[] = opts.dtype !== undefined ? [opts.dtype] : driver.impl.dtypes.includes("f64") ? ["f64"] : driver.impl.dtypes.includes("f32") ? ["f32"] : [];
  const formulas = opts.formulas === undefined ? [undefined] : opts.formulas.filter((f) => hasFormula(f) && wanted(f));
  // sharded: each law by itself (same seed, so the same cases as in one run of all laws)
  const laws: (string | undefined)[] = opts.shard === undefined || opts.law !== undefined ? [opts.law] : inShard((await import("../properties/registry.js")).lawNames(), opts.shard);
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
  const replayOf = (r: LawResult, dtype: FloatDType, formula: string | undefined): string | undefined =>
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
  const push = (r: LawResult, dtype: FloatDType, formula: string | undefined): void => {
    const f = r.failure;
    const budget = f?.absError !== undefined && f.allowed !== undefined && f.allowed > 0 ? f.absError / f.allowed : null;
    // a case the implementation answered with an error (a configuration it does not support)
    // says nothing about the law: declined, like a golden case it declines
    const declined = (r.status === "failed" && f?.errorKind === "declined") || (r.status === "skipped" && Object.values(r.coverage ?? {}).some((x) => x.declined > 0));
    // a case the implementation could not be driven through (crash, timeout, garbage) is a fault
    const fault = r.status === "failed" && f?.errorKind !== undefined && f.errorKind !== "declined";
    const outside = r.status === "skipped" && !declined && Object.values(r.coverage ?? {}).some((x) => x.outside > 0);
    results.push({
      kind: "property",
      formula: f !== undefined && f.formula !== "" ? f.formula : formula ?? (r.formulas.join(", ") || "-"),
      case: r.law,
      dtype,
      status: r.status === "passed" ? "pass" : declined ? "declined" : fault ? "fault" : r.status === "failed" ? "fail" : "skipped",
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
      ...(replayOf(r, dtype, formula) !== undefined ? { replay: replayOf(r, dtype, formula)! } : {}),
      timeMs: r.timeMs,
    });
  };
  let done = 0;
  for (const dtype of dtypes) {
    for (const formula of formulas) for (const law of laws) {
      progress({ phase: "property", done: done++, total: dtypes.length * formulas.length * laws.length, label: `${law !== undefined ? `${law}, ` : ""}${formula ?? "all formulas"} (${dtype})` });
      let report: LawReport;
      try {
        report = await run.runLaws(impl, { ...lawOpts(dtype), ...(law !== undefined ? { law } : {}), ...(formula !== undefined ? { formula } : {}) });
      } catch (e) {
        // an unknown law or a malformed replay path is bad input, not a finding
        if (e instanceof Error && e.name === "LawUsageError") throw e;
        notes.push(`the laws${formula !== undefined ? ` of ${formula}` : ""} could not be run: ${(e as Error).message}`);
        continue;
      }
      for (const r of report.results) {
        if (formula !== undefined && r.status === "skipped") continue;
        push(r, dtype, formula);
        // a law stops at its first failing case, and a formula whose cases were mostly declined
        // may get none run in a joint run: run the law again on each formula that got no case,
        // so what the implementation does support is still checked
        if (r.status === "skipped" || formula !== undefined || opts.lawPath !== undefined) continue;
        for (const g of r.formulas) {
          if (g === r.failure?.formula || (r.coverage?.[g]?.ran ?? 0) > 0) continue;
          progress({ phase: "property", done: done - 1, total: dtypes.length * formulas.length * laws.length, label: `${r.law} on ${g} (${dtype})` });
          try {
            const again = await run.runLaws(impl, { ...lawOpts(dtype), law: r.law, formula: g });
            for (const x of again.results) push(x, dtype, g);
          } catch (e) {
            notes.push(`law ${r.law} on ${g} could not be run: ${(e as Error).message}`);
          }
        }
      }
    }
  }
}

/**
 * The first divergence of the run: among failing checks, forward values before gradients before
 * laws; localised failures first; then the least nested diverging formula, a local error
 * before an inherited one, the least nested case formula (the smallest case showing it), float64
 * first, then by case name.
 */
export function pickFirstDivergence(results: readonly VerifyResult[]): FirstDivergence | null {
  const candidates: Array<{ key: (number | string)[]; d: FirstDivergence }> = [];
  for (const r of results) {
    if (r.status !== "fail") continue;
    if (r.kind === "golden") {
      const div: Divergence | null | undefined = r.localisation?.divergence;
      const failingOut = r.tensors?.find((t) => !t.ok && t.name.startsWith("out."));
      const failing = failingOut ?? r.tensors?.find((t) => !t.ok);
      const forward = failingOut !== undefined;
      const d: FirstDivergence =
        div !== null && div !== undefined
          ? {
              formula: div.formula, case: r.case, tensor: div.tensor, kind: "golden", origin: div.origin, path: div.path, explanation: div.explanation,
              maxAbsErr: div.report?.maxAbsError ?? r.maxAbsErr, budget: div.report?.budgetUsed ?? r.budget, hints: div.hints, report: div.report,
              ...(div.values !== undefined ? { values: div.values } : {}),
            }
          : {
              formula: r.formula, case: r.case, tensor: failing?.name ?? "?", kind: "golden", origin: "local", path: [r.formula],
              explanation: forward
                ? `${r.formula}'s output ${failing?.name ?? ""} diverges (not localised further: earlier cases of this formula were)`
                : `the outputs of ${r.formula} match but ${failing?.name ?? "a gradient"} diverges: the backward pass is wrong`,
              maxAbsErr: failing?.maxAbsError ?? r.maxAbsErr, budget: failing?.budgetUsed ?? r.budget, hints: r.hints ?? [], report: failing ?? null,
              ...valuesFor(r, failing?.name),
            };
      const key = [forward ? 0 : 1, div === undefined ? 1 : 0, formulaLevel(d.formula), d.origin === "local" ? 0 : 1, formulaLevel(r.formula), r.dtype === "f64" ? 0 : 1, r.case];
      candidates.push({ key, d });
    } else if (r.kind === "gradient") {
      const f = r.gradcheck?.failures[0];
      candidates.push({
        key: [2, 0, formulaLevel(r.formula), 0, 0, 0, r.case],
        d: {
          formula: r.formula, case: r.case, tensor: f !== undefined ? `grad (${f.input})` : "grad", kind: "gradient", origin: "local", path: [r.formula],
          explanation: r.message ?? `the backward pass of ${r.formula} disagrees with central differences`, maxAbsErr: r.maxAbsErr, budget: r.budget, hints: [], report: null,
        },
      });
    } else {
      const f = r.law?.failure;
      candidates.push({
        key: [3, 0, formulaLevel(f?.formula ?? r.formula), 0, 0, r.dtype === "f64" ? 0 : 1, r.case],
        d: {
          formula: f?.formula || r.formula, case: r.case, tensor: f?.quantity ?? "law", kind: "property", origin: "local", path: [f?.formula || r.formula],
          explanation: `law ${r.case} fails: ${f?.message ?? r.message ?? ""}`,
          maxAbsErr: r.maxAbsErr, budget: r.budget, hints: [], report: null,
          ...(r.replay !== undefined ? { replay: r.replay } : {}),
        },
      });
    }
  }
  if (candidates.length === 0) return null;
  const cmp = (a: (number | string)[], b: (number | string)[]): number => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x === y) continue;
      return x < y ? -1 : 1;
    }
    return 0;
  };
  candidates.sort((a, b) => cmp(a.key, b.key));
  return candidates[0]!.d;
}

function valuesFor(r: VerifyResult, name: string | undefined): { values?: { expected: Tensor; actual: Tensor } } {
  const v = r.values?.find((x) => x.name === name);
  return v !== undefined ? { values: { expected: v.expected, actual: v.actual } } : {};
}

/** Whether a formula is known to the registry (for `--formulas` validation). */
export function knownFormula(name: string): boolean {
  return hasFormula(name) || name === "gpt_generate";
}
