/**
 * Each diagnosis hint against a planted mistake. The planted values are computed here, in plain
 * TypeScript written from the math (not by the reference the hints use), on the inputs of
 * committed PyTorch golden cases; the expected values are the goldens.
 */
import { describe, expect, test } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import type { FloatDType } from "../autodiff/tensor.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { referenceImplementation } from "../reference/implementation.js";
import { golden } from "./cases.testing.js";
import { diagnose, transposeLast } from "./diagnose.js";
import type { Hint, HintId, Symptom } from "./diagnose.js";

function symptom(c: GoldenCase, actual: Tensor, output = "y"): Symptom {
  const tol = c.tolerance[`out.${output}`]!;
  return {
    formula: c.meta.formula,
    config: c.meta.config,
    inputs: c.inputs,
    dtype: c.meta.dtype,
    output,
    expected: c.outputs[output]!,
    actual,
    tolerance: tol,
    dims: c.meta.dims,
  };
}

async function ids(s: Symptom): Promise<HintId[]> {
  return (await diagnose(s)).map((h) => h.id);
}

/** A tensor of `like`'s dtype and shape from float64 values. */
function fill(
  like: { dtype: Tensor["dtype"]; shape: readonly number[] },
  values: ArrayLike<number>,
): Tensor {
  const t = new Tensor(like.dtype, like.shape);
  for (let i = 0; i < t.size; i++) t.data[i] = values[i]!;
  return t;
}

/** `t` with `f` applied to each of its values (same dtype and shape). */
function mapped(t: Tensor, f: (v: number) => number): Tensor {
  return fill(t, Array.from(t.data, f));
}

/** The hints for `c` when its output `y` is the golden one with `f` applied to each value. */
async function hintsWhenMapped(c: GoldenCase, f: (v: number) => number): Promise<Hint[]> {
  return diagnose(symptom(c, mapped(c.outputs["y"]!, f)));
}

/**
 * softmax(s·QKᵀ/√d_k + mask) V over leading axes; key j visible to query i iff j ≤ i + (m − n) +
 * shift (shift null: no mask).
 */
function attention(Q: Tensor, K: Tensor, V: Tensor, shift: number | null, factor = 1): Tensor {
  const n = Q.shape.at(-2)!;
  const dk = Q.shape.at(-1)!;
  const m = K.shape.at(-2)!;
  const dv = V.shape.at(-1)!;
  const batch = Q.size / (n * dk);
  const y = new Float64Array(batch * n * dv);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < n; i++) {
      const s: number[] = [];
      for (let j = 0; j < m; j++) {
        let d = 0;
        for (let k = 0; k < dk; k++)
          d += Q.data[(b * n + i) * dk + k]! * K.data[(b * m + j) * dk + k]!;
        s.push(
          shift !== null && j > i + (m - n) + shift ? -Infinity : (d / Math.sqrt(dk)) * factor,
        );
      }
      const mx = Math.max(...s);
      const e = s.map((v) => (mx === -Infinity ? 0 : Math.exp(v - mx)));
      const z = e.reduce((a, c) => a + c, 0);
      for (let c = 0; c < dv; c++) {
        let acc = 0;
        for (let j = 0; j < m; j++)
          acc += (z === 0 ? 0 : e[j]! / z) * V.data[(b * m + j) * dv + c]!;
        y[(b * n + i) * dv + c] = acc;
      }
    }
  }
  return fill({ dtype: Q.dtype, shape: [...Q.shape.slice(0, -1), dv] }, y);
}

const geluTanh = (x: number): number =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
/** erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): enough against a float32 tolerance. */
function erfApprox(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x < 0 ? -y : y;
}
const geluErf = (x: number): number => 0.5 * x * (1 + erfApprox(x / Math.SQRT2));

