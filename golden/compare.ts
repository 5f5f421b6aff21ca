/**
 * The comparator: one rule for every tensor specformer checks (golden outputs, gradients,
 * another implementation's results), and a report that tells the whole story of a mismatch.
 *
 * Rule (torch.testing's `isclose`, `equal_nan=True`): element `a` matches expected `e` iff
 *
 *     |a − e| ≤ atol + rtol·|e|
 *
 * with NaN matching only NaN at the same position, ±Inf matching only the same infinity, and a
 * difference of finite values that overflows to ∞ failing even where the allowance overflows.
 * Dtype and shape are checked first; a mismatch there skips the value comparison. The
 * arithmetic of the rule is done in float64 for every dtype.
 */
import { textTable } from "../io/text.js";
import { finiteOrString, wireJSON } from "../autodiff/wire.js";
import { sameShape, shapeToString, specialCounts } from "../autodiff/tensor.js";
import type { DType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { compareCodePoints } from "../io/safetensors.js";

/** A tolerance for one tensor; `reason` says how it was derived. */
export interface Tolerance {
  readonly rtol: number;
  readonly atol: number;
  readonly reason?: string;
}

/** Where the tolerance a comparison used came from. */
export type ToleranceSource = "caller" | "case" | "default";

/** Per-dtype defaults, those of `torch.testing.assert_close`; integers compare exactly. */
export const DEFAULT_TOLERANCE: Readonly<Record<DType, Required<Tolerance>>> = Object.freeze({
  f32: { rtol: 1.3e-6, atol: 1e-5, reason: "torch.testing default for float32" },
  f64: { rtol: 1e-7, atol: 1e-7, reason: "torch.testing default for float64" },
  i32: { rtol: 0, atol: 0, reason: "integers compare exactly" },
});

/** How many mismatches a report lists individually (the count covers all of them). */
const LISTED_MISMATCHES = 5;

export interface SpecialCounts {
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  readonly negZero: number;
}

/** One element of a comparison. */
export interface ElementReport {
  /** Multi-index, e.g. `[2, 5]`. */
  readonly index: readonly number[];
  readonly expected: number;
  readonly actual: number;
  /** `|a − e|`; ∞ when exactly one side is NaN or the infinities differ. */
  readonly absError: number;
  /** `|a − e| / |e|`; ∞ when `e = 0` and `a ≠ 0`, 0 when both are 0. */
  readonly relError: number;
  /** Distance in units in the last place of the expected dtype (∞ when exactly one side is NaN). */
  readonly ulp: number;
  /** `|a − e| / (atol + rtol·|e|)`: the share of the tolerance budget used (> 1 fails). */
  readonly budget: number;
}

/**
 * - `ok`: every element within tolerance.
 * - `values`: same dtype and shape, some elements outside tolerance.
 * - `dtype`, `shape`: not comparable; no values compared.
 * - `missing`: expected but absent; `extra`: present but not expected.
 */
export type TensorStatus = "ok" | "values" | "dtype" | "shape" | "missing" | "extra";

/**
 * The comparison of one tensor: status, dtypes and shapes on both sides, the tolerance used and where it came from, and
 * error statistics (absolute, relative, ULP, share of the tolerance budget) with the worst and
 * first mismatching elements.
 */
export interface TensorReport {
  readonly name: string;
  readonly ok: boolean;
  readonly status: TensorStatus;
  /** One sentence for the non-value statuses (dtype/shape mismatch, missing, extra). */
  readonly problem: string | null;
  readonly expectedDtype: DType | null;
  readonly actualDtype: DType | null;
  readonly expectedShape: readonly number[] | null;
  readonly actualShape: readonly number[] | null;
  readonly tolerance: {
    readonly rtol: number;
    readonly atol: number;
    readonly reason: string;
    readonly source: ToleranceSource;
  };
  /** Elements compared (0 when the values were not compared). */
  readonly size: number;
  /** Elements outside tolerance. */
  readonly mismatched: number;
  /** `mismatched` as a percentage of `size` (0 to 100). */
  readonly mismatchedPercent: number;
  readonly maxAbsError: number;
  /**
   * Largest `|a − e| / |e|` over elements with `e ≠ 0` (elements with `e = 0` have no relative
   * error; `atol` alone governs them). Matching infinities and NaNs count 0, differing ones ∞.
   */
  readonly maxRelError: number;
  /** Largest ULP distance (exact up to 2^53, rounded above). */
  readonly maxUlp: number;
  /** Largest share of the tolerance budget used over all elements: 0.3 = 30 %, > 1 fails. */
  readonly budgetUsed: number;
  /** The element with the largest budget share (first of equals); null when nothing differs. */
  readonly worst: ElementReport | null;
  /** The first {@link LISTED_MISMATCHES} mismatching elements in row-major order. */
  readonly firstMismatches: readonly ElementReport[];
  /** NaN, +Inf, −Inf and −0 counts on both sides (null when values were not compared). */
  readonly specials: { readonly expected: SpecialCounts; readonly actual: SpecialCounts } | null;
}

/** The comparison of a set of tensors (a golden case's outputs and gradients): a report per tensor and the counts. */
export interface CaseReport {
  /** Case name or other title. */
  readonly name: string;
  readonly ok: boolean;
  /** Expected tensors in code-point order of names, then extra ones. */
  readonly tensors: readonly TensorReport[];
  /** Tensors that pass. */
  readonly passed: number;
  /** Tensors that fail. */
  readonly failed: number;
}

/**
 * Options of {@link compareTensors}: tolerance overrides (the caller's win over the case's, which
 * win over the dtype defaults) and the report's name.
 */
export interface CompareOptions {
  /** Overrides the case's and the default rtol. */
  readonly rtol?: number;
  /** Overrides the case's and the default atol. */
  readonly atol?: number;
  /** Tensor name for the report (default `"tensor"`). */
  readonly name?: string;
  /** Dtype whose defaults apply (default: the expected tensor's). */
  readonly dtype?: DType;
  /** A tolerance stated by the case (used for what the caller leaves out). */
  readonly caseTolerance?: Tolerance;
}

// ---------------------------------------------------------------------------------------------
// ULP distance

const f32buf = new Float32Array(1);
const f32bits = new Int32Array(f32buf.buffer);
const f64buf = new Float64Array(1);
const f64bits = new BigInt64Array(f64buf.buffer);

/** Float32 bits mapped to an integer line where adjacent floats differ by 1 and −0 = +0 = 0. */
function orderedF32(bits: number): number {
  return bits < 0 ? -(bits & 0x7fffffff) : bits;
}

/** Float64 bits mapped to an integer line where adjacent doubles differ by 1 and −0 = +0 = 0. */
function orderedF64(bits: bigint): bigint {
  return bits < 0n ? -(bits & 0x7fffffffffffffffn) : bits;
}

/**
 * Distance between two values in units in the last place of `format`: the number of
 * representable values between them, counted through the bit patterns (sign-magnitude mapped
 * to a line, so −0 and +0 are 0 apart and the count crosses zero). For `"f32"` the values are
 * first rounded to float32. For `"i32"` it is the integer difference. Both NaN: 0; one NaN: null.
 *
 * @example ulpDistance(1, 1 + 2 ** -52, "f64") // 1n
 */
export function ulpDistance(a: number, b: number, format: DType): bigint | null {
  const an = a !== a;
  const bn = b !== b;
  if (an || bn) return an && bn ? 0n : null;
  if (format === "i32") return BigInt(Math.abs(a - b));
  if (format === "f32") {
    f32buf[0] = a;
    const x = orderedF32(f32bits[0]!);
    f32buf[0] = b;
    return BigInt(Math.abs(x - orderedF32(f32bits[0]!)));
  }
  f64buf[0] = a;
  const x = orderedF64(f64bits[0]!);
  f64buf[0] = b;
  const d = x - orderedF64(f64bits[0]!);
  return d < 0n ? -d : d;
}

// ---------------------------------------------------------------------------------------------
// Comparing

/** The default tolerance of a dtype. */
export function defaultTolerance(dtype: DType): Required<Tolerance> {
  return DEFAULT_TOLERANCE[dtype];
}

function checkTol(value: number | undefined, what: string, name: string): void {
  if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value >= 0)) {
    throw new RangeError(
      `compare ${JSON.stringify(name)}: ${what} must be a finite number ≥ 0, got ${String(value)}`,
    );
  }
}

