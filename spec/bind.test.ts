import { describe, expect, test } from "vitest";
import "./index.js";
import { bindDims, concreteShape } from "./bind.js";
import { buildFormula, hyperDims } from "./formula.js";

const bind = (
  name: string,
  cfg: Record<string, number | string | boolean>,
  shapes: Record<string, number[]>,
) => {
  const b = buildFormula(name, cfg);
  const infos: Record<string, { shape: number[]; dtype: string }> = {};
  for (const [k, s] of Object.entries(shapes)) infos[k] = { shape: s, dtype: "f64" };
  return bindDims(
    Object.values(b.outputs).map((e) => e.node),
    infos,
    { formula: name, hyper: hyperDims(b.def, b.config), relations: b.relations },
  );
};

/** Shapes of mha's input x (`rows` rows), weights and biases at width d = d_model = d_kv. */
const mhaShapes = (rows: number, d: number) => ({
  x: [rows, d],
  W_Q: [d, d],
  W_K: [d, d],
  W_V: [d, d],
  W_O: [d, d],
  b_Q: [d],
  b_K: [d],
  b_V: [d],
  b_O: [d],
});

describe("binding dims", () => {
  test("d_k is derived from d_model = H·d_k", () => {
    const d = 384;
    const b = bind("mha", { H: 8 }, mhaShapes(5, d));
    expect(b.dims.get("d_k")).toBe(48);
    expect(b.sources.get("d_k")).toMatch(/d_model = 384/);
  });
  test("a conflicting size names the formula, the tensor, the axis and where each size came from", () => {
    const d = 384;
    const p = mhaShapes(5, d);
    expect(() =>
      bind("mha", { H: 8, kv_cache: true }, { ...p, past_k: [8, 3, 64], past_v: [8, 3, 64] }),
    ).toThrow(
      "d_k = 48 (from d_model = H*d_k with d_model = 384, H = 8) but input " +
        "past_k of formula mha (shape [8, 3, 64]) at axis 2 has 64",
    );
    expect(() => bind("mha", { H: 8 }, { ...p, W_K: [d, 512] })).toThrow(
      "d_kv = 384 (from d_kv = 8*d_k with d_k = 48) but param W_K of formula mha (shape [384, 512]) at axis 1 has 512",
    );
  });
  test("attention: K's head size must be Q's", () => {
    expect(() => bind("attention", {}, { Q: [4, 48], K: [4, 64], V: [4, 48] })).toThrow(
      new RegExp(
        String.raw`d_k = 48 \(input Q of formula attention \(shape \[4, 48\]\) ` +
          String.raw`at axis 1\) but input K of formula attention \(shape \[4, 64` +
          String.raw`\]\) at axis 1 has 64`,
      ),
    );
  });
  test("rank errors say what was declared", () => {
    expect(() => bind("layer_norm", {}, { x: [], gamma: [3], beta: [3] })).toThrow(
      /input x of formula layer_norm has shape \[\] \(rank 0\) but the formula declares \[\.\.\., d\]/,
    );
  });
  test("a missing input is named with its declared shape", () => {
    expect(() => bind("softmax", {}, {})).toThrow(/needs input x of shape \[\.\.\., m\]/);
  });
  test("batch prefixes must agree across inputs", () => {
    expect(() => bind("attention", {}, { Q: [2, 4, 8], K: [3, 4, 8], V: [3, 4, 8] })).toThrow(
      /batch prefix "\.\.\." is \[2\] \(from input Q\) but input K of formula attention has \[3\]/,
    );
  });
  test("indivisible widths are reported", () => {
    const d = 10;
    expect(() => bind("mha", { H: 3 }, mhaShapes(2, d))).toThrow(
      /no integer solution|not divisible|not an integer/,
    );
  });
  test("concrete shapes expand the batch prefix", () => {
    const b = bind("softmax", {}, { x: [2, 3, 7] });
    expect(concreteShape(["...", "m"], b)).toEqual([2, 3, 7]);
  });
  test("a dim nothing determines is reported", () => {
    expect(() => bind("positional_sinusoidal", { n: "q", d_model: 4 }, {})).toThrow(
      "cannot determine q of formula positional_sinusoidal: give it as hyperparameters or through the inputs",
    );
  });
});
