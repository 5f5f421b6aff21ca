/**
 * The matrix-multiply entry point used by the interpreter. It forwards to the packed SIMD /
 * threaded kernels of kernels/matmul.ts; `setGemm("naive")` switches to the reference loop
 * (tests compare the two).
 */
import { matmul, type MatmulArgs } from "./kernels/matmul.js";
import { naiveMatmul } from "./kernels/ops.js";

export type GemmArgs = MatmulArgs;

let impl: "fast" | "naive" = "fast";

export function setGemm(which: "fast" | "naive"): void {
  impl = which;
}

export function gemm(args: GemmArgs): void {
  if (impl === "fast") return matmul(args);
  naiveMatmul(args.a, args.b, args.c, args.batch, args.M, args.N, args.K, args.transA ?? false, args.transB ?? false, args.aBatchStride ?? args.M * args.K, args.bBatchStride ?? args.K * args.N);
}
