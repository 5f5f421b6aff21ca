/**
 * Seeded randomness: every weight, input and direction in specformer is reproducible from a seed.
 * xoshiro128** for uniform draws (32-bit state, fast, well-tested), Box–Muller for normals.
 */
import { exampleConfig, exampleShapes, getFormula } from "../spec/formula.js";
import type { Config } from "../spec/node.js";
import { Tensor, type FloatDType, type NamedTensors } from "./tensor.js";

/** A seeded random number generator (xoshiro128**): the same seed gives the same sequence on every platform. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  /** @param seed Any number; only its conversion to an unsigned 32-bit integer (`seed >>> 0`) matters. */
  constructor(seed: number) {
    // splitmix32 expands the seed into the four state words
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A tensor of independent normal draws with standard deviation `scale`. */
  normalTensor(shape: readonly number[], scale = 1, dtype: FloatDType = "f64"): Tensor {
    const t = Tensor.zeros(shape, dtype);
    for (let i = 0; i < t.size; i++) t.data[i] = scale * this.normal();
    return t;
  }

  /** An i32 tensor of independent integers in [0, n) (token ids for a vocabulary of size n). */
  intTensor(shape: readonly number[], n: number): Tensor {
    const t = Tensor.zeros(shape, "i32");
    for (let i = 0; i < t.size; i++) t.data[i] = this.int(n);
    return t;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * `count` fractions s/(2³¹ − 1) in (0, 1) of the Park–Miller "minimal standard" sequence
 * s ← 48271·s mod (2³¹ − 1), started from `seed` (1 ≤ seed < 2³¹ − 1). Exact in float64 and
 * trivial to reproduce in any language: fixed test inputs with no structure.
 */
export function parkMiller(count: number, seed: number): number[] {
  const out: number[] = [];
  let s = seed;
  for (let i = 0; i < count; i++) {
    s = (s * 48271) % 2147483647;
    out.push(s / 2147483647);
  }
  return out;
}

export interface SampleOptions {
  readonly seed?: number;
  readonly dims?: Readonly<Record<string, number>>;
  readonly dtype?: FloatDType;
  /** Leading batch axes for arguments declared with "...". */
  readonly batch?: readonly number[];
  /** Standard deviation of float arguments (default 1; weights of blocks and models get 1/√fan-in). */
  readonly scale?: number;
}

/** Random arguments for a registry formula at its example sizes (or `dims`). */
export function sampleInputs(
  name: string,
  cfg: Config = {},
  opts: SampleOptions = {},
): NamedTensors {
  const def = getFormula(name);
  const config = exampleConfig(name, cfg);
  const shapes = exampleShapes(name, config, opts.dims ?? {});
  const rng = new Rng(opts.seed ?? 0);
  const out: NamedTensors = {};
  const vocab =
    shapes["E"]?.[0] ??
    shapes["wte.weight"]?.[0] ??
    shapes["logits"]?.at(-1) ??
    (typeof config["V"] === "number" ? config["V"] : undefined) ??
    11;
  for (const a of def.args(config)) {
    const base = shapes[a.name]!;
    const shape = a.shape[0] === "..." ? [...(opts.batch ?? []), ...base] : base;
    if (a.int) out[a.name] = rng.intTensor(shape, vocab);
    else {
      // parameters that multiply (matrices) get 1/√fan-in so deep compositions stay O(1)
      const isMatrix = a.role === "param" && base.length === 2;
      const scale = opts.scale ?? (isMatrix ? 1 / Math.sqrt(base[0]!) : 1);
      const t = rng.normalTensor(shape, scale, opts.dtype ?? "f64");
      // norm scales near 1, so LayerNorm/RMSNorm stay well conditioned
      if (a.role === "param" && /(^|\.)(gamma|weight)$/.test(a.name) && base.length === 1)
        for (let i = 0; i < t.size; i++) t.data[i] = 1 + 0.1 * t.data[i]!;
      out[a.name] = t;
    }
  }
  return out;
}
