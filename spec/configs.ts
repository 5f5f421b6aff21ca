/**
 * The typed configuration of every registered formula, derived from the declarations of
 * spec/formulas/ (each exported as `…Formula`): `FormulaConfigs["layer_norm"]` is
 * `{ eps: number; bias: boolean; normalized_axes: number }`, with no list of names or keys
 * written anywhere but the declarations themselves.
 */
import type * as core from "./formulas/core.js";
import type * as model from "./formulas/model.js";
import {
  FormulaError,
  getFormula,
  resolveConfig,
  type ConfigInputOf,
  type ConfigOf,
  type HyperSpec,
} from "./formula.js";
import type { Config } from "./node.js";

type Exports = typeof core & typeof model;
// Matched structurally: FormulaDef is invariant in its declarations (they type its functions).
type Declaration = Extract<
  Exports[keyof Exports],
  { readonly name: string; readonly hyper: readonly HyperSpec[]; readonly category: string }
>;
type NameOf<D> = D extends { readonly name: infer N extends string }
  ? string extends N
    ? never
    : N
  : never;
type HyperOf<D> = D extends { readonly hyper: infer Hs extends readonly HyperSpec[] } ? Hs : never;

/** Formula name → the formula's hyperparameter declarations, as declared. */
export type FormulaHypers = { [D in Declaration as NameOf<D>]: HyperOf<D> };
/** Every formula name the declarations state. */
export type FormulaName = keyof FormulaHypers;
/** Formula name → its resolved configuration (defaults present, see {@link ConfigOf}). */
export type FormulaConfigs = { [N in FormulaName]: ConfigOf<FormulaHypers[N]> };
/** Formula name → its resolved configuration at the top level, where every dim is a size. */
export type TopLevelConfigs = { [N in FormulaName]: ConfigOf<FormulaHypers[N], number> };
/** Formula name → a configuration as a caller gives it (every key optional). */
export type FormulaConfigInputs = { [N in FormulaName]: ConfigInputOf<FormulaHypers[N]> };
/** The resolved configuration of a formula named by a string that may not be a declared name. */
export type FormulaConfigOf<N extends string> = N extends FormulaName ? FormulaConfigs[N] : Config;

/**
 * The formula's configuration with defaults filled and every value checked against its
 * declaration, typed by the declaration.
 * @throws FormulaError naming the formula and the key (and the closest known key, or the
 * expected type and the value).
 */
export function resolveConfigOf<N extends FormulaName>(
  name: N,
  cfg: FormulaConfigInputs[N] | Config = {},
): FormulaConfigs[N] {
  return resolveConfig(getFormula(name), cfg as Config) as FormulaConfigs[N];
}

/**
 * {@link resolveConfigOf} for a formula evaluated at the top level (not inside another formula's
 * body), where a dim hyperparameter must be a size.
 * @throws FormulaError naming the dim when it is given as a dim expression.
 */
export function resolveTopLevel<N extends FormulaName>(
  name: N,
  cfg: FormulaConfigInputs[N] | Config = {},
): TopLevelConfigs[N] {
  const def = getFormula(name);
  const out = resolveConfig(def, cfg as Config);
  for (const h of def.hyper) {
    const v = out[h.name];
    if (h.dim === true && v !== undefined && typeof v !== "number") {
      const msg = `hyperparameter ${h.name} must be a size (a non-negative integer) here`;
      throw new FormulaError(`formula ${name}: ${msg}, got ${JSON.stringify(v)}`);
    }
  }
  return out as TopLevelConfigs[N];
}

/** The hyperparameter keys a formula declares, in declaration order. */
export function hyperKeys<N extends string>(
  name: N,
): (N extends FormulaName ? FormulaHypers[N][number]["name"] : string)[] {
  return getFormula(name).hyper.map((h) => h.name) as never;
}
