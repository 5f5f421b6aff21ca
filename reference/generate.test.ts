import { describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../autodiff/random.js";
import { loadCase } from "../golden/cases-io.js";
import { compareCase, formatReport } from "../golden/compare.js";
import { Tensor } from "../autodiff/tensor.js";
import {
  chooseToken,
  decodeSteps,
  generate,
  generateGreedyCase,
  GenerateError,
  MIN_TEMPERATURE,
} from "./generate.js";
import type { GPT, GPTConfig } from "./model.js";
import { livelyModel, maxRelDiff as relDiff } from "./lively.testing.js";

const POSITIONS = ["learned", "sinusoidal", "rope", "rope_interleaved", "alibi", "none"] as const;

const BASE: Partial<GPTConfig> = { V: 37, n_ctx: 16, d_model: 16, H: 4, L: 2, d_ff: 24 };

function model(fields: Partial<GPTConfig>, seed = 1): GPT {
  return livelyModel({ ...BASE, ...fields }, seed);
}

describe("KV-cache decoding", () => {
  it.each(
    POSITIONS.flatMap(
      (p) =>
        [
          [p, 4],
          [p, 1],
        ] as const,
    ),
  )(
    "positions %s, H_kv %i: logits equal full recomputation at every step (f64, 1e-12 relative)",
    (positions, H_kv) => {
      const m = model(
        {
          positions,
          H_kv,
          placement: positions === "none" ? "sandwich" : "pre",
          norm: positions === "alibi" ? "rms_norm" : "layer_norm",
        },
        3,
      );
      const prompt = [5, 17, 2, 33];
      const opts = { maxNewTokens: 10 } as const;
      const cached = m.generate(prompt, { ...opts, cache: true });
      const full = m.generate(prompt, { ...opts, cache: false });
      expect(cached.tokens).toEqual(full.tokens);
      expect(cached.stepLogits.length).toBe(10);
      cached.stepLogits.forEach((row, i) =>
        expect(relDiff(row, full.stepLogits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-12),
      );
      // and sampling with one seed picks the same ids either way
      const s = { maxNewTokens: 8, temperature: 0.9, topK: 20, topP: 0.95, seed: 42 };
      expect(m.generate(prompt, { ...s, cache: true }).tokens).toEqual(
        m.generate(prompt, { ...s, cache: false }).tokens,
      );
    },
  );

  it.each([
    ["rope", 3, 0],
    ["learned", 2, 30],
    ["alibi", 1, 5],
  ] as const)(
    "positions %s, sliding window %i, softcap %d: cached decoding equals full recomputation (f64, 1e-12 relative)",
    (positions, window, softcap) => {
      const m = model({ positions, window, softcap, H_kv: 2 }, 5);
      const prompt = [5, 17, 2, 33, 8];
      const cached = m.generate(prompt, { maxNewTokens: 8, cache: true });
      const full = m.generate(prompt, { maxNewTokens: 8, cache: false });
      expect(cached.tokens).toEqual(full.tokens);
      cached.stepLogits.forEach((row, i) =>
        expect(relDiff(row, full.stepLogits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-12),
      );
      // the window limits what the last position sees: a window no shorter than the sequence is no window
      const seq = cached.tokens.slice(0, 12);
      const wide = model({ positions, window: seq.length, softcap, H_kv: 2 }, 5).forward(seq);
      const none = model({ positions, window: 0, softcap, H_kv: 2 }, 5).forward(seq);
      expect(relDiff(wide.data as Float64Array, none.data as Float64Array)).toBeLessThanOrEqual(
        1e-14,
      );
      const narrow = m.forward(seq);
      expect(relDiff(narrow.data as Float64Array, none.data as Float64Array)).toBeGreaterThan(1e-6);
    },
  );

  it("feeds a one-token prompt (n = 1, cache empty at the first step)", () => {
    const m = model({ positions: "rope" });
    const a = m.generate([7], { maxNewTokens: 5 });
    const b = m.generate([7], { maxNewTokens: 5, cache: false });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBe(6);
  });
});

describe("stopping", () => {
  const m = model({ positions: "learned", n_ctx: 7 });

  it("after maxNewTokens, at a stop token, or when learned positions run out", () => {
    const free = m.generate([1, 2], { maxNewTokens: 4 });
    expect(free.stopped).toBe("max_tokens");
    expect(free.tokens.length).toBe(6);
    const stopAt = free.tokens[3]!; // the second new token
    const stopped = m.generate([1, 2], { maxNewTokens: 4, stop: [stopAt] });
    expect(stopped.stopped).toBe("stop_token");
    expect(stopped.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(stopAt, 2) + 1));
    expect(m.generate([1, 2], { maxNewTokens: 0 }).tokens).toEqual([1, 2]);
    // n_ctx = 7: positions 0…6 have logits, so 7 − 5 + 1 = 3 new tokens from a 5-token prompt
    const ctx = m.generate([1, 2, 3, 4, 5], { maxNewTokens: 10 });
    expect(ctx.stopped).toBe("context");
    expect(ctx.tokens.length).toBe(8);
  });

  it("streams steps as a generator", () => {
    const seen: number[] = [];
    const it = decodeSteps(m.formulaConfig, m.weights, [3, 4], { maxNewTokens: 3 });
    for (let r = it.next(); r.done !== true; r = it.next()) seen.push(r.value.token);
    expect([3, 4, ...seen]).toEqual(m.generate([3, 4], { maxNewTokens: 3 }).tokens);
  });

  it("rejects bad requests with clear messages", () => {
    const g = (prompt: number[], o: object) =>
      generate(m.formulaConfig, m.weights, prompt, { maxNewTokens: 2, ...o });
    expect(() => g([], {})).toThrow("the prompt must hold at least one token");
    expect(() => g([1, 37], {})).toThrow(
      "prompt token 37 at position 1 is outside the vocabulary of 37",
    );
    expect(() => g([1], { maxNewTokens: -1 })).toThrow(
      "maxNewTokens must be a non-negative integer, got -1",
    );
    expect(() => g([1], { stop: [40] })).toThrow("stop token 40 is outside the vocabulary of 37");
    expect(() => g([1, 2, 3, 4, 5, 6, 7, 8], {})).toThrow(
      "the prompt has 8 tokens but learned positions hold n_ctx = 7",
    );
    expect(() => g([1], { temperature: -1 })).toThrow(GenerateError);
  });
});

describe("chooseToken", () => {
  const logits = [0.5, 2, -1, 2, 1];

  it("greedy takes the first maximum; top-k 1 and a tiny top-p are greedy too", () => {
    const rng = new Rng(0);
    expect(chooseToken(logits, {}, rng)).toBe(1);
    expect(chooseToken(logits, { temperature: 0 }, rng)).toBe(1);
    for (let i = 0; i < 20; i++)
      expect(chooseToken([0.5, 2, -1, 2.5, 1], { temperature: 1, topK: 1 }, rng)).toBe(3);
    for (let i = 0; i < 20; i++)
      expect(chooseToken([0.5, 2, -1, 2.5, 1], { temperature: 1, topP: 1e-9 }, rng)).toBe(3);
  });

  it("samples softmax(logits / T) restricted to top-k and top-p", () => {
    const rng = new Rng(9);
    const N = 20000;
    const T = 0.7;
    const count = (o: object) => {
      const c = new Array(logits.length).fill(0);
      for (let i = 0; i < N; i++) c[chooseToken(logits, { temperature: T, ...o }, rng)]++;
      return c as number[];
    };
    const p = logits.map((z) => Math.exp(z / T));
    const Z = p.reduce((a, b) => a + b);
    const full = count({});
    // each frequency within 5 binomial standard errors of its probability
    full.forEach((c, i) =>
      expect(Math.abs(c / N - p[i]! / Z)).toBeLessThan(
        5 * Math.sqrt(((p[i]! / Z) * (1 - p[i]! / Z)) / N) + 1e-12,
      ),
    );
    const top3 = count({ topK: 3 }); // ids 1, 3 (tied at 2) and 4
    expect(top3[0]).toBe(0);
    expect(top3[2]).toBe(0);
    const Z3 = p[1]! + p[3]! + p[4]!;
    expect(Math.abs(top3[4]! / N - p[4]! / Z3)).toBeLessThan(
      5 * Math.sqrt(((p[4]! / Z3) * (1 - p[4]! / Z3)) / N),
    );
    // top-p 0.8: ids 1 and 3 hold 2·p₁/Z ≈ 0.83 ≥ 0.8, so only they remain
    const nucleus = count({ topP: 0.8 });
    expect(nucleus[1]! + nucleus[3]!).toBe(N);
  });

  it("rejects bad sampling options", () => {
    const rng = new Rng(0);
    expect(() => chooseToken(logits, { temperature: Number.NaN }, rng)).toThrow(
      "temperature must be a positive number, got NaN",
    );
    expect(() => chooseToken(logits, { temperature: 1, topK: 0 }, rng)).toThrow(
      "top-k must be a positive integer, got 0",
    );
    expect(() => chooseToken(logits, { temperature: 1, topP: 1.5 }, rng)).toThrow(
      "top-p must be in (0, 1], got 1.5",
    );
    expect(() => chooseToken(logits, { temperature: 1, topP: Number.NaN }, rng)).toThrow(
      "top-p must be in (0, 1], got NaN",
    );
    expect(() => chooseToken(logits, { temperature: 1, topK: 2.5 }, rng)).toThrow(
      "top-k must be a positive integer, got 2.5",
    );
    expect(() => chooseToken(logits, { temperature: Infinity }, rng)).toThrow(
      "temperature must be a positive number, got Infinity",
    );
    // options are checked in greedy mode too, not only when they are used
    expect(() => chooseToken(logits, { temperature: 0, topK: -1 }, rng)).toThrow(
      "top-k must be a positive integer, got -1",
    );
  });

  it("refuses a subnormal temperature (1/T overflows and every probability would be NaN)", () => {
    const rng = new Rng(0);
    expect(() => chooseToken(logits, { temperature: 1e-310 }, rng)).toThrow(
      "temperature 1e-310 is below the smallest normal number " +
        "2.2250738585072014e-308 (2^-1022); use 0 for greedy decoding",
    );
    expect(() => chooseToken(logits, { temperature: Number.MIN_VALUE }, rng)).toThrow(
      GenerateError,
    );
  });

  it(
    "the smallest normal temperature samples like greedy, never from NaN " +
      "(the least likely id was chosen before)",
    () => {
      const rng = new Rng(0);
      const wide = [0.5, 2, -1e300, 2.5, 1, -Infinity];
      for (const T of [MIN_TEMPERATURE, 1e-300, 1e-200]) {
        for (let i = 0; i < 20; i++) expect(chooseToken(wide, { temperature: T }, rng)).toBe(3);
      }
    },
  );

  it("never picks from NaN probabilities: NaN or +Inf logits, or no finite logit, are errors", () => {
    const rng = new Rng(0);
    expect(() => chooseToken([0, Number.NaN, 1], { temperature: 1 }, rng)).toThrow(
      "the logit of id 1 is NaN: the probabilities would be NaN",
    );
    expect(() => chooseToken([0, Number.NaN, 1], {}, rng)).toThrow("the logit of id 1 is NaN");
    expect(() => chooseToken([0, Infinity], { temperature: 1 }, rng)).toThrow(
      "the logit of id 1 is Infinity: the probabilities would be NaN",
    );
    expect(() => chooseToken([-Infinity, -Infinity], { temperature: 1 }, rng)).toThrow(
      "every logit is −Infinity (or there are none, V = 2): no token can be chosen",
    );
    // −∞ marks an id that may not be chosen
    for (let i = 0; i < 20; i++)
      expect(chooseToken([-Infinity, 0, -Infinity], { temperature: 1 }, rng)).toBe(1);
  });

  it("decoding names the step whose logits are NaN, and checks options before the first step", () => {
    const m = model({});
    const w = { ...m.weights };
    const wte = w["wte.weight"]!;
    const bad = new Tensor(wte.dtype, wte.shape, Float64Array.from(wte.data));
    bad.data[5 * wte.shape[1]!] = Number.NaN; // token 5's embedding: its logit (tied) is NaN everywhere
    w["wte.weight"] = bad;
    const steps = decodeSteps(m.formulaConfig, w, [1, 2], { maxNewTokens: 3, temperature: 1 });
    expect(() => steps.next()).toThrow(
      "step 0 (position 2): the logit of id 5 is NaN: the probabilities would be NaN",
    );
    expect(() =>
      decodeSteps(m.formulaConfig, m.weights, [1], { maxNewTokens: 3, temperature: 1e-310 }).next(),
    ).toThrow("temperature 1e-310 is below the smallest normal number");
    expect(() =>
      decodeSteps(m.formulaConfig, m.weights, [1], { maxNewTokens: 3, topP: 2 }).next(),
    ).toThrow("top-p must be in (0, 1], got 2");
  });
});

describe("greedy decoding against the PyTorch goldens (gpt_generate)", () => {
  const root = join(import.meta.dirname, "..", "golden", "cases", "gpt_generate");
  const files = ["f64", "f32"].flatMap((d) =>
    readdirSync(join(root, d)).map((f) => join(root, d, f)),
  );

  it.each(files.map((f) => [f.slice(root.length + 1), f]))("%s", (_name, file) => {
    expect(files.length).toBeGreaterThanOrEqual(4);
    const g = loadCase(file);
    const report = compareCase(g, { outputs: generateGreedyCase(g.inputs, g.meta.config) });
    if (!report.ok) throw new Error(formatReport(report));
    expect(report.passed).toBe(Object.keys(g.outputs).length);
  });
});
