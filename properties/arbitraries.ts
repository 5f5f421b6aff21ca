/**
 * fast-check arbitraries for the laws: dims, tensors, configurations and seeds.
 *
 * - **Dims** are small (the laws do not need big tensors) and always include the edges: n = 1,
 *   H = 1, odd d_k, H_kv dividing H (1 = multi-query), empty and non-empty batch axes. fast-check
 *   shrinks integers towards their minimum, so a failure shrinks to the smallest shape.
 * - **Tensors** hold finite values of bounded magnitude. Float64 elements come from `fc.double`,
 *   float32 elements from `fc.float` with float32 bounds (`Math.fround`; fc.float accepts only
 *   32-bit bounds), both with `noNaN`. fast-check's bias yields the extremes on purpose: the
 *   bounds, tiny subnormals, 0 and **−0**. −0 is kept deliberately: every law treats −0 = +0 as
 *   values (IEEE equality), and implementations must not branch on the sign of a zero. Small
 *   tensors are element-wise arbitraries (each value shrinks towards 0); tensors larger than
 *   {@link ELEMENTWISE_LIMIT} come from a seeded generator (reproducible, but only the seed
 *   shrinks), which keeps generation and shrinking of model-sized parameter sets fast.
 * - **Configurations** vary every hyperparameter the registry declares with choices (enums,
 *   booleans) and a few stated values for numeric ones (ε, RoPE base, L), so the laws cover the
 *   variants (pre/post/sandwich, RMSNorm, RoPE, ALiBi, GQA, SwiGLU, parallel, untied).
 */
import fc from "fast-check";
import "../spec/index.js";
import { dim, evalDim } from "../spec/dims.js";
import { getFormula, type FormulaDef } from "../spec/formula.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import type { FormulaConfig } from "../autodiff/implementation.js";
import {
  valueAllowed,
  type Capabilities,
  type FormulaCapability,
} from "../autodiff/capabilities.js";

/** Tensors with at most this many elements are generated (and shrunk) element by element. */
const ELEMENTWISE_LIMIT = 64;

/** A seed for seeded generators and random signs. */
export const seedArb: fc.Arbitrary<number> = fc.integer({ min: 0, max: 0x7fffffff });

// ---------------------------------------------------------------------------------------------
// Dims

/** One binding of every dim a formula of the registry can mention. */
export interface Dims {
  /** Queries (rows of x). */
  readonly n: number;
  /** Keys (m = n + p for self-attention). */
  readonly m: number;
  /** Cached positions before the new rows (KV cache). */
  readonly p: number;
  readonly d: number;
  readonly d_k: number;
  readonly d_v: number;
  readonly d_in: number;
  readonly d_out: number;
  readonly H: number;
  readonly H_kv: number;
  readonly d_model: number;
  readonly d_kv: number;
  readonly d_ff: number;
  readonly V: number;
  readonly n_ctx: number;
  readonly L: number;
  /** Leading batch axes for arguments declared with `...`. */
  readonly batch: readonly number[];
}

export interface DimsOptions {
  readonly minN?: number;
  readonly maxN?: number;
  /** Keys independent of queries (attention with m ≠ n); default m = n + p. */
  readonly crossM?: boolean;
  /** Cached positions p in [0, maxP] (default 0). */
  readonly maxP?: number;
  /** d_k even (RoPE pairs). */
  readonly evenDk?: boolean;
  readonly minDk?: number;
  readonly maxH?: number;
  readonly minH?: number;
  /** Allow H_kv < H (default true). */
  readonly gqa?: boolean;
  /** Batch axes: "any" ([] , [1], [2], [2, 1]), "none" ([]), or exactly these. */
  readonly batch?: "any" | "none" | readonly number[];
  readonly minD?: number;
  readonly maxL?: number;
  readonly minV?: number;
}

function divisors(H: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= H; k++) if (H % k === 0) out.push(k);
  return out;
}

