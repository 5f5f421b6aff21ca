/**
 * The opt-in FMA kernel: detected at run time, off by default (products then equal the naive
 * loop bit for bit), and when on it rounds each multiply-add once — visible on operands whose
 * exact products float64 cannot hold — while staying within the K·u bound of the naive loop.
 */
import { afterAll, describe, expect, test } from "vitest";
import { configureMatmul, matmul, matmulKernelInfo } from "./matmul.js";
import { fmaSupport } from "./features.js";
import { naiveMatmul } from "./ops.js";
import { Rng } from "../random.js";

afterAll(() => configureMatmul({ fma: false, path: "auto" }));

/** A (1×2)·(2×N): C[0, j] = (−1)·1 + (1 + 2⁻³⁰)(1 − 2⁻³⁰) = −2⁻⁶⁰ exactly; unfused, the second
 *  product rounds to 1 and the sum is 0. */
function cancelling(N: number): { a: Float64Array; b: Float64Array } {
  const a = new Float64Array([-1, 1 + 2 ** -30]);
  const b = new Float64Array(2 * N);
  for (let j = 0; j < N; j++) {
    b[j] = 1;
    b[N + j] = 1 - 2 ** -30;
  }
  return { a, b };
}

describe("relaxed-SIMD FMA in the matmul kernel", () => {
  test("off by default: the kernel path equals the naive loop bit for bit", () => {
    expect(matmulKernelInfo().fma).toBe(false);
    configureMatmul({ path: "kernel" });
    const { a, b } = cancelling(8);
    const c = new Float64Array(8).fill(NaN);
    matmul({ dtype: "f64", a, b, c, batch: 1, M: 1, N: 8, K: 2 });
    expect(Array.from(c)).toEqual(new Array(8).fill(0));
  });

  const support = fmaSupport(true);
  test.runIf(support.available && support.fused === true)(
    "on: one rounding per multiply-add, within K·u of the naive loop",
    () => {
      configureMatmul({ fma: true, path: "kernel" });
      expect(matmulKernelInfo().fma).toBe(true);
      const { a, b } = cancelling(8);
      const c = new Float64Array(8);
      matmul({ dtype: "f64", a, b, c, batch: 1, M: 1, N: 8, K: 2 });
      expect(Array.from(c)).toEqual(new Array(8).fill(-(2 ** -60)));

      // random products: |fma − naive| ≤ 2·K·u·Σ|a·b| per entry
      const rng = new Rng(3);
      const [M, N, K] = [37, 29, 301];
      const A = Float64Array.from({ length: M * K }, () => rng.normal());
      const B = Float64Array.from({ length: K * N }, () => rng.normal());
      const got = new Float64Array(M * N);
      const want = new Float64Array(M * N);
      matmul({ dtype: "f64", a: A, b: B, c: got, batch: 1, M, N, K });
      naiveMatmul(A, B, want, 1, M, N, K, false, false, 0, 0);
      let differ = 0;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let abs = 0;
          for (let k = 0; k < K; k++) abs += Math.abs(A[i * K + k]! * B[k * N + j]!);
          const d = Math.abs(got[i * N + j]! - want[i * N + j]!);
          expect(d).toBeLessThanOrEqual(2 * K * 2 ** -53 * abs);
          if (d !== 0) differ++;
        }
      }
      // FMA and a blocked order change the last bits of some entries
      expect(differ).toBeGreaterThan(0);

      configureMatmul({ fma: false });
      const c2 = new Float64Array(8);
      matmul({ dtype: "f64", a, b, c: c2, batch: 1, M: 1, N: 8, K: 2 });
      expect(Array.from(c2)).toEqual(new Array(8).fill(0));
    },
  );
});