/** Resolve the tolerance: the caller's values, then the case's, then the dtype default. */
function resolveTolerance(
  dtype: DType,
  name: string,
  caller: { rtol?: number | undefined; atol?: number | undefined },
  fromCase?: Tolerance,
): TensorReport["tolerance"] {
  checkTol(caller.rtol, "rtol", name);
  checkTol(caller.atol, "atol", name);
  if (fromCase !== undefined) {
    checkTol(fromCase.rtol, "the case's rtol", name);
    checkTol(fromCase.atol, "the case's atol", name);
  }
  const base = fromCase ?? DEFAULT_TOLERANCE[dtype];
  const baseSource: ToleranceSource = fromCase === undefined ? "default" : "case";
  const baseReason =
    base.reason ??
    (fromCase === undefined ? DEFAULT_TOLERANCE[dtype].reason : "stated by the case");
  if (caller.rtol === undefined && caller.atol === undefined) {
    return { rtol: base.rtol, atol: base.atol, reason: baseReason, source: baseSource };
  }
  const parts = [caller.rtol !== undefined ? "rtol" : "", caller.atol !== undefined ? "atol" : ""]
    .filter(Boolean)
    .join(" and ");
  const kept = caller.rtol === undefined ? "rtol" : caller.atol === undefined ? "atol" : "";
  return {
    rtol: caller.rtol ?? base.rtol,
    atol: caller.atol ?? base.atol,
    reason:
      `${parts} given by the ` +
      `caller${kept === "" ? "" : `; ${kept} ${baseSource === "case" ? "from the case" : "default"}`}`,
    source: "caller",
  };
}

