/**
 * TensorFlow.js as a specformer implementation, speaking the JSON-lines process protocol
 * (docs/PROTOCOL.md). Run it as `npx tsx examples/tfjs/adapter.ts`.
 *
 * Every formula is computed by `@tensorflow/tfjs` ops on its CPU backend (float32 only) and
 * every gradient by `tf.grads` (tfjs's own autodiff): this checks a widely used JavaScript
 * library, not code of ours. The formulas follow docs/NAMES.md: tokens are rows, weights
 * multiply from the right (`x W + b`, `W [d_in, d_out]`), head h is columns h·d_k … (h+1)·d_k − 1,
 * the causal mask is bottom-right aligned and a query that sees no key gets zero weights.
 *
 * stdout carries protocol lines only: the protocol writer keeps the real `process.stdout.write`,
 * and everything else that would print to stdout (console.log, a library banner) goes to stderr.
 * That redirection happens before tfjs is imported (hence the dynamic import).
 */
import { createInterface } from "node:readline";
import type * as TF from "@tensorflow/tfjs";
import type { FormulaConfig } from "../../autodiff/implementation.js";
import { Tensor } from "../../autodiff/tensor.js";
import { encodeTensor, tensorFromJSON } from "../../verify/protocol.js";

const writeProtocol = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const tf: typeof TF = await import("@tensorflow/tfjs");
await tf.setBackend("cpu");
await tf.ready();

type Args = Record<string, TF.Tensor>;
type Outputs = Record<string, TF.Tensor>;

/** Bad input to a formula: answered with an error message. */
class FormulaError extends Error {}

// ------------------------------------------------------------------------------ config

/**
 * Conventions this adapter does not compute are declined, never read as their default
 * (docs/PROTOCOL.md: a top-left request answered bottom-right is a wrong answer). `keys`: the
 * convention hyperparameters the formula takes (docs/NAMES.md).
 */
function onlyDefaultConventions(
  cfg: FormulaConfig,
  formula: string,
  keys: readonly string[],
): void {
  const defaults: Record<string, unknown> = {
    causal_align: "bottom_right",
    window: 0,
    mask: "none",
    softcap: 0,
    kv_cache: false,
  };
  for (const key of keys) {
    if (key in defaults) {
      if (cfg[key] !== undefined && cfg[key] !== defaults[key])
        throw new FormulaError(
          `${formula}: ${key} = ${JSON.stringify(cfg[key])} is not implemented here`,
        );
    } else if (cfg[key] !== undefined)
      throw new FormulaError(`${formula}: ${key} is not implemented here`);
  }
}