/**
 * Dims with n ∈ [1, 4], d_k ∈ [1, 4] (odd included; {2, 4} when even), H ∈ [1, 4], H_kv a
 * divisor of H, d_model = H·d_k, d_kv = H_kv·d_k, d ∈ [1, 6], d_ff ∈ [1, 5], V ∈ [2, 7],
 * n_ctx ≥ n + p, L ∈ [1, 2].
 */
export function dimsArb(opts: DimsOptions = {}): fc.Arbitrary<Dims> {
  const minN = opts.minN ?? 1;
  const maxN = Math.max(minN, opts.maxN ?? 4);
  const batchArb: fc.Arbitrary<readonly number[]> =
    opts.batch === "none" || opts.batch === undefined
      ? fc.constant([])
      : opts.batch === "any"
        ? fc.constantFrom<readonly number[]>([], [1], [2], [2, 1])
        : fc.constant(opts.batch);
  const dkArb =
    opts.evenDk === true
      ? fc.integer({ min: Math.max(1, Math.ceil((opts.minDk ?? 2) / 2)), max: 2 }).map((h) => 2 * h)
      : fc.integer({ min: opts.minDk ?? 1, max: 4 });
  return fc
    .record({
      n: fc.integer({ min: minN, max: maxN }),
      mCross: fc.integer({ min: 1, max: maxN + 1 }),
      p: fc.integer({ min: 0, max: opts.maxP ?? 0 }),
      d: fc.integer({ min: opts.minD ?? 1, max: 6 }),
      d_k: dkArb,
      d_v: fc.integer({ min: 1, max: 4 }),
      d_in: fc.integer({ min: 1, max: 5 }),
      d_out: fc.integer({ min: 1, max: 4 }),
      H: fc.integer({ min: opts.minH ?? 1, max: Math.max(opts.minH ?? 1, opts.maxH ?? 4) }),
      kvPick: fc.nat({ max: 3 }),
      d_ff: fc.integer({ min: 1, max: 5 }),
      V: fc.integer({ min: opts.minV ?? 2, max: 7 }),
      ctxExtra: fc.integer({ min: 0, max: 2 }),
      L: fc.integer({ min: 1, max: opts.maxL ?? 2 }),
      batch: batchArb,
    })
    .map((r) => {
      const ds = opts.gqa === false ? [r.H] : divisors(r.H);
      const H_kv = ds[r.kvPick % ds.length]!;
      const m = opts.crossM === true ? r.mCross : r.n + r.p;
      return {
        n: r.n,
        m,
        p: r.p,
        d: r.d,
        d_k: r.d_k,
        d_v: r.d_v,
        d_in: r.d_in,
        d_out: r.d_out,
        H: r.H,
        H_kv,
        d_model: r.H * r.d_k,
        d_kv: H_kv * r.d_k,
        d_ff: r.d_ff,
        V: r.V,
        n_ctx: r.n + r.p + r.ctxExtra,
        L: r.L,
        batch: r.batch,
      };
    });
}

// ---------------------------------------------------------------------------------------------
// Tensors

/** Closed interval of generated values. */
export interface ValueRange {
  readonly min: number;
  readonly max: number;
}

export interface TensorArbOptions {
  /** Map −0 to +0 (default false: −0 is generated on purpose). */
  readonly noNegativeZero?: boolean;
}

/**
 * One element: half the time a multiple of 1/4 in the range (exact in both dtypes), half the time
 * any float in it (with fast-check's bias to the extremes, subnormals and −0). The choice
 * cross-shrinks (`withCrossShrink`): a failure found with an extreme value is retried with the
 * quarter values first, so counterexamples shrink to readable numbers (0, ±1/4, ±1, …) when
 * the failure does not need extremes.
 */
