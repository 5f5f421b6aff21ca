/**
 * The seam that makes specformer a verifier: an Implementation maps formula names (the spec
 * registry's) to a forward function and, optionally, a vector-Jacobian product.
 *
 * The reference (autodiff interpreting the spec) is one Implementation; a user's TypeScript
 * functions, a tfjs model and an external process speaking the JSON-lines protocol are others.
 * Golden checks and property laws take any Implementation and never ask who computed the numbers.
 */
import type { DType, FloatDType, NamedTensors } from "./tensor.js";
import type { Capabilities } from "./capabilities.js";

/** Hyperparameters of one formula call (`H`, `eps`, `causal`, `activation`, variant switches...). */
export type FormulaConfig = Readonly<Record<string, number | string | boolean>>;

/** A request to compute one formula's outputs for the given configuration and arguments. */
export interface ForwardRequest {
  /** Registry name, e.g. `"layer_norm"`. */
  readonly formula: string;
  /**
   * The formula's hyperparameters; an absent one takes its docs/NAMES.md default. `dtype`
   * (`f64`/`f32`) is present when no
   * float argument carries the precision (`causal_mask`); otherwise compute in the float arguments' dtype.
   */
  readonly config: FormulaConfig;
  /** Every argument of the formula (inputs and parameters alike), by registry name. */
  readonly inputs: NamedTensors;
}

/**
 * The precision a request asks for: `config.dtype` when given (formulas without float inputs,
 * such as causal_mask, need it), else float32 when any float input is float32, else float64.
 */
export function requestDType(req: Pick<ForwardRequest, "config" | "inputs">): FloatDType {
  const d = req.config["dtype"];
  if (d === "f32" || d === "f64") return d;
  return Object.values(req.inputs).some((t) => t.dtype === "f32") ? "f32" : "f64";
}

/** The answer to a {@link ForwardRequest}. */
export interface ForwardResult {
  /**
   * Every output of the formula by registry name. An implementation may add intermediate
   * outputs under documented names (e.g. `h.0.y` for the output of block 0), which the
   * verifier uses to localise a divergence.
   */
  readonly outputs: NamedTensors;
}

/** A request for the vector-Jacobian product of one formula: its forward request plus cotangents of its outputs. */
export interface BackwardRequest extends ForwardRequest {
  /** A cotangent for each output that the gradient is taken of: grads = Σ out ⊙ cot, differentiated. */
  readonly cotangents: NamedTensors;
}

/** The answer to a {@link BackwardRequest}. */
export interface BackwardResult {
  /** Gradient with respect to each differentiable argument, by argument name. */
  readonly grads: NamedTensors;
}

/**
 * An implementation under test: the formulas it computes, a forward function and, optionally, a vector-Jacobian
 * product (`backwardPass`). Requests and results name tensors by the registry's argument and output names.
 */
export interface Implementation {
  /** Shown in reports. */
  readonly name: string;
  /** Formula names this implementation computes. */
  readonly formulas: readonly string[];
  /** `true`: every formula has a VJP; `false`: none; a list: those formulas do. */
  readonly backward: boolean | readonly string[];
  /** The float precisions it computes in (`f64`, `f32`). */
  readonly dtypes: readonly DType[];
  /**
   * Per formula, the configurations it supports (dtypes, hyperparameter values, dim limits);
   * absent: everything. See autodiff/capabilities.ts.
   */
  readonly capabilities?: Capabilities;
  /** Compute a formula's outputs. */
  forward(req: ForwardRequest): Promise<ForwardResult>;
  /** Compute the gradients of Σ out ⊙ cot with respect to the formula's differentiable arguments. */
  backwardPass?(req: BackwardRequest): Promise<BackwardResult>;
  /** Release resources (an external process, workers). Idempotent. */
  close?(): Promise<void>;
}

/** Whether `impl` computes a VJP for `formula`: it has a `backwardPass`, and `backward` covers the formula. */
export function supportsBackward(impl: Implementation, formula: string): boolean {
  if (impl.backwardPass === undefined) return false;
  if (impl.backward === true) return impl.formulas.includes(formula);
  if (impl.backward === false) return false;
  return impl.backward.includes(formula);
}

/**
 * What went wrong with a request, decided where it happened (never from message text):
 * - `declined`: the implementation answered with an error (an unsupported configuration) and
 *   keeps running;
 * - `protocol`: it answered something the protocol does not allow (garbage, a malformed tensor,
 *   a wrong or repeated id);
 * - `crash`: it exited, was killed, or could not be started;
 * - `timeout`: it did not answer in time;
 * - `stopped`: the request was not sent because the implementation had been stopped (by an
 *   earlier fault, or by `close()`);
 * - `failed`: anything else it raised (an in-process implementation's exception, a request it
 *   cannot take).
 * All but `declined` are faults.
 */
export type ImplementationErrorKind =
  | "declined"
  | "protocol"
  | "crash"
  | "timeout"
  | "stopped"
  | "failed";

export interface ImplementationErrorDetail {
  readonly kind?: ImplementationErrorKind;
  readonly stderrTail?: string;
  readonly line?: string;
}

/** The error an Implementation raises when it declines a request or cannot be driven. */
export class ImplementationError extends Error {
  override name = "ImplementationError";
  /** How the request failed; `failed` unless the raiser says otherwise. */
  readonly kind: ImplementationErrorKind;
  constructor(
    message: string,
    readonly detail?: ImplementationErrorDetail,
  ) {
    super(message);
    this.kind = detail?.kind ?? "failed";
  }
}
