/**
 * Tolerances for the tensors localisation compares (intermediate values and sub-formula outputs),
 * derived by the same two rules the golden generator uses for the committed cases
 * (`golden/specformer_golden.py`: `tolerance_f32`, `tolerance_f64`; golden/GENERATOR.md), with
 * the reference standing in for PyTorch:
 *
 * - **float32**: `e = max |ŷ₃₂ − ŷ₆₄|` (the reference in float32 against the reference in float64
 *   on the same float32 inputs), `s = max(1, max |ŷ₆₄|)`; `atol = max(1e-5·s, 8·e)`,
 *   `rtol = 1.3e-6` (torch.testing's float32 rtol).
 * - **float64**: `rtol = max(1e-13, 64·K·u)` with `u = 2⁻⁵³` and `K` the rounding depth of the
 *   formula (the longest chain of roundings from an argument to an output element, from
 *   `properties/tolerance.ts`), `atol = rtol·s`; then measured: when a second computation (the
 *   reference without fused kernels) differs by more than `atol/2`, `atol = 4·` that difference
 *   and `rtol = atol/s`.
 *
 * No number here is a knob: each comes from the dtype, the reduction lengths of the formula and
 * a measurement, and the reason string says which.
 */
import type { FormulaConfig } from "../autodiff/implementation.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { roundingDepth } from "../properties/tolerance.js";

/** A derived tolerance with the sentence that explains it. */
export interface DerivedTolerance {
  readonly rtol: number;
  readonly atol: number;
  readonly reason: string;
}

const U64 = 2 ** -53;
/** torch.testing's float32 rtol, as the golden cases use. */
const F32_RTOL = 1.3e-6;

function fmt(x: number): string {
  return Number(x.toPrecision(3)).toString();
}

/** max |a − b| over entries finite on both sides (0 for none). */
function maxAbsDiff(a: Tensor, b: Tensor): number {
  let m = 0;
  const n = Math.min(a.size, b.size);
  for (let i = 0; i < n; i++) {
    const x = a.data[i]!;
    const y = b.data[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const d = Math.abs(x - y);
    if (d > m) m = d;
  }
  return m;
}

/** s = max(1, max |x|) over finite entries. */
function scaleOf(t: Tensor): number {
  let s = 1;
  for (let i = 0; i < t.size; i++) {
    const v = Math.abs(t.data[i]!);
    if (Number.isFinite(v) && v > s) s = v;
  }
  return s;
}

/** The float32 rule: `atol = max(1e-5·s, 8·e)`, `rtol = 1.3e-6`. */
function toleranceF32(ours32: Tensor, exact64: Tensor): DerivedTolerance {
  const e = maxAbsDiff(ours32, exact64);
  const s = scaleOf(exact64);
  const atol = Math.max(1e-5 * s, 8 * e);
  return {
    rtol: F32_RTOL,
    atol,
    reason:
      `float32 rule: e = max|reference f32 − reference f64| = ${fmt(e)}, s = ` +
      `${fmt(s)}; atol = max(1e-5·s, 8·e) = ${fmt(atol)}, rtol = 1.3e-6`,
  };
}

/**
 * The float64 rule: `rtol = max(1e-13, 64·K·u)`, `atol = rtol·s`, widened to 4× a measured
 * second-computation difference above `atol/2`.
 */
function toleranceF64(exact64: Tensor, K: number, second: Tensor | undefined): DerivedTolerance {
  const s = scaleOf(exact64);
  const rtol = Math.max(1e-13, 64 * K * U64);
  const atol = rtol * s;
  const base =
    `float64 rule: K = ${K}, rtol = max(1e-13, 64·K·2^-53) = ${fmt(rtol)}, ` +
    `s = ${fmt(s)}, atol = rtol·s = ${fmt(atol)}`;
  const obs = second === undefined ? 0 : maxAbsDiff(exact64, second);
  if (obs > atol / 2) {
    const wide = 4 * obs;
    return {
      rtol: wide / s,
      atol: wide,
      reason:
        `${base}; the reference without fused kernels differs by ${fmt(obs)} > ` +
        `atol/2, so atol = 4·${fmt(obs)} = ${fmt(wide)}, rtol = atol/s`,
    };
  }
  return {
    rtol,
    atol,
    reason: `${base}; the reference without fused kernels differs by ${fmt(obs)} (within atol/2)`,
  };
}

/**
 * One element matches: the same value, both NaN, or both finite and `actual` within
 * `atol + rtol·|expected|` of `expected`.
 */
export function elementMatches(
  expected: number,
  actual: number,
  tol: { readonly rtol: number; readonly atol: number },
): boolean {
  return (
    expected === actual ||
    (Number.isNaN(expected) && Number.isNaN(actual)) ||
    (Number.isFinite(expected) &&
      Number.isFinite(actual) &&
      Math.abs(actual - expected) <= tol.atol + tol.rtol * Math.abs(expected))
  );
}

/** K of a formula applied to these arguments (see `properties/tolerance.ts`). */
export function depthOf(formula: string, config: FormulaConfig, inputs: NamedTensors): number {
  return roundingDepth({ formula, config, inputs });
}

/**
 * The tolerance for one value the reference computed three ways: in the request's precision
 * (`ours`), exactly (`exact64`) and, for float64, a second time without fused kernels.
 */
export function derivedTolerance(
  dtype: FloatDType,
  ours: Tensor,
  exact64: Tensor,
  K: number,
  second?: Tensor,
): DerivedTolerance {
  return dtype === "f32" ? toleranceF32(ours, exact64) : toleranceF64(exact64, K, second);
}
