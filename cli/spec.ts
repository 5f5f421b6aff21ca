/**
 * `specformer spec [FORMULA... | --formulas a,b] [--format text|latex|json|markdown] [--config
 * NAME,k=v,...] [--grad]`
 */
import "../spec/index.js";
import {
  formulaNames,
  getFormula,
  hasFormula,
  resolveConfig,
  exampleConfig,
} from "../spec/formula.js";
import { getPreset, presetNames } from "../spec/presets.js";
import { renderFormula } from "../spec/render.js";
import { pipelineDocument, pipelineMarkdown, pipelineText } from "../spec/pipeline.js";
import { renderGradient } from "../autodiff/render-grad.js";
import { wireJSON } from "../autodiff/wire.js";
import { Tokenizer } from "../reference/tokenizer/index.js";
import { configFlag } from "./config.js";
import { formulasFlag, parse, parseAssignments, UsageError, type Io } from "./io.js";

const SPEC_USAGE =
  `usage: specformer spec [FORMULA... | --formulas a,b] [--format ` +
  `text|latex|json|markdown] [--config NAME,k=v,...] ` +
  `[--grad]

  Without a formula: the whole pipeline document (text → tokens → … → sampling) with the
  parameter count of the configuration (default gpt2-small).
  FORMULA, --formulas a,b  these formulas' definitions, arguments, shapes and hyperparameters
  --config NAME,k=v,...    a preset (${presetNames().join(", ")}) and/or hyperparameters and dims
                           (d_model=8,H=2,eps=1e-6,causal=false); the pairs override the preset.
                           For a formula, a preset gives the hyperparameters the formula has.
  --dims k=v,...           another spelling of --config's pairs
  --grad                   also render the backward pass (the VJP as a formula)`;

const FORMATS = ["text", "latex", "json", "markdown"] as const;

const BACKWARD_SHOWN = ["softmax", "layer_norm", "attention", "cross_entropy", "gelu"];

export async function specCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      format: { type: "string" },
      config: { type: "string" },
      dims: { type: "string" },
      formulas: { type: "string" },
      grad: { type: "boolean" },
    },
    SPEC_USAGE,
  );
  const chosen = formulasFlag([{ flag: "--formulas", value: values.formulas }], positionals);
  const format = values.format ?? (chosen === undefined ? "markdown" : "text");
  if (!(FORMATS as readonly string[]).includes(format))
    throw new UsageError(`--format must be one of ${FORMATS.join(", ")}, got "${format}"`);
  const config = configFlag(values.config);
  const overrides = {
    ...config.overrides,
    ...(values.dims !== undefined ? parseAssignments(values.dims, "--dims") : {}),
  };

  if (chosen === undefined) {
    const base = config.preset ?? "gpt2-small";
    const name =
      Object.keys(overrides).length > 0
        ? `${base} + ${Object.entries(overrides)
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(",")}`
        : base;
    const doc = guard(() => pipelineDocument(name, { ...getPreset(base), ...overrides }));
    const ids = Tokenizer.gpt2().encode("Hello, world!");
    const pieces = Tokenizer.gpt2().decodePieces(ids);
    const tokenExample = `Example: "Hello, world!" → ${JSON.stringify(pieces)} → ids [${ids.join(", ")}].`;
    if (format === "json") {
      const formulas = formulaNames().map((f) => renderFormula(f));
      io.out(
        wireJSON({ pipeline: doc, formulas, tokenExample: { text: "Hello, world!", ids, pieces } }),
      );
    } else if (format === "markdown" || format === "latex") {
      const backward: Record<string, string[]> = {};
      for (const f of BACKWARD_SHOWN) backward[f] = renderGradient(f, exampleConfig(f), "latex");
      io.out(pipelineMarkdown(doc, { tokenExample, backward }));
    } else io.out(pipelineText(doc, { tokenExample }));
    return 0;
  }

  for (const formula of chosen)
    if (!hasFormula(formula)) throw new UsageError(guardMessage(() => getFormula(formula)));
  const rendered = chosen.map((formula) => {
    const def = getFormula(formula);
    // a preset names model hyperparameters: a formula takes the ones it has; pairs given by hand must all be its own
    const fromPreset = filterKnown(
      def.hyper.map((h) => h.name),
      config.presetValues,
    );
    const cfg = guard(() =>
      resolveConfig(def, { ...(def.example ?? {}), ...fromPreset, ...overrides }),
    );
    const r = guard(() => renderFormula(formula, cfg));
    const back = values.grad
      ? guard(() => ({
          latex: renderGradient(formula, cfg, "latex"),
          text: renderGradient(formula, cfg, "text"),
        }))
      : undefined;
    return { r, back };
  });
  if (format === "json") {
    const docs = rendered.map(({ r, back }) => (back ? { ...r, backward: back } : r));
    io.out(wireJSON(docs.length === 1 ? docs[0]! : { formulas: docs }));
    return 0;
  }
  io.out(rendered.map(({ r, back }) => formatOne(r, back, format)).join("\n\n"));
  return 0;
}

