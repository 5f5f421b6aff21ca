import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse, type MathNode } from "mathjs";
import "./index.js";
import { buildFormula, hyperDims } from "./formula.js";
import { SCALAR_FNS, type ScalarFnName } from "./scalar.js";
import { graphDepth, outputDepths, SCALAR_ROUNDINGS, type DepthGraph } from "./rounding.js";

/**
 * Roundings on the longest chain of a math string in x, by the rules SCALAR_ROUNDINGS states:
 * + − × ÷ and √ round once, x^k (integer k) k − 1 times, a libm function (exp, log, tanh, erf,
 * sin, cos, a non-integer power) within 1 ulp: 2; a subexpression without x is folded into one
 * constant (0 when it is an exact literal); max, abs, floor, negation and comparisons are exact.
 */
function countRoundings(n: MathNode): number {
  type Fields = { name?: string; value?: unknown; content?: MathNode; op?: string; fn?: unknown };
  const o = n as MathNode & Fields & { args?: MathNode[] };
  const isX = (c: MathNode) => c.type === "SymbolNode" && (c as { name?: string }).name === "x";
  const hasX = n.filter(isX).length > 0;
  if (!hasX) {
    if (n.type === "ParenthesisNode") return countRoundings(o.content!);
    return n.type === "ConstantNode" && Math.fround(Number(o.value)) === Number(o.value) ? 0 : 1;
  }
  const below = (): number => Math.max(...o.args!.map(countRoundings));
  switch (n.type) {
    case "SymbolNode":
      return 0;
    case "ParenthesisNode":
      return countRoundings(o.content!);
    case "ConditionalNode":
      return 0;
    case "OperatorNode": {
      if (o.fn === "unaryMinus") return below();
      if (o.op === ">" || o.op === "<") return 0;
      const e = o.args![1];
      const k = e?.type === "ConstantNode" ? Number((e as { value?: unknown }).value) : NaN;
      // x^k, k an integer: k − 1 products
      if (o.op === "^" && Number.isInteger(k)) return countRoundings(o.args![0]!) + k - 1;
      return below() + (o.op === "^" ? 2 : 1);
    }
    case "FunctionNode": {
      const name = (o.fn as { name: string }).name;
      if (name === "sqrt") return below() + 1;
      return below() + (["max", "min", "abs", "floor"].includes(name) ? 0 : 2);
    }
  }
  throw new Error(`countRoundings: no rule for ${n.type}`);
}

const graphOf = (name: string, cfg = {}): DepthGraph => {
  const b = buildFormula(name, cfg);
  return { name, outputs: b.outputs, relations: b.relations, hyper: hyperDims(b.def, b.config) };
};
const info = (shape: number[], dtype = "f64") => ({ shape, dtype });

describe("SCALAR_ROUNDINGS", () => {
  const names = Object.keys(SCALAR_FNS) as ScalarFnName[];
  it.each(names)("%s: the table's count is the count of its math string", (fn) => {
    expect(SCALAR_ROUNDINGS[fn]).toBe(countRoundings(parse(SCALAR_FNS[fn].math)));
  });
});

