import { describe, expect, test } from "vitest";
import "./index.js";
import { formulaNames, getFormula } from "./formula.js";
import { renderFormula } from "./render.js";
import { getPreset } from "./presets.js";
import { pipelineDocument, pipelineMarkdown } from "./pipeline.js";

describe("rendering in the seed's notation", () => {
  test("attention: softmax(QKᵀ/√d_k + M)V", () => {
    const r = renderFormula("attention");
    expect(r.latex.join("\n")).toContain(
      "\\mathrm{softmax}\\left(\\frac{Q K^\\top}{\\sqrt{d_k}} + M\\right)",
    );
    expect(r.latex.at(-1)).toBe("y = P V");
    expect(r.text.join("\n")).toContain("softmax((Q·Kᵀ)/√(d_k) + M)");
  });
  test("LayerNorm shows its mean, variance and ε inside the square root", () => {
    const r = renderFormula("layer_norm").latex.join("\n");
    expect(r).toContain("\\mu = \\frac{1}{d} \\sum_{j} x");
    expect(r).toContain("\\sigma^2 = \\frac{1}{d} \\sum_{j} \\left(x - \\mu\\right)^{2}");
    expect(r).toContain("\\sqrt{\\sigma^2 + \\varepsilon}");
    expect(r).toContain("y = \\gamma \\odot \\hat{x} + \\beta");
  });
  test("FFN as φ(xW₁ + b₁)W₂ + b₂", () => {
    expect(renderFormula("ffn").latex.at(-1)).toBe(
      "y = \\phi\\left(x W_{1} + b_{1}\\right) W_{2} + b_{2}",
    );
  });
  test("the seed's post-LN block names Z'", () => {
    expect(renderFormula("block_post_ln").text).toEqual([
      "Z' = LayerNorm(x + MHA(x))",
      "y = LayerNorm(Z' + FFN(Z'))",
    ]);
    expect(renderFormula("block_pre_ln").text).toEqual([
      "Z' = x + MHA(LayerNorm(x))",
      "y = Z' + FFN(LayerNorm(Z'))",
    ]);
  });
  test("causal mask and embedding", () => {
    expect(renderFormula("causal_mask", { n: "n", m: "n" }).latex.at(-1)).toBe(
      "y = \\begin{cases} 0 & \\text{if } [j \\le i] \\\\ -\\infty & \\text{otherwise} \\end{cases}",
    );
    expect(renderFormula("embedding").text.at(-1)).toBe("y = E[tokens]");
  });
  test("every formula renders in every format", () => {
    for (const name of formulaNames()) {
      const r = renderFormula(name);
      expect(r.latex.length, name).toBeGreaterThan(0);
      expect(r.text.length, name).toBeGreaterThan(0);
      expect(JSON.parse(JSON.stringify(r)).name).toBe(name);
      expect(r.description).toBe(getFormula(name).description);
    }
  });
});

describe("parameter counts", () => {
  test("a GPT-2 block: 4 d_model² + 2 d_model d_ff + 9 d_model + d_ff", () => {
    expect(renderFormula("block_pre_ln").parameterCount!.symbolic).toBe(
      "2·d_ff·d_model + 4·d_model^2 + d_ff + 9·d_model",
    );
  });
  test("gpt2-small has 124,439,808 parameters with tied embeddings", () => {
    const r = renderFormula("gpt", getPreset("gpt2-small"));
    expect(r.parameterCount!.value).toBe(124_439_808);
    expect(r.parameterCount!.symbolic).toContain("V·d_model");
  });
  test("grouped K/V heads: d_kv = H_kv·d_k and d_k = d_model/H come from mha's relations", () => {
    // W_Q, W_O: d_model² each; W_K, W_V: d_model·d_kv each; biases 2·d_model + 2·d_kv
    const r = renderFormula("mha", { H: 4, H_kv: 2 }).parameterCount!;
    expect(r.symbolic).toBe(
      "2·H^-1·H_kv·d_model^2 + 2·d_model^2 + 2·H^-1·H_kv·d_model + 2·d_model",
    );
  });
  test("a model's L blocks count once, times L (their parameters named by spec/layers.ts)", () => {
    const one = renderFormula("gpt", { ...getPreset("gpt2-small"), L: 1 }).parameterCount!.value!;
    const two = renderFormula("gpt", { ...getPreset("gpt2-small"), L: 2 }).parameterCount!.value!;
    // one GPT-2 small block: 4·768² + 2·768·3072 + 9·768 + 3072
    expect(two - one).toBe(7_087_872);
  });
  test("untying adds V·d_model", () => {
    const tied = renderFormula("gpt", getPreset("gpt2-small")).parameterCount!.value!;
    const untied = renderFormula("gpt", { ...getPreset("gpt2-small"), tied: false }).parameterCount!
      .value!;
    expect(untied - tied).toBe(50257 * 768);
  });
});

describe("the pipeline document", () => {
  test("lists the steps in order with the gpt2-small count", () => {
    const md = pipelineMarkdown(pipelineDocument("gpt2-small", getPreset("gpt2-small")));
    const order = [
      "Text → tokens",
      "Embedding",
      "Positions",
      "transformer blocks",
      "Logits",
      "Softmax",
      "Sampling",
    ].map((t) => md.indexOf(t));
    expect(order.every((p, i) => p > 0 && (i === 0 || p > order[i - 1]!))).toBe(true);
    expect(md).toContain("124,439,808 parameters");
    expect(md).toContain("\\sqrt{d_k}");
  });
});
