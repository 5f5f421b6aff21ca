/**
 * Checking hand-written backward passes given as plain functions — the way users check their
 * own kernels — and the shape of the failure report.
 */
import { describe, expect, test } from "vitest";
import { gradcheckFunction, type DiffFunction } from "./gradcheck.js";
import { Rng } from "./random.js";
import { Tensor, type NamedTensors } from "./tensor.js";

/** A user's LayerNorm over rows (no γ, β), with a hand-written VJP; `bug` drops one term. */
function userLayerNorm(bug: boolean): DiffFunction {
  const eps = 1e-5;
  const stats = (x: Tensor, r: number, d: number) => {
    let mu = 0;
    for (let j = 0; j < d; j++) mu += x.data[r * d + j]!;
    mu /= d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x.data[r * d + j]! - mu) ** 2;
    return { mu, rstd: 1 / Math.sqrt(v / d + eps) };
  };
  return {
    name: bug ? "user layer norm (buggy)" : "user layer norm",
    value: ({ x }) => {
      const [n, d] = x!.shape as [number, number];
      const y = Tensor.zeros([n, d]);
      for (let r = 0; r < n; r++) {
        const { mu, rstd } = stats(x!, r, d);
        for (let j = 0; j < d; j++) y.data[r * d + j] = (x!.data[r * d + j]! - mu) * rstd;
      }
      return { y };
    },
    vjp: ({ x }, { y: g }) => {
      const [n, d] = x!.shape as [number, number];
      const gx = Tensor.zeros([n, d]);
      for (let r = 0; r < n; r++) {
        const { mu, rstd } = stats(x!, r, d);
        let gm = 0,
          gxh = 0;
        for (let j = 0; j < d; j++) {
          const xh = (x!.data[r * d + j]! - mu) * rstd;
          gm += g!.data[r * d + j]!;
          gxh += g!.data[r * d + j]! * xh;
        }
        for (let j = 0; j < d; j++) {
          const xh = (x!.data[r * d + j]! - mu) * rstd;
          // x̄ = (1/σ)(ȳ − mean ȳ − x̂ mean(ȳ ⊙ x̂)); the bug forgets the last term
          gx.data[r * d + j] = rstd * (g!.data[r * d + j]! - gm / d - (bug ? 0 : (xh * gxh) / d));
        }
      }
      return { x: gx };
    },
  };
}

describe("gradcheck of plain functions", () => {
  const x: NamedTensors = { x: new Rng(4).normalTensor([3, 5]) };
  test("a correct hand-written VJP passes in full and fast mode", async () => {
    for (const mode of ["full", "fast"] as const) {
      const r = await gradcheckFunction(userLayerNorm(false), x, { mode, seed: 1 });
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
      expect(r.maxRelErr).toBeLessThan(1e-7);
    }
  });
  test("a dropped term is caught; the report names formula, input, index, both values and both errors", async () => {
    const r = await gradcheckFunction(userLayerNorm(true), x, { mode: "full", seed: 1 });
    expect(r.ok).toBe(false);
    expect(r.formula).toBe("user layer norm (buggy)");
    const f = r.failures[0]!;
    expect(f.input).toBe("x");
    expect(f.index).toHaveLength(2);
    expect(Math.abs(f.analytic - f.numeric)).toBeCloseTo(f.absErr, 12);
    expect(f.relErr).toBeGreaterThan(1e-3);
    expect(f.absErr).toBeGreaterThan(f.allowed);
    expect(r.failures.length).toBeLessThanOrEqual(5); // never a whole-Jacobian dump
    const fast = await gradcheckFunction(userLayerNorm(true), x, { mode: "fast", seed: 1 });
    expect(fast.ok).toBe(false);
  });
  test("a VJP that returns the wrong shape or nothing is reported, not thrown", async () => {
    const f = userLayerNorm(false);
    const wrongShape: DiffFunction = { ...f, vjp: () => ({ x: Tensor.zeros([5, 3]) }) };
    expect((await gradcheckFunction(wrongShape, x)).error).toBe(
      "user layer norm: gradient of x has shape [5, 3] but x has shape [3, 5]",
    );
    const missing: DiffFunction = { ...f, vjp: () => ({}) };
    expect((await gradcheckFunction(missing, x)).error).toBe(
      "user layer norm: the VJP returned no gradient for x",
    );
    const throws: DiffFunction = {
      ...f,
      vjp: () => {
        throw new Error("kernel crashed");
      },
    };
    expect((await gradcheckFunction(throws, x)).error).toBe("user layer norm: kernel crashed");
  });
  test("the step is chosen from the input's scale: inputs of magnitude 1e6 still check", async () => {
    const big = { x: new Rng(5).normalTensor([2, 4], 1e6) };
    expect((await gradcheckFunction(userLayerNorm(false), big, { mode: "full" })).ok).toBe(true);
  });
});
