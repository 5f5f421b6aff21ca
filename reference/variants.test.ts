/**
 * The variant switches of the `gpt` formula: a pairwise covering set of combinations passes the
 * engine's gradient check and renders; RoPE's two conventions agree after a weight permutation;
 * ALiBi's slopes follow Press et al.
 */
import { describe, expect, it } from "vitest";
import "../spec/index.js";
import { renderFormula } from "../spec/render.js";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { gradcheckGraph } from "../autodiff/gradcheck.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import {
  countParameters,
  formulaConfig,
  GPT,
  resolveModelConfig,
  type GPTConfig,
} from "./model.js";
import { livelyWeights } from "./lively.testing.js";

const U64 = 2 ** -53;

const lively = livelyWeights;

// ---------------------------------------------------------------------------------------------
// a pairwise covering set of the switches

const FACTORS = {
  placement: ["post", "pre", "sandwich"],
  norm: ["layer_norm", "rms_norm"],
  activation: ["gelu", "gelu_tanh", "relu", "swiglu"],
  positions: ["learned", "sinusoidal", "rope", "rope_interleaved", "alibi", "none"],
  heads: ["multi-head", "multi-query", "grouped"],
  tied: [true, false],
  parallel: [false, true],
  bias: [true, false],
} as const;
type Factor = keyof typeof FACTORS;
type Choice = Partial<Record<Factor, string | boolean>>;
const NAMES = Object.keys(FACTORS) as Factor[];

/** parallel (GPT-J) is defined for pre placement only. */
const allowed = (c: Choice): boolean =>
  !(c.parallel === true && c.placement !== undefined && c.placement !== "pre");

function pairsOf(c: Choice): string[] {
  const out: string[] = [];
  for (let i = 0; i < NAMES.length; i++) {
    for (let j = i + 1; j < NAMES.length; j++) {
      const a = NAMES[i]!,
        b = NAMES[j]!;
      if (c[a] !== undefined && c[b] !== undefined)
        out.push(`${a}=${String(c[a])}|${b}=${String(c[b])}`);
    }
  }
  return out;
}

/** Every allowed pair of values of two switches. */
function allPairs(): Set<string> {
  const s = new Set<string>();
  for (let i = 0; i < NAMES.length; i++) {
    for (let j = i + 1; j < NAMES.length; j++) {
      for (const va of FACTORS[NAMES[i]!])
        for (const vb of FACTORS[NAMES[j]!]) {
          const c: Choice = { [NAMES[i]!]: va, [NAMES[j]!]: vb };
          if (allowed(c)) s.add(pairsOf(c)[0]!);
        }
    }
  }
  return s;
}

/**
 * Greedy covering (AETG-style): start from the first uncovered pair, then give every other switch
 * the value that covers the most still-uncovered pairs. Deterministic.
 */
function coveringSet(): Choice[] {
  const uncovered = allPairs();
  const out: Choice[] = [];
  while (uncovered.size > 0) {
    const first = [...uncovered][0]!;
    const c: Choice = {};
    for (const part of first.split("|")) {
      const [k, v] = part.split("=") as [Factor, string];
      c[k] = v === "true" ? true : v === "false" ? false : v;
    }
    for (const f of NAMES) {
      if (c[f] !== undefined) continue;
      let best: string | boolean | undefined;
      let bestGain = -1;
      for (const v of FACTORS[f]) {
        const trial = { ...c, [f]: v };
        if (!allowed(trial)) continue;
        const gain = pairsOf(trial).filter((p) => uncovered.has(p)).length;
        if (gain > bestGain) [best, bestGain] = [v, gain];
      }
      c[f] = best!;
    }
    for (const p of pairsOf(c)) uncovered.delete(p);
    out.push(c);
  }
  return out;
}

function configOf(c: Choice): GPTConfig {
  const H = 4;
  return resolveModelConfig({
    V: 11,
    n_ctx: 7,
    d_model: 16,
    H,
    L: 2,
    d_ff: 12,
    eps: 1e-5,
    H_kv: c.heads === "multi-head" ? H : c.heads === "multi-query" ? 1 : 2,
    placement: c.placement as GPTConfig["placement"],
    norm: c.norm as GPTConfig["norm"],
    activation: c.activation as GPTConfig["activation"],
    positions: c.positions as GPTConfig["positions"],
    tied: c.tied as boolean,
    parallel: c.parallel as boolean,
    bias: c.bias as boolean,
  });
}