function elementArb(dtype: FloatDType, r: ValueRange): fc.Arbitrary<number> {
  if (!(r.min <= r.max) || !Number.isFinite(r.min) || !Number.isFinite(r.max))
    throw new RangeError(`value range [${r.min}, ${r.max}] must be finite with min ≤ max`);
  const any =
    dtype === "f64"
      ? fc.double({ min: r.min, max: r.max, noNaN: true })
      : fc.float({ min: Math.fround(r.min), max: Math.fround(r.max), noNaN: true });
  const lo = Math.ceil(r.min * 4);
  const hi = Math.floor(r.max * 4);
  if (hi < lo) return any;
  return fc.oneof(
    { withCrossShrink: true },
    fc.integer({ min: lo, max: hi }).map((i) => i / 4),
    any,
  );
}

/** Uniform values in the range from a seed, rounded to the dtype. */
function seededValues(seed: number, size: number, r: ValueRange): Float64Array {
  const rng = new Rng(seed);
  const out = new Float64Array(size);
  for (let i = 0; i < size; i++) out[i] = r.min + (r.max - r.min) * rng.uniform();
  return out;
}

/** A float tensor of a fixed shape with values in the range (see the module comment). */
export function floatTensorArb(
  shape: readonly number[],
  dtype: FloatDType,
  range: ValueRange,
  opts: TensorArbOptions = {},
): fc.Arbitrary<Tensor> {
  const size = shape.reduce((a, b) => a * b, 1);
  const make = (values: ArrayLike<number>) => {
    const t = Tensor.zeros(shape, dtype);
    for (let i = 0; i < size; i++) {
      const v = values[i]!;
      t.data[i] = opts.noNegativeZero === true && v === 0 ? 0 : v;
    }
    return t;
  };
  if (size <= ELEMENTWISE_LIMIT)
    return fc.array(elementArb(dtype, range), { minLength: size, maxLength: size }).map(make);
  return seedArb.map((s) => make(seededValues(s, size, range)));
}

/** An i32 tensor of ids in [0, V). */
function intTensorArb(shape: readonly number[], V: number): fc.Arbitrary<Tensor> {
  const size = shape.reduce((a, b) => a * b, 1);
  const make = (values: ArrayLike<number>) => {
    const t = Tensor.zeros(shape, "i32");
    for (let i = 0; i < size; i++) t.data[i] = values[i]!;
    return t;
  };
  if (V < 1) throw new RangeError(`ids need V ≥ 1, got ${V}`);
  if (size <= ELEMENTWISE_LIMIT)
    return fc
      .array(fc.integer({ min: 0, max: V - 1 }), { minLength: size, maxLength: size })
      .map(make);
  return seedArb.map((s) => {
    const rng = new Rng(s);
    return make(Array.from({ length: size }, () => rng.int(V)));
  });
}

/** A permutation of 0..n−1 (shrinks towards the identity). */
export function permutationArb(n: number): fc.Arbitrary<number[]> {
  const ids = Array.from({ length: n }, (_, i) => i);
  return fc.shuffledSubarray(ids, { minLength: n, maxLength: n });
}

// ---------------------------------------------------------------------------------------------
// Configurations

export interface ConfigArbOptions {
  /** Fixed values (win over everything). */
  readonly fixed?: FormulaConfig;
  /** The values to choose from for some hyperparameters (default: the registry's choices). */
  readonly choose?: Readonly<Record<string, readonly (number | string | boolean)[]>>;
  /**
   * What the implementation declares it supports, per formula (autodiff/capabilities.ts):
   * choices are narrowed to the declared values, so cases are generated inside the declared
   * space rather than rejected after. `fixed` values still win (a law that needs a value the
   * implementation does not support then generates nothing it can run).
   */
  readonly capabilities?: Capabilities | undefined;
}

/**
 * The values of `values` a capability allows for a hyperparameter (all of them when it says
 * nothing, or allows none). `required`: the values are a law's own choice (`choose`), which the
 * capability may narrow but never replace — a law that needs positions ≠ none on a port declaring
 * only none gets cases outside the capability (not sent), not cases that defeat the law.
 */
