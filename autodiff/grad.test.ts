import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { exampleConfig, formulaNames, getFormula } from "../spec/formula.js";
import { formulaGraph } from "./graph.js";
import { gradcheckGraph, gradgradcheckGraph } from "./gradcheck.js";
import { grad, gradGraph, hvp, jvp, valueAndGrad, vjp } from "./grad.js";
import { evaluate } from "./evaluate.js";
import { Rng, sampleInputs } from "./random.js";
import { Tensor, type NamedTensors } from "./tensor.js";

const differentiable = formulaNames().filter((f) =>
  getFormula(f)
    .args(exampleConfig(f))
    .some((a) => !a.int),
);

describe("every registry formula passes gradcheck in float64", () => {
  for (const name of differentiable) {
    test(`${name}: full mode at small sizes, fast mode at larger ones`, async () => {
      const cfg = exampleConfig(name);
      const g = formulaGraph(name, cfg);
      const full = await gradcheckGraph(g, sampleInputs(name, cfg, { seed: 1 }), {
        mode: "full",
        maxElements: 256,
      });
      expect(full.error).toBeUndefined();
      expect(full.failures).toEqual([]);
      expect(full.ok).toBe(true);
      const big: Record<string, number> =
        name === "gpt"
          ? { d_ff: 24, n: 7 }
          : { n: 9, m: 9, d: 13, d_k: 6, d_v: 5, d_ff: 17, V: 19, d_in: 11, d_out: 7 };
      const fast = await gradcheckGraph(
        g,
        sampleInputs(name, cfg, {
          seed: 2,
          dims: big,
          batch: getFormula(name)
            .args(cfg)
            .some((a) => a.shape[0] === "...")
            ? [2]
            : [],
        }),
        { mode: "fast" },
      );
      expect(fast.ok, JSON.stringify(fast.failures)).toBe(true);
    });
  }
});

describe("second order", () => {
  /** H v ≈ (∇f(x + h v) − ∇f(x − h v)) / 2h for the scalar s = Σ out ⊙ c. */
  async function checkHvp(
    name: string,
    wrt: string,
    dims: Record<string, number> = {},
    linear = false,
  ) {
    const cfg = exampleConfig(name);
    const g = formulaGraph(name, cfg);
    const x = sampleInputs(name, cfg, { seed: 5, dims });
    const out = evaluate(g, x);
    const rng = new Rng(9);
    const cots: NamedTensors = {};
    for (const [k, o] of Object.entries(out)) cots[k] = rng.normalTensor(o.shape);
    // s(x) = Σ out ⊙ c as a scalar graph: differentiate the gradient graph (wrt all) once more
    const first = gradGraph(g, { wrt: [wrt] });
    const v = rng.normalTensor(x[wrt]!.shape);
    const second = gradGraph(first, { wrt: [wrt], of: [`grad.${wrt}`] });
    const inputs: NamedTensors = { ...x, [`cot.grad.${wrt}`]: v };
    for (const [k, c] of Object.entries(cots)) inputs[`cot.${k}`] = c;
    const Hv = evaluate(second, inputs)[`grad.${wrt}`]!;
    const gradAt = (t: number) => {
      const xs = x[wrt]!.clone();
      for (let i = 0; i < xs.size; i++) xs.data[i]! += t * v.data[i]!;
      return vjp(g, { ...x, [wrt]: xs }, cots, { wrt: [wrt] }).grads[wrt]!;
    };
    const h = 1e-5;
    const gp = gradAt(h),
      gm = gradAt(-h);
    let maxErr = 0,
      scale = 0;
    for (let i = 0; i < Hv.size; i++) {
      const fd = (gp.data[i]! - gm.data[i]!) / (2 * h);
      maxErr = Math.max(maxErr, Math.abs(fd - Hv.data[i]!));
      scale = Math.max(scale, Math.abs(fd));
    }
    // central differences of the gradient: O(h²) truncation ≈ 1e-10 relative, rounding u/h ≈ 1e-11
    expect(maxErr).toBeLessThan(1e-6 * Math.max(1, scale));
    // an argument the output is linear in (γ, V) has H v = 0, and the differences agree
    if (linear) expect(scale).toBeLessThan(1e-8);
    else expect(scale).toBeGreaterThan(1e-3);
  }
  test("softmax", () => checkHvp("softmax", "x"));
  test("layer_norm (x and γ)", async () => {
    await checkHvp("layer_norm", "x");
    await checkHvp("layer_norm", "gamma", {}, true);
  });
  test("gelu and gelu_tanh", async () => {
    await checkHvp("gelu", "x", {});
    await checkHvp("gelu_tanh", "x");
  });
  test("attention (Q, K and V)", async () => {
    for (const w of ["Q", "K"]) await checkHvp("attention", w);
    await checkHvp("attention", "V", {}, true);
  });
  test("gradgradcheck: the gradient formula itself passes gradcheck", async () => {
    for (const name of ["softmax", "layer_norm", "attention", "gelu", "cross_entropy", "silu"]) {
      const cfg = exampleConfig(name);
      const g = formulaGraph(name, cfg);
      const gg = gradGraph(g);
      const x = sampleInputs(name, cfg, { seed: 3 });
      const out = evaluate(g, x);
      const rng = new Rng(4);
      const inputs: NamedTensors = { ...x };
      for (const [k, o] of Object.entries(out)) inputs[`cot.${k}`] = rng.normalTensor(o.shape);
      const r = await gradcheckGraph(gg, inputs, { mode: "full", maxElements: 64 });
      expect(r.ok, `${name}: ${JSON.stringify(r.failures[0] ?? r.error)}`).toBe(true);
    }
  });
  test("gradgradcheckGraph (the API form) passes for GELU-tanh and LayerNorm", async () => {
    for (const name of ["gelu_tanh", "layer_norm", "rms_norm"]) {
      const r = await gradgradcheckGraph(
        formulaGraph(name, exampleConfig(name)),
        sampleInputs(name, {}, { seed: 6 }),
        { mode: "full" },
      );
      expect(r.ok, name).toBe(true);
    }
  });
  test("hvp API equals the VJP of the gradient", () => {
    const g = formulaGraph("cross_entropy");
    const x = sampleInputs("cross_entropy", {}, { seed: 8 });
    const v = new Rng(1).normalTensor(x["logits"]!.shape);
    const hv = hvp(g, x, { logits: v })["logits"]!;
    // for cross-entropy, H v = (1/N)(softmax ⊙ v − softmax (softmax·v)) row by row
    const z = x["logits"]!;
    const [N, V] = z.shape as [number, number];
    for (let r = 0; r < N; r++) {
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, z.get(r, j));
      const p = Array.from({ length: V }, (_, j) => Math.exp(z.get(r, j) - m));
      const s = p.reduce((a, b) => a + b, 0);
      const pv = p.reduce((a, pj, j) => a + (pj / s) * v.get(r, j), 0);
      for (let j = 0; j < V; j++)
        expect(hv.get(r, j)).toBeCloseTo(((p[j]! / s) * (v.get(r, j) - pv)) / N, 12);
    }
  });
});