describe("every variant switch of gpt", () => {
  const set = coveringSet();

  it("the covering set holds every allowed pair of switch values, and so every value", () => {
    const covered = new Set(set.flatMap(pairsOf));
    for (const p of allPairs()) expect(covered.has(p), p).toBe(true);
    for (const f of NAMES)
      for (const v of FACTORS[f])
        expect(
          set.some((c) => c[f] === v),
          `${f}=${String(v)}`,
        ).toBe(true);
    expect(set.length).toBeLessThanOrEqual(30); // 6 positions × 4 activations = 24 at least
  });

  it.each(set.map((c, i) => [i, NAMES.map((f) => `${f}=${String(c[f])}`).join(" "), c] as const))(
    "#%i %s: gradcheck (fast) of every parameter, and it renders",
    async (i, _label, c) => {
      const config = configOf(c);
      const g = formulaGraph("gpt", formulaConfig(config));
      const rng = new Rng(100 + i);
      // odd combinations of batch and length: [2, 5] for even cases, [5] (n < n_ctx) for odd
      const shape = i % 2 === 0 ? [2, 5] : [5];
      const inputs: NamedTensors = {
        tokens: rng.intTensor(shape, config.V),
        targets: rng.intTensor(shape, config.V),
        ...lively(config, i),
      };
      const r = await gradcheckGraph(g, inputs, { mode: "fast", seed: i });
      if (!r.ok)
        throw new Error(`${JSON.stringify(c)}: ${r.error ?? JSON.stringify(r.failures, null, 1)}`);
      expect(r.checked.length).toBe(Object.keys(inputs).length - 2 + 1); // one direction per parameter, one joint
      const rendered = renderFormula("gpt", formulaConfig(config));
      expect(rendered.latex.length).toBeGreaterThan(0);
      expect(rendered.latex.join("\n")).toMatch(
        config.tied ? /E\^\\top|\\mathtt\{wte\.weight\}\^\\top|E\[t\]/ : /lm\\_head\.weight/,
      );
      expect(rendered.parameterCount?.value).toBe(countParameters(config));
    },
  );
});

// ---------------------------------------------------------------------------------------------
// RoPE conventions

/**
 * The weight permutation that turns a half-split RoPE model into an interleaved one.
 *
 * Half-split (GPT-NeoX, HF `rotate_half`) rotates the pairs (i, i + d_k/2) of each head by θ_i;
 * interleaved (RoFormer, GPT-J) rotates the pairs (2i, 2i + 1) by the same θ_i = base^(−2i/d_k).
 * So if, inside every head, coordinate 2i of the interleaved model holds coordinate i of the
 * half-split one and coordinate 2i + 1 holds coordinate i + d_k/2,
 *
 *   q_int = P q_half,  k_int = P k_half   ⇒   rope_int(q_int) = P rope_half(q_half),
 *
 * and every score q·k is unchanged (P is orthogonal). Since q = x W_Q + b_Q, P acts on the columns
 * of W_Q and the entries of b_Q (likewise W_K, b_K, per key/value head); W_V is left alone:
 *
 *   column h·d_k + 2i     of the interleaved model = column h·d_k + i          of the half-split one
 *   column h·d_k + 2i + 1 of the interleaved model = column h·d_k + d_k/2 + i  of the half-split one
 *
 * (This is the inverse of the permute() in HF's convert_llama_weights_to_hf.py.)
 */
function halfToInterleaved(config: GPTConfig, w: NamedTensors): NamedTensors {
  const dk = config.d_model / config.H;
  const cols = (config.H + 2 * config.H_kv) * dk;
  // destination column → source column, over the Q block (H heads) then the K block (H_kv heads)
  const src = Array.from({ length: cols }, (_, j) => j);
  for (const [start, heads] of [
    [0, config.H],
    [config.H * dk, config.H_kv],
  ] as const) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < dk / 2; i++) {
        src[start + h * dk + 2 * i] = start + h * dk + i;
        src[start + h * dk + 2 * i + 1] = start + h * dk + dk / 2 + i;
      }
    }
  }
  const out: NamedTensors = { ...w };
  for (const [k, t] of Object.entries(w)) {
    if (!/attn\.c_attn\.(weight|bias)$/.test(k)) continue;
    const p = Tensor.zeros(t.shape, t.dtype);
    const rows = t.size / cols;
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < cols; j++) p.data[r * cols + j] = t.data[r * cols + src[j]!]!;
    out[k] = p;
  }
  return out;
}