function unravel(shape: readonly number[], flat: number): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    idx[i] = flat % d;
    flat = Math.floor(flat / d);
  }
  return idx;
}

function emptyReport(
  name: string,
  status: TensorStatus,
  ok: boolean,
  problem: string,
  expected: Tensor | undefined,
  actual: Tensor | undefined,
  tolerance: TensorReport["tolerance"],
): TensorReport {
  return {
    name,
    ok,
    status,
    problem,
    expectedDtype: expected?.dtype ?? null,
    actualDtype: actual?.dtype ?? null,
    expectedShape: expected?.shape ?? null,
    actualShape: actual?.shape ?? null,
    tolerance,
    size: 0,
    mismatched: 0,
    mismatchedPercent: 0,
    maxAbsError: 0,
    maxRelError: 0,
    maxUlp: 0,
    budgetUsed: 0,
    worst: null,
    firstMismatches: [],
    specials: null,
  };
}

function describe(t: Tensor): string {
  return `${t.dtype} ${shapeToString(t.shape)}`;
}

/**
 * Compare one tensor with its expected value.
 *
 * @example compareTensors(Tensor.from([1, 2]), Tensor.from([1, 2.5])).firstMismatches[0]?.index // [1]
 */
export function compareTensors(
  expected: Tensor,
  actual: Tensor,
  opts: CompareOptions = {},
): TensorReport {
  const name = opts.name ?? "tensor";
  const dtype = opts.dtype ?? expected.dtype;
  const tolerance = resolveTolerance(dtype, name, opts, opts.caseTolerance);
  if (expected.dtype !== actual.dtype) {
    const shapes = sameShape(expected.shape, actual.shape) ? "" : " (the shapes differ too)";
    return emptyReport(
      name,
      "dtype",
      false,
      `dtype mismatch: expected ${describe(expected)}, actual ${describe(actual)}${shapes}`,
      expected,
      actual,
      tolerance,
    );
  }
  if (!sameShape(expected.shape, actual.shape)) {
    return emptyReport(
      name,
      "shape",
      false,
      `shape mismatch: expected ${shapeToString(expected.shape)}, actual ` +
        `${shapeToString(actual.shape)} (${expected.size} vs ${actual.size} elements)`,
      expected,
      actual,
      tolerance,
    );
  }
  const { rtol, atol } = tolerance;
  const e = expected.data;
  const a = actual.data;
  const n = e.length;
  // bit views for the ULP distance in the expected dtype's format
  const eb64 =
    dtype === "f64" && expected.dtype === "f64"
      ? new BigInt64Array(e.buffer, e.byteOffset, n)
      : null;
  const ab64 = eb64 !== null ? new BigInt64Array(a.buffer, a.byteOffset, n) : null;
  const eb32 =
    expected.dtype === "f32" && dtype === "f32" ? new Int32Array(e.buffer, e.byteOffset, n) : null;
  const ab32 = eb32 !== null ? new Int32Array(a.buffer, a.byteOffset, n) : null;

  let mismatched = 0;
  let maxAbs = 0;
  let maxRel = 0;
  let maxUlp = 0;
  let budgetUsed = 0;
  let worstFlat = -1;
  const mismatchFlats: number[] = [];
  const elementUlp = (i: number, ev: number, av: number): number => {
    if (ev !== ev || av !== av) return ev !== ev && av !== av ? 0 : Infinity;
    if (ab64 !== null) {
      const d = orderedF64(eb64![i]!) - orderedF64(ab64[i]!);
      return Number(d < 0n ? -d : d);
    }
    if (ab32 !== null) return Math.abs(orderedF32(eb32![i]!) - orderedF32(ab32[i]!));
    const u = ulpDistance(ev, av, dtype);
    return u === null ? Infinity : Number(u);
  };
  for (let i = 0; i < n; i++) {
    const ev = e[i]!;
    const av = a[i]!;
    let abs: number;
    let rel: number;
    let budget: number;
    let pass: boolean;
    if (
      ev !== ev ||
      av !== av ||
      ev === Infinity ||
      ev === -Infinity ||
      av === Infinity ||
      av === -Infinity
    ) {
      // NaN matches only NaN; an infinity matches only the same infinity
      pass = ev === av || (ev !== ev && av !== av);
      abs = pass ? 0 : Infinity;
      rel = abs;
      budget = abs;
    } else {
      abs = Math.abs(av - ev);
      const allowed = atol + rtol * Math.abs(ev);
      // a difference that overflows to ∞ fails even where the allowance overflows too
      pass = abs <= allowed && abs !== Infinity;
      rel = ev !== 0 ? abs / Math.abs(ev) : 0; // no relative error at e = 0: atol governs it
      budget = abs === Infinity ? Infinity : allowed > 0 ? abs / allowed : abs === 0 ? 0 : Infinity;
    }
    if (abs > maxAbs) maxAbs = abs;
    if (rel > maxRel) maxRel = rel;
    if (budget > budgetUsed) {
      budgetUsed = budget;
      worstFlat = i;
    }
    if (abs !== 0 || !pass) {
      const u = elementUlp(i, ev, av);
      if (u > maxUlp) maxUlp = u;
    }
    if (!pass) {
      mismatched++;
      if (mismatchFlats.length < LISTED_MISMATCHES) mismatchFlats.push(i);
    }
  }
  const element = (i: number): ElementReport => {
    const ev = e[i]!;
    const av = a[i]!;
    const nonfinite = ev !== ev || av !== av || !Number.isFinite(ev) || !Number.isFinite(av);
    const same = ev === av || (ev !== ev && av !== av);
    const abs = nonfinite ? (same ? 0 : Infinity) : Math.abs(av - ev);
    const allowed = atol + rtol * Math.abs(ev);
    return {
      index: unravel(expected.shape, i),
      expected: ev,
      actual: av,
      absError: abs,
      relError: nonfinite ? abs : ev !== 0 ? abs / Math.abs(ev) : abs === 0 ? 0 : Infinity,
      ulp: elementUlp(i, ev, av),
      budget:
        nonfinite || abs === Infinity
          ? abs
          : allowed > 0
            ? abs / allowed
            : abs === 0
              ? 0
              : Infinity,
    };
  };
  return {
    name,
    ok: mismatched === 0,
    status: mismatched === 0 ? "ok" : "values",
    problem: null,
    expectedDtype: expected.dtype,
    actualDtype: actual.dtype,
    expectedShape: expected.shape,
    actualShape: actual.shape,
    tolerance,
    size: n,
    mismatched,
    mismatchedPercent: n === 0 ? 0 : (100 * mismatched) / n,
    maxAbsError: maxAbs,
    maxRelError: maxRel,
    maxUlp,
    budgetUsed,
    worst: worstFlat >= 0 ? element(worstFlat) : null,
    firstMismatches: mismatchFlats.map(element),
    specials: { expected: specialCounts(expected), actual: specialCounts(actual) },
  };
}

