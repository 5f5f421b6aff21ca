/**
 * Capabilities: what part of a formula's configuration space an implementation supports, as it
 * declares it (a process in its `hello` answer, docs/PROTOCOL.md; an in-process implementation
 * in `Implementation.capabilities`). No declaration means everything the formula admits.
 *
 * A declaration per formula may restrict
 * - `dtypes`: the precisions it computes that formula in (within the implementation's dtypes);
 * - `config`: hyperparameter values, as a list of allowed values or a numeric `{min, max}` range;
 * - `dims`: sizes of the formula's dims (`n`, `m`, `d_model`, `H`, `H_kv`, …) as a `{min, max}`
 *   range and/or `equals` another dim (`{"m": {"equals": "n"}}`: self-attention only).
 *
 * The verifier asks {@link admits} before it sends a request: golden cases, gradient checks and
 * law cases outside the declared space are not sent (they are counted as outside the declared
 * space, not as declined), and law generation is steered inside it.
 */
import "../spec/index.js";
import { getFormula, hasFormula } from "../spec/formula.js";
import type { FloatDType, NamedTensors } from "./tensor.js";
import type { FormulaConfig, Implementation } from "./implementation.js";
import { formulaGraph } from "./graph.js";
import { plan } from "./evaluate.js";

export type ConfigValue = number | string | boolean;

/** Allowed values of a hyperparameter: a list, or a numeric closed range. */
export type ValueRule = readonly ConfigValue[] | { readonly min?: number; readonly max?: number };

/** Allowed sizes of a dim: a closed range, and/or equal to another dim. */
export interface DimRule {
  readonly min?: number;
  readonly max?: number;
  readonly equals?: string;
}

export interface FormulaCapability {
  readonly dtypes?: readonly FloatDType[];
  readonly config?: Readonly<Record<string, ValueRule>>;
  readonly dims?: Readonly<Record<string, DimRule>>;
}

/** Formula name → its declared capability (formulas without an entry support everything). */
export type Capabilities = Readonly<Record<string, FormulaCapability>>;

/** One request, as far as a capability can judge it. */
export interface CapabilityQuery {
  readonly formula: string;
  readonly config: FormulaConfig;
  readonly dtype: FloatDType;
  /** Sizes of the formula's dims; computed from `inputs` when absent. */
  readonly dims?: Readonly<Record<string, number>>;
  readonly inputs?: NamedTensors;
}

/** Whether a value satisfies a rule. */
export function valueAllowed(rule: ValueRule, v: ConfigValue | undefined): boolean {
  if (Array.isArray(rule)) return (rule as readonly ConfigValue[]).some((x) => x === v);
  const r = rule as { min?: number; max?: number };
  if (typeof v !== "number") return false;
  return (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max);
}

/** The hyperparameter's value in a request: given, or the registry's default. */
function configValue(
  formula: string,
  config: FormulaConfig,
  name: string,
): ConfigValue | undefined {
  const v = config[name];
  if (v !== undefined) return v;
  if (!hasFormula(formula)) return undefined;
  const h = getFormula(formula).hyper.find((x) => x.name === name);
  return h?.default as ConfigValue | undefined;
}

const bound = new Map<string, ReturnType<typeof formulaGraph> | null>();

/** Sizes of every dim of a formula bound from its arguments' shapes (undefined when they do not fit). */
function requestDims(
  formula: string,
  config: FormulaConfig,
  inputs: NamedTensors,
): Record<string, number> | undefined {
  if (!hasFormula(formula)) return undefined;
  const def = getFormula(formula);
  const known: Record<string, ConfigValue> = {};
  for (const h of def.hyper) if (config[h.name] !== undefined) known[h.name] = config[h.name]!;
  const key = `${formula}|${JSON.stringify(known)}`;
  let g = bound.get(key);
  if (g === undefined) {
    try {
      g = formulaGraph(formula, known);
    } catch {
      g = null;
    }
    bound.set(key, g);
  }
  if (g === null) return undefined;
  try {
    const dims = plan(g, inputs).binding.dims;
    return Object.fromEntries(dims);
  } catch {
    return undefined;
  }
}

/**
 * Why a request lies outside the implementation's declared capability, or undefined when it is
 * inside (or nothing is declared). Dim hyperparameters (`H`, `H_kv`, `L`) are judged as dims too;
 * an absent `H_kv` is `H` and an absent `m` is `n` (the registry's defaults).
 */
export function outsideCapability(
  impl: Pick<Implementation, "capabilities">,
  q: CapabilityQuery,
): string | undefined {
  const cap = impl.capabilities?.[q.formula];
  if (cap === undefined) return undefined;
  if (cap.dtypes !== undefined && !cap.dtypes.includes(q.dtype))
    return `${q.formula} is declared for ${cap.dtypes.join(", ")} only, not ${q.dtype}`;
  for (const [name, rule] of Object.entries(cap.config ?? {})) {
    const v = configValue(q.formula, q.config, name);
    if (v === undefined && !Array.isArray(rule)) continue;
    if (!valueAllowed(rule, v))
      return `${q.formula} is declared for ${name} ${describeRule(rule)} only, not ${name} = ${String(v)}`;
  }
  const rules = Object.entries(cap.dims ?? {});
  if (rules.length === 0) return undefined;
  const env: Record<string, number> = {
    ...(q.dims ??
      (q.inputs !== undefined ? requestDims(q.formula, q.config, q.inputs) : undefined) ??
      {}),
  };
  for (const [k, v] of Object.entries(q.config))
    if (typeof v === "number" && env[k] === undefined) env[k] = v;
  if (env["H_kv"] === undefined && env["H"] !== undefined) env["H_kv"] = env["H"];
  if (env["m"] === undefined && env["n"] !== undefined) env["m"] = env["n"]! + (env["p"] ?? 0);
  for (const [name, rule] of rules) {
    const v = env[name];
    if (v === undefined) continue;
    if (rule.min !== undefined && v < rule.min)
      return `${q.formula} is declared for ${name} ≥ ${rule.min} only, not ${name} = ${v}`;
    if (rule.max !== undefined && v > rule.max)
      return `${q.formula} is declared for ${name} ≤ ${rule.max} only, not ${name} = ${v}`;
    if (rule.equals !== undefined && env[rule.equals] !== undefined && env[rule.equals] !== v) {
      return (
        `${q.formula} is declared for ${name} = ${rule.equals} only, not ` +
        `${name} = ${v} with ${rule.equals} = ${env[rule.equals]}`
      );
    }
  }
  return undefined;
}

function describeRule(rule: ValueRule): string {
  if (Array.isArray(rule)) return `∈ {${(rule as readonly ConfigValue[]).map(String).join(", ")}}`;
  const r = rule as { min?: number; max?: number };
  return r.min !== undefined && r.max !== undefined
    ? `in [${r.min}, ${r.max}]`
    : r.min !== undefined
      ? `≥ ${r.min}`
      : `≤ ${r.max}`;
}
