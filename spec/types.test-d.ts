/**
 * Type-level tests: accepted shapes and, with @ts-expect-error, rejected ones. Run by vitest's
 * typecheck mode (TypeScript 5); spec/typecheck-fixture.test.ts proves a wrong shape really fails
 * to compile, so these cannot pass vacuously.
 */
import { describe, expectTypeOf, test } from "vitest";
import {
  add,
  input,
  matmul,
  mergeHeads,
  mul,
  param,
  shapeOf,
  splitHeads,
  sumLast,
  transpose,
  where,
  constant,
} from "./index.js";
import { attention, embedding, ffn, layerNorm, linear, logits, softmax } from "./typed.js";

const x = input("x", ["n", "d_model"]);
const W_Q = param("W_Q", ["d_model", "d_model"]);
const W_1 = param("W_1", ["d_model", "d_ff"]);
const b_1 = param("b_1", ["d_ff"]);
const W_2 = param("W_2", ["d_ff", "d_model"]);
const b_2 = param("b_2", ["d_model"]);
const Q = input("Q", ["n", "d_k"]);
const K = input("K", ["m", "d_k"]);
const V = input("V", ["m", "d_v"]);

describe("matmul", () => {
  test("inner dims must agree", () => {
    expectTypeOf(shapeOf(matmul(x, W_1))).toEqualTypeOf<["n", "d_ff"]>();
    expectTypeOf(shapeOf(matmul(Q, transpose(K)))).toEqualTypeOf<["n", "m"]>();
  });
  test("mismatched inner dims are rejected", () => {
    // @ts-expect-error d_ff ≠ d_model
    matmul(x, W_2);
    // @ts-expect-error QK without the transpose: d_k ≠ m
    matmul(Q, K);
  });
  test("batch dims are carried", () => {
    const q = input("q", ["B", "H", "n", "d_k"]);
    const k = input("k", ["B", "H", "d_k", "m"]);
    expectTypeOf(shapeOf(matmul(q, k))).toEqualTypeOf<["B", "H", "n", "m"]>();
  });
  test("mismatched batch dims are rejected", () => {
    const q = input("q", ["B", "H", "n", "d_k"]);
    const k = input("k", ["B", "G", "d_k", "m"]);
    // @ts-expect-error H ≠ G
    matmul(q, k);
  });
});

describe("elementwise broadcasting", () => {
  test("equal shapes, trailing broadcast and scalars", () => {
    expectTypeOf(shapeOf(add(x, x))).toEqualTypeOf<["n", "d_model"]>();
    expectTypeOf(shapeOf(add(x, b_2))).toEqualTypeOf<["n", "d_model"]>();
    expectTypeOf(shapeOf(mul(x, 2))).toEqualTypeOf<["n", "d_model"]>();
    expectTypeOf(shapeOf(mul(constant(2), x))).toEqualTypeOf<["n", "d_model"]>();
  });
  test("size-1 axes broadcast", () => {
    expectTypeOf(shapeOf(add(x, sumLast(x)))).toEqualTypeOf<["n", "d_model"]>();
  });
  test("incompatible shapes are rejected", () => {
    // @ts-expect-error d_ff does not broadcast against d_model
    add(x, b_1);
    // @ts-expect-error [n, d_model] against [d_ff, d_model]
    mul(x, W_2);
  });
  test("where broadcasts all three", () => {
    expectTypeOf(shapeOf(where(sumLast(x), x, 0))).toEqualTypeOf<["n", "d_model"]>();
  });
});

describe("heads", () => {
  test("split then merge is the identity on shapes", () => {
    const h = splitHeads(x, { from: "d_model", heads: "H", size: "d_k" });
    expectTypeOf(shapeOf(h)).toEqualTypeOf<["H", "n", "d_k"]>();
    expectTypeOf(shapeOf(mergeHeads(h, "d_model"))).toEqualTypeOf<["n", "d_model"]>();
  });
  test("splitting the wrong axis is rejected", () => {
    const xt = transpose(x); // [d_model, n]
    // @ts-expect-error the last axis is n, not d_model
    splitHeads(xt, { from: "d_model", heads: "H", size: "d_k" });
    // @ts-expect-error d_ff is not an axis of x
    splitHeads(x, { from: "d_ff", heads: "H", size: "d_k" });
  });
});

describe("formulas", () => {
  test("attention: [n, d_k], [m, d_k], [m, d_v] → [n, d_v]", () => {
    expectTypeOf(shapeOf(attention(Q, K, V))).toEqualTypeOf<["n", "d_v"]>();
  });
  test("attention rejects a key head size that differs from the query's", () => {
    const K2 = input("K2", ["m", "d_v"]);
    // @ts-expect-error K has head size d_v, Q has d_k
    attention(Q, K2, V);
  });
  test("attention rejects values whose length differs from the keys'", () => {
    const V2 = input("V2", ["n", "d_v"]);
    // @ts-expect-error V has n rows, K has m
    attention(Q, K, V2);
  });
  test("layer norm keeps the shape; gamma must match the last axis", () => {
    expectTypeOf(shapeOf(layerNorm(x, b_2, b_2))).toEqualTypeOf<["n", "d_model"]>();
    // @ts-expect-error gamma has d_ff entries
    layerNorm(x, b_1, b_2);
  });
  test("linear and ffn", () => {
    expectTypeOf(shapeOf(linear(x, W_1, b_1))).toEqualTypeOf<["n", "d_ff"]>();
    expectTypeOf(shapeOf(ffn(x, W_1, b_1, W_2, b_2))).toEqualTypeOf<["n", "d_model"]>();
    // @ts-expect-error bias of the wrong width
    linear(x, W_1, b_2);
    // @ts-expect-error W_2 must map d_ff back to d_model
    ffn(x, W_1, b_1, W_1, b_2);
  });
  test("embedding and logits", () => {
    const t = input("tokens", ["n"], { int: true });
    const E = param("E", ["V", "d_model"]);
    expectTypeOf(shapeOf(embedding(t, E))).toEqualTypeOf<["n", "d_model"]>();
    expectTypeOf(shapeOf(logits(x, E))).toEqualTypeOf<["n", "V"]>();
    // @ts-expect-error W_vocab's second axis must be d_model
    logits(x, W_1);
  });
  test("softmax keeps the shape", () => {
    expectTypeOf(shapeOf(softmax(matmul(Q, transpose(K))))).toEqualTypeOf<["n", "m"]>();
  });
});