function narrow<T extends number | string | boolean>(
  cap: FormulaCapability | undefined,
  name: string,
  values: readonly T[],
  required = false,
): readonly T[] {
  const rule = cap?.config?.[name];
  if (rule === undefined) return values;
  const kept = values.filter((v) => valueAllowed(rule, v));
  if (kept.length > 0 || required) return kept.length > 0 ? kept : values;
  // a numeric hyperparameter declared at values outside the stated choices: generate those
  if (Array.isArray(rule)) {
    const own = (rule as readonly (number | string | boolean)[]).filter(
      (v) => typeof v === typeof values[0],
    ) as T[];
    if (own.length > 0) return own;
  }
  return values;
}

/**
 * A configuration of the formula's non-dim hyperparameters, as their declarations say: each enum
 * over its choices (default first, so shrinking returns to it), each boolean both ways, each
 * number or integer over its declared `values` (else at its default; a number without either,
 * such as attention's scale, stays absent); a hyperparameter declared `held` stays at its default
 * unless a law chooses it. Dim hyperparameters (H, n, d_model…) are set from the dims by
 * {@link formulaCaseArb}. `parallel` is kept only with placement `pre` (GPT-J's form).
 */
export function configArb(
  formula: string,
  opts: ConfigArbOptions = {},
): fc.Arbitrary<FormulaConfig> {
  const def = getFormula(formula);
  const parts: Record<string, fc.Arbitrary<number | string | boolean>> = {};
  for (const h of def.hyper) {
    // dims come from the dims; a held dim (the offset of a KV cache) is a choice of the laws
    if (h.dim === true && h.held !== true) continue;
    const fixed = opts.fixed?.[h.name];
    if (fixed !== undefined) {
      parts[h.name] = fc.constant(fixed);
      continue;
    }
    const cap = opts.capabilities?.[formula];
    const chosen = opts.choose?.[h.name];
    if (chosen !== undefined) {
      if (chosen.length === 0)
        throw new RangeError(`configArb(${formula}): no values to choose for ${h.name}`);
      parts[h.name] = fc.constantFrom(...narrow(cap, h.name, chosen, true));
      continue;
    }
    if (h.held === true) {
      if (h.default !== undefined) parts[h.name] = fc.constant(h.default);
      continue;
    }
    if (h.kind === "enum")
      parts[h.name] = fc.constantFrom(
        ...narrow(cap, h.name, orderDefaultFirst(h.choices ?? [], h.default)),
      );
    else if (h.kind === "boolean")
      parts[h.name] = fc.constantFrom(
        ...narrow(cap, h.name, [(h.default ?? false) as boolean, !(h.default ?? false)]),
      );
    else if (h.kind === "number" || h.kind === "integer") {
      const declared = h.values ?? (typeof h.default === "number" ? [h.default] : []);
      const values = narrow(cap, h.name, declared);
      if (values.length > 0) parts[h.name] = fc.constantFrom(...values);
    }
  }
  return fc.record(parts).map((c) => {
    const out: Record<string, number | string | boolean> = { ...c };
    if (out["parallel"] === true && "placement" in out && out["placement"] !== "pre")
      out["parallel"] = false;
    return out;
  });
}

function orderDefaultFirst(choices: readonly string[], dflt: unknown): string[] {
  return typeof dflt === "string" && choices.includes(dflt)
    ? [dflt, ...choices.filter((c) => c !== dflt)]
    : [...choices];
}

// ---------------------------------------------------------------------------------------------
// Whole cases

/** One evaluation of one formula: configuration, sizes and every argument. */
export interface FormulaCase {
  readonly formula: string;
  /** Hyperparameters (without `dtype`; requests add it). */
  readonly config: FormulaConfig;
  readonly dtype: FloatDType;
  readonly dims: Dims;
  readonly inputs: NamedTensors;
}

/** The magnitude policy for an argument (see {@link defaultRange}). */
export type RangePolicy = (
  arg: { name: string; role: "input" | "param"; shape: readonly number[] },
  formula: string,
) => ValueRange;

