/**
 * The whole-pipeline document: every formula of the model in the order of the classic
 * description — text → tokens → embedding → positions → L blocks → logits → softmax → sampling —
 * with input/output shapes, parameters and a symbolic parameter count, and the count evaluated
 * for a named configuration.
 */
import { resolveConfigOf, type FormulaConfigs } from "./configs.js";
import type { Config } from "./node.js";
import { renderFormula, type RenderedFormula } from "./render.js";

export interface PipelineStep {
  readonly title: string;
  /** One paragraph in plain words. */
  readonly prose: string;
  /** Formulas shown in this step, with the configuration to render them under. */
  readonly formulas: readonly { name: string; config: Config }[];
}

/** The steps, in pipeline order. Dims stay symbolic where the formula allows it. */
function pipelineSteps(model: FormulaConfigs["gpt"]): PipelineStep[] {
  const H = model.H ?? 12;
  return [
    {
      title: "1. Text → tokens",
      prose:
        "Byte-level BPE (GPT-2): the text is split by GPT-2's pre-tokenization " +
        "pattern, each piece is encoded as UTF-8 bytes mapped to printable " +
        "characters, and merges are applied by rank. The result is a sequence of " +
        "ids t₁ … tₙ in [0, V).",
      formulas: [],
    },
    {
      title: "2. Embedding",
      prose:
        "Each id selects a row of the embedding matrix E ∈ R^{V×d_model}; the rows stack into X ∈ R^{n×d_model}.",
      formulas: [{ name: "embedding", config: {} }],
    },
    {
      title: "3. Positions",
      prose:
        "A position vector pᵢ is added: z⁽⁰⁾ᵢ = eᵢ + pᵢ, either fixed sinusoids " +
        "or a learned table (GPT-2). Variants move positions into attention " +
        "instead (RoPE rotates queries and keys; ALiBi adds a per-head linear bias).",
      formulas: [
        { name: "positional_sinusoidal", config: { n: "n", d_model: "d_model" } },
        { name: "positional_learned", config: { n: "n" } },
        { name: "rope", config: {} },
        { name: "alibi_bias", config: { H, n: "n" } },
      ],
    },
    {
      title: "4. L transformer blocks",
      prose:
        "Each block applies multi-head causal self-attention and a " +
        "position-wise feed-forward network, each wrapped in a residual " +
        "connection and LayerNorm. The seed's block normalises after each " +
        "residual (post-LN); GPT-2 normalises before each branch (pre-LN) and " +
        "adds a final LayerNorm.",
      formulas: [
        { name: "causal_mask", config: { n: "n", m: "n" } },
        { name: "softmax", config: {} },
        { name: "attention", config: {} },
        { name: "split_heads", config: { H } },
        { name: "merge_heads", config: {} },
        { name: "mha", config: { H } },
        { name: "layer_norm", config: {} },
        { name: "gelu", config: {} },
        { name: "gelu_tanh", config: {} },
        { name: "linear", config: {} },
        {
          name: "ffn",
          config: { activation: (model["activation"] as string) === "gelu" ? "gelu" : "gelu_tanh" },
        },
        { name: "block_post_ln", config: { H } },
        { name: "block_pre_ln", config: { H } },
      ],
    },
    {
      title: "5. Logits",
      prose:
        "The final representations are projected onto the vocabulary with the " +
        "transposed embedding matrix (weight tying: W_vocab = E).",
      formulas: [{ name: "logits", config: {} }],
    },
    {
      title: "6. Softmax and loss",
      prose:
        "A softmax over the vocabulary gives the next-token distribution; " +
        "training minimises the mean cross-entropy against the next tokens.",
      formulas: [
        { name: "log_softmax", config: {} },
        { name: "logsumexp", config: {} },
        { name: "cross_entropy", config: {} },
      ],
    },
    {
      title: "7. Sampling, autoregressively",
      prose:
        "The distribution at the last position chooses the next token — " +
        "greedily (argmax) or by sampling with a temperature, top-k and top-p — " +
        "and the token is appended to the input. With a KV cache only the new " +
        "token is run through the blocks; its queries attend to the cached keys " +
        "through a bottom-right-aligned causal mask.",
      formulas: [],
    },
  ];
}

export interface PipelineDocument {
  readonly config: { readonly name: string; readonly values: Config };
  readonly steps: readonly { title: string; prose: string; formulas: RenderedFormula[] }[];
  readonly model: RenderedFormula;
  readonly parameters: {
    readonly symbolic: string;
    readonly latex: string;
    readonly value: number | undefined;
  };
}

/**
 * The pipeline document for a model configuration: each step's formulas rendered, the whole `gpt` formula, and its
 * parameter count (symbolic, and evaluated when every dim is bound). `configName` only labels the document.
 * @throws FormulaError if `model` is not a valid configuration of the `gpt` formula.
 */
