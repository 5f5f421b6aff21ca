/**
 * specformer: the GPT transformer as an executable, verified specification.
 *
 * This is the package's one entry point (`import … from "specformer"`). It names the public API:
 * the formula registry and its rendering, tensors, evaluation and gradients, gradient checking,
 * the reference model and tokenizer, golden cases (reading, writing, comparing), the invariant
 * laws, and the verifier with its reports. Everything else in the package is internal and may
 * change without notice.
 *
 * Importing it registers every formula of the registry.
 *
 * @example
 * ```ts
 * import { Tensor, formulaGraph, evaluate } from "specformer";
 * const g = formulaGraph("softmax");
 * const y = evaluate(g, { x: Tensor.from([[1, 2, 3]]) }).y;
 * ```
 * @packageDocumentation
 */

// ── Formulas: the registry, shapes, rendering ────────────────────────────────────────────────

/** The formula registry: look formulas up, list them, build and resolve their configurations. */
export {
  FormulaError,
  defineFormula,
  getFormula,
  hasFormula,
  formulaNames,
  resolveConfig,
  buildFormula,
  callFormula,
  exampleConfig,
  exampleShapes,
  EXAMPLE_DIMS,
} from "./spec/formula.js";
/** Types of the registry: a formula's declaration, its arguments, outputs and hyperparameters. */
export type { FormulaDef, ArgSpec, OutputSpec, HyperSpec, BuiltFormula } from "./spec/formula.js";
/** Model presets (gpt2-small, tiny, …): named hyperparameter sets. */
export { PRESETS, presetNames, getPreset } from "./spec/presets.js";
/** Render a formula as LaTeX and Unicode text, with its shapes and parameter count. */
export { renderFormula } from "./spec/render.js";
/** A rendered formula (what `specformer spec --format json` prints). */
export type { RenderedFormula, RenderedArg } from "./spec/render.js";
/** The whole pipeline (text → tokens → … → sampling) as one document. */
export { pipelineDocument, pipelineMarkdown, pipelineText } from "./spec/pipeline.js";
/** The closed set of scalar elementwise functions, each declared as a math string. */
export { SCALAR_FNS, SCALAR_FN_NAMES, scalarDefinitionLatex } from "./spec/scalar.js";
/** The name of a scalar elementwise function. */
export type { ScalarFnName } from "./spec/scalar.js";
/** Typed builders: formulas with compile-time shapes (`Expr<["n","d_model"]>`). */
export * as typed from "./spec/typed.js";

// ── Tensors, evaluation, gradients ───────────────────────────────────────────────────────────

/** Dense tensors (float64, emulated float32, int32). */
export { Tensor, TensorError } from "./autodiff/tensor.js";
/** Tensor element types and a record of named tensors. */
export type { DType, FloatDType, Shape, NamedTensors } from "./autodiff/tensor.js";
/** A formula's graph, the thing `evaluate` and `grad` interpret. */
export { formulaGraph } from "./autodiff/graph.js";
/** A graph of formulas: named inputs and outputs over spec nodes. */
export type { Graph } from "./autodiff/graph.js";
/** Evaluate a graph on named tensors. */
export { evaluate, EvalError, NonFiniteError } from "./autodiff/evaluate.js";
/** Options of `evaluate` (dtype, fused kernels). */
export type { EvalOptions } from "./autodiff/evaluate.js";
/** Reverse and forward mode: gradients, vector-Jacobian and Jacobian-vector products, and the gradient graph itself. */
export { grad, valueAndGrad, vjp, jvp, hvp, gradGraph, GradError } from "./autodiff/grad.js";
/** Gradient checks against central differences, for graphs and for any implementation. */
export {
  gradcheckGraph,
  gradgradcheckGraph,
  gradcheckFunction,
  graphFunction,
  implementationFunction,
  bisect,
} from "./autodiff/gradcheck.js";
/** Options and results of the gradient checks. */
export type {
  GradcheckOptions,
  GradcheckResult,
  GradcheckFailure,
  DiffFunction,
} from "./autodiff/gradcheck.js";
/** Seeded random numbers and seeded inputs for a formula. */
export { Rng, sampleInputs } from "./autodiff/random.js";

// ── The seam: implementations ────────────────────────────────────────────────────────────────