function matmulRows(x: Tensor, W: Tensor, b: Tensor | undefined, transposeW = false): Float64Array {
  const din = x.shape.at(-1)!;
  const dout = transposeW ? W.shape[0]! : W.shape[1]!;
  const rows = x.size / din;
  const y = new Float64Array(rows * dout);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < dout; o++) {
      let acc = b === undefined ? 0 : b.data[o]!;
      for (let k = 0; k < din; k++)
        acc += x.data[r * din + k]! * (transposeW ? W.data[o * din + k]! : W.data[k * dout + o]!);
      y[r * dout + o] = acc;
    }
  }
  return y;
}

describe("attention: alternatives that the actual output equals", () => {
  const c = golden("attention/f64/n7_dk4_causal");
  const { Q, K, V } = c.inputs as Record<string, Tensor>;
  test("the planted attention without mistakes matches the golden (the harness is right)", () => {
    const y = attention(Q!, K!, V!, 0);
    let worst = 0;
    for (let i = 0; i < y.size; i++)
      worst = Math.max(worst, Math.abs(y.data[i]! - c.outputs["y"]!.data[i]!));
    expect(worst).toBeLessThan(1e-12);
  });
  test("off by one: query i also sees key i + 1", async () => {
    const hints = await diagnose(symptom(c, attention(Q!, K!, V!, 1)));
    expect(hints.map((h) => h.id)).toContain("mask-off-by-one");
    expect(hints.find((h) => h.id === "mask-off-by-one")!.evidence).toBe("match");
    expect(hints.find((h) => h.id === "mask-off-by-one")!.message).toContain("key i + 1");
  });
  test("no mask at all", async () => {
    expect(await ids(symptom(c, attention(Q!, K!, V!, null)))).toContain("mask-missing");
  });
  test("the diagonal masked too", async () => {
    expect(await ids(symptom(c, attention(Q!, K!, V!, -1)))).toContain("mask-diagonal");
  });
  test("unscaled scores (1 instead of 1/√d_k)", async () => {
    const hints = await diagnose(symptom(c, attention(Q!, K!, V!, 0, Math.sqrt(4))));
    expect(hints.map((h) => h.id)).toEqual(["attention-scale"]);
    expect(hints[0]!.message).toContain("unscaled");
  });
  test("the off-by-one mask with a KV cache (m > n, bottom-right aligned)", async () => {
    const kv = golden("attention/f64/n3_m8_dk4_causal_kvcache");
    const { Q: q, K: k, V: v } = kv.inputs as Record<string, Tensor>;
    expect(await ids(symptom(kv, attention(q!, k!, v!, 1)))).toContain("mask-off-by-one");
  });
  test("1/√d_model instead of 1/√d_k: H from the case (heads as a batch axis)", async () => {
    const h = golden("attention/f32/b2_h3_n5_dk4_causal");
    const { Q: q, K: k, V: v } = h.inputs as Record<string, Tensor>;
    const hints = await diagnose(symptom(h, attention(q!, k!, v!, 0, 1 / Math.sqrt(3))));
    const scale = hints.find((x) => x.id === "attention-scale");
    expect(scale?.evidence).toBe("match");
    expect(scale?.message).toContain("1/√d_model (d_model = H·d_k = 12)");
  });
  test("a causal mask where the case is non-causal", async () => {
    const nc = golden("attention/f64/b2_n6_m9_dk5_dv3_noncausal");
    const { Q: q, K: k, V: v } = nc.inputs as Record<string, Tensor>;
    expect(await ids(symptom(nc, attention(q!, k!, v!, 0)))).toContain("mask-unexpected");
  });
  test("random noise of the size of the error gets no hint", async () => {
    const y = c.outputs["y"]!.clone();
    let seed = 7;
    for (let i = 0; i < y.size; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      y.data[i] = y.data[i]! + (seed / 2 ** 31 - 0.5) * 0.3;
    }
    expect(await ids(symptom(c, y))).toEqual([]);
  });
});

