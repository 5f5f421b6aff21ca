/**
 * Fused forward kernels for formulas whose composition makes several passes over a row.
 * Each is allowed only because a test (fused.test.ts) proves it equals the composition of
 * primitives in value, and the formula's custom VJP (spec) never reads the body's internals.
 * Arithmetic is float64; a Float32Array output rounds once on store.
 */
import type { FormulaConfigs, FormulaName } from "../../spec/configs.js";
import type { Config } from "../../spec/node.js";
import type { Arr } from "./ops.js";

export interface FusedKernel<C extends Config = Config> {
  /** Argument names, in the order `run` receives them. */
  readonly args: readonly string[];
  run(args: readonly Arr[], shapes: readonly (readonly number[])[], out: Arr, config: C): void;
  /**
   * Argument positions whose buffer may also be the output: the kernel reads each element (or
   * the whole row) of that argument before writing the output at the same place.
   */
  readonly inPlace?: readonly number[];
  /** Configurations the kernel computes (default all): softmax over another axis, LayerNorm without β. */
  readonly applies?: (config: C) => boolean;
}

/** The fused kernel of a call of `formula` with `config`, if one exists and computes that configuration. */
export function fusedKernel(formula: string, config: Config): FusedKernel | undefined {
  const f = (FUSED as Readonly<Record<string, FusedKernel | undefined>>)[formula];
  return f !== undefined && (f.applies === undefined || f.applies(config)) ? f : undefined;
}

const lastAxis = (config: Config) => config["axis"] === undefined || config["axis"] === -1;

function safeMax(x: Arr, o: number, m: number): number {
  let mx = -Infinity;
  for (let i = 0; i < m; i++) {
    const v = x[o + i]!;
    if (v > mx || v !== v) mx = v;
  }
  return mx === -Infinity ? 0 : mx;
}

/** Fused kernels by formula, each typed by its formula's configuration. */
export const FUSED: { readonly [N in FormulaName]?: FusedKernel<FormulaConfigs[N]> } = {
  softmax: {
    args: ["x"],
    inPlace: [0],
    applies: lastAxis,
    run([x], [shape], out) {
      const m = shape![shape!.length - 1]!;
      if (m === 0) return;
      const rows = x!.length / m;
      const e = new Float64Array(m);
      for (let r = 0; r < rows; r++) {
        const o = r * m;
        const mx = safeMax(x!, o, m);
        let s = 0;
        for (let i = 0; i < m; i++) {
          const v = Math.exp(x![o + i]! - mx);
          e[i] = v;
          s += v;
        }
        if (s === 0) s = 1;
        for (let i = 0; i < m; i++) out[o + i] = e[i]! / s;
      }
    },
  },
  logsumexp: {
    args: ["x"],
    run([x], [shape], out) {
      const m = shape![shape!.length - 1]!;
      const rows = out.length;
      for (let r = 0; r < rows; r++) {
        const o = r * m;
        const mx = safeMax(x!, o, m);
        let s = 0;
        for (let i = 0; i < m; i++) s += Math.exp(x![o + i]! - mx);
        out[r] = mx + Math.log(s);
      }
    },
  },
  layer_norm: {
    args: ["x", "gamma", "beta"],
    inPlace: [0],
    applies: (config) => config.bias && config.normalized_axes === 1,
    run([x, gamma, beta], [shape], out, config) {
      const d = shape![shape!.length - 1]!;
      if (d === 0) return;
      const eps = config.eps;
      const rows = x!.length / d;
      const inv = 1 / d;
      for (let r = 0; r < rows; r++) {
        const o = r * d;
        let s = 0;
        for (let i = 0; i < d; i++) s += x![o + i]!;
        const mu = inv * s;
        let v = 0;
        for (let i = 0; i < d; i++) {
          const c = x![o + i]! - mu;
          v += c * c;
        }
        const rstd = 1 / Math.sqrt(inv * v + eps);
        for (let i = 0; i < d; i++)
          out[o + i] = gamma![i]! * ((x![o + i]! - mu) * rstd) + beta![i]!;
      }
    },
  },
};
