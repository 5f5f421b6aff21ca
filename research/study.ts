/**
 * What every study is: a named computation over the reference model that returns its numbers as
 * files (CSV, SVG) and a Markdown summary, plus the checks that compare the numbers with what
 * the literature leads one to expect. `writeReport` puts the files in a folder.
 */
import { writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { makeFolders } from "../io/files.js";
import { renderSvg, type TopLevelSpec } from "./plot.js";
import { Progress } from "./progress.js";
import type { PairedInterval } from "./stats.js";

export class StudyError extends Error {
  override name = "StudyError";
}

export interface StudyOptions {
  /** Independent repetitions (weights and data drawn from seeds 0 … seeds − 1); default per study. */
  readonly seeds?: number;
  /** The reduced size the tests use (seconds instead of minutes). */
  readonly quick?: boolean;
  readonly progress?: Progress;
}

/** One comparison of a measured number with an expectation from the literature. */
export interface StudyCheck {
  readonly name: string;
  /** The expectation and where it comes from. */
  readonly expected: string;
  readonly measured: string;
  readonly ok: boolean;
}

export interface StudyReport {
  readonly study: string;
  /** File name → content (CSV, SVG), written beside `summary.md`. */
  readonly files: Readonly<Record<string, string>>;
  /** The Markdown summary (`summary.md`). */
  readonly summary: string;
  readonly checks: readonly StudyCheck[];
}

export interface Study {
  readonly name: string;
  /** One line for `specformer research --help`. */
  readonly description: string;
  readonly defaultSeeds: number;
  run(opts: StudyOptions): Promise<StudyReport>;
}

/** When a study's run started: wall clock (ms, `performance.now()`) and process CPU time. */
export interface StudyStart {
  readonly wallMs: number;
  readonly cpu: NodeJS.CpuUsage;
}

/**
 * A study made of one computation, its tables, one plot (`NAME.svg`, after the tables) and a
 * summary: the shape every study here has.
 */
export function plottedStudy<R extends { readonly checks: readonly StudyCheck[] }>(d: {
  readonly name: string;
  readonly description: string;
  readonly defaultSeeds: number;
  compute(opts: StudyOptions): R;
  /** File name → CSV text. */
  tables(r: R): Readonly<Record<string, string>>;
  plot(r: R): TopLevelSpec;
  summary(r: R, started: StudyStart): string;
}): Study {
  return {
    name: d.name,
    description: d.description,
    defaultSeeds: d.defaultSeeds,
    async run(opts: StudyOptions): Promise<StudyReport> {
      const started = { wallMs: performance.now(), cpu: process.cpuUsage() };
      const r = d.compute(opts);
      const { svg } = await renderSvg(d.plot(r));
      return {
        study: d.name,
        files: { ...d.tables(r), [`${d.name}.svg`]: svg },
        summary: d.summary(r, started),
        checks: r.checks,
      };
    },
  };
}

/** Number of seeds from the options, validated (a positive integer). */
function seedCount(opts: StudyOptions, dflt: number): number {
  const s = opts.seeds ?? dflt;
  if (!Number.isInteger(s) || s < 1)
    throw new StudyError(`seeds must be a positive integer, got ${s}`);
  return s;
}

/**
 * The sizes of one run: the study's quick or default sizes, overridden by `opts.sizes`, with the
 * seed count from `opts.seeds` (else from the sizes), validated by {@link seedCount}.
 */
export function studySizes<S extends { readonly seeds: number }>(
  opts: StudyOptions & { readonly sizes?: Partial<S> },
  quick: S,
  dflt: S,
): S {
  const base = opts.quick ? quick : dflt;
  return { ...base, ...opts.sizes, seeds: seedCount(opts, opts.sizes?.seeds ?? base.seeds) };
}

/**
 * @throws StudyError "STUDY: NAME must be a positive integer, got VALUE" unless `value` is an
 * integer ≥ 1.
 */
export function requirePositiveInteger(study: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new StudyError(`${study}: ${name} must be a positive integer, got ${value}`);
}

/** Write the report's files and `summary.md` into `dir` (created if missing); returns the paths written. */
export function writeReport(dir: string, report: StudyReport): string[] {
  makeFolders(dir); // one level at a time: a recursive mkdir can loop forever under /proc

  const paths: string[] = [];
  for (const [name, content] of Object.entries({ ...report.files, "summary.md": report.summary })) {
    if (name.includes("/") || name.includes("\\") || name.startsWith("."))
      throw new StudyError(`report file name "${name}" must be a plain file name`);
    const p = join(dir, name);
    writeFileSync(p, content);
    paths.push(p);
  }
  return paths;
}

/** Where and when a run happened, for the summary. */
export interface RunInfo {
  readonly date: string;
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly seconds: number;
  /** CPU time (user + system, every thread of the process) since `startedCpu`, when given. */
  readonly cpuSeconds?: number;
  /** Load average over 1, 5 and 15 minutes when the run ended (other work on the machine). */
  readonly load: readonly number[];
}

/** `startedCpu`: `process.cpuUsage()` taken when the run started. */
export function runInfo(startedMs: number, startedCpu?: NodeJS.CpuUsage): RunInfo {
  const c = cpus();
  const cpu = startedCpu === undefined ? undefined : process.cpuUsage(startedCpu);
  return {
    ...(cpu === undefined ? {} : { cpuSeconds: (cpu.user + cpu.system) / 1e6 }),
    load: loadavg(),
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cpu: c[0]?.model.trim() ?? "unknown",
    cores: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    seconds: (performance.now() - startedMs) / 1000,
  };
}

/** The run's provenance as one Markdown line. */
export function runInfoLine(r: RunInfo): string {
  const cpu =
    r.cpuSeconds === undefined
      ? ""
      : `, CPU ${r.cpuSeconds.toFixed(1)} s (user + system, all threads)`;
  const load = r.load.map((x) => x.toFixed(1)).join(" / ");
  const where = `${r.cpu} (${r.cores} cores, ${r.memoryGiB} GiB), Node ${r.node}`;
  const wall = `wall ${r.seconds.toFixed(1)} s${cpu}`;
  return `Run ${r.date} on ${where}; ${wall}; load average ${load} (1 / 5 / 15 min) at the end.`;
}

/** A Markdown table. */
export function mdTable(
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const esc = (v: string | number) => String(v).replace(/\|/g, "\\|");
  return [
    `| ${header.map(esc).join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/** The checks as a Markdown table with ✓ / ✗. */
export function checksTable(checks: readonly StudyCheck[]): string {
  return mdTable(
    ["check", "expected (source)", "measured", ""],
    checks.map((c) => [c.name, c.expected, c.measured, c.ok ? "✓" : "✗"]),
  );
}

/** `x` to `digits` significant figures, as text. */
export function sig(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  return Number(x.toPrecision(digits)).toString();
}

/** A signed number with its standard error: "−0.48 ± 0.03". */
export function withSE(x: number, se: number, digits = 2): string {
  const f = (v: number) => v.toFixed(digits).replace(/^-/, "−");
  return Number.isFinite(se) ? `${f(x)} ± ${Math.abs(se).toFixed(digits)}` : f(x);
}

/** `x` with its sign always written and `digits` after the point: "+0.012", "−0.004". */
export function signed(x: number, digits = 3): string {
  return `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(digits)}`;
}

/** A paired difference and its 95% interval: "+0.012 [−0.004, +0.028]". */
export function intervalText(d: PairedInterval): string {
  return `${signed(d.mean)} [${signed(d.low)}, ${signed(d.high)}]`;
}
