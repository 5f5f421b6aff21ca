/**
 * `specformer generate` as a library function for the CLI: it parses nothing and prints nothing.
 *
 *   specformer generate --prompt TEXT [--preset NAME | --weights FILE] [--seed N] [--max-tokens N]
 *                       [--temperature T] [--top-k K] [--top-p P] [--json]
 *
 * The model is a preset with seeded initial weights (untrained: its text is noise, the point is
 * the pipeline) or a checkpoint in the Hugging Face GPT-2 layout (config.json beside the
 * .safetensors file). Tokenizers:
 *
 * - a checkpoint: `specformer-tokenizer.json` beside the weights (what {@link saveCheckpoint}
 *   writes for a trained research model), else GPT-2's tokenizer when V = 50,257, else an error;
 * - a preset: GPT-2's tokenizer when V = 50,257 (gpt2-small); else the byte-level BPE with V ids
 *   trained on the bundled corpus; a preset whose V is below 256 (tiny, seed-post-ln, llama-tiny
 *   have 96) cannot hold the 256 byte ids, so it is built with V = 256 and plain byte ids.
 *
 * Every tokenizer here is byte-level, so `decode(encode(prompt)) === prompt` for any text. Text
 * mode yields the prompt and then each piece of new text as soon as its token is chosen (bytes of
 * a character split across tokens wait for the rest); `--json` yields one JSON line at the end.
 * The same options and seed give the same output.
 */
import { SCHEMA_VERSION } from "../autodiff/wire.js";
import { findPreset, unknownPresetMessage } from "../spec/presets.js";
import { Tokenizer } from "./tokenizer/index.js";
import { CheckpointError, loadCheckpoint, TOKENIZER_FILE } from "./checkpoint.js";
import { corpusTokenizer } from "./corpus.js";
import { decodeSteps, GenerateError, MIN_TEMPERATURE, type GenerateResult } from "./generate.js";
import { GPT, ModelError, resolveModelConfig } from "./model.js";

/** Bad input for a command: the CLI prints the message and exits with {@link exitCode}. */
export class CommandError extends Error {
  override name = "CommandError";
  readonly exitCode = 2;
}

export interface GenerateCommandOptions {
  readonly prompt: string;
  /** A preset of spec/presets.ts (default `tiny` when no weights are given). */
  readonly preset?: string;
  /** Hyperparameters overriding the preset's (`--config tiny,L=1`). */
  readonly config?: Readonly<Record<string, number | string | boolean>>;
  /** A checkpoint: the .safetensors file (config.json beside it) or its folder. */
  readonly weights?: string;
  /** Seeds the initial weights of a preset and the sampling (default 0). */
  readonly seed?: number;
  /** New tokens at most (default 32). */
  readonly maxTokens?: number;
  /** 0 is greedy (default 1). */
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly json?: boolean;
  /** Load a checkpoint whose parameters hold NaN or ±Inf (refused by default). */
  readonly allowNonFinite?: boolean;
}

/** What a generate command will run, after its options are checked. */
export interface PreparedGeneration {
  readonly model: GPT;
  /** `preset tiny` or the checkpoint path. */
  readonly modelSource: string;
  readonly tokenizer: Tokenizer;
  readonly tokenizerName: string;
  readonly promptIds: number[];
  /** Ids that end generation (GPT-2's `<|endoftext|>`). */
  readonly stop: number[];
  readonly seed: number;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topK?: number;
  readonly topP?: number;
}

const fail = (msg: string): never => {
  throw new CommandError(msg);
};

const GPT2_V = 50257;

/** The tokenizer of a preset of vocabulary V, and the V the model is built with. */
export function presetTokenizer(V: number): { tokenizer: Tokenizer; name: string; V: number } {
  if (V === GPT2_V) return { tokenizer: Tokenizer.gpt2(), name: "gpt2", V };
  if (V < 256)
    return {
      tokenizer: corpusTokenizer(256),
      name: `bytes (256 ids; the preset's V = ${V} cannot hold every byte)`,
      V: 256,
    };
  return {
    tokenizer: corpusTokenizer(V),
    name: `corpus BPE (${V} ids, trained on reference/data/corpus.txt)`,
    V,
  };
}

