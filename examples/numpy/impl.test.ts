/**
 * The NumPy example driven through the process protocol, checked against the formulas written
 * out directly below (plain TypeScript in float64), with tolerances derived from the dtype's
 * unit roundoff and the length of the reductions involved.
 */
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tensor } from "../../autodiff/tensor.js";
import { parkMiller } from "../../autodiff/random.js";
import type { FloatDType } from "../../autodiff/tensor.js";
import { ProcessImplementation } from "../../verify/process.js";
import { outsideCapability } from "../../autodiff/capabilities.js";
import { loadCase } from "../../golden/cases-io.js";
import { getFormula } from "../../spec/formula.js";
import { readFileSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const PYTHON = "/usr/bin/python3";

function numpyMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import numpy"], { stdio: "pipe" });
    return undefined;
  } catch (e) {
    return (
      `skipped: \`${PYTHON} -c "import numpy"\` failed ` +
      `(${(e as Error).message.split("\n")[0]}); install python3-numpy to run ` +
      `the NumPy example`
    );
  }
}
const skipReason = numpyMissing();
if (skipReason !== undefined) console.warn(skipReason);

/** Unit roundoff: half the distance from 1 to the next float. */
const UNIT: Record<FloatDType, number> = { f64: 2 ** -53, f32: 2 ** -24 };

/**
 * Allowed |actual − expected| for a value computed with `K` roundings in a chain (a reduction
 * over m elements contributes m), relative to `scale` (the magnitude of the terms involved):
 * the standard a-priori bound γ_K = K·u/(1 − K·u) ≈ K·u, times 2 for the two independent
 * computations being compared.
 */
const tol = (dtype: FloatDType, K: number, scale: number): number => 2 * K * UNIT[dtype] * scale;

// ---------------------------------------------------------------- the formulas, written out

function softmaxRows(x: number[], m: number): number[] {
  const y: number[] = [];
  for (let r = 0; r < x.length / m; r++) {
    const row = x.slice(r * m, (r + 1) * m);
    const mx = Math.max(...row);
    const e = row.map((v) => Math.exp(v - mx));
    const s = e.reduce((a, b) => a + b, 0);
    y.push(...e.map((v) => v / s));
  }
  return y;
}

/** d/dx of Σ y ⊙ dy for y = softmax(x): y ⊙ (dy − Σ_j dy_j y_j). */
function softmaxBackward(y: number[], dy: number[], m: number): number[] {
  const dx: number[] = [];
  for (let r = 0; r < y.length / m; r++) {
    let dot = 0;
    for (let j = 0; j < m; j++) dot += dy[r * m + j]! * y[r * m + j]!;
    for (let j = 0; j < m; j++) dx.push(y[r * m + j]! * (dy[r * m + j]! - dot));
  }
  return dx;
}

/** y = (x − μ)/√(σ² + ε) γ + β and its gradients, row by row (biased variance). */
function layerNorm(x: number[], gamma: number[], beta: number[], dy: number[], eps: number) {
  const d = gamma.length;
  const y: number[] = [];
  const dx: number[] = [];
  const dgamma = new Array<number>(d).fill(0);
  const dbeta = new Array<number>(d).fill(0);
  for (let r = 0; r < x.length / d; r++) {
    const row = x.slice(r * d, (r + 1) * d);
    const mu = row.reduce((a, b) => a + b, 0) / d;
    const v = row.reduce((a, b) => a + (b - mu) ** 2, 0) / d;
    const rstd = 1 / Math.sqrt(v + eps);
    const xhat = row.map((b) => (b - mu) * rstd);
    const g = xhat.map((_, j) => dy[r * d + j]! * gamma[j]!);
    const gMean = g.reduce((a, b) => a + b, 0) / d;
    const gxMean = g.reduce((a, b, j) => a + b * xhat[j]!, 0) / d;
    for (let j = 0; j < d; j++) {
      y.push(xhat[j]! * gamma[j]! + beta[j]!);
      dx.push(rstd * (g[j]! - gMean - xhat[j]! * gxMean));
      dgamma[j]! += dy[r * d + j]! * xhat[j]!;
      dbeta[j]! += dy[r * d + j]!;
    }
  }
  return { y, dx, dgamma, dbeta };
}

