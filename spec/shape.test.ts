/**
 * Shape algebra, tested as algebra with fast-check over random dim bindings.
 */
import { execFileSync } from "node:child_process";
import { pythonCanImport } from "../io/python.testing.js";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import "./index.js";
import { broadcastShapes, ShapeError } from "./shape.js";
import { dim, evalDim, type Dim } from "./dims.js";
import { input, matmul, mergeHeads, permute, splitHeads } from "./expr.js";
import { bindDims, concreteShape } from "./bind.js";
import { buildFormula, exampleConfig, exampleShapes, formulaNames, hyperDims } from "./formula.js";
import type { Constraint } from "./node.js";

const SEED = 20261128;
const dims = fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 4 });

function npBroadcast(pairs: [number[], number[]][]): (number[] | null)[] {
  const src = `import json, sys, numpy as np
out = []
for a, b in json.load(sys.stdin):
    try: out.append(list(np.broadcast_shapes(tuple(a), tuple(b))))
    except ValueError: out.append(None)
print(json.dumps(out))`;
  return JSON.parse(
    execFileSync("/usr/bin/python3", ["-c", src], {
      input: JSON.stringify(pairs),
      encoding: "utf8",
    }),
  ) as (number[] | null)[];
}

const hasNumpy = (): boolean => pythonCanImport("numpy");

describe("broadcasting", () => {
  const pairs = fc.sample(fc.tuple(dims, dims), { numRuns: 300, seed: SEED });
  const ours = (a: number[], b: number[]): number[] | null => {
    try {
      return broadcastShapes([a, b], "test", []).map((d) => d as number);
    } catch (e) {
      if (e instanceof ShapeError) return null;
      throw e;
    }
  };
  test("is commutative", () => {
    for (const [a, b] of pairs) expect(ours(a, b)).toEqual(ours(b, a));
  });
  test.skipIf(!hasNumpy())(
    "agrees with NumPy's rule (numpy.broadcast_shapes as the oracle)",
    () => {
      const expected = npBroadcast(pairs);
      pairs.forEach(([a, b], i) =>
        expect(ours(a, b), `${JSON.stringify(a)} ⊕ ${JSON.stringify(b)}`).toEqual(expected[i]),
      );
    },
  );
  test(
    "symbolic dims: equal names broadcast, distinct names are a build-time " +
      "error, compounds become constraints",
    () => {
      expect(broadcastShapes([["n", "d"], ["d"]], "t", [])).toEqual(["n", "d"]);
      expect(() => broadcastShapes([["n", "d"], ["m"]], "t", [])).toThrow(ShapeError);
      const c: Constraint[] = [];
      expect(broadcastShapes([["n", dim("H*d_k")], ["d_model"]], "t", c)).toEqual([
        "n",
        dim("H*d_k"),
      ]);
      expect(c).toHaveLength(1);
    },
  );
});

