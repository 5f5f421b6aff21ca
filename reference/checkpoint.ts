/**
 * Checkpoints in the Hugging Face GPT-2 layout: `model.safetensors` (tensors named as in
 * `GPT2Model` — `wte.weight`, `h.0.attn.c_attn.weight` stored (in, out), ... — optionally
 * prefixed `transformer.` as `GPT2LMHeadModel` saves them) with `config.json` beside it.
 *
 * Reading maps the HF config to a {@link GPTConfig}, drops the causal-mask buffers real
 * checkpoints carry (`h.{l}.attn.bias`, `h.{l}.attn.masked_bias`), and checks that every
 * parameter is present with its shape and that nothing else is. Writing produces the same
 * layout; variants GPT-2 does not have (RoPE, RMSNorm, SwiGLU, ...) are recorded in a
 * `specformer` section of config.json, and such a checkpoint says `"model_type": "specformer"`
 * so that Hugging Face tools do not mistake it for a GPT-2.
 */
import { existsSync, mkdirSync, statSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { FileAccessError, readRegularText } from "../io/files.js";
import { JsonFormatError, isJsonObject, parseStrictJson, type JsonValue } from "../io/json.js";
import {
  SafetensorsFormatError,
  readSafetensorsFile,
  writeSafetensorsFile,
} from "../io/safetensors.js";
import { Tensor, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import { Tokenizer } from "./tokenizer/index.js";
import { checkKnownPattern } from "./tokenizer/pretokenize.js";
import {
  GPT,
  MODEL_KEYS,
  ModelError,
  OFF_BY_DEFAULT,
  parameterShapes,
  resolveModelConfig,
  type GPTConfig,
} from "./model.js";

/** The error for every problem with a checkpoint: its weights, config.json or tokenizer file. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** HF `activation_function` values and the formula each one is. */
const HF_ACTIVATIONS: Readonly<Record<string, GPTConfig["activation"]>> = {
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu: "gelu",
  relu: "relu",
};
const ACTIVATION_TO_HF: Readonly<Record<string, string>> = {
  gelu_tanh: "gelu_new",
  gelu: "gelu",
  relu: "relu",
};

/** Fields of our configuration in config.json's `specformer` section: the model hyperparameters. */
const SPECFORMER_FIELDS = MODEL_KEYS;
/** Fields written only when they differ from their default (0 = off), so older config.json files stay as they were. */
const OPTIONAL_FIELDS = OFF_BY_DEFAULT;

/**
 * The file holding a trained model's tokenizer (the `specformer-bpe` JSON of reference/tokenizer),
 * beside the weights.
 */
export const TOKENIZER_FILE = "specformer-tokenizer.json";

/** Does the configuration have GPT-2's architecture (so HF's GPT2LMHeadModel computes the same function)? */
function isGpt2Architecture(c: GPTConfig): boolean {
  return (
    c.placement === "pre" &&
    c.norm === "layer_norm" &&
    c.positions === "learned" &&
    c.activation in ACTIVATION_TO_HF &&
    c.bias &&
    c.H_kv === c.H &&
    !c.parallel &&
    c.tied &&
    c.window === 0 &&
    c.softcap === 0
  );
}

/**
 * Our configuration from a parsed HF config.json. GPT-2 fields map as `vocab_size → V`,
 * `n_positions → n_ctx`, `n_embd → d_model`, `n_layer → L`, `n_head → H`, `n_inner → d_ff`
 * (null: 4·n_embd), `layer_norm_epsilon → eps`, `activation_function` (`gelu_new` → gelu_tanh,
 * `gelu` → gelu, `relu` → relu); a `specformer` section, when present, gives the variant switches
 * and must agree with those fields.
 * @throws CheckpointError naming the field.
 */
export function configFromHf(
  hf: Readonly<Record<string, JsonValue>>,
  source = "config.json",
  dtype: FloatDType = "f32",
): GPTConfig {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  const int = (k: string): number | undefined => {
    const v = hf[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
      fail(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const modelType = hf["model_type"];
  if (modelType !== undefined && modelType !== "gpt2" && modelType !== "specformer")
    fail(
      `model_type ${JSON.stringify(modelType)} is not a GPT-2 checkpoint ("gpt2", or "specformer" for our variants)`,
    );
  // GPT-2 options that change the function computed, which the gpt formula does not have
  if (hf["scale_attn_weights"] === false)
    fail(`scale_attn_weights = false (attention without 1/√d_k) is not supported`);
  if (hf["scale_attn_by_inverse_layer_idx"] === true)
    fail(
      `scale_attn_by_inverse_layer_idx = true (scores divided by layer index + 1) is not supported`,
    );
  if (hf["add_cross_attention"] === true)
    fail(`add_cross_attention = true (an encoder-decoder GPT-2) is not supported`);

  const sizes: Partial<Record<keyof GPTConfig, number>> = {};
  const map: [string, keyof GPTConfig][] = [
    ["vocab_size", "V"],
    ["n_positions", "n_ctx"],
    ["n_embd", "d_model"],
    ["n_layer", "L"],
    ["n_head", "H"],
  ];
  for (const [hk, k] of map) {
    const v = int(hk);
    if (v !== undefined) sizes[k] = v;
  }
  const inner = int("n_inner");
  const eps = hf["layer_norm_epsilon"];
  if (eps !== undefined && (typeof eps !== "number" || !(eps >= 0)))
    fail(`layer_norm_epsilon must be a non-negative number, got ${JSON.stringify(eps)}`);
  const tie = hf["tie_word_embeddings"];
  if (tie !== undefined && typeof tie !== "boolean")
    fail(`tie_word_embeddings must be true or false, got ${JSON.stringify(tie)}`);

  const sec = hf["specformer"];
  let fields: Record<string, unknown>;
  if (sec !== undefined) {
    if (!isJsonObject(sec)) fail(`the specformer section must be an object`);
    const s = sec as Record<string, JsonValue>;
    for (const k of Object.keys(s))
      if (!(SPECFORMER_FIELDS as readonly string[]).includes(k))
        fail(`specformer section: unknown field "${k}"`);
    fields = { ...s };
    // the GPT-2 fields, where given, must say the same
    for (const [k, v] of Object.entries({
      ...sizes,
      ...(inner !== undefined ? { d_ff: inner } : {}),
      ...(typeof eps === "number" ? { eps } : {}),
    })) {
      if (s[k] !== undefined && s[k] !== v)
        fail(
          `${k} is ${JSON.stringify(s[k])} in the specformer section but ${JSON.stringify(v)} in the GPT-2 fields`,
        );
    }
  } else {
    if (modelType === "specformer") fail(`model_type "specformer" needs the specformer section`);
    for (const k of ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"])
      if (hf[k] === undefined) fail(`missing ${k}`);
    const act = hf["activation_function"] ?? "gelu_new";
    const a = typeof act === "string" ? HF_ACTIVATIONS[act] : undefined;
    if (a === undefined)
      fail(
        `activation_function ${JSON.stringify(act)} is not supported; ` +
          `supported: ${Object.keys(HF_ACTIVATIONS).join(", ")}`,
      );
    fields = {
      ...sizes,
      d_ff: inner ?? 4 * sizes.d_model!,
      eps: typeof eps === "number" ? eps : 1e-5,
      norm: "layer_norm",
      placement: "pre",
      activation: a,
      positions: "learned",
      tied: tie ?? true,
      parallel: false,
      bias: true,
    };
  }
  try {
    return resolveModelConfig({ ...(fields as Partial<GPTConfig>), dtype });
  } catch (e) {
    if (e instanceof ModelError) return fail(e.message);
    throw e;
  }
}

/** HF config.json contents for a configuration (GPT-2 fields, plus the specformer section). */
export function configToHf(c: GPTConfig): Record<string, JsonValue> {
  const gpt2 = isGpt2Architecture(c);
  const section: Record<string, JsonValue> = {};
  for (const k of SPECFORMER_FIELDS) if (!(OPTIONAL_FIELDS.has(k) && c[k] === 0)) section[k] = c[k];
  return {
    architectures: gpt2 ? ["GPT2LMHeadModel"] : [],
    model_type: gpt2 ? "gpt2" : "specformer",
    vocab_size: c.V,
    n_positions: c.n_ctx,
    n_ctx: c.n_ctx,
    n_embd: c.d_model,
    n_layer: c.L,
    n_head: c.H,
    n_inner: c.d_ff,
    layer_norm_epsilon: c.eps,
    activation_function: ACTIVATION_TO_HF[c.activation] ?? c.activation,
    tie_word_embeddings: c.tied,
    torch_dtype: c.dtype === "f32" ? "float32" : "float64",
    specformer: section,
  };
}

/** Where the weights, config and tokenizer of a checkpoint are, given a folder or a .safetensors file. */
export function checkpointPaths(path: string): {
  weights: string;
  config: string;
  tokenizer: string;
} {
  const isDir = existsSync(path) && statSync(path).isDirectory();
  const weights = isDir ? join(path, "model.safetensors") : path;
  const dir = dirname(weights);
  return { weights, config: join(dir, "config.json"), tokenizer: join(dir, TOKENIZER_FILE) };
}

const MASK_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;
const isMaskBuffer = (name: string): boolean =>
  MASK_BUFFER.test(name.startsWith("transformer.") ? name.slice("transformer.".length) : name);

/**
 * The tensors of a checkpoint file, mask buffers skipped: they may be stored as BOOL or U8, which
 * the reader does not convert, and they carry no parameters.
 * @throws CheckpointError naming the file, the tensor and the problem.
 */
function readCheckpointTensors(path: string): Map<string, Tensor> {
  try {
    return readSafetensorsFile(path, { skip: isMaskBuffer }).tensors;
  } catch (e) {
    if (e instanceof SafetensorsFormatError) throw new CheckpointError(e.message);
    throw e;
  }
}

/**
 * Our parameters from a checkpoint's tensors: `transformer.` stripped, mask buffers dropped,
 * a tied `lm_head.weight` accepted only when it equals `wte.weight`; then every parameter of
 * `config` present with its shape, float, and nothing else; every value finite unless
 * `allowNonFinite` (the error names the tensor and the index of the first NaN or ±Inf).
 * @throws CheckpointError naming the tensor.
 */
function weightsFromHf(
  tensors: ReadonlyMap<string, Tensor>,
  config: GPTConfig,
  source = "model.safetensors",
  opts: { allowNonFinite?: boolean } = {},
): NamedTensors {
  const out: NamedTensors = {};
  const stored = new Map<string, Tensor>();
  for (const [raw, t] of tensors) {
    const name = raw.startsWith("transformer.") ? raw.slice("transformer.".length) : raw;
    if (isMaskBuffer(raw)) continue;
    if (out[name] !== undefined)
      throw new CheckpointError(
        `${source}: tensor ${name} appears twice (with and without the "transformer." prefix)`,
      );
    // integers are refused before any conversion could turn them into floats unnoticed
    if (t.dtype === "i32")
      throw new CheckpointError(
        `${source}: tensor ${name} holds integers; parameters are float tensors`,
      );
    stored.set(name, t);
    out[name] = t.dtype === config.dtype ? t : t.to(config.dtype);
  }
  const shapes = parameterShapes(config);
  if (config.tied && out["lm_head.weight"] !== undefined) {
    const lm = out["lm_head.weight"];
    const wte = out["wte.weight"];
    if (wte !== undefined && (lm.size !== wte.size || lm.data.some((v, i) => v !== wte.data[i]))) {
      throw new CheckpointError(
        `${source}: lm_head.weight differs from wte.weight, but the configuration ties them (tie_word_embeddings)`,
      );
    }
    delete out["lm_head.weight"];
  }
  const missing = Object.keys(shapes).filter((k) => out[k] === undefined);
  if (missing.length > 0)
    throw new CheckpointError(
      `${source}: missing tensor${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`,
    );
  const extra = Object.keys(out).filter((k) => shapes[k] === undefined);
  if (extra.length > 0)
    throw new CheckpointError(
      `${source}: unexpected tensor${extra.length > 1 ? "s" : ""} ` +
        `${extra.join(", ")} (not a parameter of the configuration in config.json)`,
    );
  for (const [k, s] of Object.entries(shapes)) {
    const t = out[k]!;
    if (t.dtype === "i32")
      throw new CheckpointError(
        `${source}: tensor ${k} holds integers; parameters are float tensors`,
      );
    if (t.shape.length !== s.length || t.shape.some((d, i) => d !== s[i])) {
      throw new CheckpointError(
        `${source}: tensor ${k} has shape [${t.shape.join(", ")}] but the configuration needs [${s.join(", ")}]`,
      );
    }
  }
  if (opts.allowNonFinite !== true)
    for (const k of Object.keys(shapes))
      checkFinite(out[k]!, stored.get(k)!, k, config.dtype, source);
  return out;
}

/**
 * Refuse a parameter holding NaN or ±Inf (stored so, or a finite f64 too large for f32): such a
 * model computes NaN logits and samples garbage without a word.
 */
function checkFinite(
  t: Tensor,
  stored: Tensor,
  name: string,
  dtype: FloatDType,
  source: string,
): void {
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    if (Number.isFinite(d[i]!)) continue;
    const at = `[${t.unravel(i).join(", ")}]`;
    const was = stored.data[i]!;
    const what = Number.isFinite(was) ? `${was}, which overflows ${dtype} to ${d[i]}` : String(was);
    throw new CheckpointError(
      `${source}: tensor ${name} holds ${what} at index ${at} (the first ` +
        `non-finite value); parameters must be finite — allow them explicitly ` +
        `(allowNonFinite, --allow-non-finite) to load it anyway`,
    );
  }
}

export interface LoadedCheckpoint {
  readonly model: GPT;
  /** config.json as read. */
  readonly hfConfig: Readonly<Record<string, JsonValue>>;
  /** The tokenizer saved beside the weights, if any. */
  readonly tokenizer?: Tokenizer;
  readonly paths: { readonly weights: string; readonly config: string };
}

/**
 * Load a checkpoint: a folder holding `model.safetensors` and `config.json`, or the path of the
 * .safetensors file with `config.json` beside it. The model computes in `dtype` (default: f64 when
 * every stored tensor is f64, else f32 — the precision the weights were trained in).
 * @throws CheckpointError naming the file and what is wrong.
 */
export function loadCheckpoint(
  path: string,
  opts: { dtype?: FloatDType; allowNonFinite?: boolean } = {},
): LoadedCheckpoint {
  if (!existsSync(path))
    throw new CheckpointError(
      `${path}: no such file or folder (a checkpoint is a folder holding ` +
        `model.safetensors and config.json, or the .safetensors file with ` +
        `config.json beside it)`,
    );
  const paths = checkpointPaths(path);
  if (!existsSync(paths.weights))
    throw new CheckpointError(
      `${paths.weights}: no such file (a checkpoint is model.safetensors with config.json beside it)`,
    );
  if (!existsSync(paths.config))
    throw new CheckpointError(
      `${paths.config}: no such file (the configuration must sit beside ${paths.weights})`,
    );
  let hf: JsonValue;
  try {
    hf = parseStrictJson(
      readRegularText(paths.config, { maxBytes: MAX_CONFIG_BYTES, what: "config.json" }),
      paths.config,
      "config",
    );
  } catch (e) {
    if (e instanceof JsonFormatError || e instanceof FileAccessError)
      throw new CheckpointError(e.message);
    throw e;
  }
  if (!isJsonObject(hf)) throw new CheckpointError(`${paths.config}: expected a JSON object`);
  const tensors = readCheckpointTensors(paths.weights);
  const stored = [...tensors.values()];
  const dtype =
    opts.dtype ?? (stored.length > 0 && stored.every((t) => t.dtype === "f64") ? "f64" : "f32");
  const config = configFromHf(hf, paths.config, dtype);
  const weights = weightsFromHf(tensors, config, paths.weights, {
    allowNonFinite: opts.allowNonFinite === true,
  });
  let tokenizer: Tokenizer | undefined;
  if (existsSync(paths.tokenizer)) {
    try {
      // fromJSON accepts only known pre-tokenization patterns: a checkpoint brings no regex of its own
      tokenizer = Tokenizer.fromJSON(
        readRegularText(paths.tokenizer, { maxBytes: MAX_TOKENIZER_BYTES, what: "tokenizer" }),
      );
    } catch (e) {
      if (e instanceof FileAccessError) throw new CheckpointError(e.message);
      throw new CheckpointError(`${paths.tokenizer}: ${(e as Error).message}`);
    }
    if (tokenizer.vocabSize > config.V)
      throw new CheckpointError(
        `${paths.tokenizer}: the tokenizer has ${tokenizer.vocabSize} ids but ` +
          `the model's vocabulary is V = ${config.V}`,
      );
  }
  try {
    return {
      model: new GPT(config, weights),
      hfConfig: hf,
      ...(tokenizer !== undefined ? { tokenizer } : {}),
      paths,
    };
  } catch (e) {
    if (e instanceof ModelError) throw new CheckpointError(`${paths.weights}: ${e.message}`);
    throw e;
  }
}

/** Largest config.json read (GPT-2's is under 1 KiB). */
const MAX_CONFIG_BYTES = 1 << 20;
/** Largest tokenizer file read (GPT-2's 50,000 merges take about 0.7 MB as specformer-bpe JSON). */
const MAX_TOKENIZER_BYTES = 64 << 20;

/**
 * Save a model in the HF layout: `model.safetensors` at `path` (or inside `path` when it is a
 * folder or has no .safetensors extension), `config.json` beside it, and the tokenizer (when
 * given) as {@link TOKENIZER_FILE}. Tensors are stored in the model's dtype unless `dtype` says
 * otherwise; a tied model stores no `lm_head.weight` (as HF does).
 */
export function saveCheckpoint(
  path: string,
  model: GPT,
  opts: { dtype?: FloatDType; tokenizer?: Tokenizer } = {},
): { weights: string; config: string } {
  if (opts.tokenizer !== undefined && opts.tokenizer.vocabSize > model.config.V) {
    throw new CheckpointError(
      `saveCheckpoint: the tokenizer has ${opts.tokenizer.vocabSize} ids but ` +
        `the model's vocabulary is V = ${model.config.V}`,
    );
  }
  if (opts.tokenizer !== undefined) {
    // what loadCheckpoint would refuse is not written
    try {
      checkKnownPattern(opts.tokenizer.pattern, "saveCheckpoint");
    } catch (e) {
      throw new CheckpointError((e as Error).message);
    }
  }
  const weightsPath = path.endsWith(".safetensors") ? path : join(path, "model.safetensors");
  const dir = dirname(weightsPath);
  mkdirSync(dir, { recursive: true });
  const dtype = opts.dtype ?? model.config.dtype;
  const tensors: NamedTensors = {};
  for (const [k, t] of Object.entries(model.weights))
    tensors[k] = t.dtype === dtype ? t : t.to(dtype);
  writeSafetensorsFile(weightsPath, tensors, { format: "pt" });
  const configPath = join(dir, "config.json");
  writeAtomically(
    configPath,
    JSON.stringify(configToHf({ ...model.config, dtype }), null, 2) + "\n",
  );
  if (opts.tokenizer !== undefined)
    writeAtomically(join(dir, TOKENIZER_FILE), JSON.stringify(opts.tokenizer.toJSON()) + "\n");
  return { weights: weightsPath, config: configPath };
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
