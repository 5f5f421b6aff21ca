/**
 * Fused elementwise chains and fused row reductions (kernels/chain.ts, planned in evaluate.ts)
 * give the plain interpretation's values bit for bit — forward and gradient, float64 and
 * float32 — on random graphs of unary, binary (broadcasting), where, constant and reduce nodes,
 * with NaN, ±∞ and −0 among the inputs, and at degenerate sizes (1, odd, empty).
 */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import type { Graph } from "./graph.js";
import { evaluate, plan, type EvalOptions } from "./evaluate.js";
import { vjp } from "./grad.js";
import { Rng } from "./random.js";
import { Tensor, type FloatDType, type NamedTensors } from "./tensor.js";
import { bitDifference } from "./bits.testing.js";
import {
  binary,
  constant,
  input,
  maxLast,
  reduce,
  sumLast,
  unary,
  where,
  type Expr,
} from "../spec/expr.js";
import { SCALAR_FN_NAMES } from "../spec/scalar.js";
import type { BinaryFn } from "../spec/node.js";
import { coalesce } from "./kernels/chain.js";

const UNFUSED: EvalOptions["optimize"] = {
  reuse: true,
  inPlace: true,
  rewrites: true,
  fuse: false,
};

/** `got` (fused) holds the same tensors as `want` (plain), bit for bit. */
function sameBits(want: NamedTensors, got: NamedTensors, what: string): void {
  expect(bitDifference(want, got, what, "fused")).toBeUndefined();
}

/** Normal values with NaN, ±∞, −0, 0 and large magnitudes sprinkled in (about 1 in 12). */
function specialTensor(rng: Rng, shape: readonly number[], dtype: FloatDType): Tensor {
  const t = rng.normalTensor(shape, 1.5, dtype);
  const special = [NaN, Infinity, -Infinity, -0, 0, 1e300, -1e-300, 30];
  for (let i = 0; i < t.size; i++)
    if (rng.uniform() < 1 / 12) t.data[i] = special[rng.int(special.length)]!;
  return t;
}

const BINARY_FNS: readonly BinaryFn[] = [
  "add",
  "sub",
  "mul",
  "div",
  "pow",
  "max",
  "min",
  "eq",
  "lt",
  "le",
];
const CONSTS = [0, -0, 1, 0.5, -2, 1e-7, Infinity, NaN, 0.1];

interface RandomGraph {
  readonly graph: Graph;
  readonly shapes: Record<string, number[]>;
}

/**
 * A random DAG over inputs x (a, b, c) and broadcasting operands: y (c), z (a, 1, c), w (a, b, 1),
 * s (scalar). Nodes are reused at random (a value read twice is a chain's leaf, not inlined);
 * outputs are the last node and a few others, some of them row sums or maxima.
 */
function randomGraph(rng: Rng, dims: { a: number; b: number; c: number }): RandomGraph {
  const x = input("x", ["a", "b", "c"]);
  const y = input("y", ["c"]);
  const z = input("z", ["a", 1, "c"] as unknown as ["a", "1", "c"]);
  const w = input("w", ["a", "b", 1] as unknown as ["a", "b", "1"]);
  const s = input("s", []);
  const pool: Expr[] = [x, y, z, w, s];
  const pick = (): Expr =>
    rng.uniform() < 0.15 ? constant(CONSTS[rng.int(CONSTS.length)]!) : pool[rng.int(pool.length)]!;
  const steps = 4 + rng.int(10);
  for (let k = 0; k < steps; k++) {
    const r = rng.uniform();
    let e: Expr;
    if (r < 0.35) e = unary(SCALAR_FN_NAMES[rng.int(SCALAR_FN_NAMES.length)]!, pick());
    else if (r < 0.8) e = binary(BINARY_FNS[rng.int(BINARY_FNS.length)]!, pick(), pick());
    else if (r < 0.9) e = where(pick(), pick(), pick());
    else {
      const v = pick();
      if (v.shape.length === 0) e = unary("neg", v);
      else e = rng.uniform() < 0.5 ? sumLast(v) : maxLast(v);
    }
    pool.push(e);
  }
  const outputs: Record<string, Expr> = { out: pool[pool.length - 1]! };
  const last = pool[pool.length - 2]!;
  if (last.shape.length > 0)
    outputs["red"] = rng.uniform() < 0.5 ? sumLast(last) : reduce("max", last, [-1]);
  outputs["mid"] = pool[5 + rng.int(pool.length - 5)]!;
  const graph: Graph = {
    name: "random",
    config: {},
    args: { x, y, z, w, s },
    outputs,
    relations: [],
    hyper: new Map(),
  } as unknown as Graph;
  const { a, b, c } = dims;
  return { graph, shapes: { x: [a, b, c], y: [c], z: [a, 1, c], w: [a, b, 1], s: [] } };
}

