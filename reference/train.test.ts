import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { PYTHON, pythonCanImport } from "../io/python.testing.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import { corpusText, corpusTokenizer } from "./corpus.js";
import { GPT, resolveModelConfig } from "./model.js";
import { Adam, clipGradNorm, evalLoss, TokenWindows, train, TrainError } from "./train.js";

const U64 = 2 ** -53;
const hasTorch = pythonCanImport("torch");

/** torch.optim.AdamW (float64) over the same parameters and gradients, decay on matrices only. */
function torchAdamW(
  params: NamedTensors,
  gradSteps: NamedTensors[],
  lrs: number[],
  o: { beta1: number; beta2: number; eps: number; wd: number },
): Record<string, number[]> {
  const script =
    `
import json, sys, torch
a = json.load(sys.stdin)
ps = {k: torch.tensor(v["data"], ` +
    `dtype=torch.float64).reshape(v["shape"]).requires_grad_() for k, v in ` +
    `a["params"].items()}
mats = [p for p in ps.values() if p.dim() >= 2]
vecs = [p for p in ps.values() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": mats, "weight_decay": a["wd"]}, {"params": vecs, "weight_decay": 0.0}],
                        lr=a["lrs"][0], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
for g, lr in zip(a["grads"], a["lrs"]):
    for group in opt.param_groups:
        group["lr"] = lr
    for k, p in ps.items():
        p.grad = torch.tensor(g[k], dtype=torch.float64).reshape(p.shape)
    opt.step()
json.dump({k: p.detach().reshape(-1).tolist() for k, p in ps.items()}, sys.stdout)
`;
  const input = JSON.stringify({
    params: Object.fromEntries(
      Object.entries(params).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data) }]),
    ),
    grads: gradSteps.map((g) =>
      Object.fromEntries(Object.entries(g).map(([k, t]) => [k, Array.from(t.data)])),
    ),
    lrs,
    ...o,
  });
  return JSON.parse(execFileSync(PYTHON, ["-c", script], { input, encoding: "utf8" })) as Record<
    string,
    number[]
  >;
}

