/**
 * `specformer verify`: check an implementation (default: the built-in reference) against the
 * PyTorch goldens, finite-difference gradients and the invariant laws; localise and explain
 * what fails. Exit codes: 0 every check passed, 1 a check failed, 2 the implementation could not
 * be driven, nothing could be checked, or the arguments are wrong.
 */
import "../spec/index.js";
import { getFormula } from "../spec/formula.js";
import type { Implementation } from "../autodiff/implementation.js";
import { ImplementationError } from "../autodiff/implementation.js";
import { GoldenFormatError } from "../golden/error.js";
import { referenceImplementation } from "../reference/implementation.js";
import { MAX_TIMER_MS, ProcessImplementation } from "../verify/process.js";
import type { ProcessOptions } from "../verify/process.js";
import { checkReportPaths, ReportPathError, writeFileAtomically } from "../verify/report-files.js";
import type { ReportTarget } from "../verify/report-files.js";
import { SCHEMA_VERSION } from "../autodiff/wire.js";
import { renderHtmlReport } from "../verify/html.js";
import { verifyJUnit } from "../verify/junit.js";
import {
  exitCodeOf,
  formatVerifyReport,
  progressLine,
  verifyReportToJSON,
  wantColour,
} from "../verify/report.js";
import { knownFormula, verify } from "../verify/run.js";
import type { Shard, VerifyOptions, VerifyReport } from "../verify/run.js";
import {
  DEFAULT_SEED,
  formulasFlag,
  intFlag,
  numFlag,
  parse,
  processIo,
  seedFlag,
  UsageError,
  type Io,
} from "./io.js";

const VERIFY_USAGE = `usage: specformer verify [--impl "COMMAND"] [--cases PATH...] [--formulas a,b] [--dtype f64|f32]
                         [--properties] [--runs N] [--seed S] [--law NAME [--path P]] [--timeout S]
                         [--shard K/N] [--strict] [--json] [--junit FILE] [--html FILE] [--json-file FILE] [--force]

  Runs every golden case of the formulas the implementation declares, in the dtypes it supports
  (outputs, and gradients where it has a backward pass), finite-difference checks of its backward
  pass, and with --properties the invariant laws. A failing composite (gpt, a block, mha,
  attention) is localised: the first diverging formula and tensor, local or inherited, with
  diagnosis hints. Without --impl it verifies the built-in reference, laws included.

  --impl "COMMAND"   a program speaking the process protocol (docs/PROTOCOL.md), started by the shell
  --cases PATH...    golden case files or folders (golden/FORMAT.md) instead of the bundled set
  --formulas a,b     only these formulas
  --dtype f64|f32    only cases of this dtype
  --properties       also run the invariant laws (default for the built-in reference)
  --runs N           fast-check runs per law (default 50)
  --seed S           seed of the laws and gradient checks (default ${DEFAULT_SEED})
  --law NAME         only this law (no golden cases); with --seed and --path, replay the shrunk
                     counterexample a report printed
  --timeout S        seconds to wait for one answer of the implementation (default 60, at most
                     2147483: Node's timer limit)
  --strict           any declined check fails the run (without it: more than half of them)
  --shard K/N        run only the K-th of N disjoint parts of the checks (golden cases, gradient
                     checks and laws dealt round-robin), for a CI matrix; merge the shards' JUnit
                     reports with "specformer junit-merge"
  --json             print the report as JSON
  --junit FILE       also write a JUnit XML report
  --html FILE        also write a self-contained HTML report (heatmaps of the failing tensors)
  --json-file FILE   also write the JSON report to FILE
  --force            replace report files that specformer did not write

  Report files are checked before the run (folder exists and is writable, not a folder, distinct,
  not a .safetensors file; an existing file only if it is an earlier specformer report, or with
  --force) and written atomically after it, once the report has been printed.

  Exit 0 every check passed, 1 a check failed or more than half were declined, 2 the
  implementation faulted (crash, hang, garbage), nothing was checked, a report file could not
  be written, or the arguments are wrong.`;