describe("RoPE: half-split and interleaved", () => {
  it("agree after permuting the W_Q/W_K columns within each head (grouped KV heads, biases on)", () => {
    for (const rope_base of [10000, 500]) {
      const half = resolveModelConfig({
        preset: "tiny",
        V: 31,
        d_model: 24,
        H: 4,
        H_kv: 2,
        positions: "rope",
        rope_base,
        L: 2,
      });
      const inter: GPTConfig = { ...half, positions: "rope_interleaved" };
      const w = lively(half, 17);
      const ids = [
        [3, 14, 15, 9, 26, 5, 3, 5, 8, 9, 7],
        [2, 7, 1, 8, 2, 8, 18, 28, 18, 28, 4],
      ];
      const a = new GPT(half, w).forward(ids);
      const b = new GPT(inter, halfToInterleaved(half, w)).forward(ids);
      const scale = Math.max(...Array.from(a.data, Math.abs));
      let maxDiff = 0;
      for (let i = 0; i < a.size; i++)
        maxDiff = Math.max(maxDiff, Math.abs(a.data[i]! - b.data[i]!));
      // only the summation order inside q·k differs (d_k = 6 terms): rounding, a few ulps of the scale
      expect(maxDiff).toBeLessThanOrEqual(1e3 * U64 * scale);
      // without the permutation the conventions give another function
      const c = new GPT(inter, w).forward(ids);
      let off = 0;
      for (let i = 0; i < a.size; i++) off = Math.max(off, Math.abs(a.data[i]! - c.data[i]!));
      expect(off).toBeGreaterThan(1e-3 * scale);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// ALiBi slopes

/**
 * Press et al.'s slopes, transcribed from the paper's reference code (`get_slopes`): for a power
 * of two n, the geometric sequence with start and ratio 2^(−8/n); otherwise the slopes of the
 * closest power of two c < n followed by every other slope of the 2c schedule, n − c of them.
 */
function pressSlopes(n: number): number[] {
  const powerOf2 = (m: number): number[] => {
    const start = 2 ** -(2 ** -(Math.log2(m) - 3));
    const out: number[] = [];
    let s = start;
    for (let i = 0; i < m; i++) {
      out.push(s);
      s *= start;
    }
    return out;
  };
  if (Number.isInteger(Math.log2(n))) return powerOf2(n);
  const c = 2 ** Math.floor(Math.log2(n));
  return [
    ...powerOf2(c),
    ...pressSlopes(2 * c)
      .filter((_, i) => i % 2 === 0)
      .slice(0, n - c),
  ];
}

/** The slopes the spec's alibi_bias uses: with the absolute form, y[h, 0, 1] = s_h · 1. */
function specSlopes(H: number): number[] {
  const y = evaluate(formulaGraph("alibi_bias", { H, n: 1, m: 2, form: "absolute" }), {})["y"]!; // (H, 1, 2)
  return Array.from({ length: H }, (_, h) => y.get(h, 0, 1));
}

describe("ALiBi slopes", () => {
  it("are 2^-1 … 2^-8 for H = 8", () => {
    expect(specSlopes(8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 ** -k));
  });

  it("follow Press et al.'s schedule for every H, including non-powers of two", () => {
    // H = 6: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3 from the 8-head schedule
    expect(specSlopes(6)).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
    for (const H of [1, 2, 3, 5, 6, 7, 12, 16, 20]) {
      const want = pressSlopes(H);
      const got = specSlopes(H);
      expect(got.length).toBe(H);
      // the reference multiplies up to H times (H roundings); the spec takes one power
      for (let h = 0; h < H; h++)
        expect(Math.abs(got[h]! - want[h]!), `H=${H} h=${h}`).toBeLessThanOrEqual(
          2 * H * U64 * want[h]!,
        );
    }
  });
});