function num(cfg: FormulaConfig, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "number")
    throw new FormulaError(`hyperparameter ${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function int(cfg: FormulaConfig, key: string, fallback?: number): number {
  const v = num(cfg, key, fallback);
  if (!Number.isInteger(v))
    throw new FormulaError(`hyperparameter ${key} must be an integer, got ${v}`);
  return v;
}

function flag(cfg: FormulaConfig, key: string, fallback: boolean): boolean {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "boolean")
    throw new FormulaError(`hyperparameter ${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function choice<T extends string>(
  cfg: FormulaConfig,
  key: string,
  choices: readonly T[],
  fallback: T,
): T {
  const v = cfg[key] ?? fallback;
  if (!choices.includes(v as T))
    throw new FormulaError(
      `hyperparameter ${key} = ${JSON.stringify(v)} is not supported here (supported: ${choices.join(", ")})`,
    );
  return v as T;
}

function need(a: Args, name: string): TF.Tensor {
  const t = a[name];
  if (t === undefined)
    throw new FormulaError(
      `missing argument ${name} (given: ${Object.keys(a).sort().join(", ") || "none"})`,
    );
  return t;
}

// ------------------------------------------------------------------------------ the formulas

/** x W + b over the last axis of x, any leading axes. */
function linear(x: TF.Tensor, W: TF.Tensor, b?: TF.Tensor): TF.Tensor {
  const [dIn, dOut] = W.shape as [number, number];
  if (x.shape[x.rank - 1] !== dIn)
    throw new FormulaError(
      `x has ${x.shape[x.rank - 1]} features (shape [${x.shape.join(", ")}]) but W has ${dIn} rows`,
    );
  const y = tf.matMul(x.reshape([-1, dIn]), W);
  return (b === undefined ? y : y.add(b)).reshape([...x.shape.slice(0, -1), dOut]);
}

/** (x − μ)/√(σ² + ε) γ + β with tf.moments (biased variance). */
function layerNorm(x: TF.Tensor, gamma: TF.Tensor, beta: TF.Tensor, eps: number): TF.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return x
    .sub(mean)
    .mul(tf.rsqrt(variance.add(eps)))
    .mul(gamma)
    .add(beta);
}

function rmsNorm(x: TF.Tensor, gamma: TF.Tensor, eps: number): TF.Tensor {
  return x.mul(tf.rsqrt(x.square().mean(-1, true).add(eps))).mul(gamma);
}

const SQRT1_2 = Math.SQRT1_2;
const GELU_C = Math.sqrt(2 / Math.PI);

const ACTIVATIONS = {
  // ½ x (1 + erf(x/√2))
  gelu: (x: TF.Tensor) => x.mul(tf.erf(x.mul(SQRT1_2)).add(1)).mul(0.5),
  // ½ x (1 + tanh(√(2/π)(x + 0.044715 x³)))
  gelu_tanh: (x: TF.Tensor) =>
    x.mul(tf.tanh(x.add(x.pow(3).mul(0.044715)).mul(GELU_C)).add(1)).mul(0.5),
  relu: (x: TF.Tensor) => tf.relu(x),
  silu: (x: TF.Tensor) => x.mul(tf.sigmoid(x)),
} as const;
type Activation = keyof typeof ACTIVATIONS;
const ACTIVATION_NAMES = Object.keys(ACTIVATIONS) as Activation[];

/**
 * softmax(Q Kᵀ/√d_k + M) V. M is 0 where query i (of n) may see key j (of m), j ≤ i + m − n,
 * and −∞ elsewhere; a row with no visible key gets M = 0 and then weight 0 (output 0, gradient 0).
 */
function attention(Q: TF.Tensor, K: TF.Tensor, V: TF.Tensor, causal: boolean): TF.Tensor {
  const n = Q.shape[Q.rank - 2]!;
  const m = K.shape[K.rank - 2]!;
  const dK = Q.shape[Q.rank - 1]!;
  if (K.shape[K.rank - 1] !== dK)
    throw new FormulaError(`Q has d_k = ${dK} but K has ${K.shape[K.rank - 1]} columns`);
  const S = tf.matMul(Q, K, false, true).div(Math.sqrt(dK));
  if (!causal) return tf.matMul(tf.softmax(S), V);
  const M = new Float32Array(n * m);
  const keep = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const last = i + m - n; // the last key query i sees
    keep[i] = last >= 0 ? 1 : 0;
    for (let j = 0; j < m; j++) M[i * m + j] = j <= last || last < 0 ? 0 : -Infinity;
  }
  const W = tf.softmax(S.add(tf.tensor2d(M, [n, m]))).mul(tf.tensor2d(keep, [n, 1]));
  return tf.matMul(W, V);
}

/** [..., n, heads·d_k] → [..., heads, n, d_k]. */
function splitHeads(t: TF.Tensor, heads: number): TF.Tensor {
  const lead = t.shape.slice(0, -2);
  const [n, width] = t.shape.slice(-2) as [number, number];
  const L = lead.length;
  const perm = [...lead.map((_, i) => i), L + 1, L, L + 2];
  return t.reshape([...lead, n, heads, width / heads]).transpose(perm);
}

/** [..., heads, n, d_k] → [..., n, heads·d_k]. */
function mergeHeads(t: TF.Tensor): TF.Tensor {
  const lead = t.shape.slice(0, -3);
  const [heads, n, dK] = t.shape.slice(-3) as [number, number, number];
  const L = lead.length;
  const perm = [...lead.map((_, i) => i), L + 1, L, L + 2];
  return t.transpose(perm).reshape([...lead, n, heads * dK]);
}

/** Heads of projected q [..., n, H·d_k], k and v [..., n, H_kv·d_k]; query head h uses KV head ⌊h/(H/H_kv)⌋. */
function headsAttention(
  q: TF.Tensor,
  k: TF.Tensor,
  v: TF.Tensor,
  H: number,
  H_kv: number,
  causal: boolean,
): TF.Tensor {
  const group = H / H_kv;
  const repeat = (t: TF.Tensor): TF.Tensor => {
    const th = splitHeads(t, H_kv); // [..., H_kv, n, d_k]
    if (group === 1) return th;
    const L = th.rank - 3;
    const reps = th.shape.map(() => 1);
    reps.splice(L + 1, 0, group);
    return th
      .expandDims(L + 1)
      .tile(reps)
      .reshape([...th.shape.slice(0, L), H, ...th.shape.slice(L + 1)]);
  };
  return mergeHeads(attention(splitHeads(q, H), repeat(k), repeat(v), causal));
}

