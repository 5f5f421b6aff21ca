/**
 * μP (reference/mup.ts): the initialisation and the per-parameter step sizes of Yang et al. 2022,
 * Table 3 and Appendix D.2, relative to a base width; and Adam's `lrScale`, which applies them.
 */
import { describe, expect, it } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import { initWeights, resolveModelConfig } from "./model.js";
import { mupInit, mupLrScale } from "./mup.js";
import { Adam } from "./train.js";

const cfg = (d_model: number) =>
  resolveModelConfig({ V: 40, n_ctx: 8, d_model, H: 2, L: 2, tied: false });
const rms = (t: Tensor) => Math.sqrt(Array.from(t.data).reduce((a, x) => a + x * x, 0) / t.size);

describe("mupInit", () => {
  it("at the base width equals GPT-2's initialisation except W_Q (SP's readout there)", () => {
    const c = cfg(16);
    const sp = initWeights(c, { seed: 3 });
    const mu = mupInit(c, { baseWidth: 16, seed: 3 });
    for (const [k, t] of Object.entries(sp)) {
      if (k.endsWith("attn.c_attn.weight")) continue;
      expect(Array.from(mu[k]!.data), k).toEqual(Array.from(t.data));
    }
    expect(rms(mu["lm_head.weight"]!)).toBeGreaterThan(0.015);
    // c_attn [d_model, 3·d_model]: the first d_model columns (W_Q) zero, W_K and W_V as SP
    const w = mu["h.0.attn.c_attn.weight"]!;
    const s = sp["h.0.attn.c_attn.weight"]!;
    for (let i = 0; i < w.size; i++) expect(w.data[i]).toBe(i % 48 < 16 ? 0 : s.data[i]);
  });
  it("with readout: zero (Appendix D.2) differs from the default only in a zero readout", () => {
    const c = cfg(32);
    const scaled = mupInit(c, { baseWidth: 8, seed: 2 });
    const zero = mupInit(c, { baseWidth: 8, seed: 2, readout: "zero" });
    for (const [k, t] of Object.entries(scaled)) {
      if (k === "lm_head.weight") expect(rms(zero[k]!)).toBe(0);
      else expect(Array.from(zero[k]!.data), k).toEqual(Array.from(t.data));
    }
    const bad = () => mupInit(c, { baseWidth: 8, readout: "small" as "zero" });
    expect(bad).toThrow('readout must be "scaled" or "zero"');
  });
  it("at 4× the base width shrinks hidden matrices by ½, the readout by ¼, not embeddings", () => {
    const c = cfg(32);
    const sp = initWeights(c, { seed: 1 });
    const mu = mupInit(c, { baseWidth: 8, seed: 1 });
    for (const k of ["h.0.attn.c_proj.weight", "h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"]) {
      for (let i = 0; i < 5; i++) expect(mu[k]!.data[i]).toBeCloseTo(sp[k]!.data[i]! / 2, 15);
    }
    // the readout: std ∝ 1/fan_in (Table 3's variance 1/fan_in²), so 1/4 at m = 4
    const [muHead, spHead] = [mu["lm_head.weight"]!, sp["lm_head.weight"]!];
    for (let i = 0; i < 5; i++) expect(muHead.data[i]).toBeCloseTo(spHead.data[i]! / 4, 15);
    expect(Array.from(mu["wte.weight"]!.data)).toEqual(Array.from(sp["wte.weight"]!.data));
    expect(Array.from(mu["wpe.weight"]!.data)).toEqual(Array.from(sp["wpe.weight"]!.data));
  });
  it("refuses tied embeddings", () => {
    const tied = resolveModelConfig({ V: 40, n_ctx: 8, d_model: 16, H: 2, L: 1 });
    expect(() => mupInit(tied, { baseWidth: 8 })).toThrow("μP needs untied embeddings");
    expect(() => mupLrScale(tied, { baseWidth: 8 })).toThrow("μP needs untied embeddings");
  });
});

describe("mupLrScale", () => {
  it("gives η/m to hidden matrices and the readout, η/m·1/√m to W_Q, η/√m to b_Q, η to the rest", () => {
    const c = cfg(32);
    const s = mupLrScale(c, { baseWidth: 8 }); // m = 4
    expect(s["h.0.attn.c_proj.weight"]).toBe(0.25);
    expect(s["h.1.mlp.c_fc.weight"]).toBe(0.25);
    expect(s["lm_head.weight"]).toBe(0.25);
    for (const k of [
      "wte.weight",
      "wpe.weight",
      "h.0.ln_1.weight",
      "h.0.mlp.c_fc.bias",
      "ln_f.bias",
    ])
      expect(s[k], k).toBeUndefined();
    const w = s["h.0.attn.c_attn.weight"] as Float64Array;
    expect(w.length).toBe(32 * 96);
    expect([w[0], w[31], w[32], w[95], w[96]]).toEqual([0.125, 0.125, 0.25, 0.25, 0.125]);
    const b = s["h.0.attn.c_attn.bias"] as Float64Array;
    expect([b[0], b[31], b[32], b[95]]).toEqual([0.5, 0.5, 1, 1]);
  });
  it("is all ones at the base width (m = 1: μP's step sizes are SP's there)", () => {
    const s = mupLrScale(cfg(16), { baseWidth: 16 });
    for (const v of Object.values(s))
      for (const x of typeof v === "number" ? [v] : Array.from(v)) expect(x).toBe(1);
  });
});

describe("Adam lrScale", () => {
  it("scales each element's step: Adam's first step moves every element by its step size", () => {
    const p = {
      a: new Tensor("f64", [2], Float64Array.from([0, 0])),
      b: new Tensor("f64", [2], Float64Array.from([0, 0])),
    };
    const g = {
      a: new Tensor("f64", [2], Float64Array.from([3, -5])),
      b: new Tensor("f64", [2], Float64Array.from([1, 1])),
    };
    new Adam({ lr: 0.1, eps: 0, lrScale: { a: 0.5, b: Float64Array.from([1, 0.25]) } }).step(p, g);
    const close = (xs: Float64Array | Float32Array | Int32Array, want: number[]) =>
      want.forEach((w, i) => expect(xs[i]).toBeCloseTo(w, 15));
    close(p.a.data, [-0.05, 0.05]);
    close(p.b.data, [-0.1, -0.025]);
  });
  it("refuses a per-element scale of the wrong length", () => {
    const p = { a: new Tensor("f64", [2], Float64Array.from([0, 0])) };
    const g = { a: new Tensor("f64", [2], Float64Array.from([1, 1])) };
    expect(() => new Adam({ lr: 0.1, lrScale: { a: Float64Array.from([1]) } }).step(p, g)).toThrow(
      "lrScale of a has 1 factors but the parameter has 2 elements",
    );
  });
});
