/**
 * The matrix-multiply entry point used by the interpreter: the packed SIMD / threaded kernels of
 * kernels/matmul.ts.
 */
import { matmul, type MatmulArgs } from "./kernels/matmul.js";

export type GemmArgs = MatmulArgs;

export function gemm(args: GemmArgs): void {
  matmul(args);
}
