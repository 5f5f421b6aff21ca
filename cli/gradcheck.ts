/** `specformer gradcheck [FORMULA|all] [--mode full|fast|bisect] [--dtype f64|f32] [--seed N] [--json]` */
import "../spec/index.js";
import { exampleConfig, exampleShapes, formulaNames, getFormula, hasFormula } from "../spec/formula.js";
import { formulaGraph } from "../autodiff/graph.js";
import { gradcheckGraph, type GradcheckResult } from "../autodiff/gradcheck.js";
import { Rng, sampleInputs } from "../autodiff/random.js";
import { intFlag, parse, parseAssignments, UsageError, type Io } from "./io.js";

export const GRADCHECK_USAGE = `usage: specformer gradcheck [FORMULA|all] [--mode full|fast|bisect] [--dtype f64|f32] [--seed N] [--config k=v,...] [--json]

  Checks each formula's gradient (its VJP rules, as the engine composes them) against central
  differences in float64. Default: every formula, full mode at small random sizes and fast mode
  (random directions) at larger ones. Exit 1 if any check fails.`;

/** Random small sizes for a check (seeded); RoPE needs an even d_k. */
function randomDims(rng: Rng, scale: number): Record<string, number> {
  const r = (lo: number, hi: number) => lo + rng.int(hi - lo + 1);
  const n = r(1, 4) * scale;
  return { n, m: n, d: r(2, 6) * scale, d_k: 2 * r(1, 2) * scale, d_v: r(1, 4) * scale, d_in: r(1, 5) * scale, d_out: r(1, 5) * scale, d_ff: r(2, 6) * scale, V: r(5, 9) * scale, n_ctx: n + 4, p: r(1, 3) };
}

interface Row {
  formula: string;
  mode: string;
  sizes: string;
  result?: GradcheckResult;
  skipped?: string;
}

export async function gradcheckCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { mode: { type: "string" }, dtype: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" }, config: { type: "string" } }, GRADCHECK_USAGE);
  const target = positionals[0] ?? "all";
  if (positionals.length > 1) throw new UsageError(`gradcheck takes one formula or "all"\n\n${GRADCHECK_USAGE}`);
  const mode = values.mode;
  if (mode !== undefined && !["full", "fast", "bisect"].includes(mode)) throw new UsageError(`--mode must be full, fast or bisect, got "${mode}"`);
  const dtype = values.dtype ?? "f64";
  if (dtype !== "f64" && dtype !== "f32") throw new UsageError(`--dtype must be f64 or f32, got "${dtype}"`);
  const seed = intFlag(values.seed, "--seed", 0);
  const cfgOverride = values.config ? parseAssignments(values.config, "--config") : {};
  if (target !== "all" && !hasFormula(target)) {
    try {
      getFormula(target);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const names = target === "all" ? formulaNames() : [target];
  const rng = new Rng(seed);
  const rows: Row[] = [];
  for (const name of names) {
    let cfg;
    try {
      cfg = exampleConfig(name, cfgOverride);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const def = getFormula(name);
    if (!def.args(cfg).some((a) => !a.int)) {
      rows.push({ formula: name, mode: "-", sizes: "-", skipped: "no differentiable arguments" });
      continue;
    }
    const modes: ("full" | "fast" | "bisect")[] = mode ? [mode as "full"] : ["full", "fast"];
    for (const m of modes) {
      // full: small random sizes; fast: larger ones (its cost does not grow with the input size)
      const dims = randomDims(rng, m === "fast" && !mode ? 3 : 1);
      // a configured width fixes the head size through d_model = H·d_k
      if (typeof cfg["d_model"] === "number") delete dims["d_k"];
      if (name === "rope" || (typeof cfg["positions"] === "string" && (cfg["positions"] as string).startsWith("rope"))) dims["d_k"] = 2 * Math.max(1, Math.round(dims["d_k"]! / 2));
      const shapes = exampleShapes(name, cfg, dims);
      const inputs = sampleInputs(name, cfg, { seed: seed + rows.length, dims });
      const result = await gradcheckGraph(formulaGraph(name, cfg), inputs, { mode: m, dtype, seed, maxElements: 512 });
      rows.push({ formula: name, mode: m, sizes: Object.entries(shapes).slice(0, 3).map(([k, s]) => `${k}[${s.join(",")}]`).join(" "), result });
    }
  }
  const ok = rows.every((r) => r.skipped !== undefined || r.result!.ok);
  if (values.json) {
    io.out(
      JSON.stringify(
        {
          ok,
          dtype,
          seed,
          results: rows.map((r) =>
            r.skipped
              ? { formula: r.formula, ok: true, skipped: r.skipped }
              : {
                  formula: r.formula,
                  ok: r.result!.ok,
                  mode: r.result!.mode,
                  max_abs_err: r.result!.maxAbsErr,
                  max_rel_err: r.result!.maxRelErr,
                  checked: r.result!.checked,
                  failures: r.result!.failures,
                  ...(r.result!.error ? { error: r.result!.error } : {}),
                  ...(r.result!.bisect !== undefined ? { bisect: r.result!.bisect } : {}),
                },
          ),
        },
        null,
        2,
      ),
    );
    return ok ? 0 : 1;
  }
  const head = ["formula", "mode", "inputs checked", "max abs err", "max rel err", "result"];
  const table = rows.map((r) =>
    r.skipped
      ? [r.formula, "-", "-", "-", "-", `n/a (${r.skipped})`]
      : [
          r.formula,
          r.mode,
          r.result!.checked.reduce((a, c) => a + c.elements, 0) + (r.mode === "full" ? " elements" : " in " + r.result!.checked.length + " directions"),
          r.result!.maxAbsErr.toExponential(2),
          r.result!.maxRelErr.toExponential(2),
          r.result!.ok ? "pass" : "FAIL",
        ],
  );
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const out = [line(head), line(widths.map((w) => "-".repeat(w))), ...table.map(line)];
  for (const r of rows) {
    if (!r.result || r.result.ok) continue;
    out.push("", `${r.formula} (${r.mode}, seed ${seed}):`);
    if (r.result.error) out.push(`  error: ${r.result.error}`);
    for (const f of r.result.failures) {
      out.push(`  ${f.input}${f.index.length ? ` at [${f.index.join(", ")}]` : ""}: analytic ${f.analytic.toExponential(6)}, numeric ${f.numeric.toExponential(6)}, abs err ${f.absErr.toExponential(2)}, rel err ${f.relErr.toExponential(2)} (allowed ${f.allowed.toExponential(2)})`);
    }
    if (r.result.bisect) out.push(`  first wrong local VJP: ${r.result.bisect.node}${r.result.bisect.formula ? ` in formula ${r.result.bisect.formula}` : ""} — ${r.result.bisect.detail}`);
  }
  out.push("", ok ? `all ${rows.filter((r) => !r.skipped).length} checks pass (dtype ${dtype}, seed ${seed})` : `${rows.filter((r) => r.result && !r.result.ok).length} check(s) FAILED`);
  io.out(out.join("\n"));
  return ok ? 0 : 1;
}
