/**
 * Gradients of the issue-13 conventions for broadcast attention masks, partial RoPE with
 * position ids, and dropout with its keep mask as an input: full and fast gradcheck against
 * central differences, plus the documented exact values (fully masked rows, p = 0 and p = 1).
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "./graph.js";
import { evaluate } from "./evaluate.js";
import { gradcheckGraph } from "./gradcheck.js";
import { vjp } from "./grad.js";
import { sampleInputs } from "./random.js";
import { Tensor, type NamedTensors } from "./tensor.js";
import type { Config } from "../spec/node.js";

const dims = { n: 3, m: 5, d_k: 3, d_v: 2, H: 2 };

/** Gradcheck (seed 1) of the formula's gradients of `wrt` in `mode` passes, with no failures. */
async function expectGradcheck(
  formula: string,
  cfg: Config,
  inputs: NamedTensors,
  mode: "full" | "fast",
  wrt: string[],
): Promise<void> {
  const r = await gradcheckGraph(formulaGraph(formula, cfg), inputs, { mode, seed: 1, wrt });
  expect(r.failures).toEqual([]);
  expect(r.ok).toBe(true);
}

/**
 * A mask of `shape` whose last axis is the keys: key 1 hidden everywhere, query row 2 (when the
 * mask has query rows) hides every key.
 */
function broadcastMask(shape: readonly number[], additive: boolean, rowsAxis: boolean): Tensor {
  const t = Tensor.zeros(shape, additive ? "f64" : "i32");
  const m = shape.at(-1)!;
  const n = rowsAxis ? shape.at(-2)! : 1;
  for (let f = 0; f < t.size; f++) {
    const j = f % m;
    const i = Math.floor(f / m) % n;
    const keep = j !== 1 && !(rowsAxis && i === 2);
    t.data[f] = additive ? (keep ? 0.3 * ((f % 3) - 1) : -Infinity) : keep ? 1 : 0;
  }
  return t;
}

const MASKS: [string, boolean][] = [
  ["m", false],
  ["n,m", true],
  ["1,m", false],
  ["1,n,m", true],
  ["H,n,m", true],
  ["1,1,m", false],
  ["H,1,m", false],
  ["...,1,m", false],
  ["...,1,n,m", true],
  ["...,1,1,m", false],
  ["...,H,1,m", false],
];

describe("broadcast attention masks pass gradcheck and keep their zeros", () => {
  for (const [shape, rowsAxis] of MASKS) {
    for (const kind of ["boolean", "additive"] as const) {
      test(`mask_shape ${shape}, ${kind}`, async () => {
        const cfg: Config = { mask: kind, mask_shape: shape, causal: false };
        const inputs: NamedTensors = sampleInputs("attention", cfg, { seed: 5, dims, batch: [2] });
        inputs["mask"] = broadcastMask(inputs["mask"]!.shape, kind === "additive", rowsAxis);
        const wrt = ["Q", "K", "V"];
        for (const mode of ["full", "fast"] as const) {
          await expectGradcheck("attention", cfg, inputs, mode, wrt);
        }
        const g = formulaGraph("attention", cfg);
        const yShape = evaluate(g, inputs)["y"]!.shape;
        const { outputs, grads } = vjp(g, inputs, { y: Tensor.full(yShape, 1) });
        const y = outputs["y"]!;
        const m = inputs["K"]!.shape.at(-2)!;
        // key 1 is hidden from every query: its K and V rows get exact zero gradients
        for (const a of ["K", "V"]) {
          const t = grads[a]!;
          const w = t.shape.at(-1)!;
          for (let o = 0; o < t.size; o += m * w)
            for (let e = 0; e < w; e++) expect(t.data[o + w + e]).toBe(0);
        }
        if (rowsAxis) {
          // query row 2 sees no key: output 0 and ∂Q 0, in every batch row and head
          const n = y.shape.at(-2)!;
          const w = y.shape.at(-1)!;
          for (let o = 0; o < y.size; o += n * w)
            for (let e = 0; e < w; e++) expect(y.data[o + 2 * w + e]).toBe(0);
          const q = grads["Q"]!;
          const wq = q.shape.at(-1)!;
          for (let o = 0; o < q.size; o += n * wq)
            for (let e = 0; e < wq; e++) expect(q.data[o + 2 * wq + e]).toBe(0);
        }
        if (kind === "additive") {
          const gm = grads["mask"]!;
          expect(gm.shape).toEqual(inputs["mask"]!.shape);
          for (let f = 0; f < gm.size; f++) expect(Number.isNaN(gm.data[f])).toBe(false);
        }
      });
    }
  }

  test("a finite additive broadcast mask gets the gradient of the scores summed over its broadcast axes", async () => {
    const cfg: Config = { mask: "additive", mask_shape: "...,1,1,m", causal: true };
    const inputs: NamedTensors = sampleInputs("attention", cfg, { seed: 6, dims, batch: [2] });
    const r = await gradcheckGraph(formulaGraph("attention", cfg), inputs, {
      mode: "full",
      seed: 2,
    });
    expect(r.failures).toEqual([]);
  });

  test("mask_shape without a mask input is refused, naming both", () => {
    expect(() => formulaGraph("attention", { mask_shape: "m" })).toThrow(
      "attention: mask_shape m describes a mask input, but mask is none",
    );
  });
  test("an unknown mask_shape is refused with the list of shapes", () => {
    expect(() => formulaGraph("attention", { mask: "boolean", mask_shape: "m,n" })).toThrow(
      /hyperparameter mask_shape must be one of scores, m, n,m/,
    );
  });
});

