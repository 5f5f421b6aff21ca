/**
 * Laws of the softmax family and cross-entropy: probabilities lie in [0, 1] and sum to 1,
 * shifting a row by a constant changes nothing (log-sum-exp moves by the constant), gradients
 * are consistent with the forward values and sum to zero over a row, and cross-entropy is
 * log-sum-exp minus the target logit, non-negative, ln V for uniform logits.
 *
 * Error facts used below (u the dtype's unit roundoff, m the row length, z_j = x_j − max x):
 * - a computed softmax entry is within p_j·(m + 3)u + u/e of exact: the sum contributes γ_{m−1}
 *   relative, exp and the division 2u, and the rounding of z_j an absolute u·|z_j|·p_j ≤ u/e
 *   (z e^{−z} ≤ 1/e);
 * - a computed log-sum-exp is within u·|y| + (m + 2 + 2 ln m)u of exact (sum γ_{m−1}, exp errors
 *   weighted by p_j, Σ p_j|z_j| ≤ 2 ln m, the log and the final addition).
 */
import fc from "fast-check";
import { Tensor, type FloatDType } from "../../autodiff/tensor.js";
import { formulaCaseArb, floatTensorArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, fmt, type Law } from "../law.js";
import { lastAxisRows, mapT, maxAbs } from "../tensor-ops.js";
import { underflowAllowance, unitRoundoff } from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb } from "./generic.js";

const u64 = unitRoundoff("f64");
/** Error bound of a computed log-sum-exp of value y over m entries. */
const logsumexpError = (y: number, m: number, dtype: FloatDType): number =>
  unitRoundoff(dtype) * (Math.abs(y) + m + 2 + 2 * Math.log(Math.max(1, m)));

function rowSums(t: Tensor, f: (v: number) => number = (v) => v): number[] {
  return lastAxisRows(t).map((r) => r.reduce((s, v) => s + f(v), 0));
}

/** max over rows of (max − min) of the row: the largest |x_j − max x|. */
function maxSpread(t: Tensor): number {
  let s = 0;
  for (const r of lastAxisRows(t)) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of r) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (r.length > 0) s = Math.max(s, hi - lo);
  }
  return s;
}

/**
 * Row offsets the generators add now and then: rows entirely below −1e4 (masked or saturated
 * scores), where a kernel that seeds its running maximum at −10000 instead of −∞ divides 0 by 0.
 * One case in four is moved; 0 first so that shrinking returns to ordinary rows.
 */
const EXTREME_OFFSETS = [0, 0, 0, -3e4, -1e5] as const;

/** The case with every float of `name` moved by `offset` (rounded to the dtype: the laws read the moved values). */
function offsetCase<C extends FormulaCase>(c: C, name: string, offset: number): C {
  if (offset === 0) return c;
  const t = c.inputs[name]!;
  return { ...c, inputs: { ...c.inputs, [name]: mapT(t, (v) => v + offset) } };
}

// ---------------------------------------------------------------------------------------------

