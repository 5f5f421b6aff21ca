/**
 * Localisation of a wrong gradient: when a case's outputs match but its gradients do not, walk
 * the call tree backwards (in the order a backward pass runs) and find the first application
 * whose vector-Jacobian product is wrong.
 *
 * The reference traces the case (verify/trace.ts) and back-propagates the case's cotangents to
 * every application inside it, so each application has its arguments' values and its outputs'
 * cotangents as the reference computes them. Every application the implementation declares with
 * a backward pass gets a backward request with exactly those: the gradients it answers are
 * compared with the reference's own VJP of that formula on the same inputs and cotangents. Its
 * inputs and cotangents are right by construction, so a wrong answer is a local error of its
 * backward pass; the search descends into it (a block's `mha`, the `mha`'s `attention`) until no
 * declared part of the diverging one diverges.
 *
 * Tolerances follow the golden generator's rules for gradients (golden/GENERATOR.md): the
 * float32 rule on the reference's float32 and float64 VJPs, and the float64 rule with the
 * formula's rounding depth K, plus the rows summed into a parameter's gradient (batch ×
 * positions), widened to 4× the difference of a second computation without fused kernels.
 */
import type { BackwardRequest, BackwardResult, FormulaConfig } from "../autodiff/implementation.js";
import { vjp } from "../autodiff/grad.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { compareNamed, compareTensors } from "../golden/compare.js";
import type { TensorReport } from "../golden/compare.js";
import { getFormula } from "../spec/formula.js";
import { referenceGraph } from "../reference/implementation.js";
import { diagnose } from "./diagnose.js";
import type { Hint } from "./diagnose.js";
import { PartSearch, partRequest } from "./localise.js";
import type { Divergence, FailingCase, Localisation } from "./localise.js";
import { depthOf, derivedTolerance } from "./tolerance.js";
import type { DerivedTolerance } from "./tolerance.js";
import { knownConfig, ReferenceTrace } from "./trace.js";
import { sitePath, type CallSite } from "./trace.js";

/** What backward localisation needs to know about one case whose gradients fail. */
export interface LocaliseBackwardInput extends FailingCase {
  /** Sends one backward request to the implementation (the runner's, which survives restarts). */
  readonly backward: (req: BackwardRequest) => Promise<BackwardResult>;
  /** Does the implementation compute this formula's backward pass in this dtype? */
  readonly declaresBackward: (formula: string, dtype: FloatDType) => boolean;
  readonly cotangents: NamedTensors;
  /** The implementation's and the golden gradients of the case (for the case-level divergence). */
  readonly actualGrads: NamedTensors;
  readonly expectedGrads: NamedTensors;
}

interface Expected {
  readonly request: NamedTensors;
  readonly f64: NamedTensors;
  readonly unfused?: NamedTensors;
}

function upcast(ts: NamedTensors): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, t] of Object.entries(ts)) out[k] = t.dtype === "f32" ? t.to("f64") : t;
  return out;
}

/** The reference's VJP of one formula on given arguments and cotangents, the three ways tolerances need. */
function referenceVjp(
  formula: string,
  config: FormulaConfig,
  inputs: NamedTensors,
  cotangents: NamedTensors,
  dtype: FloatDType,
): Expected {
  const g = referenceGraph(formula, knownConfig(formula, config));
  const request = vjp(g, inputs, cotangents, { dtype }).grads;
  const [in64, cot64] = [upcast(inputs), upcast(cotangents)];
  const f64 = dtype === "f64" ? request : vjp(g, in64, cot64, { dtype: "f64" }).grads;
  if (dtype === "f32") return { request, f64 };
  return { request, f64, unfused: vjp(g, in64, cot64, { dtype: "f64", fused: false }).grads };
}

/**
 * Roundings on the longest path to a gradient element: the formula's forward depth K (its
 * backward pass retraces the same reductions), plus, for a parameter, the rows its gradient
 * sums over (golden/GENERATOR.md: "a parameter's gradient sums over every row").
 */
function gradientDepth(
  formula: string,
  config: FormulaConfig,
  inputs: NamedTensors,
  arg: string,
): number {
  const K = depthOf(formula, config, inputs);
  const def = getFormula(formula);
  const args = def.args(knownConfig(formula, config));
  if (args.find((a) => a.name === arg)?.role !== "param") return K;
  const first = args.find(
    (a) => a.role === "input" && inputs[a.name] !== undefined && inputs[a.name]!.dtype !== "i32",
  );
  const x = first === undefined ? undefined : inputs[first.name];
  const rows = x === undefined || x.rank === 0 ? 1 : x.size / x.shape[x.rank - 1]!;
  return K + rows;
}

