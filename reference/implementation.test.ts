import { describe, expect, test } from "vitest";
import { referenceImplementation } from "./implementation.js";
import { Tensor } from "../autodiff/tensor.js";

describe("the reference as an Implementation", () => {
  const impl = referenceImplementation();
  const qkv = { Q: Tensor.zeros([2, 2]), K: Tensor.zeros([2, 2]), V: Tensor.zeros([2, 2]) };
  test("a misspelt hyperparameter is an error, never the default", async () => {
    await expect(impl.forward({ formula: "attention", config: { causl: false }, inputs: qkv })).rejects.toThrow('formula attention has no hyperparameter "causl" (did you mean "causal"?); it takes causal, causal_align, window, mask, mask_shape, scale, softcap, dropout, alibi, H, H_kv');
  });
  test("dtype in the configuration picks the precision of formulas without float inputs", async () => {
    const y = (await impl.forward({ formula: "causal_mask", config: { n: 3, dtype: "f32" }, inputs: {} })).outputs["y"]!;
    expect(y.dtype).toBe("f32");
    expect(y.get(0, 1)).toBe(-Infinity);
  });
  test("a fixed-placement block accepts its implied switches only when they agree", async () => {
    await expect(impl.forward({ formula: "block_pre_ln", config: { H: 2, placement: "post" }, inputs: {} })).rejects.toThrow(/has no hyperparameter "placement"/);
  });
});