function checkHeads(dModel: number, H: number, H_kv: number): void {
  if (H < 1 || dModel % H !== 0)
    throw new FormulaError(`d_model = ${dModel} is not divisible by H = ${H}`);
  if (H_kv < 1 || H % H_kv !== 0)
    throw new FormulaError(`H = ${H} is not divisible by H_kv = ${H_kv}`);
}

function checkIds(ids: Int32Array, V: number, what: string): void {
  const i = ids.findIndex((t) => t < 0 || t >= V);
  if (i >= 0)
    throw new FormulaError(`${what} entry ${i} is ${ids[i]}, not a token id in [0, ${V})`);
}

/** The attention branch of a block from Hugging Face GPT-2 names (c_attn holds Q | K | V columns). */
function blockAttention(
  x: TF.Tensor,
  a: Args,
  prefix: string,
  H: number,
  H_kv: number,
  causal: boolean,
  bias: boolean,
): TF.Tensor {
  const dModel = x.shape[x.rank - 1]!;
  checkHeads(dModel, H, H_kv);
  const dKv = H_kv * (dModel / H);
  const qkv = linear(
    x,
    need(a, `${prefix}attn.c_attn.weight`),
    bias ? need(a, `${prefix}attn.c_attn.bias`) : undefined,
  );
  const [q, k, v] = tf.split(qkv, [dModel, dKv, dKv], -1) as [TF.Tensor, TF.Tensor, TF.Tensor];
  const o = headsAttention(q, k, v, H, H_kv, causal);
  return linear(
    o,
    need(a, `${prefix}attn.c_proj.weight`),
    bias ? need(a, `${prefix}attn.c_proj.bias`) : undefined,
  );
}

interface Formula {
  /** Integer (token id) arguments with the size they index. */
  readonly ids?: Readonly<Record<string, (a: Args, cfg: FormulaConfig) => number>>;
  readonly run: (a: Args, cfg: FormulaConfig) => Outputs;
}

