/**
 * A law: a relation every correct implementation of some formulas satisfies, checked by
 * fast-check over generated cases. Laws never assume which implementation they test: they call
 * `impl.forward` (and `impl.backwardPass` when `supportsBackward`) and check relations between
 * the results — never against numbers computed by the reference (the one documented exception is
 * the float32-vs-float64 oracle law, `reference_error_bound`).
 *
 * Every law states its tolerance twice: as text (the derivation) and as a function of the dtype
 * and sizes ({@link LawTolerance.bound}), which multiplies the data-dependent scale the law
 * names (max |V|, ‖q‖·‖k‖, the measured conditioning κ̂ — see tolerance.ts).
 */
import type fc from "fast-check";
import {
  ImplementationError,
  supportsBackward,
  type BackwardRequest,
  type FormulaConfig,
  type ForwardRequest,
  type Implementation,
  type ImplementationErrorKind,
} from "../autodiff/implementation.js";
import { Tensor, shapeToString, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import { compareTensors } from "../golden/compare.js";
import type { FormulaCase } from "./arbitraries.js";
import type { Capabilities } from "../autodiff/capabilities.js";
import {
  cancelledMagnitude,
  conditionedBound,
  conditionedReason,
  gamma,
  roundingDepth,
  sensitivity,
  type OutputScale,
} from "./tolerance.js";
import { shapesOf } from "./tensor-ops.js";

/** Every law case names its formula, configuration, dtype, dims and arguments. */
export type LawCase = FormulaCase;

/** Where a law was violated: everything needed to understand and replay the failure. */
export interface LawFailure {
  readonly law: string;
  readonly formula: string;
  readonly config: FormulaConfig;
  readonly dtype: FloatDType;
  /** Shapes of the case's arguments. */
  readonly shapes: Readonly<Record<string, readonly number[]>>;
  /** One sentence: what relation failed. */
  readonly message: string;
  /** The quantity compared (`y`, `Σ_j y_ij`, `grad x`, `logits rows ≤ 2`). */
  readonly quantity?: string;
  /** Multi-index of the worst element of the quantity. */
  readonly index?: readonly number[];
  readonly expected?: number;
  readonly actual?: number;
  readonly absError?: number;
  readonly relError?: number;
  /** The bound the absolute error had to stay within. */
  readonly allowed?: number;
  /** How `allowed` was computed, with its numbers. */
  readonly toleranceReason?: string;
  /** Small excerpts of the offending values (an input row, the weights of a row…). */
  readonly values?: Readonly<Record<string, unknown>>;
  /**
   * Set when the check stopped because the implementation raised an error: that error's kind
   * (`declined` says nothing about the law).
   */
  readonly errorKind?: ImplementationErrorKind;
  /**
   * Set when the check had requested a backward pass since its last forward request: the failing
   * comparison (or call) concerns gradients, so the failure belongs to the backward pass.
   */
  readonly afterBackward?: boolean;
}

export type LawVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly failure: LawFailure };

export interface LawTolerance {
  /** How the bound is derived: what c is and why. */
  readonly derivation: string;
  /** The bound for a dtype and sizes (multiplied by `scale`); 0 means the law is exact. */
  readonly bound: (dtype: FloatDType, sizes: Readonly<Record<string, number>>) => number;
  /** What the bound multiplies (`1`, `max|V|`, `S + κ̂`). */
  readonly scale: string;
}

/**
 * The bound of a law that compares two evaluations of the same quantity ({@link Check.expectTwin}):
 * 2·γ_K with K the rounding depth (`sizes.K`), multiplying S + κ̂ (tolerance.ts).
 */
function twinBound(dtype: FloatDType, sizes: Readonly<Record<string, number>>): number {
  return 2 * gamma(sizes["K"] ?? 1, dtype);
}

/**
 * The tolerance of a law whose check compares two evaluations of the same quantity: the bound
 * {@link twinBound}, with the law's own `derivation` (why the two agree in exact arithmetic) and
 * what the bound multiplies (`S + κ̂` unless the law says more).
 */
export function twinTolerance(derivation: string, scale = "S + κ̂"): LawTolerance {
  return { derivation, bound: twinBound, scale };
}

/** The tolerance of a law whose relations hold exactly (bound 0): `derivation` says why. */
export function exactTolerance(derivation: string): LawTolerance {
  return { derivation, bound: () => 0, scale: "1" };
}

