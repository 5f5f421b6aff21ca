import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "./graph.js";
import { evaluate, NonFiniteError } from "./evaluate.js";
import { valueAndGrad, vjp } from "./grad.js";
import { Rng } from "./random.js";
import { Tensor } from "./tensor.js";
import { input } from "../spec/expr.js";
import { call1 } from "../spec/formula.js";
import { log, sub } from "../spec/expr.js";

const allFinite = (t: Tensor) => Array.from(t.data).every(Number.isFinite);

describe("numerics a reference must get right", () => {
  test("logsumexp of a fully masked row: −∞, and a zero gradient (no NaN), fused and unfused, in both dtypes", () => {
    // y = −∞ for the row of −∞; x̄ = ȳ ⊙ softmax(x), and softmax of a row of −∞ is defined as 0,
    // so the row's gradient is 0. The second row: x̄ = softmax([1, −∞, 2]) = [1/(1+e), 0, e/(1+e)].
    for (const dtype of ["f64", "f32"] as const) {
      const A = dtype === "f64" ? Float64Array : Float32Array;
      const x = new Tensor(
        dtype,
        [2, 3],
        A.from([-Infinity, -Infinity, -Infinity, 1, -Infinity, 2]),
      );
      const cot = { y: new Tensor(dtype, [2], A.from([1, 1])) };
      for (const fused of [true, false]) {
        const { outputs, grads } = vjp(formulaGraph("logsumexp"), { x }, cot, { dtype, fused });
        expect(outputs["y"]!.data[0]).toBe(-Infinity);
        const g = Array.from(grads["x"]!.data);
        expect(g.slice(0, 3)).toEqual([0, 0, 0]);
        const e = Math.E;
        // a few rounding steps (exp, sum, divide) of unit roundoff u each
        const tol = 4 * (dtype === "f64" ? 2 ** -53 : 2 ** -24);
        expect(Math.abs(g[3]! - 1 / (1 + e))).toBeLessThan(tol);
        expect(g[4]).toBe(0);
        expect(Math.abs(g[5]! - e / (1 + e))).toBeLessThan(tol);
      }
    }
  });
  test("cross-entropy and log-softmax stay finite and exact for logits of magnitude 1e4", () => {
    const rng = new Rng(1);
    const z = rng.normalTensor([4, 7], 1e4);
    const t = Tensor.from([0, 3, 6, 2], "i32");
    const { value, grads } = valueAndGrad(formulaGraph("cross_entropy"), { logits: z, targets: t });
    expect(Number.isFinite(value.data[0]!)).toBe(true);
    expect(allFinite(grads["logits"]!)).toBe(true);
    // with |z| ~ 1e4 the softmax is one-hot: loss = mean(max z − z_t), exact in float64
    let expected = 0;
    for (let r = 0; r < 4; r++) {
      let m = -Infinity;
      for (let j = 0; j < 7; j++) m = Math.max(m, z.get(r, j));
      expected += m - z.get(r, t.data[r]!);
    }
    expect(value.data[0]).toBeCloseTo(expected / 4, 6);
    const ls = evaluate(formulaGraph("log_softmax"), { x: z })["y"]!;
    expect(allFinite(ls)).toBe(true);
    const lse = evaluate(formulaGraph("logsumexp"), { x: Tensor.from([[1e4, 1e4 - 1, -1e4]]) })[
      "y"
    ]!;
    expect(lse.data[0]).toBeCloseTo(1e4 + Math.log(1 + Math.exp(-1)), 9);
  });
  test("fully masked attention rows (n > m): zero weights, zero output, zero gradients, no NaN", () => {
    const rng = new Rng(2);
    const g = formulaGraph("attention", { causal: true });
    // 5 queries, 3 keys, bottom-right aligned: queries 0 and 1 see no key
    const x = {
      Q: rng.normalTensor([5, 4]),
      K: rng.normalTensor([3, 4]),
      V: rng.normalTensor([3, 2]),
    };
    const y = evaluate(g, x)["y"]!;
    expect(Array.from(y.data.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(allFinite(y)).toBe(true);
    const { grads } = vjp(g, x, { y: rng.normalTensor([5, 2]) });
    for (const k of ["Q", "K", "V"]) expect(allFinite(grads[k]!), k).toBe(true);
    expect(Array.from(grads["Q"]!.data.subarray(0, 8))).toEqual(new Array(8).fill(0));
  });
  test("log_softmax of a fully masked row follows softmax's choice: −∞ entries (log 0), gradient ȳ, never NaN", () => {
    for (const dtype of ["f64", "f32"] as const) {
      const x = Tensor.from(
        [
          [-Infinity, -Infinity, -Infinity],
          [-Infinity, 0, 1],
        ],
        dtype,
      );
      const cot = Tensor.from(
        [
          [1, 2, 3],
          [1, 2, 3],
        ],
        dtype,
      );
      const { outputs, grads } = vjp(formulaGraph("log_softmax"), { x }, { y: cot }, { dtype });
      const y = outputs["y"]!;
      expect(Array.from(y.data.subarray(0, 3)), dtype).toEqual([-Infinity, -Infinity, -Infinity]);
      expect(Array.from(grads["x"]!.data.subarray(0, 3)), dtype).toEqual([1, 2, 3]);
      // the partly masked row as PyTorch gives it: [−∞, −1.3133, −0.3133], gradient [1, 0.3864, −1.3864]
      expect(y.data[3]).toBe(-Infinity);
      expect(y.data[4]).toBeCloseTo(-Math.log(1 + Math.E), dtype === "f64" ? 14 : 6);
      expect(grads["x"]!.data[3]).toBe(1);
      expect(grads["x"]!.data[5]).toBeCloseTo(
        3 - (6 * Math.E) / (1 + Math.E),
        dtype === "f64" ? 14 : 5,
      );
      expect(Array.from(grads["x"]!.data).some(Number.isNaN)).toBe(false);
      // the same row through softmax: zeros, zero gradient; exp(log_softmax) = softmax there too
      const sm = evaluate(formulaGraph("softmax"), { x }, { dtype })["y"]!;
      expect(Array.from(sm.data.subarray(0, 3))).toEqual(
        Array.from(y.data.subarray(0, 3)).map(Math.exp),
      );
    }
  });

  test("checkFinite names the first node that produced a NaN or Inf from finite operands", () => {
    const x = input("x", ["n"]);
    const y = sub(call1("softmax", { x }), log(x));
    const g = {
      name: "demo",
      config: {},
      args: { x },
      outputs: { y },
      relations: [],
      hyper: new Map(),
    };
    expect(() => evaluate(g, { x: Tensor.from([1, -2, 3]) }, { checkFinite: true })).toThrow(
      NonFiniteError,
    );
    expect(() => evaluate(g, { x: Tensor.from([1, -2, 3]) }, { checkFinite: true })).toThrow(
      /first non-finite value: node #\d+ \(unary log\) produced NaN at index \[1\] of shape \[3\] from finite operands/,
    );
    // without the option, the NaN simply flows out
    expect(evaluate(g, { x: Tensor.from([1, -2, 3]) })["y"]!.data[1]).toBeNaN();
  });
  test("float32 mode rounds every primitive's result to float32", () => {
    const x = Tensor.from([0.1, 0.7, 1 / 3], "f64");
    const y = evaluate(formulaGraph("gelu_tanh"), { x }, { dtype: "f32" })["y"]!;
    expect(y.dtype).toBe("f32");
    const y64 = evaluate(formulaGraph("gelu_tanh"), { x })["y"]!;
    // the input is rounded to float32 first, then the one primitive's result is rounded once
    const x32 = Array.from(x.data, (v) => Math.fround(v));
    const direct = evaluate(formulaGraph("gelu_tanh"), { x: Tensor.from(x32) })["y"]!;
    for (let i = 0; i < 3; i++) {
      expect(y.data[i]).toBe(Math.fround(direct.data[i]!));
      expect(Math.abs(y.data[i]! - y64.data[i]!)).toBeLessThan(1e-6);
    }
  });
});

describe("bad input", () => {
  test("token ids outside the table are named with their position", () => {
    const g = formulaGraph("embedding");
    expect(() =>
      evaluate(g, { tokens: Tensor.from([1, 11, 2], "i32"), E: Tensor.zeros([11, 3]) }),
    ).toThrow(/index 11 at position 1 is outside the table's 11 rows/);
  });
  test("float token ids must be integers; float inputs must not be i32", () => {
    const g = formulaGraph("embedding");
    expect(() => evaluate(g, { tokens: Tensor.from([1.5]), E: Tensor.zeros([11, 3]) })).toThrow(
      /input tokens must hold integer ids \(i32\); element \[0\] is 1.5/,
    );
    expect(() => evaluate(formulaGraph("softmax"), { x: Tensor.from([1, 2], "i32") })).toThrow(
      /input x must be a float tensor \(f64\), got i32/,
    );
  });
  test("unknown and missing inputs", () => {
    expect(() =>
      evaluate(formulaGraph("softmax"), { x: Tensor.from([1]), z: Tensor.from([1]) }),
    ).toThrow(/softmax has no argument "z"; its arguments are x/);
    expect(() =>
      evaluate(formulaGraph("layer_norm"), {
        x: Tensor.from([[1, 2]]),
        gamma: Tensor.from([1, 1]),
      }),
    ).toThrow(/needs param beta of shape \[d\], but it was not given/);
  });
});
