/** `specformer spec [FORMULA] [--format text|latex|json|markdown] [--config NAME | --dims k=v,...]` */
import "../spec/index.js";
import { formulaNames, getFormula, hasFormula, resolveConfig, exampleConfig } from "../spec/formula.js";
import { getPreset, presetNames } from "../spec/presets.js";
import { renderFormula } from "../spec/render.js";
import { pipelineDocument, pipelineMarkdown, pipelineText } from "../spec/pipeline.js";
import { renderGradient } from "../autodiff/render-grad.js";
import { Tokenizer } from "../reference/tokenizer/index.js";
import { parse, parseAssignments, UsageError, type Io } from "./io.js";

export const SPEC_USAGE = `usage: specformer spec [FORMULA] [--format text|latex|json|markdown] [--config NAME | --dims k=v,...] [--grad]

  Without FORMULA: the whole pipeline document (text → tokens → … → sampling) with the
  parameter count of the configuration (default gpt2-small).
  FORMULA: one formula's definition, arguments, shapes and hyperparameters.
  --config NAME   a preset (${presetNames().join(", ")}); for a formula, its hyperparameters
  --dims k=v,...  hyperparameters and dims (H=8,eps=1e-6,causal=false)
  --grad          also render the backward pass (the VJP as a formula)`;

const FORMATS = ["text", "latex", "json", "markdown"] as const;

const BACKWARD_SHOWN = ["softmax", "layer_norm", "attention", "cross_entropy", "gelu"];

export async function specCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { format: { type: "string" }, config: { type: "string" }, dims: { type: "string" }, grad: { type: "boolean" } }, SPEC_USAGE);
  if (positionals.length > 1) throw new UsageError(`spec takes at most one formula, got ${positionals.join(" ")}\n\n${SPEC_USAGE}`);
  const format = values.format ?? (positionals.length === 0 ? "markdown" : "text");
  if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(", ")}, got "${format}"`);
  if (values.config !== undefined && values.dims !== undefined && positionals.length > 0) {
    // a preset and dims combine: dims override the preset
  }
  let overrides: Record<string, number | string | boolean> = {};
  if (values.config !== undefined) {
    try {
      overrides = { ...getPreset(values.config) };
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (values.dims !== undefined) overrides = { ...overrides, ...parseAssignments(values.dims, "--dims") };

  if (positionals.length === 0) {
    const name = values.config ?? "gpt2-small";
    const model = values.config === undefined ? { ...getPreset("gpt2-small"), ...overrides } : overrides;
    const doc = guard(() => pipelineDocument(values.dims !== undefined && values.config === undefined ? "gpt2-small + --dims" : name, model));
    const ids = Tokenizer.gpt2().encode("Hello, world!");
    const pieces = Tokenizer.gpt2().decodePieces(ids);
    const tokenExample = `Example: "Hello, world!" → ${JSON.stringify(pieces)} → ids [${ids.join(", ")}].`;
    if (format === "json") {
      const formulas = formulaNames().map((f) => renderFormula(f));
      io.out(JSON.stringify({ pipeline: doc, formulas, tokenExample: { text: "Hello, world!", ids, pieces } }, null, 2));
    } else if (format === "markdown" || format === "latex") {
      const backward: Record<string, string[]> = {};
      for (const f of BACKWARD_SHOWN) backward[f] = renderGradient(f, exampleConfig(f), "latex");
      io.out(pipelineMarkdown(doc, { tokenExample, backward }));
    } else io.out(pipelineText(doc, { tokenExample }));
    return 0;
  }

  const formula = positionals[0]!;
  if (!hasFormula(formula)) {
    throw new UsageError(guardMessage(() => getFormula(formula)));
  }
  const def = getFormula(formula);
  const cfg = guard(() => resolveConfig(def, { ...(def.example ?? {}), ...filterKnown(def.hyper.map((h) => h.name), overrides, values.config !== undefined) }));
  const r = guard(() => renderFormula(formula, cfg));
  const back = values.grad ? guard(() => ({ latex: renderGradient(formula, cfg, "latex"), text: renderGradient(formula, cfg, "text") })) : undefined;
  if (format === "json") {
    io.out(JSON.stringify(back ? { ...r, backward: back } : r, null, 2));
  } else if (format === "latex") {
    io.out([...r.latex, ...(back ? ["% backward", ...back.latex] : [])].join("\n"));
  } else if (format === "markdown") {
    io.out(
      [
        `### \`${r.name}\` — ${r.description}`,
        "",
        "$$",
        r.latex.join(" \\\\\n"),
        "$$",
        "",
        ...(back ? ["Backward:", "", "$$", back.latex.join(" \\\\\n"), "$$", ""] : []),
        ...[...r.inputs, ...r.parameters].map((a) => `- \`${a.name}\`: [${a.shape.join(", ")}] — ${a.doc}`),
        ...r.outputs.map((o) => `- output \`${o.name}\`: [${o.shape.join(", ")}] — ${o.doc}`),
      ].join("\n"),
    );
  } else {
    const lines = [r.signature, `  ${r.description}`, ""];
    for (const l of r.text) lines.push(`  ${l}`);
    if (back) {
      lines.push("", "  backward:");
      for (const l of back.text) lines.push(`  ${l}`);
    }
    lines.push("");
    for (const a of r.inputs) lines.push(`  input      ${a.name.padEnd(22)} [${a.shape.join(", ")}]${a.dtype === "int" ? " int" : ""}  ${a.doc}`);
    for (const a of r.parameters) lines.push(`  parameter  ${a.name.padEnd(22)} [${a.shape.join(", ")}]  ${a.doc}`);
    for (const o of r.outputs) lines.push(`  output     ${o.name.padEnd(22)} [${o.shape.join(", ")}]  ${o.doc}`);
    const hp = r.hyperparameters;
    if (hp.length > 0) {
      lines.push("");
      for (const h of hp) lines.push(`  ${h.name.padEnd(12)} ${h.kind.padEnd(8)} ${h.default === undefined ? "(required)" : `= ${JSON.stringify(h.default)}`}${h.choices ? `  {${h.choices.join(", ")}}` : ""}  ${h.doc}`);
    }
    if (r.relations.length > 0) lines.push("", `  relations: ${r.relations.join("; ")}`);
    if (r.parameterCount) lines.push("", `  parameters: ${r.parameterCount.symbolic}${r.parameterCount.value !== undefined ? ` = ${r.parameterCount.value.toLocaleString("en-US")}` : ""}`);
    for (const n of r.notes) lines.push(`  note: ${n}`);
    io.out(lines.join("\n"));
  }
  return 0;
}

/** A preset names model hyperparameters; a formula takes the ones it knows. */
function filterKnown(known: string[], cfg: Record<string, number | string | boolean>, fromPreset: boolean): Record<string, number | string | boolean> {
  if (!fromPreset) return cfg;
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(cfg)) if (known.includes(k)) out[k] = v;
  return out;
}

function guard<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function guardMessage(f: () => unknown): string {
  try {
    f();
    return "";
  } catch (e) {
    return (e as Error).message;
  }
}
