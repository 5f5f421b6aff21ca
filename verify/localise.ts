/**
 * Localisation: when a formula's golden case fails, find the first formula and tensor in
 * pipeline order that diverges, and say whether the error there is local (its inputs still
 * matched) or inherited (an input already diverged).
 *
 * Two sources of evidence, both compared with tolerances derived like the goldens' own
 * (verify/tolerance.ts):
 *
 * 1. **Intermediate values** the implementation returned with a `gpt` answer (docs/NAMES.md:
 *    `embed`, `h.{l}.x`, `h.{l}.attn`, `h.{l}.mlp`, `h.{l}.y`, `ln_f`), against the reference's
 *    values of the same tensors. Each diverging one is local when every tensor feeding it
 *    matched, inherited when one of them diverged.
 * 2. **Parts in isolation**: the reference traces the failing case (verify/trace.ts); every
 *    formula applied inside it that the implementation also declares is fed the reference's
 *    values of its arguments, in pipeline order. The first part that answers wrongly has correct
 *    inputs by construction, so its error is local; the search descends into it (a block's
 *    `mha`, the `mha`'s `attention`, the `attention`'s `causal_mask`) until no declared part
 *    of the diverging one diverges.
 *
 * The divergence found is then explained by diagnosis hints (verify/diagnose.ts).
 */
import { ImplementationError } from "../autodiff/implementation.js";
import type { FormulaConfig, ForwardRequest, ForwardResult } from "../autodiff/implementation.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { compareNamed, compareTensors } from "../golden/compare.js";
import type { CaseReport, TensorReport } from "../golden/compare.js";
import type { GoldenCase } from "../golden/cases-io.js";
import type { Node } from "../spec/node.js";
import { diagnose } from "./diagnose.js";
import type { Hint } from "./diagnose.js";
import { depthOf, derivedTolerance, elementMatches } from "./tolerance.js";
import type { DerivedTolerance } from "./tolerance.js";
import { ReferenceTrace } from "./trace.js";
import { sitePath, type CallSite } from "./trace.js";
import { formulasOf } from "../spec/index.js";

/**
 * `failed`: the request raised an implementation error other than an error answer (a malformed
 * answer, an exception of an in-process implementation); the part is not checked.
 */
export type StepStatus = "match" | "diverges" | "declined" | "failed" | "not declared";

/** One comparison made while localising. */
export interface LocalisationStep {
  /** `intermediate`: a value the implementation returned; `isolated`: a part fed the reference's inputs. */
  readonly how: "intermediate" | "isolated";
  /** The formula that produces the tensor. */
  readonly formula: string;
  /** `h.0.attn` (intermediate) or `h.0/mha/attention:y` (isolated: the site path and the output). */
  readonly tensor: string;
  readonly status: StepStatus;
  /** For a diverging tensor: were its inputs still right (`local`) or already wrong (`inherited`)? */
  readonly origin?: "local" | "inherited";
  readonly report?: TensorReport;
  /** Why a part was not checked (an error answer, not declared). */
  readonly message?: string;
}

/** The first diverging formula and tensor of a failing case. */
export interface Divergence {
  readonly formula: string;
  readonly tensor: string;
  /** Site path from the case's formula: `["gpt", "h.0", "mha", "attention"]`. */
  readonly path: readonly string[];
  readonly origin: "local" | "inherited";
  /** How it was found: a part in isolation, an intermediate value, or only the case's output. */
  readonly how: "isolated" | "intermediate" | "output";
  /** A wrong value (`forward`) or a wrong vector-Jacobian product (`backward`, verify/localise-backward.ts). */
  readonly kind: "forward" | "backward";
  /** For `backward`: the argument whose gradient is wrong. */
  readonly input?: string;
  /** One or two sentences for the report. */
  readonly explanation: string;
  readonly report: TensorReport | null;
  readonly hints: readonly Hint[];
  /** The diverging tensor's expected (reference or golden) and actual values, for heatmaps. */
  readonly values?: { readonly expected: Tensor; readonly actual: Tensor };
}

export interface Localisation {
  readonly steps: readonly LocalisationStep[];
  readonly divergence: Divergence | null;
  /** Requests sent to the implementation while localising. */
  readonly requests: number;
  /** Set when the implementation failed while localising (a fault cuts the search short). */
  readonly fault?: ImplementationError;
}