type Rendered = ReturnType<typeof renderFormula>;

/** One formula as LaTeX, Markdown or text. */
function formatOne(
  r: Rendered,
  back: { latex: string[]; text: string[] } | undefined,
  format: string,
): string {
  if (format === "latex")
    return [...r.latex, ...(back ? ["% backward", ...back.latex] : [])].join("\n");
  if (format === "markdown") {
    return [
      `### \`${r.name}\` — ${r.description}`,
      "",
      "$$",
      r.latex.join(" \\\\\n"),
      "$$",
      "",
      ...(back ? ["Backward:", "", "$$", back.latex.join(" \\\\\n"), "$$", ""] : []),
      ...[...r.inputs, ...r.parameters].map(
        (a) => `- \`${a.name}\`: [${a.shape.join(", ")}] — ${a.doc}`,
      ),
      ...r.outputs.map((o) => `- output \`${o.name}\`: [${o.shape.join(", ")}] — ${o.doc}`),
    ].join("\n");
  }
  {
    const lines = [r.signature, `  ${r.description}`, ""];
    for (const l of r.text) lines.push(`  ${l}`);
    if (back) {
      lines.push("", "  backward:");
      for (const l of back.text) lines.push(`  ${l}`);
    }
    lines.push("");
    for (const a of r.inputs)
      lines.push(
        `  input      ${a.name.padEnd(22)} [${a.shape.join(", ")}]${a.dtype === "int" ? " int" : ""}  ${a.doc}`,
      );
    for (const a of r.parameters)
      lines.push(`  parameter  ${a.name.padEnd(22)} [${a.shape.join(", ")}]  ${a.doc}`);
    for (const o of r.outputs)
      lines.push(`  output     ${o.name.padEnd(22)} [${o.shape.join(", ")}]  ${o.doc}`);
    const hp = r.hyperparameters;
    if (hp.length > 0) {
      lines.push("");
      for (const h of hp)
        lines.push(
          `  ${h.name.padEnd(12)} ${h.kind.padEnd(8)} ` +
            `${h.default === undefined ? "(required)" : `= ${JSON.stringify(h.default)}`}` +
            `${h.choices ? `  {${h.choices.join(", ")}}` : ""}  ${h.doc}`,
        );
    }
    if (r.relations.length > 0) lines.push("", `  relations: ${r.relations.join("; ")}`);
    if (r.parameterCount)
      lines.push(
        "",
        `  parameters: ${r.parameterCount.symbolic}` +
          `${r.parameterCount.value !== undefined ? ` = ${r.parameterCount.value.toLocaleString("en-US")}` : ""}`,
      );
    for (const n of r.notes) lines.push(`  note: ${n}`);
    return lines.join("\n");
  }
}

/** A preset names model hyperparameters; a formula takes the ones it knows. */
function filterKnown(
  known: string[],
  cfg: Record<string, number | string | boolean>,
): Record<string, number | string | boolean> {
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