describe("movement and products", () => {
  const sizes = fc.record({
    n: fc.integer({ min: 1, max: 5 }),
    H: fc.integer({ min: 1, max: 4 }),
    d_k: fc.integer({ min: 1, max: 5 }),
    B: fc.integer({ min: 1, max: 3 }),
  });
  test("split heads then merge heads is the identity on shapes", () => {
    fc.assert(
      fc.property(sizes, ({ n, H, d_k, B }) => {
        const x = input("x", ["B", "n", "d_model"]);
        const y = mergeHeads(
          splitHeads(x, { from: "d_model", heads: "H", size: "d_k" }),
          "d_model",
        );
        const env = new Map<string, number>([
          ["B", B],
          ["n", n],
          ["H", H],
          ["d_k", d_k],
          ["d_model", H * d_k],
        ]);
        const b = bindDims(
          [y.node],
          { x: { shape: [B, n, H * d_k], dtype: "f64" } },
          { hyper: new Map([["H", H]]) },
        );
        expect(concreteShape(y.shape, b)).toEqual([B, n, H * d_k]);
        expect(y.shape.map((d) => evalDim(d, env))).toEqual([B, n, H * d_k]);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
  test("permutations compose: permute(permute(x, p), q) = permute(x, p∘q)", () => {
    const perm4 = fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 });
    fc.assert(
      fc.property(perm4, perm4, (p, q) => {
        const x = input("x", ["a", "b", "c", "d"]);
        const two = permute(permute(x, p), q);
        const one = permute(
          x,
          q.map((i) => p[i]!),
        );
        expect(two.shape).toEqual(one.shape);
        expect(two.shape).toEqual(q.map((i) => ["a", "b", "c", "d"][p[i]!]));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
  test("the matmul shape rule is associative: (AB)C and A(BC) have the same shape", () => {
    const names = fc.constantFrom("i", "j", "k", "l");
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("B", "G"), { maxLength: 2 }),
        names,
        names,
        names,
        names,
        (batch, i, j, k, l) => {
          const A = input("A", [...batch, i, j]);
          const B = input("B", [...batch, j, k]);
          const C = input("C", [...batch, k, l]);
          const left = matmul(matmul(A, B) as never, C as never) as { shape: readonly Dim[] };
          const right = matmul(A as never, matmul(B, C) as never) as { shape: readonly Dim[] };
          expect(left.shape).toEqual(right.shape);
          expect(left.shape).toEqual([...batch, i, l]);
        },
      ),
      { seed: SEED, numRuns: 100 },
    );
  });
});

describe("registry shapes", () => {
  test("every formula's declared output shapes, bound at random sizes, equal the rule-by-rule inferred ones", () => {
    const rnd = fc.record({
      n: fc.integer({ min: 1, max: 6 }),
      d: fc.integer({ min: 1, max: 7 }),
      d_k: fc.integer({ min: 1, max: 3 }).map((x) => 2 * x),
      d_v: fc.integer({ min: 1, max: 5 }),
      d_ff: fc.integer({ min: 1, max: 9 }),
      V: fc.integer({ min: 2, max: 9 }),
      batch: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
    });
    for (const name of formulaNames()) {
      fc.assert(
        fc.property(rnd, (r) => {
          const cfg = exampleConfig(name);
          const sizes = {
            n: r.n,
            m: r.n,
            d: r.d,
            d_k: r.d_k,
            d_v: r.d_v,
            d_ff: r.d_ff,
            V: r.V,
            d_in: r.d,
            d_out: r.d_v,
            n_ctx: r.n + 3,
          };
          const shapes = exampleShapes(name, cfg, sizes);
          const built = buildFormula(name, cfg);
          const infos: Record<string, { shape: number[]; dtype: string }> = {};
          for (const a of built.def.args(built.config))
            infos[a.name] = {
              shape: a.shape[0] === "..." ? [...r.batch, ...shapes[a.name]!] : shapes[a.name]!,
              dtype: a.int ? "i32" : "f64",
            };
          const b = bindDims(
            Object.values(built.outputs).map((e) => e.node),
            infos,
            {
              formula: name,
              hyper: hyperDims(built.def, built.config),
              relations: built.relations,
            },
          );
          // the declared shapes may name dims (H of alibi_bias) that only the configuration fixes
          for (const [k, v] of Object.entries(built.config))
            if (typeof v === "number" && !b.dims.has(k)) (b.dims as Map<string, number>).set(k, v);
          for (const o of built.def.outputs(built.config)) {
            const inferred = concreteShape(built.outputs[o.name]!.shape, b);
            const declared = concreteShape(
              o.shape.map((d) => dim(d)),
              b,
            );
            expect(inferred, `${name}.${o.name}`).toEqual(declared);
          }
        }),
        { seed: SEED, numRuns: 15 },
      );
    }
  });
});

describe("relation solving", () => {
  test("finds every derivable dim and reports every conflict", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 3 }),
        (H, d_k, wrong) => {
          const d = H * d_k;
          const built = buildFormula("mha", { H });
          const ok: Record<string, { shape: number[]; dtype: string }> = {};
          const s = exampleShapes("mha", { H }, { d_k, n: 3 });
          for (const [k, v] of Object.entries(s)) ok[k] = { shape: v, dtype: "f64" };
          const roots = Object.values(built.outputs).map((e) => e.node);
          const b = bindDims(roots, ok, {
            formula: "mha",
            hyper: hyperDims(built.def, built.config),
            relations: built.relations,
          });
          expect(b.dims.get("d_k")).toBe(d_k);
          expect(b.dims.get("d_model")).toBe(d);
          if (wrong > 0) {
            const bad = { ...ok, W_O: { shape: [d, d + wrong], dtype: "f64" } };
            expect(() =>
              bindDims(roots, bad, {
                formula: "mha",
                hyper: hyperDims(built.def, built.config),
                relations: built.relations,
              }),
            ).toThrow(/W_O of formula mha .* at axis 1 has \d+/);
          }
        },
      ),
      { seed: SEED, numRuns: 60 },
    );
  });
});
