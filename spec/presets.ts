/**
 * Named model configurations (hyperparameters of the `gpt` formula). The parameter counts in
 * the comments are what `specformer spec --config NAME` reports from the formula's arguments.
 */
import { editDistance } from "./formula.js";
import type { FormulaConfigInputs } from "./configs.js";

/** A preset: hyperparameters of the `gpt` formula, typed by its declarations. */
type Preset = FormulaConfigInputs["gpt"];

/** The sizes of tiny, seed-post-ln and llama-tiny: 2 layers of 2 heads, width 16, 96 tokens. */
const SMALL = { V: 96, n_ctx: 32, d_model: 16, H: 2, L: 2 } as const;

/** The model presets, by name: hyperparameters of the `gpt` formula (unset ones take the formula's defaults). */
export const PRESETS: Readonly<Record<string, Preset>> = {
  /** A model small enough for tests and gradient checks. */
  tiny: {
    ...SMALL,
    d_ff: 64,
    placement: "pre",
    activation: "gelu_tanh",
    positions: "learned",
    tied: true,
  },
  /** The seed's model: post-LN blocks, sinusoidal positions, GELU, tied logits. */
  "seed-post-ln": {
    ...SMALL,
    d_ff: 64,
    placement: "post",
    activation: "gelu",
    positions: "sinusoidal",
    tied: true,
  },
  /** GPT-2 small's shape: 124,439,808 parameters with tied embeddings. */
  "gpt2-small": {
    V: 50257,
    n_ctx: 1024,
    d_model: 768,
    H: 12,
    L: 12,
    d_ff: 3072,
    placement: "pre",
    activation: "gelu_tanh",
    positions: "learned",
    tied: true,
    eps: 1e-5,
  },
  /** A LLaMA-style small model: RMSNorm, SwiGLU, RoPE, no biases, untied. */
  "llama-tiny": {
    ...SMALL,
    d_ff: 44,
    placement: "pre",
    norm: "rms_norm",
    activation: "swiglu",
    positions: "rope",
    bias: false,
    tied: false,
    eps: 1e-6,
  },
};

/** The names of the presets, in declaration order. */
export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** The preset of that name, or undefined: own keys only, so `__proto__` or `constructor` is no preset. */
export function findPreset(name: unknown): Preset | undefined {
  return typeof name === "string" && Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
}

/** `unknown preset "tiy" (did you mean tiny?); presets: …` */
export function unknownPresetMessage(name: unknown): string {
  const names = presetNames();
  const s = typeof name === "string" ? name : "";
  const close =
    s === "" ? [] : names.filter((k) => k.includes(s) || s.includes(k) || editDistance(k, s) <= 2);
  return (
    `unknown preset ${JSON.stringify(name) ?? String(name)}` +
    `${close.length > 0 ? ` (did you mean ${close.join(", ")}?)` : ""}; ` +
    `presets: ${names.join(", ")}`
  );
}

/**
 * The preset of that name.
 * @throws Error if there is none; the message suggests close names and lists the presets.
 */
export function getPreset(name: string): Preset {
  const p = findPreset(name);
  if (p === undefined) throw new Error(unknownPresetMessage(name));
  return p;
}