/**
 * Default magnitudes: inputs in [−3, 3] (softmax-family scores in [−1000, 1000] so that an
 * implementation without max subtraction overflows, exp(710) = ∞ even in float64; logits of cross-entropy in [−50, 50];
 * activations in [−12, 12], past their saturation); matrices uniform with variance 1/fan-in
 * (±√(3/k)) so compositions stay O(1); norm scales in [0.5, 1.5] inside blocks and models,
 * [−2, 2] for the norm formulas themselves; biases, embeddings and position tables in [−1, 1].
 */
const defaultRange: RangePolicy = (arg, formula) => {
  if (arg.role === "param") {
    if (arg.shape.length === 2) {
      const fanIn = /^(E|P|W_vocab|wte\.weight|wpe\.weight|lm_head\.weight)$/.test(arg.name)
        ? 3
        : Math.max(1, arg.shape[0]!);
      const b = Math.sqrt(3 / fanIn);
      return { min: -b, max: b };
    }
    if (/(^|\.)(gamma|weight)$/.test(arg.name))
      return formula === "layer_norm" || formula === "rms_norm"
        ? { min: -2, max: 2 }
        : { min: 0.5, max: 1.5 };
    return { min: -1, max: 1 };
  }
  if (formula === "softmax" || formula === "log_softmax" || formula === "logsumexp")
    return { min: -1000, max: 1000 };
  if (formula === "cross_entropy") return { min: -50, max: 50 };
  if (formula === "gelu" || formula === "gelu_tanh" || formula === "relu" || formula === "silu")
    return { min: -12, max: 12 };
  if (formula === "layer_norm" || formula === "rms_norm") return { min: -100, max: 100 };
  return { min: -3, max: 3 };
};

export interface FormulaCaseOptions extends ConfigArbOptions {
  readonly dtype: FloatDType;
  readonly dims?: DimsOptions;
  /** Magnitudes (default {@link defaultRange}); return undefined to fall back to the default. */
  readonly range?: (
    arg: { name: string; role: "input" | "param"; shape: readonly number[] },
    formula: string,
  ) => ValueRange | undefined;
  /** Extra configuration computed from the dims (e.g. `offset`). */
  readonly configFromDims?: (dims: Dims, config: FormulaConfig) => FormulaConfig;
  readonly tensor?: TensorArbOptions;
}

/** Set a formula's dim hyperparameters (H, H_kv, n, m, d_model, V, n_ctx, d_ff, L…) from the dims. */
function configWithDims(def: FormulaDef, config: FormulaConfig, dims: Dims): FormulaConfig {
  const out: Record<string, number | string | boolean> = { ...config };
  for (const h of def.hyper) {
    if (h.name === "offset" || h.name === "kv_cache") continue;
    if (h.name === "H_kv") {
      // attention's H_kv gives K and V their own head axis: laws about grouped heads state it (grouped_heads)
      if (dims.H_kv !== dims.H && def.name !== "attention") out["H_kv"] = dims.H_kv;
      continue;
    }
    if (h.name === "L") {
      out["L"] = dims.L;
      continue;
    }
    if (h.name === "m") {
      if (dims.m !== dims.n) out["m"] = dims.m;
      continue;
    }
    if (h.dim === true || h.name === "H") {
      const v = (dims as unknown as Record<string, unknown>)[h.name];
      if (typeof v === "number") out[h.name] = v;
    }
  }
  if (def.name === "alibi_bias" || (def.name === "attention" && out["alibi"] === true))
    out["H"] = dims.H;
  return out;
}

/**
 * Concrete argument shapes of a formula for a configuration and dims, batch axes included. Every
 * symbolic dim is evaluated in the dims' binding (with the configuration's dim hyperparameters
 * on top), so the shapes agree with the dims the law reasons about.
 */
