/**
 * `specformer generate --prompt TEXT [--config NAME,k=v,... | --weights FILE] [--seed N]
 * [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--json] [--allow-non-finite]`
 */
import {
  CommandError,
  generateCommand,
  type GenerateCommandOptions,
} from "../reference/commands.js";
import { configFlag } from "./config.js";
import {
  aliasFlag,
  DEFAULT_SEED,
  intFlag,
  numFlag,
  parse,
  processIo,
  seedFlag,
  UsageError,
  type Io,
} from "./io.js";

const GENERATE_USAGE = `usage: specformer generate --prompt TEXT [--config NAME,k=v,... | --weights FILE] [--seed N]
                           [--max-tokens N]
                           [--temperature T] [--top-k K] [--top-p P] [--json] [--allow-non-finite]

  Autoregressive generation with the reference model (KV cache), streaming tokens as they come.
  --config NAME,k=v,...  a preset — tiny (default), seed-post-ln, llama-tiny, gpt2-small — with
                  seeded random weights, and/or hyperparameters overriding it (tiny,L=1 or L=1,H=4);
                  --preset NAME is another spelling of --config NAME
  --weights FILE  a checkpoint in the Hugging Face GPT-2 safetensors layout (config.json beside it)
  --seed N        seed of the weights and the sampling (default ${DEFAULT_SEED})
  --temperature T 0 is greedy (default 1), else a positive normal number; --top-k and --top-p restrict the sampled set
  --allow-non-finite  load weights holding NaN or ±Inf (refused by default, naming the tensor)
  The same seed gives the same text.`;

export async function generateCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      prompt: { type: "string" },
      config: { type: "string" },
      preset: { type: "string" },
      weights: { type: "string" },
      seed: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      json: { type: "boolean" },
      "allow-non-finite": { type: "boolean" },
    },
    GENERATE_USAGE,
  );
  if (positionals.length > 0)
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${GENERATE_USAGE}`);
  if (values.prompt === undefined)
    throw new UsageError(`--prompt is required\n\n${GENERATE_USAGE}`);
  const opts: Record<string, unknown> = {
    prompt: values.prompt,
    json: values.json === true,
    seed: seedFlag(values.seed),
    maxTokens: intFlag(values["max-tokens"], "--max-tokens", 32),
  };
  const config = configFlag(
    aliasFlag(values, "config", "preset"),
    values.preset !== undefined ? "--preset" : "--config",
  );
  if (values.preset !== undefined && Object.keys(config.overrides).length > 0)
    throw new UsageError(
      `--preset takes a preset name; give hyperparameters with --config ${values.preset}`,
    );
  if (
    values.weights !== undefined &&
    (config.preset !== undefined || Object.keys(config.overrides).length > 0)
  )
    throw new UsageError(
      `give --config or --weights, not both: a checkpoint brings its own configuration`,
    );
  if (config.preset !== undefined) opts["preset"] = config.preset;
  if (Object.keys(config.overrides).length > 0) opts["config"] = config.overrides;
  if (values.weights !== undefined) opts["weights"] = values.weights;
  if (values["allow-non-finite"] === true) opts["allowNonFinite"] = true;
  const t = numFlag(values.temperature, "--temperature");
  if (t !== undefined) opts["temperature"] = t;
  const k = values["top-k"] === undefined ? undefined : intFlag(values["top-k"], "--top-k", 0);
  if (k !== undefined) opts["topK"] = k;
  const p = numFlag(values["top-p"], "--top-p");
  if (p !== undefined) opts["topP"] = p;
  // streamed to the terminal token by token; another Io (a test, an embedding program) gets the whole text at the end
  let text = "";
  const write =
    io === processIo
      ? (s: string) => void process.stdout.write(s)
      : (s: string) => void (text += s);
  try {
    for await (const chunk of generateCommand(opts as unknown as GenerateCommandOptions))
      write(chunk);
  } catch (e) {
    if (e instanceof CommandError) throw new UsageError(e.message);
    throw e;
  }
  if (text !== "") io.out(text);
  return 0;
}