/** What a law's cases may use: the formulas it may target (declared by the implementation) and the dtype. */
export interface LawScope {
  readonly formulas: readonly string[];
  readonly dtype: FloatDType;
  /** Every formula the implementation declares (a law may use companions such as `rope` when present). */
  readonly declared: readonly string[];
  /** Formulas whose backward pass the implementation provides. */
  readonly backward: readonly string[];
  /** fc.commands' replay hint when replaying a model-based law's counterexample. */
  readonly replayPath?: string;
  /** What the implementation declares it supports per formula: generate inside it (arbitraries.ts). */
  readonly capabilities?: Capabilities;
}

export interface Law<C extends LawCase = LawCase> {
  /** snake_case, used by `--law`. */
  readonly name: string;
  /**
   * Formulas the law applies to; `"all"` for every registry formula the implementation declares,
   * `"batched"` for those with leading batch axes.
   */
  readonly formulas: readonly string[] | "all" | "batched";
  /** One line of math. */
  readonly statement: string;
  readonly tolerance: LawTolerance;
  /** Other formulas the check calls for a target formula (e.g. `attention` for `mha`). */
  readonly requires?: (formula: string) => readonly string[];
  /**
   * The check needs the target formula's backward pass: `"required"` (formulas without one are
   * left out), `"optional"` (used when present); a function decides per formula.
   */
  readonly backward?: "required" | "optional" | ((formula: string) => "required" | "optional");
  /** Cases over the scope's formulas (deterministic given fast-check's seed). */
  arbitrary(scope: LawScope): fc.Arbitrary<C>;
  /** Pass, or a structured failure. Never throws for an implementation's mistakes. */
  check(impl: Implementation, c: C): Promise<LawVerdict>;
}

// ---------------------------------------------------------------------------------------------
// Checking helpers

/** Thrown inside a check to stop at the first violated relation. */
export class Violation extends Error {
  override name = "Violation";
  constructor(readonly failure: LawFailure) {
    super(failure.message);
  }
}

/** An error in how a law was used (unknown law, bad options): a clear message for the caller. */
export class LawUsageError extends Error {
  override name = "LawUsageError";
}

type FailureDetail = Omit<
  LawFailure,
  "law" | "formula" | "config" | "dtype" | "shapes" | "message"
>;

/**
 * The context of one check: calls the implementation with `dtype` in every request's config,
 * turns its errors into failures, and compares with derived bounds.
 */
export class Check {
  private readonly scales = new WeakMap<object, Record<string, OutputScale>>();
  /** Whether the latest request was a backward pass (failures then concern gradients). */
  private afterBackward = false;

  constructor(
    readonly law: string,
    readonly impl: Implementation,
    readonly c: LawCase,
  ) {}

  get dtype(): FloatDType {
    return this.c.dtype;
  }

  /** A request for a formula with this case's dtype in its config. */
  request(formula: string, config: FormulaConfig, inputs: NamedTensors): ForwardRequest {
    return { formula, config: { ...config, dtype: this.c.dtype }, inputs };
  }

  /** Forward; a throw or a missing output becomes a failure naming the request. */
  async forward(req: ForwardRequest, what = "forward"): Promise<NamedTensors> {
    this.afterBackward = false;
    let outs: NamedTensors;
    try {
      outs = (await this.impl.forward(req)).outputs;
    } catch (e) {
      this.fail(
        `${what}: the implementation threw on ${req.formula} with inputs ` +
          `${describeShapes(req.inputs)}: ${errorText(e)}`,
        errorDetail(e),
      );
    }
    if (outs === undefined || outs === null || typeof outs !== "object")
      this.fail(`${what}: ${req.formula} returned no outputs`);
    return outs;
  }

  /** One named output of a forward call (a failure when absent or not a Tensor). */
  async output(req: ForwardRequest, name: string, what = "forward"): Promise<Tensor> {
    const outs = await this.forward(req, what);
    return this.pick(outs, name, req.formula, what);
  }

  pick(outs: NamedTensors, name: string, formula: string, what: string): Tensor {
    const t = outs[name];
    if (!(t instanceof Tensor))
      this.fail(
        `${what}: ${formula} did not return output "${name}" (it returned ` +
          `${Object.keys(outs).join(", ") || "nothing"})`,
      );
    return t;
  }

  /** Backward; a throw or a missing gradient becomes a failure. */
  async backward(req: BackwardRequest, what = "backward"): Promise<NamedTensors> {
    this.afterBackward = true;
    if (this.impl.backwardPass === undefined)
      this.fail(`${what}: the implementation has no backwardPass`);
    try {
      return (await this.impl.backwardPass(req)).grads;
    } catch (e) {
      this.fail(
        `${what}: the implementation threw on the backward pass of ` +
          `${req.formula} with inputs ${describeShapes(req.inputs)}: ` +
          `${errorText(e)}`,
        errorDetail(e),
      );
    }
  }

