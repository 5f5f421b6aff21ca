/**
 * Laws every formula obeys: shape algebra, determinism, batch independence, and the float32
 * error bound against the float64 reference (the one law that uses an oracle).
 */
import fc from "fast-check";
import { dim, evalDim } from "../../spec/dims.js";
import { exampleConfig, getFormula } from "../../spec/formula.js";
import type { FormulaConfig, Implementation } from "../../autodiff/implementation.js";
import { Tensor, shapeToString, type NamedTensors } from "../../autodiff/tensor.js";
import { referenceGraph, referenceImplementation } from "../../reference/implementation.js";
import { topoSort } from "../../spec/node.js";
import {
  formulaCaseArb,
  inputsArb,
  seededCaseArb,
  type Dims,
  type FormulaCase,
  type FormulaCaseOptions,
} from "../arbitraries.js";
import {
  Check,
  checked,
  exactTolerance,
  fmt,
  twinTolerance,
  type Law,
  type LawScope,
} from "../law.js";
import { firstBitDifference, stack, unstackAt } from "../tensor-ops.js";
import {
  cancelledMagnitude,
  gamma,
  roundingDepth,
  sensitivity,
  smallestNormal,
  unitRoundoff,
} from "../tolerance.js";

/** Hyperparameter values the generic laws add to the registry's choices. */
const KV_CHOICES = { kv_cache: [false, true] } as const;

/** Formulas of the scope, each with equal weight. */
export function oneOfFormulas<C>(
  scope: LawScope,
  arb: (formula: string) => fc.Arbitrary<C>,
): fc.Arbitrary<C> {
  if (scope.formulas.length === 0) throw new RangeError("no formula to generate cases for");
  return fc.oneof(...scope.formulas.map((f) => arb(f)));
}

/** What a law chooses of a case's generation; the scope gives the dtype and the capabilities. */
export type ScopedCaseOptions = Omit<FormulaCaseOptions, "dtype" | "capabilities">;

/**
 * {@link formulaCaseArb} inside the scope: cases in the scope's dtype, generated within what the
 * implementation declares it supports (`scope.capabilities`), with the law's own options.
 */
export function scopedCaseArb(
  scope: LawScope,
  formula: string,
  opts: ScopedCaseOptions,
): fc.Arbitrary<FormulaCase> {
  return formulaCaseArb(formula, { dtype: scope.dtype, capabilities: scope.capabilities, ...opts });
}

/** {@link seededCaseArb} inside the scope, as {@link scopedCaseArb}. */
export function scopedSeededCaseArb(
  scope: LawScope,
  formula: string,
  opts: Omit<ScopedCaseOptions, "range" | "tensor">,
): fc.Arbitrary<FormulaCase> {
  return seededCaseArb(formula, { dtype: scope.dtype, capabilities: scope.capabilities, ...opts });
}

function hasKvCache(formula: string): boolean {
  return getFormula(formula).hyper.some((h) => h.name === "kv_cache");
}

/**
 * A generic case of a formula inside the scope: keys independent of queries for attention, and for
 * kv formulas both kv_cache settings with up to `maxPast` cached positions.
 */
function genericCase(
  scope: LawScope,
  formula: string,
  batch: "any" | "none" = "any",
  maxPast = 3,
): fc.Arbitrary<FormulaCase> {
  return scopedCaseArb(scope, formula, {
    ...(hasKvCache(formula) ? { choose: KV_CHOICES } : {}),
    dims: { batch, crossM: formula === "attention", maxP: hasKvCache(formula) ? maxPast : 0 },
  });
}

/** Generic cases of every formula of the scope, each formula with equal weight. */
function genericCases(scope: LawScope): fc.Arbitrary<FormulaCase> {
  return oneOfFormulas(scope, (f) => genericCase(scope, f));
}

/** The dims environment of a case: every dim of `Dims`, then the configuration's dim hyperparameters. */
function dimsEnv(formula: string, config: FormulaConfig, dims: Dims): Map<string, number> {
  const env = new Map<string, number>();
  for (const [k, v] of Object.entries(dims)) if (typeof v === "number") env.set(k, v);
  const def = getFormula(formula);
  for (const h of def.hyper) {
    const v = config[h.name];
    if (h.dim === true && typeof v === "number") env.set(h.name, v);
  }
  if (
    config["m"] === undefined &&
    env.has("n") &&
    (formula === "causal_mask" || formula === "alibi_bias")
  )
    env.set("m", env.get("n")!);
  return env;
}

// ---------------------------------------------------------------------------------------------

