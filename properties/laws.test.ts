import { describe, expect, it } from "vitest";
import { referenceImplementation } from "../reference/implementation.js";
import { Tensor } from "../autodiff/tensor.js";
import type { Implementation } from "../autodiff/implementation.js";
import { Check, Violation, runCheck, type LawFailure } from "./law.js";
import { LAWS, getLaw, lawNames } from "./registry.js";
import { formatFailure, runLaws } from "./run.js";
import type { FormulaCase } from "./arbitraries.js";

const RUNS = 15;

describe("every law on the reference", () => {
  for (const dtype of ["f64", "f32"] as const) {
    it(`passes every law in ${dtype} (${RUNS} cases each)`, async () => {
      const report = await runLaws(referenceImplementation(), {
        runs: RUNS,
        seed: dtype === "f64" ? 101 : 202,
        dtype,
        shrinkTimeMs: 0,
      });
      const failures = report.results.filter((r) => r.status === "failed").flatMap(formatFailure);
      expect(failures.join("\n")).toBe("");
      // the reference declares every formula and every backward pass: no law may be skipped
      expect(
        report.results.filter((r) => r.status === "skipped").map((r) => `${r.law}: ${r.skipped}`),
      ).toEqual([]);
      expect(report.passed).toBe(LAWS.length);
      for (const r of report.results) expect(r.runs).toBe(RUNS);
    });
  }
});

describe("the registry", () => {
  it("has unique snake_case names, a statement and a derivation for every law", () => {
    const names = lawNames();
    expect(new Set(names).size).toBe(names.length);
    for (const law of LAWS) {
      expect(law.name).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(law.statement.length).toBeGreaterThan(20);
      expect(law.tolerance.derivation.length).toBeGreaterThan(20);
      expect(law.tolerance.scale.length).toBeGreaterThan(0);
    }
  });

  it("states every bound as a function of dtype and sizes: finite, ≥ 0, and float32's ≥ float64's", () => {
    const sizes = { m: 5, d: 7, K: 40, V: 11, N: 6, p_max: 12 };
    for (const law of LAWS) {
      const b64 = law.tolerance.bound("f64", sizes);
      const b32 = law.tolerance.bound("f32", sizes);
      expect(Number.isFinite(b64) && b64 >= 0, law.name).toBe(true);
      expect(b32 >= b64, law.name).toBe(true);
      // u differs by 2^29 between the dtypes: a derived bound scales with it (or is exactly 0); the
      // oracle law adds the float64 reference's own bound to the implementation's, so its ratio is 2^28
      if (b64 > 0) {
        const ratio = b32 / b64 / 2 ** 29;
        expect(ratio > 0.499 && ratio < 1.001, `${law.name}: ${ratio}`).toBe(true);
      }
    }
  });

  it("names the known laws when asked for an unknown one", () => {
    expect(() => getLaw("causal")).toThrow(
      /unknown law "causal" \(did you mean causality, causal_alignment\?\); laws: causality, prefix_consistency/,
    );
  });
});

describe("Check", () => {
  const c: FormulaCase = {
    formula: "softmax",
    config: {},
    dtype: "f64",
    dims: {
      n: 1,
      m: 2,
      p: 0,
      d: 1,
      d_k: 1,
      d_v: 1,
      d_in: 1,
      d_out: 1,
      H: 1,
      H_kv: 1,
      d_model: 1,
      d_kv: 1,
      d_ff: 1,
      V: 2,
      n_ctx: 1,
      L: 1,
      batch: [],
    },
    inputs: { x: Tensor.from([1, 2]) },
  };
  const impl = referenceImplementation();

  function failureOf(f: () => void): LawFailure {
    try {
      f();
    } catch (e) {
      if (e instanceof Violation) return e.failure;
      throw e;
    }
    throw new Error("no violation");
  }

  it("reports the worst element with expected, actual, errors and the bound's reason", () => {
    const k = new Check("demo", impl, c);
    const f = failureOf(() =>
      k.expectClose(
        "q",
        Tensor.from([
          [1, 2],
          [3, 4],
        ]),
        Tensor.from([
          [1, 2],
          [3, 4.5],
        ]),
        0.1,
        "because",
      ),
    );
    expect(f).toMatchObject({
      law: "demo",
      formula: "softmax",
      quantity: "q",
      index: [1, 1],
      expected: 4,
      actual: 4.5,
      absError: 0.5,
      allowed: 0.1,
      toleranceReason: "because",
    });
    expect(f.message).toBe("q: 1 of 4 elements differ by more than the bound 0.1");
    expect(f.shapes).toEqual({ x: [2] });
  });

  it("fails NaN where a value is expected, even with per-element bounds", () => {
    const k = new Check("demo", impl, c);
    const f = failureOf(() => k.expectClose("q", [1, 2], [1, NaN], [1, 1], "r"));
    expect(f.index).toEqual([1]);
    expect(f.absError).toBe(Infinity);
  });

  it("turns a throwing implementation into a failure that names the formula and the inputs", async () => {
    const broken: Implementation = {
      ...impl,
      name: "broken",
      forward: () => Promise.reject(new Error("out of memory")),
    };
    const v = await runCheck(getLaw("softmax_simplex"), broken, {
      ...c,
      inputs: { x: Tensor.from([[1, 2]]) },
    });
    expect(v.ok).toBe(false);
    if (!v.ok)
      expect(v.failure.message).toBe(
        "forward: the implementation threw on softmax with inputs x f64[1, 2]: Error: out of memory",
      );
  });

  it("fails an implementation that omits an output", async () => {
    const empty: Implementation = { ...impl, forward: async () => ({ outputs: {} }) };
    const v = await runCheck(getLaw("softmax_simplex"), empty, c);
    expect(v.ok).toBe(false);
    if (!v.ok)
      expect(v.failure.message).toBe(
        'forward: softmax did not return output "y" (it returned nothing)',
      );
  });
});
