/** `specformer research STUDY [--seeds N] [--out DIR] [--quick]` */
import { checkFolderTarget, FileAccessError } from "../io/files.js";
import { resolve } from "node:path";
import { getStudy, STUDIES } from "../research/index.js";
import { Progress, type ProgressSink } from "../research/progress.js";
import { StudyError, writeReport, type Study, type StudyOptions } from "../research/study.js";
import { parse, processIo, UsageError, type Io } from "./io.js";

const studyLines = () =>
  Object.values(STUDIES)
    .map(
      (s) =>
        `  ${s.name.padEnd(21)} ${s.description} (default ${s.defaultSeeds} seed${s.defaultSeeds === 1 ? "" : "s"})`,
    )
    .join("\n");

const RESEARCH_USAGE = () => `usage: specformer research STUDY [--seeds N] [--out DIR] [--quick]

  Runs a study of architectural variants on the reference model and writes its numbers (CSV), a
  plot (SVG) and summary.md with the measured numbers into DIR (default ./research-out/STUDY).
  Exit 1 when a check fails: a measured number outside what the paper leads one to expect (or, for
  variants, a model that did not train); the files are written either way.

studies:
${studyLines()}

options:
  --seeds N   independent repetitions (weights and data from seeds 0 … N−1)
  --out DIR   output folder (created if missing)
  --quick     reduced sizes: seconds instead of minutes (what the tests run)`;

/** Progress on stderr: a bar on a terminal, one line per stage otherwise. */
function progressSink(io: Io): ProgressSink {
  if (io === processIo)
    return { write: (s) => void process.stderr.write(s), tty: process.stderr.isTTY === true };
  return { write: (s) => io.err(s.replace(/\n$/, "")), tty: false };
}

/**
 * A folder we can write into, checked without creating anything: the folder is made only when the
 * study has run and its files are written (after every option was validated).
 */
function checkOut(dir: string): void {
  try {
    checkFolderTarget(dir);
  } catch (e) {
    if (e instanceof FileAccessError) throw new UsageError(`--out ${e.message}`);
    throw e;
  }
}

/** The `research` command: parse, validate (exit 2 before any work), run, write, report each check. */
export async function researchCommand(argv: readonly string[], io: Io): Promise<number> {
  const usage = RESEARCH_USAGE();
  const { values, positionals } = parse(
    argv,
    {
      seeds: { type: "string" },
      out: { type: "string" },
      quick: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    usage,
  );
  if (values.help) {
    io.out(usage);
    return 0;
  }
  if (positionals.length === 0)
    throw new UsageError(`which study? name one of ${Object.keys(STUDIES).join(", ")}\n\n${usage}`);
  if (positionals.length > 1)
    throw new UsageError(
      `research takes one study, got ${positionals.length}: ${positionals.join(" ")}\n\n${usage}`,
    );
  const name = positionals[0]!;
  let study;
  try {
    study = getStudy(name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let seeds: number | undefined;
  if (values.seeds !== undefined) {
    const v = String(values.seeds);
    seeds = /^\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
    if (!Number.isInteger(seeds) || seeds < 1)
      throw new UsageError(`--seeds must be a positive integer, got "${v}"`);
  }
  const out = resolve(values.out !== undefined ? String(values.out) : `research-out/${name}`);
  if (values.out === "") throw new UsageError("--out needs a folder");
  checkOut(out);

  return runStudy(
    study,
    { quick: values.quick === true, ...(seeds !== undefined ? { seeds } : {}) },
    out,
    io,
  );
}

/**
 * Run one study, write its files into `out` and print what was written and each check.
 * @returns 0 when every check passes, 1 otherwise.
 */
export async function runStudy(
  study: Study,
  opts: Omit<StudyOptions, "progress">,
  out: string,
  io: Io,
): Promise<number> {
  const progress = new Progress(progressSink(io), study.name);
  let report;
  try {
    report = await study.run({ ...opts, progress });
  } catch (e) {
    if (e instanceof StudyError) throw new UsageError(e.message);
    throw e;
  }
  let paths: string[];
  try {
    paths = writeReport(out, report);
  } catch (e) {
    if (e instanceof FileAccessError) throw new UsageError(`--out ${e.message}`);
    throw e;
  }
  const failed = report.checks.filter((c) => !c.ok);
  const lines = [
    `${study.name}: wrote ${paths.join(", ")}`,
    ...report.checks.map(
      (c) => `  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.measured} (expected ${c.expected})`,
    ),
  ];
  const n = report.checks.length;
  lines.push(
    failed.length === 0
      ? `${study.name}: ${n === 1 ? "the check passes" : `all ${n} checks pass`}`
      : `${study.name}: ${failed.length} of ${n} check${n === 1 ? "" : "s"} failed (see ${resolve(out, "summary.md")})`,
  );
  io.out(lines.join("\n"));
  return failed.length === 0 ? 0 : 1;
}