export const softmaxSimplex: Law = {
  name: "softmax_simplex",
  formulas: ["softmax", "log_softmax"],
  statement:
    "0 ≤ softmax(x)_j ≤ 1 and |Σ_j softmax(x)_j − 1| ≤ 2(m + 2)u; " +
    "log_softmax(x) ≤ 0 and Σ_j exp(log_softmax(x)_j) = 1 within the same " +
    "bound (scores up to ±1000 included, and rows moved below −1e4: −3e4, −1e5)",
  tolerance: {
    derivation:
      "[0, 1] and ≤ 0 are exact: every term e_j ≤ fl(Σ e) (monotone rounding " +
      "of non-negative partial sums), so e_j/Σe ≤ 1, and z_j − log Σe ≤ 0. Row " +
      "sum: Σ_j ŷ_j = Σ ê_j(1 + δ_j)/Σ ê_k(1 + θ_k) with |θ_k| ≤ γ_{m−1}, " +
      "|δ_j| ≤ u — the exp errors cancel between numerator and denominator — " +
      "so |Σŷ − 1| ≤ (m + 1)u; c = 2 leaves room for a " +
      "reciprocal-then-multiply and for log_softmax's e^{ŷ_j} = p_j(1 + " +
      "O(u|z_j| + u|y_j|)) with Σ p_j(|z_j| + |y_j|) ≤ 4 ln m. The law's own " +
      "float64 sum adds (m + 1)u₆₄. The bound is that of the spec's " +
      "max-subtracted form: exp(x − logsumexp(x)) loses u·|logsumexp| in every " +
      "entry and fails it for large scores, as an inaccurate float32 softmax should",
    bound: (dtype, s) => 2 * ((s["m"] ?? 1) + 2) * unitRoundoff(dtype),
    scale: "1",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc
        .tuple(
          scopedCaseArb(scope, f, { dims: { batch: "any", crossM: true } }),
          fc.constantFrom(...EXTREME_OFFSETS),
        )
        .map(([c, o]) => offsetCase(c, "x", o)),
    ),
  check: checked("softmax_simplex", async (k: Check, c: FormulaCase) => {
    const x = c.inputs["x"]!;
    const m = x.shape.at(-1)!;
    const y = await k.output(k.request(c.formula, c.config, c.inputs), "y");
    k.expectDtype("y", y);
    k.expectFinite("y", y);
    const allowed = 2 * (m + 2) * unitRoundoff(c.dtype) + (m + 1) * u64;
    const reason = `2(m + 2)u + (m + 1)u₆₄ with m = ${m}`;
    if (c.formula === "softmax") {
      const clipped = mapT(y, (v) => Math.min(1, Math.max(0, v)), "f64");
      k.expectEqual(
        "softmax(x) clipped to [0, 1] (entries outside [0, 1])",
        clipped,
        y,
        "exact: e_j ≤ fl(Σe)",
      );
      const s = rowSums(y);
      k.expectClose(
        "Σ_j softmax(x)_j",
        s.map(() => 1),
        s,
        allowed,
        reason,
        {
          rows: lastAxisRows(x)
            .slice(0, 2)
            .map((r) => Array.from(r)),
        },
      );
    } else {
      const clipped = mapT(y, (v) => Math.min(0, v), "f64");
      k.expectEqual(
        "log_softmax(x) clipped to ≤ 0 (positive entries)",
        clipped,
        y,
        "exact: z_j ≤ 0 and log Σe ≥ 0",
      );
      const s = rowSums(y, Math.exp);
      k.expectClose(
        "Σ_j exp(log_softmax(x)_j)",
        s.map(() => 1),
        s,
        allowed,
        reason,
      );
    }
  }),
};

// ---------------------------------------------------------------------------------------------

interface ShiftCase extends FormulaCase {
  /** One constant per row. */
  readonly shifts: Tensor;
}

function shiftArb(dtype: FloatDType) {
  return (f: string) =>
    formulaCaseArb(f, { dtype, dims: { batch: "any", crossM: true } }).chain((c) => {
      const x = c.inputs["x"] ?? c.inputs["logits"]!;
      const rowsShape = x.shape.slice(0, -1);
      return floatTensorArb(rowsShape, dtype, { min: -1000, max: 1000 }).map((shifts) => ({
        ...c,
        shifts,
      }));
    });
}

/** x + c_row, rounded to the dtype (the rounding is part of the bound). */
function shifted(x: Tensor, shifts: Tensor): Tensor {
  const m = x.shape.at(-1)!;
  return mapT(x, (v, i) => v + shifts.data[Math.floor(i / m)]!);
}

