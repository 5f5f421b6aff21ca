/** `specformer generate --prompt TEXT [--preset NAME | --weights FILE] [--seed N] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--json] [--allow-non-finite]` */
import { CommandError, generateCommand, type GenerateCommandOptions } from "../reference/commands.js";
import { intFlag, numFlag, parse, UsageError, type Io } from "./io.js";

export const GENERATE_USAGE = `usage: specformer generate --prompt TEXT [--preset NAME | --weights FILE] [--seed N] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--json] [--allow-non-finite]

  Autoregressive generation with the reference model (KV cache), streaming tokens as they come.
  --preset NAME   tiny (default), seed-post-ln, llama-tiny, gpt2-small — seeded random weights
  --weights FILE  a checkpoint in the Hugging Face GPT-2 safetensors layout (config.json beside it)
  --temperature T 0 is greedy (default 1), else a positive normal number; --top-k and --top-p restrict the sampled set
  --allow-non-finite  load weights holding NaN or ±Inf (refused by default, naming the tensor)
  The same seed gives the same text.`;

export async function generateCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { prompt: { type: "string" }, preset: { type: "string" }, weights: { type: "string" }, seed: { type: "string" }, "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" }, "top-p": { type: "string" }, json: { type: "boolean" }, "allow-non-finite": { type: "boolean" } },
    GENERATE_USAGE,
  );
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${GENERATE_USAGE}`);
  if (values.prompt === undefined) throw new UsageError(`--prompt is required\n\n${GENERATE_USAGE}`);
  const opts: Record<string, unknown> = { prompt: values.prompt, json: values.json === true, seed: intFlag(values.seed, "--seed", 0), maxTokens: intFlag(values["max-tokens"], "--max-tokens", 32) };
  if (values.preset !== undefined) opts["preset"] = values.preset;
  if (values.weights !== undefined) opts["weights"] = values.weights;
  if (values["allow-non-finite"] === true) opts["allowNonFinite"] = true;
  const t = numFlag(values.temperature, "--temperature");
  if (t !== undefined) opts["temperature"] = t;
  const k = values["top-k"] === undefined ? undefined : intFlag(values["top-k"], "--top-k", 0);
  if (k !== undefined) opts["topK"] = k;
  const p = numFlag(values["top-p"], "--top-p");
  if (p !== undefined) opts["topP"] = p;
  try {
    for await (const chunk of generateCommand(opts as unknown as GenerateCommandOptions)) process.stdout.write(chunk);
  } catch (e) {
    if (e instanceof CommandError) throw new UsageError(e.message);
    throw e;
  }
  void io;
  return 0;
}
