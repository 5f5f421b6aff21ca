/**
 * The loss, normalisation and product conventions of issue 13 (softmax axis, cross-entropy label
 * smoothing / reduction / class weights, LayerNorm without β and over several axes, linear without
 * bias, matmul broadcasting and 1-D operands): full and fast gradcheck against central
 * differences, values derived by hand, and the errors bad configurations get.
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "./graph.js";
import { gradcheckGraph } from "./gradcheck.js";
import { evaluate } from "./evaluate.js";
import { sampleInputs } from "./random.js";
import { Tensor, type NamedTensors } from "./tensor.js";
import type { Config } from "../spec/node.js";

const CASES: [string, Config, readonly number[]][] = [
  ["softmax", { axis: -2 }, [2]],
  ["softmax", { axis: -3 }, []],
  ["log_softmax", { axis: -2 }, [3]],
  ["layer_norm", { bias: false }, [2]],
  ["layer_norm", { normalized_axes: 2 }, [2]],
  ["layer_norm", { normalized_axes: 3, bias: false }, []],
  ["linear", { bias: false }, [2]],
  ["matmul", { a_batch: "B,1", b_batch: "H" }, []],
  ["matmul", { a_batch: "none", vector: "a" }, [2]],
  ["matmul", { b_batch: "none", vector: "b" }, [2]],
  ["matmul", { a_batch: "none", b_batch: "none", vector: "both" }, []],
  ["cross_entropy", { label_smoothing: 0.2 }, [2]],
  ["cross_entropy", { reduction: "none", label_smoothing: 0.1 }, [2]],
  ["cross_entropy", { reduction: "sum", weight: true }, []],
  ["cross_entropy", { weight: true, label_smoothing: 0.3 }, [2]],
];

describe("the new conventions pass gradcheck", () => {
  for (const [formula, cfg, batch] of CASES) {
    for (const mode of ["full", "fast"] as const) {
      test(`${formula} ${JSON.stringify(cfg)} (${mode})`, async () => {
        const inputs: NamedTensors = sampleInputs(formula, cfg, { seed: 5, dims: { H: 3 }, batch });
        // positive class weights, and one ignored target, where the loss takes them
        if (inputs["weight"] !== undefined)
          inputs["weight"] = Tensor.from(
            Array.from(inputs["weight"].data, (v) => 0.5 + Math.abs(v)),
            "f64",
          );
        if (inputs["targets"] !== undefined) inputs["targets"].data[0] = -100;
        const r = await gradcheckGraph(formulaGraph(formula, cfg), inputs, { mode, seed: 2 });
        expect(r.failures).toEqual([]);
        expect(r.ok).toBe(true);
      });
    }
  }
});

describe("values derived by hand", () => {
  test("matmul of two 1-D operands is their dot product: [1, 2, 3]·[4, 5, 6] = 32", () => {
    const y = evaluate(
      formulaGraph("matmul", { a_batch: "none", b_batch: "none", vector: "both" }),
      { a: Tensor.from([1, 2, 3]), b: Tensor.from([4, 5, 6]) },
    )["y"]!;
    expect(y.shape).toEqual([]);
    expect(y.data[0]).toBe(32);
  });
  test("matmul broadcasts a [2, 1, 1, 2] against b [3, 2, 1]: y[i, j] = a_i · b_j", () => {
    const a = Tensor.from([[[[1, 2]]], [[[3, 4]]]]);
    const b = Tensor.from([
      [[1], [0]],
      [[0], [1]],
      [[1], [1]],
    ]);
    const y = evaluate(formulaGraph("matmul", { a_batch: "B,1", b_batch: "H" }), { a, b })["y"]!;
    expect(y.shape).toEqual([2, 3, 1, 1]);
    // a_0 = (1, 2), a_1 = (3, 4); b_j picks the first, the second, both: 1 2 3 / 3 4 7
    expect(Array.from(y.data)).toEqual([1, 2, 3, 3, 4, 7]);
  });
  test("cross_entropy with label smoothing and class weights: logits (0, ln 3), target 0, ε = 0.5, w = (2, 1)", () => {
    // p = (1/4, 3/4). Unweighted: q = (0.75, 0.25), loss = 0.75·ln 4 + 0.25·ln(4/3) = 2 ln 2 − 0.25 ln 3.
    // Weighted: (1 − ε)·w_0·ln 4 + (ε/2)(w_0 ln 4 + w_1 ln(4/3)) = 1.5 ln 4 + 0.25 ln(4/3), mean ÷ w_0 = 2.
    const logits = Tensor.from([[0, Math.log(3)]]);
    const targets = Tensor.from([0], "i32");
    const plain = evaluate(formulaGraph("cross_entropy", { label_smoothing: 0.5 }), {
      logits,
      targets,
    })["loss"]!;
    expect(plain.data[0]).toBeCloseTo(2 * Math.log(2) - 0.25 * Math.log(3), 14);
    const weighted = evaluate(
      formulaGraph("cross_entropy", { label_smoothing: 0.5, weight: true }),
      { logits, targets, weight: Tensor.from([2, 1]) },
    )["loss"]!;
    expect(weighted.data[0]).toBeCloseTo((1.5 * Math.log(4) + 0.25 * Math.log(4 / 3)) / 2, 14);
  });
  test("cross_entropy reduction none gives one loss per position, 0 where ignored", () => {
    // uniform logits over V = 4: every counted position's loss is ln 4
    const y = evaluate(formulaGraph("cross_entropy", { reduction: "none" }), {
      logits: Tensor.zeros([3, 4]),
      targets: Tensor.from([1, -100, 3], "i32"),
    })["loss"]!;
    expect(y.shape).toEqual([3]);
    expect(y.data[0]).toBeCloseTo(Math.log(4), 15);
    expect(y.data[1]).toBe(0);
  });
  test("layer_norm without beta over 2 axes: x = [[1, 3], [5, 7]] has μ = 4, σ² = 5; eps 0, γ = 1", () => {
    const y = evaluate(formulaGraph("layer_norm", { bias: false, normalized_axes: 2, eps: 0 }), {
      x: Tensor.from([
        [
          [1, 3],
          [5, 7],
        ],
      ]),
      gamma: Tensor.full([2, 2], 1),
    })["y"]!;
    const s = Math.sqrt(5);
    [-3 / s, -1 / s, 1 / s, 3 / s].forEach((v, i) => expect(y.data[i]).toBeCloseTo(v, 14));
  });
  test("softmax over axis −2 normalises columns: [[0, 0], [ln 3, 0]] → [[1/4, 1/2], [3/4, 1/2]]", () => {
    const y = evaluate(formulaGraph("softmax", { axis: -2 }), {
      x: Tensor.from([
        [0, 0],
        [Math.log(3), 0],
      ]),
    })["y"]!;
    [0.25, 0.5, 0.75, 0.5].forEach((v, i) => expect(y.data[i]).toBeCloseTo(v, 15));
  });
});

describe("bad configurations get errors that say what to give", () => {
  const err = (formula: string, cfg: Config) => {
    try {
      formulaGraph(formula, cfg);
    } catch (e) {
      return (e as Error).message;
    }
    return "no error";
  };
  test("softmax axis counted from the front", () => {
    expect(err("softmax", { axis: 1 })).toBe(
      "formula softmax: hyperparameter axis must be a negative integer (−1 = " +
        "last axis), got 1 (axis 1 counts from the front; give it from the end, " +
        "axis − rank: −2 for axis 1 of a rank-3 tensor)",
    );
    expect(err("log_softmax", { axis: -1.5 })).toBe(
      "formula log_softmax: hyperparameter axis must be a negative integer (−1 = last axis), got -1.5",
    );
  });
  test("label smoothing outside [0, 1]", () => {
    expect(err("cross_entropy", { label_smoothing: 1.5 })).toBe(
      "formula cross_entropy: label_smoothing must be in [0, 1] (PyTorch's range), got 1.5",
    );
  });
  test("a target outside [0, V) that is not ignore_index is refused with its position and value", () => {
    const ce =
      (targets: number[], cfg: Config = {}) =>
      () =>
        evaluate(formulaGraph("cross_entropy", cfg), {
          logits: Tensor.zeros([3, 5]),
          targets: Tensor.from(targets, "i32"),
        });
    expect(ce([1, 5, 0])).toThrow(/index 5 at position 1 is outside the table's 5 rows/);
    // −1 is refused under the default ignore_index (−100) and ignored when stated
    expect(ce([1, 0, -1])).toThrow(/index -1 at position 2 is outside the table's 5 rows/);
    expect(ce([1, 0, -1], { ignore_index: -1 })).not.toThrow();
    expect(ce([-100, 2, 3])).not.toThrow();
  });
  test("normalized_axes 0", () => {
    expect(err("layer_norm", { normalized_axes: 0 })).toBe(
      "formula layer_norm: hyperparameter normalized_axes must be an integer " +
        "from 1 to 8 (the number of trailing axes normalised together), got 0",
    );
  });
  test("matmul batch dims that do not parse, and a 1-D operand with batch axes", () => {
    expect(err("matmul", { a_batch: "B;1" })).toBe(
      "formula matmul: hyperparameter a_batch must be a comma-separated list " +
        'of dims ("B,1,H", "..." first for the batch prefix, "" or "none" for ' +
        'none): cannot parse dim expression "B;1", got "B;1"',
    );
    expect(err("matmul", { b_batch: "H,..." })).toMatch(
      /"\.\.\." \(the batch prefix\) may only come first, in "H,\.\.\."/,
    );
    expect(err("matmul", { vector: "a" })).toBe(
      'formula matmul: a 1-D operand a (vector = a) has no batch axes; set a_batch = "" (got "...")',
    );
  });
});
