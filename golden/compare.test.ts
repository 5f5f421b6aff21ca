import { describe, expect, it } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import type { DType } from "../autodiff/tensor.js";
import {
  DEFAULT_TOLERANCE,
  compareCase,
  compareNamed,
  compareTensors,
  formatReport,
  formatValue,
  reportToJSON,
  ulpDistance,
} from "./compare.js";

/** Deterministic, irregular values of both signs and several magnitudes. */
function base(shape: number[], dtype: DType = "f64"): Tensor {
  const t = new Tensor(dtype, shape);
  for (let i = 0; i < t.size; i++) t.data[i] = Math.sin(1.7 * i + 0.3) * 10 ** ((i % 5) - 2);
  return t;
}

/** Bits of a double as a BigInt, and back. */
function fromBits64(bits: bigint): number {
  const b = new BigInt64Array([BigInt.asIntN(64, bits)]);
  return new Float64Array(b.buffer)[0]!;
}
function fromBits32(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

describe("ulpDistance on hand-derived bit patterns", () => {
  it("counts representable values between two doubles", () => {
    const one = fromBits64(0x3ff0000000000000n);
    const next = fromBits64(0x3ff0000000000001n); // nextafter(1, 2) = 1 + 2^-52
    expect(one).toBe(1);
    expect(next).toBe(1 + 2 ** -52);
    expect(ulpDistance(one, next, "f64")).toBe(1n);
    expect(ulpDistance(next, one, "f64")).toBe(1n);
    expect(ulpDistance(1, 2, "f64")).toBe(2n ** 52n); // 0x4000000000000000 − 0x3ff0000000000000
    expect(ulpDistance(fromBits64(0x3fefffffffffffffn), 1, "f64")).toBe(1n); // prevafter(1)
    expect(ulpDistance(-1, 1, "f64")).toBe(2n * 0x3ff0000000000000n);
    expect(ulpDistance(Number.MAX_VALUE, Infinity, "f64")).toBe(1n);
  });

  it("treats −0 and +0 as the same point and counts across zero", () => {
    expect(ulpDistance(-0, 0, "f64")).toBe(0n);
    expect(ulpDistance(-0, 0, "f32")).toBe(0n);
    const tiny64 = fromBits64(0x1n); // smallest subnormal
    const negTiny64 = fromBits64(0x8000000000000001n);
    expect(tiny64).toBe(5e-324);
    expect(negTiny64).toBe(-5e-324);
    expect(ulpDistance(tiny64, negTiny64, "f64")).toBe(2n);
    expect(ulpDistance(0, negTiny64, "f64")).toBe(1n);
    const tiny32 = fromBits32(0x00000001);
    const negTiny32 = fromBits32(0x80000001);
    expect(tiny32).toBe(2 ** -149);
    expect(ulpDistance(tiny32, negTiny32, "f32")).toBe(2n);
    expect(ulpDistance(-0, tiny32, "f32")).toBe(1n);
  });

  it("uses the float32 format for f32", () => {
    expect(ulpDistance(1, fromBits32(0x3f800001), "f32")).toBe(1n); // 1 + 2^-23
    expect(ulpDistance(1, 2, "f32")).toBe(2n ** 23n);
    // 1 + 2^-52 rounds to 1 in float32
    expect(ulpDistance(1, 1 + 2 ** -52, "f32")).toBe(0n);
    expect(ulpDistance(fromBits32(0x7f7fffff), Infinity, "f32")).toBe(1n); // FLT_MAX to +Inf
  });

  it("handles NaN and integers", () => {
    expect(ulpDistance(NaN, NaN, "f64")).toBe(0n);
    expect(ulpDistance(NaN, 1, "f64")).toBeNull();
    expect(ulpDistance(1, NaN, "f32")).toBeNull();
    expect(ulpDistance(5, -3, "i32")).toBe(8n);
  });
});

describe("compareTensors: planted single-element changes", () => {
  const shape = [3, 4, 5];
  for (const dtype of ["f64", "f32"] as const) {
    const { rtol, atol } = DEFAULT_TOLERANCE[dtype];
    for (const flat of [0, 23, 59]) {
      for (const factor of [0.5, 0.99, 1.5, 10, 1e6]) {
        it(`${dtype}: ${factor} × the allowed error at flat ${flat}`, () => {
          const e = base(shape, dtype);
          const a = e.clone();
          const ev = e.data[flat]!;
          const allowed = atol + rtol * Math.abs(ev);
          a.data[flat] = ev + factor * allowed;
          const av = a.data[flat]!; // f32 storage may round the planted value
          const budget = Math.abs(av - ev) / allowed;
          const r = compareTensors(e, a, { name: "out.y" });
          const index = e.unravel(flat);
          expect(r.budgetUsed).toBeCloseTo(budget, 9);
          expect(r.maxAbsError).toBe(Math.abs(av - ev));
          expect(r.worst?.index).toEqual(index);
          expect(r.worst?.expected).toBe(ev);
          expect(r.worst?.actual).toBe(av);
          if (budget <= 1) {
            expect(r.ok).toBe(true);
            expect(r.status).toBe("ok");
            expect(r.mismatched).toBe(0);
            expect(r.firstMismatches).toEqual([]);
          } else {
            expect(r.ok).toBe(false);
            expect(r.status).toBe("values");
            expect(r.mismatched).toBe(1);
            expect(r.mismatchedPercent).toBeCloseTo(100 / 60, 12);
            expect(r.firstMismatches.map((m) => m.index)).toEqual([index]);
            expect(r.firstMismatches[0]!.relError).toBe(Math.abs(av - ev) / Math.abs(ev));
            expect(r.maxUlp).toBe(Number(ulpDistance(ev, av, dtype)));
            expect(formatReport(r)).toContain(`[${index.join(", ")}]`);
          }
        });
      }
    }
  }

  it("applies the rule at its boundary: |a − e| = atol + rtol·|e| passes", () => {
    const e = Tensor.from([0, 4]);
    const a = Tensor.from([0.5, 5]);
    expect(compareTensors(e, a, { rtol: 0.125, atol: 0.5 }).ok).toBe(true); // 0.5 ≤ 0.5, 1 ≤ 0.5 + 0.5
    expect(
      compareTensors(e, a, { rtol: 0.124, atol: 0.5 }).firstMismatches.map((m) => m.index),
    ).toEqual([[1]]);
  });

  it("reports worst by budget share, not by absolute error, and lists the first mismatches in order", () => {
    const e = Tensor.from([1000, 0.001, 5, 7, 9, 11, 13, 15]);
    const a = e.clone();
    a.data[0] = 1000.01; // abs 1e-2, allowed 1e-3 + 1e-2 → within
    a.data[1] = 0.0011; // abs 1e-4, allowed 1e-3 + 1e-6 → within
    for (const i of [2, 3, 4, 5, 6, 7]) a.data[i] = e.data[i]! + 0.01 * i;
    const r = compareTensors(e, a, { rtol: 1e-5, atol: 1e-3 });
    expect(r.mismatched).toBe(6);
    expect(r.firstMismatches.map((m) => m.index)).toEqual([[2], [3], [4], [5], [6]]);
    expect(r.worst?.index).toEqual([7]); // 0.07 / (1e-3 + 1.5e-4) is the largest share
    expect(r.maxAbsError).toBeCloseTo(0.07, 12);
  });

  it("compares integers exactly by default", () => {
    const e = Tensor.from([1, 2, 3], "i32");
    const a = Tensor.from([1, 2, 4], "i32");
    const r = compareTensors(e, a);
    expect(r.tolerance).toMatchObject({ rtol: 0, atol: 0, source: "default" });
    expect(r.firstMismatches[0]).toMatchObject({
      index: [2],
      expected: 3,
      actual: 4,
      absError: 1,
      ulp: 1,
      budget: Infinity,
    });
    expect(compareTensors(e, e.clone()).ok).toBe(true);
  });

  it("compares scalars and empty tensors", () => {
    expect(compareTensors(Tensor.scalar(2), Tensor.scalar(2.5)).firstMismatches[0]!.index).toEqual(
      [],
    );
    const empty = compareTensors(new Tensor("f64", [0, 3]), new Tensor("f64", [0, 3]));
    expect(empty).toMatchObject({ ok: true, size: 0, mismatchedPercent: 0, worst: null });
  });
});

describe("compareTensors: NaN, infinities, zeros", () => {
  it("NaN matches NaN at the same place; ±Inf match the same infinity; −0 matches +0", () => {
    const e = Tensor.from([NaN, Infinity, -Infinity, 1, -0, 0]);
    const a = Tensor.from([NaN, Infinity, -Infinity, 1, 0, -0]);
    const r = compareTensors(e, a);
    expect(r.ok).toBe(true);
    expect(r.maxAbsError).toBe(0);
    expect(r.maxUlp).toBe(0);
    expect(r.specials).toEqual({
      expected: { nan: 1, posInf: 1, negInf: 1, negZero: 1 },
      actual: { nan: 1, posInf: 1, negInf: 1, negZero: 1 },
    });
  });

  it("NaN on one side only is a mismatch with infinite error, whichever side", () => {
    const r = compareTensors(Tensor.from([1, NaN, 3]), Tensor.from([NaN, 2, 3]), {
      rtol: 1,
      atol: 1,
    });
    expect(r.mismatched).toBe(2);
    expect(r.firstMismatches.map((m) => [m.index, m.absError, m.ulp])).toEqual([
      [[0], Infinity, Infinity],
      [[1], Infinity, Infinity],
    ]);
    expect(r.specials?.expected.nan).toBe(1);
    expect(r.specials?.actual.nan).toBe(1);
  });

  it("an infinity matches only the same infinity, even with a huge tolerance", () => {
    const e = Tensor.from([Infinity, Infinity, -Infinity, 1e308]);
    const a = Tensor.from([-Infinity, Number.MAX_VALUE, -Infinity, Infinity]);
    const r = compareTensors(e, a, { rtol: 1e300, atol: 1e300 });
    expect(r.firstMismatches.map((m) => m.index)).toEqual([[0], [1], [3]]);
    expect(r.firstMismatches[1]!.ulp).toBe(1); // MAX_VALUE is one step below +Inf
    expect(r.budgetUsed).toBe(Infinity);
  });

  it("errors that overflow to infinity are mismatches", () => {
    const r = compareTensors(Tensor.from([1.7e308]), Tensor.from([-1.7e308]), {
      rtol: 1.5,
      atol: 0,
    });
    expect(r.ok).toBe(false);
    expect(r.maxAbsError).toBe(Infinity);
  });

  it("leaves e = 0 out of the maximum relative error (atol governs it)", () => {
    const r = compareTensors(Tensor.from([0, 2]), Tensor.from([1e-8, 2.000001]), {
      rtol: 1e-5,
      atol: 1e-7,
    });
    expect(r.ok).toBe(true);
    expect(r.maxRelError).toBeCloseTo(5e-7, 12);
    expect(r.maxAbsError).toBeCloseTo(1e-6, 12);
  });
});

describe("compareTensors: dtype and shape first", () => {
  it("reports a shape mismatch with both shapes and compares no values", () => {
    const r = compareTensors(base([2, 3]), base([3, 2]), { name: "out.y" });
    expect(r).toMatchObject({
      ok: false,
      status: "shape",
      size: 0,
      worst: null,
      specials: null,
      expectedShape: [2, 3],
      actualShape: [3, 2],
    });
    expect(r.problem).toBe("shape mismatch: expected [2, 3], actual [3, 2] (6 vs 6 elements)");
    expect(formatReport(r)).toContain("out.y: shape mismatch: expected [2, 3], actual [3, 2]");
  });

  it("reports a dtype mismatch with both dtypes and shapes", () => {
    const r = compareTensors(base([4]), base([4, 1], "f32"), { name: "grad.x" });
    expect(r.status).toBe("dtype");
    expect(r.problem).toBe(
      "dtype mismatch: expected f64 [4], actual f32 [4, 1] (the shapes differ too)",
    );
  });

  it("refuses nonsensical tolerances with a clear error", () => {
    expect(() => compareTensors(base([2]), base([2]), { name: "out.y", rtol: -1 })).toThrow(
      'compare "out.y": rtol must be a finite number ≥ 0, got -1',
    );
    expect(() => compareTensors(base([2]), base([2]), { atol: NaN })).toThrow(
      'compare "tensor": atol must be a finite number ≥ 0, got NaN',
    );
  });
});

describe("compareNamed and compareCase", () => {
  it("reports missing and extra tensors by name", () => {
    const r = compareNamed(
      { "out.y": base([2]), "out.loss": Tensor.scalar(1) },
      { "out.y": base([2]), "out.z": base([3]) },
    );
    expect(r.ok).toBe(false);
    expect(r.tensors.map((t) => [t.name, t.status, t.ok])).toEqual([
      ["out.loss", "missing", false],
      ["out.y", "ok", true],
      ["out.z", "extra", false],
    ]);
    expect(r.tensors[0]!.problem).toBe(
      'missing: expected f64 [], but the actual set has no tensor "out.loss"',
    );
    expect(r.tensors[2]!.problem).toBe(
      'extra: the actual set has "out.z" (f64 [3]), which the expected set lacks',
    );
    const allowed = compareNamed(
      { "out.y": base([2]) },
      { "out.y": base([2]), "h.0.y": base([3]) },
      {},
      { allowExtra: true },
    );
    expect(allowed.ok).toBe(true);
    expect(allowed.tensors.map((t) => [t.name, t.status, t.ok])).toEqual([
      ["out.y", "ok", true],
      ["h.0.y", "extra", true],
    ]);
  });

  it("takes tolerances from the caller, then the case, then the dtype default", () => {
    const e = { a: base([2]), b: base([2]), c: base([2], "f32") };
    const caseTol = { a: { rtol: 0.1, atol: 0.2, reason: "derived" } };
    const r = compareNamed(e, e, caseTol);
    expect(r.tensors.map((t) => t.tolerance)).toEqual([
      { rtol: 0.1, atol: 0.2, reason: "derived", source: "case" },
      { ...DEFAULT_TOLERANCE.f64, source: "default" },
      { ...DEFAULT_TOLERANCE.f32, source: "default" },
    ]);
    const c = compareNamed(e, e, caseTol, { rtol: 0.5 });
    expect(c.tensors[0]!.tolerance).toEqual({
      rtol: 0.5,
      atol: 0.2,
      reason: "rtol given by the caller; atol from the case",
      source: "caller",
    });
    expect(c.tensors[1]!.tolerance).toEqual({
      rtol: 0.5,
      atol: 1e-7,
      reason: "rtol given by the caller; atol default",
      source: "caller",
    });
  });

  it("compares a case's outputs and, when given, its gradients", () => {
    const golden = {
      meta: { case: "layer_norm/f64/n2_d3" },
      outputs: { y: base([2, 3]) },
      grads: { x: base([2, 3]), gamma: base([3]) },
      tolerance: { "out.y": { rtol: 1e-9, atol: 1e-9, reason: "r" } },
    };
    const y = golden.outputs.y.clone();
    y.data[4] = y.data[4]! + 1e-6;
    const fwd = compareCase(golden, { outputs: { y } });
    expect(fwd.name).toBe("layer_norm/f64/n2_d3");
    expect(fwd.tensors.map((t) => t.name)).toEqual(["out.y"]);
    expect(fwd.tensors[0]!.firstMismatches[0]!.index).toEqual([1, 1]);
    const both = compareCase(golden, { outputs: golden.outputs, grads: { x: golden.grads.x } });
    expect(both.tensors.map((t) => [t.name, t.status])).toEqual([
      ["grad.gamma", "missing"],
      ["grad.x", "ok"],
      ["out.y", "ok"],
    ]);
  });
});

describe("formatReport and reportToJSON", () => {
  it("prints a fixed-width table and the story of each failure with distinguishable numbers", () => {
    const e = base([2, 6]);
    const a = e.clone();
    a.data[9] = e.data[9]! * (1 + 1e-6);
    const text = formatReport(
      compareNamed(
        { "out.y": e, "grad.x": e },
        { "out.y": a, "grad.x": e },
        {},
        { title: "demo/f64/n2" },
      ),
    );
    const lines = text.split("\n");
    expect(lines[0]).toBe("demo/f64/n2: FAIL (1 of 2 tensors pass)");
    expect(lines[2]).toMatch(
      /^tensor\s+status\s+dtype\s+shape\s+rtol\s+atol\s+max abs err\s+max rel err\s+max ULP\s+budget\s+mismatched$/,
    );
    // columns line up: every table row starts its status column at the same place
    const col = lines[2]!.indexOf("status");
    expect(lines[4]!.slice(col, col + 2)).toBe("ok");
    expect(lines[5]!.slice(col, col + 8)).toBe("MISMATCH");
    expect(text).toContain("out.y: 1 of 12 elements (8.33 %) outside |a - e| <= atol + rtol*|e|");
    const row = lines.find((l) => l.trimStart().startsWith("[1, 3]"))!;
    const [, exp, act] = row.trim().split(/\s{2,}/);
    expect(exp).not.toBe(act); // enough digits to see the difference
    expect(Number(exp)).toBe(e.data[9]);
    expect(Number(act)).toBe(a.data[9]);
  });

  it("formats values with the digits needed to tell them apart", () => {
    expect(formatValue(1.0000001, "f64", 1.0000002)).toBe("1.0000001e+00");
    expect(formatValue(0.1, "f64")).toBe("1.000000e-01");
    expect(formatValue(1 / 3, "f64")).toBe("3.333333333333333e-01");
    expect(formatValue(Math.fround(1 / 3), "f32")).toBe("3.3333334e-01");
    expect(formatValue(-0)).toBe("-0");
    expect(formatValue(NaN)).toBe("NaN");
    expect(formatValue(-Infinity)).toBe("-Inf");
    expect(formatValue(7, "i32")).toBe("7");
  });

  it("never masks NaN, infinities or −0 in the report", () => {
    const r = compareTensors(Tensor.from([NaN, -0, 1]), Tensor.from([1, -0, Infinity]), {
      name: "out.y",
    });
    const json = JSON.parse(reportToJSON(r)) as Record<string, unknown>;
    expect(json.max_abs_error).toBe("Infinity");
    expect(json.schema_version).toBe(1);
    expect(json.specials).toEqual({
      expected: { nan: 1, pos_inf: 0, neg_inf: 0, neg_zero: 1 },
      actual: { nan: 0, pos_inf: 1, neg_inf: 0, neg_zero: 1 },
    });
    expect((json.first_mismatches as Array<Record<string, unknown>>)[0]).toMatchObject({
      index: [0],
      expected: "NaN",
      actual: 1,
    });
    const text = formatReport(r);
    expect(text).toContain("specials  expected: NaN 1, +Inf 0, -Inf 0, -0 1");
    expect(text).toContain("actual:   NaN 0, +Inf 1, -Inf 0, -0 1");
    const z = JSON.parse(reportToJSON(compareTensors(Tensor.from([-0]), Tensor.from([1])))) as {
      worst: { expected: unknown };
    };
    expect(z.worst.expected).toBe("-0");
  });
});