/** `--shard K/N`: the K-th (1-based) of N parts. */
function parseShard(v: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(count >= 1 && index >= 1 && index <= count))
    throw new UsageError(`--shard must be K/N with 1 ≤ K ≤ N (e.g. --shard 2/4), got "${v}"`);
  return { index, count };
}

/** Whether stderr is a terminal (progress is drawn there only then). */
function stderrIsTty(io: Io): boolean {
  return io === processIo && process.stderr.isTTY === true;
}

/**
 * `specformer verify ARGS`: start the implementation (or take the reference), run the checks,
 * print the report (and write the JUnit/HTML files asked for); returns the exit code.
 * @throws UsageError for bad arguments and unreadable golden files (the caller prints it, exit 2).
 */
export async function verifyCommand(
  argv: readonly string[],
  io: Io,
  processOverrides: Partial<ProcessOptions> = {},
): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      impl: { type: "string" },
      cases: { type: "string", multiple: true },
      formulas: { type: "string" },
      dtype: { type: "string" },
      properties: { type: "boolean" },
      runs: { type: "string" },
      seed: { type: "string" },
      law: { type: "string" },
      path: { type: "string" },
      timeout: { type: "string" },
      strict: { type: "boolean" },
      json: { type: "boolean" },
      junit: { type: "string" },
      html: { type: "string" },
      "json-file": { type: "string" },
      force: { type: "boolean" },
      shard: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    VERIFY_USAGE,
  );
  if (values.help === true) {
    io.out(VERIFY_USAGE);
    return 0;
  }
  // `--cases a b c`: the paths after --cases are positionals
  const casePaths: string[] = [...((values.cases as string[] | undefined) ?? [])];
  if (positionals.length > 0) {
    if (casePaths.length === 0)
      throw new UsageError(
        `unexpected argument${positionals.length > 1 ? "s" : ""} ` +
          `${positionals.map((p) => JSON.stringify(p)).join(", ")}\n\n${VERIFY_USAGE}`,
      );
    casePaths.push(...positionals);
  }
  const dtype = values.dtype as string | undefined;
  if (dtype !== undefined && dtype !== "f64" && dtype !== "f32")
    throw new UsageError(`--dtype must be f64 or f32, got "${dtype}"`);
  const formulas = formulasFlag([
    { flag: "--formulas", value: values.formulas as string | undefined },
  ]);
  if (formulas !== undefined) {
    // custom golden sets may name formulas outside the registry
    if (casePaths.length === 0) {
      for (const f of formulas) {
        if (knownFormula(f)) continue;
        try {
          getFormula(f);
        } catch (e) {
          throw new UsageError(`--formulas: ${(e as Error).message}`);
        }
      }
    }
  }
  const timeout = numFlag(values.timeout as string | undefined, "--timeout") ?? 60;
  if (!(timeout > 0))
    throw new UsageError(
      `--timeout must be a positive number of seconds, got "${String(values.timeout)}"`,
    );
  // Node fires a longer timer after 1 ms: refuse it rather than time out at once
  const maxTimeout = Math.floor(MAX_TIMER_MS / 1000);
  if (timeout > maxTimeout)
    throw new UsageError(
      `--timeout must be at most ${maxTimeout} seconds (Node's timer limit, ` +
        `2^31 − 1 ms), got "${String(values.timeout)}"`,
    );
  const runs = intFlag(values.runs as string | undefined, "--runs", 50);
  if (runs < 1)
    throw new UsageError(`--runs must be a positive integer, got "${String(values.runs)}"`);
  const seed = seedFlag(values.seed as string | undefined);
  const law = values.law as string | undefined;
  const lawPath = values.path as string | undefined;
  if (lawPath !== undefined && (law === undefined || values.seed === undefined))
    throw new UsageError(
      `--path replays one law's counterexample: give --law and --seed too (the report's replay command has all three)`,
    );
  if (lawPath !== undefined && !/^\d+(:\d+)*$/.test(lawPath))
    throw new UsageError(
      `--path must look like 12:0:3 (fast-check's counterexample path), got "${lawPath}"`,
    );
  const shard = values.shard === undefined ? undefined : parseShard(String(values.shard));
  const command = values.impl as string | undefined;
  if (command !== undefined && command.trim() === "")
    throw new UsageError(
      `--impl needs a shell command, e.g. --impl "python3 examples/numpy/impl.py"`,
    );

  const reports: Array<
    ReportTarget & {
      readonly render: (r: VerifyReport) => string | Promise<string>;
      readonly what: string;
    }
  > = [];
  if (values.junit !== undefined)
    reports.push({
      flag: "--junit",
      path: String(values.junit),
      what: "JUnit report",
      render: verifyJUnit,
    });
  if (values.html !== undefined)
    reports.push({
      flag: "--html",
      path: String(values.html),
      what: "HTML report",
      render: renderHtmlReport,
    });
  if (values["json-file"] !== undefined)
    reports.push({
      flag: "--json-file",
      path: String(values["json-file"]),
      what: "JSON report",
      render: verifyReportToJSON,
    });
  try {
    checkReportPaths(reports, { force: values.force === true });
  } catch (e) {
    if (e instanceof ReportPathError)
      throw new UsageError(`report files:\n  ${e.message.split("\n").join("\n  ")}`);
    throw e;
  }

  const start = async (): Promise<Implementation> =>
    ProcessImplementation.start(command!, {
      timeoutMs: timeout * 1000,
      startupTimeoutMs: Math.min(Math.max(timeout * 1000, 30_000), MAX_TIMER_MS),
      ...processOverrides,
    });
  let impl: Implementation;
  if (command === undefined) impl = referenceImplementation();
  else {
    try {
      impl = await start();
    } catch (e) {
      if (!(e instanceof ImplementationError)) throw e;
      const tail = e.detail?.stderrTail?.trim();
      const text =
        `specformer verify: the implementation could not be started: ` +
        `${e.message}` +
        `${tail !== undefined && tail !== "" && !e.message.includes(tail.slice(-40)) ? `\nstderr:\n${tail}` : ""}`;
      if (values.json === true) {
        io.out(
          JSON.stringify(
            {
              schema_version: SCHEMA_VERSION,
              ok: false,
              exit_code: 2,
              implementation: { name: null, command },
              error: e.message,
              stderr_tail: tail ?? null,
              results: [],
              first_divergence: null,
            },
            null,
            2,
          ),
        );
      } else io.err(text);
      return 2;
    }
  }

  const progress =
    stderrIsTty(io) && values.json !== true
      ? progressLine((s) => void process.stderr.write(s))
      : undefined;
  const opts: VerifyOptions = {
    ...(casePaths.length > 0 ? { cases: casePaths } : {}),
    ...(formulas !== undefined ? { formulas } : {}),
    ...(dtype !== undefined ? { dtype: dtype as "f64" | "f32" } : {}),
    properties: values.properties === true || command === undefined || law !== undefined,
    ...(law !== undefined ? { law } : {}),
    ...(lawPath !== undefined ? { lawPath } : {}),
    lawRuns: runs,
    seed,
    ...(command !== undefined ? { command, restart: start } : {}),
    ...(values.strict === true ? { strict: true } : {}),
    ...(progress !== undefined ? { onProgress: progress.update } : {}),
    ...(shard !== undefined ? { shard } : {}),
  };
  let report;
  try {
    report = await verify(impl, opts);
  } catch (e) {
    if (e instanceof GoldenFormatError || (e instanceof Error && e.name === "LawUsageError"))
      throw new UsageError(e.message);
    throw e;
  } finally {
    progress?.clear();
    await impl.close?.();
  }
  // a restarted program is closed by the run; the last one is the report's.
  // The report is printed first: whatever happens to the files, it is not lost.
  if (values.json === true) io.out(verifyReportToJSON(report));
  else io.out(formatVerifyReport(report, { colour: wantColour(io.tty) }));
  let unwritten = 0;
  for (const r of reports) {
    try {
      writeFileAtomically(r.path, await r.render(report));
      io.err(`specformer verify: wrote ${r.what} ${r.path}`);
    } catch (e) {
      unwritten++;
      io.err(
        `specformer verify: could not write the ${r.what} ${r.flag} ${JSON.stringify(r.path)}: ${(e as Error).message}`,
      );
    }
  }
  return unwritten > 0 ? 2 : exitCodeOf(report);
}
