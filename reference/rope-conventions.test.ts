/**
 * The reference model with partial RoPE (rotary_pct) and explicit position ids: KV-cache decoding
 * equals full recomputation, rotary_pct 0 is a model without positions, position ids 0 … n − 1
 * equal the default positions, and bad settings are refused with their values.
 */
import { describe, expect, it } from "vitest";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import { GPT, formulaConfig, resolveModelConfig, type GPTConfig } from "./model.js";
import { livelyModel, maxRelDiff as relDiff } from "./lively.testing.js";

const BASE: Partial<GPTConfig> = {
  V: 37,
  n_ctx: 16,
  d_model: 16,
  H: 2,
  L: 2,
  d_ff: 24,
  positions: "rope",
  placement: "pre",
};

function model(fields: Partial<GPTConfig>, seed = 1): GPT {
  return livelyModel({ ...BASE, ...fields }, seed);
}

describe("partial RoPE in the model", () => {
  it.each([
    ["rope", 0.5, 4],
    ["rope_interleaved", 0.5, 1],
    ["rope", 0, 2],
  ] as const)(
    "positions %s, rotary_pct %d, H_kv %i: KV-cache decoding equals full recomputation (f64, 1e-12 relative)",
    (positions, rotary_pct, H_kv) => {
      const m = model({ positions, rotary_pct, H: 4, H_kv }, 7);
      const prompt = [5, 17, 2, 33];
      const cached = m.generate(prompt, { maxNewTokens: 8, cache: true });
      const full = m.generate(prompt, { maxNewTokens: 8, cache: false });
      expect(cached.tokens).toEqual(full.tokens);
      cached.stepLogits.forEach((row, i) =>
        expect(relDiff(row, full.stepLogits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-12),
      );
    },
  );

  it(
    "rotary_pct 0 is the model without positions (same weights), and " +
      "rotary_pct 0.5 is neither that nor full RoPE",
    () => {
      const seq = [3, 1, 4, 1, 5, 9, 2, 6];
      const none = model({ positions: "none" }, 3);
      const zero = model({ rotary_pct: 0 }, 3).withWeights(none.weights).forward(seq);
      expect(relDiff(zero.data, none.forward(seq).data)).toBe(0);
      const half = model({ rotary_pct: 0.5 }, 3).withWeights(none.weights).forward(seq);
      const fullRope = model({}, 3).withWeights(none.weights).forward(seq);
      expect(relDiff(half.data, none.forward(seq).data)).toBeGreaterThan(1e-6);
      expect(relDiff(half.data, fullRope.data)).toBeGreaterThan(1e-6);
    },
  );

  it("formulaConfig states rotary_pct as GPT-NeoX's rotary_ndims = ⌊rotary_pct·d_k⌋", () => {
    expect(
      formulaConfig(
        resolveModelConfig({
          preset: "tiny",
          d_model: 16,
          H: 2,
          positions: "rope",
          rotary_pct: 0.25,
        }),
      )["rotary_dims"],
    ).toBe(2);
    expect(
      formulaConfig(resolveModelConfig({ preset: "tiny", d_model: 16, H: 2, positions: "rope" }))[
        "rotary_dims"
      ],
    ).toBeUndefined();
  });

  it("refuses a rotary_pct that rotates an odd number of dims, lies outside [0, 1], or has no RoPE to act on", () => {
    expect(() =>
      resolveModelConfig({
        preset: "tiny",
        d_model: 16,
        H: 2,
        positions: "rope",
        rotary_pct: 0.375,
      }),
    ).toThrow(
      "rotary_pct = 0.375 rotates ⌊0.375·d_k⌋ = 3 dims of d_k = 8; RoPE rotates pairs, so it must be even",
    );
    expect(() =>
      resolveModelConfig({ preset: "tiny", d_model: 16, H: 2, positions: "rope", rotary_pct: 1.5 }),
    ).toThrow("rotary_pct must be a number in [0, 1], got 1.5");
    expect(() =>
      resolveModelConfig({
        preset: "tiny",
        d_model: 16,
        H: 2,
        positions: "learned",
        rotary_pct: 0.5,
      }),
    ).toThrow('rotary_pct applies to RoPE positions, but positions is "learned"');
  });
});

describe("position_ids in the gpt formula", () => {
  const ids = (v: number[]) => Tensor.from(v, "i32");
  for (const positions of ["rope", "learned"] as const) {
    it(`${positions}: position_ids 0 … n − 1 equal the default positions; other ids change the logits`, () => {
      const m = model({ positions, rotary_pct: positions === "rope" ? 0.5 : undefined }, 4);
      const cfg = m.formulaConfig;
      const tokens = ids([3, 1, 4, 1, 5]);
      const plain = evaluate(formulaGraph("gpt", { ...cfg, kv_cache: true }), {
        tokens,
        ...cache(m, 0),
        ...m.weights,
      })["logits"]!;
      const g = formulaGraph("gpt", { ...cfg, kv_cache: true, position_ids: true });
      const withIds = evaluate(g, {
        tokens,
        position_ids: ids([0, 1, 2, 3, 4]),
        ...cache(m, 0),
        ...m.weights,
      })["logits"]!;
      expect(relDiff(withIds.data, plain.data)).toBeLessThanOrEqual(1e-15);
      const shifted = evaluate(g, {
        tokens,
        position_ids: ids([2, 3, 4, 5, 6]),
        ...cache(m, 0),
        ...m.weights,
      })["logits"]!;
      // RoPE sees only position differences: a common shift changes nothing; learned rows do change
      if (positions === "rope")
        expect(relDiff(shifted.data, plain.data)).toBeLessThanOrEqual(1e-13);
      else expect(relDiff(shifted.data, plain.data)).toBeGreaterThan(1e-6);
      const uneven = evaluate(g, {
        tokens,
        position_ids: ids([0, 0, 1, 2, 3]),
        ...cache(m, 0),
        ...m.weights,
      })["logits"]!;
      expect(relDiff(uneven.data, plain.data)).toBeGreaterThan(1e-6);
    });
  }

  it(
    "rope: decoding with a cache and explicit ids equals full recomputation " +
      "with the same ids (a left-padded prompt)",
    () => {
      const m = model({ rotary_pct: 0.5, H: 4, H_kv: 2 }, 6);
      const cfg = m.formulaConfig;
      // two pad rows at position 0 (HF: position_ids = cumsum(attention_mask) − 1, clamped at 0)
      const tokens = [0, 0, 7, 8, 9, 10];
      const pos = [0, 0, 0, 1, 2, 3];
      const full = evaluate(formulaGraph("gpt", { ...cfg, kv_cache: true, position_ids: true }), {
        tokens: ids(tokens),
        position_ids: ids(pos),
        ...cache(m, 0),
        ...m.weights,
      })["logits"]!;
      const step = formulaGraph("gpt", { ...cfg, kv_cache: true, position_ids: true });
      const first = evaluate(step, {
        tokens: ids(tokens.slice(0, 4)),
        position_ids: ids(pos.slice(0, 4)),
        ...cache(m, 0),
        ...m.weights,
      });
      const past: NamedTensors = {};
      for (let l = 0; l < m.config.L; l++) {
        past[`past.${l}.k`] = first[`present.${l}.k`]!;
        past[`past.${l}.v`] = first[`present.${l}.v`]!;
      }
      const second = evaluate(step, {
        tokens: ids(tokens.slice(4)),
        position_ids: ids(pos.slice(4)),
        ...past,
        ...m.weights,
      })["logits"]!;
      const V = m.config.V;
      expect(relDiff(first["logits"]!.data, full.data.subarray(0, 4 * V))).toBeLessThanOrEqual(
        1e-12,
      );
      expect(relDiff(second.data, full.data.subarray(4 * V))).toBeLessThanOrEqual(1e-12);
    },
  );

  it("position_ids with sinusoidal positions are refused, naming the positions", () => {
    expect(() =>
      formulaGraph("gpt", {
        ...model({ positions: "sinusoidal" }).formulaConfig,
        position_ids: true,
      }),
    ).toThrow("formula gpt: position_ids apply to learned and RoPE positions, not sinusoidal");
  });
});

/** An empty cache (p = 0) for every block: the kv_cache graph run on a whole sequence. */
function cache(m: GPT, p: number): NamedTensors {
  const out: NamedTensors = {};
  const dk = m.config.d_model / m.config.H;
  for (let l = 0; l < m.config.L; l++) {
    out[`past.${l}.k`] = Tensor.zeros([m.config.H_kv, p, dk], "f64");
    out[`past.${l}.v`] = Tensor.zeros([m.config.H_kv, p, dk], "f64");
  }
  return out;
}
