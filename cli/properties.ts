/**
 * `specformer properties [--impl COMMAND] [--formulas a,b] [--law L] [--runs N] [--seed S] [--path
 * P] [--dtype f64|f32] [--planted BUG] [--json] [--list]`
 */
import type { Implementation } from "../autodiff/implementation.js";
import { ImplementationError } from "../autodiff/implementation.js";
import { DEFAULT_SEED, formulasFlag, intFlag, parse, seedFlag, UsageError, type Io } from "./io.js";

const PROPERTIES_USAGE =
  `usage: specformer properties [--impl COMMAND] [--formulas a,b] [--law ` +
  `L] [--runs N] [--seed S] [--path ` +
  `P]
                             [--dtype f64|f32] [--planted BUG] [--json] [--list]

  Runs the invariant laws (causality, prefix consistency, KV cache = recomputation, softmax
  normalisation, masks, norms, equivariance, RoPE, ALiBi, GQA, …) as fast-check properties against
  an implementation: the built-in reference by default, or a program speaking the JSON-lines
  protocol (docs/PROTOCOL.md) with --impl. A failure prints its shrunk counterexample and the exact
  command that replays it.

  --impl COMMAND     a program speaking the process protocol, started by the shell (--impl=COMMAND too)
  --formulas a,b     only cases of these formulas (--formula F is another spelling)
  --law L            only this law
  --runs N           generated cases per law (default 100)
  --seed S           fast-check's seed (default ${DEFAULT_SEED})
  --path P           with --law and --seed: replay the counterexample at this path
  --dtype f64|f32    the dtype of the cases (default f64)
  --planted BUG      run against a known-broken kernel (docs/PLANTED-BUGS.md)
  --json             the report as JSON (docs/schema/properties.schema.json)
  --list             list the laws`;

export async function propertiesCli(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      impl: { type: "string" },
      formulas: { type: "string" },
      formula: { type: "string" },
      law: { type: "string" },
      runs: { type: "string" },
      seed: { type: "string" },
      path: { type: "string" },
      dtype: { type: "string" },
      planted: { type: "string" },
      json: { type: "boolean" },
      list: { type: "boolean" },
    },
    PROPERTIES_USAGE,
  );
  if (positionals.length > 0)
    throw new UsageError(
      `unexpected argument${positionals.length > 1 ? "s" : ""} ` +
        `${positionals.map((p) => JSON.stringify(p)).join(", ")} (formulas are ` +
        `chosen with --formulas a,b)\n\n${PROPERTIES_USAGE}`,
    );
  const run = await import("../properties/run.js");
  if (values.list === true) {
    io.out(run.formatLawList());
    return 0;
  }
  const formulas = formulasFlag([
    { flag: "--formulas", value: values.formulas },
    { flag: "--formula", value: values.formula },
  ]);
  const runs = values.runs === undefined ? undefined : intFlag(values.runs, "--runs", 0);
  if (runs !== undefined && (runs < 1 || !/^\d+$/.test(String(values.runs).trim())))
    throw new UsageError(`--runs must be a positive integer, got "${values.runs}"`);
  const dtype = values.dtype;
  if (dtype !== undefined && dtype !== "f64" && dtype !== "f32")
    throw new UsageError(`--dtype must be f64 or f32, got "${dtype}"`);
  const seed = seedFlag(values.seed);
  const command = values.impl;
  if (command !== undefined && command.trim() === "")
    throw new UsageError(
      `--impl needs a shell command, e.g. --impl "python3 examples/numpy/impl.py"`,
    );
  if (values.path !== undefined && values.seed === undefined)
    throw new UsageError("--path replays a counterexample from its seed: give --seed too");

  let impl: Implementation;
  let implementationArgs: string | undefined;
  if (values.planted !== undefined) {
    if (command !== undefined)
      throw new UsageError(
        "--planted cannot be combined with --impl: it names the implementation itself",
      );
    const { PLANTED, plantedImplementation } = await import("../properties/planted.js");
    if (!PLANTED.some((p) => p.name === values.planted))
      throw new UsageError(
        `unknown planted bug "${values.planted}"; planted bugs: ${PLANTED.map((p) => p.name).join(", ")}`,
      );
    impl = plantedImplementation(values.planted);
    implementationArgs = `--planted ${values.planted}`;
  } else if (command !== undefined) {
    const { ProcessImplementation } = await import("../verify/process.js");
    try {
      impl = await ProcessImplementation.start(command, { timeoutMs: 60_000 });
    } catch (e) {
      if (e instanceof ImplementationError) {
        io.err(`specformer properties: the implementation could not be started: ${e.message}`);
        return 2;
      }
      throw e;
    }
    implementationArgs = `--impl ${JSON.stringify(command)}`;
  } else impl = (await import("../reference/implementation.js")).referenceImplementation();

  try {
    const report = await run.runLaws(impl, {
      ...(formulas !== undefined ? { formulas } : {}),
      ...(values.law !== undefined ? { law: values.law } : {}),
      ...(runs !== undefined ? { runs } : {}),
      ...(values.path !== undefined ? { path: values.path } : {}),
      ...(dtype !== undefined ? { dtype: dtype as "f64" | "f32" } : {}),
      ...(implementationArgs !== undefined ? { implementationArgs } : {}),
      seed,
    });
    io.out(values.json === true ? run.lawReportToJSON(report) : run.formatLawReport(report));
    return report.ok ? 0 : 1;
  } catch (e) {
    if (e instanceof Error && e.name === "LawUsageError") throw new UsageError(e.message);
    if (e instanceof ImplementationError) {
      io.err(`specformer properties: ${e.message}`);
      return 2;
    }
    throw e;
  } finally {
    await impl.close?.();
  }
}