/** The case a localisation starts from, and what its golden check found. */
export interface FailingCase {
  readonly formula: string;
  readonly config: FormulaConfig;
  readonly inputs: NamedTensors;
  readonly dtype: FloatDType;
  /** The comparator's report of each of the case's tensors (`out.*`, `grad.*`). */
  readonly reports: Readonly<Record<string, TensorReport>>;
  /** Case sizes (`H`, `d_model`), for diagnosis. */
  readonly dims?: Readonly<Record<string, number>>;
}

/** A golden case and the report of its check, as a localisation reads them. */
export function failingCase(c: GoldenCase, report: CaseReport): FailingCase {
  const m = c.meta;
  return {
    formula: m.formula,
    config: m.config,
    inputs: c.inputs,
    dtype: m.dtype,
    reports: Object.fromEntries(report.tensors.map((r) => [r.name, r])),
    dims: m.dims,
  };
}

/** What localisation needs to know about one failing case. */
export interface LocaliseInput extends FailingCase {
  /** Sends one forward request to the implementation (the runner's, which survives restarts). */
  readonly forward: (req: ForwardRequest) => Promise<ForwardResult>;
  /** Does the implementation compute this formula in this dtype? */
  readonly declares: (formula: string, dtype: FloatDType) => boolean;
  /** Everything the implementation's forward answer held (outputs and intermediates). */
  readonly actual: NamedTensors;
  /** The golden outputs. */
  readonly expected: NamedTensors;
}

/**
 * An error answer: the implementation declined the request and keeps running (read from the error's
 * kind, never its text).
 */
export function isDeclined(e: unknown): e is ImplementationError {
  return e instanceof ImplementationError && e.kind === "declined";
}

/**
 * The record of a search through parts in isolation: the steps taken, the requests sent and the
 * fault that cut it short.
 */
export class PartSearch {
  readonly steps: LocalisationStep[] = [];
  requests = 0;
  fault: ImplementationError | undefined;

  /** A part the implementation does not declare: recorded, not asked about. */
  notDeclared(formula: string, tensor: string, message: string): void {
    this.steps.push({ how: "isolated", formula, tensor, status: "not declared", message });
  }

  /**
   * Sends one request about a part (`send`). `undefined` when there is no answer to check: an
   * error answer or a failed request, recorded as a `declined` or `failed` step of `tensor`, or a
   * stopped implementation, kept in `fault` (the search stops). Other errors are thrown.
   */
  async ask<T>(formula: string, tensor: string, send: () => Promise<T>): Promise<T | undefined> {
    try {
      this.requests++;
      return await send();
    } catch (e) {
      if (!(e instanceof ImplementationError)) throw e;
      if (e.kind === "stopped") this.fault = e;
      else {
        const status = isDeclined(e) ? "declined" : "failed";
        this.steps.push({ how: "isolated", formula, tensor, status, message: e.message });
      }
      return undefined;
    }
  }

  /** The localisation: the steps and requests so far, the divergence found and any fault. */
  result(divergence: Divergence | null): Localisation {
    const { steps, requests, fault } = this;
    return { steps, divergence, requests, ...(fault !== undefined ? { fault } : {}) };
  }
}

/** The request about a part `site` fed `inputs`, computed in `dtype`. */
export function partRequest(
  site: CallSite,
  inputs: NamedTensors,
  dtype: FloatDType,
): ForwardRequest {
  return { formula: site.formula, config: { ...site.config, dtype }, inputs };
}

interface Intermediate {
  readonly name: string;
  readonly node: Node;
  readonly formula: string;
  /** Names of the intermediate values this one is computed from (`[]`: the case's inputs). */
  readonly feeds: readonly string[];
  /** The site whose output this is (for diagnosis with its formula), when it is exactly one. */
  readonly site?: CallSite;
}

const BLOCKS = new Set(formulasOf("block"));

