/**
 * A longer training run on the bundled corpus (not part of `npm test`):
 *
 *   npx tsx reference/train-corpus.ts [--preset tiny] [--vocab 512] [--steps 2000] [--batch 16]
 *       [--seq 32] [--lr 3e-3] [--warmup 100] [--clip 1] [--seed 0] [--out runs/corpus]
 *
 * Trains the preset's architecture (V set to the tokenizer's size) with Adam, a linear warmup and
 * a cosine decay to a tenth of the peak, prints the loss curve, and saves the model in the HF
 * GPT-2 layout with its tokenizer beside it, so that
 * `runGenerateCommand({ prompt, weights: "runs/corpus" })` (the CLI's `generate --weights`) uses it.
 */
import { parseArgs } from "node:util";
import { saveCheckpoint } from "./checkpoint.js";
import { corpusText, corpusTokenizer } from "./corpus.js";
import { resolveModelConfig } from "./model.js";
import { evalLoss, train } from "./train.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny" },
    vocab: { type: "string", default: "512" },
    steps: { type: "string", default: "2000" },
    batch: { type: "string", default: "16" },
    seq: { type: "string" },
    lr: { type: "string", default: "3e-3" },
    warmup: { type: "string", default: "100" },
    clip: { type: "string", default: "1" },
    seed: { type: "string", default: "0" },
    out: { type: "string", default: "runs/corpus" },
  },
});
const num = (k: keyof typeof values): number => {
  const v = Number(values[k]);
  if (!Number.isFinite(v)) throw new Error(`--${k} must be a number, got ${String(values[k])}`);
  return v;
};

const vocab = num("vocab");
const tokenizer = corpusTokenizer(vocab);
const ids = tokenizer.encode(corpusText());
const config = resolveModelConfig({ preset: values.preset!, V: tokenizer.vocabSize });
const steps = num("steps");
const peak = num("lr");
const warmup = num("warmup");
const seqLen = values.seq === undefined ? config.n_ctx : num("seq");
// linear warmup, then cosine from the peak to peak/10
const lr = (s: number): number =>
  s < warmup
    ? (peak * (s + 1)) / warmup
    : peak * (0.1 + 0.45 * (1 + Math.cos((Math.PI * (s - warmup)) / Math.max(1, steps - warmup))));
console.log(
  `corpus: ${ids.length} tokens (BPE of ${tokenizer.vocabSize} ids); model: ${JSON.stringify(config)}`,
);
let window = 0;
const r = train(config, ids, {
  steps,
  lr,
  batch: num("batch"),
  seqLen,
  clip: num("clip"),
  seed: num("seed"),
  onStep: (s) => {
    window += s.loss;
    if ((s.step + 1) % 50 === 0) {
      console.log(
        `step ${s.step + 1}: loss ${(window / 50).toFixed(3)}, lr ` +
          `${s.lr.toExponential(2)}, |g| ${s.gradNorm.toFixed(2)}, ` +
          `${s.ms.toFixed(0)} ms/step`,
      );
      window = 0;
    }
  },
});
console.log(
  `held-out-style loss over fixed windows: ` +
    `${evalLoss(r.model, ids, { batches: 16, batch: 32, seqLen }).toFixed(3)} ` +
    `(ln V = ${Math.log(config.V).toFixed(3)})`,
);
const saved = saveCheckpoint(values.out!, r.model, { tokenizer });
console.log(`saved ${saved.weights} and ${saved.config}`);
