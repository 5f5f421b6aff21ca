/**
 * The bundled corpus (reference/data/corpus.txt, English prose) and the byte-level BPE
 * tokenizers trained on it, which the presets and the research models use: GPT-2's tokenizer
 * needs V = 50,257, far more than a small model has.
 */
import { readFileSync } from "node:fs";
import { packageFile } from "../autodiff/assets.js";
import { Tokenizer, trainBpe } from "./tokenizer/index.js";

const CORPUS_PATH = packageFile("reference", "data", "corpus.txt");

let text: string | undefined;
/** The corpus text (read once). */
export function corpusText(): string {
  text ??= readFileSync(CORPUS_PATH, "utf8");
  return text;
}

const tokenizers = new Map<number, Tokenizer>();

/**
 * A byte-level BPE with `vocabSize` ids (256 bytes + merges) trained on the corpus with GPT-2's
 * pre-tokenizer; deterministic (ties go to the smaller pair), cached per size. `vocabSize` 256
 * gives plain byte ids. Any text round-trips: `decode(encode(s)) === s`.
 */
export function corpusTokenizer(vocabSize: number): Tokenizer {
  let t = tokenizers.get(vocabSize);
  if (t === undefined) {
    t = trainBpe(corpusText(), vocabSize);
    tokenizers.set(vocabSize, t);
  }
  return t;
}