/** An implementation under test: formula name → forward (and optionally backward). */
export { ImplementationError, supportsBackward } from "./autodiff/implementation.js";
/** The Implementation interface and its requests and results. */
export type {
  Implementation,
  ForwardRequest,
  ForwardResult,
  BackwardRequest,
  BackwardResult,
  FormulaConfig,
} from "./autodiff/implementation.js";

// ── The reference model ──────────────────────────────────────────────────────────────────────

/** The reference implementation: the spec evaluated by the engine, as an Implementation. */
export { referenceImplementation } from "./reference/implementation.js";
/** Options of the reference implementation. */
export type { ReferenceOptions } from "./reference/implementation.js";
/** The GPT model assembled from the formulas: configuration, seeded weights, forward, loss. */
export {
  GPT,
  ModelError,
  resolveModelConfig,
  countParameters,
  initWeights,
} from "./reference/model.js";
/** The model's configuration and how to ask for one. */
export type { GPTConfig, ModelConfigInput, InitOptions } from "./reference/model.js";
/** Autoregressive generation with the KV cache (greedy, temperature, top-k, top-p, seeded). */
export { generate, GenerateError } from "./reference/generate.js";
/** Options and result of generation. */
export type { GenerateOptions, GenerateResult, SamplingOptions } from "./reference/generate.js";
/** GPT-2's byte-level BPE tokenizer (and training one on a corpus). */
export { Tokenizer, trainBpe } from "./reference/tokenizer/index.js";

// ── Golden cases ─────────────────────────────────────────────────────────────────────────────

/** Read and write safetensors files; a malformed file is a SafetensorsFormatError naming what is wrong. */
export {
  readSafetensors,
  readSafetensorsFile,
  writeSafetensors,
  writeSafetensorsFile,
  SafetensorsFormatError,
} from "./io/safetensors.js";
/** The contents of a safetensors file, and the reader's options (tensors to skip). */
export type {
  SafetensorsContents,
  ReadOptions as SafetensorsReadOptions,
} from "./io/safetensors.js";
/** The error of golden cases and their manifest (what the io layer raises, said for a golden file). */
export { GoldenFormatError } from "./golden/error.js";
/** Golden cases: load, list and save the PyTorch-made cases (safetensors + manifest). */
export { loadCase, listCases, saveCase, GOLDEN_FORMAT } from "./golden/cases-io.js";
/** A golden case and its metadata. */
export type { GoldenCase, CaseMeta, CaseToSave } from "./golden/cases-io.js";
/** The comparator: one rule for every tensor (|a − e| ≤ atol + rtol·|e|) and its report. */
export {
  compareTensors,
  compareNamed,
  compareCase,
  formatReport,
  reportToJSON,
  DEFAULT_TOLERANCE,
} from "./golden/compare.js";
/** Tolerances and comparison reports. */
export type { Tolerance, TensorReport, CaseReport, CompareOptions } from "./golden/compare.js";

// ── Invariant laws ───────────────────────────────────────────────────────────────────────────

/** The invariant laws as fast-check properties over any Implementation. */
export { runLaws, runLaw, formatLawReport, lawReportToJSON } from "./properties/run.js";
/** Options and reports of the law runs. */
export type { RunOptions as LawRunOptions, LawReport, LawResult } from "./properties/run.js";
/** The registry of laws. */
export { LAWS, lawNames, getLaw } from "./properties/registry.js";

// ── The verifier ─────────────────────────────────────────────────────────────────────────────

/** Verify an implementation against the goldens, gradients and laws; the bundled cases' folder. */
export { verify, BUNDLED_CASES } from "./verify/run.js";
/** Options and report of a verify run. */
export type { VerifyOptions, VerifyReport, VerifyResult, FirstDivergence } from "./verify/run.js";
/** A program speaking the JSON-lines protocol (docs/PROTOCOL.md), as an Implementation. */
export { ProcessImplementation } from "./verify/process.js";
/** Options of a process implementation (timeouts, environment). */
export type { ProcessOptions } from "./verify/process.js";
/** Reports of a verify run: text, JSON, JUnit XML, exit code; HTML loads vega on first use. */
export { formatVerifyReport, verifyReportToJSON, exitCodeOf } from "./verify/report.js";
/** The JUnit XML report of a verify run. */
export { verifyJUnit } from "./verify/junit.js";
/** The HTML report of a verify run (self-contained, charts inlined as SVG). */
export { renderHtmlReport } from "./verify/html.js";

/** The package's version and where its bundled files are (goldens, GPT-2 ranks). */
export { packageVersion, packageRoot, packageFile } from "./autodiff/assets.js";
