/**
 * TensorFlow.js peer of the benchmark: GPT-2's block and model written in tfjs ops, differentiated
 * with `tf.grads`, on the CPU (pure JS) or WebAssembly backend. tfjs computes in float32 only.
 * The WebAssembly binaries are loaded from the installed package (no network).
 */
import { createRequire } from "node:module";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import type { NamedTensors } from "../../autodiff/tensor.js";
import type { BlockSize, GptSize } from "../workloads.js";

export type TfBackend = "cpu" | "wasm";

let wasmPathSet = false;

/** Switch tfjs to `backend` (WebAssembly binaries from node_modules). */
export async function useBackend(backend: TfBackend): Promise<void> {
  if (backend === "wasm" && !wasmPathSet) {
    const require = createRequire(import.meta.url);
    setWasmPaths(
      path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")) + "/dist/",
    );
    wasmPathSet = true;
  }
  // tfjs prints a hint to install tfjs-node on first use in Node; it is not an error
  const warn = console.warn;
  const log = console.log;
  console.warn = () => {};
  console.log = () => {};
  try {
    const ok = await tf.setBackend(backend);
    if (!ok || tf.getBackend() !== backend)
      throw new Error(`tfjs backend ${backend} could not be initialised`);
    await tf.ready();
    // the CPU backend's first write prints a hint to install tfjs-node; let it happen here
    tf.tensor([0]).dispose();
  } finally {
    console.warn = warn;
    console.log = log;
  }
}

export function tfjsVersion(): string {
  return tf.version.tfjs;
}

export function wasmInfo(): { simd: boolean; threads: boolean } {
  return {
    simd: tf.env().getBool("WASM_HAS_SIMD_SUPPORT"),
    threads: tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT"),
  };
}

function toTf(ts: NamedTensors): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(ts)) {
    out[k] =
      t.dtype === "i32"
        ? tf.tensor(Int32Array.from(t.data), [...t.shape], "int32")
        : tf.tensor(Float32Array.from(t.data), [...t.shape], "float32");
  }
  return out;
}

/** LayerNorm over the last axis with the biased variance, ε inside the root (PyTorch's). */
function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
}

/** GELU, tanh form: ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
function geluTanh(x: tf.Tensor): tf.Tensor {
  const c = Math.sqrt(2 / Math.PI);
  return tf.mul(
    tf.mul(0.5, x),
    tf.add(1, tf.tanh(tf.mul(c, tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))),
  );
}

/** 0 on and below the diagonal, −∞ above: added to the scores. */
function causalBias(n: number): tf.Tensor {
  const b = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) b[i * n + j] = -Infinity;
  return tf.tensor(b, [n, n]);
}

/** GPT-2's pre-LN block (p: parameters named without the `h.{l}.` prefix). */
function block(
  x: tf.Tensor,
  p: Readonly<Record<string, tf.Tensor>>,
  H: number,
  eps: number,
  mask: tf.Tensor,
): tf.Tensor {
  const [n, d] = x.shape as [number, number];
  const dk = d / H;
  const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [n, H, dk]), [1, 0, 2]); // (H, n, dk)
  const h = layerNorm(x, p["ln_1.weight"]!, p["ln_1.bias"]!, eps);
  const qkv = tf.add(tf.matMul(h, p["attn.c_attn.weight"]!), p["attn.c_attn.bias"]!);
  const [q, k, v] = tf.split(qkv, 3, -1) as [tf.Tensor, tf.Tensor, tf.Tensor];
  const s = tf.add(tf.div(tf.matMul(heads(q), heads(k), false, true), Math.sqrt(dk)), mask);
  const a = tf.reshape(tf.transpose(tf.matMul(tf.softmax(s), heads(v)), [1, 0, 2]), [n, d]);
  const x1 = tf.add(x, tf.add(tf.matMul(a, p["attn.c_proj.weight"]!), p["attn.c_proj.bias"]!));
  const h2 = layerNorm(x1, p["ln_2.weight"]!, p["ln_2.bias"]!, eps);
  const f = geluTanh(tf.add(tf.matMul(h2, p["mlp.c_fc.weight"]!), p["mlp.c_fc.bias"]!));
  return tf.add(x1, tf.add(tf.matMul(f, p["mlp.c_proj.weight"]!), p["mlp.c_proj.bias"]!));
}

/** Output and gradients as plain arrays (read back, so the timing includes the work). */
export interface PeerResult {
  readonly values: Record<string, Float32Array>;
}

/**
 * A block forward + backward prepared once: `run()` computes y and every input's gradient for the
 * output cotangent; `forward()` computes y only.
 */
