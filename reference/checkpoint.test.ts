import { afterAll, describe, expect, it } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import { loadCase } from "../golden/cases-io.js";
import { compareCase, formatReport } from "../golden/compare.js";
import { readSafetensorsFile, writeSafetensorsFile } from "../golden/safetensors.js";
import { trainBpe } from "./tokenizer/index.js";
import { checkpointPaths, configFromHf, configToHf, loadCheckpoint, saveCheckpoint, TOKENIZER_FILE } from "./checkpoint.js";
import { GPT, resolveModelConfig } from "./model.js";

const golden = join(import.meta.dirname, "..", "golden");
const TINY = join(golden, "checkpoints", "tiny-gpt2");
const tmp = mkdtempSync(join(tmpdir(), "specformer-ckpt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let k = 0;
const fresh = () => join(tmp, `c${k++}`);

/** A copy of the tiny checkpoint with its tensors (and config) rewritten. */
function variant(edit: (t: Map<string, Tensor>) => void, editConfig?: (c: Record<string, unknown>) => void): string {
  const dir = fresh();
  const tensors = new Map(readSafetensorsFile(join(TINY, "model.safetensors")).tensors);
  edit(tensors);
  writeSafetensorsFile(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const cfg = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<string, unknown>;
  editConfig?.(cfg);
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  return dir;
}

describe("loading the Hugging Face GPT-2 layout", () => {
  it("maps the tiny checkpoint's config.json and matches its PyTorch golden case (logits, loss, gradients)", () => {
    const ck = loadCheckpoint(TINY);
    expect(ck.model.config).toEqual({
      V: 80, n_ctx: 32, d_model: 16, H: 4, H_kv: 4, L: 2, d_ff: 64, eps: 1e-5, dtype: "f32",
      norm: "layer_norm", placement: "pre", activation: "gelu_tanh", positions: "learned", rope_base: 10000, tied: true, parallel: false, bias: true, window: 0, softcap: 0,
    });
    const g = loadCase(join(golden, "cases", "gpt", "f32", "checkpoint-tiny-gpt2.safetensors"));
    const report = compareCase(g, ck.model.vjp(g.inputs["tokens"]!, g.inputs["targets"]!, g.cotangents));
    if (!report.ok) throw new Error(formatReport(report));
    expect(report.passed).toBe(2 + 28);
    // and through forward(): the same logits
    expect(compareCase({ ...g, grads: {} }, { outputs: { logits: ck.model.forward(g.inputs["tokens"]!) } }, { allowExtra: false }).tensors.find((t) => t.name === "out.logits")?.ok).toBe(true);
  });

  it("takes a .safetensors path with config.json beside it, and f64 on request", () => {
    const ck = loadCheckpoint(join(TINY, "model.safetensors"), { dtype: "f64" });
    expect(ck.model.config.dtype).toBe("f64");
    expect(ck.model.weights["wte.weight"]!.dtype).toBe("f64");
    expect(checkpointPaths(TINY)).toEqual({ weights: join(TINY, "model.safetensors"), config: join(TINY, "config.json"), tokenizer: join(TINY, TOKENIZER_FILE) });
  });

  it("accepts the transformer. prefix of GPT2LMHeadModel and a tied lm_head.weight equal to wte", () => {
    const dir = variant((t) => {
      for (const [name, v] of [...t]) {
        t.delete(name);
        t.set(`transformer.${name}`, v);
      }
      t.set("lm_head.weight", t.get("transformer.wte.weight")!);
    });
    const a = loadCheckpoint(dir).model;
    const b = loadCheckpoint(TINY).model;
    const ids = [5, 9, 1, 70];
    expect(a.forward(ids).data).toEqual(b.forward(ids).data);
  });

  it("names a missing, extra or misshaped tensor", () => {
    expect(() => loadCheckpoint(variant((t) => t.delete("h.1.mlp.c_fc.bias")))).toThrow(/model\.safetensors: missing tensor h\.1\.mlp\.c_fc\.bias$/);
    expect(() => loadCheckpoint(variant((t) => t.set("h.0.attn.rotary.inv_freq", Tensor.zeros([2], "f32"))))).toThrow(
      /model\.safetensors: unexpected tensor h\.0\.attn\.rotary\.inv_freq \(not a parameter of the configuration in config\.json\)$/,
    );
    expect(() => loadCheckpoint(variant((t) => t.set("ln_f.weight", Tensor.zeros([17], "f32"))))).toThrow(/model\.safetensors: tensor ln_f\.weight has shape \[17\] but the configuration needs \[16\]$/);
    expect(() => loadCheckpoint(variant((t) => t.set("lm_head.weight", Tensor.zeros([80, 16], "f32"))))).toThrow(/lm_head\.weight differs from wte\.weight, but the configuration ties them/);
    expect(() => loadCheckpoint(variant((t) => t.set("transformer.wte.weight", t.get("wte.weight")!)))).toThrow(/tensor wte\.weight appears twice/);
  });

  it("drops the causal-mask buffers (h.{l}.attn.bias, attn.masked_bias) but no other tensor", () => {
    const dir = variant((t) => t.set("h.1.attn.masked_bias", Tensor.scalar(-1e4, "f32")));
    expect(readSafetensorsFile(join(dir, "model.safetensors")).tensors.has("h.0.attn.bias")).toBe(true);
    expect(Object.keys(loadCheckpoint(dir).model.weights)).not.toContain("h.0.attn.bias");
  });

  it("reads checkpoints whose mask buffers are BOOL (which the tensor reader does not convert)", () => {
    // a hand-built file: every tensor of the tiny checkpoint as F32, and h.{l}.attn.bias as BOOL
    const src = readSafetensorsFile(join(TINY, "model.safetensors")).tensors;
    const entries: string[] = [];
    const spans: Uint8Array[] = [];
    let offset = 0;
    const mask = (name: string) => /^h\.\d+\.attn\.bias$/.test(name);
    for (const [name, t] of src) {
      const span = mask(name) ? new Uint8Array(t.size).fill(1) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      entries.push(`${JSON.stringify(`transformer.${name}`)}:${JSON.stringify({ dtype: mask(name) ? "BOOL" : "F32", shape: t.shape, data_offsets: [offset, offset + span.length] })}`);
      spans.push(span);
      offset += span.length;
    }
    const head = new TextEncoder().encode(`{${entries.join(",")}}`.padEnd(Math.ceil((entries.join(",").length + 2) / 8) * 8, " "));
    const bytes = new Uint8Array(8 + head.length + offset);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(head.length), true);
    bytes.set(head, 8);
    let at = 8 + head.length;
    for (const sp of spans) {
      bytes.set(sp, at);
      at += sp.length;
    }
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, "model.safetensors"), bytes);
    copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
    expect(() => readSafetensorsFile(join(dir, "model.safetensors"))).toThrow(/unsupported dtype BOOL/);
    const ids = [1, 2, 3];
    expect(loadCheckpoint(dir).model.forward(ids).data).toEqual(loadCheckpoint(TINY).model.forward(ids).data);
  });

  it("maps activation_function and n_inner, and refuses what the gpt formula cannot compute", () => {
    const base = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<string, never>;
    expect(configFromHf({ ...base, activation_function: "gelu" }).activation).toBe("gelu");
    expect(configFromHf({ ...base, activation_function: "relu" }).activation).toBe("relu");
    expect(configFromHf({ ...base, activation_function: "gelu_new" }).activation).toBe("gelu_tanh");
    expect(configFromHf({ ...base, n_inner: 24 }).d_ff).toBe(24);
    expect(configFromHf({ ...base, n_inner: null }).d_ff).toBe(64);
    expect(configFromHf({ ...base, tie_word_embeddings: false }).tied).toBe(false);
    expect(() => configFromHf({ ...base, activation_function: "swish" })).toThrow('config.json: activation_function "swish" is not supported; supported: gelu_new, gelu_pytorch_tanh, gelu, relu');
    expect(() => configFromHf({ ...base, scale_attn_by_inverse_layer_idx: true })).toThrow("config.json: scale_attn_by_inverse_layer_idx = true (scores divided by layer index + 1) is not supported");
    expect(() => configFromHf({ ...base, scale_attn_weights: false })).toThrow("scale_attn_weights = false");
    expect(() => configFromHf({ ...base, model_type: "llama" })).toThrow('config.json: model_type "llama" is not a GPT-2 checkpoint');
    expect(() => configFromHf({ ...base, n_head: 3 })).toThrow("config.json: d_model = 16 is not a multiple of H = 3");
    expect(() => configFromHf({ ...base, n_layer: 0 })).toThrow("config.json: n_layer must be a positive integer, got 0");
    const { n_embd: _drop, ...noWidth } = base;
    expect(() => configFromHf(noWidth)).toThrow("config.json: missing n_embd");
  });

  it("says which file is missing", () => {
    const dir = fresh();
    expect(() => loadCheckpoint(dir)).toThrow(/c\d+: no such file or folder \(a checkpoint is a folder holding model\.safetensors and config\.json, or the \.safetensors file with config\.json beside it\)/);
    mkdirSync(dir);
    expect(() => loadCheckpoint(dir)).toThrow(/model\.safetensors: no such file \(a checkpoint is model\.safetensors with config\.json beside it\)/);
    copyFileSync(join(TINY, "model.safetensors"), join(fresh(), "..", "lonely.safetensors"));
    expect(() => loadCheckpoint(join(tmp, "lonely.safetensors"))).toThrow(/config\.json: no such file \(the configuration must sit beside .*lonely\.safetensors\)/);
  });
});

