import { describe, expect, test } from "vitest";
import { Tensor, TensorError, specialCounts } from "./tensor.js";

describe("Tensor", () => {
  test("from nested arrays infers the shape; data is row-major", () => {
    const t = Tensor.from([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.get(1, 0)).toBe(4);
    expect(t.unravel(4)).toEqual([1, 1]);
  });
  test("float32 storage rounds on write", () => {
    const t = Tensor.from([0.1], "f32");
    expect(t.data[0]).toBe(Math.fround(0.1));
  });
  test("misuse is a clear error", () => {
    expect(() => Tensor.from([[1, 2], [3]])).toThrow(/ragged nested array at depth 1 \(1 vs 2\)/);
    expect(() => new Tensor("f64", [2, 2], new Float64Array(3))).toThrow(
      "Tensor: shape [2, 2] needs 4 elements but data has 3",
    );
    expect(() => new Tensor("f32", [1], new Float64Array(1))).toThrow(
      /dtype f32 declared but data is a Float64Array/,
    );
    expect(() => new Tensor("f64", [-1])).toThrow(/axis 0 has size -1/);
    expect(() => Tensor.from([1, 2, 3]).reshape([2, 2])).toThrow(
      /cannot view \[3\] \(3 elements\) as \[2, 2\] \(4 elements\)/,
    );
    expect(() => Tensor.from([1.5]).to("i32")).toThrow(
      /element \[0\] is 1.5, not a 32-bit integer/,
    );
    expect(() => Tensor.from([[1, 2]]).get(0, 2)).toThrow(/out of bounds at axis 1/);
  });
  test("special values are counted, never masked", () => {
    expect(specialCounts(Tensor.from([NaN, Infinity, -Infinity, -0, 0, 1]))).toEqual({
      nan: 1,
      posInf: 1,
      negInf: 1,
      negZero: 1,
    });
  });
});