/**
 * Find the first application whose VJP is wrong in a case whose gradients fail (see the module
 * comment). Never throws for an implementation fault: it is returned in `fault` with the steps so far.
 */
export async function localiseBackward(input: LocaliseBackwardInput): Promise<Localisation> {
  const search = new PartSearch();
  const { steps } = search;
  const failingGrad = Object.values(input.reports).find((r) => !r.ok && r.name.startsWith("grad."));
  const caseLevel = (explanation: string, hints: readonly Hint[] = []): Divergence => ({
    formula: input.formula,
    tensor: failingGrad?.name ?? "grad",
    path: [input.formula],
    origin: "local",
    how: "output",
    kind: "backward",
    ...(failingGrad !== undefined ? { input: failingGrad.name.slice("grad.".length) } : {}),
    explanation,
    report: failingGrad ?? null,
    hints,
    ...gradValues(input, failingGrad?.name),
  });

  let trace: ReferenceTrace;
  try {
    trace = ReferenceTrace.build(input.formula, input.config, input.inputs, input.dtype);
  } catch (e) {
    return search.result(
      caseLevel(
        `the reference cannot trace ${input.formula} (${(e as Error).message}); ` +
          `only the case's gradients were compared`,
      ),
    );
  }

  // the case's cotangents must name outputs of the formula (a malformed case is reported, not thrown)
  try {
    trace.siteCotangents(trace.root, input.cotangents, "request");
  } catch (e) {
    return search.result(
      caseLevel(
        `the reference cannot back-propagate the case's cotangents through ` +
          `${input.formula} (${(e as Error).message}); only the case's gradients were compared`,
      ),
    );
  }

  let deepest:
    | {
        site: CallSite;
        arg: string;
        report: TensorReport;
        tolerance: DerivedTolerance;
        actual?: Tensor;
        expected: Tensor;
        inputs: NamedTensors;
        checkedParts: string[];
      }
    | undefined;
  const descend = async (site: CallSite): Promise<boolean> => {
    // backwards: the last application's VJP runs first in a backward pass
    for (const child of [...site.children].reverse()) {
      const tensor = sitePath(child);
      if (!input.declaresBackward(child.formula, input.dtype)) {
        search.notDeclared(
          child.formula,
          tensor,
          `the implementation declares no backward pass of ${child.formula} (in ${input.dtype})`,
        );
        continue;
      }
      const cotangents = trace.siteCotangents(child, input.cotangents, "request");
      // an application whose outputs do not reach the case's outputs, or that lies inside a
      // formula the reference differentiates as one piece, has no cotangent to feed
      if (Object.keys(cotangents).length === 0) continue;
      const inputs = trace.argValues(child, "request");
      let expected: Expected;
      try {
        expected = referenceVjp(child.formula, child.config, inputs, cotangents, input.dtype);
      } catch {
        continue; // the reference cannot differentiate this part on its own: nothing to compare it with
      }
      // nothing differentiable to ask about (a mask computed from sizes alone)
      if (Object.keys(expected.request).length === 0) continue;
      const answer = await search.ask(child.formula, `${tensor}:grad`, () =>
        input.backward({ ...partRequest(child, inputs, input.dtype), cotangents }),
      );
      if (search.fault !== undefined) return false;
      if (answer === undefined) continue;
      let diverged:
        | { arg: string; report: TensorReport; tolerance: DerivedTolerance; actual?: Tensor }
        | undefined;
      for (const [arg, want] of Object.entries(expected.request)) {
        const name = `${tensor}:grad.${arg}`;
        const K = gradientDepth(child.formula, child.config, inputs, arg);
        const tolerance = derivedTolerance(
          input.dtype,
          want,
          expected.f64[arg]!,
          K,
          expected.unfused?.[arg],
        );
        const got = answer.grads[arg];
        // a gradient left out of the answer is reported as missing (the comparator's own words)
        const report =
          got === undefined
            ? compareNamed({ [name]: want }, {}).tensors[0]!
            : compareTensors(want, got, { name, caseTolerance: tolerance });
        steps.push({
          how: "isolated",
          formula: child.formula,
          tensor: name,
          status: report.ok ? "match" : "diverges",
          ...(report.ok ? {} : { origin: "local" as const }),
          report,
        });
        if (!report.ok)
          diverged ??= { arg, report, tolerance, ...(got !== undefined ? { actual: got } : {}) };
      }
      if (diverged === undefined) continue;
      const before = steps.length;
      const deeper = await descend(child);
      if (search.fault !== undefined) return false;
      if (!deeper) {
        const checkedParts = [
          ...new Set(
            steps
              .slice(before)
              .filter((s) => s.status === "match")
              .map((s) => s.tensor.split(":")[0]!),
          ),
        ];
        deepest = {
          site: child,
          arg: diverged.arg,
          report: diverged.report,
          tolerance: diverged.tolerance,
          ...(diverged.actual !== undefined ? { actual: diverged.actual } : {}),
          expected: expected.request[diverged.arg]!,
          inputs,
          checkedParts,
        };
      }
      return true;
    }
    return false;
  };
  await descend(trace.root);

  let divergence: Divergence;
  if (deepest !== undefined) {
    const d = deepest;
    const hints =
      d.actual === undefined
        ? []
        : await diagnose({
            formula: `grad(${d.site.formula})`,
            config: d.site.config,
            inputs: d.inputs,
            dtype: input.dtype,
            output: d.arg,
            expected: d.expected,
            actual: d.actual,
            tolerance: d.tolerance,
            ...(input.dims !== undefined ? { dims: input.dims } : {}),
          });
    const parts =
      d.checkedParts.length > 0
        ? `; the backward passes of its parts ` +
          `${d.checkedParts.map((p) => p.split("/").pop()).join(", ")} match in ` +
          `isolation, so the error is in ${d.site.formula}'s own backward pass`
        : "";
    divergence = {
      formula: d.site.formula,
      tensor: `${sitePath(d.site)}:grad.${d.arg}`,
      path: d.site.path,
      origin: "local",
      how: "isolated",
      kind: "backward",
      input: d.arg,
      explanation:
        `${d.site.formula} (at ${d.site.path.join(" › ")}) gives a wrong ` +
        `gradient of ${d.arg} when fed the reference's arguments and output ` +
        `cotangents: its vector-Jacobian product is wrong${parts}`,
      report: d.report,
      hints: hints.map((h) => ({ ...h, message: `grad.${d.arg}: ${h.message}` })),
      ...(d.actual !== undefined ? { values: { expected: d.expected, actual: d.actual } } : {}),
    };
  } else {
    const direct = new Set(trace.root.children.map((c) => sitePath(c)));
    const own = steps.filter((s) => direct.has(s.tensor.split(":")[0]!));
    const matched = [
      ...new Set(own.filter((s) => s.status === "match").map((s) => s.tensor.split(":")[0]!)),
    ];
    const unchecked = [
      ...new Set(
        own
          .filter((s) => s.status !== "match" && s.status !== "diverges")
          .map((s) => `${s.tensor.split(":")[0]!} (${s.status})`),
      ),
    ];
    let explanation: string;
    if (trace.root.children.length === 0)
      explanation =
        `the outputs of ${input.formula} match but ` +
        `${failingGrad?.name ?? "a gradient"} diverges, and ${input.formula} ` +
        `applies no other formula: the backward pass is wrong in ` +
        `${input.formula} itself`;
    else if (matched.length > 0 && unchecked.length === 0)
      explanation =
        `the backward pass of every part of ${input.formula} matches in ` +
        `isolation (${matched.join(", ")}): the error is in how ` +
        `${input.formula}'s own backward pass combines them`;
    else if (matched.length > 0)
      explanation =
        `the backward passes of the parts of ${input.formula} that could be ` +
        `checked match in isolation (${matched.join(", ")}); not checked: ` +
        `${unchecked.join(", ")}: the error is in one of those or in how ` +
        `${input.formula}'s backward pass combines its parts`;
    else
      explanation =
        `no part of ${input.formula}'s backward pass could be checked in ` +
        `isolation${unchecked.length > 0 ? ` (${unchecked.join(", ")})` : ""}: ` +
        `the error is somewhere inside it`;
    divergence = caseLevel(explanation);
  }
  return search.result(divergence);
}

function gradValues(
  input: LocaliseBackwardInput,
  name: string | undefined,
): { values?: { expected: Tensor; actual: Tensor } } {
  if (name === undefined) return {};
  const arg = name.slice("grad.".length);
  const e = input.expectedGrads[arg];
  const a = input.actualGrads[arg];
  return e !== undefined && a !== undefined ? { values: { expected: e, actual: a } } : {};
}
