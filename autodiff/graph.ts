/**
 * A graph to evaluate: named leaves, named outputs, and the dim facts needed to bind sizes.
 * A built registry formula is one; so is its gradient (`grad` returns a Graph whose outputs are
 * `grad.<arg>`), which can be evaluated, rendered and differentiated again.
 */
import { buildFormula, hyperDims, type BuiltFormula } from "../spec/formula.js";
import type { Expr } from "../spec/expr.js";
import type { Config, Constraint } from "../spec/node.js";

/**
 * A graph to evaluate: named leaves (inputs, parameters, cotangents), named output expressions, and
 * the dim facts that bind
 * sizes (relations, hyperparameter dims). A built formula is one, and so is its gradient graph.
 */
export interface Graph {
  /** Formula name (or a description such as `grad(softmax)`), for messages and rendering. */
  readonly name: string;
  /** The formula's resolved hyperparameters. */
  readonly config: Config;
  /** Leaves by name: inputs, parameters, and (for gradient graphs) cotangents. */
  readonly args: Readonly<Record<string, Expr>>;
  readonly outputs: Readonly<Record<string, Expr>>;
  /** Pairs of dims that must be equal (`why` says where the relation comes from, for messages). */
  readonly relations: readonly Constraint[];
  /** Dims fixed by hyperparameters. */
  readonly hyper: ReadonlyMap<string, number>;
}

function graphOfBuilt(b: BuiltFormula): Graph {
  return {
    name: b.def.name,
    config: b.config,
    args: b.args,
    outputs: b.outputs,
    relations: b.relations,
    hyper: hyperDims(b.def, b.config),
  };
}

/** Build a registry formula as a Graph. */
export function formulaGraph(name: string, config: Config = {}): Graph {
  return graphOfBuilt(buildFormula(name, config));
}
