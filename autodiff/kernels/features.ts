/**
 * WebAssembly features beyond SIMD128 that the matmul kernel can use, detected at run time.
 *
 * Relaxed SIMD's `f64x2.relaxed_madd` is a multiply-add that the platform may fuse (one
 * rounding, x86 FMA3) or not. Node 20 (V8 11.3) ships it behind `--experimental-wasm-relaxed-simd`,
 * a flag Node refuses in NODE_OPTIONS; `v8.setFlagsFromString` before the first module that uses
 * it is compiled enables it for the whole process (workers included). Detection first validates a
 * one-instruction module as is; only a caller that asks for FMA sets the flag and validates again.
 * A validated instruction is then run once on operands whose exact product the float64 format
 * cannot hold, to tell a fused multiply-add from a multiply and an add.
 */
import v8 from "node:v8";
import { wasm } from "./wasm-api.js";
import { ModuleBuilder, ONE_SHARED_PAGE } from "./wasm-emit.js";

export interface FmaSupport {
  /** `f64x2.relaxed_madd` validates in this process. */
  readonly available: boolean;
  /** `native`: without flags; `flag`: after setting `--experimental-wasm-relaxed-simd`. */
  readonly via: "native" | "flag" | "none";
  /** The instruction rounds once (a true FMA); undefined when unavailable. */
  readonly fused?: boolean;
}

/** madd(p): memory[p + 32…] = memory[p…]·memory[p + 16…] + memory[p + 32…], two f64 lanes. */
function maddModule(): Uint8Array {
  const mod = new ModuleBuilder(ONE_SHARED_PAGE);
  const f = mod.func("madd", ["i32"], []);
  const p = f.param(0);
  f.get(p);
  f.get(p).mem("v128.load", 0).get(p).mem("v128.load", 16).get(p).mem("v128.load", 32);
  f.op("f64x2.relaxed_madd").mem("v128.store", 32);
  return mod.encode();
}

/** Does the validated instruction round once? (1 + 2⁻³⁰)(1 − 2⁻³⁰) − 1 = −2⁻⁶⁰ exactly; a
 *  separate multiply rounds the product to 1 first and gives 0. */
function runsFused(bytes: Uint8Array): boolean {
  const memory = new wasm.Memory({ initial: 1, maximum: 1, shared: true });
  const { madd } = new wasm.Instance(new wasm.Module(bytes), { env: { memory } }).exports as {
    madd: (p: number) => void;
  };
  const m = new Float64Array(memory.buffer, 0, 6);
  m.set([1 + 2 ** -30, 1 + 2 ** -30, 1 - 2 ** -30, 1 - 2 ** -30, -1, -1]);
  madd(0);
  return m[4] === -(2 ** -60) && m[5] === -(2 ** -60);
}

let detected: FmaSupport | undefined;

/**
 * Relaxed-SIMD FMA in this process. With `enable`, sets the V8 flag if the instruction does
 * not validate without it (once set, the flag stays for the process).
 */
export function fmaSupport(enable = false): FmaSupport {
  if (detected !== undefined && (detected.available || !enable)) return detected;
  const bytes = maddModule();
  let via: FmaSupport["via"] = "none";
  if (wasm.validate(bytes)) via = "native";
  else if (enable) {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
    if (wasm.validate(bytes)) via = "flag";
  }
  detected =
    via === "none" ? { available: false, via } : { available: true, via, fused: runsFused(bytes) };
  return detected;
}
