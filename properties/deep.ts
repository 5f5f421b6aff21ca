/**
 * The deep run: every law against the reference with at least 1,000 cases per law, appending
 * the date, the cases and the time per law to properties/RESULTS.md. Not part of `npm test`.
 *
 *     npx tsx properties/deep.ts [--runs N] [--seed S] [--dtype f64|f32|both] [--law L] [--out FILE]
 */
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FloatDType } from "../autodiff/tensor.js";
import { referenceImplementation } from "../reference/implementation.js";
import { LAWS, getLaw } from "./registry.js";
import { formatFailure, runLaw, type LawResult } from "./run.js";
import { dtypesOption, parseOptionPairs } from "./script-options.js";

interface Options {
  runs: number;
  seed: number;
  dtypes: FloatDType[];
  law?: string;
  out: string;
}

function parse(argv: readonly string[]): Options {
  const here = dirname(fileURLToPath(import.meta.url));
  const o: Options = {
    runs: 1000,
    seed: Date.now() % 0x7fffffff,
    dtypes: ["f64", "f32"],
    out: join(here, "RESULTS.md"),
  };
  parseOptionPairs(argv, {
    "--runs": (v) => {
      o.runs = Number(v);
      if (!Number.isInteger(o.runs) || o.runs < 1)
        throw new Error(`--runs must be a positive integer, got ${v}`);
    },
    "--seed": (v) => (o.seed = Number(v)),
    "--dtype": (v) => (o.dtypes = dtypesOption(v)),
    "--law": (v) => (o.law = v),
    "--out": (v) => (o.out = v),
  });
  return o;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const laws = o.law !== undefined ? [getLaw(o.law)] : LAWS;
  const impl = referenceImplementation();
  const sections: string[] = [];
  let failed = 0;
  for (const dtype of o.dtypes) {
    const t0 = performance.now();
    const results: LawResult[] = [];
    for (const law of laws) {
      const r = await runLaw(impl, law, {
        runs: o.runs,
        seed: o.seed,
        dtype,
        shrinkTimeMs: 60_000,
      });
      results.push(r);
      process.stderr.write(
        `${dtype} ${law.name}: ${r.status} (${r.runs} cases, ${(r.timeMs / 1000).toFixed(1)} s)\n`,
      );
    }
    failed += results.filter((r) => r.status === "failed").length;
    const total = (performance.now() - t0) / 1000;
    const lines = [
      `## ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC — ` +
        `reference, ${dtype}, ${o.runs} cases per law, seed ${o.seed}`,
      "",
      `Node ${process.version}, ${cpus().length} CPUs ` +
        `(${cpus()[0]?.model ?? "unknown"}); ` +
        `${results.filter((r) => r.status === "passed").length} passed, ` +
        `${results.filter((r) => r.status === "failed").length} failed, ` +
        `${results.filter((r) => r.status === "skipped").length} skipped in ` +
        `${total.toFixed(0)} s.`,
      "",
      "| law | formulas | cases | result | time |",
      "|---|---|---|---|---|",
      ...results.map(
        (r) =>
          `| \`${r.law}\` | ${r.formulas.length > 6 ? `${r.formulas.length} formulas` : r.formulas.join(", ")} ` +
          `| ${r.runs} | ${r.status} | ${(r.timeMs / 1000).toFixed(1)} s |`,
      ),
      "",
    ];
    for (const r of results)
      if (r.status === "failed") lines.push("```", ...formatFailure(r), "```", "");
    sections.push(lines.join("\n"));
  }
  if (!existsSync(o.out)) {
    writeFileSync(
      o.out,
      "# Deep runs of the laws\n\nAppended by `npx tsx properties/deep.ts` (≥ " +
        "1,000 cases per law against the reference). `npm test` runs the same " +
        "laws with a few cases each; these runs are the evidence that the " +
        "derived tolerances hold far into the distribution of generated cases. A " +
        "failure lists its seed and path; `npx specformer properties --law L " +
        "--seed S --path P [--dtype f32]` replays it.\n\n",
    );
  }
  appendFileSync(o.out, sections.join("\n"));
  process.stderr.write(`appended to ${o.out}\n`);
  process.exitCode = failed > 0 ? 1 : 0;
}

await main();