describe("saveCheckpoint", () => {
  it("writes a GPT-2 model that reads back identically, as model_type gpt2", () => {
    const m = GPT.init(resolveModelConfig({ preset: "tiny", dtype: "f32" }), { seed: 3 });
    const dir = fresh();
    saveCheckpoint(dir, m);
    const hf = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    expect(hf).toMatchObject({ model_type: "gpt2", architectures: ["GPT2LMHeadModel"], vocab_size: 96, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 2, n_inner: 64, activation_function: "gelu_new", torch_dtype: "float32" });
    const stored = readSafetensorsFile(join(dir, "model.safetensors"));
    expect(stored.metadata).toEqual({ format: "pt" });
    expect(stored.tensors.has("lm_head.weight")).toBe(false);
    const back = loadCheckpoint(dir).model;
    expect(back.config).toEqual(m.config);
    for (const [name, t] of Object.entries(m.weights)) expect(back.weights[name]!.data).toEqual(t.data);
  });

  it("records variants in the specformer section, with the tokenizer beside the weights", () => {
    const m = GPT.init(resolveModelConfig({ preset: "llama-tiny", V: 270, H: 4, H_kv: 2, placement: "sandwich", positions: "rope_interleaved" }), { seed: 9, init: "xavier" });
    const tok = trainBpe("the cat sat on the mat; the dog sat on the log", 270);
    const path = join(fresh(), "run.safetensors");
    expect(() => saveCheckpoint(path, GPT.init("tiny"), { tokenizer: tok })).toThrow("saveCheckpoint: the tokenizer has 270 ids but the model's vocabulary is V = 96");
    saveCheckpoint(path, m, { tokenizer: tok });
    const ck = loadCheckpoint(path);
    expect(ck.hfConfig["model_type"]).toBe("specformer");
    expect(ck.model.config).toEqual(m.config);
    expect(ck.model.forward([1, 2, 3]).data).toEqual(m.forward([1, 2, 3]).data);
    expect(ck.tokenizer?.encode("the cat")).toEqual(tok.encode("the cat"));
    const hf = configToHf(m.config) as Record<string, Record<string, unknown>>;
    expect(() => configFromHf({ ...hf, n_embd: 32 } as never)).toThrow("config.json: d_model is 16 in the specformer section but 32 in the GPT-2 fields");
    expect(() => configFromHf({ ...hf, specformer: { ...hf["specformer"], rope: true } } as never)).toThrow('config.json: specformer section: unknown field "rope"');
    expect(() => configFromHf({ ...hf, specformer: undefined } as never)).toThrow('config.json: model_type "specformer" needs the specformer section');
  });
});
