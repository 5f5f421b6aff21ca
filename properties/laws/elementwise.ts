/**
 * Laws of the elementwise and lookup formulas: the activations' odd-part identity and limits,
 * sinusoidal positions as rotations, exact lookups (embedding, learned positions) and exact head
 * splitting/merging.
 */
import fc from "fast-check";
import { Tensor, type FloatDType } from "../../autodiff/tensor.js";
import { dimsArb, floatTensorArb, permutationArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, exactTolerance, type Law } from "../law.js";
import { gatherAxis, mapT, sliceAxis } from "../tensor-ops.js";
import { activationDepth, angleDepth, underflowAllowance, unitRoundoff } from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb } from "./generic.js";

const u64 = unitRoundoff("f64");
const ACTIVATIONS = ["gelu", "gelu_tanh", "silu", "relu"] as const;

export const activationOddPart: Law = {
  name: "activation_odd_part",
  formulas: ACTIVATIONS,
  statement:
    "f(x) − f(−x) = x for f = GELU (Φ(x) + Φ(−x) = 1), GELU-tanh (tanh odd), SiLU (σ(x) + σ(−x) = 1) and ReLU",
  tolerance: {
    derivation:
      "each computed f(±x) is within c·u·|x| of exact with c = 8 " +
      "(activationDepth: the libm function erf/tanh/exp ≤ 1 ulp each, counted " +
      "2, and ≤ 5 arithmetic roundings, each on a quantity ≤ |x| since |f(x)| " +
      "≤ |x| and 1 + erf, 1 + tanh, σ stay in [0, 2]); the difference is " +
      "within 2c·u·|x| plus the law's float64 subtraction u₆₄|x|, plus the " +
      "underflow allowance of 2c operations (results below the normal range " +
      "round absolutely, or flush to zero). ReLU is exact (max(x, 0) − max(−x, " +
      "0) involves no rounding)",
    bound: (dtype) => 2 * activationDepth * unitRoundoff(dtype),
    scale: "|x|",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => scopedCaseArb(scope, f, { dims: { batch: "any" } })),
  check: checked("activation_odd_part", async (k: Check, c: FormulaCase) => {
    const x = c.inputs["x"]!;
    const f = async (t: Tensor, what: string) =>
      k.output(k.request(c.formula, c.config, { x: t }), "y", what);
    const yp = await f(x, "f(x)");
    const yn = await f(
      mapT(x, (v) => -v),
      "f(−x)",
    );
    k.expectFinite("f(x)", yp);
    const diff = mapT(yp, (v, i) => v - yn.data[i]!, "f64");
    const exact = c.formula === "relu";
    const c0 = exact ? 0 : 2 * activationDepth * unitRoundoff(c.dtype) + u64;
    const floor = exact ? 0 : underflowAllowance(c.dtype, 2 * activationDepth, 2);
    k.expectClose(
      `${c.formula}(x) − ${c.formula}(−x) vs x`,
      x.to("f64"),
      diff,
      Array.from(x.data, (v) => c0 * Math.abs(v) + floor),
      exact ? "exact" : "(2·8u + u₆₄)·|x| + underflow allowance (2·8 operations)",
    );
  }),
};

/** |x| beyond which the activation equals its limit (x for x → ∞, 0 for x → −∞) to within u·|x|. */
function saturation(formula: string, dtype: FloatDType): number {
  const u = unitRoundoff(dtype);
  // deviation at x: GELU x·Φ(−x) ≤ x·e^{−x²/2}/(x√(2π)); GELU-tanh x·(1 − tanh a)/2 ≈ x·e^{−2a};
  // SiLU x·σ(−x) ≤ x·e^{−x}
  const dev = (t: number): number =>
    formula === "gelu"
      ? Math.exp((-t * t) / 2) / (t * Math.sqrt(2 * Math.PI))
      : formula === "gelu_tanh"
        ? Math.exp(-2 * Math.sqrt(2 / Math.PI) * (t + 0.044715 * t ** 3))
        : formula === "silu"
          ? Math.exp(-t)
          : 0;
  let t = 1;
  while (dev(t) > u / 2) t += 0.25;
  return t;
}

