import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  argShapes,
  configArb,
  dimsArb,
  floatTensorArb,
  formulaCaseArb,
  seededInputs,
  type FormulaCase,
} from "./arbitraries.js";

describe("dims", () => {
  const sample = fc.sample(dimsArb({ batch: "any" }), { numRuns: 400, seed: 3 });

  it("include the edges: n = 1, H = 1, odd d_k, grouped and multi-query KV heads, empty and nested batches", () => {
    expect(sample.some((d) => d.n === 1)).toBe(true);
    expect(sample.some((d) => d.H === 1)).toBe(true);
    expect(sample.some((d) => d.d_k % 2 === 1)).toBe(true);
    expect(sample.some((d) => d.H_kv === 1 && d.H > 1)).toBe(true);
    expect(sample.some((d) => d.H_kv > 1 && d.H_kv < d.H)).toBe(true);
    expect(sample.some((d) => d.batch.length === 0)).toBe(true);
    expect(sample.some((d) => d.batch.length === 2)).toBe(true);
  });

  it("keep their relations: d_model = H·d_k, d_kv = H_kv·d_k, H_kv divides H, n_ctx ≥ n + p", () => {
    for (const d of sample) {
      expect(d.d_model).toBe(d.H * d.d_k);
      expect(d.d_kv).toBe(d.H_kv * d.d_k);
      expect(d.H % d.H_kv).toBe(0);
      expect(d.n_ctx).toBeGreaterThanOrEqual(d.n + d.p);
    }
  });

  it("make d_k even when asked (RoPE)", () => {
    for (const d of fc.sample(dimsArb({ evenDk: true }), { numRuns: 100, seed: 4 }))
      expect(d.d_k % 2).toBe(0);
  });

  it("shrink a failure to the smallest shape", async () => {
    // fails for every case: the shrunk counterexample must be the smallest mha there is
    const details = await fc.check(
      fc.asyncProperty(
        formulaCaseArb("mha", { dtype: "f64", dims: { batch: "any" } }),
        async () => false,
      ),
      { seed: 5 },
    );
    const c = details.counterexample![0] as FormulaCase;
    expect(c.dims).toMatchObject({ n: 1, H: 1, H_kv: 1, d_k: 1, batch: [] });
    expect(c.inputs["x"]!.shape).toEqual([1, 1]);
  });

  it("shrink to the boundary of a size-dependent failure", async () => {
    const details = await fc.check(
      fc.property(dimsArb({ maxN: 4 }), (d) => d.n * d.d_k < 6),
      { seed: 6 },
    );
    const d = details.counterexample![0];
    expect(d.n * d.d_k).toBeGreaterThanOrEqual(6);
    expect(
      [2 * 3, 3 * 2, 4 * 2, 2 * 4, 3 * 3].includes(d.n * d.d_k) && d.n <= 3 && d.d_k <= 3,
    ).toBe(true);
  });
});

describe("tensors", () => {
  it("hold finite values within the range; float32 values are exactly representable", () => {
    for (const dtype of ["f64", "f32"] as const) {
      for (const t of fc.sample(floatTensorArb([3, 4], dtype, { min: -3, max: 3 }), {
        numRuns: 200,
        seed: 7,
      })) {
        expect(t.dtype).toBe(dtype);
        for (const v of t.data) {
          expect(Number.isFinite(v) && v >= -3 && v <= 3).toBe(true);
          expect(Math.fround(v)).toBe(dtype === "f32" ? v : Math.fround(v));
        }
      }
    }
  });

  it("generate −0, quarter values and extremes on purpose", () => {
    const values = fc
      .sample(floatTensorArb([4, 4], "f64", { min: -3, max: 3 }), { numRuns: 200, seed: 8 })
      .flatMap((t) => Array.from(t.data));
    expect(values.some((v) => Object.is(v, -0))).toBe(true);
    expect(values.some((v) => v !== 0 && Number.isInteger(v * 4))).toBe(true);
    expect(values.some((v) => v !== 0 && Math.abs(v) < 1e-300)).toBe(true);
    expect(values.some((v) => Math.abs(v) === 3)).toBe(true);
  });

  it("come from a seed above the element-wise limit, reproducibly", () => {
    const [a, b] = fc.sample(floatTensorArb([10, 10], "f64", { min: -1, max: 1 }), {
      numRuns: 2,
      seed: 9,
    });
    const [a2] = fc.sample(floatTensorArb([10, 10], "f64", { min: -1, max: 1 }), {
      numRuns: 1,
      seed: 9,
    });
    expect(Array.from(a!.data)).toEqual(Array.from(a2!.data));
    expect(Array.from(a!.data)).not.toEqual(Array.from(b!.data));
  });

  it("refuse a range that is not finite or is empty", () => {
    expect(() => fc.sample(floatTensorArb([2], "f64", { min: 1, max: -1 }), 1)).toThrow(
      "value range [1, -1] must be finite with min ≤ max",
    );
    expect(() => fc.sample(floatTensorArb([2], "f32", { min: 0, max: Infinity }), 1)).toThrow(
      "value range [0, Infinity] must be finite with min ≤ max",
    );
  });
});