export const softmaxShift: Law<ShiftCase> = {
  name: "softmax_shift",
  formulas: ["softmax", "log_softmax", "logsumexp"],
  statement:
    "softmax(x + c·1) = softmax(x), log_softmax(x + c·1) = log_softmax(x), " +
    "logsumexp(x + c·1) = logsumexp(x) + c, for a constant c per row",
  tolerance: {
    derivation:
      "x' = fl(x + c) deviates from a constant shift by |δ_j| ≤ u·|x'_j|; " +
      "softmax moves by ≤ 2p_j·max|δ| ≤ 2max|δ| and each evaluation is within " +
      "(m + 4)u of exact: allowed 2u·max|x'| + 2(m + 4)u. log_softmax: each " +
      "evaluation within u(|z| + |y|) + (m + 2)u, plus 2max|δ|. logsumexp: " +
      "each within u|y| + (m + 2 + 2 ln m)u, plus max|δ| and the law's float64 addition",
    bound: (dtype, s) => 2 * ((s["m"] ?? 1) + 4) * unitRoundoff(dtype),
    scale: "1 (+ 2u·max|x + c|)",
  },
  arbitrary: (scope) => oneOfFormulas(scope, shiftArb(scope.dtype)),
  check: checked("softmax_shift", async (k: Check, c: ShiftCase) => {
    const x = c.inputs["x"]!;
    const x2 = shifted(x, c.shifts);
    const m = x.shape.at(-1)!;
    const u = unitRoundoff(c.dtype);
    const y = await k.output(k.request(c.formula, c.config, { x }), "y", "forward of x");
    const y2 = await k.output(k.request(c.formula, c.config, { x: x2 }), "y", "forward of x + c");
    k.expectFinite("y(x + c)", y2);
    const delta = u * maxAbs(x2);
    if (c.formula === "softmax") {
      k.expectClose(
        "softmax(x + c) vs softmax(x)",
        y,
        y2,
        2 * delta + 2 * (m + 4) * u,
        `2u·max|x + c| + 2(m + 4)u, max|x + c| = ${fmt(maxAbs(x2))}, m = ${m}`,
      );
    } else if (c.formula === "log_softmax") {
      const allowed =
        2 * delta + u * (maxSpread(x) + maxSpread(x2) + maxAbs(y) + maxAbs(y2)) + 2 * (m + 2) * u;
      k.expectClose(
        "log_softmax(x + c) vs log_softmax(x)",
        y,
        y2,
        allowed,
        `2u·max|x + c| + u(max|z| + max|z'| + max|y| + max|y'|) + 2(m + 2)u, m = ${m}`,
      );
    } else {
      const want = mapT(y, (v, i) => v + c.shifts.data[i]!, "f64");
      const allowed =
        delta +
        logsumexpError(maxAbs(y), m, c.dtype) +
        logsumexpError(maxAbs(y2), m, c.dtype) +
        u64 * maxAbs(want);
      k.expectClose(
        "logsumexp(x + c) vs logsumexp(x) + c",
        want,
        y2,
        allowed,
        `u·max|x + c| + E(y) + E(y') + u₆₄|y + c|, E(y) = u|y| + (m + 2 + 2 ln m)u, m = ${m}`,
      );
    }
  }),
};

// ---------------------------------------------------------------------------------------------

interface GradCase extends FormulaCase {
  readonly cot: Tensor;
}