export function argShapes(
  formula: string,
  config: FormulaConfig,
  dims: Dims,
): Record<string, number[]> {
  const def = getFormula(formula);
  const env = new Map<string, number>();
  for (const [k, v] of Object.entries(dims)) if (typeof v === "number") env.set(k, v);
  for (const h of def.hyper) {
    const v = config[h.name];
    if (h.dim === true && typeof v === "number") env.set(h.name, v);
  }
  const out: Record<string, number[]> = {};
  for (const a of def.args(configForArgs(def, config))) {
    const s = a.shape
      .filter((d) => d !== "...")
      .map((d) => {
        const v = evalDim(dim(d), env);
        if (v === undefined)
          throw new RangeError(
            `argShapes(${formula}): cannot size ${d} of ${a.name} from ` +
              `${[...env].map(([k, x]) => `${k}=${x}`).join(" ")}`,
          );
        return v;
      });
    out[a.name] = a.shape[0] === "..." ? [...dims.batch, ...s] : s;
  }
  return out;
}

function configForArgs(def: FormulaDef, config: FormulaConfig): FormulaConfig {
  const known = new Set(def.hyper.map((h) => h.name));
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(config)) if (known.has(k)) out[k] = v;
  for (const h of def.hyper)
    if (out[h.name] === undefined && h.default !== undefined) out[h.name] = h.default;
  return out;
}

/**
 * Dim options narrowed to a capability's dim rules: `n` and `H` ranges and `m = n` (self-attention
 * only). Other dim rules (`H_kv = H` among them: a law that filters for grouped heads would never
 * find one) are left to the runner's filter, which rejects within a budget.
 */
function withinDims(cap: FormulaCapability | undefined, o: DimsOptions): DimsOptions {
  const r = cap?.dims;
  if (r === undefined) return o;
  const out: { -readonly [K in keyof DimsOptions]: DimsOptions[K] } = { ...o };
  const n = r["n"];
  if (n?.max !== undefined) out.maxN = Math.max(1, Math.min(o.maxN ?? 4, n.max));
  if (n?.min !== undefined && n.min <= 4) out.minN = Math.max(o.minN ?? 1, n.min);
  const H = r["H"];
  if (H?.max !== undefined) out.maxH = Math.max(1, Math.min(o.maxH ?? 4, H.max));
  if (H?.min !== undefined && H.min <= 4) out.minH = Math.max(o.minH ?? 1, H.min);
  if (r["m"]?.equals === "n") {
    out.crossM = false;
    out.maxP = 0;
  }
  return out;
}

/**
 * A whole case of one formula: a configuration (variants from the registry), dims (n = 1, H = 1
 * and odd d_k included; even d_k when RoPE is on) and every argument.
 */
export function formulaCaseArb(
  formula: string,
  opts: FormulaCaseOptions,
): fc.Arbitrary<FormulaCase> {
  return withConfig(formula, opts, (dimsOpts, caseConfig) =>
    dimsArb(dimsOpts).chain((dims) => {
      const config = caseConfig(dims);
      return inputsArb(formula, config, dims, opts).map((inputs) => ({
        formula,
        config,
        dtype: opts.dtype,
        dims,
        inputs,
      }));
    }),
  );
}

/**
 * The start every whole case shares ({@link formulaCaseArb}, {@link seededCaseArb}): a
 * configuration, then `body` with the dims options for it (within the capabilities; even d_k when
 * RoPE is on) and the case's configuration once the dims are drawn (dim hyperparameters set from
 * them, then `configFromDims`).
 */
function withConfig<T>(
  formula: string,
  opts: Omit<FormulaCaseOptions, "range" | "tensor">,
  body: (dimsOpts: DimsOptions, caseConfig: (dims: Dims) => FormulaConfig) => fc.Arbitrary<T>,
): fc.Arbitrary<T> {
  const def = getFormula(formula);
  return configArb(formula, opts).chain((cfg0) => {
    const rope =
      formula === "rope" ||
      cfg0["positions"] === "rope" ||
      cfg0["positions"] === "rope_interleaved";
    const dimsOpts: DimsOptions = withinDims(opts.capabilities?.[formula], {
      ...(opts.dims ?? {}),
      ...(rope ? { evenDk: true } : {}),
    });
    return body(dimsOpts, (dims) => {
      const config = configWithDims(def, cfg0, dims);
      return opts.configFromDims !== undefined
        ? { ...config, ...opts.configFromDims(dims, config) }
        : config;
    });
  });
}