export interface CompareNamedOptions {
  /** Overrides every tolerance. */
  readonly rtol?: number;
  readonly atol?: number;
  /** Report tensors the expected set lacks without failing (default false: an extra tensor fails). */
  readonly allowExtra?: boolean;
  /** Title of the report (e.g. the case name). */
  readonly title?: string;
}

/**
 * Compare two named sets of tensors: every expected tensor (in code-point order of names), then
 * every extra one. `tolerances` holds the case's per-tensor tolerances (missing ones use the
 * dtype default).
 */
export function compareNamed(
  expected: NamedTensors | ReadonlyMap<string, Tensor>,
  actual: NamedTensors | ReadonlyMap<string, Tensor>,
  tolerances: Readonly<Record<string, Tolerance>> = {},
  opts: CompareNamedOptions = {},
): CaseReport {
  const exp =
    expected instanceof Map ? expected : new Map(Object.entries(expected as NamedTensors));
  const act = actual instanceof Map ? actual : new Map(Object.entries(actual as NamedTensors));
  const caller = { rtol: opts.rtol, atol: opts.atol };
  const reports: TensorReport[] = [];
  for (const name of [...exp.keys()].sort(compareCodePoints)) {
    const e = exp.get(name)!;
    const a = act.get(name);
    const caseTol = Object.prototype.hasOwnProperty.call(tolerances, name)
      ? tolerances[name]
      : undefined;
    if (a === undefined) {
      const tol = resolveTolerance(e.dtype, name, caller, caseTol);
      reports.push(
        emptyReport(
          name,
          "missing",
          false,
          `missing: expected ${describe(e)}, but the actual set has no tensor ${JSON.stringify(name)}`,
          e,
          undefined,
          tol,
        ),
      );
      continue;
    }
    reports.push(
      compareTensors(e, a, { name, rtol: opts.rtol, atol: opts.atol, caseTolerance: caseTol }),
    );
  }
  for (const name of [...act.keys()].filter((k) => !exp.has(k)).sort(compareCodePoints)) {
    const a = act.get(name)!;
    const tol = resolveTolerance(a.dtype, name, caller);
    const allow = opts.allowExtra === true;
    reports.push(
      emptyReport(
        name,
        "extra",
        allow,
        `extra: the actual set has ${JSON.stringify(name)} (${describe(a)}), which the expected set lacks`,
        undefined,
        a,
        tol,
      ),
    );
  }
  const failed = reports.filter((r) => !r.ok).length;
  return {
    name: opts.title ?? "comparison",
    ok: failed === 0,
    tensors: reports,
    passed: reports.length - failed,
    failed,
  };
}