/** The documented intermediate values of a `gpt` trace, in pipeline order (docs/NAMES.md). */
function gptIntermediates(trace: ReferenceTrace): Intermediate[] {
  const out: Intermediate[] = [];
  const kids = trace.root.children;
  const embedding = kids.find((s) => s.formula === "embedding");
  if (embedding !== undefined)
    out.push({
      name: "embed",
      node: embedding.outputs["y"]!,
      formula: "embedding",
      feeds: [],
      site: embedding,
    });
  let prev = "embed";
  for (const b of kids.filter((s) => BLOCKS.has(s.formula))) {
    const l = b.name; // h.{l}
    out.push({ name: `${l}.x`, node: b.args["x"]!, formula: "gpt", feeds: [prev] });
    // the residual additions at the block's own level: x + attn, then x' + mlp (GPT-J: (x + attn) + mlp)
    const adds = trace.ownNodes(b).filter((n) => n.op === "binary" && n.fn === "add");
    const parallel = b.config["parallel"] === true;
    if (adds.length === 2) {
      const [a1, a2] = adds as [Extract<Node, { op: "binary" }>, Extract<Node, { op: "binary" }>];
      const site = (node: Node): CallSite | undefined =>
        b.children.find((c) => Object.values(c.outputs).includes(node as never));
      const attnSite = site(a1.b);
      const mlpSite = site(a2.b);
      out.push({
        name: `${l}.attn`,
        node: a1.b,
        formula: attnSite?.formula ?? "mha",
        feeds: [`${l}.x`],
        ...(attnSite ? { site: attnSite } : {}),
      });
      out.push({
        name: `${l}.mlp`,
        node: a2.b,
        formula: mlpSite?.formula ?? "ffn",
        feeds: parallel ? [`${l}.x`] : [`${l}.x`, `${l}.attn`],
        ...(mlpSite ? { site: mlpSite } : {}),
      });
      out.push({
        name: `${l}.y`,
        node: b.outputs["y"]!,
        formula: b.formula,
        feeds: [`${l}.x`, `${l}.attn`, `${l}.mlp`],
        site: b,
      });
    } else {
      out.push({
        name: `${l}.y`,
        node: b.outputs["y"]!,
        formula: b.formula,
        feeds: [`${l}.x`],
        site: b,
      });
    }
    prev = `${l}.y`;
  }
  const lnf = kids.find((s) => s.name === "ln_f");
  if (lnf !== undefined) {
    out.push({
      name: "ln_f",
      node: lnf.outputs["y"]!,
      formula: lnf.formula,
      feeds: [prev],
      site: lnf,
    });
    prev = "ln_f";
  }
  return out.map((x) => ({ ...x })).concat(finalOutputs(trace, prev));
}

/** The gpt's own outputs close the pipeline (they are compared by the golden check). */
function finalOutputs(trace: ReferenceTrace, prev: string): Intermediate[] {
  const logits = trace.root.outputs["logits"];
  const loss = trace.root.outputs["loss"];
  const out: Intermediate[] = [];
  if (logits !== undefined)
    out.push({ name: "logits", node: logits, formula: "logits", feeds: [prev] });
  if (loss !== undefined)
    out.push({ name: "loss", node: loss, formula: "cross_entropy", feeds: ["logits"] });
  return out;
}

/**
 * Find the first diverging formula and tensor of a failing case (see the module comment).
 * Never throws for an implementation fault: it is returned in `fault` with the steps so far.
 */