/** Causal attention, one head: softmax(Q Kᵀ/√d_k + M) V with j ≤ i (n = m). */
function causalAttention(Q: number[], K: number[], V: number[], n: number, d: number): number[] {
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const s: number[] = [];
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += Q[i * d + c]! * K[j * d + c]!;
      s.push(dot / Math.sqrt(d));
    }
    const w = softmaxRows(s, s.length);
    for (let c = 0; c < d; c++) y.push(w.reduce((a, wj, j) => a + wj * V[j * d + c]!, 0));
  }
  return y;
}

// ---------------------------------------------------------------- fixed inputs (odd sizes, a batch axis)

/** Deterministic values in (−2, 2) with no structure, from a linear congruential sequence. */
function values(count: number, seed: number): number[] {
  return parkMiller(count, seed).map((u) => u * 4 - 2);
}

const tensor = (dtype: FloatDType, shape: number[], data: number[]): Tensor =>
  Tensor.from(data, dtype, shape);

function expectClose(
  actual: Tensor,
  expected: number[],
  bound: (i: number) => number,
  what: string,
): void {
  expect(actual.size, `${what}: size`).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual.data[i]! - expected[i]!);
    const b = bound(i);
    if (!(err <= b))
      throw new Error(
        `${what}[${i}]: got ${actual.data[i]}, expected ${expected[i]} (|error| ${err} > allowed ${b})`,
      );
    worst = Math.max(worst, err / b);
  }
  expect(worst).toBeLessThanOrEqual(1);
  if (process.env["SHOW_BUDGET"])
    console.log(`${what}: worst error uses ${(100 * worst).toFixed(1)}% of its tolerance`);
}