export const shapeAlgebra: Law = {
  name: "shape_algebra",
  formulas: "all",
  statement:
    "shape(f(x)) = the spec's symbolic output shapes at the dim binding (batch axes, n = 1, H = 1, odd d_k included)",
  tolerance: exactTolerance("exact: shapes and dtypes are integers and names"),
  arbitrary: genericCases,
  check: checked("shape_algebra", async (k: Check, c: FormulaCase) => {
    const def = getFormula(c.formula);
    const outs = await k.forward(k.request(c.formula, c.config, c.inputs));
    const env = dimsEnv(c.formula, c.config, c.dims);
    for (const o of def.outputs(exampleConfig(c.formula, stripUnknown(c.formula, c.config)))) {
      const t = k.pick(outs, o.name, c.formula, "forward");
      const want: number[] = [];
      for (const s of o.shape) {
        if (s === "...") {
          want.push(...c.dims.batch);
          continue;
        }
        const v = evalDim(dim(s), env);
        if (v === undefined)
          k.fail(
            `output ${o.name}: the law cannot size dim ${s} from ${[...env].map(([a, b]) => `${a}=${b}`).join(" ")}`,
          );
        want.push(v);
      }
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        k.fail(
          `output ${o.name} has shape ${shapeToString(t.shape)}; the spec's ` +
            `[${o.shape.join(", ")}] at ` +
            `${describeBinding(o.shape, env, c.dims.batch)} is ` +
            `${shapeToString(want)}`,
          {
            quantity: o.name,
            values: { actualShape: [...t.shape], expectedShape: want, symbolic: [...o.shape] },
          },
        );
      }
      k.expectDtype(o.name, t);
    }
  }),
};

function describeBinding(
  shape: readonly string[],
  env: ReadonlyMap<string, number>,
  batch: readonly number[],
): string {
  const names = new Set<string>();
  for (const s of shape) for (const m of s.matchAll(/[A-Za-z_][A-Za-z0-9_]*/g)) names.add(m[0]);
  const parts = [...names].filter((n) => env.has(n)).map((n) => `${n} = ${env.get(n)}`);
  if (shape.includes("...")) parts.unshift(`... = ${shapeToString(batch)}`);
  return parts.join(", ");
}

/** Configuration keys the formula declares (requests may carry `dtype`). */
function stripUnknown(formula: string, config: FormulaConfig): FormulaConfig {
  const names = new Set(getFormula(formula).hyper.map((h) => h.name));
  const out: Record<string, number | string | boolean> = {};
  for (const [key, v] of Object.entries(config)) if (names.has(key)) out[key] = v;
  return out;
}

// ---------------------------------------------------------------------------------------------

export const determinism: Law = {
  name: "determinism",
  formulas: "all",
  statement:
    "f(x) computed twice is bitwise identical (−0 ≠ +0), and f never modifies its arguments",
  tolerance: exactTolerance("exact: the same operations on the same operands round the same way"),
  arbitrary: genericCases,
  check: checked("determinism", async (k: Check, c: FormulaCase) => {
    const keep: NamedTensors = {};
    for (const [name, t] of Object.entries(c.inputs)) keep[name] = t.clone();
    const first = await k.forward(k.request(c.formula, c.config, c.inputs), "first forward");
    for (const [name, t] of Object.entries(keep)) {
      const i = firstBitDifference(t, c.inputs[name]!);
      if (i >= 0) {
        k.fail(
          `the implementation modified its argument ${name} (element ` +
            `${JSON.stringify(t.unravel(i))} was ${t.data[i]}, is ` +
            `${c.inputs[name]!.data[i]})`,
          {
            quantity: name,
            index: t.unravel(i),
            expected: t.data[i]!,
            actual: c.inputs[name]!.data[i]!,
          },
        );
      }
    }
    const again: NamedTensors = {};
    for (const [name, t] of Object.entries(keep)) again[name] = t.clone();
    const second = await k.forward(k.request(c.formula, c.config, again), "second forward");
    for (const [name, a] of Object.entries(first)) {
      const b = second[name];
      if (b === undefined)
        k.fail(`output ${name} is present in the first evaluation only`, { quantity: name });
      if (a.dtype !== b.dtype || shapeToString(a.shape) !== shapeToString(b.shape)) {
        k.fail(
          `output ${name}: ${a.dtype}${shapeToString(a.shape)} then ${b.dtype}${shapeToString(b.shape)}`,
          { quantity: name },
        );
      }
      const i = firstBitDifference(a, b);
      if (i >= 0) {
        k.fail(
          `output ${name} differs between two evaluations of the same inputs at ` +
            `${JSON.stringify(a.unravel(i))}: ${a.data[i]} then ${b.data[i]}`,
          {
            quantity: name,
            index: a.unravel(i),
            expected: a.data[i]!,
            actual: b.data[i]!,
            absError: Math.abs(a.data[i]! - b.data[i]!),
            allowed: 0,
          },
        );
      }
    }
  }),
};

