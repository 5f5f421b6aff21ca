/** `specformer golden list|show CASE` and `specformer compare EXPECTED ACTUAL [--rtol R --atol A] [--json]` */
import { packageFile } from "../autodiff/assets.js";
import { goldenList, goldenShow, compareFiles } from "../golden/commands.js";
import { numFlag, parse, UsageError, type Io } from "./io.js";

/** The bundled golden folder (next to this package's golden/ code). */
const BUNDLED_GOLDEN = packageFile("golden");

const GOLDEN_USAGE = `usage: specformer golden list [--dir DIR] [--json]
       specformer golden show CASE [--dir DIR] [--json]

  The golden cases made by PyTorch (default: the bundled set).`;

const COMPARE_USAGE = `usage: specformer compare EXPECTED.safetensors ACTUAL.safetensors [--rtol R --atol A] [--json]

  Compares every tensor: dtype and shape, then values (|a − e| ≤ atol + rtol·|e|), with max abs/rel
  error, ULP distance, the worst element and the first mismatches. Exit 0 pass, 1 mismatch,
  2 unreadable input.`;

export async function goldenCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { dir: { type: "string" }, json: { type: "boolean" } },
    GOLDEN_USAGE,
  );
  const dir = values.dir ?? BUNDLED_GOLDEN;
  const [sub, ...rest] = positionals;
  try {
    if (sub === "list" && rest.length === 0)
      io.out(goldenList(dir, { json: values.json === true }));
    else if (sub === "show" && rest.length === 1)
      io.out(goldenShow(rest[0]!, dir, { json: values.json === true }));
    else throw new UsageError(GOLDEN_USAGE);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message);
  }
  return 0;
}

export async function compareCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { rtol: { type: "string" }, atol: { type: "string" }, json: { type: "boolean" } },
    COMPARE_USAGE,
  );
  if (positionals.length !== 2) throw new UsageError(COMPARE_USAGE);
  const opts: { rtol?: number; atol?: number; json: boolean } = { json: values.json === true };
  const rtol = numFlag(values.rtol, "--rtol");
  const atol = numFlag(values.atol, "--atol");
  if (rtol !== undefined) opts.rtol = rtol;
  if (atol !== undefined) opts.atol = atol;
  const r = compareFiles(positionals[0]!, positionals[1]!, opts);
  // unreadable input: on stderr, prefixed with the command like every other command's errors
  if (r.exitCode === 2 && !opts.json)
    io.err(`specformer compare: ${r.text.replace(/^error: /, "")}`);
  else (r.exitCode === 2 ? io.err : io.out)(r.text);
  return r.exitCode;
}
