/**
 * `specformer gradcheck [FORMULA...|all | --formulas a,b] [--mode full|fast|bisect] [--dtype
 * f64|f32] [--seed N] [--config NAME,k=v,...] [--json]`
 */
import "../spec/index.js";
import {
  exampleConfig,
  exampleShapes,
  formulaNames,
  getFormula,
  hasFormula,
} from "../spec/formula.js";
import { formulaGraph } from "../autodiff/graph.js";
import { gradcheckGraph, type GradcheckResult } from "../autodiff/gradcheck.js";
import { Rng, sampleInputs } from "../autodiff/random.js";
import { wireJSON } from "../autodiff/wire.js";
import { textTable } from "../io/text.js";
import { configFlag } from "./config.js";
import { DEFAULT_SEED, formulasFlag, parse, seedFlag, UsageError, type Io } from "./io.js";

const GRADCHECK_USAGE =
  `usage: specformer gradcheck [FORMULA...|all | --formulas a,b] [--mode ` +
  `full|fast|bisect] [--dtype ` +
  `f64|f32]
                            [--seed N] [--config NAME,k=v,...] [--json]

  Checks each formula's gradient (its VJP rules, as the engine composes them) against central
  differences in float64. Default: every formula, full mode at small random sizes and fast mode
  (random directions) at larger ones. Exit 1 if any check fails.

  FORMULA, --formulas a,b  only these formulas ("all" or none: every formula)
  --config NAME,k=v,...    a preset (its hyperparameters each formula has) and/or hyperparameters
                           (H=2,causal=false) every checked formula must have
  --seed N                 seed of the sizes, inputs and directions (default ${DEFAULT_SEED})`;

/** Random small sizes for a check (seeded); RoPE needs an even d_k. */
function randomDims(rng: Rng, scale: number): Record<string, number> {
  const r = (lo: number, hi: number) => lo + rng.int(hi - lo + 1);
  const n = r(1, 4) * scale;
  return {
    n,
    m: n,
    d: r(2, 6) * scale,
    d_k: 2 * r(1, 2) * scale,
    d_v: r(1, 4) * scale,
    d_in: r(1, 5) * scale,
    d_out: r(1, 5) * scale,
    d_ff: r(2, 6) * scale,
    V: r(5, 9) * scale,
    n_ctx: n + 4,
    p: r(1, 3),
  };
}

interface Row {
  formula: string;
  mode: string;
  sizes: string;
  result?: GradcheckResult;
  skipped?: string;
}

export async function gradcheckCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      mode: { type: "string" },
      dtype: { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
      config: { type: "string" },
      formulas: { type: "string" },
    },
    GRADCHECK_USAGE,
  );
  const chosen = formulasFlag(
    [{ flag: "--formulas", value: values.formulas }],
    positionals.length === 1 && positionals[0] === "all" ? [] : positionals,
  );
  const mode = values.mode;
  if (mode !== undefined && !["full", "fast", "bisect"].includes(mode))
    throw new UsageError(`--mode must be full, fast or bisect, got "${mode}"`);
  const dtype = values.dtype ?? "f64";
  if (dtype !== "f64" && dtype !== "f32")
    throw new UsageError(`--dtype must be f64 or f32, got "${dtype}"`);
  const seed = seedFlag(values.seed);
  const config = configFlag(values.config);
  for (const f of chosen ?? []) {
    if (f === "all")
      throw new UsageError(`"all" stands alone: give it, or formula names, not both`);
    if (hasFormula(f)) continue;
    try {
      getFormula(f);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const names = chosen ?? formulaNames();
  const rng = new Rng(seed);
  const rows: Row[] = [];
  for (const name of names) {
    let cfg;
    try {
      // a preset names model hyperparameters: a formula takes the ones it has
      const known = new Set(getFormula(name).hyper.map((h) => h.name));
      const fromPreset = Object.fromEntries(
        Object.entries(config.presetValues).filter(([k]) => known.has(k)),
      );
      cfg = exampleConfig(name, { ...fromPreset, ...config.overrides });
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
      // a context length the configuration fixes bounds the sequence (learned positions hold n_ctx rows)
      const nCtx = cfg["n_ctx"];
      if (typeof nCtx === "number" && dims["n"]! > nCtx) dims["n"] = dims["m"] = nCtx;
      const positions = cfg["positions"];
      if (name === "rope" || (typeof positions === "string" && positions.startsWith("rope")))
        dims["d_k"] = 2 * Math.max(1, Math.round(dims["d_k"]! / 2));
      const shapes = exampleShapes(name, cfg, dims);
      const inputs = sampleInputs(name, cfg, { seed: seed + rows.length, dims });
      const result = await gradcheckGraph(formulaGraph(name, cfg), inputs, {
        mode: m,
        dtype,
        seed,
        maxElements: 512,
      });
      rows.push({
        formula: name,
        mode: m,
        sizes: Object.entries(shapes)
          .slice(0, 3)
          .map(([k, s]) => `${k}[${s.join(",")}]`)
          .join(" "),
        result,
      });
    }
  }
  const ok = rows.every((r) => r.skipped !== undefined || r.result!.ok);
  if (values.json) {
    io.out(
      wireJSON({
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
      }),
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
          r.result!.checked.reduce((a, c) => a + c.elements, 0) +
            (r.mode === "full" ? " elements" : " in " + r.result!.checked.length + " directions"),
          r.result!.maxAbsErr.toExponential(2),
          r.result!.maxRelErr.toExponential(2),
          r.result!.ok ? "pass" : "FAIL",
        ],
  );
  const out = textTable(head, table);
  for (const r of rows) {
    if (!r.result || r.result.ok) continue;
    out.push("", `${r.formula} (${r.mode}, seed ${seed}):`);
    if (r.result.error) out.push(`  error: ${r.result.error}`);
    for (const f of r.result.failures) {
      out.push(
        `  ${f.input}${f.index.length ? ` at [${f.index.join(", ")}]` : ""}: ` +
          `analytic ${f.analytic.toExponential(6)}, numeric ` +
          `${f.numeric.toExponential(6)}, abs err ${f.absErr.toExponential(2)}, ` +
          `rel err ${f.relErr.toExponential(2)} (allowed ` +
          `${f.allowed.toExponential(2)})`,
      );
    }
    if (r.result.bisect)
      out.push(
        `  first wrong local VJP: ` +
          `${r.result.bisect.node}${r.result.bisect.formula ? ` in formula ${r.result.bisect.formula}` : ""} ` +
          `— ${r.result.bisect.detail}`,
      );
  }
  out.push(
    "",
    ok
      ? `all ${rows.filter((r) => !r.skipped).length} checks pass (dtype ${dtype}, seed ${seed})`
      : `${rows.filter((r) => r.result && !r.result.ok).length} check(s) FAILED`,
  );
  io.out(out.join("\n"));
  return ok ? 0 : 1;
}