// ---------------------------------------------------------------------------------------------

interface BatchCase extends FormulaCase {
  /** Arguments of the other batch members (batched arguments only). */
  readonly others: readonly NamedTensors[];
}

/** Formulas with at least one argument that takes leading batch axes. */
export function isBatched(formula: string): boolean {
  return getFormula(formula)
    .args(exampleConfig(formula, {}))
    .some((a) => a.shape[0] === "...");
}

export const batchIndependence: Law<BatchCase> = {
  name: "batch_independence",
  formulas: "batched",
  statement:
    "f(stack_b x_b)[b] = f(x_b) for every batch member b (and a mean over positions is the mean of the members' means)",
  tolerance: twinTolerance(
    "two evaluations of the same quantity (batched and alone): 2·γ_K·(S + " +
      "κ̂), K the formula's rounding depth, κ̂ measured on the member's own " +
      "request (tolerance.ts); a batched kernel may sum in another order, " +
      "nothing else may change",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      genericCase(scope, f, "none", 2).chain((c) =>
        fc
          .array(inputsArb(c.formula, c.config, c.dims, { dtype: c.dtype }), {
            minLength: 1,
            maxLength: 2,
          })
          .map((others) => ({ ...c, others })),
      ),
    ),
  check: checked("batch_independence", async (k: Check, c: BatchCase) => {
    const def = getFormula(c.formula);
    const cfg = exampleConfig(c.formula, stripUnknown(c.formula, c.config));
    const batched = new Set(
      def
        .args(cfg)
        .filter((a) => a.shape[0] === "...")
        .map((a) => a.name),
    );
    const members: NamedTensors[] = [
      c.inputs,
      ...c.others.map((o) => ({ ...c.inputs, ...pickBatched(o, batched) })),
    ];
    const stacked: NamedTensors = {};
    for (const [name, t] of Object.entries(c.inputs))
      stacked[name] = batched.has(name) ? stack(members.map((m) => m[name]!)) : t;
    const bReq = k.request(c.formula, c.config, stacked);
    const bOut = await k.forward(bReq, `forward with batch [${members.length}]`);
    const outSpecs = def.outputs(cfg);
    const alone: NamedTensors[] = [];
    for (let b = 0; b < members.length; b++) {
      const req = k.request(c.formula, c.config, members[b]!);
      const out = await k.forward(req, `forward of batch member ${b} alone`);
      alone.push(out);
      for (const o of outSpecs) {
        if (o.shape[0] !== "...") continue;
        const y = k.pick(bOut, o.name, c.formula, "batched forward");
        if (y.shape[0] !== members.length)
          k.fail(
            `output ${o.name} of the batched call has shape ` +
              `${shapeToString(y.shape)}: no leading batch axis of size ` +
              `${members.length}`,
            { quantity: o.name },
          );
        await k.expectTwin(
          `${o.name}[${b}] (batched) vs ${o.name} of member ${b} alone`,
          k.pick(out, o.name, c.formula, "forward"),
          unstackAt(y, b),
          req,
          out,
          o.name,
        );
      }
    }
    // outputs without batch axes are means over every position: the batched mean is the mean of the members' means
    for (const o of outSpecs) {
      if (o.shape[0] === "..." || o.shape.length !== 0) continue;
      const y = k.pick(bOut, o.name, c.formula, "batched forward");
      const mean =
        alone.reduce((s, out) => s + k.pick(out, o.name, c.formula, "forward").data[0]!, 0) /
        members.length;
      await k.expectTwin(
        `${o.name} of the batch vs the mean of the members' ${o.name}`,
        Tensor.scalar(mean),
        y,
        bReq,
        bOut,
        o.name,
      );
    }
  }),
};

function pickBatched(o: NamedTensors, names: ReadonlySet<string>): NamedTensors {
  const out: NamedTensors = {};
  for (const [k, v] of Object.entries(o)) if (names.has(k)) out[k] = v;
  return out;
}

// ---------------------------------------------------------------------------------------------

