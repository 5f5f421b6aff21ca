/** `specformer tokenize TEXT [--json]` */
import { tokenizeCommand } from "../reference/tokenizer/cli.js";
import { parse, UsageError, type Io } from "./io.js";

export const TOKENIZE_USAGE = `usage: specformer tokenize TEXT [--json]

  The GPT-2 byte-level BPE tokens of TEXT: index, id and piece (whitespace made visible).`;

export async function tokenizeCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: "boolean" } }, TOKENIZE_USAGE);
  if (positionals.length !== 1) throw new UsageError(`tokenize takes exactly one TEXT argument (quote it)\n\n${TOKENIZE_USAGE}`);
  try {
    io.out(tokenizeCommand(positionals[0]!, { json: values.json === true }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return 0;
}