  supportsBackward(formula: string): boolean {
    return supportsBackward(this.impl, formula);
  }

  /** Stop the check with a failure. */
  fail(message: string, detail: FailureDetail = {}): never {
    throw new Violation({
      law: this.law,
      formula: this.c.formula,
      config: this.c.config,
      dtype: this.c.dtype,
      shapes: shapesOf(this.c.inputs),
      message,
      ...detail,
      ...(this.afterBackward ? { afterBackward: true } : {}),
    });
  }

  /**
   * |actual − expected| ≤ allowed element-wise (values compared in float64; −0 = +0; NaN or ±∞
   * where a finite value is expected always fails). `allowed` is a number or one bound per element.
   */
  expectClose(
    quantity: string,
    expected: Tensor | ArrayLike<number>,
    actual: Tensor | ArrayLike<number>,
    allowed: number | ArrayLike<number>,
    reason: string,
    values?: Record<string, unknown>,
  ): void {
    const e =
      expected instanceof Tensor
        ? expected
        : Tensor.from(Array.from(expected), "f64", [expected.length]);
    const a =
      actual instanceof Tensor ? actual : Tensor.from(Array.from(actual), "f64", [actual.length]);
    if (
      e.size !== a.size ||
      (e.shape.length === a.shape.length && e.shape.some((d, i) => d !== a.shape[i]))
    ) {
      this.fail(
        `${quantity}: shape ${shapeToString(a.shape)} where ${shapeToString(e.shape)} was expected`,
        { quantity },
      );
    }
    if (typeof allowed === "number") {
      if (!(allowed >= 0) || !Number.isFinite(allowed))
        this.fail(`${quantity}: the derived bound is not a finite number (${allowed}); ${reason}`, {
          quantity,
        });
      const r = compareTensors(e.dtype === "f64" ? e : e.to("f64"), a.to("f64"), {
        atol: allowed,
        rtol: 0,
        name: quantity,
      });
      if (!r.ok) {
        // the element using the largest share of the bound (compareTensors' worst)
        const worst = r.worst ?? r.firstMismatches[0];
        this.fail(
          `${quantity}: ${r.mismatched} of ${r.size} elements differ by more than the bound ${fmt(allowed)}`,
          {
            quantity,
            ...(worst !== null && worst !== undefined
              ? {
                  index: worst.index,
                  expected: worst.expected,
                  actual: worst.actual,
                  absError: worst.absError,
                  relError: worst.relError,
                }
              : {}),
            allowed,
            toleranceReason: reason,
            ...(values !== undefined ? { values } : {}),
          },
        );
      }
      return;
    }
    // one bound per element: find the element using the largest share of its bound
    for (let i = 0; i < e.size; i++) {
      if (!(allowed[i]! >= 0))
        this.fail(
          `${quantity}: the derived bound at element ` +
            `${JSON.stringify(e.unravel(i))} is ${allowed[i]} (it depends on values ` +
            `that are not finite); ${reason}`,
          { quantity, index: e.unravel(i) },
        );
    }
    let worst = -1;
    let worstShare = 1;
    let count = 0;
    for (let i = 0; i < e.size; i++) {
      const ev = e.data[i]!;
      const av = a.data[i]!;
      const bound = allowed[i]!;
      const diff = ev === av ? 0 : Math.abs(av - ev);
      const bad = !(diff <= bound) || (Number.isFinite(ev) && !Number.isFinite(av));
      if (bad) {
        count++;
        const share = bound > 0 ? diff / bound : Infinity;
        if (worst < 0 || !(share <= worstShare)) {
          worst = i;
          worstShare = share;
        }
      }
    }
    if (count > 0) {
      const ev = e.data[worst]!;
      const av = a.data[worst]!;
      const abs = Math.abs(av - ev);
      this.fail(`${quantity}: ${count} of ${e.size} elements differ by more than their bound`, {
        quantity,
        index: e.unravel(worst),
        expected: ev,
        actual: av,
        absError: Number.isNaN(abs) ? Infinity : abs,
        relError: ev !== 0 ? abs / Math.abs(ev) : abs === 0 ? 0 : Infinity,
        allowed: allowed[worst]!,
        toleranceReason: reason,
        ...(values !== undefined ? { values } : {}),
      });
    }
  }

