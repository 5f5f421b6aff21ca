/**
 * Generates docs/PLANTED-BUGS.md from a real run: every planted bug against every law (and the
 * bug-free control), which laws catch which bug, and the shrunk counterexample of each catch.
 *
 * npx tsx properties/planted-doc.ts [--runs N] [--seed S] [--shrink-ms T] [--dtype f64|f32|both]
 * [--out FILE] [--only BUG,…]
 *
 * With both dtypes (the default) the document has one table per dtype and the float64
 * counterexamples.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { shapeToString } from "../autodiff/tensor.js";
import type { FloatDType } from "../autodiff/tensor.js";
import { LAWS } from "./registry.js";
import { PLANTED, controlImplementation, plantedImplementation } from "./planted.js";
import { runLaw, type LawResult } from "./run.js";
import { dtypesOption, parseOptionPairs } from "./script-options.js";

interface Options {
  runs: number;
  seed: number;
  shrinkMs: number;
  dtypes: FloatDType[];
  out: string;
  only?: string[];
}

function parse(argv: readonly string[]): Options {
  const here = dirname(fileURLToPath(import.meta.url));
  const o: Options = {
    runs: 100,
    seed: 20240601,
    shrinkMs: 5000,
    dtypes: ["f64", "f32"],
    out: join(here, "..", "docs", "PLANTED-BUGS.md"),
  };
  parseOptionPairs(argv, {
    "--runs": (v) => (o.runs = Number(v)),
    "--seed": (v) => (o.seed = Number(v)),
    "--shrink-ms": (v) => (o.shrinkMs = Number(v)),
    "--dtype": (v) => (o.dtypes = dtypesOption(v)),
    "--out": (v) => (o.out = v),
    "--only": (v) => (o.only = v.split(",")),
  });
  return o;
}

interface BugRow {
  readonly bug: string;
  readonly description: string;
  readonly formulas: readonly string[];
  readonly results: readonly LawResult[];
  readonly timeMs: number;
}

interface DtypeRun {
  readonly dtype: FloatDType;
  readonly control: readonly LawResult[];
  readonly rows: readonly BugRow[];
}

async function runDtype(o: Options, dtype: FloatDType): Promise<DtypeRun> {
  const control = controlImplementation();
  const controlResults: LawResult[] = [];
  for (const law of LAWS)
    controlResults.push(
      await runLaw(control, law, { runs: o.runs, seed: o.seed, dtype, shrinkTimeMs: o.shrinkMs }),
    );
  process.stderr.write(
    `${dtype} control: ${controlResults.filter((r) => r.status === "failed").length} failures\n`,
  );
  const rows: BugRow[] = [];
  for (const bug of PLANTED) {
    if (o.only !== undefined && !o.only.includes(bug.name)) continue;
    const impl = plantedImplementation(bug.name);
    const t = performance.now();
    const results: LawResult[] = [];
    for (const law of LAWS)
      results.push(
        await runLaw(impl, law, {
          runs: o.runs,
          seed: o.seed,
          dtype,
          shrinkTimeMs: o.shrinkMs,
          implementationArgs: `--planted ${bug.name}`,
        }),
      );
    rows.push({
      bug: bug.name,
      description: bug.description,
      formulas: bug.formulas,
      results,
      timeMs: performance.now() - t,
    });
    const caught = results.filter((r) => r.status === "failed").map((r) => r.law);
    process.stderr.write(
      `${dtype} ${bug.name}: ${caught.join(", ") || "NOT CAUGHT"} (${((performance.now() - t) / 1000).toFixed(1)} s)\n`,
    );
  }
  return { dtype, control: controlResults, rows };
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const t0 = performance.now();
  const runs: DtypeRun[] = [];
  for (const dtype of o.dtypes) runs.push(await runDtype(o, dtype));
  writeFileSync(o.out, render(o, runs, performance.now() - t0));
  process.stderr.write(`wrote ${o.out}\n`);
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

const ORACLE = "reference_error_bound";

function table(run: DtypeRun): string[] {
  const control = run.control;
  const lines = [
    `### ${run.dtype}`,
    "",
    "Control (the reference rewritten with no mistake, evaluated as the bugs are): " +
      (control.every((r) => r.status !== "failed")
        ? `passes all ${control.filter((r) => r.status === "passed").length} laws ` +
          `that apply (${control.filter((r) => r.status === "skipped").length} ` +
          `skipped), so each failure below is the bug's, not the harness's.`
        : `**fails ${control
            .filter((r) => r.status === "failed")
            .map((r) => r.law)
            .join(", ")}** — this table is not trustworthy until that is fixed.`),
    "",
    "| bug | broken formula | caught by | caught without the oracle | smallest counterexample (elements) |",
    "|---|---|---|---|---|",
  ];
  for (const r of run.rows) {
    const caught = r.results.filter((x) => x.status === "failed");
    const nonOracle = caught.filter((x) => x.law !== ORACLE);
    const smallest = caught.reduce<LawResult | undefined>(
      (best, x) =>
        (x.counterexample?.elements ?? Infinity) < (best?.counterexample?.elements ?? Infinity)
          ? x
          : best,
      undefined,
    );
    lines.push(
      `| \`${r.bug}\` | ${r.formulas.map((f) => `\`${f}\``).join(", ")} | ` +
        `${caught.map((x) => `\`${x.law}\``).join(", ") || "**none**"} | ` +
        `${nonOracle.length > 0 ? `yes (${nonOracle.length})` : "**no**"} | ` +
        String(
          smallest?.counterexample !== undefined
            ? `${smallest.counterexample.elements} (\`${smallest.law}\`)`
            : "—",
        ) +
        ` |`,
    );
  }
  lines.push("");
  return lines;
}

function render(o: Options, runs: readonly DtypeRun[], ms: number): string {
  const lines: string[] = [
    "# Planted bugs: which law catches which bug",
    "",
    `Generated by \`npx tsx properties/planted-doc.ts\` on ` +
      `${new Date().toISOString().slice(0, 10)}: every planted bug of ` +
      `\`properties/planted.ts\` run against every law (${o.runs} cases per ` +
      `law, fast-check seed ${o.seed}, shrinking up to ${o.shrinkMs / 1000} s ` +
      `per failure), in ${(ms / 1000).toFixed(0)} s. No golden file is used. ` +
      `\`${ORACLE}\` is the one law that compares with the float64 reference ` +
      `(an oracle); the column "caught without the oracle" counts the others.`,
    "",
    "Each planted bug is a rewrite of the reference's formula graph " +
      "(spec/rewrite.ts: formula X computed as X′, built from the registry's " +
      "own formulas) applied to the requests of the broken formula(s) and " +
      "evaluated by the engine; every other request is the reference's. " +
      "`properties/planted.test.ts` checks in `npm test` that every bug is " +
      "still caught by one of the laws listed here (without the oracle) and " +
      "that the control passes every law.",
    "",
    "## Which law catches which bug",
    "",
  ];
  for (const run of runs) lines.push(...table(run));
  const detail = runs[0];
  if (detail === undefined) return lines.join("\n") + "\n";
  lines.push(
    `## Counterexamples (${detail.dtype})`,
    "",
    "The shrunk counterexample of every catch, with the command that replays it.",
    "",
  );
  for (const r of detail.rows) {
    lines.push(`### \`${r.bug}\``, "", cell(r.description), "");
    const caught = r.results.filter((x) => x.status === "failed");
    if (caught.length === 0) {
      lines.push("Not caught by any law.", "");
      continue;
    }
    for (const x of caught) {
      const f = x.failure!;
      const shapes =
        x.counterexample !== undefined
          ? Object.entries(x.counterexample.shapes).map(([k, s]) => `${k}${shapeToString(s)}`)
          : [];
      lines.push(
        `- **${x.law}** after ${x.runs} case${x.runs === 1 ? "" : "s"}, ` +
          `${x.replay?.numShrinks ?? 0} ` +
          `shrinks${x.replay?.shrinkInterrupted === true ? " (stopped at the time budget)" : ""}: ` +
          `${cell(f.message)}`,
      );
      if (x.counterexample !== undefined) {
        const cfg = Object.entries(x.counterexample.config)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(" ");
        const args =
          shapes.length === 0
            ? "no arguments (the configuration is the whole case)"
            : `${x.counterexample.elements} elements: ` +
              `${shapes.length > 8 ? `${shapes.slice(0, 8).join(" ")} …` : shapes.join(" ")}`;
        lines.push(
          `  - ${x.counterexample.formula} ${x.counterexample.dtype}${cfg !== "" ? ` (${cell(cfg)})` : ""}, ${args}`,
        );
        const small = Object.entries(x.counterexample.values).filter(([, v]) => v.length <= 8);
        if (small.length > 0 && small.length <= 4)
          lines.push(
            `  - values: ${small.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")}`,
          );
        const choices = Object.entries(x.counterexample.choices);
        if (choices.length > 0)
          lines.push(`  - ${choices.map(([k, v]) => `${k}: ${cell(v)}`).join("; ")}`);
      }
      if (f.quantity !== undefined && f.expected !== undefined)
        lines.push(
          `  - ${cell(f.quantity)}${f.index !== undefined ? ` at ${JSON.stringify(f.index)}` : ""}: ` +
            `expected ${f.expected}, actual ` +
            `${f.actual}${f.allowed !== undefined ? `, allowed ${f.allowed.toExponential(3)}` : ""}`,
        );
      if (x.replay !== undefined) lines.push(`  - replay: \`${x.replay.command}\``);
    }
    lines.push("");
  }
  return lines.join("\n") + "\n";
}

await main();