export function pipelineDocument(configName: string, model: Config): PipelineDocument {
  const cfg = resolveConfigOf("gpt", model);
  const steps = pipelineSteps(cfg).map((s) => ({
    title: s.title,
    prose: s.prose,
    formulas: s.formulas.map((f) => renderFormula(f.name, f.config)),
  }));
  const rendered = renderFormula("gpt", cfg);
  const pc = rendered.parameterCount!;
  return {
    config: { name: configName, values: cfg },
    steps,
    model: rendered,
    parameters: { symbolic: pc.symbolic, latex: pc.latex, value: pc.value },
  };
}

function shapeText(shape: readonly string[]): string {
  return `[${shape.join(", ")}]`;
}

/** The pipeline document as Markdown with LaTeX (`$$ … $$` blocks). */
export function pipelineMarkdown(
  doc: PipelineDocument,
  extras: { tokenExample?: string; backward?: Readonly<Record<string, readonly string[]>> } = {},
): string {
  const out: string[] = [];
  out.push(`# The GPT pipeline, formula by formula`, "");
  out.push(
    `Configuration \`${doc.config.name}\`: ${Object.entries(doc.config.values)
      .map(([k, v]) => `${k} = ${v}`)
      .join(", ")}.`,
    "",
  );
  for (const step of doc.steps) {
    out.push(`## ${step.title}`, "", step.prose, "");
    if (step.title.startsWith("1.") && extras.tokenExample) out.push(extras.tokenExample, "");
    for (const f of step.formulas) {
      out.push(`### \`${f.name}\` — ${f.description}`, "");
      out.push(
        "$$",
        ...f.latex.map((l, i) => (i < f.latex.length - 1 ? `${l} \\\\` : l)),
        "$$",
        "",
      );
      const rows: string[] = [];
      for (const a of f.inputs)
        rows.push(
          `| input | \`${a.name}\` | ${shapeText(a.shape)}${a.dtype === "int" ? " (int)" : ""} | ${a.doc} |`,
        );
      for (const a of f.parameters)
        rows.push(`| parameter | \`${a.name}\` | ${shapeText(a.shape)} | ${a.doc} |`);
      for (const o of f.outputs)
        rows.push(`| output | \`${o.name}\` | ${shapeText(o.shape)} | ${o.doc} |`);
      if (rows.length > 0)
        out.push("| role | name | shape | meaning |", "|---|---|---|---|", ...rows, "");
      if (f.parameterCount) out.push(`Parameters: $${f.parameterCount.latex}$.`, "");
      for (const n of f.notes) out.push(`> ${n}`, "");
      const back = extras.backward?.[f.name];
      if (back)
        out.push(
          "Backward pass (the VJP rule, itself a formula):",
          "",
          "$$",
          ...back.map((l, i) => (i < back.length - 1 ? `${l} \\\\` : l)),
          "$$",
          "",
        );
    }
  }
  out.push(`## The whole model`, "");
  out.push(
    "$$",
    ...doc.model.latex.slice(-4).map((l, i, a) => (i < a.length - 1 ? `${l} \\\\` : l)),
    "$$",
    "",
  );
  out.push(`Parameters, symbolically: $${doc.parameters.latex}$.`, "");
  if (doc.parameters.value !== undefined)
    out.push(
      `For \`${doc.config.name}\`: **${doc.parameters.value.toLocaleString("en-US")} parameters**.`,
      "",
    );
  return out.join("\n");
}

/** The pipeline document as Unicode text. */
export function pipelineText(
  doc: PipelineDocument,
  extras: { tokenExample?: string } = {},
): string {
  const out: string[] = [];
  out.push(`The GPT pipeline (${doc.config.name})`, "");
  for (const step of doc.steps) {
    out.push(step.title, "", `  ${step.prose}`, "");
    if (step.title.startsWith("1.") && extras.tokenExample)
      out.push(`  ${extras.tokenExample}`, "");
    for (const f of step.formulas) {
      out.push(`  ${f.signature}`);
      for (const l of f.text) out.push(`      ${l}`);
      const shapes = [
        ...f.inputs.map((a) => `${a.name} ${shapeText(a.shape)}`),
        ...f.parameters.map((a) => `${a.name} ${shapeText(a.shape)}`),
      ];
      if (shapes.length > 0)
        out.push(
          `      shapes: ${shapes.join(", ")} → ${f.outputs.map((o) => `${o.name} ${shapeText(o.shape)}`).join(", ")}`,
        );
      if (f.parameterCount) out.push(`      parameters: ${f.parameterCount.symbolic}`);
      out.push("");
    }
  }
  out.push("The whole model", "");
  for (const l of doc.model.text.slice(-4)) out.push(`  ${l}`);
  out.push("", `  parameters: ${doc.parameters.symbolic}`);
  if (doc.parameters.value !== undefined)
    out.push(`  ${doc.config.name}: ${doc.parameters.value.toLocaleString("en-US")} parameters`);
  return out.join("\n");
}