/**
 * Check the options and build the model, tokenizer and prompt ids.
 * @throws CommandError (exit code 2) naming the bad option or file.
 */
export function prepareGenerate(opts: GenerateCommandOptions): PreparedGeneration {
  if (typeof opts.prompt !== "string") fail("--prompt TEXT is required");
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    fail(`--seed must be an integer in 0 … 4294967295, got ${opts.seed}`);
  const maxTokens = opts.maxTokens ?? 32;
  if (!Number.isInteger(maxTokens) || maxTokens < 0)
    fail(`--max-tokens must be a non-negative integer, got ${opts.maxTokens}`);
  const temperature = opts.temperature ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0)
    fail(`--temperature must be a number ≥ 0 (0 is greedy), got ${opts.temperature}`);
  if (temperature > 0 && temperature < MIN_TEMPERATURE)
    fail(
      `--temperature ${temperature} is below the smallest normal number ` +
        `${MIN_TEMPERATURE} (2^-1022), where every probability becomes NaN; use ` +
        `0 for greedy decoding`,
    );
  if (opts.topK !== undefined && (!Number.isInteger(opts.topK) || opts.topK < 1))
    fail(`--top-k must be a positive integer, got ${opts.topK}`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1))
    fail(`--top-p must be in (0, 1], got ${opts.topP}`);
  if (opts.preset !== undefined && opts.weights !== undefined)
    fail("give --preset or --weights, not both");

  let model: GPT;
  let modelSource: string;
  let tokenizer: Tokenizer;
  let tokenizerName: string;
  if (opts.weights !== undefined) {
    try {
      const ck = loadCheckpoint(opts.weights, { allowNonFinite: opts.allowNonFinite === true });
      model = ck.model;
      if (ck.tokenizer !== undefined) {
        tokenizer = ck.tokenizer;
        tokenizerName = `${TOKENIZER_FILE} beside the weights`;
      } else if (model.config.V === GPT2_V) {
        tokenizer = Tokenizer.gpt2();
        tokenizerName = "gpt2";
      } else {
        return fail(
          `${opts.weights}: no tokenizer for V = ${model.config.V}: put ` +
            `${TOKENIZER_FILE} beside the weights (saveCheckpoint writes it), or use ` +
            `GPT-2's vocabulary (V = ${GPT2_V})`,
        );
      }
    } catch (e) {
      if (e instanceof CheckpointError || e instanceof ModelError) fail(e.message);
      throw e;
    }
    if (tokenizer.vocabSize !== model.config.V)
      fail(
        `${opts.weights}: the tokenizer has ${tokenizer.vocabSize} ids but the model's V = ${model.config.V}`,
      );
    modelSource = opts.weights;
  } else {
    const name = opts.preset ?? "tiny";
    const preset = findPreset(name);
    if (preset === undefined) return fail(unknownPresetMessage(name));
    const asked = { ...preset, ...(opts.config ?? {}) };
    const V = asked["V"];
    if (typeof V !== "number" || !Number.isInteger(V) || V < 1)
      return fail(`V must be a positive integer, got ${JSON.stringify(V)}`);
    const t = presetTokenizer(V);
    tokenizer = t.tokenizer;
    tokenizerName = t.name;
    try {
      model = GPT.init(resolveModelConfig({ preset: name, ...(opts.config ?? {}), V: t.V }), {
        seed,
      });
    } catch (e) {
      if (e instanceof ModelError) return fail(e.message);
      throw e;
    }
    const changed = Object.entries(opts.config ?? {})
      .filter(([k]) => k !== "V")
      .map(([k, v]) => `${k} = ${String(v)}`);
    if (t.V !== preset["V"]) changed.push(`V = ${t.V}`);
    modelSource = `preset ${name}${changed.length > 0 ? ` with ${changed.join(", ")}` : ""}`;
  }
  const eot = tokenizer.specialTokens.get("<|endoftext|>");
  const stop = eot === undefined ? [] : [eot];
  let promptIds: number[];
  try {
    promptIds = tokenizer.encodeOrdinary(opts.prompt);
  } catch (e) {
    return fail(`the prompt cannot be tokenized with ${tokenizerName}: ${(e as Error).message}`);
  }
  if (promptIds.length === 0) {
    // GPT-2 starts documents after <|endoftext|>; other tokenizers have no such token
    if (eot === undefined) fail("the prompt is empty; give at least one character");
    promptIds = [eot!];
  }
  if (model.config.positions === "learned" && promptIds.length > model.config.n_ctx) {
    fail(
      `the prompt is ${promptIds.length} tokens long but the model's context holds n_ctx = ${model.config.n_ctx}`,
    );
  }
  return {
    model,
    modelSource,
    tokenizer,
    tokenizerName,
    promptIds,
    stop,
    seed,
    maxTokens,
    temperature,
    ...(opts.topK !== undefined ? { topK: opts.topK } : {}),
    ...(opts.topP !== undefined ? { topP: opts.topP } : {}),
  };
}

