/**
 * Timing of the tokenizer (not part of `npm test`): GPT-2 load time, encode throughput on the
 * bundled corpus with a cold and a warm pre-token cache, pathological long pre-tokens, and
 * training. Run: `npx tsx reference/tokenizer/measure.ts`.
 */
import { readFileSync } from "node:fs";
import { Tokenizer } from "./bpe.js";
import { loadGpt2Model } from "./gpt2.js";
import { trainBpe } from "./train.js";

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const out = f();
  return [out, performance.now() - t0];
}

const corpus = readFileSync(new URL("../data/corpus.txt", import.meta.url), "utf8");
const english100k = corpus.slice(0, 100_000);
const kB = (s: string): number => new TextEncoder().encode(s).length / 1000;

const [model, loadMs] = time(() => loadGpt2Model());
const [gpt2, buildMs] = time(() => new Tokenizer(model));
console.log(
  `GPT-2 load: ${(loadMs + buildMs).toFixed(0)} ms (read + derive merges ` +
    `${loadMs.toFixed(0)} ms, build ${buildMs.toFixed(0)} ms)`,
);

const [ids100k, cold100k] = time(() => gpt2.encode(english100k));
console.log(
  `encode 100 kB English, cold cache: ${cold100k.toFixed(1)} ms ` +
    `(${ids100k.length} tokens, ${(kB(english100k) / cold100k).toFixed(2)} MB/s)`,
);
const runs = 10;
const [, warm] = time(() => {
  for (let i = 0; i < runs; i++) gpt2.encode(corpus);
});
console.log(
  `encode corpus (${kB(corpus).toFixed(0)} kB), warm cache: ` +
    `${(warm / runs).toFixed(1)} ms ` +
    `(${((kB(corpus) * runs) / warm).toFixed(1)} MB/s)`,
);
const [, decodeMs] = time(() => gpt2.decode(ids100k));
console.log(`decode ${ids100k.length} tokens: ${decodeMs.toFixed(1)} ms`);

for (const [name, text] of [
  ["100,000 × 'a' (one pre-token)", "a".repeat(100_000)],
  ["100,000 spaces then x", " ".repeat(100_000) + "x"],
] as const) {
  const [ids, ms] = time(() => Tokenizer.fromJSON(gpt2.toJSON()).encode(text));
  console.log(`encode ${name}: ${ms.toFixed(0)} ms incl. a fresh tokenizer (${ids.length} tokens)`);
}

for (const size of [512, 1024, 4096]) {
  const [t, ms] = time(() => trainBpe(corpus, size));
  console.log(
    `trainBpe(corpus, ${size}): ${ms.toFixed(0)} ms, corpus → ${t.encode(corpus).length} tokens`,
  );
}
