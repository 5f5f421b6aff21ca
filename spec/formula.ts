/**
 * Formula definitions and the registry. A formula is declared once: its description, arguments,
 * outputs and hyperparameters (the public names of docs/NAMES.md), dim relations, and a `build`
 * function composing primitives and other formulas. Everything else — evaluation, gradients,
 * rendering, golden and property checks — interprets that declaration.
 */
import { dim, type Dim } from "./dims.js";
import { Expr, input, make, param } from "./expr.js";
import type { Config, Constraint, HyperValue, Label, Node } from "./node.js";
import { withScope } from "./shape.js";

/**
 * A formula declaration or call is invalid: unknown formula or hyperparameter, bad value, missing
 * or unknown argument, malformed relation.
 */
export class FormulaError extends Error {
  override name = "FormulaError";
}

/** One argument of a formula: an input (data) or a param (learned weight), with its symbolic shape. */
export interface ArgSpec {
  readonly name: string;
  /** Symbolic shape, e.g. `["...", "n", "d_model"]`. */
  readonly shape: readonly string[];
  /** `input`: data fed to the formula; `param`: a learned weight. */
  readonly role: "input" | "param";
  /** Integer ids (tokens, targets): never differentiated. */
  readonly int?: boolean;
  /** One-line description, shown in rendered documents. */
  readonly doc: string;
  /** Display symbol, default the name (`\gamma` for gamma, `W_Q` → `W_Q`). */
  readonly latex?: string;
}

/** One output of a formula, with its symbolic shape (same conventions as {@link ArgSpec.shape}). */
export interface OutputSpec {
  readonly name: string;
  readonly shape: readonly string[];
  readonly doc: string;
}

/** The value types a hyperparameter may declare. */
export type HyperKind = "number" | "integer" | "boolean" | "enum" | "dims";

/**
 * One hyperparameter of a formula: its kind, default, accepted values and documentation. Declared
 * once, `as const` (or inferred as constants by {@link defineFormula}), so that the formula's
 * configuration type ({@link ConfigOf}), key list, validation and arbitraries derive from it.
 */
export interface HyperSpec {
  readonly name: string;
  /**
   * `dims`: a comma- or space-separated list of dims ("B,1,H"; "" or "none": no axes; "..." the
   * batch prefix, first only).
   */
  readonly kind: HyperKind;
  readonly default?: HyperValue;
  /** The accepted values of an `enum`. */
  readonly choices?: readonly string[];
  readonly doc: string;
  /** The hyperparameter is also a dim of the same name (H, n, d_model...). */
  readonly dim?: boolean;
  /** Largest value accepted (integers; default {@link MAX_DIM_SIZE} for a dim), with why in `doc`. */
  readonly max?: number;
  /**
   * A dim hyperparameter the build uses only as a dim (in shapes and dim values), never as a
   * number it branches on or computes with: built with its own name in place of the size, the
   * graph is the same for every size, and the size is bound when planning ({@link sizeFreeConfig}).
   */
  readonly sizeOnly?: boolean;
  /**
   * Values the property laws vary a number or integer over (default first, so a failure shrinks
   * back to it). A number or integer without them is held at its default.
   */
  readonly values?: readonly number[];
  /** The laws hold it at its default unless one chooses it (a convention with laws of its own). */
  readonly held?: boolean;
  /**
   * `false`: not part of a model's configuration (reference/model.ts `GPTConfig`): a switch of one
   * evaluation (a decoding step, position ids, training dropout) or one the model derives (the
   * causal mask of a language model, rotary dims from rotary_pct).
   */
  readonly inModel?: false;
}

/**
 * The value type of one declared hyperparameter. A dim may also be the caller's dim expression
 * ("p+n") inside another formula's body (`D`); at the top level it is a size (`D = number`).
 */
export type HyperValueOf<S extends HyperSpec, D = number | string> = S extends {
  readonly dim: true;
}
  ? D
  : S extends { readonly kind: "enum"; readonly choices: readonly (infer C extends string)[] }
    ? C
    : S extends { readonly kind: "boolean" }
      ? boolean
      : S extends { readonly kind: "dims" }
        ? string
        : number;

type WithDefault<S> = S extends { readonly default: HyperValue } ? S : never;
type WithoutDefault<S> = S extends { readonly default: HyperValue } ? never : S;