/**
 * Run `specformer generate`: text pieces as they are produced (text mode: the prompt, the new
 * text, a final newline), or one JSON line (`--json`).
 * @throws CommandError (exit code 2) for bad options, before the first piece.
 */
export async function* generateCommand(opts: GenerateCommandOptions): AsyncGenerator<string, void> {
  const p = prepareGenerate(opts);
  const json = opts.json === true;
  const decoder = new TextDecoder("utf-8");
  if (!json) yield opts.prompt === "" ? "" : p.tokenizer.decode(p.promptIds);
  const ids: number[] = [];
  let completion = "";
  let stopped: GenerateResult["stopped"];
  const steps = decodeSteps(p.model.formulaConfig, p.model.weights, p.promptIds, {
    maxNewTokens: p.maxTokens,
    stop: p.stop,
    temperature: p.temperature,
    seed: p.seed,
    dtype: p.model.config.dtype,
    ...(p.topK !== undefined ? { topK: p.topK } : {}),
    ...(p.topP !== undefined ? { topP: p.topP } : {}),
  });
  try {
    for (;;) {
      const r = steps.next();
      if (r.done === true) {
        stopped = r.value;
        break;
      }
      ids.push(r.value.token);
      // stream mode keeps the bytes of an unfinished UTF-8 sequence until its last token comes
      const piece = decoder.decode(p.tokenizer.decodeBytes([r.value.token]), { stream: true });
      completion += piece;
      if (!json && piece !== "") yield piece;
      await new Promise((resolve) => setImmediate(resolve)); // let the caller print
    }
  } catch (e) {
    if (e instanceof GenerateError) fail(e.message);
    throw e;
  }
  const tail = decoder.decode();
  completion += tail;
  if (!json) {
    yield `${tail}\n`;
    return;
  }
  const promptText = opts.prompt === "" ? "" : p.tokenizer.decode(p.promptIds);
  yield JSON.stringify({
    schema_version: SCHEMA_VERSION,
    prompt: promptText,
    completion,
    text: promptText + completion,
    prompt_ids: p.promptIds,
    ids,
    stopped,
    model: p.modelSource,
    config: p.model.config,
    tokenizer: p.tokenizerName,
    seed: p.seed,
    sampling: {
      max_tokens: p.maxTokens,
      temperature: p.temperature,
      top_k: p.topK ?? null,
      top_p: p.topP ?? null,
    },
  }) + "\n";
}

/** {@link generateCommand} collected: the whole output and the exit code (2 with `error: …` for bad input). */
export async function runGenerateCommand(
  opts: GenerateCommandOptions,
): Promise<{ text: string; exitCode: 0 | 2 }> {
  let text = "";
  try {
    for await (const piece of generateCommand(opts)) text += piece;
    return { text, exitCode: 0 };
  } catch (e) {
    if (e instanceof CommandError)
      return {
        text:
          opts.json === true
            ? JSON.stringify({ schema_version: SCHEMA_VERSION, error: e.message }) + "\n"
            : `error: ${e.message}\n`,
        exitCode: 2,
      };
    throw e;
  }
}