/** Every argument of a formula for a configuration and dims (see {@link defaultRange}). */
export function inputsArb(
  formula: string,
  config: FormulaConfig,
  dims: Dims,
  opts: Pick<FormulaCaseOptions, "dtype" | "range" | "tensor">,
): fc.Arbitrary<NamedTensors> {
  const def = getFormula(formula);
  const shapes = argShapes(formula, config, dims);
  const parts: Record<string, fc.Arbitrary<Tensor>> = {};
  for (const a of def.args(configForArgs(def, config))) {
    const shape = shapes[a.name]!;
    if (a.int === true) {
      const V = formula === "cross_entropy" ? shapes["logits"]!.at(-1)! : dims.V;
      parts[a.name] = intTensorArb(shape, V);
    } else {
      const range =
        opts.range?.({ name: a.name, role: a.role, shape }, formula) ??
        defaultRange({ name: a.name, role: a.role, shape }, formula);
      parts[a.name] = floatTensorArb(shape, opts.dtype, range, opts.tensor);
    }
  }
  return fc.record(parts).map((r) => r as NamedTensors);
}

/**
 * Arguments drawn from a seeded normal generator instead of element-wise arbitraries: inputs
 * N(0, 1), matrices N(0, 1/fan-in), norm scales 1 + 0.1·N(0, 1), biases 0.1·N(0, 1), ids uniform.
 * Laws that need non-degenerate values (a negative law must see an effect: weights that are all
 * zero would hide any position signal) use these; only the seed, dims and configuration shrink.
 */
export function seededInputs(
  formula: string,
  config: FormulaConfig,
  dims: Dims,
  dtype: FloatDType,
  seed: number,
): NamedTensors {
  const def = getFormula(formula);
  const shapes = argShapes(formula, config, dims);
  const rng = new Rng(seed);
  const out: NamedTensors = {};
  for (const a of def.args(configForArgs(def, config))) {
    const shape = shapes[a.name]!;
    if (a.int === true) {
      const V = formula === "cross_entropy" ? shapes["logits"]!.at(-1)! : dims.V;
      out[a.name] = rng.intTensor(shape, V);
      continue;
    }
    const base = a.shape[0] === "..." ? shape.slice(dims.batch.length) : shape;
    const t = Tensor.zeros(shape, dtype);
    const isMatrix = a.role === "param" && base.length === 2;
    const isScale = a.role === "param" && base.length === 1 && /(^|\.)(gamma|weight)$/.test(a.name);
    const isBias = a.role === "param" && base.length === 1 && !isScale;
    const sd =
      isMatrix && !/^(E|P|W_vocab|wte\.weight|wpe\.weight|lm_head\.weight)$/.test(a.name)
        ? 1 / Math.sqrt(Math.max(1, base[0]!))
        : isScale || isBias
          ? 0.1
          : 1;
    for (let i = 0; i < t.size; i++) t.data[i] = (isScale ? 1 : 0) + sd * rng.normal();
    out[a.name] = t;
  }
  return out;
}

/** {@link formulaCaseArb} with seeded arguments ({@link seededInputs}). */
export function seededCaseArb(
  formula: string,
  opts: Omit<FormulaCaseOptions, "range" | "tensor">,
): fc.Arbitrary<FormulaCase> {
  return withConfig(formula, opts, (dimsOpts, caseConfig) =>
    fc.tuple(dimsArb(dimsOpts), seedArb).map(([dims, seed]) => {
      const config = caseConfig(dims);
      return {
        formula,
        config,
        dtype: opts.dtype,
        dims,
        inputs: seededInputs(formula, config, dims, opts.dtype, seed),
      };
    }),
  );
}