/**
 * A formula's resolved configuration, typed from its declarations: a hyperparameter with a
 * default is always present (resolution fills it), one without is optional.
 */
export type ConfigOf<
  Hs extends readonly HyperSpec[],
  D = number | string,
> = string extends Hs[number]["name"] ? Config : KnownConfigOf<Hs, D>;

type KnownConfigOf<Hs extends readonly HyperSpec[], D = number | string> = {
  readonly [S in WithDefault<Hs[number]> as S["name"]]: HyperValueOf<S, D>;
} & {
  readonly [S in WithoutDefault<Hs[number]> as S["name"]]?: HyperValueOf<S, D>;
};

/** A configuration as a caller gives it: every hyperparameter optional (defaults fill the rest). */
export type ConfigInputOf<Hs extends readonly HyperSpec[]> = string extends Hs[number]["name"]
  ? Config
  : Partial<KnownConfigOf<Hs>>;

/** The names of declared hyperparameters. */
export type HyperName<Hs extends readonly HyperSpec[]> = Hs[number]["name"];

/** Declarations without the named ones, keeping their literal types (gpt's own `positions`). */
export function omitHyper<const Hs extends readonly HyperSpec[], const K extends HyperName<Hs>>(
  hyper: Hs,
  names: readonly K[],
): Exclude<Hs[number], { readonly name: K }>[] {
  const kept = hyper.filter((h) => !(names as readonly string[]).includes(h.name));
  return kept as Exclude<Hs[number], { readonly name: K }>[];
}

/**
 * Largest size of any integer dim hyperparameter: 2^20 = 1,048,576 (GPT-2's V is 50,257, the
 * widest public models have d_model 16,384). Checked before a graph is built, so that a typo
 * (`d_model=1e9`) is an error naming the bound rather than minutes of work and gigabytes.
 */
export const MAX_DIM_SIZE = 2 ** 20;

/** A custom VJP written as spec graph (JAX's custom_vjp): gradients for each differentiable argument. */
export type CustomVjp<C = Config> = (ctx: {
  readonly args: Readonly<Record<string, Expr>>;
  readonly out: Expr;
  readonly cot: Expr;
  readonly config: C;
}) => Readonly<Record<string, Expr | undefined>>;

