import { describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { getFormula } from "../spec/formula.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import { loadCase } from "../golden/cases-io.js";
import { compareCase, formatReport } from "../golden/compare.js";
import {
  countParameters,
  formulaConfig,
  GPT,
  initWeights,
  llamaHiddenSize,
  ModelError,
  parameterShapes,
  resolveModelConfig,
  shiftTargets,
  type GPTConfig,
} from "./model.js";

const U64 = 2 ** -53;

describe("resolveModelConfig", () => {
  it("reads every preset of spec/presets.ts and fills H_kv, d_ff and dtype", () => {
    const tiny = resolveModelConfig("tiny");
    expect(tiny).toMatchObject({
      V: 96,
      n_ctx: 32,
      d_model: 16,
      H: 2,
      H_kv: 2,
      L: 2,
      d_ff: 64,
      placement: "pre",
      activation: "gelu_tanh",
      positions: "learned",
      tied: true,
      dtype: "f64",
    });
    const gpt2 = resolveModelConfig("gpt2-small");
    expect(gpt2).toMatchObject({
      V: 50257,
      n_ctx: 1024,
      d_model: 768,
      H: 12,
      L: 12,
      d_ff: 3072,
      norm: "layer_norm",
      bias: true,
      eps: 1e-5,
    });
    expect(resolveModelConfig("llama-tiny")).toMatchObject({
      norm: "rms_norm",
      activation: "swiglu",
      positions: "rope",
      bias: false,
      tied: false,
      eps: 1e-6,
    });
    expect(resolveModelConfig("seed-post-ln")).toMatchObject({
      placement: "post",
      positions: "sinusoidal",
      activation: "gelu",
    });
  });

  it("takes fields over a preset and the gpt formula's defaults under both", () => {
    const c = resolveModelConfig({
      preset: "tiny",
      H: 4,
      H_kv: 1,
      dtype: "f32",
      positions: "alibi",
    });
    expect(c).toMatchObject({ H: 4, H_kv: 1, dtype: "f32", positions: "alibi", d_model: 16 });
    const bare = resolveModelConfig({ V: 10, n_ctx: 8, d_model: 12, H: 3, L: 1 });
    const hyper = new Map(getFormula("gpt").hyper.map((h) => [h.name, h.default]));
    expect(bare.placement).toBe(hyper.get("placement"));
    expect(bare.eps).toBe(hyper.get("eps"));
    expect(bare.d_ff).toBe(48); // 4·d_model
    expect(
      resolveModelConfig({ V: 10, n_ctx: 8, d_model: 16, H: 2, L: 1, activation: "swiglu" }).d_ff,
    ).toBe(llamaHiddenSize(16, 4));
  });

  it("rejects bad configurations with messages that name the field", () => {
    expect(() => resolveModelConfig("gpt3")).toThrow(
      /unknown preset "gpt3"; presets: tiny, seed-post-ln, gpt2-small, llama-tiny/,
    );
    expect(() => resolveModelConfig({ preset: "tiny", heads: 3 } as never)).toThrow(
      /unknown model configuration field "heads"/,
    );
    expect(() => resolveModelConfig({ preset: "tiny", H: 3 })).toThrow(
      "d_model = 16 is not a multiple of H = 3",
    );
    expect(() => resolveModelConfig({ preset: "tiny", H: 4, H_kv: 3 })).toThrow(
      "H_kv = 3 must divide H = 4",
    );
    expect(() =>
      resolveModelConfig({ preset: "tiny", d_model: 18, H: 2, positions: "rope" }),
    ).toThrow('positions "rope" rotates pairs of coordinates: d_k = d_model / H = 9 must be even');
    expect(() => resolveModelConfig({ preset: "tiny", placement: "post", parallel: true })).toThrow(
      'parallel attention + FFN is defined for placement "pre" only (GPT-J), got "post"',
    );
    expect(() => resolveModelConfig({ preset: "tiny", L: 0 })).toThrow(
      "L must be a positive integer, got 0",
    );
    expect(() => resolveModelConfig({ preset: "tiny", V: 9.5 })).toThrow(
      "V must be a positive integer, got 9.5",
    );
    expect(() => resolveModelConfig({ preset: "tiny", norm: "batch_norm" as never })).toThrow(
      /hyperparameter norm must be one of layer_norm, rms_norm, got "batch_norm"/,
    );
    expect(() => resolveModelConfig({ preset: "tiny", dtype: "f16" as never })).toThrow(
      'dtype must be "f64" or "f32", got "f16"',
    );
    expect(() => resolveModelConfig({ V: 10, d_model: 8, H: 2, L: 1 })).toThrow(
      "model configuration needs n_ctx (or a preset)",
    );
  });
});

describe("llamaHiddenSize", () => {
  it("gives the intermediate sizes of the published LLaMA checkpoints", () => {
    // intermediate_size in the LLaMA-7B/13B/65B configs (multiple_of = 256)
    expect(llamaHiddenSize(4096, 256)).toBe(11008);
    expect(llamaHiddenSize(5120, 256)).toBe(13824);
    expect(llamaHiddenSize(8192, 256)).toBe(22016);
    // llama-tiny's d_ff: int(2·64/3) = 42, rounded up to a multiple of 4
    expect(llamaHiddenSize(16, 4)).toBe(resolveModelConfig("llama-tiny").d_ff);
    // the integer part first, as LLaMA's model.py: int(42.67) = 42 is already even
    expect(llamaHiddenSize(16, 2)).toBe(42);
    expect(llamaHiddenSize(3, 1)).toBe(8);
    expect(() => llamaHiddenSize(0, 4)).toThrow(
      "llamaHiddenSize: d_model must be a positive integer, got 0",
    );
    expect(() => llamaHiddenSize(16, 0)).toThrow(
      "llamaHiddenSize: multipleOf must be a positive integer, got 0",
    );
  });
});

describe("parameterShapes and countParameters", () => {
  it("counts GPT-2 small at 124,439,808", () => {
    const c = resolveModelConfig("gpt2-small");
    // independently: V·d + n_ctx·d + L·(12d² + 13d) + 2d — per block c_attn 3d²+3d, c_proj d²+d,
    // c_fc 4d²+4d, mlp.c_proj 4d²+d, two LayerNorms 4d; the final LayerNorm 2d; lm_head tied
    const { V, n_ctx, d_model: d, L } = c;
    expect(V * d + n_ctx * d + L * (12 * d * d + 13 * d) + 2 * d).toBe(124_439_808);
    expect(countParameters(c)).toBe(124_439_808);
  });

  it("counts a LLaMA-style model: untied, no biases, RMSNorm, SwiGLU, grouped KV heads", () => {
    const c = resolveModelConfig({ preset: "llama-tiny", H: 4, H_kv: 2 });
    const { V, d_model: d, d_ff, L, H, H_kv } = c;
    const dk = d / H;
    // wte + lm_head + L·(ln_1 + W_Q + W_K + W_V + W_O + ln_2 + gate/up/down) + ln_f
    const expected =
      2 * V * d + L * (d + d * H * dk + 2 * d * H_kv * dk + d * d + d + 3 * d * d_ff) + d;
    expect(countParameters(c)).toBe(expected);
  });

  it("reads the shapes from the gpt formula's arguments", () => {
    const c = resolveModelConfig({
      preset: "tiny",
      H: 4,
      H_kv: 2,
      placement: "sandwich",
      tied: false,
    });
    const shapes = parameterShapes(c);
    const args = getFormula("gpt")
      .args(formulaConfig(c))
      .filter((a) => a.role === "param");
    expect(Object.keys(shapes)).toEqual(args.map((a) => a.name));
    expect(shapes["h.1.attn.c_attn.weight"]).toEqual([16, (4 + 2 * 2) * 4]);
    expect(shapes["h.0.ln_4.bias"]).toEqual([16]);
    expect(shapes["lm_head.weight"]).toEqual([96, 16]);
  });
});

/** Mean and standard deviation of some tensors' values. */
function moments(ts: readonly Tensor[]): { n: number; mean: number; std: number; maxAbs: number } {
  let n = 0,
    s = 0,
    s2 = 0,
    maxAbs = 0;
  for (const t of ts)
    for (const v of t.data) {
      n++;
      s += v;
      s2 += v * v;
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
  const mean = s / n;
  return { n, mean, std: Math.sqrt(s2 / n - mean * mean), maxAbs };
}

/** Sampling error bounds: |mean − μ| ≤ 5σ/√n and |std − σ| ≤ 5σ/√(2n) (five standard errors). */
function expectNormal(ts: readonly Tensor[], sigma: number): void {
  const m = moments(ts);
  expect(Math.abs(m.mean)).toBeLessThan((5 * sigma) / Math.sqrt(m.n));
  expect(Math.abs(m.std - sigma)).toBeLessThan((5 * sigma) / Math.sqrt(2 * m.n));
}

describe("initialisation", () => {
  const c = resolveModelConfig({ preset: "tiny", V: 300, d_model: 32, H: 4, L: 3, d_ff: 96 });

  it("GPT-2: N(0, 0.02²) weights, residual projections scaled by 1/√(2L), zero biases, unit norm scales", () => {
    const w = initWeights(c, { seed: 7 });
    const pick = (re: RegExp) =>
      Object.entries(w)
        .filter(([k]) => re.test(k))
        .map(([, t]) => t);
    expectNormal(pick(/^(wte|wpe)\.weight$|c_attn\.weight$|c_fc\.weight$/), 0.02);
    expectNormal(pick(/(attn|mlp)\.c_proj\.weight$/), 0.02 / Math.sqrt(2 * c.L));
    for (const t of pick(/\.bias$/)) expect(t.data.every((v) => v === 0)).toBe(true);
    for (const t of pick(/ln_(\d|f)\.weight$/)) expect(t.data.every((v) => v === 1)).toBe(true);
  });

  it("is reproducible from the seed, per parameter: a variant's extra parameters do not move the others", () => {
    const a = initWeights(c, { seed: 3 });
    expect(initWeights(c, { seed: 3 })["h.2.mlp.c_fc.weight"]!.data).toEqual(
      a["h.2.mlp.c_fc.weight"]!.data,
    );
    expect(initWeights(c, { seed: 4 })["wte.weight"]!.data).not.toEqual(a["wte.weight"]!.data);
    const untied = initWeights({ ...c, tied: false }, { seed: 3 });
    expect(untied["wte.weight"]!.data).toEqual(a["wte.weight"]!.data);
    expect(untied["lm_head.weight"]!.data).not.toEqual(a["wte.weight"]!.data);
  });

  it("Xavier: U(±√(6/(fan_in+fan_out))) per linear map (W_Q, W_K, W_V separately), embeddings N(0, 1/d_model)", () => {
    const g = resolveModelConfig({ ...c, H: 4, H_kv: 2 });
    const w = initWeights(g, { seed: 5, init: "xavier" });
    const d = g.d_model,
      dk = d / g.H;
    const cAttn = w["h.0.attn.c_attn.weight"]!; // [d, (H + 2 H_kv) d_k]
    const cols = (from: number, width: number) => {
      const t = Tensor.zeros([d, width]);
      for (let r = 0; r < d; r++)
        for (let k = 0; k < width; k++)
          t.data[r * width + k] = cAttn.data[r * cAttn.shape[1]! + from + k]!;
      return t;
    };
    // a uniform on (−a, a) has variance a²/3
    const checkUniform = (t: Tensor, fanIn: number, fanOut: number) => {
      const a = Math.sqrt(6 / (fanIn + fanOut));
      const m = moments([t]);
      expect(m.maxAbs).toBeLessThanOrEqual(a);
      expect(m.maxAbs).toBeGreaterThan(0.9 * a);
      expect(Math.abs(m.std - a / Math.sqrt(3))).toBeLessThan(0.15 * a);
    };
    checkUniform(cols(0, g.H * dk), d, g.H * dk);
    checkUniform(cols(g.H * dk, g.H_kv * dk), d, g.H_kv * dk);
    checkUniform(cols((g.H + g.H_kv) * dk, g.H_kv * dk), d, g.H_kv * dk);
    checkUniform(w["h.1.mlp.c_fc.weight"]!, d, g.d_ff);
    checkUniform(w["h.1.mlp.c_proj.weight"]!, g.d_ff, d);
    expectNormal([w["wte.weight"]!], 1 / Math.sqrt(d));
    const z = initWeights(g, { seed: 5, init: "xavier", zeroQK: true })["h.0.attn.c_attn.weight"]!;
    for (let r = 0; r < d; r++) {
      for (let k = 0; k < z.shape[1]!; k++) {
        const v = z.data[r * z.shape[1]! + k]!;
        if (k < (g.H + g.H_kv) * dk) expect(v).toBe(0);
        else expect(v).toBe(cAttn.data[r * z.shape[1]! + k]); // W_V as without zeroQK
      }
    }
  });

  it("rejects unknown schemes and zeroQK outside xavier", () => {
    expect(() => initWeights(c, { init: "he" as never })).toThrow(
      'init must be "gpt2" or "xavier", got "he"',
    );
    expect(() => initWeights(c, { zeroQK: true })).toThrow(
      'zeroQK belongs to the xavier initialisation (Xiong et al. 2020); init is "gpt2"',
    );
  });
});

describe("GPT", () => {
  const c = resolveModelConfig({ preset: "tiny", V: 23, n_ctx: 9, d_model: 12, H: 3, d_ff: 20 });
  const model = GPT.init(c, { seed: 11, init: "xavier" });

  it("forward gives logits [..., n, V]; loss shifts the targets by one", () => {
    expect(model.forward([1, 2, 3]).shape).toEqual([3, 23]);
    expect(
      model.forward([
        [1, 2, 3, 4],
        [5, 6, 7, 8],
      ]).shape,
    ).toEqual([2, 4, 23]);
    const ids = [4, 8, 15, 16, 22, 0, 7];
    const direct = model.evaluate(ids.slice(0, -1), ids.slice(1));
    expect(model.loss(ids)).toBe(direct.loss);
    // the loss is the mean over positions of −log softmax(logits)[target], read off the logits
    let nll = 0;
    for (let i = 0; i < 6; i++) {
      const row = Array.from(direct.logits.data.subarray(i * 23, (i + 1) * 23));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      nll += lse - row[ids[i + 1]!]!;
    }
    // 6 terms each within a few ulps of its magnitude (~ln V)
    expect(Math.abs(model.loss(ids) - nll / 6)).toBeLessThan(64 * U64 * Math.log(23) * 6);
    const { loss, grads } = model.lossAndGrads(ids);
    expect(loss).toBe(model.loss(ids));
    expect(Object.keys(grads).sort()).toEqual(Object.keys(model.weights).sort());
  });

  it("shiftTargets splits [..., n+1] into inputs and next-token targets", () => {
    const { tokens, targets } = shiftTargets(
      Tensor.from(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        "i32",
      ),
    );
    expect(tokens.toNested()).toEqual([
      [1, 2],
      [4, 5],
    ]);
    expect(targets.toNested()).toEqual([
      [2, 3],
      [5, 6],
    ]);
  });

  it("with weight tying the embedding gradient is the sum of the untied twin's wte and lm_head gradients", () => {
    for (const positions of ["learned", "rope"] as const) {
      const tiedCfg = resolveModelConfig({ ...c, positions, tied: true });
      const tied = GPT.init(tiedCfg, { seed: 2, init: "xavier" });
      const untied = new GPT(
        { ...tiedCfg, tied: false },
        { ...tied.weights, "lm_head.weight": tied.weights["wte.weight"]!.clone() },
      );
      const ids = [
        [3, 1, 4, 1, 5, 9, 2, 6],
        [5, 3, 5, 8, 9, 7, 9, 3],
      ];
      const a = tied.lossAndGrads(ids);
      const b = untied.lossAndGrads(ids);
      expect(a.loss).toBe(b.loss); // the same function of the same numbers
      const g = a.grads["wte.weight"]!;
      const gw = b.grads["wte.weight"]!;
      const gl = b.grads["lm_head.weight"]!;
      for (let i = 0; i < g.size; i++) {
        // the tied gradient is the same two terms added in one rounding: |Δ| ≤ u·(|gw| + |gl|)
        expect(Math.abs(g.data[i]! - (gw.data[i]! + gl.data[i]!))).toBeLessThanOrEqual(
          U64 * (Math.abs(gw.data[i]!) + Math.abs(gl.data[i]!)),
        );
      }
      // both terms matter: the embedding part alone is not the tied gradient
      expect(Math.max(...Array.from(gl.data, Math.abs))).toBeGreaterThan(1e-3);
    }
  });

  it("checks weights and token ids with messages that name the problem", () => {
    const w = { ...model.weights };
    delete w["h.1.ln_2.bias"];
    expect(() => new GPT(c, w)).toThrow(
      "weights: missing parameter h.1.ln_2.bias (the configuration needs 28 tensors)",
    );
    expect(
      () => new GPT(c, { ...model.weights, "lm_head.weight": Tensor.zeros([23, 12]) }),
    ).toThrow("weights: unexpected tensor lm_head.weight (not a parameter of this configuration)");
    expect(() => new GPT(c, { ...model.weights, "wpe.weight": Tensor.zeros([8, 12]) })).toThrow(
      "weights: wpe.weight has shape [8, 12] but the configuration needs [9, 12]",
    );
    expect(() => model.forward([1, 23])).toThrow(
      "tokens: id 23 at index [1] is outside the vocabulary 0…22",
    );
    expect(() => model.forward([1, 2.5])).toThrow(
      "tokens: position 1 holds 2.5, not an integer token id",
    );
    expect(() => model.forward([[1, 2], [3]])).toThrow(
      "tokens: sequence 1 has 1 tokens but sequence 0 has 2; a batch needs equal lengths",
    );
    expect(() => model.forward(Array(10).fill(1))).toThrow(
      "forward: 10 positions exceed n_ctx = 9 (the rows of wpe.weight, learned positions)",
    );
    expect(() => model.forward([])).toThrow("forward: a sequence needs at least one token");
    expect(() => model.loss([5])).toThrow(
      "the loss needs at least 2 tokens per sequence (inputs 0…n−2 predict 1…n−1), got 1",
    );
    expect(() => model.evaluate([1, 2], [1, 2, 3])).toThrow(
      "targets have shape [3] but tokens have [2]",
    );
  });
});

describe("the model against the PyTorch goldens of the gpt formula", () => {
  const root = join(import.meta.dirname, "..", "golden", "cases", "gpt");
  const files = ["f64", "f32"].flatMap((d) =>
    readdirSync(join(root, d)).map((f) => join(root, d, f)),
  );

  it("has cases to check", () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  it.each(files.map((f) => [f.slice(root.length + 1), f]))(
    "%s: logits, loss and every parameter gradient",
    (_name, file) => {
      const g = loadCase(file);
      const fields: Record<string, unknown> = { dtype: g.meta.dtype };
      for (const [k, v] of Object.entries(g.meta.config)) if (k !== "causal") fields[k] = v;
      expect(g.meta.config["causal"] ?? true).toBe(true);
      const config: GPTConfig = resolveModelConfig(fields as Partial<GPTConfig>);
      const weights: NamedTensors = {};
      for (const [k, v] of Object.entries(g.inputs))
        if (k !== "tokens" && k !== "targets") weights[k] = v;
      const model = new GPT(config, weights);
      const r = model.vjp(g.inputs["tokens"]!, g.inputs["targets"]!, g.cotangents);
      const report = compareCase(g, r);
      if (!report.ok) throw new Error(formatReport(report));
      expect(report.failed).toBe(0);
      expect(report.passed).toBe(2 + Object.keys(weights).length);
    },
  );
});