export async function localise(input: LocaliseInput): Promise<Localisation> {
  const search = new PartSearch();
  const { steps } = search;
  const firstFailing = Object.values(input.reports).find((r) => !r.ok && r.name.startsWith("out."));
  const outputName = firstFailing?.name.slice(4) ?? Object.keys(input.expected)[0] ?? "y";

  let trace: ReferenceTrace;
  try {
    trace = ReferenceTrace.build(input.formula, input.config, input.inputs, input.dtype);
  } catch (e) {
    const hints = await outputHints(input, outputName);
    return search.result({
      formula: input.formula,
      tensor: `out.${outputName}`,
      path: [input.formula],
      origin: "local",
      how: "output",
      kind: "forward",
      explanation:
        `the reference cannot trace ${input.formula} (${(e as Error).message}); ` +
        `only the case's outputs were compared`,
      report: firstFailing ?? null,
      hints,
      ...valuesOf(input, outputName),
    });
  }
  const K = depthOf(input.formula, trace.config as FormulaConfig, input.inputs);
  const toleranceOf = (node: Node, depth: number): DerivedTolerance =>
    derivedTolerance(
      input.dtype,
      trace.value(node, "request"),
      trace.value(node, "f64"),
      depth,
      input.dtype === "f64" ? trace.value(node, "f64-unfused") : undefined,
    );

  // 1. the implementation's own intermediate values
  let firstIntermediate:
    | { step: LocalisationStep; item: Intermediate; tolerance: DerivedTolerance }
    | undefined;
  if (input.formula === "gpt") {
    const items = gptIntermediates(trace);
    trace.track(items.map((x) => x.node));
    const status = new Map<string, "match" | "diverges">();
    const resolve = (names: readonly string[], seen = new Set<string>()): string[] => {
      const out: string[] = [];
      for (const n of names) {
        if (seen.has(n)) continue;
        seen.add(n);
        if (status.has(n)) out.push(n);
        else out.push(...resolve(items.find((x) => x.name === n)?.feeds ?? [], seen));
      }
      return out;
    };
    for (const item of items) {
      const final = item.name === "logits" || item.name === "loss";
      const actual = input.actual[item.name];
      let report: TensorReport | undefined;
      let tolerance: DerivedTolerance | undefined;
      if (final) report = input.reports[`out.${item.name}`];
      else if (actual !== undefined) {
        tolerance = toleranceOf(item.node, K);
        report = compareTensors(trace.value(item.node, "request"), actual, {
          name: item.name,
          rtol: tolerance.rtol,
          atol: tolerance.atol,
        });
      }
      if (report === undefined) continue;
      const ok = report.ok;
      status.set(item.name, ok ? "match" : "diverges");
      const feeders = resolve(item.feeds);
      const origin = feeders.some((f) => status.get(f) === "diverges") ? "inherited" : "local";
      const step: LocalisationStep = {
        how: "intermediate",
        formula: item.formula,
        tensor: item.name,
        status: ok ? "match" : "diverges",
        ...(ok ? {} : { origin }),
        report,
      };
      steps.push(step);
      if (!ok && firstIntermediate === undefined && !final && tolerance !== undefined)
        firstIntermediate = { step, item, tolerance };
    }
  }

  // 2. the declared parts, fed the reference's inputs, descending into the first that diverges
  let deepest:
    | {
        site: CallSite;
        output: string;
        actual: Tensor;
        report: TensorReport;
        tolerance: DerivedTolerance;
        inputs: NamedTensors;
        checkedParts: string[];
      }
    | undefined;
  const descend = async (site: CallSite): Promise<boolean> => {
    for (const child of site.children) {
      const tensor = `${sitePath(child)}`;
      if (!input.declares(child.formula, input.dtype)) {
        search.notDeclared(
          child.formula,
          tensor,
          `the implementation does not declare ${child.formula} (in ${input.dtype})`,
        );
        continue;
      }
      const inputs = trace.argValues(child, "request");
      const answer = await search.ask(child.formula, tensor, () =>
        input.forward(partRequest(child, inputs, input.dtype)),
      );
      if (search.fault !== undefined) return false;
      if (answer === undefined) continue;
      let diverged:
        | { output: string; report: TensorReport; tolerance: DerivedTolerance }
        | undefined;
      const depth = depthOf(child.formula, child.config, inputs);
      for (const [o, node] of Object.entries(child.outputs)) {
        const tolerance = toleranceOf(node, depth);
        const got = answer.outputs[o];
        const name = `${tensor}:${o}`;
        if (got === undefined) {
          const missing = compareNamed({ [name]: trace.value(node, "request") }, {}).tensors[0]!;
          steps.push({
            how: "isolated",
            formula: child.formula,
            tensor: name,
            status: "diverges",
            origin: "local",
            report: missing,
          });
          diverged ??= { output: o, report: missing, tolerance };
          continue;
        }
        const report = compareTensors(trace.value(node, "request"), got, {
          name,
          rtol: tolerance.rtol,
          atol: tolerance.atol,
        });
        if (
          !report.ok &&
          onlyWhereRowsUndefined(trace.value(node, "request"), got, inputs["x"], tolerance)
        ) {
          // softmax of a row that is all −∞ (a query that sees no key): the spec defines 0, torch
          // gives NaN; the case's own formula decides what such rows become, so it is no divergence
          steps.push({
            how: "isolated",
            formula: child.formula,
            tensor: name,
            status: "match",
            report,
            message:
              "differs only in rows whose arguments are all ±∞ or NaN (e.g. fully " +
              "masked attention rows), where the spec defines the value and many " +
              "implementations give NaN",
          });
          continue;
        }
        steps.push({
          how: "isolated",
          formula: child.formula,
          tensor: `${tensor}:${o}`,
          status: report.ok ? "match" : "diverges",
          ...(report.ok ? {} : { origin: "local" as const }),
          report,
        });
        if (!report.ok) diverged ??= { output: o, report, tolerance };
      }
      if (diverged === undefined) continue;
      const actual = answer.outputs[diverged.output];
      const before = steps.length;
      const deeper = await descend(child);
      if (search.fault !== undefined) return false;
      if (!deeper && actual !== undefined) {
        const checkedParts = steps
          .slice(before)
          .filter((s) => s.status === "match")
          .map((s) => s.tensor);
        deepest = {
          site: child,
          output: diverged.output,
          actual,
          report: diverged.report,
          tolerance: diverged.tolerance,
          inputs,
          checkedParts,
        };
      }
      return true;
    }
    return false;
  };
  await descend(trace.root);

  let divergence: Divergence | null = null;
  if (deepest !== undefined) {
    const d = deepest;
    const node = d.site.outputs[d.output]!;
    const hints = await diagnose({
      formula: d.site.formula,
      config: d.site.config,
      inputs: d.inputs,
      dtype: input.dtype,
      output: d.output,
      expected: trace.value(node, "request"),
      actual: d.actual,
      tolerance: d.tolerance,
      ...(input.dims !== undefined ? { dims: input.dims } : {}),
    });
    const parts =
      d.checkedParts.length > 0
        ? `; its parts ${d.checkedParts.map((p) => p.split("/").pop()).join(", ")} ` +
          `match in isolation, so the error is in ${d.site.formula} itself`
        : "";
    divergence = {
      formula: d.site.formula,
      tensor: `${sitePath(d.site)}:${d.output}`,
      path: d.site.path,
      origin: "local",
      how: "isolated",
      kind: "forward",
      explanation:
        `${d.site.formula} (at ${d.site.path.join(" › ")}) gives a wrong ` +
        `${d.output} when fed the reference's values of its arguments: the error ` +
        `is local to it${parts}`,
      report: d.report,
      hints,
      values: { expected: trace.value(node, "request"), actual: d.actual },
    };
  } else if (firstIntermediate !== undefined) {
    const { step, item, tolerance } = firstIntermediate;
    const site = item.site;
    const actual = input.actual[item.name]!;
    const hints =
      site !== undefined && Object.keys(site.outputs).length === 1
        ? await diagnose({
            formula: site.formula,
            config: site.config,
            inputs: trace.argValues(site, "request"),
            dtype: input.dtype,
            output: Object.keys(site.outputs)[0]!,
            expected: trace.value(item.node, "request"),
            actual,
            tolerance,
            ...(input.dims !== undefined ? { dims: input.dims } : {}),
          })
        : [];
    const feeds = item.feeds.length === 0 ? "the case's inputs" : item.feeds.join(", ");
    divergence = {
      formula: item.formula,
      tensor: item.name,
      path: site?.path ?? [input.formula, item.name],
      origin: step.origin ?? "local",
      how: "intermediate",
      kind: "forward",
      explanation:
        step.origin === "inherited"
          ? `${item.name} is the first intermediate value that diverges, but a ` +
            `tensor it is computed from already diverged`
          : `${item.name} (${item.formula}) is the first intermediate value that ` +
            `diverges while what it is computed from (${feeds}) still matches: the ` +
            `error is local to it`,
      report: step.report ?? null,
      hints,
      values: { expected: trace.value(item.node, "request"), actual },
    };
  } else if (firstFailing !== undefined) {
    // the case formula's own parts (its direct children) decide what can be said
    const direct = new Set(trace.root.children.map((c) => sitePath(c)));
    const own = steps.filter((s) => s.how === "isolated" && direct.has(s.tensor.split(":")[0]!));
    const matched = [
      ...new Set(own.filter((s) => s.status === "match").map((s) => s.tensor.split(":")[0]!)),
    ];
    const unchecked = own
      .filter((s) => s.status === "declined" || s.status === "failed")
      .map((s) => `${s.tensor} (${s.status})`);
    const notDeclared = own.filter((s) => s.status === "not declared").map((s) => s.tensor);
    const hints = await outputHints(input, outputName);
    let explanation: string;
    if (trace.root.children.length === 0)
      explanation = `${input.formula} is computed directly from the case's inputs, so the error is local to it`;
    else if (matched.length > 0 && unchecked.length === 0 && notDeclared.length === 0) {
      explanation =
        `every part of ${input.formula} matches in isolation ` +
        `(${matched.join(", ")}): the error is in how ${input.formula} combines ` +
        `them (residuals, norm placement, head layout)`;
    } else if (matched.length > 0) {
      explanation =
        `the parts of ${input.formula} that could be checked match in isolation ` +
        `(${matched.join(", ")}); not checked: ` +
        `${[...unchecked, ...notDeclared.map((x) => `${x} (not declared)`)].join(", ")}: ` +
        `the error is in one of those or in how ${input.formula} combines its parts`;
    } else if (
      firstIntermediate === undefined &&
      input.formula === "gpt" &&
      !steps.some((s) => s.how === "intermediate" && s.tensor !== "logits" && s.tensor !== "loss")
    ) {
      explanation =
        `the implementation declares no part of gpt it could be checked by and ` +
        `returns no intermediate values (embed, h.{l}.x, h.{l}.attn, h.{l}.mlp, ` +
        `h.{l}.y, ln_f): the error is somewhere inside gpt`;
    } else {
      explanation =
        `no part of ${input.formula} could be checked in ` +
        `isolation${unchecked.length > 0 ? ` (${unchecked.join(", ")})` : " (the implementation declares none)"}: ` +
        `the error is somewhere inside ${input.formula}`;
    }
    divergence = {
      formula: input.formula,
      tensor: firstFailing.name,
      path: [input.formula],
      origin: "local",
      how: "output",
      kind: "forward",
      explanation,
      report: firstFailing,
      hints,
      ...valuesOf(input, outputName),
    };
  }
  return search.result(divergence);
}