describe("Adam", () => {
  it.skipIf(!hasTorch)(
    "follows torch.optim.AdamW step for step (bias correction, decoupled decay on matrices, a schedule)",
    () => {
      const rng = new Rng(1);
      const init: NamedTensors = {
        W: rng.normalTensor([3, 4]),
        b: rng.normalTensor([4]),
        gamma: rng.normalTensor([4]),
      };
      const steps = 12;
      const grads = Array.from({ length: steps }, (_, t) => ({
        W: rng.normalTensor([3, 4], 1 + t),
        b: rng.normalTensor([4], 0.01),
        gamma: rng.normalTensor([4], 100),
      }));
      const lrs = Array.from({ length: steps }, (_, t) => 0.05 * (1 - t / steps));
      const o = { beta1: 0.8, beta2: 0.99, eps: 1e-6, wd: 0.1 };
      const want = torchAdamW(init, grads, lrs, o);
      const params: NamedTensors = Object.fromEntries(
        Object.entries(init).map(([k, t]) => [k, t.clone()]),
      );
      const adam = new Adam({
        lr: 1,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weightDecay: o.wd,
      });
      grads.forEach((g, t) => adam.step(params, g, lrs[t]));
      expect(adam.t).toBe(steps);
      for (const [k, t] of Object.entries(params)) {
        // the same formula with other roundings (torch: m.mul(β₁).add(g·(1−β₁)), √v/√bc₂): a few ulps of
        // |θ| + |Δθ| (≤ 1 + 2) per step; 12 steps × 8u × 3 ≈ 6e-14
        for (let i = 0; i < t.size; i++)
          expect(Math.abs(t.data[i]! - want[k]![i]!), `${k}[${i}]`).toBeLessThanOrEqual(
            steps * 8 * U64 * 3 * Math.max(1, Math.abs(want[k]![i]!)),
          );
      }
      // a planted mistake (no bias correction of v) is far outside that
      const wrong: NamedTensors = Object.fromEntries(
        Object.entries(init).map(([k, t]) => [k, t.clone()]),
      );
      const bad = new Adam({ lr: 1, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: 0 });
      grads.forEach((g, t) => bad.step(wrong, g, lrs[t]));
      expect(Math.abs(wrong["W"]!.data[0]! - want["W"]![0]!)).toBeGreaterThan(1e-6);
    },
  );

  it("moves every coordinate by lr·g/(|g| + ε) on its first step (m̂ = g, v̂ = g²)", () => {
    const p: NamedTensors = { x: Tensor.from([1, -2, 3, 0]) };
    const g: NamedTensors = { x: Tensor.from([0.5, -1e-3, 0, 40]) };
    new Adam({ lr: 0.1 }).step(p, g);
    const expected = [
      1 - 0.1 * (0.5 / (0.5 + 1e-8)),
      -2 + 0.1 * (1e-3 / (1e-3 + 1e-8)),
      3,
      0 - 0.1 * (40 / (40 + 1e-8)),
    ];
    p["x"]!.data.forEach((v, i) =>
      expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(
        4 * U64 * Math.max(1, Math.abs(expected[i]!)),
      ),
    );
  });

  it("rejects bad options and mismatched gradients", () => {
    expect(() => new Adam({ lr: 0 })).toThrow("Adam: lr must be a positive number, got 0");
    expect(() => new Adam({ lr: 1, beta2: 1 })).toThrow("Adam: beta2 must be in [0, 1), got 1");
    expect(() => new Adam({ lr: 1, weightDecay: -1 })).toThrow(
      "Adam: weightDecay must be a non-negative number, got -1",
    );
    const p = { x: Tensor.from([1, 2]) };
    expect(() => new Adam({ lr: 1 }).step(p, { y: Tensor.from([1, 2]) })).toThrow(
      "Adam: gradient for y, which is not a parameter",
    );
    expect(() => new Adam({ lr: 1 }).step(p, { x: Tensor.from([1]) })).toThrow(
      "Adam: gradient of x has 1 elements but the parameter has 2",
    );
    expect(() => new Adam({ lr: 1 }).step(p, { x: Tensor.from([1, Number.NaN]) })).toThrow(
      "Adam: gradient of x is NaN at index [1] (step 1)",
    );
  });
});

describe("clipGradNorm", () => {
  it("scales to the maximum norm as torch.nn.utils.clip_grad_norm_ does, and leaves small gradients alone", () => {
    const g = { a: Tensor.from([3, 0]), b: Tensor.from([[4]]) }; // ‖g‖ = 5
    expect(clipGradNorm(g, 10)).toBe(5);
    expect(Array.from(g.a.data)).toEqual([3, 0]);
    expect(clipGradNorm(g, 1)).toBe(5);
    const f = 1 / (5 + 1e-6);
    expect(g.a.data[0]).toBeCloseTo(3 * f, 15);
    expect(g.b.data[0]).toBeCloseTo(4 * f, 15);
    expect(() => clipGradNorm(g, 0)).toThrow("clipGradNorm: maxNorm must be positive, got 0");
  });
});

describe("TokenWindows", () => {
  it("draws seeded windows of consecutive ids from anywhere in the array", () => {
    const ids = Array.from({ length: 50 }, (_, i) => i);
    const w = new TokenWindows(ids, 5, 3);
    const b = w.next(400);
    expect(b.shape).toEqual([400, 5]);
    const starts = new Set<number>();
    for (let r = 0; r < 400; r++) {
      const s = b.data[r * 5]!;
      starts.add(s);
      for (let j = 1; j < 5; j++) expect(b.data[r * 5 + j]).toBe(s + j);
    }
    expect(Math.min(...starts)).toBe(0);
    expect(Math.max(...starts)).toBe(45); // the last window ends at the last id
    expect(new TokenWindows(ids, 5, 3).next(400).data).toEqual(b.data);
    expect(() => new TokenWindows([1, 2], 3)).toThrow(
      "TokenWindows: 2 tokens cannot fill one window of 3",
    );
    expect(() => new TokenWindows(ids, 1)).toThrow(
      "TokenWindows: window length must be an integer ≥ 2, got 1",
    );
    expect(() => w.next(0)).toThrow("TokenWindows: batch must be a positive integer, got 0");
  });
});