export const activationLimits: Law = {
  name: "activation_limits",
  formulas: ACTIVATIONS,
  statement:
    "for x ≥ T (T where the exact deviation falls below u/2): f(x) = x and " +
    "f(−x) = 0 to within (c + 1)·u·|x| (c = 8); ReLU exactly",
  tolerance: {
    derivation:
      "beyond T the exact value differs from its limit by < u/2·|x| (computed " +
      "per activation and dtype from e^{−x²/2}/(x√(2π)), e^{−2a} and e^{−x}); " +
      "the computed value adds c·u·|x|, c = 8 as in activation_odd_part",
    bound: (dtype) => (activationDepth + 1) * unitRoundoff(dtype),
    scale: "|x|",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => {
      const T = saturation(f, scope.dtype);
      return dimsArb({ batch: "any" }).chain((dims) =>
        floatTensorArb([...dims.batch, dims.n, dims.d], scope.dtype, { min: T, max: 8 * T }).map(
          (x) => ({ formula: f, config: {}, dtype: scope.dtype, dims, inputs: { x } }),
        ),
      );
    }),
  check: checked("activation_limits", async (k: Check, c: FormulaCase) => {
    const x = c.inputs["x"]!;
    const big = await k.output(k.request(c.formula, c.config, { x }), "y", "f(x) for large x");
    const small = await k.output(
      k.request(c.formula, c.config, { x: mapT(x, (v) => -v) }),
      "y",
      "f(−x) for large x",
    );
    const exact = c.formula === "relu";
    const bound = exact ? 0 : (activationDepth + 1) * unitRoundoff(c.dtype);
    const allowed = Array.from(x.data, (v) => bound * Math.abs(v));
    k.expectClose(
      `${c.formula}(x) vs x for x ≥ ${saturation(c.formula, c.dtype)}`,
      x,
      big,
      allowed,
      exact ? "exact" : "(8 + 1)u·|x|",
    );
    k.expectClose(
      `${c.formula}(−x) vs 0 for x ≥ ${saturation(c.formula, c.dtype)}`,
      Tensor.zeros(x.shape, "f64"),
      small,
      allowed,
      exact ? "exact" : "(8 + 1)u·|x|",
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface SinCase extends FormulaCase {
  readonly offset: number;
}

export const sinusoidalRotation: Law<SinCase> = {
  name: "sinusoidal_rotation",
  formulas: ["positional_sinusoidal"],
  statement:
    "sinusoidal positions are rotations: with (s_a, c_a) = (P_{a,2j}, " +
    "P_{a,2j+1}), s_{a+b} = s_a c_b + c_a s_b and c_{a+b} = c_a c_b − s_a " +
    "s_b; P_0 = (0, 1, 0, 1, …); s² + c² = 1; and offset o gives rows o … o + n − 1",
  tolerance: {
    derivation:
      "each entry is within ε = angleDepth(p_max)·u of exact (angle p·ω with " +
      "relative error 3u, i.e. absolute 3u·p_max, then sin/cos ≤ 1 ulp); a " +
      "product of two entries (each ≤ 1) is within 2ε + u, a sum of two within " +
      "4ε + 3u; s² + c² within 4ε + 3u; position 0 exact (angle 0); the offset " +
      "rows are the same computation with the angle counted from o: 2ε",
    bound: (dtype, s) =>
      4 * angleDepth(s["p_max"] ?? 1) * unitRoundoff(dtype) + 3 * unitRoundoff(dtype),
    scale: "1",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, { dims: { maxN: 6 } }).chain((c) =>
        fc.integer({ min: 0, max: 30 }).map((offset) => ({ ...c, offset })),
      ),
    ),
  check: checked("sinusoidal_rotation", async (k: Check, c: SinCase) => {
    const n = Number(c.config["n"]);
    const d = Number(c.config["d_model"]);
    const P = await k.output(
      k.request("positional_sinusoidal", { ...c.config, offset: 0 }, {}),
      "y",
      "positions 0 … n − 1",
    );
    const Po = await k.output(
      k.request("positional_sinusoidal", { ...c.config, n, offset: c.offset }, {}),
      "y",
      `positions ${c.offset} … ${c.offset + n - 1}`,
    );
    const Pall = await k.output(
      k.request("positional_sinusoidal", { ...c.config, n: n + c.offset, offset: 0 }, {}),
      "y",
      `positions 0 … ${n + c.offset - 1}`,
    );
    const u = unitRoundoff(c.dtype);
    const eps = angleDepth(n + c.offset) * u;
    // position 0
    const p0 = Tensor.zeros([1, d], "f64");
    for (let j = 1; j < d; j += 2) p0.data[j] = 1;
    k.expectEqual(
      "P_0 vs (sin 0, cos 0, …) = (0, 1, 0, 1, …)",
      p0,
      sliceAxis(P, 0, 0, 1),
      "exact: the angle at position 0 is 0",
    );
    // angle addition, for every a + b < n
    const at = (t: Tensor, i: number, j: number) => t.data[i * d + j]!;
    const want: number[] = [];
    const got: number[] = [];
    const unit: number[] = [];
    for (let a = 0; a < n; a++) {
      for (let b = 0; a + b < n; b++) {
        for (let j = 0; j + 1 < d; j += 2) {
          const [sa, ca, sb, cb] = [at(P, a, j), at(P, a, j + 1), at(P, b, j), at(P, b, j + 1)];
          want.push(sa * cb + ca * sb, ca * cb - sa * sb);
          got.push(at(P, a + b, j), at(P, a + b, j + 1));
        }
      }
      for (let j = 0; j + 1 < d; j += 2) unit.push(at(P, a, j) ** 2 + at(P, a, j + 1) ** 2);
    }
    k.expectClose(
      "P_{a+b} vs R(P_b)·P_a (angle addition: sin(α+β), cos(α+β))",
      want,
      got,
      4 * eps + 3 * u + 4 * u64,
      "4ε + 3u, ε = angleDepth(p_max)·u",
    );
    k.expectClose(
      "P_{a,2j}² + P_{a,2j+1}²",
      unit.map(() => 1),
      unit,
      4 * eps + 3 * u + 2 * u64,
      "4ε + 3u",
    );
    k.expectClose(
      `offset ${c.offset}: rows vs rows ${c.offset} … of positions from 0`,
      sliceAxis(Pall, 0, c.offset, n),
      Po,
      2 * eps,
      "2ε (the same angles)",
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface LookupCase extends FormulaCase {
  readonly offset: number;
}

export const exactLookups: Law<LookupCase> = {
  name: "exact_lookups",
  formulas: ["embedding", "positional_learned"],
  statement:
    "embedding(t, E)[…, i, :] = E[t_i, :] and positional_learned(P; offset o)[i, :] = P[o + i, :], bit for bit",
  tolerance: exactTolerance("exact: a lookup copies values, it does not round them"),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      f === "embedding"
        ? scopedCaseArb(scope, f, { dims: { batch: "any" } }).map((c) => ({ ...c, offset: 0 }))
        : scopedCaseArb(scope, f, { dims: {} }).chain((c) =>
            fc.nat({ max: 3 }).map((extra) => {
              // n_ctx ≥ offset + n: grow the table to fit
              const offset = extra;
              const P = c.inputs["P"]!;
              const need = offset + Number(c.config["n"]);
              const rowsNeeded = Math.max(P.shape[0]!, need);
              const grown =
                rowsNeeded === P.shape[0]
                  ? P
                  : gatherAxis(
                      P,
                      0,
                      Array.from({ length: rowsNeeded }, (_, i) => i % P.shape[0]!),
                    );
              return { ...c, config: { ...c.config, offset }, inputs: { P: grown }, offset };
            }),
          ),
    ),
  check: checked("exact_lookups", async (k: Check, c: LookupCase) => {
    if (c.formula === "embedding") {
      const E = c.inputs["E"]!;
      const t = c.inputs["tokens"]!;
      const y = await k.output(k.request("embedding", c.config, c.inputs), "y");
      k.expectEqual(
        "embedding rows vs E[t_i]",
        gatherAxis(E, 0, Array.from(t.data)).reshape(y.shape),
        y,
        "exact copy",
      );
      return;
    }
    const P = c.inputs["P"]!;
    const n = Number(c.config["n"]);
    const y = await k.output(k.request("positional_learned", c.config, c.inputs), "y");
    k.expectEqual(
      `positional_learned(offset ${c.offset}) vs P[${c.offset} … ${c.offset + n - 1}]`,
      sliceAxis(P, 0, c.offset, n),
      y,
      "exact copy",
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface HeadsCase extends FormulaCase {
  readonly perm: readonly number[];
}

export const headsLayout: Law<HeadsCase> = {
  name: "heads_layout",
  formulas: ["split_heads", "merge_heads"],
  statement:
    "heads are column blocks: split_heads(x ⋅ Π_blocks)[h] = " +
    "split_heads(x)[π(h)], merge_heads permutes column blocks the same way, " +
    "and merge_heads(split_heads(x)) = x, bit for bit",
  tolerance: exactTolerance("exact: splitting and merging move values without arithmetic"),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, { dims: { batch: "any" } }).chain((c) =>
        permutationArb(c.dims.H).map((perm) => ({ ...c, perm })),
      ),
    ),
  check: checked("heads_layout", async (k: Check, c: HeadsCase) => {
    const { H, d_k } = c.dims;
    const blockIdx = (order: readonly number[]) =>
      order.flatMap((b) => Array.from({ length: d_k }, (_, j) => b * d_k + j));
    const has = (f: string) => k.impl.formulas.includes(f);
    if (c.formula === "split_heads") {
      const x = c.inputs["x"]!;
      const y = await k.output(k.request("split_heads", c.config, { x }), "y");
      const yP = await k.output(
        k.request("split_heads", c.config, { x: gatherAxis(x, -1, blockIdx(c.perm)) }),
        "y",
        "split_heads of x with column blocks permuted",
      );
      k.expectEqual(
        "split_heads(x Π)[h] vs split_heads(x)[π(h)]",
        gatherAxis(y, -3, c.perm),
        yP,
        "exact",
      );
      if (has("merge_heads")) {
        const back = await k.output(
          k.request("merge_heads", {}, { x: y }),
          "y",
          "merge_heads(split_heads(x))",
        );
        k.expectEqual("merge_heads(split_heads(x)) vs x", x, back, "exact");
      }
      return;
    }
    const x = c.inputs["x"]!;
    const y = await k.output(k.request("merge_heads", c.config, { x }), "y");
    const yP = await k.output(
      k.request("merge_heads", c.config, { x: gatherAxis(x, -3, c.perm) }),
      "y",
      "merge_heads with heads permuted",
    );
    k.expectEqual(
      "merge_heads(x[π]) vs merge_heads(x) Π_blocks",
      gatherAxis(y, -1, blockIdx(c.perm)),
      yP,
      "exact",
    );
    if (has("split_heads")) {
      const back = await k.output(
        k.request("split_heads", { H }, { x: y }),
        "y",
        "split_heads(merge_heads(x))",
      );
      k.expectEqual("split_heads(merge_heads(x)) vs x", x, back, "exact");
    }
  }),
};
