/**
 * Training with dropout: the reference model draws keep masks from a seeded generator at GPT-2's
 * places (embedding, attention weights, both residual branches) while training, and never in
 * evaluation; a tiny model still learns, and its gradients are those of the dropped-out model.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../autodiff/random.js";
import { formulaGraph } from "../autodiff/graph.js";
import { gradcheckGraph } from "../autodiff/gradcheck.js";
import { Tensor } from "../autodiff/tensor.js";
import { GPT, dropoutMasks, resolveModelConfig } from "./model.js";
import { evalLoss, train } from "./train.js";
import { livelyWeights } from "./lively.testing.js";

const small = { preset: "tiny", V: 24, n_ctx: 12, d_model: 12, H: 2, L: 2, d_ff: 16 } as const;

describe("dropout in the reference model", () => {
  it(
    "a tiny model trains with dropout 0.1: the evaluation loss falls, and " +
      "training is reproducible from the seed",
    () => {
      // a corpus with structure to learn: a repeated pattern of period 6
      const ids = Array.from({ length: 400 }, (_, i) => [3, 7, 1, 9, 4, 15][i % 6]!);
      const opts = { steps: 60, lr: 1e-2, batch: 4, seqLen: 8, seed: 2, clip: 1 } as const;
      const before = evalLoss(
        GPT.init(resolveModelConfig({ ...small, dropout: 0.1 }), { seed: 2 }),
        ids,
        { batches: 4, batch: 4, seqLen: 8 },
      );
      const a = train({ ...small, dropout: 0.1 }, ids, opts);
      const after = evalLoss(a.model, ids, { batches: 4, batch: 4, seqLen: 8 });
      expect(after).toBeLessThan(0.5 * before);
      const b = train({ ...small, dropout: 0.1 }, ids, opts);
      expect(b.losses).toEqual(a.losses);
      // the masks matter: the same run without dropout takes other steps
      const c = train(small, ids, opts);
      expect(c.losses.slice(1)).not.toEqual(a.losses.slice(1));
    },
    120_000,
  );

  it("evaluation is deterministic and drops nothing: forward and loss equal those of the model without dropout", () => {
    const withDrop = resolveModelConfig({ ...small, dropout: 0.3 });
    const weights = livelyWeights(withDrop, 5);
    const m = new GPT(withDrop, weights);
    const plain = new GPT(resolveModelConfig(small), weights);
    const seq = [3, 1, 4, 1, 5, 9, 2, 6];
    expect(Array.from(m.forward(seq).data)).toEqual(Array.from(m.forward(seq).data));
    expect(Array.from(m.forward(seq).data)).toEqual(Array.from(plain.forward(seq).data));
    expect(m.loss(seq)).toBe(plain.loss(seq));
    expect(m.lossAndGrads(seq).loss).toBe(plain.loss(seq));
    // a training step drops: its loss differs, and one generator seed gives one loss
    const t1 = m.lossAndGrads(seq, new Rng(9)).loss;
    expect(t1).not.toBe(plain.loss(seq));
    expect(m.lossAndGrads(seq, new Rng(9)).loss).toBe(t1);
  });

  it("draws one keep mask per dropout place, of the activation's shape, with P(keep) = 1 − p", () => {
    const c = resolveModelConfig({ ...small, dropout: 0.3 });
    const masks = dropoutMasks(c, [2, 5], new Rng(1));
    expect(masks["dropout.embd"]!.shape).toEqual([2, 5, 12]);
    expect(masks["h.1.dropout.attn"]!.shape).toEqual([2, 2, 5, 5]);
    let kept = 0,
      total = 0;
    for (const t of Object.values(masks))
      for (let i = 0; i < t.size; i++) ((kept += t.data[i]!), total++);
    // P(keep) = 0.7: 1120 draws, 6 standard deviations of the binomial
    expect(Math.abs(kept / total - 0.7)).toBeLessThan(6 * Math.sqrt((0.7 * 0.3) / total));
  });

  it("the training graph's gradients pass gradcheck (fast) with drawn masks", async () => {
    const c = resolveModelConfig({ ...small, L: 1, dropout: 0.25 });
    const m = new GPT(c, livelyWeights(c, 3));
    const g = formulaGraph("gpt", { ...m.formulaConfig, dropout: 0.25 });
    const tokens = Tensor.from([3, 1, 4, 1, 5], "i32");
    const targets = Tensor.from([1, 4, 1, 5, 9], "i32");
    const r = await gradcheckGraph(
      g,
      { tokens, targets, ...dropoutMasks(c, [5], new Rng(4)), ...m.weights },
      {
        mode: "fast",
        seed: 1,
        wrt: ["h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight", "wte.weight"],
      },
    );
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it("refuses dropout outside [0, 1) and with KV-cache decoding", () => {
    expect(() => resolveModelConfig({ ...small, dropout: 1 })).toThrow(
      "dropout must be a number in [0, 1) (1 would drop every activation), got 1",
    );
    const cfg = GPT.init(resolveModelConfig(small)).formulaConfig;
    expect(() => formulaGraph("gpt", { ...cfg, dropout: 0.1, kv_cache: true })).toThrow(
      "formula gpt: dropout is a training-time switch; it does not combine with kv_cache decoding",
    );
  });
});