  /** Values must be exactly equal (as IEEE values: −0 = +0). */
  expectEqual(
    quantity: string,
    expected: Tensor | ArrayLike<number>,
    actual: Tensor | ArrayLike<number>,
    reason: string,
    values?: Record<string, unknown>,
  ): void {
    this.expectClose(quantity, expected, actual, 0, reason, values);
  }

  /** Every element finite (the law's inputs are finite and bounded). */
  expectFinite(quantity: string, t: Tensor): void {
    for (let i = 0; i < t.size; i++) {
      const v = t.data[i]!;
      if (!Number.isFinite(v)) {
        this.fail(
          `${quantity}: element ${JSON.stringify(t.unravel(i))} is ${v} for finite, bounded inputs`,
          { quantity, index: t.unravel(i), actual: v },
        );
      }
    }
  }

  /** The dtype the implementation must answer in. */
  expectDtype(quantity: string, t: Tensor): void {
    if (t.dtype !== this.c.dtype)
      this.fail(`${quantity}: dtype ${t.dtype} where ${this.c.dtype} was requested`, { quantity });
  }

  /** The measured output scales of a request (one probe per request object; see tolerance.ts). */
  async scaleOf(req: ForwardRequest, base: NamedTensors): Promise<Record<string, OutputScale>> {
    let s = this.scales.get(req);
    if (s === undefined) {
      try {
        s = await sensitivity(this.impl, req, base, this.c.dtype);
      } catch (e) {
        this.fail(
          `sensitivity probe: the implementation threw on ${req.formula} with ` +
            `slightly perturbed inputs ${describeShapes(req.inputs)}: ` +
            `${errorText(e)}`,
          errorDetail(e),
        );
      }
      this.scales.set(req, s);
    }
    return s;
  }

  /**
   * Two evaluations of the same quantity agree within the conditioned bound 2·γ_K·(S + κ̂ + Z) of
   * `req` (whose outputs `base` are the reference point of the probe; Z its cancelled magnitude).
   */
  async expectTwin(
    quantity: string,
    expected: Tensor,
    actual: Tensor,
    req: ForwardRequest,
    base: NamedTensors,
    output: string,
    values?: Record<string, unknown>,
  ): Promise<void> {
    const scale = (await this.scaleOf(req, base))[output];
    if (scale === undefined) this.fail(`${quantity}: output ${output} is missing`);
    const ctx = { formula: req.formula, config: req.config, inputs: req.inputs };
    const K = roundingDepth(ctx);
    const Z = cancelledMagnitude(ctx, base)[output] ?? 0;
    this.expectClose(
      quantity,
      expected,
      actual,
      conditionedBound(this.c.dtype, K, scale, Z),
      conditionedReason(this.c.dtype, K, scale, Z),
      values,
    );
  }
}

/** Run a law's check, turning violations and unexpected errors into verdicts. */
export async function runCheck<C extends LawCase>(
  law: Law<C>,
  impl: Implementation,
  c: C,
): Promise<LawVerdict> {
  try {
    const v = await law.check(impl, c);
    return v;
  } catch (e) {
    if (e instanceof Violation) return { ok: false, failure: e.failure };
    const base = {
      law: law.name,
      formula: c.formula,
      config: c.config,
      dtype: c.dtype,
      shapes: shapesOf(c.inputs),
    };
    if (e instanceof ImplementationError)
      return {
        ok: false,
        failure: { ...base, message: `the implementation failed: ${e.message}`, errorKind: e.kind },
      };
    return { ok: false, failure: { ...base, message: `the check raised ${errorText(e)}` } };
  }
}

/** A check body that throws Violation, wrapped as a law's `check`. */
export function checked<C extends LawCase>(
  name: string,
  body: (k: Check, c: C) => Promise<void>,
): (impl: Implementation, c: C) => Promise<LawVerdict> {
  return async (impl, c) => {
    await body(new Check(name, impl, c), c);
    return { ok: true };
  };
}

function describeShapes(ts: NamedTensors): string {
  const parts = Object.entries(ts).map(([k, v]) => `${k} ${v.dtype}${shapeToString(v.shape)}`);
  return parts.length > 6
    ? `${parts.slice(0, 6).join(", ")} … (${parts.length} tensors)`
    : parts.join(", ");
}

/** The kind of an implementation error, carried into the failure it causes. */
function errorDetail(e: unknown): FailureDetail {
  return e instanceof ImplementationError ? { errorKind: e.kind } : {};
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

export function fmt(x: number): string {
  if (x === 0) return "0";
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e5 ? String(Number(x.toPrecision(6))) : x.toExponential(3);
}