describe("the causal mask's own pattern", () => {
  const c = golden("causal_mask/f64/n5_m5");
  const mask = (shift: number | null) => {
    const [n, m] = [5, 5];
    const v: number[] = [];
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++) v.push(shift !== null && j > i + (m - n) + shift ? -Infinity : 0);
    return fill({ dtype: "f64", shape: [n, m] }, v);
  };
  test("the off-by-one band", async () => {
    const hints = await diagnose(symptom(c, mask(1)));
    expect(hints.map((h) => h.id)).toEqual(["mask-off-by-one"]);
    expect(hints[0]!.message).toContain("all 4 mismatches lie on the band j = i + 1 + (m − n)");
  });
  test("errors at every masked position (no mask)", async () => {
    const hints = await diagnose(symptom(c, mask(null)));
    expect(hints.map((h) => h.id)).toEqual(["masked-positions"]);
    expect(hints[0]!.message).toContain("all 10 mismatches are at masked positions");
  });
  test("the diagonal hidden", async () => {
    expect(await ids(symptom(c, mask(-1)))).toEqual(["mask-diagonal"]);
  });
});

describe("GELU: erf against tanh", () => {
  test("the tanh form where erf is expected", async () => {
    const c = golden("gelu/f64/n7_d12");
    const x = c.inputs["x"]!;
    const hints = await diagnose(symptom(c, mapped(x, geluTanh)));
    expect(hints[0]?.id).toBe("gelu-tanh");
    expect(hints[0]?.message).toContain("gelu_new");
  });
  test("the erf form where tanh is expected (float32 case, erf to 1.5e-7)", async () => {
    const c = golden("gelu_tanh/f32/n7_d12");
    const x = c.inputs["x"]!;
    expect(await ids(symptom(c, mapped(x, geluErf)))).toContain("gelu-erf");
  });
  test("inside the FFN: activation gelu computed with tanh", async () => {
    const c = golden("ffn/f64/gelu_n7_d12_dff20");
    const { x, W_1, b_1, W_2, b_2 } = c.inputs as Record<string, Tensor>;
    const h = fill(
      { dtype: "f64", shape: [7, 20] },
      Array.from(matmulRows(x!, W_1!, b_1!), geluTanh),
    );
    const y = fill(c.outputs["y"]!, matmulRows(h, W_2!, b_2!));
    const hints = await diagnose(symptom(c, y));
    expect(hints.map((x) => x.id)).toContain("gelu-tanh");
    expect(hints.find((x) => x.id === "gelu-tanh")!.message).toContain(
      "ffn with GELU's tanh approximation",
    );
  });
});

