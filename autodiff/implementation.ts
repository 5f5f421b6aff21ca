/**
 * The seam that makes specformer a verifier: an Implementation maps formula names (the spec
 * registry's) to a forward function and, optionally, a vector-Jacobian product.
 *
 * The reference (autodiff interpreting the spec) is one Implementation; a user's TypeScript
 * functions, a tfjs model and an external process speaking the JSON-lines protocol are others.
 * Golden checks and property laws take any Implementation and never ask who computed the numbers.
 */
import type { DType, NamedTensors } from "./tensor.js";
import type { Capabilities } from "./capabilities.js";

/** Hyperparameters of one formula call (`H`, `eps`, `causal`, `activation`, variant switches...). */
export type FormulaConfig = Readonly<Record<string, number | string | boolean>>;

export interface ForwardRequest {
  /** Registry name, e.g. `"layer_norm"`. */
  readonly formula: string;
  readonly config: FormulaConfig;
  /** Every argument of the formula (inputs and parameters alike), by registry name. */
  readonly inputs: NamedTensors;
}

export interface ForwardResult {
  /**
   * Every output of the formula by registry name. An implementation may add intermediate
   * outputs under documented names (e.g. `h.0.y` for the output of block 0), which the
   * verifier uses to localise a divergence.
   */
  readonly outputs: NamedTensors;
}

export interface BackwardRequest extends ForwardRequest {
  /** A cotangent for each output that the gradient is taken of: grads = Σ out ⊙ cot, differentiated. */
  readonly cotangents: NamedTensors;
}

export interface BackwardResult {
  /** Gradient with respect to each differentiable argument, by argument name. */
  readonly grads: NamedTensors;
}

export interface Implementation {
  readonly name: string;
  /** Formula names this implementation computes. */
  readonly formulas: readonly string[];
  /** `true`: every formula has a VJP; `false`: none; a list: those formulas do. */
  readonly backward: boolean | readonly string[];
  readonly dtypes: readonly DType[];
  /**
   * Per formula, the configurations it supports (dtypes, hyperparameter values, dim limits);
   * absent: everything. See autodiff/capabilities.ts.
   */
  readonly capabilities?: Capabilities;
  forward(req: ForwardRequest): Promise<ForwardResult>;
  backwardPass?(req: BackwardRequest): Promise<BackwardResult>;
  /** Release resources (an external process, workers). Idempotent. */
  close?(): Promise<void>;
}

export function supportsBackward(impl: Implementation, formula: string): boolean {
  if (impl.backwardPass === undefined) return false;
  if (impl.backward === true) return impl.formulas.includes(formula);
  if (impl.backward === false) return false;
  return impl.backward.includes(formula);
}

/** The error an Implementation raises when it cannot be driven (crashed, hung, answered garbage). */
export class ImplementationError extends Error {
  override name = "ImplementationError";
  constructor(message: string, readonly detail?: { stderrTail?: string; line?: string }) {
    super(message);
  }
}