/** The parts of a golden case the comparison needs (see cases-io.ts `GoldenCase`). */
export interface ExpectedCase {
  readonly meta: { readonly case: string };
  readonly outputs: NamedTensors;
  readonly grads: NamedTensors;
  /** Keyed `out.<name>` / `grad.<name>`; entries whose `source` is `"default"` are the dtype defaults. */
  readonly tolerance: Readonly<Record<string, Tolerance & { readonly source?: string }>>;
}

/**
 * Compare an implementation's results with a golden case: outputs as `out.<name>` and, when
 * `actual.grads` is given, gradients as `grad.<name>`. Tolerances come from the case (its
 * stated ones or the per-dtype defaults) unless the caller overrides them.
 */
export function compareCase(
  golden: ExpectedCase,
  actual: { readonly outputs: NamedTensors; readonly grads?: NamedTensors },
  opts: CompareNamedOptions = {},
): CaseReport {
  const prefix = (p: string, t: NamedTensors): Map<string, Tensor> =>
    new Map(Object.entries(t).map(([k, v]) => [`${p}.${k}`, v]));
  const expected = prefix("out", golden.outputs);
  const got = prefix("out", actual.outputs);
  if (actual.grads !== undefined) {
    for (const [k, v] of prefix("grad", golden.grads)) expected.set(k, v);
    for (const [k, v] of prefix("grad", actual.grads)) got.set(k, v);
  }
  // defaults are re-derived per tensor (and so reported as defaults, not as the case's)
  const stated: Record<string, Tolerance> = {};
  for (const [k, t] of Object.entries(golden.tolerance)) if (t.source !== "default") stated[k] = t;
  return compareNamed(expected, got, stated, { ...opts, title: opts.title ?? golden.meta.case });
}

