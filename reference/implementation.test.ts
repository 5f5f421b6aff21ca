import { describe, expect, test } from "vitest";
import { referenceGraph, referenceImplementation } from "./implementation.js";
import { Tensor } from "../autodiff/tensor.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import { formulaGraph } from "../autodiff/graph.js";
import { Rng, sampleInputs } from "../autodiff/random.js";
import type { Config } from "../spec/node.js";

describe("the reference as an Implementation", () => {
  const impl = referenceImplementation();
  const qkv = { Q: Tensor.zeros([2, 2]), K: Tensor.zeros([2, 2]), V: Tensor.zeros([2, 2]) };
  test("a misspelt hyperparameter is an error, never the default", async () => {
    await expect(
      impl.forward({ formula: "attention", config: { causl: false }, inputs: qkv }),
    ).rejects.toThrow(
      'formula attention has no hyperparameter "causl" (did you mean ' +
        '"causal"?); it takes causal, causal_align, window, mask, mask_shape, ' +
        "scale, softcap, dropout, alibi, H, H_kv",
    );
  });
  test("dtype in the configuration picks the precision of formulas without float inputs", async () => {
    const y = (
      await impl.forward({ formula: "causal_mask", config: { n: 3, dtype: "f32" }, inputs: {} })
    ).outputs["y"]!;
    expect(y.dtype).toBe("f32");
    expect(y.get(0, 1)).toBe(-Infinity);
  });
  test("a fixed-placement block accepts its implied switches only when they agree", async () => {
    await expect(
      impl.forward({ formula: "block_pre_ln", config: { H: 2, placement: "post" }, inputs: {} }),
    ).rejects.toThrow(/has no hyperparameter "placement"/);
  });
});

describe("referenceGraph: one graph per size-free configuration", () => {
  // every formula with a sizeOnly hyperparameter, at size sets including n = 1, H = 1 and odd dims
  const cases: {
    formula: string;
    configs: Config[];
    dims?: (c: Config) => Record<string, number>;
    batch?: number[];
  }[] = [
    {
      formula: "causal_mask",
      configs: [
        { n: 1, m: 1 },
        { n: 5, m: 7 },
        { n: 4, m: 2 },
      ],
    },
    {
      formula: "causal_mask",
      configs: [
        { n: 1, window: 2 },
        { n: 5, window: 2 },
      ],
    },
    {
      formula: "alibi_bias",
      configs: [
        { H: 1, n: 1 },
        { H: 1, n: 4 },
      ],
    },
    {
      formula: "alibi_bias",
      configs: [
        { H: 3, n: 1, m: 1 },
        { H: 3, n: 5, m: 7 },
        { H: 3, n: 2, m: 9 },
      ],
    },
    {
      formula: "positional_sinusoidal",
      configs: [
        { n: 1, d_model: 1 },
        { n: 5, d_model: 7, offset: 3 },
        { n: 3, d_model: 4, offset: 11 },
      ],
    },
    {
      formula: "positional_learned",
      configs: [{ n: 1 }, { n: 3, offset: 2 }, { n: 5, offset: 0 }],
      dims: () => ({ n_ctx: 7, d_model: 5 }),
    },
    {
      formula: "rope",
      configs: [{ offset: 0 }, { offset: 5 }, { offset: 13 }],
      dims: (c) => ({ n: 1 + ((c["offset"] as number) % 4), d_k: 6 }),
      batch: [2],
    },
    {
      formula: "gpt",
      configs: [
        { V: 3, n_ctx: 2, d_model: 1, d_ff: 1, H: 1, L: 1 },
        { V: 7, n_ctx: 5, d_model: 3, d_ff: 5, H: 1, L: 1 },
        { V: 11, n_ctx: 9, d_model: 6, d_ff: 10, H: 1, L: 1 },
      ],
      dims: (c) => ({ n: Math.min(c["n_ctx"] as number, 3) }),
      batch: [1],
    },
  ];
  const bits = (t: Tensor): string =>
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("hex");

  for (const { formula, configs, dims, batch } of cases) {
    test(
      `${formula} ${JSON.stringify(configs)}: the cache hits across sizes, ` +
        `and the cached graph's values and gradients are the fresh graph's, bit for bit`,
      () => {
        const graphs = configs.map((c) => referenceGraph(formula, c));
        for (const g of graphs) expect(g.outputs).toBe(graphs[0]!.outputs);
        expect(new Set(graphs).size).toBe(configs.length);
        configs.forEach((c, i) => {
          const fresh = formulaGraph(formula, c);
          expect(fresh.outputs).not.toBe(graphs[i]!.outputs);
          for (const dtype of ["f64", "f32"] as const) {
            const inputs = sampleInputs(formula, c, {
              seed: i + 1,
              dtype,
              ...(dims ? { dims: dims(c) } : {}),
              ...(batch ? { batch } : {}),
            });
            const want = evaluate(fresh, inputs, { dtype });
            const got = evaluate(graphs[i]!, inputs, { dtype });
            expect(Object.keys(got)).toEqual(Object.keys(want));
            for (const k of Object.keys(want)) {
              expect(got[k]!.shape).toEqual(want[k]!.shape);
              expect(bits(got[k]!)).toBe(bits(want[k]!));
            }
            const floatOut = Object.keys(want).filter(
              (k) => fresh.outputs[k]!.node.dtype === "float",
            );
            const hasFloatArg = Object.values(fresh.args).some((a) => a.node.dtype === "float");
            if (!hasFloatArg) continue;
            const cot = Object.fromEntries(
              floatOut.map((k) => [k, new Rng(i + 7).normalTensor(want[k]!.shape, 1, dtype)]),
            );
            const gw = vjp(fresh, inputs, cot, { dtype }).grads;
            const gg = vjp(graphs[i]!, inputs, cot, { dtype }).grads;
            expect(Object.keys(gg).sort()).toEqual(Object.keys(gw).sort());
            for (const k of Object.keys(gw)) expect(bits(gg[k]!)).toBe(bits(gw[k]!));
          }
        });
      },
    );
  }

  test("a configuration that changes the structure gets its own graph", () => {
    expect(referenceGraph("mha", { H: 1 }).outputs).not.toBe(
      referenceGraph("mha", { H: 2 }).outputs,
    );
    expect(referenceGraph("causal_mask", { n: 3 }).outputs).not.toBe(
      referenceGraph("causal_mask", { n: 3, window: 2 }).outputs,
    );
  });

  test("a size that contradicts the tensors is the same error as with a freshly built graph", () => {
    const P = Tensor.zeros([4, 3]);
    const msg = "slice of positional_learned: elements 0…8 along axis 0 are outside [0, 4)";
    expect(() => evaluate(formulaGraph("positional_learned", { n: 9 }), { P })).toThrow(msg);
    expect(() => evaluate(referenceGraph("positional_learned", { n: 9 }), { P })).toThrow(msg);
  });
});
