import { describe, expect, test } from "vitest";
import {
  dim,
  dimsEqual,
  dimsCompatible,
  evalDim,
  solveFor,
  dimToString,
  DimError,
} from "./dims.js";

describe("dim expressions", () => {
  test("parse and print round trip", () => {
    for (const s of ["d_model/H", "(H+2*H_kv)*d_k", "offset+n", "p+n-1", "2*d_k"])
      expect(dimToString(dim(s))).toBe(s);
  });
  test("equality is polynomial: H*d_k = d_k*H, (d_k/2)*2 = d_k, offset+n-offset = n", () => {
    expect(dimsEqual(dim("H*d_k"), dim("d_k*H"))).toBe(true);
    expect(dimsEqual(dim("d_k/2*2"), "d_k")).toBe(true);
    expect(dimsEqual(dim("offset+n-offset"), "n")).toBe(true);
    expect(dimsEqual(dim("(H+2*H_kv)*d_k"), dim("H*d_k+2*H_kv*d_k"))).toBe(true);
    expect(dimsEqual("n", "m")).toBe(false);
  });
  test("compatibility: distinct names and distinct constants are certain mismatches; compounds wait for sizes", () => {
    expect(dimsCompatible("n", "m")).toBe("no");
    expect(dimsCompatible(3, 4)).toBe("no");
    expect(dimsCompatible("d_model", dim("H*d_k"))).toBe("maybe");
    expect(dimsCompatible(dim("2*n"), dim("n+n"))).toBe("yes");
  });
  test("evaluation checks divisibility", () => {
    expect(
      evalDim(
        dim("d_model/H"),
        new Map([
          ["d_model", 384],
          ["H", 8],
        ]),
      ),
    ).toBe(48);
    expect(() =>
      evalDim(
        dim("d_model/H"),
        new Map([
          ["d_model", 10],
          ["H", 3],
        ]),
      ),
    ).toThrow(/10\/3 is not an integer \(d_model must be divisible by H\)/);
  });
  test("solving for the one unknown in either direction", () => {
    expect(solveFor(dim("H*d_k"), 384, new Map([["H", 8]]))).toEqual(["d_k", 48]);
    expect(solveFor(dim("d_model/H"), 48, new Map([["d_model", 384]]))).toEqual(["H", 8]);
    expect(solveFor(dim("p+n"), 9, new Map([["n", 1]]))).toEqual(["p", 8]);
    expect(
      solveFor(
        dim("(H+2*H_kv)*d_k"),
        96,
        new Map([
          ["H", 4],
          ["d_k", 8],
        ]),
      ),
    ).toEqual(["H_kv", 4]);
    expect(() => solveFor(dim("3*d_k"), 10, new Map())).toThrow(DimError);
  });
});