describe.skipIf(skipReason !== undefined)(
  "examples/numpy/impl.py through the process protocol",
  () => {
    let impl: ProcessImplementation;
    beforeAll(async () => {
      impl = await ProcessImplementation.start(`${PYTHON} examples/numpy/impl.py`, {
        timeoutMs: 10_000,
        cwd: repo,
      });
    });
    afterAll(async () => {
      await impl?.close();
    });

    it("says hello with every formula it implements", () => {
      expect(impl.name).toBe("numpy-reference");
      expect(impl.dtypes).toEqual(["f64", "f32"]);
      expect(impl.backward).toBe(true);
      for (const f of [
        "softmax",
        "log_softmax",
        "logsumexp",
        "layer_norm",
        "rms_norm",
        "gelu",
        "gelu_tanh",
        "relu",
        "silu",
        "linear",
        "ffn",
        "embedding",
        "attention",
        "mha",
        "cross_entropy",
        "positional_sinusoidal",
        "block_post_ln",
        "block_pre_ln",
        "gpt",
      ]) {
        expect(impl.formulas).toContain(f);
      }
    });

    for (const dtype of ["f64", "f32"] as const) {
      it(`softmax forward and backward in ${dtype}`, async () => {
        const m = 7;
        // inputs rounded to the dtype first, so both sides start from the same numbers
        const x = tensor(
          dtype,
          [2, 3, m],
          values(2 * 3 * m, 11).map((v) => 3 * v),
        );
        const dy = tensor(dtype, [2, 3, m], values(2 * 3 * m, 12));
        const xs = Array.from(x.data);
        const y = softmaxRows(xs, m);
        const { outputs } = await impl.forward({ formula: "softmax", config: {}, inputs: { x } });
        expect(outputs["y"]!.dtype).toBe(dtype);
        expect(outputs["y"]!.shape).toEqual([2, 3, m]);
        // exp, a sum over m, a division: K = m + 3 roundings on values at most 1
        expectClose(outputs["y"]!, y, () => tol(dtype, m + 3, 1), `softmax ${dtype} y`);
        const { grads } = await impl.backwardPass({
          formula: "softmax",
          config: {},
          inputs: { x },
          cotangents: { y: dy },
        });
        expect(Object.keys(grads)).toEqual(["x"]);
        // y (m + 3), a dot product over m, a difference and a product; |dy| < 2
        expectClose(
          grads["x"]!,
          softmaxBackward(y, Array.from(dy.data), m),
          () => tol(dtype, 2 * m + 6, 4),
          `softmax ${dtype} dx`,
        );
      });

      it(`layer_norm forward and backward in ${dtype}`, async () => {
        const d = 9;
        const eps = 1e-5;
        const x = tensor(
          dtype,
          [4, d],
          values(4 * d, 21).map((v, i) => v + (i % d === 0 ? 1.5 : 0)),
        );
        const gamma = tensor(dtype, [d], values(d, 22));
        const beta = tensor(dtype, [d], values(d, 23));
        const dy = tensor(dtype, [4, d], values(4 * d, 24));
        const want = layerNorm(
          Array.from(x.data),
          Array.from(gamma.data),
          Array.from(beta.data),
          Array.from(dy.data),
          eps,
        );
        const inputs = { x, gamma, beta };
        const { outputs } = await impl.forward({ formula: "layer_norm", config: { eps }, inputs });
        // mean and variance are sums over d; x̂ is O(√d) at most; |γ|, |β| < 2
        const scale = 2 * Math.sqrt(d) + 2;
        expectClose(
          outputs["y"]!,
          want.y,
          () => tol(dtype, 2 * d + 8, scale),
          `layer_norm ${dtype} y`,
        );
        const { grads } = await impl.backwardPass({
          formula: "layer_norm",
          config: { eps },
          inputs,
          cotangents: { y: dy },
        });
        expect(Object.keys(grads).sort()).toEqual(["beta", "gamma", "x"]);
        // the x gradient adds two more sums over d (rstd ≤ 1/σ of these rows); γ and β gradients sum over the 4 rows
        const rstd = 4; // every row of x has σ > 0.25 (checked below), so rstd < 4
        for (let r = 0; r < 4; r++) {
          const row = Array.from(x.data.slice(r * d, (r + 1) * d));
          const mu = row.reduce((a, b) => a + b, 0) / d;
          expect(Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / d)).toBeGreaterThan(0.25);
        }
        expectClose(
          grads["x"]!,
          want.dx,
          () => tol(dtype, 4 * d + 12, rstd * 4 * scale),
          `layer_norm ${dtype} dx`,
        );
        expectClose(
          grads["gamma"]!,
          want.dgamma,
          () => tol(dtype, 2 * d + 12, 4 * 2 * scale),
          `layer_norm ${dtype} dgamma`,
        );
        expectClose(
          grads["beta"]!,
          want.dbeta,
          () => tol(dtype, 4, 8),
          `layer_norm ${dtype} dbeta`,
        );
      });
    }

    it("applies the causal mask bottom-right aligned; the planted bug breaks exactly that", async () => {
      const n = 4;
      const d = 3;
      const Q = tensor("f64", [1, n, d], values(n * d, 31));
      const K = tensor("f64", [1, n, d], values(n * d, 32));
      const V = tensor("f64", [1, n, d], values(n * d, 33));
      const want = causalAttention(
        Array.from(Q.data),
        Array.from(K.data),
        Array.from(V.data),
        n,
        d,
      );
      const req = { formula: "attention", config: { causal: true }, inputs: { Q, K, V } };
      const bound = (): number => tol("f64", 2 * n + d + 8, 4);
      expectClose((await impl.forward(req)).outputs["y"]!, want, bound, "attention y");

      const buggy = await ProcessImplementation.start(`${PYTHON} examples/numpy/impl_buggy.py`, {
        timeoutMs: 10_000,
        cwd: repo,
      });
      try {
        expect(buggy.name).toBe("numpy-reference (planted bug: mask_off_by_one)");
        const y = (await buggy.forward(req)).outputs["y"]!;
        // query 0 now also sees key 1: row 0 differs, the last row (which sees every key anyway) does not
        const row0 = [0, 1, 2].map((c) => Math.abs(y.data[c]! - want[c]!));
        expect(Math.max(...row0)).toBeGreaterThan(1e-3);
        expectClose(
          new Tensor("f64", [d], y.data.slice((n - 1) * d) as Float64Array),
          want.slice((n - 1) * d),
          bound,
          "buggy attention last row",
        );
      } finally {
        await buggy.close();
      }
    });

    it("declines a request just outside every capability it declares, naming the hyperparameter", async () => {
      // hello's capabilities must say what the program refuses, no more: a convention implemented
      // later but still declared away would never be checked by the laws, so this fails until the
      // declaration is widened
      const caps = impl.capabilities ?? {};
      expect(Object.keys(caps).length).toBeGreaterThan(0);
      const manifest = JSON.parse(readFileSync(join(repo, "golden", "manifest.json"), "utf8")) as {
        cases: { formula: string; dtype: string; file: string }[];
      };
      let tried = 0;
      for (const [formula, cap] of Object.entries(caps)) {
        // a golden case the program supports, to move one hyperparameter out of the declared space
        const inside = manifest.cases
          .filter((c) => c.formula === formula && c.dtype === "f64")
          .map((c) => loadCase(join(repo, "golden", c.file)))
          .find(
            (c) =>
              outsideCapability(impl, {
                formula,
                config: c.meta.config,
                dtype: "f64",
                inputs: c.inputs,
              }) === undefined,
          );
        expect(inside, `a golden case of ${formula} inside its declared capability`).toBeDefined();
        for (const [key, rule] of Object.entries(cap.config ?? {})) {
          const h = getFormula(formula).hyper.find((x) => x.name === key)!;
          const candidates =
            h.kind === "enum"
              ? (h.choices ?? [])
              : h.kind === "boolean"
                ? [true, false]
                : [1, 2, 7];
          const outside = candidates.find(
            (v) => Array.isArray(rule) && !(rule as unknown[]).includes(v),
          );
          expect(
            outside,
            `a value of ${formula}.${key} outside ${JSON.stringify(rule)}`,
          ).toBeDefined();
          const request = {
            formula,
            config: { ...inside!.meta.config, [key]: outside! },
            inputs: inside!.inputs,
          };
          await expect(
            impl.forward(request),
            `${formula} with ${key} = ${String(outside)}`,
          ).rejects.toThrow(new RegExp(`${formula}.*${key}`));
          tried++;
        }
      }
      expect(tried).toBeGreaterThanOrEqual(Object.keys(caps).length);
    });

    it("answers bad input with an error naming the formula and the problem", async () => {
      const x = tensor("f64", [2, 3], values(6, 41));
      await expect(
        impl.forward({
          formula: "layer_norm",
          config: {},
          inputs: {
            x,
            gamma: tensor("f64", [4], values(4, 1)),
            beta: tensor("f64", [3], values(3, 2)),
          },
        }),
      ).rejects.toThrow(
        new RegExp(
          String.raw`reported an error for forward layer_norm \(request \d+\): fo` +
            String.raw`rward layer_norm: gamma has shape \[4\] but x \[2, 3\] needs` +
            String.raw` \[3\]$`,
        ),
      );
      await expect(
        impl.forward({ formula: "layer_norm", config: {}, inputs: { x } }),
      ).rejects.toThrow(/forward layer_norm: missing argument gamma \(given: x\)$/);
      const tokens = new Tensor("i32", [1, 3], Int32Array.from([0, 5, 1]));
      await expect(
        impl.forward({
          formula: "embedding",
          config: {},
          inputs: { tokens, E: tensor("f64", [4, 2], values(8, 3)) },
        }),
      ).rejects.toThrow(/forward embedding: tokens\[0, 1\] = 5 is not a token id in \[0, 4\)$/);
    });
  },
);
