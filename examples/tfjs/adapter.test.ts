/**
 * The tfjs adapter driven through the process protocol, checked in float32 against the formulas
 * written out directly below (plain TypeScript in float64 on the same float32 inputs), with
 * tolerances derived from float32's unit roundoff and the length of the reductions involved.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImplementationError } from "../../autodiff/implementation.js";
import { Tensor } from "../../autodiff/tensor.js";
import { parkMiller } from "../../autodiff/random.js";
import { ProcessImplementation } from "../../verify/process.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

/** float32 unit roundoff. */
const U32 = 2 ** -24;

/**
 * Allowed error of a value after a chain of K roundings on terms of magnitude `scale` (γ_K ≈ K·u),
 * doubled for two independent computations.
 */
const tol = (K: number, scale: number): number => 2 * K * U32 * scale;

function values(count: number, seed: number): number[] {
  return parkMiller(count, seed).map((u) => u * 4 - 2);
}

const f32 = (shape: number[], data: number[]): Tensor => Tensor.from(data, "f32", shape);

function expectClose(
  actual: Tensor | undefined,
  expected: number[],
  bound: number,
  what: string,
): void {
  expect(actual, what).toBeDefined();
  expect(actual!.dtype, `${what}: dtype`).toBe("f32");
  expect(actual!.size, `${what}: size`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual!.data[i]! - expected[i]!);
    if (!(err <= bound))
      throw new Error(
        `${what}[${i}]: got ${actual!.data[i]}, expected ${expected[i]} (|error| ${err} > allowed ${bound})`,
      );
  }
}

describe("examples/tfjs/adapter.ts through the process protocol", () => {
  let impl: ProcessImplementation;
  beforeAll(async () => {
    impl = await ProcessImplementation.start("npx tsx examples/tfjs/adapter.ts", {
      timeoutMs: 10_000,
      startupTimeoutMs: 30_000,
      cwd: repo,
    });
  });
  afterAll(async () => {
    await impl?.close();
  });

  it(
    "says hello (so stdout carried nothing but the protocol, banner or not) " +
      "and computes in float32 only",
    async () => {
      expect(impl.name).toBe("tfjs");
      expect(impl.dtypes).toEqual(["f32"]);
      expect(impl.hello.raw["backend"]).toBe("cpu");
      for (const f of [
        "softmax",
        "log_softmax",
        "layer_norm",
        "gelu",
        "gelu_tanh",
        "relu",
        "linear",
        "attention",
        "mha",
        "ffn",
        "cross_entropy",
        "embedding",
        "block_pre_ln",
      ]) {
        expect(impl.formulas).toContain(f);
      }
      const x64 = Tensor.from([1, 2], "f64");
      await expect(
        impl.forward({ formula: "softmax", config: {}, inputs: { x: x64 } }),
      ).rejects.toThrow(ImplementationError);
    },
  );

  it("softmax forward and backward", async () => {
    const m = 7;
    const x = f32(
      [2, 3, m],
      values(6 * m, 11).map((v) => 3 * v),
    );
    const dy = f32([2, 3, m], values(6 * m, 12));
    const y: number[] = [];
    const dx: number[] = [];
    for (let r = 0; r < 6; r++) {
      const row = Array.from(x.data.slice(r * m, (r + 1) * m));
      const mx = Math.max(...row);
      const e = row.map((v) => Math.exp(v - mx));
      const s = e.reduce((a, b) => a + b, 0);
      const yr = e.map((v) => v / s);
      // d/dx Σ y ⊙ dy = y ⊙ (dy − Σ_j dy_j y_j)
      const dot = yr.reduce((a, v, j) => a + v * dy.data[r * m + j]!, 0);
      y.push(...yr);
      dx.push(...yr.map((v, j) => v * (dy.data[r * m + j]! - dot)));
    }
    const { outputs } = await impl.forward({ formula: "softmax", config: {}, inputs: { x } });
    expect(outputs["y"]!.shape).toEqual([2, 3, m]);
    // exp, a sum over m, a division on values ≤ 1
    expectClose(outputs["y"], y, tol(m + 3, 1), "softmax y");
    const { grads } = await impl.backwardPass({
      formula: "softmax",
      config: {},
      inputs: { x },
      cotangents: { y: dy },
    });
    // y, then a dot product over m, a difference and a product; |dy| < 2
    expectClose(grads["x"], dx, tol(2 * m + 6, 4), "softmax dx");
  });

  it("layer_norm forward and backward", async () => {
    const d = 9;
    const rows = 4;
    const eps = 1e-5;
    const x = f32(
      [rows, d],
      values(rows * d, 21).map((v, i) => v + (i % d === 0 ? 1.5 : 0)),
    );
    const gamma = f32([d], values(d, 22));
    const beta = f32([d], values(d, 23));
    const dy = f32([rows, d], values(rows * d, 24));
    const y: number[] = [];
    const dx: number[] = [];
    const dgamma = new Array<number>(d).fill(0);
    const dbeta = new Array<number>(d).fill(0);
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.data.slice(r * d, (r + 1) * d));
      const mu = row.reduce((a, b) => a + b, 0) / d;
      const sigma = Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / d); // biased
      expect(sigma).toBeGreaterThan(0.25); // so rstd < 4 in the bounds below
      const rstd = 1 / Math.sqrt(sigma ** 2 + eps);
      const xhat = row.map((v) => (v - mu) * rstd);
      const g = xhat.map((_, j) => dy.data[r * d + j]! * gamma.data[j]!);
      const gMean = g.reduce((a, b) => a + b, 0) / d;
      const gxMean = g.reduce((a, b, j) => a + b * xhat[j]!, 0) / d;
      for (let j = 0; j < d; j++) {
        y.push(xhat[j]! * gamma.data[j]! + beta.data[j]!);
        dx.push(rstd * (g[j]! - gMean - xhat[j]! * gxMean));
        dgamma[j]! += dy.data[r * d + j]! * xhat[j]!;
        dbeta[j]! += dy.data[r * d + j]!;
      }
    }
    const inputs = { x, gamma, beta };
    const { outputs } = await impl.forward({ formula: "layer_norm", config: { eps }, inputs });
    // mean and variance are sums over d; |x̂| ≤ √d; |γ|, |β| < 2
    const scale = 2 * Math.sqrt(d) + 2;
    expectClose(outputs["y"], y, tol(2 * d + 8, scale), "layer_norm y");
    const { grads } = await impl.backwardPass({
      formula: "layer_norm",
      config: { eps },
      inputs,
      cotangents: { y: dy },
    });
    expect(Object.keys(grads).sort()).toEqual(["beta", "gamma", "x"]);
    expectClose(grads["x"], dx, tol(4 * d + 12, 4 * 4 * scale), "layer_norm dx");
    expectClose(grads["gamma"], dgamma, tol(2 * d + 12, rows * 2 * scale), "layer_norm dgamma");
    expectClose(grads["beta"], dbeta, tol(rows, 2 * rows), "layer_norm dbeta");
  });

  it("answers bad input with an error naming the formula", async () => {
    const tokens = new Tensor("i32", [3], Int32Array.from([0, 9, 1]));
    await expect(
      impl.forward({
        formula: "embedding",
        config: {},
        inputs: { tokens, E: f32([4, 2], values(8, 1)) },
      }),
    ).rejects.toThrow(
      new RegExp(
        String.raw`reported an error for forward embedding \(request \d+\): for` +
          String.raw`ward embedding: tokens entry 1 is 9, not a token id in \[0, ` +
          String.raw`4\)$`,
      ),
    );
  });
});