function check(
  g: Graph,
  inputs: NamedTensors,
  dtype: FloatDType,
  seed: number,
  what: string,
): void {
  const fused = evaluate(g, inputs, { dtype });
  sameBits(evaluate(g, inputs, { dtype, optimize: false }), fused, `${what} forward (plain)`);
  sameBits(evaluate(g, inputs, { dtype, optimize: UNFUSED }), fused, `${what} forward (unfused)`);
  const rng = new Rng(seed + 1000);
  const cot: NamedTensors = {};
  for (const [k, o] of Object.entries(fused)) cot[k] = rng.normalTensor(o.shape, 1, dtype);
  const plain = vjp(g, inputs, cot, { dtype, optimize: false });
  const fast = vjp(g, inputs, cot, { dtype });
  sameBits(plain.outputs, fast.outputs, `${what} vjp outputs`);
  sameBits(plain.grads, fast.grads, `${what} gradients`);
}

/** Steps planned as fused chains for graph `g` on `inputs`. */
function fusedSteps(g: Graph, inputs: NamedTensors, dtype: FloatDType): string[] {
  return plan(g, inputs, { dtype }).steps.flatMap((s) => (s.fused === undefined ? [] : [s.fused]));
}

describe("fused chains equal the plain interpretation bit for bit", () => {
  const sizes = [
    { a: 2, b: 3, c: 5 },
    { a: 1, b: 1, c: 1 },
    { a: 3, b: 1, c: 7 },
    { a: 1, b: 4, c: 1 },
    { a: 2, b: 0, c: 3 },
  ];
  for (const dtype of ["f64", "f32"] as const) {
    test(`random elementwise graphs with broadcasting, NaN, ±∞ and −0 (${dtype})`, () => {
      let chains = 0;
      for (let seed = 1; seed <= 60; seed++) {
        const rng = new Rng(seed);
        const dims = sizes[seed % sizes.length]!;
        const { graph, shapes } = randomGraph(rng, dims);
        const inputs: NamedTensors = {};
        for (const [k, shape] of Object.entries(shapes))
          inputs[k] = specialTensor(rng, shape, dtype);
        check(graph, inputs, dtype, seed, `seed ${seed}, dims ${JSON.stringify(dims)}`);
        chains += fusedSteps(graph, inputs, dtype).length;
      }
      // the generator must exercise fusion, or this test checks nothing about it
      expect(chains).toBeGreaterThan(30);
    });
  }

  test("a chain with a gradient-style row sum (softmax backward) fuses into one map and one sum", () => {
    const p = input("p", ["a", "b", "c"]);
    const g_ = input("g", ["a", "b", "c"]);
    // y ⊙ (ḡ − Σ ḡ⊙y): the row sum of a product, then a broadcast subtraction and a product
    const inner = sumLast(binary("mul", g_, p));
    const out = binary("mul", p, binary("sub", g_, inner));
    const graph = {
      name: "softmax_bwd",
      config: {},
      args: { p, g: g_ },
      outputs: { out },
      relations: [],
      hyper: new Map(),
    } as unknown as Graph;
    for (const dtype of ["f64", "f32"] as const) {
      const rng = new Rng(7);
      const inputs = {
        p: specialTensor(rng, [3, 5, 9], dtype),
        g: specialTensor(rng, [3, 5, 9], dtype),
      };
      expect(fusedSteps(graph, inputs, dtype).sort()).toEqual([
        "mul(L0, sub(L1, L2))",
        "sum(mul(L0, L1))",
      ]);
      check(graph, inputs, dtype, 7, `softmax backward ${dtype}`);
    }
  });

  test("float32 rounds after every primitive of a chain, as the plain steps do", () => {
    // (x·3)·(1/3) in float32 differs from the float64 value for most x: a fused chain that kept
    // float64 between primitives would differ from the plain float32 result
    const x = input("x", ["c"]);
    const out = binary("mul", binary("mul", x, constant(3)), constant(1 / 3));
    const graph = {
      name: "round",
      config: {},
      args: { x },
      outputs: { out },
      relations: [],
      hyper: new Map(),
    } as unknown as Graph;
    const xs = Tensor.from(
      Array.from({ length: 64 }, (_, i) => 0.1 + i * 0.37),
      "f32",
    );
    const inputs = { x: xs };
    expect(fusedSteps(graph, inputs, "f32")).toEqual(["mul(mul(L0, C0), C1)"]);
    const fused = evaluate(graph, inputs, { dtype: "f32" })["out"]!;
    sameBits(
      evaluate(graph, inputs, { dtype: "f32", optimize: false }),
      { out: fused },
      "f32 chain",
    );
    let differsFromF64 = 0;
    for (let i = 0; i < 64; i++)
      if (fused.data[i] !== Math.fround(xs.data[i]! * 3 * (1 / 3))) differsFromF64++;
    expect(differsFromF64).toBeGreaterThan(0);
  });

  test("optimize: false and checkFinite plan no chains", () => {
    const x = input("x", ["c"]);
    const out = unary("exp", binary("mul", x, constant(2)));
    const graph = {
      name: "off",
      config: {},
      args: { x },
      outputs: { out },
      relations: [],
      hyper: new Map(),
    } as unknown as Graph;
    const inputs = { x: Tensor.from([1, 2, 3], "f64") };
    expect(plan(graph, inputs, {}).steps.some((s) => s.fused !== undefined)).toBe(true);
    expect(plan(graph, inputs, { optimize: false }).steps.some((s) => s.fused !== undefined)).toBe(
      false,
    );
    expect(
      plan(graph, inputs, { checkFinite: true }).steps.some((s) => s.fused !== undefined),
    ).toBe(false);
  });
});

describe("coalesce", () => {
  test("merges axes every operand walks contiguously, drops size-1 axes, keeps broadcast breaks", () => {
    // out (2, 3, 4) contiguous; y (4) broadcast over the first two axes: those two merge
    expect(
      coalesce(
        [2, 3, 4],
        [
          [12, 4, 1],
          [0, 0, 1],
        ],
      ),
    ).toEqual({
      dims: [6, 4],
      strides: [
        [4, 1],
        [0, 1],
      ],
    });
    // all contiguous: one axis
    expect(
      coalesce(
        [2, 1, 4],
        [
          [4, 4, 1],
          [4, 4, 1],
        ],
      ),
    ).toEqual({ dims: [8], strides: [[1], [1]] });
    // w (2, 3, 1) broadcast along the last axis only: nothing merges with it
    expect(
      coalesce(
        [2, 3, 4],
        [
          [12, 4, 1],
          [3, 1, 0],
        ],
      ),
    ).toEqual({
      dims: [6, 4],
      strides: [
        [4, 1],
        [1, 0],
      ],
    });
  });
});
