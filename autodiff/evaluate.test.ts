/**
 * The optimised interpreter (buffer reuse, in-place steps, transposed products, accumulation into
 * sums) computes the same values as the plain interpretation (`optimize: false`), bit for bit,
 * in float64 and float32, on the graphs where each optimisation fires.
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph, type Graph } from "./graph.js";
import { evaluate, plan } from "./evaluate.js";
import { gradGraph, vjp } from "./grad.js";
import { Rng, sampleInputs } from "./random.js";
import { Tensor, type FloatDType, type NamedTensors } from "./tensor.js";
import { bitDifference } from "./bits.testing.js";
import { evalDim } from "../spec/dims.js";
import { add, constant, gather, input, matmul, slice, transpose } from "../spec/expr.js";

/** `b` (optimised) holds the same tensors as `a` (plain), bit for bit. */
function sameBits(a: NamedTensors, b: NamedTensors, what: string): void {
  expect(bitDifference(a, b, what, "optimised")).toBeUndefined();
}

function checkBoth(
  g: Graph,
  inputs: NamedTensors,
  cot: NamedTensors,
  dtype: FloatDType,
  what: string,
): void {
  sameBits(
    evaluate(g, inputs, { dtype, optimize: false }),
    evaluate(g, inputs, { dtype }),
    `${what} forward`,
  );
  const plain = vjp(g, inputs, cot, { dtype, optimize: false });
  const fast = vjp(g, inputs, cot, { dtype });
  sameBits(plain.outputs, fast.outputs, `${what} vjp outputs`);
  sameBits(plain.grads, fast.grads, `${what} gradients`);
  // a second run reuses pooled buffers: still the same
  sameBits(plain.grads, vjp(g, inputs, cot, { dtype }).grads, `${what} gradients, second run`);
}

describe("optimised evaluation equals the plain interpretation", () => {
  for (const dtype of ["f64", "f32"] as const) {
    test(`GPT block, pre-LN, odd sizes (${dtype})`, () => {
      const cfg = { H: 3, placement: "pre", activation: "gelu_tanh" };
      const g = formulaGraph("block", cfg);
      const x = sampleInputs("block", cfg, {
        seed: 3,
        dims: { n: 7, d_k: 5, H_kv: 3, d_ff: 11 },
        batch: [2],
        dtype,
      });
      const y = evaluate(g, x, { dtype })["y"]!;
      checkBoth(g, x, { y: new Rng(4).normalTensor(y.shape, 1, dtype) }, dtype, "block");
    });

    test(`tiny GPT with repeated token ids (scatter accumulation, transposed logits product) (${dtype})`, () => {
      const cfg = {
        V: 13,
        n_ctx: 9,
        d_model: 6,
        H: 2,
        H_kv: 2,
        L: 2,
        d_ff: 10,
        placement: "pre",
        activation: "gelu_tanh",
        positions: "learned",
        tied: true,
      };
      const g = formulaGraph("gpt", cfg);
      const rng = new Rng(5);
      const inputs: NamedTensors = {};
      for (const [k, e] of Object.entries(g.args)) {
        if (k === "tokens" || k === "targets") continue;
        const env = new Map(
          Object.entries({ V: 13, n_ctx: 9, d_model: 6, d_ff: 10, H: 2, H_kv: 2, d_k: 3 }),
        );
        const shape = e.shape.map((d) => evalDim(d, env)!);
        inputs[k] = rng.normalTensor(shape, 0.3, dtype);
      }
      // token 4 three times: its embedding row gets three update rows summed
      inputs["tokens"] = Tensor.from([4, 1, 4, 0, 4, 12, 7], "i32");
      inputs["targets"] = Tensor.from([1, 4, 0, 4, 12, 7, 2], "i32");
      checkBoth(g, inputs, { loss: Tensor.scalar(1, dtype) }, dtype, "gpt");
    });
  }

  test("split and merge heads: products read and write permuted heads through strides", () => {
    const cfg = { H: 3, placement: "pre", activation: "gelu_tanh" };
    const g = formulaGraph("block", cfg);
    for (const batch of [[], [2]] as const) {
      for (const dtype of ["f64", "f32"] as const) {
        const dims = { n: 7, d_k: 5, H_kv: 3, d_ff: 11 };
        const x = sampleInputs("block", cfg, { seed: 8, dims, batch: [...batch], dtype });
        const y = evaluate(g, x, { dtype })["y"]!;
        const cot = { y: new Rng(2).normalTensor(y.shape, 1, dtype) };
        checkBoth(g, x, cot, dtype, `block, batch [${batch.join(", ")}]`);
        if (batch.length > 0) continue;
        // forward and backward: every permute is a product's strided read or write (two operands)
        const gg = gradGraph(g, { of: ["y"], withValues: true });
        const steps = plan(gg, { ...x, "cot.y": cot.y }, { dtype }).steps;
        const copies = steps.filter((s) => s.node.op === "permute" && s.deps.length === 1);
        expect(copies.map((s) => s.shape.join("×"))).toEqual([]);
        expect(steps.filter((s) => s.node.op === "permute").length).toBeGreaterThan(0);
      }
    }
  });

  test("accumulation into a sum turns −0 into +0 outside the added pieces, as the plain sum does", () => {
    const W = input("W", ["r", "c"]);
    const E = input("E", ["v", "c"]);
    const t = input("t", ["m"], { int: true });
    const A = input("A", ["k", "r"]);
    const B = input("B", ["k", "c"]);
    // grad W = concat(ȳ₁, 0) + concat(0, ȳ₂, 0); grad E = ȳ₃ + scatter_add(ȳ₄ rows); (AᵀB)ᵀ forward
    const g: Graph = {
      name: "accumulation",
      config: {},
      args: { W, E, t, A, B },
      outputs: {
        y1: slice(W, 1, "0", "2"),
        y2: slice(W, 1, "1", "2"),
        y3: add(E, constant(0)),
        y4: gather(E, t),
        y5: transpose(matmul(transpose(A), B)),
      },
      relations: [],
      hyper: new Map(),
    };
    const rng = new Rng(9);
    for (const dtype of ["f64", "f32"] as const) {
      const inputs = {
        W: rng.normalTensor([3, 4], 1, dtype),
        E: rng.normalTensor([5, 4], 1, dtype),
        t: Tensor.from([3, 1, 3], "i32"),
        A: rng.normalTensor([6, 3], 1, dtype),
        B: rng.normalTensor([6, 4], 1, dtype),
      };
      const cot: NamedTensors = {
        y1: Tensor.full([3, 2], -0, dtype),
        y2: rng.normalTensor([3, 2], 1, dtype),
        y3: Tensor.full([5, 4], -0, dtype),
        y4: rng.normalTensor([3, 4], 1, dtype),
        y5: rng.normalTensor([4, 3], 1, dtype),
      };
      checkBoth(g, inputs, cot, dtype, `accumulation ${dtype}`);
      const gr = vjp(g, inputs, cot, { dtype }).grads;
      // column 0 of grad W is −0 + 0 and row 0 of grad E is −0 + 0 (no token 0): both +0
      expect(Object.is(gr["W"]!.get(0, 0), 0)).toBe(true);
      expect(Object.is(gr["E"]!.get(0, 2), 0)).toBe(true);
      // row 3 of grad E got two update rows (token 3 twice)
      expect(gr["E"]!.get(3, 1)).toBe(
        dtype === "f64"
          ? cot["y4"]!.get(0, 1) + cot["y4"]!.get(2, 1)
          : Math.fround(cot["y4"]!.get(0, 1) + cot["y4"]!.get(2, 1)),
      );
    }
  });
});