describe("rounding depth of registry formulas, by the rules of spec/rounding.ts", () => {
  it("softmax over m: x − max (1), exp (2), the sum (m − 1), + [s = 0] (1), ÷ (1)", () => {
    for (const m of [1, 2, 5, 13]) {
      expect(graphDepth(graphOf("softmax"), { x: info([3, m]) })).toBe(m + 4);
    }
  });

  it("layer_norm over d: mean, − μ, x², mean, + ε (ε rounded once), rsqrt (2), ×, ×γ, +β", () => {
    // μ: Σ (d − 1) then ×(1/d): d; x − μ: d + 1; square: d + 2; mean: 2d + 2; + ε: 2d + 3;
    // rsqrt: 2d + 5; x̂: 2d + 6; γ·x̂: 2d + 7; + β: 2d + 8
    for (const d of [1, 2, 7]) {
      const sizes = { x: info([2, d]), gamma: info([d]), beta: info([d]) };
      expect(graphDepth(graphOf("layer_norm"), sizes)).toBe(2 * d + 8);
    }
  });

  it("attention: QKᵀ (d_k), ÷ √d_k, + M, softmax over m, P·V (m)", () => {
    // d_k + 1 (÷, √d_k itself one rounding deep) + 1 (mask) + (m + 4) + m
    const d = (n: number, m: number, dk: number) =>
      graphDepth(graphOf("attention"), { Q: info([n, dk]), K: info([m, dk]), V: info([m, 2]) });
    expect(d(3, 4, 3)).toBe(3 + 1 + 1 + (4 + 4) + 4);
    expect(d(1, 1, 1)).toBe(1 + 1 + 1 + (1 + 4) + 1);
  });

  it("positions and masks are exact integers: a causal mask, ALiBi's offsets round nothing", () => {
    expect(graphDepth(graphOf("causal_mask", { n: 6, m: 9 }), {})).toBe(0);
    // slopes 2^(−8(h+1)/c), c = 4: an integer exponent, pow within 1 ulp (2); × (j − i − (m − n))
    expect(graphDepth(graphOf("alibi_bias", { H: 4, n: 5 }), {})).toBe(3);
  });

  it("sinusoidal positions: the angle's relative error counts |θ| times in sin/cos", () => {
    const at = (n: number) => graphDepth(graphOf("positional_sinusoidal", { n, d_model: 4 }), {});
    // ω = 10000^(−2k/d): the exponent rounds once, amplified by |ln 10000|; pow 2; θ = p/ω: 1
    const theta = Math.log(10000) + 2 + 1;
    expect(at(1)).toBeCloseTo(theta * 1 + 2, 12);
    expect(at(9)).toBeCloseTo(theta * 8 + 2, 12);
  });

  it("gives each output its own depth", () => {
    const g = graphOf("mha", { H: 2, kv_cache: true });
    const sizes = { x: info([3, 4]), past_k: info([2, 1, 2]), past_v: info([2, 1, 2]) };
    const weights: Record<string, ReturnType<typeof info>> = {};
    for (const w of ["W_Q", "W_K", "W_V", "W_O"]) weights[w] = info([4, 4]);
    for (const b of ["b_Q", "b_K", "b_V", "b_O"]) weights[b] = info([4]);
    const k = outputDepths(g, { ...sizes, ...weights });
    // the new keys are x W_K + b_K: a dot product of 4, then the bias
    expect(k["k"]).toBe(4 + 1);
    expect(k["y"]).toBeGreaterThan(k["k"]!);
  });
});

// A formula registered here has no entry in any table: its depth must come from its graph. The
// registry is loaded afresh for it (and again afterwards), so other test files never see it.
describe("a newly registered formula", () => {
  let spec: typeof import("./index.js");
  let rounding: typeof import("./rounding.js");
  beforeAll(async () => {
    vi.resetModules();
    spec = await import("./index.js");
    rounding = await import("./rounding.js");
  });
  afterAll(() => vi.resetModules());

  it("gets its depth from the interpreter, with no entry anywhere", () => {
    const { defineFormula, exp, matmul, sumLast, buildFormula: build, hyperDims: hyper } = spec;
    defineFormula({
      name: "toy_rounding_depth",
      description: "Σ_j exp(x W)_j: a test formula",
      category: "core",
      hyper: [],
      args: () => [
        { name: "x", shape: ["...", "n", "d"], role: "input", doc: "rows" },
        { name: "W", shape: ["d", "e"], role: "param", doc: "weights" },
      ],
      outputs: () => [{ name: "y", shape: ["...", "n", "1"], doc: "sums" }],
      build: ({ x, W }) => ({ y: sumLast(exp(matmul(x as never, W as never))) }),
    });
    const b = build("toy_rounding_depth");
    const g = { ...b, name: b.def.name, hyper: hyper(b.def, b.config) };
    // x W: d; exp: 2; the sum of e terms: e − 1
    for (const [d, e] of [
      [1, 1],
      [3, 5],
      [8, 2],
    ] as const) {
      expect(rounding.graphDepth(g, { x: info([2, d]), W: info([d, e]) })).toBe(d + 2 + e - 1);
    }
  });
});