describe("configurations", () => {
  it("cover every registry choice of the block's variants", () => {
    const sample = fc.sample(configArb("block"), { numRuns: 400, seed: 10 });
    for (const [k, choices] of Object.entries({
      placement: ["post", "pre", "sandwich"],
      norm: ["layer_norm", "rms_norm"],
      activation: ["gelu", "gelu_tanh", "relu", "swiglu"],
      positions: ["none", "rope", "rope_interleaved", "alibi"],
    })) {
      expect(new Set(sample.map((c) => c[k])), k).toEqual(new Set(choices));
    }
    expect(sample.some((c) => c["parallel"] === true)).toBe(true);
    for (const c of sample) if (c["parallel"] === true) expect(c["placement"]).toBe("pre");
  });

  it("keep fixed values and the chosen ones", () => {
    for (const c of fc.sample(
      configArb("mha", { fixed: { causal: false }, choose: { positions: ["rope"] } }),
      { numRuns: 50, seed: 11 },
    )) {
      expect(c["causal"]).toBe(false);
      expect(c["positions"]).toBe("rope");
      expect(c["kv_cache"]).toBe(false);
    }
  });

  it("narrow a law's chosen values to a capability but never replace them with values the law excludes", () => {
    // a port declaring only positions = none must not get positions = none from a law that needs positions
    const only = { mha: { config: { positions: ["none"] } } };
    const seen = new Set(
      fc
        .sample(
          configArb("mha", { choose: { positions: ["rope", "alibi"] }, capabilities: only }),
          { numRuns: 60, seed: 12 },
        )
        .map((c) => c["positions"]),
    );
    expect([...seen].sort()).toEqual(["alibi", "rope"]);
    const some = { mha: { config: { positions: ["none", "alibi"] } } };
    for (const c of fc.sample(
      configArb("mha", { choose: { positions: ["rope", "alibi"] }, capabilities: some }),
      { numRuns: 30, seed: 13 },
    ))
      expect(c["positions"]).toBe("alibi");
  });

  it("size every argument from the dims, grouped-query attention included", () => {
    const dims = {
      n: 3,
      m: 3,
      p: 0,
      d: 1,
      d_k: 2,
      d_v: 1,
      d_in: 1,
      d_out: 1,
      H: 2,
      H_kv: 1,
      d_model: 4,
      d_kv: 2,
      d_ff: 3,
      V: 5,
      n_ctx: 5,
      L: 1,
      batch: [2],
    };
    const s = argShapes(
      "gpt",
      {
        L: 1,
        V: 5,
        n_ctx: 5,
        d_model: 4,
        d_ff: 3,
        H: 2,
        H_kv: 1,
        placement: "post",
        norm: "layer_norm",
        activation: "gelu",
        positions: "learned",
        bias: true,
        tied: true,
      },
      dims,
    );
    expect(s["tokens"]).toEqual([2, 3]);
    expect(s["h.0.attn.c_attn.weight"]).toEqual([4, (2 + 2 * 1) * 2]);
    expect(s["wpe.weight"]).toEqual([5, 4]);
  });

  it("draw seeded arguments reproducibly", () => {
    const dims = fc.sample(dimsArb(), { numRuns: 1, seed: 12 })[0]!;
    const a = seededInputs("ffn", { activation: "gelu" }, dims, "f32", 42);
    const b = seededInputs("ffn", { activation: "gelu" }, dims, "f32", 42);
    expect(Array.from(a["W_1"]!.data)).toEqual(Array.from(b["W_1"]!.data));
    expect(a["W_1"]!.dtype).toBe("f32");
  });
});