const FORMULAS: Record<string, Formula> = {
  softmax: { run: (a) => ({ y: tf.softmax(need(a, "x")) }) },
  log_softmax: { run: (a) => ({ y: tf.logSoftmax(need(a, "x")) }) },
  logsumexp: { run: (a) => ({ y: tf.logSumExp(need(a, "x"), -1) }) },
  layer_norm: {
    run: (a, cfg) => ({
      y: layerNorm(need(a, "x"), need(a, "gamma"), need(a, "beta"), num(cfg, "eps", 1e-5)),
    }),
  },
  rms_norm: {
    run: (a, cfg) => ({ y: rmsNorm(need(a, "x"), need(a, "gamma"), num(cfg, "eps", 1e-6)) }),
  },
  gelu: { run: (a) => ({ y: ACTIVATIONS.gelu(need(a, "x")) }) },
  gelu_tanh: { run: (a) => ({ y: ACTIVATIONS.gelu_tanh(need(a, "x")) }) },
  relu: { run: (a) => ({ y: ACTIVATIONS.relu(need(a, "x")) }) },
  silu: { run: (a) => ({ y: ACTIVATIONS.silu(need(a, "x")) }) },
  linear: { run: (a) => ({ y: linear(need(a, "x"), need(a, "W"), a["b"]) }) },
  ffn: {
    run: (a, cfg) => {
      const act = ACTIVATIONS[choice(cfg, "activation", ACTIVATION_NAMES, "gelu")];
      return {
        y: linear(act(linear(need(a, "x"), need(a, "W_1"), a["b_1"])), need(a, "W_2"), a["b_2"]),
      };
    },
  },
  embedding: {
    ids: { tokens: (a) => need(a, "E").shape[0]! },
    run: (a) => ({ y: tf.gather(need(a, "E"), need(a, "tokens")) }),
  },
  attention: {
    run: (a, cfg) => {
      if (flag(cfg, "alibi", false)) throw new FormulaError("alibi = true is not implemented here");
      onlyDefaultConventions(cfg, "attention", [
        "causal_align",
        "window",
        "mask",
        "softcap",
        "scale",
      ]);
      // the heads are a batch axis here: grouped K/V heads (H_kv < H) would need repeating
      if (cfg["H_kv"] !== undefined && cfg["H_kv"] !== cfg["H"])
        throw new FormulaError("attention: H_kv ≠ H (grouped K/V heads) is not implemented here");
      return { y: attention(need(a, "Q"), need(a, "K"), need(a, "V"), flag(cfg, "causal", true)) };
    },
  },
  mha: {
    run: (a, cfg) => {
      const H = int(cfg, "H");
      const H_kv = int(cfg, "H_kv", H);
      choice(cfg, "positions", ["none"], "none");
      onlyDefaultConventions(cfg, "mha", ["window", "softcap"]);
      if (flag(cfg, "kv_cache", false) || int(cfg, "offset", 0) !== 0)
        throw new FormulaError("KV-cache decoding is not implemented here");
      const bias = flag(cfg, "bias", true);
      const x = need(a, "x");
      checkHeads(x.shape[x.rank - 1]!, H, H_kv);
      const b = (name: string): TF.Tensor | undefined => (bias ? need(a, name) : undefined);
      const q = linear(x, need(a, "W_Q"), b("b_Q"));
      const k = linear(x, need(a, "W_K"), b("b_K"));
      const v = linear(x, need(a, "W_V"), b("b_V"));
      return {
        y: linear(
          headsAttention(q, k, v, H, H_kv, flag(cfg, "causal", true)),
          need(a, "W_O"),
          b("b_O"),
        ),
      };
    },
  },
  cross_entropy: {
    ids: { targets: (a) => need(a, "logits").shape.at(-1)! },
    run: (a) => {
      const logits = need(a, "logits");
      const targets = need(a, "targets");
      const V = logits.shape[logits.rank - 1]!;
      if (targets.size * V !== logits.size)
        throw new FormulaError(
          `targets have shape [${targets.shape.join(", ")}] but logits [${logits.shape.join(", ")}]`,
        );
      // mean over all positions of −log softmax(logits)[target] (reduction SUM_BY_NONZERO_WEIGHTS = mean)
      const onehot = tf.oneHot(targets.reshape([-1]), V).toFloat();
      return { loss: tf.losses.softmaxCrossEntropy(onehot, logits.reshape([-1, V])) };
    },
  },
  block_pre_ln: {
    run: (a, cfg) => {
      // x' = x + MHA(LN_1 x), y = x' + FFN(LN_2 x')  (GPT-2)
      const H = int(cfg, "H");
      const H_kv = int(cfg, "H_kv", H);
      const eps = num(cfg, "eps", 1e-5);
      const bias = flag(cfg, "bias", true);
      const causal = flag(cfg, "causal", true);
      const norm = choice(cfg, "norm", ["layer_norm", "rms_norm"], "layer_norm");
      const act =
        ACTIVATIONS[choice(cfg, "activation", ["gelu", "gelu_tanh", "relu"] as const, "gelu")];
      choice(cfg, "positions", ["none"], "none");
      if (flag(cfg, "parallel", false))
        throw new FormulaError("parallel = true is not implemented here");
      onlyDefaultConventions(cfg, "block_pre_ln", ["window", "softcap", "kv_cache"]);
      const N = (t: TF.Tensor, name: string): TF.Tensor =>
        norm === "layer_norm"
          ? layerNorm(t, need(a, `${name}.weight`), need(a, `${name}.bias`), eps)
          : rmsNorm(t, need(a, `${name}.weight`), eps);
      const x = need(a, "x");
      const x1 = x.add(blockAttention(N(x, "ln_1"), a, "", H, H_kv, causal, bias));
      const h = act(
        linear(
          N(x1, "ln_2"),
          need(a, "mlp.c_fc.weight"),
          bias ? need(a, "mlp.c_fc.bias") : undefined,
        ),
      );
      return {
        y: x1.add(
          linear(h, need(a, "mlp.c_proj.weight"), bias ? need(a, "mlp.c_proj.bias") : undefined),
        ),
      };
    },
  },
};

// ------------------------------------------------------------------------------ requests

function toTf(t: Tensor, name: string): TF.Tensor {
  if (t.dtype === "f64")
    throw new FormulaError(`argument ${name} is f64; this implementation computes in float32 only`);
  return tf.tensor(
    t.data as Float32Array | Int32Array,
    [...t.shape],
    t.dtype === "i32" ? "int32" : "float32",
  );
}

function fromTf(t: TF.Tensor): Tensor {
  if (t.dtype !== "float32") throw new Error(`internal: output of dtype ${t.dtype}`);
  return new Tensor("f32", t.shape, Float32Array.from(t.dataSync() as Float32Array));
}