// ---------------------------------------------------------------------------------------------
// Output

/** Shortest exponent form (≥ 7 significant digits) that reads back as `x` in its dtype. */
function roundTrips(x: number, dtype: DType | null, digits: number): string {
  const s = x.toExponential(digits - 1);
  return Number(s) === x || (dtype === "f32" && Math.fround(Number(s)) === x) ? s : "";
}

function cStyle(s: string): string {
  // JS "1.5e-7" → C "%e"-style "1.5e-07"
  return s.replace(/e([+-])(\d)$/, "e$10$2");
}

/** A value printed with enough digits to be told apart from the other value of its pair. */
export function formatValue(x: number, dtype: DType | null = "f64", other?: number): string {
  if (x !== x) return "NaN";
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  if (Object.is(x, -0)) return "-0";
  if (dtype === "i32") return String(x);
  for (let p = 7; p <= 17; p++) {
    const s = roundTrips(x, dtype, p);
    if (s === "") continue;
    if (
      other !== undefined &&
      Number.isFinite(other) &&
      other !== x &&
      other.toExponential(p - 1) === s
    )
      continue;
    return cStyle(s);
  }
  return cStyle(x.toExponential(16));
}

/** An error or ratio in `%.6e` style (∞ shown as `inf`). */
export function formatError(x: number): string {
  if (x !== x) return "nan";
  if (x === Infinity) return "inf";
  return cStyle(x.toExponential(6));
}

function formatBudget(x: number): string {
  if (x === Infinity) return "inf";
  if (x === 0) return "0";
  return x >= 0.01 && x < 1000 ? x.toFixed(3) : cStyle(x.toExponential(2));
}

function formatPercent(x: number): string {
  return x === 0 ? "0 %" : x < 0.01 ? `${x.toExponential(1)} %` : `${x.toFixed(2)} %`;
}

function specialsText(s: SpecialCounts): string {
  return `NaN ${s.nan}, +Inf ${s.posInf}, -Inf ${s.negInf}, -0 ${s.negZero}`;
}

function elementRow(el: ElementReport, dtype: DType | null): string[] {
  return [
    shapeToString(el.index),
    formatValue(el.expected, dtype, el.actual),
    formatValue(el.actual, dtype, el.expected),
    formatError(el.absError),
    formatError(el.relError),
    el.ulp === Infinity ? "inf" : String(el.ulp),
    formatBudget(el.budget),
  ];
}