describe("train", () => {
  it("rejects ids outside the vocabulary and bad options", () => {
    expect(() => train("tiny", [1, 2, 96], { steps: 1, lr: 1e-3, batch: 1 })).toThrow(
      "train: token 96 at position 2 is outside the vocabulary 0…95",
    );
    expect(() => train("tiny", [1, 2, 3], { steps: 1, lr: 1e-3, batch: 1, seqLen: 40 })).toThrow(
      "train: seqLen 40 exceeds n_ctx = 32 (learned positions)",
    );
    expect(() => train("tiny", [1, 2, 3], { steps: -1, lr: 1e-3, batch: 1 })).toThrow(
      "train: steps must be a non-negative integer, got -1",
    );
  });

  it("is reproducible from its seed and continues a given model", () => {
    const ids = Array.from({ length: 200 }, (_, i) => (i * 7) % 96);
    const a = train("tiny", ids, { steps: 3, lr: 1e-2, batch: 2, seqLen: 8, seed: 4, clip: 1 });
    const b = train("tiny", ids, { steps: 3, lr: 1e-2, batch: 2, seqLen: 8, seed: 4, clip: 1 });
    expect(a.losses).toEqual(b.losses);
    expect(a.stepMs.length).toBe(3);
    const seen: number[] = [];
    const c = train("tiny", ids, {
      steps: 2,
      lr: (s) => 1e-2 / (s + 1),
      batch: 2,
      seqLen: 8,
      model: a.model,
      onStep: (s) => seen.push(s.lr),
    });
    expect(c.model).toBe(a.model);
    expect(seen).toEqual([1e-2, 5e-3]);
  });

  it("halves the loss of a tiny model on the bundled corpus in a few hundred Adam steps", () => {
    // a BPE with 8 merges (V = 264): the untrained loss is ln V = 5.58 nats, half is 2.79, which
    // needs a little more than bigram statistics (the corpus's bigram entropy is ≈ 2.58 nats)
    const tok = corpusTokenizer(264);
    const ids = tok.encode(corpusText());
    const config = resolveModelConfig({
      V: 264,
      n_ctx: 16,
      d_model: 32,
      H: 4,
      L: 1,
      d_ff: 128,
      placement: "pre",
      activation: "gelu_tanh",
      positions: "learned",
    });
    const fresh = GPT.init(config, { seed: 1 });
    const evalOpts = { batches: 8, batch: 32, seed: 99 };
    const before = evalLoss(fresh, ids, evalOpts);
    expect(Math.abs(before - Math.log(264))).toBeLessThan(0.05); // N(0, 0.02) weights: near-uniform logits
    const t0 = performance.now();
    const r = train(config, ids, { steps: 500, lr: 1e-2, batch: 32, seed: 1 });
    const seconds = (performance.now() - t0) / 1000;
    const after = evalLoss(r.model, ids, evalOpts);
    const ms = r.stepMs.reduce((a, b) => a + b, 0) / r.stepMs.length;
    console.log(
      `train: loss ${before.toFixed(3)} → ${after.toFixed(3)} (ratio ` +
        `${(after / before).toFixed(3)}) in 500 steps, ${ms.toFixed(1)} ms/step, ` +
        `${seconds.toFixed(1)} s`,
    );
    expect(after).toBeLessThan(before / 2);
  }, 120_000);
});