function valuesOf(
  input: LocaliseInput,
  output: string,
): { values?: { expected: Tensor; actual: Tensor } } {
  const expected = input.expected[output];
  const actual = input.actual[output];
  return expected !== undefined && actual !== undefined ? { values: { expected, actual } } : {};
}

/** Hints for a failing output of the case itself. */
async function outputHints(input: LocaliseInput, output: string): Promise<Hint[]> {
  const expected = input.expected[output];
  const actual = input.actual[output];
  const report = input.reports[`out.${output}`];
  if (expected === undefined || actual === undefined || report === undefined) return [];
  return diagnose({
    formula: input.formula,
    config: input.config,
    inputs: input.inputs,
    dtype: input.dtype,
    output,
    expected,
    actual,
    tolerance: report.tolerance,
    ...(input.dims !== undefined ? { dims: input.dims } : {}),
  });
}

/**
 * Every mismatch lies in a row (last axis) of `x` that holds no finite value. Such rows are
 * ill-defined for softmax-like formulas; the formula that produced them handles them itself.
 */
function onlyWhereRowsUndefined(
  expected: Tensor,
  actual: Tensor,
  x: Tensor | undefined,
  tol: { rtol: number; atol: number },
): boolean {
  if (
    x === undefined ||
    x.size !== expected.size ||
    actual.size !== expected.size ||
    expected.rank === 0
  )
    return false;
  const m = expected.shape[expected.rank - 1]!;
  if (m === 0) return false;
  for (let i = 0; i < expected.size; i++) {
    if (elementMatches(expected.data[i]!, actual.data[i]!, tol)) continue;
    const row = Math.floor(i / m) * m;
    for (let j = 0; j < m; j++) if (Number.isFinite(x.data[row + j]!)) return false;
  }
  return true;
}