describe("partial RoPE and position_ids pass gradcheck", () => {
  const CASES: [string, Config, Record<string, number>][] = [
    ["rotary_dims 2 of 6, half", { rotary_dims: 2 }, { d_k: 6 }],
    ["rotary_dims 4 of 6, interleaved", { rotary_dims: 4, convention: "interleaved" }, { d_k: 6 }],
    ["rotary_dims 0", { rotary_dims: 0 }, { d_k: 5 }],
    ["position_ids, half", { position_ids: true }, { d_k: 4 }],
    [
      "position_ids, rotary_dims 2 of 5, interleaved",
      { position_ids: true, rotary_dims: 2, convention: "interleaved" },
      { d_k: 5 },
    ],
  ];
  for (const [what, cfg, d] of CASES) {
    for (const mode of ["full", "fast"] as const) {
      test(`${what} (${mode})`, async () => {
        const inputs: NamedTensors = sampleInputs("rope", cfg, {
          seed: 7,
          dims: { n: 4, ...d },
          batch: [2],
        });
        if (cfg["position_ids"] === true)
          inputs["position_ids"] = Tensor.from([0, 0, 1, 2, 7, 8, 9, 10], "i32", [2, 4]);
        await expectGradcheck("rope", cfg, inputs, mode, ["x"]);
      });
    }
  }
  test("an odd rotary_dims is refused", () => {
    expect(() => formulaGraph("rope", { rotary_dims: 3 })).toThrow(
      "rope: rotary_dims must be even (dims rotate in pairs), got 3",
    );
  });
});

describe("dropout", () => {
  for (const p of [0, 0.25, 0.9, 1]) {
    for (const mode of ["full", "fast"] as const) {
      test(`p = ${p} passes gradcheck (${mode})`, async () => {
        const inputs: NamedTensors = sampleInputs(
          "dropout",
          { p },
          { seed: 8, dims: {}, batch: [3, 4] },
        );
        inputs["keep_mask"] = Tensor.from([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0], "i32", [3, 4]);
        await expectGradcheck("dropout", { p }, inputs, mode, ["x"]);
      });
    }
  }
  test("p = 1 gives zeros in value and gradient, never NaN, whatever the mask", () => {
    const x = Tensor.from([1, -2, 1e300, -0.5], "f64", [4]);
    const keep = Tensor.from([1, 1, 0, 1], "i32", [4]);
    const { outputs, grads } = vjp(
      formulaGraph("dropout", { p: 1 }),
      { x, keep_mask: keep },
      { y: Tensor.full([4], 1) },
    );
    // ±0 both: 0·(−2) = −0, as PyTorch's x·0 gives
    for (const t of [outputs["y"]!, grads["x"]!])
      expect(Array.from(t.data).map((v) => v === 0)).toEqual([true, true, true, true]);
  });
  test("p = 0 with a mask of ones is the identity, exactly", () => {
    const x = Tensor.from([1.5, -2, 3e-300, 7, Number.MAX_VALUE, -0.25], "f64", [2, 3]);
    const y = evaluate(formulaGraph("dropout", { p: 0 }), {
      x,
      keep_mask: Tensor.full([2, 3], 1, "i32"),
    })["y"]!;
    expect(Array.from(y.data)).toEqual(Array.from(x.data));
  });
  test("p = 0.75 scales kept entries by 4 (1/(1 − 0.75), exact in binary) and zeroes dropped ones", () => {
    const x = Tensor.from([1, -2, 3, 0.5], "f64", [4]);
    const y = evaluate(formulaGraph("dropout", { p: 0.75 }), {
      x,
      keep_mask: Tensor.from([1, 0, 1, 0], "i32", [4]),
    })["y"]!;
    expect(Array.from(y.data)).toEqual([4, 0, 12, 0]);
  });
  test("p outside [0, 1] is refused with its value", () => {
    expect(() => formulaGraph("dropout", { p: 1.5 })).toThrow(
      "dropout: p must lie in [0, 1], got 1.5",
    );
    expect(() => formulaGraph("dropout", { p: -0.1 })).toThrow(
      "dropout: p must lie in [0, 1], got -0.1",
    );
  });
  test("a keep mask of another shape than x is refused", () => {
    const g = formulaGraph("dropout", { p: 0.5 });
    expect(() =>
      evaluate(g, { x: Tensor.zeros([2, 3], "f64"), keep_mask: Tensor.zeros([3, 2], "i32") }),
    ).toThrow(/keep_mask/);
  });
});
