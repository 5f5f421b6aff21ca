/**
 * Counter-based seeded values that JavaScript and NumPy compute bit for bit alike, so every
 * engine of a benchmark (specformer, tfjs, PyTorch) runs on identical weights without shipping
 * a gigabyte of GPT-2-small parameters between processes. `bench/peers/torch_peer.py` holds
 * the same functions (`hash_uniform`, `name_key`); the smoke test checks the two agree.
 *
 * Element i of the tensor named `name` under `seed`:
 *   x = (i·0x9E3779B1 + key(name, seed)) mod 2³², mixed by lowbias32 (Wellons' 32-bit hash),
 *   u = (x + ½) / 2³² ∈ (0, 1).
 * All integer steps are exact (Math.imul, >>> 0), so the u are identical in both languages.
 */
import { Tensor, type FloatDType } from "../autodiff/tensor.js";

/** FNV-1a of the UTF-8 bytes of `name`, xor the seed scrambled by the golden ratio. */
function nameKey(name: string, seed: number): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(name)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h ^ Math.imul(seed >>> 0, 0x9e3779b9)) >>> 0;
}

/** lowbias32: an invertible 32-bit mix with small bias. */
function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** u_i ∈ (0, 1) for i < size, written through `f(u)` into `out`. */
function fill(
  out: Float64Array | Float32Array | Int32Array,
  key: number,
  f: (u: number) => number,
): void {
  for (let i = 0; i < out.length; i++) {
    const x = mix((Math.imul(i, 0x9e3779b1) + key) >>> 0);
    out[i] = f((x + 0.5) / 4294967296);
  }
}

/**
 * Uniform values in (center − halfWidth, center + halfWidth): `center + halfWidth·(2u − 1)`,
 * computed in float64 and rounded once for f32.
 */
export function hashUniform(
  name: string,
  seed: number,
  shape: readonly number[],
  halfWidth: number,
  dtype: FloatDType = "f64",
  center = 0,
): Tensor {
  const t = Tensor.zeros(shape, dtype);
  fill(t.data, nameKey(name, seed), (u) => center + halfWidth * (2 * u - 1));
  return t;
}

/** Integer ids in [0, V): ⌊u·V⌋. */
export function hashTokens(
  name: string,
  seed: number,
  shape: readonly number[],
  V: number,
): Tensor {
  const t = Tensor.zeros(shape, "i32");
  fill(t.data, nameKey(name, seed), (u) => Math.floor(u * V));
  return t;
}