/** A value a formula computed or was given: its shape and row-major entries. */
export interface ValueView {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** A formula's argument values and its float64 output values, by name. */
export interface FormulaValues {
  readonly args: Readonly<Record<string, ValueView | undefined>>;
  readonly outputs: Readonly<Record<string, ValueView | undefined>>;
}

/**
 * A formula's declaration: name, description, hyperparameters, arguments and outputs (as functions of the
 * resolved configuration), dim relations, and the `build` function composing primitives and other formulas.
 * `N` and `Hs` are the literal name and hyperparameter declarations ({@link defineFormula} infers
 * them), so every function of the declaration reads a typed configuration ({@link ConfigOf}).
 */
export interface FormulaDef<
  N extends string = string,
  Hs extends readonly HyperSpec[] = readonly HyperSpec[],
> {
  readonly name: N;
  /** One line. */
  readonly description: string;
  readonly category: "core" | "position" | "block" | "model";
  readonly hyper: Hs;
  /**
   * Hyperparameters of a more general formula that this one fixes (block_pre_ln is block with
   * placement pre): not declared here, but a request may state them if it states them right.
   */
  readonly implied?: Config;
  // Method syntax: a declaration with typed configurations is still a FormulaDef of the registry.
  args(cfg: ConfigOf<Hs>): readonly ArgSpec[];
  outputs(cfg: ConfigOf<Hs>): readonly OutputSpec[];
  /** Dim relations such as `d_model = H*d_k` (checked, and solved in either direction, at binding). */
  relations?(cfg: ConfigOf<Hs>): readonly string[];
  /**
   * A constraint between switches that each hyperparameter's own check cannot see (parallel
   * attention + FFN needs pre-LN placement): what is wrong, or undefined. {@link resolveConfig}
   * runs it on the resolved configuration, so every caller of the registry gets the same error.
   */
  check?(cfg: ConfigOf<Hs>): string | undefined;
  /**
   * The formula's body: spec expressions for each output, given the argument expressions and the
   * resolved configuration.
   */
  build(args: Readonly<Record<string, Expr>>, cfg: ConfigOf<Hs>): Readonly<Record<string, Expr>>;
  /** How a call to this formula is displayed (`\mathrm{softmax}`, `M`); default `\mathrm{name}`. */
  readonly symbol?: Label;
  /** Display a call as this symbol alone, without arguments (the mask `M`). */
  readonly symbolOnly?: boolean;
  /**
   * Z per output: the magnitude of intermediate terms the formula's last stages subtract from each
   * other where a probe of the arguments cannot see the cancellation (a tolerance allows an
   * absolute γ_K·u·Z on top of what the probe measures, properties/tolerance.ts). Declared with
   * its derivation beside the formula; outputs without such a cancellation are left out.
   */
  cancelled?(values: FormulaValues, cfg: ConfigOf<Hs>): Readonly<Record<string, number>>;
  /** A VJP rule in spec terms; the composition's own gradient is used when absent. */
  vjp?(ctx: Parameters<CustomVjp<ConfigOf<Hs>>>[0]): ReturnType<CustomVjp>;
  /** Notes shown in rendered documents (fully-masked rows, conventions). */
  readonly notes?: readonly string[];
  /** A small configuration that runs (tests, docs, gradcheck); merged over the defaults. */
  readonly example?: ConfigInputOf<Hs>;
  /** Sizes for the example when the defaults do not fit (RoPE needs an even d_k). */
  readonly exampleDims?: Readonly<Record<string, number>>;
}

const REGISTRY = new Map<string, FormulaDef>();

/**
 * Register a formula and return its declaration unchanged.
 * @throws FormulaError if a formula of the same name is already registered.
 */
export function defineFormula<const N extends string, const Hs extends readonly HyperSpec[]>(
  def: FormulaDef<N, Hs>,
): FormulaDef<N, Hs> {
  if (REGISTRY.has(def.name)) throw new FormulaError(`formula ${def.name} is defined twice`);
  REGISTRY.set(def.name, def as unknown as FormulaDef);
  return def;
}

/**
 * The registered formula of this name.
 * @throws FormulaError if there is none; the message lists close and known names.
 */
export function getFormula(name: string): FormulaDef {
  const f = REGISTRY.get(name);
  if (f === undefined) {
    const known = [...REGISTRY.keys()].sort();
    const close = known.filter(
      (k) => k.includes(name) || name.includes(k) || editDistance(k, name) <= 2,
    );
    throw new FormulaError(
      `unknown formula "${name}"${close.length > 0 ? ` (did you mean ${close.join(", ")}?)` : ""}; ` +
        `known formulas: ${known.join(", ")}`,
    );
  }
  return f;
}

/** Whether a formula of this name is registered. */
export function hasFormula(name: string): boolean {
  return REGISTRY.has(name);
}

/** The names of all registered formulas, in registration order. */
export function formulaNames(): string[] {
  return [...REGISTRY.keys()];
}

/** The registered formulas of one category (`block`: block, block_post_ln, block_pre_ln). */
export function formulasOf(category: FormulaDef["category"]): string[] {
  return [...REGISTRY.values()].filter((f) => f.category === category).map((f) => f.name);
}

/** Fill defaults and validate a configuration against the formula's hyperparameters. */
export function resolveConfig(def: FormulaDef, cfg: Config = {}): Config {
  const out: Record<string, HyperValue> = {};
  const known = new Map(def.hyper.map((h) => [h.name, h]));
  for (const k of Object.keys(cfg)) {
    if (!known.has(k)) {
      const names = def.hyper.map((h) => h.name);
      const close = closest(k, names);
      const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
      const takes = names.join(", ") || "none";
      throw new FormulaError(
        `formula ${def.name} has no hyperparameter "${k}"${hint}; it takes ${takes}`,
      );
    }
  }
  for (const h of def.hyper) {
    const v = cfg[h.name] ?? h.default;
    if (v === undefined) continue;
    const bad = (want: string) =>
      new FormulaError(
        `formula ${def.name}: hyperparameter ${h.name} must be ${want}, got ${JSON.stringify(v)}`,
      );
    if (h.dim === true && typeof v === "string") {
      // Inside another formula's body a dim hyperparameter may name the caller's dim ("n", "p+n").
      try {
        dim(v);
      } catch {
        throw bad("a non-negative integer or a dim expression");
      }
      out[h.name] = v;
      continue;
    }
    switch (h.kind) {
      case "number":
        if (typeof v !== "number" || !Number.isFinite(v)) throw bad("a finite number");
        break;
      case "integer": {
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
          throw bad("a non-negative integer");
        const max = h.max ?? (h.dim === true ? MAX_DIM_SIZE : undefined);
        if (max !== undefined && v > max) {
          throw new FormulaError(
            `formula ${def.name}: hyperparameter ${h.name} (${h.doc}) is ${v}, ` +
              `above the limit of ${max}${h.max === undefined ? " for any dim" : ""}`,
          );
        }
        break;
      }
      case "boolean":
        if (typeof v !== "boolean") throw bad("true or false");
        break;
      case "enum":
        if (typeof v !== "string" || !(h.choices ?? []).includes(v))
          throw bad(`one of ${(h.choices ?? []).join(", ")}`);
        break;
      case "dims":
        // a single size given as a number on a command line ("a_batch=1") is that dim
        if (typeof v === "number" && Number.isInteger(v) && v >= 0) {
          out[h.name] = String(v);
          continue;
        }
        if (typeof v !== "string")
          throw bad(
            `a comma-separated list of dims ("B,1,H", "..." first for the batch prefix, "" or "none" for none)`,
          );
        try {
          parseDimList(v);
        } catch (e) {
          throw bad(
            `a comma-separated list of dims ("B,1,H", "..." first for the batch ` +
              `prefix, "" or "none" for none): ${(e as Error).message}`,
          );
        }
        break;
    }
    out[h.name] = v;
  }
  const wrong = def.check?.(out);
  if (wrong !== undefined) throw new FormulaError(`formula ${def.name}: ${wrong}`);
  return out;
}

/**
 * The part of a caller's configuration that a formula declares: how a formula passes its own
 * switches on to a formula it calls (a block's to mha, gpt's to each block) without listing them.
 */
export function sharedConfig(callee: string, cfg: Config): Record<string, HyperValue> {
  const out: Record<string, HyperValue> = {};
  for (const h of getFormula(callee).hyper) {
    const v = cfg[h.name];
    if (v !== undefined) out[h.name] = v;
  }
  return out;
}

/**
 * A hyperparameter without a default that a formula needs.
 * @throws FormulaError naming the formula and the key when it is absent.
 */
export function required<T extends HyperValue>(v: T | undefined, formula: string, key: string): T {
  if (v === undefined) {
    throw new FormulaError(`formula ${formula}: hyperparameter ${key} is required`);
  }
  return v;
}

/**
 * The dims of a `dims` hyperparameter, comma- or space-separated: `"..., H, 1"` → `["...", "H",
 * "1"]`; `""` or `"none"` → `[]`.
 */
export function parseDimList(v: string): string[] {
  if (v.trim() === "" || v.trim() === "none") return [];
  const items = v.trim().split(/\s*,\s*|\s+/);
  items.forEach((t, i) => {
    if (t === "...") {
      if (i > 0) throw new FormulaError(`"..." (the batch prefix) may only come first, in "${v}"`);
      return;
    }
    if (t === "") throw new FormulaError(`empty dim in "${v}"`);
    dim(t);
  });
  return items;
}

/** Hyperparameters that are dims, as a binding (`H = 8`). */
export function hyperDims(def: FormulaDef, cfg: Config): Map<string, number> {
  const m = new Map<string, number>();
  for (const h of def.hyper) {
    const v = cfg[h.name];
    if (h.dim === true && typeof v === "number") m.set(h.name, v);
  }
  return m;
}

/**
 * The configuration with every numeric `sizeOnly` dim hyperparameter replaced by its own name
 * (`n: 5` → `n: "n"`), defaults filled: one graph built from it serves every size, the sizes
 * coming from {@link hyperDims} of the concrete configuration when the graph is planned.
 */
export function sizeFreeConfig(def: FormulaDef, cfg: Config): Config {
  const out: Record<string, HyperValue> = { ...resolveConfig(def, cfg) };
  for (const h of def.hyper) {
    if (h.sizeOnly === true && typeof out[h.name] === "number") out[h.name] = h.name;
  }
  return out;
}

/**
 * A formula's graph built by {@link buildFormula}: its declaration, resolved configuration, leaves,
 * outputs and parsed dim relations.
 */
export interface BuiltFormula {
  readonly def: FormulaDef;
  readonly config: Config;
  /** Input and parameter leaves, by argument name. */
  readonly args: Readonly<Record<string, Expr>>;
  /** Output expressions, by output name; each is a `call` node of the formula on its leaves. */
  readonly outputs: Readonly<Record<string, Expr>>;
  /** The declared dim relations, as pairs of dims that must be equal. */
  readonly relations: readonly Constraint[];
}

/** Build a formula's graph over fresh input leaves. */
export function buildFormula(name: string, cfg: Config = {}): BuiltFormula {
  const def = getFormula(name);
  const config = resolveConfig(def, cfg);
  return withScope(name, () => {
    const args: Record<string, Expr> = {};
    for (const a of def.args(config)) {
      const label = { latex: a.latex ?? latexName(a.name), text: a.name };
      args[a.name] =
        a.role === "param"
          ? param(a.name, a.shape, { label })
          : input(a.name, a.shape, { int: a.int === true, label });
    }
    // Each output is a call of the formula on its leaves, so its custom VJP and fused kernel apply
    // at the top level too; renderers print the call's body as the definition.
    const body = def.build(args, config);
    const argNodes: Record<string, Node> = {};
    for (const [k, v] of Object.entries(args)) argNodes[k] = v.node;
    const outputs: Record<string, Expr> = {};
    for (const [o, b] of Object.entries(body))
      outputs[o] = make({
        op: "call",
        formula: name,
        config,
        args: argNodes,
        output: o,
        body: b.node,
      });
    return { def, config, args, outputs, relations: parseRelations(def, config) };
  });
}

export function parseRelations(def: FormulaDef, cfg: Config): Constraint[] {
  return (def.relations?.(cfg) ?? []).map((r) => {
    const [l, rhs, ...rest] = r.split("=");
    if (l === undefined || rhs === undefined || rest.length > 0)
      throw new FormulaError(`formula ${def.name}: relation "${r}" must be "a = b"`);
    return { a: dim(l), b: dim(rhs), why: `relation ${r.trim()} of formula ${def.name}` };
  });
}

/**
 * Apply a formula inside another formula's body: builds the callee's graph over the given
 * argument expressions and wraps each output in a `call` node.
 */
export function callFormula(
  name: string,
  args: Readonly<Record<string, Expr>>,
  cfg: Config = {},
): Record<string, Expr> {
  const def = getFormula(name);
  const config = resolveConfig(def, cfg);
  const specs = def.args(config);
  for (const s of specs) {
    if (!(s.name in args)) throw new FormulaError(`call to ${name}: missing argument ${s.name}`);
  }
  for (const k of Object.keys(args)) {
    if (!specs.some((s) => s.name === k))
      throw new FormulaError(
        `call to ${name}: unknown argument ${k}; it takes ${specs.map((s) => s.name).join(", ")}`,
      );
  }
  return withScope(name, () => {
    const outs = def.build(args, config);
    const argNodes: Record<string, Node> = {};
    for (const [k, v] of Object.entries(args)) argNodes[k] = v.node;
    const wrapped: Record<string, Expr> = {};
    for (const [o, body] of Object.entries(outs)) {
      wrapped[o] = make({
        op: "call",
        formula: name,
        config,
        args: argNodes,
        output: o,
        body: body.node,
      });
    }
    return wrapped;
  });
}

/** `callFormula` for single-output formulas. */
export function call1<S extends readonly string[] = readonly string[]>(
  name: string,
  args: Readonly<Record<string, Expr>>,
  cfg: Config = {},
): Expr<S> {
  const outs = callFormula(name, args, cfg);
  const vals = Object.values(outs);
  if (vals.length !== 1)
    throw new FormulaError(`formula ${name} has ${vals.length} outputs; use callFormula`);
  return vals[0] as Expr<S>;
}

const GREEK = new Set([
  "alpha",
  "beta",
  "gamma",
  "delta",
  "epsilon",
  "mu",
  "sigma",
  "phi",
  "theta",
  "lambda",
]);

/** `W_Q` → `W_Q`, `gamma` → `\gamma`, `b_1` → `b_1`, `h.0.ln_1.weight` → `\mathtt{h.0.ln\_1.weight}`. */
export function latexName(name: string): string {
  if (GREEK.has(name)) return `\\${name}`;
  if (/^[A-Za-z]$/.test(name)) return name;
  const m = /^([A-Za-z])_([A-Za-z0-9]+)$/.exec(name);
  if (m) return `${m[1]}_{${m[2]}}`;
  return `\\mathtt{${name.replace(/_/g, "\\_")}}`;
}

/** Sizes used for examples when nothing else fixes a dim: small, odd where allowed. */
export const EXAMPLE_DIMS: Readonly<Record<string, number>> = {
  n: 5,
  m: 5,
  d: 7,
  d_k: 3,
  d_v: 3,
  d_in: 5,
  d_out: 4,
  V: 11,
  n_ctx: 9,
  p: 3,
  d_ff: 10,
  H: 2,
};

/**
 * Concrete argument shapes for a formula: dims from the configuration, then `dims`, then the
 * declared relations (d_model = H*d_k), then EXAMPLE_DIMS.
 */
export function exampleShapes(
  name: string,
  cfg: Config = {},
  dims: Readonly<Record<string, number>> = {},
): Record<string, number[]> {
  const def = getFormula(name);
  const config = resolveConfig(def, { ...(def.example ?? {}), ...cfg });
  // sizes fixed by the configuration win over requested example dims
  const env = new Map<string, number>(Object.entries({ ...(def.exampleDims ?? {}), ...dims }));
  for (const [k, v] of hyperDims(def, config)) env.set(k, v);
  const rels = parseRelations(def, config);
  // a relation whose one side the configuration fixes decides its other side (d_k from d_model, H)
  const fixed = hyperDims(def, config);
  for (const r of rels) {
    const sideFixed = (d: Dim) => [...dimNames(d)].every((k) => fixed.has(k));
    if (sideFixed(r.a)) for (const k of dimNames(r.b)) if (!fixed.has(k)) env.delete(k);
    if (sideFixed(r.b)) for (const k of dimNames(r.a)) if (!fixed.has(k)) env.delete(k);
  }
  const fill = (defaults: boolean) => {
    for (let pass = 0; pass < 4; pass++) {
      for (const r of rels) {
        // solve either side for its one unknown (d_model = H·d_k gives d_k from d_model and H)
        const va = evalDimSafe(r.a, env);
        const vb = evalDimSafe(r.b, env);
        try {
          const s =
            va !== undefined && vb === undefined
              ? solveFor(r.b, va, env)
              : vb !== undefined && va === undefined
                ? solveFor(r.a, vb, env)
                : undefined;
          if (s !== undefined) env.set(s[0], s[1]);
        } catch {
          // an indivisible example size: leave it to the defaults (binding will report it)
        }
      }
    }
    if (defaults) for (const [k, v] of Object.entries(EXAMPLE_DIMS)) if (!env.has(k)) env.set(k, v);
  };
  fill(false);
  // d_k first (so d_model follows H·d_k), then everything else
  if (!env.has("d_k")) env.set("d_k", EXAMPLE_DIMS["d_k"]!);
  fill(true);
  fill(false);
  if (!env.has("d_model")) env.set("d_model", 6);
  if (!env.has("d_kv")) env.set("d_kv", env.get("d_model")!);
  if (!env.has("H_kv") && env.has("H")) env.set("H_kv", env.get("H")!);
  const out: Record<string, number[]> = {};
  for (const a of def.args(config)) {
    out[a.name] = a.shape
      .filter((d) => d !== "...")
      .map((d) => {
        const v = evalDimSafe(dim(d), env);
        if (v === undefined)
          throw new FormulaError(`exampleShapes(${name}): cannot size ${d} of ${a.name}`);
        return v;
      });
  }
  return out;
}

import { evalDim, dimNames, solveFor } from "./dims.js";
function evalDimSafe(d: Dim, env: ReadonlyMap<string, number>): number | undefined {
  try {
    return evalDim(d, env);
  } catch {
    return undefined;
  }
}

/** The formula's example configuration merged with `cfg`, defaults filled. */
export function exampleConfig(name: string, cfg: Config = {}): Config {
  const def = getFormula(name);
  return resolveConfig(def, { ...(def.example ?? {}), ...cfg });
}

/** The known name closest to `name` by edit distance, if within half its length (at least 2). */
export function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(name.length / 2)) + 1;
  for (const k of known) {
    const d = editDistance(k.toLowerCase(), name.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/** Levenshtein distance (for "did you mean" suggestions). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}
