/** Byte-level BPE tokenizer: GPT-2's vocabulary, training, and CLI rendering. */
export { Tokenizer, GPT2_PATTERN } from "./bpe.js";
export type { BpeModel, BpeModelJSON, EncodeOptions } from "./bpe.js";
export { trainBpe } from "./train.js";
export type { TrainOptions } from "./train.js";
export { bytesToUnicode, unicodeToBytes, bytesToGpt2String, gpt2StringToBytes, bytesToDisplay } from "./bytes.js";
export { tokenizeCommand, visibleWhitespace } from "./cli.js";
export type { TokenizeCommandOptions } from "./cli.js";
