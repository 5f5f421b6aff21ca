/** `specformer tokenize [TEXT | --file FILE | -] [--json]` */
import { readFileSync } from "node:fs";
import { tokenizeCommand } from "../reference/tokenizer/cli.js";
import { parse, UsageError, type Io } from "./io.js";

const TOKENIZE_USAGE = `usage: specformer tokenize TEXT [--json]
       specformer tokenize --file FILE [--json]
       specformer tokenize - [--json]          (the text from standard input)
       specformer tokenize [--json] -- TEXT    (TEXT may start with "-")

  The GPT-2 byte-level BPE tokens of TEXT: index, id and piece (whitespace made visible).`;

export async function tokenizeCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { json: { type: "boolean" }, file: { type: "string" } },
    TOKENIZE_USAGE,
  );
  let text: string;
  if (values.file !== undefined) {
    if (positionals.length > 0)
      throw new UsageError(
        `give the text either with --file or as an argument, not both\n\n${TOKENIZE_USAGE}`,
      );
    try {
      text = readFileSync(String(values.file), "utf8");
    } catch (e) {
      throw new UsageError(
        `--file ${String(values.file)}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
  } else if (positionals.length === 1 && positionals[0] === "-" && !argv.includes("--")) {
    text = readFileSync(0, "utf8");
  } else if (positionals.length === 1) text = positionals[0]!;
  else
    throw new UsageError(
      `tokenize takes exactly one TEXT argument (quote it; "-" reads standard ` +
        `input, --file FILE a file)\n\n${TOKENIZE_USAGE}`,
    );
  try {
    io.out(tokenizeCommand(text, { json: values.json === true }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return 0;
}