export const softmaxGradient: Law<GradCase> = {
  name: "softmax_gradient",
  formulas: ["softmax", "log_softmax", "logsumexp"],
  statement:
    "x̄ = y ⊙ (ȳ − ⟨ȳ, y⟩) for softmax, x̄ = ȳ − e^y Σȳ for log_softmax, x̄ " +
    "= ȳ·e^{x − y} for logsumexp (y the implementation's own forward " +
    "values); so Σ_j x̄_j = 0 for the first two (shift invariance) and Σ_j " +
    "x̄_j = ȳ for logsumexp",
  tolerance: {
    derivation:
      "with G = max|ȳ| and ε_y = (m + 4)u the per-entry error of a softmax " +
      "value: the backward may use values within 2ε_y of the forward's, each " +
      "product and subtraction rounds once: softmax |Δx̄_j| ≤ G·((2m + 4)ε_y + " +
      "2(m + 4)u); log_softmax (ε = (m + 4 + ln m)u + u·max|x| for e^y) " +
      "|Δx̄_j| ≤ G·(2mε + (m + 1)u + m²u); logsumexp |Δx̄_j| ≤ |ȳ|·(2E(y) + " +
      "2u). Row sums: the sum of the m element bounds plus the forward's own " +
      "residual 2(m + 2)u·G. results below the normal range add the underflow " +
      "allowance of m + 4 operations per element (tolerance.ts)",
    bound: (dtype, s) => ((s["m"] ?? 1) + 4) * (2 * (s["m"] ?? 1) + 6) * unitRoundoff(dtype),
    scale: "max|ȳ|",
  },
  backward: "required",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        dims: { batch: "any", crossM: true },
        range: () => ({ min: -60, max: 60 }),
      }).chain((c) => {
        const x = c.inputs["x"]!;
        const shape = f === "logsumexp" ? x.shape.slice(0, -1) : x.shape;
        return floatTensorArb(shape, scope.dtype, { min: -3, max: 3 }).map((cot) => ({
          ...c,
          cot,
        }));
      }),
    ),
  check: checked("softmax_gradient", async (k: Check, c: GradCase) => {
    const x = c.inputs["x"]!;
    const m = x.shape.at(-1)!;
    const u = unitRoundoff(c.dtype);
    const req = k.request(c.formula, c.config, c.inputs);
    const y = await k.output(req, "y");
    const grads = await k.backward({ ...req, cotangents: { y: c.cot } });
    const gx = grads["x"];
    if (gx === undefined) k.fail("backward returned no gradient for x", { quantity: "grad x" });
    k.expectFinite("grad x", gx);
    const rowsY = lastAxisRows(y);
    // results below the normal range round absolutely (or flush to zero): m + 4 operations per
    // element, times factors ≤ 1 + max|ȳ|
    const floor = underflowAllowance(c.dtype, m + 4, 1 + maxAbs(c.cot));
    const want = new Float64Array(x.size);
    const allowedEl = new Float64Array(x.size);
    const sumWant: number[] = [];
    const sumAllowed: number[] = [];
    for (let r = 0; r < x.size / Math.max(1, m); r++) {
      const yr = rowsY[r];
      if (c.formula === "logsumexp") {
        const cb = c.cot.data[r]!;
        const yv = y.data[r]!;
        const E = logsumexpError(yv, m, c.dtype);
        for (let j = 0; j < m; j++) {
          want[r * m + j] = cb * Math.exp(x.data[r * m + j]! - yv);
          allowedEl[r * m + j] = Math.abs(cb) * (2 * E + 2 * u) + 2 * u64 * Math.abs(cb) + floor;
        }
        sumWant.push(cb);
        sumAllowed.push(
          m * Math.abs(cb) * (2 * E + 2 * u) + 2 * (m + 2) * u * Math.abs(cb) + m * floor,
        );
        continue;
      }
      let G = 0;
      let dot = 0;
      let sumCot = 0;
      for (let j = 0; j < m; j++) {
        const cb = c.cot.data[r * m + j]!;
        G = Math.max(G, Math.abs(cb));
        sumCot += cb;
        dot += cb * (c.formula === "softmax" ? yr![j]! : Math.exp(yr![j]!));
      }
      let bound: number;
      if (c.formula === "softmax") {
        const ey = (m + 4) * u;
        bound = G * ((2 * m + 4) * ey + 2 * (m + 4) * u) + (m + 2) * u64 * G;
        for (let j = 0; j < m; j++) want[r * m + j] = yr![j]! * (c.cot.data[r * m + j]! - dot);
      } else {
        // e^ŷ_j = p_j(1 + O(u|z_j| + u|y_j| + (m + 3)u)), and an x − logsumexp form adds u·|x_j|
        // (p_j u|x_j| ≤ u·max|x|)
        const e = (m + 4 + Math.log(Math.max(1, m))) * u + u * maxAbs(x);
        bound = G * (2 * m * e + (m + 1) * u + m * m * u) + (m + 2) * u64 * G;
        for (let j = 0; j < m; j++)
          want[r * m + j] = c.cot.data[r * m + j]! - Math.exp(yr![j]!) * sumCot;
      }
      for (let j = 0; j < m; j++) allowedEl[r * m + j] = bound + floor;
      sumWant.push(0);
      sumAllowed.push(m * (bound + floor) + 2 * (m + 2) * u * G * m);
    }
    const relation =
      c.formula === "softmax"
        ? "y ⊙ (ȳ − ⟨ȳ, y⟩)"
        : c.formula === "log_softmax"
          ? "ȳ − e^y·Σȳ"
          : "ȳ·e^{x − y}";
    k.expectClose(
      `grad x vs ${relation}`,
      Tensor.from(want, "f64", x.shape),
      gx,
      allowedEl,
      `per element: see the law's derivation (m = ${m})`,
    );
    k.expectClose(
      `Σ_j (grad x)_j`,
      sumWant,
      rowSums(gx),
      sumAllowed,
      `m element bounds + 2(m + 2)u·max|ȳ| (m = ${m})`,
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface CeCase extends FormulaCase {
  readonly shifts: Tensor;
  readonly levels: Tensor;
}

export const crossEntropy: Law<CeCase> = {
  name: "cross_entropy",
  formulas: ["cross_entropy"],
  statement:
    "CE(z, t) = mean_rows(logsumexp(z) − z_t) ≥ 0, CE(z + c·1) = CE(z), CE " +
    "= ln V for uniform logits, and ∂CE/∂z = (softmax(z) − onehot(t))/N with " +
    "rows summing to 0 (logits up to ±50, and rows moved below −1e4: −3e4, −1e5)",
  tolerance: {
    derivation:
      "a computed loss is within E(z) = u·(3max|z| + 2 ln V) + (V + 2 + 2 ln " +
      "V)u + N·u·CE of exact: each row's logsumexp (E of softmax.ts, |lse| ≤ " +
      "max|z| + ln V), the subtraction of z_t (u·(lse − z_t) ≤ u(2max|z| + ln " +
      "V)), the mean over N rows (γ_N relative, the terms are ≥ 0). Shift: " +
      "2u·max|z + c| + E(z) + E(z'). Gradient: the backward may form p_j = " +
      "exp(z_j − logsumexp z), off by p_j(u·|lse| + (V + 3)u), the forward " +
      "softmax by (V + 4)u: each entry within ((2V + 9)u + u·(max|z| + ln " +
      "V))/N; row sums within ((5V + 8)u + 2u·(max|z| + ln V))/N",
    bound: (dtype, s) =>
      ((s["V"] ?? 1) + 2 + 2 * Math.log(Math.max(1, s["V"] ?? 1))) * unitRoundoff(dtype),
    scale: "1 (+ u·(3max|z| + 2 ln V) + N·u·CE)",
  },
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc
        .tuple(
          scopedCaseArb(scope, f, { dims: { batch: "any", minV: 2 } }),
          fc.constantFrom(...EXTREME_OFFSETS),
        )
        .chain(([c0, o]) => {
          const c = offsetCase(c0, "logits", o);
          const rowsShape = c.inputs["logits"]!.shape.slice(0, -1);
          return fc
            .tuple(
              floatTensorArb(rowsShape, scope.dtype, { min: -100, max: 100 }),
              floatTensorArb(rowsShape, scope.dtype, { min: -50, max: 50 }),
            )
            .map(([shifts, levels]) => ({ ...c, shifts, levels }));
        }),
    ),
  check: checked("cross_entropy", async (k: Check, c: CeCase) => {
    const z = c.inputs["logits"]!;
    const t = c.inputs["targets"]!;
    const V = z.shape.at(-1)!;
    const N = t.size;
    const u = unitRoundoff(c.dtype);
    const lnV = Math.log(V);
    const E = (zz: Tensor, loss: number) =>
      u * (3 * maxAbs(zz) + 2 * lnV) + (V + 2 + 2 * lnV) * u + N * u * Math.abs(loss) + N * u64;
    /** The loss of other logits for the same targets. */
    const lossOf = async (logits: Tensor, what: string): Promise<number> => {
      const r = k.request("cross_entropy", c.config, { logits, targets: t });
      return (await k.output(r, "loss", what)).data[0]!;
    };
    const req = k.request("cross_entropy", c.config, c.inputs);
    const lossT = await k.output(req, "loss", "forward");
    if (lossT.size !== 1)
      k.fail(`loss has shape [${lossT.shape.join(", ")}], expected a scalar`, { quantity: "loss" });
    const loss = lossT.data[0]!;
    k.expectFinite("loss", lossT);
    const eL = E(z, loss);
    if (!(loss >= -eL))
      k.fail(`cross-entropy is negative: ${fmt(loss)} < −${fmt(eL)}`, {
        quantity: "loss",
        actual: loss,
        expected: 0,
        allowed: eL,
        toleranceReason: "E(z)",
      });
    // shift invariance
    const z2 = shifted(z, c.shifts);
    const loss2 = await lossOf(z2, "forward of z + c");
    k.expectClose(
      "CE(z + c·1) vs CE(z)",
      [loss],
      [loss2],
      2 * u * maxAbs(z2) + eL + E(z2, loss2),
      `2u·max|z + c| + E(z) + E(z'), V = ${V}, N = ${N}`,
    );
    // uniform rows
    const flat = mapT(z, (_, i) => c.levels.data[Math.floor(i / V)]!);
    const lossU = await lossOf(flat, "forward of uniform logits");
    k.expectClose(
      "CE of uniform logits vs ln V",
      [lnV],
      [lossU],
      E(flat, lnV) + u64 * lnV,
      `E(z) with V = ${V}, N = ${N}`,
      { V, N },
    );
    // against the implementation's own logsumexp
    if (k.impl.formulas.includes("logsumexp")) {
      const lse = await k.output(
        k.request("logsumexp", {}, { x: z }),
        "y",
        "logsumexp of the logits",
      );
      let s = 0;
      let maxLse = 0;
      for (let r = 0; r < N; r++) {
        s += lse.data[r]! - z.data[r * V + t.data[r]!]!;
        maxLse = Math.max(maxLse, Math.abs(lse.data[r]!));
      }
      k.expectClose(
        "CE vs mean(logsumexp(z) − z_t) with the implementation's logsumexp",
        [s / N],
        [loss],
        eL + logsumexpError(maxLse, V, c.dtype) + N * u64 * (maxLse + maxAbs(z)),
        `E(z) + E_lse + N·u₆₄·(max|lse| + max|z|)`,
      );
    }
    if (!k.supportsBackward("cross_entropy")) return;
    const grads = await k.backward({ ...req, cotangents: { loss: Tensor.scalar(1, c.dtype) } });
    const g = grads["logits"];
    if (g === undefined)
      k.fail("backward returned no gradient for logits", { quantity: "grad logits" });
    k.expectFinite("grad logits", g);
    const sums = rowSums(g);
    const lseMax = maxAbs(z) + lnV;
    k.expectClose(
      "Σ_j (∂CE/∂z)_rj",
      sums.map(() => 0),
      sums,
      ((5 * V + 8) * u + 2 * u * lseMax) / N + (V * u64) / N,
      `((5V + 8)u + 2u(max|z| + ln V))/N, V = ${V}, N = ${N}`,
    );
    if (k.impl.formulas.includes("softmax")) {
      const p = await k.output(k.request("softmax", {}, { x: z }), "y", "softmax of the logits");
      const want = mapT(
        p,
        (v, i) => (v - (i % V === t.data[Math.floor(i / V)]! ? 1 : 0)) / N,
        "f64",
      );
      k.expectClose(
        "∂CE/∂z vs (softmax(z) − onehot(t))/N",
        want,
        g,
        ((2 * V + 9) * u + u * lseMax) / N + (2 * u64) / N,
        `((2V + 9)u + u(max|z| + ln V))/N, V = ${V}, N = ${N}`,
      );
    }
  }),
};