export function prepareBlock(
  size: BlockSize,
  inputs: NamedTensors,
  cot: NamedTensors,
  eps: number,
): { run(): PeerResult; forward(): void; dispose(): void } {
  const ts = toTf(inputs);
  const dy = toTf(cot)["cot.y"]!;
  const names = Object.keys(ts);
  const mask = causalBias(size.n);
  const f = (...args: tf.Tensor[]): tf.Tensor => {
    const p: Record<string, tf.Tensor> = {};
    names.forEach((k, i) => (p[k] = args[i]!));
    return block(p["x"]!, p, size.H, eps, mask);
  };
  const g = tf.grads(f);
  return {
    run() {
      return tf.tidy(() => {
        const args = names.map((k) => ts[k]!);
        const y = f(...args);
        const gs = g(args, dy);
        const values: Record<string, Float32Array> = { y: y.dataSync() as Float32Array };
        names.forEach((k, i) => (values[`grad.${k}`] = gs[i]!.dataSync() as Float32Array));
        return { values };
      });
    },
    forward() {
      tf.tidy(() => {
        f(...names.map((k) => ts[k]!)).dataSync();
      });
    },
    dispose() {
      for (const t of Object.values(ts)) t.dispose();
      dy.dispose();
      mask.dispose();
    },
  };
}

/** The whole GPT-2-shaped model: loss and the gradient of every parameter. */
export function prepareGpt(
  size: GptSize,
  tensors: NamedTensors,
  eps: number,
): { run(): PeerResult; dispose(): void } {
  const ts = toTf(tensors);
  const tokens = ts["tokens"]!;
  const targets = ts["targets"]!;
  const names = Object.keys(ts).filter((k) => k !== "tokens" && k !== "targets");
  const n = size.tokens;
  const mask = causalBias(n);
  const onehot = tf.oneHot(targets as tf.Tensor1D, size.V);
  // E[t] with the gradient summed into E's rows by ScatterNd (the WebAssembly backend has no
  // UnsortedSegmentSum, which tf.gather's own gradient needs)
  const rows = tf.reshape(tokens, [n, 1]);
  const embed = tf.customGrad((...args: unknown[]) => {
    const table = args[0] as tf.Tensor;
    return {
      value: tf.gather(table, tokens),
      gradFunc: (dy: tf.Tensor) => tf.scatterND(rows, dy, table.shape),
    };
  });
  const lossOf = (...args: tf.Tensor[]): tf.Tensor => {
    const p: Record<string, tf.Tensor> = {};
    names.forEach((k, i) => (p[k] = args[i]!));
    let x = tf.add(embed(p["wte.weight"]!), tf.slice(p["wpe.weight"]!, [0, 0], [n, size.d_model]));
    for (let l = 0; l < size.L; l++) {
      const pre = `h.${l}.`;
      const bp: Record<string, tf.Tensor> = {};
      for (const k of names) if (k.startsWith(pre)) bp[k.slice(pre.length)] = p[k]!;
      x = block(x, bp, size.H, eps, mask);
    }
    x = layerNorm(x, p["ln_f.weight"]!, p["ln_f.bias"]!, eps);
    const logits = tf.matMul(x, p["wte.weight"]!, false, true);
    // mean over rows of logsumexp(z) − z[target]
    return tf.mean(tf.sub(tf.logSumExp(logits, -1), tf.sum(tf.mul(logits, onehot), -1)));
  };
  const g = tf.valueAndGrads(lossOf);
  return {
    run() {
      return tf.tidy(() => {
        const { value, grads } = g(names.map((k) => ts[k]!));
        const values: Record<string, Float32Array> = { loss: value.dataSync() as Float32Array };
        names.forEach((k, i) => (values[`grad.${k}`] = grads[i]!.dataSync() as Float32Array));
        return { values };
      });
    },
    dispose() {
      for (const t of Object.values(ts)) t.dispose();
      mask.dispose();
      onehot.dispose();
      rows.dispose();
    },
  };
}

/** C = op(A)·op(B) for square float32 operands; returns a runner that reads C back. */
export function prepareMatmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  transA: boolean,
  transB: boolean,
): { run(): Float32Array; dispose(): void } {
  const ta = tf.tensor(a, [m, m]);
  const tb = tf.tensor(b, [m, m]);
  return {
    run: () => tf.tidy(() => tf.matMul(ta, tb, transA, transB).dataSync() as Float32Array),
    dispose() {
      ta.dispose();
      tb.dispose();
    },
  };
}