/** A readable fixed-width report: a summary table, then the story of each failing tensor. */
export function formatReport(report: CaseReport | TensorReport): string {
  const c: CaseReport =
    "tensors" in report
      ? report
      : {
          name: report.name,
          ok: report.ok,
          tensors: [report],
          passed: report.ok ? 1 : 0,
          failed: report.ok ? 0 : 1,
        };
  const out: string[] = [
    `${c.name}: ${c.ok ? "PASS" : "FAIL"} (${c.passed} of ${c.tensors.length} tensors pass)`,
    "",
  ];
  const rows = c.tensors.map((r) => [
    r.name,
    r.ok ? "ok" : r.status === "values" ? "MISMATCH" : r.status.toUpperCase(),
    r.expectedDtype ?? r.actualDtype ?? "",
    shapeToString(r.expectedShape ?? r.actualShape ?? []),
    formatError(r.tolerance.rtol),
    formatError(r.tolerance.atol),
    r.size === 0 && r.status !== "ok" ? "-" : formatError(r.maxAbsError),
    r.size === 0 && r.status !== "ok" ? "-" : formatError(r.maxRelError),
    r.size === 0 && r.status !== "ok" ? "-" : r.maxUlp === Infinity ? "inf" : String(r.maxUlp),
    r.size === 0 && r.status !== "ok" ? "-" : formatBudget(r.budgetUsed),
    r.status === "ok" || r.status === "values"
      ? `${r.mismatched} (${formatPercent(r.mismatchedPercent)})`
      : "-",
  ]);
  out.push(
    ...textTable(
      [
        "tensor",
        "status",
        "dtype",
        "shape",
        "rtol",
        "atol",
        "max abs err",
        "max rel err",
        "max ULP",
        "budget",
        "mismatched",
      ],
      rows,
    ),
  );
  for (const r of c.tensors) {
    const specials = r.specials;
    const hasSpecials =
      specials !== null &&
      (Object.values(specials.expected).some((v) => v > 0) ||
        Object.values(specials.actual).some((v) => v > 0));
    if (r.ok && !hasSpecials) continue;
    out.push("");
    if (r.problem !== null) {
      out.push(`${r.name}: ${r.problem}`);
      continue;
    }
    const dtype = r.expectedDtype;
    if (!r.ok) {
      out.push(
        `${r.name}: ${r.mismatched} of ${r.size} elements ` +
          `(${formatPercent(r.mismatchedPercent)}) outside |a - e| <= atol + rtol*|e| ` +
          `(rtol ${formatError(r.tolerance.rtol)}, atol ${formatError(r.tolerance.atol)}: ${r.tolerance.reason})`,
      );
      const head = ["index", "expected", "actual", "abs err", "rel err", "ULP", "budget"];
      if (r.worst !== null) {
        out.push("  worst element:");
        out.push(...textTable(head, [elementRow(r.worst, dtype)]).map((l) => `    ${l}`));
      }
      out.push(`  mismatches (first ${r.firstMismatches.length} of ${r.mismatched}):`);
      out.push(
        ...textTable(
          head,
          r.firstMismatches.map((el) => elementRow(el, dtype)),
        ).map((l) => `    ${l}`),
      );
    } else {
      out.push(`${r.name}: ok`);
    }
    if (specials !== null && hasSpecials) {
      out.push(`  specials  expected: ${specialsText(specials.expected)}`);
      out.push(`            actual:   ${specialsText(specials.actual)}`);
    }
  }
  return out.join("\n") + "\n";
}

/**
 * The report as JSON text: `schema_version` first, keys in snake_case (docs/schema/compare.schema.json).
 * Numbers JSON cannot hold are strings: `"NaN"`, `"Infinity"`,
 * `"-Infinity"`, and `"-0"` for negative zero (so specials are never masked).
 */
export function reportToJSON(report: CaseReport | TensorReport): string {
  return wireJSON(report, (v) => (Object.is(v, -0) ? "-0" : finiteOrString(v)));
}
