/** `specformer properties [--impl "COMMAND"] [--formula F] [--law L] [--runs N] [--seed S] [--path P] [--dtype f64|f32] [--planted BUG] [--json] [--list]` */
import { propertiesCommand } from "../properties/run.js";
import { ProcessImplementation } from "../verify/process.js";
import { ImplementationError } from "../autodiff/implementation.js";
import { UsageError, type Io } from "./io.js";

export const PROPERTIES_USAGE = `usage: specformer properties [--impl "COMMAND"] [--formula F] [--law L] [--runs N] [--seed S] [--path P] [--dtype f64|f32] [--planted BUG] [--json] [--list]

  Runs the invariant laws (causality, prefix consistency, KV cache = recomputation, softmax
  normalisation, masks, norms, equivariance, RoPE, ALiBi, GQA, …) as fast-check properties against
  an implementation: the built-in reference by default, or a program speaking the JSON-lines
  protocol (docs/PROTOCOL.md) with --impl. A failure prints its shrunk counterexample and the exact
  command that replays it. --list shows the laws; --planted BUG runs a known-broken kernel.`;

export async function propertiesCli(argv: readonly string[], io: Io): Promise<number> {
  if (argv.includes("--help")) throw new UsageError(`help\n\n${PROPERTIES_USAGE}`);
  const rest = [...argv];
  let command: string | undefined;
  const at = rest.indexOf("--impl");
  if (at >= 0) {
    command = rest[at + 1];
    if (command === undefined || command.startsWith("--")) throw new UsageError(`--impl needs a command\n\n${PROPERTIES_USAGE}`);
    rest.splice(at, 2);
  }
  let impl: ProcessImplementation | undefined;
  try {
    if (command !== undefined) impl = await ProcessImplementation.start(command, { timeoutMs: 60_000 });
    const r = await propertiesCommand(rest, impl ? { implementation: impl, implementationArgs: `--impl ${JSON.stringify(command)}` } : {});
    (r.exitCode === 2 ? io.err : io.out)(r.text);
    return r.exitCode;
  } catch (e) {
    if (e instanceof ImplementationError) {
      io.err(`specformer properties: ${e.message}`);
      return 2;
    }
    throw e;
  } finally {
    await impl?.close();
  }
}