/**
 * Does the case's formula apply a LayerNorm over d_model inside a composite (a block or a model
 * with `norm` = layer_norm)? Read from the formula's own graph: some call node is `layer_norm`.
 */
function normalisesModelWidth(c: FormulaCase): boolean {
  if (c.formula === "layer_norm") return false;
  const g = referenceGraph(c.formula, stripUnknown(c.formula, c.config));
  return topoSort(Object.values(g.outputs).map((e) => e.node)).some(
    (n) => n.op === "call" && n.formula === "layer_norm",
  );
}

let oracle: Implementation | undefined;
/** The float64 reference, created on first use (the oracle of `reference_error_bound` only). */
function reference(): Implementation {
  oracle ??= referenceImplementation();
  return oracle;
}

export const referenceErrorBound: Law = {
  name: "reference_error_bound",
  formulas: "all",
  statement:
    "|f_impl,dtype(x) − f_ref,f64(x)| ≤ (γ_K(dtype) + γ_K(f64))·(S + κ̂ + " +
    "Z): the implementation is as accurate as its dtype allows",
  tolerance: {
    derivation:
      "ORACLE LAW (the only one): the comparison point is the specformer " +
      "reference evaluated in float64 on the same argument values. Each of the " +
      "two is within γ_K·(S + κ̂ + Z) of exact arithmetic (tolerance.ts: K the " +
      "formula's rounding depth, S = max|y_ref|, κ̂ the float64 reference's " +
      "measured conditioning, Z the magnitude of intermediates the last stages " +
      "cancel where κ̂ cannot see it — cross-entropy's logsumexp − z_t is an " +
      "absolute u·(2max|z| + ln V) per rounding however small the loss, a " +
      "fused LayerNorm's x·s + (β − μ·s) an absolute u·|x|·rstd·|γ|), so their " +
      "difference is within the sum of the two bounds. Cases of a model or " +
      "block whose LayerNorms normalise a single entry (d_model = 1: the " +
      "output is β whatever the input, so neither κ̂ nor a row-level Z sees " +
      "the u·|x|/√ε a fused kernel leaves, which the rest of the model then " +
      "carries) are not generated: the smallest LayerNorm that normalises has " +
      "d = 2, and layer_norm itself still runs at d = 1 with its Z",
    bound: (dtype, s) => gamma(s["K"] ?? 1, dtype) + gamma(s["K"] ?? 1, "f64"),
    scale: "S + κ̂ + Z",
  },
  requires: () => [],
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      genericCase(scope, f).filter((c) => !(c.dims.d_model === 1 && normalisesModelWidth(c))),
    ),
  check: checked("reference_error_bound", async (k: Check, c: FormulaCase) => {
    const ref = reference();
    if (!ref.formulas.includes(c.formula)) k.fail(`the reference does not compute ${c.formula}`);
    const out = await k.forward(k.request(c.formula, c.config, c.inputs));
    const inputs64: NamedTensors = {};
    for (const [name, t] of Object.entries(c.inputs))
      inputs64[name] = t.dtype === "i32" ? t : t.to("f64");
    const refReq = {
      formula: c.formula,
      config: { ...c.config, dtype: "f64" as const },
      inputs: inputs64,
    };
    const refOut = (await ref.forward(refReq)).outputs;
    const scales = await sensitivity(ref, refReq, refOut, "f64");
    const K = roundingDepth({ formula: c.formula, config: c.config, inputs: c.inputs });
    const cancelled = cancelledMagnitude(
      { formula: c.formula, config: c.config, inputs: inputs64 },
      refOut,
    );
    for (const [name, expected] of Object.entries(refOut)) {
      const actual = k.pick(out, name, c.formula, "forward");
      k.expectDtype(name, actual);
      const sc = scales[name]!;
      const Z = cancelled[name] ?? 0;
      const allowed =
        (gamma(K, c.dtype) + gamma(K, "f64")) * (sc.S + sc.kappa + Z) + K * smallestNormal(c.dtype);
      k.expectClose(
        `${name} (${c.dtype}) vs the float64 reference`,
        expected,
        actual,
        allowed,
        `(γ_K(${c.dtype}) + γ_K(f64))·(S + κ̂ + Z) with K = ${K}, u = ` +
          `${fmt(unitRoundoff(c.dtype))}, S = ${fmt(sc.S)}, κ̂ = ${fmt(sc.kappa)} ` +
          `(the float64 reference's, N = ${sc.perturbed}), Z = ${fmt(Z)} ` +
          `(cancelled magnitude, tolerance.ts)`,
      );
    }
  }),
};