describe("API", () => {
  test("jvp by transposition equals the directional finite difference", () => {
    const g = formulaGraph("layer_norm");
    const x = sampleInputs("layer_norm", {}, { seed: 2 });
    const t = new Rng(3).normalTensor(x["x"]!.shape);
    const { tangents } = jvp(g, x, { x: t });
    const h = 1e-6;
    const shift = (s: number) => {
      const xs = x["x"]!.clone();
      for (let i = 0; i < xs.size; i++) xs.data[i]! += s * t.data[i]!;
      return evaluate(g, { ...x, x: xs })["y"]!;
    };
    const p = shift(h),
      m = shift(-h);
    for (let i = 0; i < p.size; i++)
      expect(tangents["y"]!.data[i]!).toBeCloseTo((p.data[i]! - m.data[i]!) / (2 * h), 7);
  });
  test("valueAndGrad needs one scalar output", () => {
    const g = formulaGraph("cross_entropy");
    const x = sampleInputs("cross_entropy", {}, { seed: 2 });
    const { value, grads } = valueAndGrad(g, x);
    expect(value.shape).toEqual([]);
    expect(Object.keys(grads)).toEqual(["logits"]);
    expect(() => grad(formulaGraph("softmax"), { x: Tensor.from([1, 2]) })).toThrow(
      /grad needs one scalar output/,
    );
  });
  test("token ids have no gradient; unknown names are reported", () => {
    const g = formulaGraph("embedding");
    expect(() => gradGraph(g, { wrt: ["tokens"] })).toThrow(
      /argument tokens holds integers \(token ids\) and has no gradient/,
    );
    expect(() => gradGraph(g, { wrt: ["W"] })).toThrow(
      /embedding has no argument "W"; arguments: tokens, E/,
    );
  });
  test("an argument the outputs do not depend on gets a zero gradient", () => {
    const g = formulaGraph("attention", { causal: true });
    const x = sampleInputs("attention", {}, { seed: 1, dims: { n: 1, m: 1 } });
    const r = vjp(g, x, { y: Tensor.full([1, 3], 1) });
    // with one key the weights are constant (= 1), so Q and K receive zero gradient
    expect(Array.from(r.grads["Q"]!.data).every((v) => v === 0)).toBe(true);
  });
});