describe("patterns of the error", () => {
  test("sine and cosine swapped in the sinusoidal table", async () => {
    const c = golden("positional_sinusoidal/f64/n7_d12");
    const v: number[] = [];
    for (let i = 0; i < 7; i++) {
      for (let col = 0; col < 12; col++) {
        const angle = i / 10000 ** ((2 * Math.floor(col / 2)) / 12);
        v.push(col % 2 === 0 ? Math.cos(angle) : Math.sin(angle));
      }
    }
    const hints = await diagnose(symptom(c, fill(c.outputs["y"]!, v)));
    expect(hints.map((h) => h.id)).toContain("sin-cos-swapped");
  });
  test("a factor √(d_model/d_k) = √H on an MHA output names the attention scale", async () => {
    const c = golden("mha/f64/n6_d12_h4_noncausal");
    const hints = await hintsWhenMapped(c, (v) => 2 * v);
    const h = hints.find((x) => x.id === "attention-scale");
    expect(h?.evidence).toBe("pattern");
    expect(h?.message).toContain("c = 2");
    expect(h?.message).toContain("√(d_model/d_k) = √H = 2");
  });
  test("any other constant factor", async () => {
    const c = golden("layer_norm/f64/n7_d12");
    const hints = await hintsWhenMapped(c, (v) => 1.5 * v);
    expect(hints.map((h) => h.id)).toEqual(["constant-factor"]);
    expect(hints[0]!.message).toContain("c = 1.5");
  });
  test("a per-row offset: log_softmax without its log-sum-exp", async () => {
    const c = golden("log_softmax/f64/n7_m12");
    const x = c.inputs["x"]!;
    const v = new Float64Array(x.size);
    for (let r = 0; r < 7; r++) {
      const row = Array.from(x.data.slice(r * 12, r * 12 + 12));
      const mx = Math.max(...row);
      row.forEach((xv, j) => (v[r * 12 + j] = xv - mx));
    }
    const hints = await diagnose(symptom(c, fill(x, v)));
    expect(hints.map((h) => h.id)).toEqual(["row-offset"]);
    expect(hints[0]!.message).toContain("constant within each row");
  });
  test("one constant offset everywhere", async () => {
    const c = golden("layer_norm/f64/n7_d12");
    const hints = await hintsWhenMapped(c, (v) => v + 0.25);
    expect(hints.map((h) => h.id)).toEqual(["row-offset"]);
    expect(hints[0]!.message).toContain("the same constant 0.25 everywhere");
  });
  test("a transposed output (shapes swapped)", async () => {
    const c = golden("logits/f64/n7_d12_V11");
    const y = c.outputs["y"]!;
    const hints = await diagnose(symptom(c, transposeLast(y)));
    expect(hints.map((h) => h.id)).toEqual(["transposed"]);
    expect(hints[0]!.message).toContain(`shaped [${y.shape.at(-1)}, ${y.shape.at(-2)}]`);
  });
  test("a square output transposed, and data in column-major order", async () => {
    const e = fill(
      { dtype: "f64", shape: [4, 4] },
      Array.from({ length: 16 }, (_, i) => Math.sin(i + 1)),
    );
    const base = {
      formula: "custom",
      config: {},
      inputs: {},
      dtype: "f64" as FloatDType,
      output: "y",
      expected: e,
      tolerance: { rtol: 1e-12, atol: 1e-12 },
    };
    expect(await ids({ ...base, actual: transposeLast(e) })).toEqual(["transposed"]);
    const r = fill(
      { dtype: "f64", shape: [3, 5] },
      Array.from({ length: 15 }, (_, i) => Math.cos(i)),
    );
    const colMajor = new Float64Array(15);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 5; j++) colMajor[j * 3 + i] = r.data[i * 5 + j]!;
    expect(await ids({ ...base, expected: r, actual: fill(r, colMajor) })).toEqual([
      "column-major",
    ]);
  });
  test("a square weight used transposed (torch.nn.Linear's layout)", async () => {
    const rnd = (n: number, s: number) =>
      Array.from({ length: n }, (_, i) => Math.sin(s * (i + 1)));
    const x = fill({ dtype: "f64", shape: [5, 4] }, rnd(20, 1.3));
    const W = fill({ dtype: "f64", shape: [4, 4] }, rnd(16, 2.1));
    const b = fill({ dtype: "f64", shape: [4] }, rnd(4, 0.7));
    const expected = fill({ dtype: "f64", shape: [5, 4] }, matmulRows(x, W, b));
    const actual = fill({ dtype: "f64", shape: [5, 4] }, matmulRows(x, W, b, true));
    const hints = await diagnose({
      formula: "linear",
      config: {},
      inputs: { x, W, b },
      dtype: "f64",
      output: "y",
      expected,
      actual,
      tolerance: { rtol: 1e-13, atol: 1e-13 },
    });
    expect(hints.map((h) => h.id)).toContain("weight-transposed");
    expect(hints.find((h) => h.id === "weight-transposed")!.message).toContain("with W transposed");
  });
});

describe("composites: configuration swaps", () => {
  const ref = referenceImplementation();
  test("a post-LN block computed with pre-LN placement", async () => {
    const c = golden("block/f64/post_n7_d12_h3");
    const pre = (
      await ref.forward({
        formula: "block",
        config: { ...c.meta.config, placement: "pre", dtype: "f64" },
        inputs: c.inputs,
      })
    ).outputs["y"]!;
    expect(await ids(symptom(c, pre))).toContain("placement");
  });
  test("mha without the causal mask", async () => {
    const c = golden("mha/f64/n7_d12_h3_causal");
    const y = (
      await ref.forward({
        formula: "mha",
        config: { ...c.meta.config, causal: false, dtype: "f64" },
        inputs: c.inputs,
      })
    ).outputs["y"]!;
    expect(await ids(symptom(c, y))).toContain("mask-missing");
  });
});