function decodeAll(obj: unknown, what: string): Record<string, Tensor> {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new FormulaError(`${what} must be an object {name: tensor}`);
  return Object.fromEntries(
    Object.entries(obj).map(([k, v]) => [k, tensorFromJSON(v, `${what.replace(/s$/, "")} ${k}`)]),
  );
}

function encodeAll(tensors: Record<string, Tensor>): string {
  return `{${Object.entries(tensors)
    .map(([k, t]) => `${JSON.stringify(k)}:${encodeTensor(t)}`)
    .join(",")}}`;
}

/** The JSON text of a request's result. */
function handle(method: unknown, params: Record<string, unknown>): string {
  if (method === "hello") {
    return JSON.stringify({
      name: "tfjs",
      formulas: Object.keys(FORMULAS),
      backward: true,
      dtypes: ["f32"],
      protocol: 1,
      shutdown: true,
      tfjs: tf.version.tfjs,
      backend: tf.getBackend(),
    });
  }
  if (method === "shutdown") return "{}";
  if (method !== "forward" && method !== "backward")
    throw new FormulaError(`unknown method ${JSON.stringify(method)}`);
  const name = params["formula"];
  const formula = typeof name === "string" ? FORMULAS[name] : undefined;
  if (formula === undefined)
    throw new FormulaError(`formula ${JSON.stringify(name)} is not implemented here`);
  const cfg = (params["config"] ?? {}) as FormulaConfig;
  const inputs = decodeAll(params["inputs"] ?? {}, "inputs");
  return tf.tidy(() => {
    const args: Args = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, toTf(t, k)]));
    for (const [k, size] of Object.entries(formula.ids ?? {})) {
      const ids = inputs[k];
      if (ids === undefined || ids.dtype !== "i32")
        throw new FormulaError(`argument ${k} must be an i32 tensor of token ids`);
      checkIds(ids.data as Int32Array, size(args, cfg), k);
    }
    if (method === "forward") {
      const outputs = formula.run(args, cfg);
      return `{"outputs":${encodeAll(Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, fromTf(t)])))}}`;
    }
    const cotangents = decodeAll(params["cotangents"] ?? {}, "cotangents");
    const cot: Args = Object.fromEntries(
      Object.entries(cotangents).map(([k, t]) => [k, toTf(t, `cotangent ${k}`)]),
    );
    const floatNames = Object.keys(args).filter((k) => args[k]!.dtype === "float32");
    // the gradient of Σ_out Σ(out ⊙ cot) with respect to every float argument, by tfjs autodiff
    const objective = (...xs: TF.Tensor[]): TF.Scalar => {
      const substituted: Args = { ...args };
      floatNames.forEach((k, i) => (substituted[k] = xs[i]!));
      const outs = formula.run(substituted, cfg);
      let total: TF.Tensor = tf.scalar(0);
      for (const [k, c] of Object.entries(cot)) {
        const o = outs[k];
        if (o === undefined)
          throw new FormulaError(
            `cotangent ${k} names no output (outputs: ${Object.keys(outs).join(", ")})`,
          );
        if (o.shape.join() !== c.shape.join())
          throw new FormulaError(
            `cotangent ${k} has shape [${c.shape.join(", ")}] but output ${k} has [${o.shape.join(", ")}]`,
          );
        total = total.add(o.mul(c).sum());
      }
      return total as TF.Scalar;
    };
    const grads = tf.grads(objective)(floatNames.map((k) => args[k]!));
    return `{"grads":${encodeAll(Object.fromEntries(floatNames.map((k, i) => [k, fromTf(grads[i]!)])))}}`;
  });
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === "") continue;
  let req: { id?: unknown; method?: unknown; params?: Record<string, unknown> } = {};
  let text: string;
  try {
    req = JSON.parse(line) as typeof req;
    text = `{"id":${JSON.stringify(req.id ?? null)},"result":${handle(req.method, req.params ?? {})}}`;
  } catch (e) {
    // bad input is answered; anything else is a bug here, so its stack goes to stderr too
    if (!(e instanceof FormulaError || (e instanceof Error && e.name === "ProtocolError")))
      console.error(e);
    const where =
      [req.method, req.params?.["formula"]]
        .filter((s) => typeof s === "string" && s !== "")
        .join(" ") || "request";
    text = JSON.stringify({
      id: req.id ?? null,
      error: { message: `${where}: ${e instanceof Error ? e.message : String(e)}` },
    });
  }
  writeProtocol(`${text}\n`);
  if (req.method === "shutdown") break;
}
rl.close();
