/** Byte-level BPE tokenizer: GPT-2's vocabulary, training, and CLI rendering. */
export { Tokenizer } from "./bpe.js";
export type { BpeModel, BpeModelJSON, EncodeOptions } from "./bpe.js";
export { trainBpe } from "./train.js";
export type { TrainOptions } from "./train.js";
export type { TokenizeCommandOptions } from "./cli.js";
