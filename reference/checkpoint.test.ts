import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import { loadCase } from "../golden/cases-io.js";
import { compareCase, formatReport } from "../golden/compare.js";
import { readSafetensorsFile, writeSafetensorsFile } from "../io/safetensors.js";
import { Tokenizer, trainBpe } from "./tokenizer/index.js";
import {
  CheckpointError,
  checkpointPaths,
  configFromHf,
  configToHf,
  loadCheckpoint,
  saveCheckpoint,
  TOKENIZER_FILE,
} from "./checkpoint.js";
import { GPT, resolveModelConfig } from "./model.js";

const golden = join(import.meta.dirname, "..", "golden");
const TINY = join(golden, "checkpoints", "tiny-gpt2");
const tmp = mkdtempSync(join(tmpdir(), "specformer-ckpt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let k = 0;
const fresh = () => join(tmp, `c${k++}`);

/** A copy of the tiny checkpoint with its tensors (and config) rewritten. */
function variant(
  edit: (t: Map<string, Tensor>) => void,
  editConfig?: (c: Record<string, unknown>) => void,
): string {
  const dir = fresh();
  const tensors = new Map(readSafetensorsFile(join(TINY, "model.safetensors")).tensors);
  edit(tensors);
  writeSafetensorsFile(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const cfg = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  editConfig?.(cfg);
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  return dir;
}

describe("loading the Hugging Face GPT-2 layout", () => {
  it("maps the tiny checkpoint's config.json and matches its PyTorch golden case (logits, loss, gradients)", () => {
    const ck = loadCheckpoint(TINY);
    expect(ck.model.config).toEqual({
      V: 80,
      n_ctx: 32,
      d_model: 16,
      H: 4,
      H_kv: 4,
      L: 2,
      d_ff: 64,
      eps: 1e-5,
      dtype: "f32",
      norm: "layer_norm",
      placement: "pre",
      activation: "gelu_tanh",
      positions: "learned",
      rope_base: 10000,
      tied: true,
      parallel: false,
      bias: true,
      window: 0,
      softcap: 0,
      final_softcap: 0,
    });
    const g = loadCase(join(golden, "cases", "gpt", "f32", "checkpoint-tiny-gpt2.safetensors"));
    const report = compareCase(
      g,
      ck.model.vjp(g.inputs["tokens"]!, g.inputs["targets"]!, g.cotangents),
    );
    if (!report.ok) throw new Error(formatReport(report));
    expect(report.passed).toBe(2 + 28);
    // and through forward(): the same logits
    expect(
      compareCase(
        { ...g, grads: {} },
        { outputs: { logits: ck.model.forward(g.inputs["tokens"]!) } },
        { allowExtra: false },
      ).tensors.find((t) => t.name === "out.logits")?.ok,
    ).toBe(true);
  });

  it("takes a .safetensors path with config.json beside it, and f64 on request", () => {
    const ck = loadCheckpoint(join(TINY, "model.safetensors"), { dtype: "f64" });
    expect(ck.model.config.dtype).toBe("f64");
    expect(ck.model.weights["wte.weight"]!.dtype).toBe("f64");
    expect(checkpointPaths(TINY)).toEqual({
      weights: join(TINY, "model.safetensors"),
      config: join(TINY, "config.json"),
      tokenizer: join(TINY, TOKENIZER_FILE),
    });
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
    expect(() => loadCheckpoint(variant((t) => t.delete("h.1.mlp.c_fc.bias")))).toThrow(
      /model\.safetensors: missing tensor h\.1\.mlp\.c_fc\.bias$/,
    );
    expect(() =>
      loadCheckpoint(variant((t) => t.set("h.0.attn.rotary.inv_freq", Tensor.zeros([2], "f32")))),
    ).toThrow(
      new RegExp(
        String.raw`model\.safetensors: unexpected tensor h\.0\.attn\.rotary\.in` +
          String.raw`v_freq \(not a parameter of the configuration in config\.jso` +
          String.raw`n\)$`,
      ),
    );
    expect(() =>
      loadCheckpoint(variant((t) => t.set("ln_f.weight", Tensor.zeros([17], "f32")))),
    ).toThrow(
      /model\.safetensors: tensor ln_f\.weight has shape \[17\] but the configuration needs \[16\]$/,
    );
    expect(() =>
      loadCheckpoint(variant((t) => t.set("lm_head.weight", Tensor.zeros([80, 16], "f32")))),
    ).toThrow(/lm_head\.weight differs from wte\.weight, but the configuration ties them/);
    expect(() =>
      loadCheckpoint(variant((t) => t.set("transformer.wte.weight", t.get("wte.weight")!))),
    ).toThrow(/tensor wte\.weight appears twice/);
  });

  it("drops the causal-mask buffers (h.{l}.attn.bias, attn.masked_bias) but no other tensor", () => {
    const dir = variant((t) => t.set("h.1.attn.masked_bias", Tensor.scalar(-1e4, "f32")));
    expect(readSafetensorsFile(join(dir, "model.safetensors")).tensors.has("h.0.attn.bias")).toBe(
      true,
    );
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
      const span = mask(name)
        ? new Uint8Array(t.size).fill(1)
        : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      entries.push(
        `${JSON.stringify(`transformer.${name}`)}` +
          `:` +
          JSON.stringify({
            dtype: mask(name) ? "BOOL" : "F32",
            shape: t.shape,
            data_offsets: [offset, offset + span.length],
          }),
      );
      spans.push(span);
      offset += span.length;
    }
    const head = new TextEncoder().encode(
      `{${entries.join(",")}}`.padEnd(Math.ceil((entries.join(",").length + 2) / 8) * 8, " "),
    );
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
    expect(() => readSafetensorsFile(join(dir, "model.safetensors"))).toThrow(
      /unsupported dtype BOOL/,
    );
    const ids = [1, 2, 3];
    expect(loadCheckpoint(dir).model.forward(ids).data).toEqual(
      loadCheckpoint(TINY).model.forward(ids).data,
    );
  });

  it("maps activation_function and n_inner, and refuses what the gpt formula cannot compute", () => {
    const base = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")) as Record<
      string,
      never
    >;
    expect(configFromHf({ ...base, activation_function: "gelu" }).activation).toBe("gelu");
    expect(configFromHf({ ...base, activation_function: "relu" }).activation).toBe("relu");
    expect(configFromHf({ ...base, activation_function: "gelu_new" }).activation).toBe("gelu_tanh");
    expect(configFromHf({ ...base, n_inner: 24 }).d_ff).toBe(24);
    expect(configFromHf({ ...base, n_inner: null }).d_ff).toBe(64);
    expect(configFromHf({ ...base, tie_word_embeddings: false }).tied).toBe(false);
    expect(() => configFromHf({ ...base, activation_function: "swish" })).toThrow(
      'config.json: activation_function "swish" is not supported; supported: gelu_new, gelu_pytorch_tanh, gelu, relu',
    );
    expect(() => configFromHf({ ...base, scale_attn_by_inverse_layer_idx: true })).toThrow(
      "config.json: scale_attn_by_inverse_layer_idx = true (scores divided by layer index + 1) is not supported",
    );
    expect(() => configFromHf({ ...base, scale_attn_weights: false })).toThrow(
      "scale_attn_weights = false",
    );
    expect(() => configFromHf({ ...base, model_type: "llama" })).toThrow(
      'config.json: model_type "llama" is not a GPT-2 checkpoint',
    );
    expect(() => configFromHf({ ...base, n_head: 3 })).toThrow(
      "config.json: d_model = 16 is not a multiple of H = 3",
    );
    expect(() => configFromHf({ ...base, n_layer: 0 })).toThrow(
      "config.json: n_layer must be a positive integer, got 0",
    );
    const { n_embd: _drop, ...noWidth } = base;
    expect(() => configFromHf(noWidth)).toThrow("config.json: missing n_embd");
  });

  it("says which file is missing", () => {
    const dir = fresh();
    expect(() => loadCheckpoint(dir)).toThrow(
      new RegExp(
        String.raw`c\d+: no such file or folder \(a checkpoint is a folder hold` +
          String.raw`ing model\.safetensors and config\.json, or the \.safetensor` +
          String.raw`s file with config\.json beside it\)`,
      ),
    );
    mkdirSync(dir);
    expect(() => loadCheckpoint(dir)).toThrow(
      /model\.safetensors: no such file \(a checkpoint is model\.safetensors with config\.json beside it\)/,
    );
    copyFileSync(join(TINY, "model.safetensors"), join(fresh(), "..", "lonely.safetensors"));
    expect(() => loadCheckpoint(join(tmp, "lonely.safetensors"))).toThrow(
      /config\.json: no such file \(the configuration must sit beside .*lonely\.safetensors\)/,
    );
  });
});

describe("a checkpoint is untrusted data: every failure is a CheckpointError naming the file", () => {
  const fails = (dir: string): string => {
    try {
      loadCheckpoint(dir);
    } catch (e) {
      expect(e).toBeInstanceOf(CheckpointError);
      return (e as Error).message;
    }
    throw new Error(`${dir} loaded`);
  };
  const tinyWith = (files: Record<string, string | null>): string => {
    const dir = fresh();
    mkdirSync(dir);
    for (const f of ["model.safetensors", "config.json"])
      if (!(f in files)) copyFileSync(join(TINY, f), join(dir, f));
    for (const [f, text] of Object.entries(files)) {
      if (text === null) mkdirSync(join(dir, f));
      else writeFileSync(join(dir, f), text);
    }
    return dir;
  };

  it("config.json or model.safetensors that is a folder", () => {
    const a = tinyWith({ "config.json": null });
    expect(fails(a)).toBe(`${join(a, "config.json")}: cannot read: is a directory, not a file`);
    const b = tinyWith({ "model.safetensors": null });
    expect(fails(b)).toBe(
      `${join(b, "model.safetensors")}: cannot read: is a directory, not a file`,
    );
  });

  it("model.safetensors that is a FIFO is refused without blocking", () => {
    const dir = fresh();
    mkdirSync(dir);
    copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
    execFileSync("mkfifo", [join(dir, "model.safetensors")]);
    expect(fails(dir)).toBe(
      `${join(dir, "model.safetensors")}: cannot read: is a FIFO (named ` +
        `pipe), not a regular file (only regular files are read)`,
    );
  });

  it("config.json that is not JSON, not an object, or too large", () => {
    const a = tinyWith({ "config.json": '{"n_embd": 16,' });
    expect(fails(a)).toBe(
      `${join(a, "config.json")}: config is not valid JSON: expected a string key, found end of input at character 14`,
    );
    const b = tinyWith({ "config.json": "[1, 2]" });
    expect(fails(b)).toBe(`${join(b, "config.json")}: expected a JSON object`);
    const c = tinyWith({ "config.json": " ".repeat(2 << 20) });
    expect(fails(c)).toBe(
      `${join(c, "config.json")}: cannot read: 2.0 MiB is larger than the 1.0 MiB a config.json may be`,
    );
  });

  it("a truncated or malformed model.safetensors", () => {
    const bytes = readFileSync(join(TINY, "model.safetensors"));
    const a = tinyWith({});
    writeFileSync(join(a, "model.safetensors"), bytes.subarray(0, bytes.length - 5));
    expect(fails(a)).toMatch(
      new RegExp(
        `^${join(a, "model.safetensors")}: bytes \\[\\d+, \\d+\\) at the end of ` +
          `the data buffer belong to no tensor$|run past the end`,
      ),
    );
    const b = tinyWith({ "model.safetensors": "garbage" });
    expect(fails(b)).toBe(
      `${join(b, "model.safetensors")}: file is 7 bytes long, shorter than the 8-byte header length prefix`,
    );
  });

  it("wrong dtypes: integer or unconvertible parameters", () => {
    const ints = variant((t) =>
      t.set(
        "ln_f.bias",
        Tensor.from(
          Array.from({ length: 16 }, () => 0),
          "i32",
        ),
      ),
    );
    expect(fails(ints)).toBe(
      `${join(ints, "model.safetensors")}: tensor ln_f.bias holds integers; parameters are float tensors`,
    );
    // a U8 parameter: hand-patch the dtype of ln_f.bias (16 f32 = 64 bytes) to U8 with 64 elements
    const dir = variant(() => undefined);
    const file = join(dir, "model.safetensors");
    const raw = readFileSync(file);
    const n = Number(raw.readBigUInt64LE(0));
    const header = raw.subarray(8, 8 + n).toString("utf8");
    const patched = header.replace(
      /"ln_f\.bias":\{"dtype":"F32","shape":\[16\]/,
      '"ln_f.bias":{"dtype":"U8","shape":[64]',
    );
    expect(patched).not.toBe(header);
    writeFileSync(
      file,
      Buffer.concat([raw.subarray(0, 8), Buffer.from(patched + " ", "utf8"), raw.subarray(8 + n)]),
    ); // "U8" is one byte shorter
    expect(fails(dir)).toBe(
      `${file}: tensor "ln_f.bias": unsupported dtype U8 (this reader converts F64, F32, I32, I64, F16, BF16)`,
    );
  });

  it("NaN or ±Inf in a parameter: an error naming the tensor and the first bad index, unless allowed", () => {
    const nan = variant((t) => {
      const w = t.get("h.1.mlp.c_fc.weight")!;
      const c = new Tensor(w.dtype, w.shape, Float32Array.from(w.data));
      c.data[2 * w.shape[1]! + 5] = Number.NaN;
      c.data[3 * w.shape[1]!] = Number.NaN;
      t.set("h.1.mlp.c_fc.weight", c);
    });
    expect(fails(nan)).toBe(
      `${join(nan, "model.safetensors")}: tensor h.1.mlp.c_fc.weight holds ` +
        `NaN at index [2, 5] (the first non-finite value); parameters must be ` +
        `finite — allow them explicitly (allowNonFinite, --allow-non-finite) to ` +
        `load it anyway`,
    );
    const m = loadCheckpoint(nan, { allowNonFinite: true }).model;
    expect(Number.isNaN(m.weights["h.1.mlp.c_fc.weight"]!.data[2 * 64 + 5]!)).toBe(true);
    const inf = variant((t) => {
      const w = t.get("wte.weight")!;
      const c = new Tensor(w.dtype, w.shape, Float32Array.from(w.data));
      c.data[17] = -Infinity;
      t.set("wte.weight", c);
    });
    expect(fails(inf)).toMatch(
      /model\.safetensors: tensor wte\.weight holds -Infinity at index \[1, 1\] \(the first non-finite value\)/,
    );
    // finite in the file, infinite once read as f32
    const big = variant((t) => {
      for (const [k, w] of [...t]) t.set(k, w.to("f64"));
      t.get("ln_f.weight")!.data[3] = 1e300;
    });
    expect(() => loadCheckpoint(big, { dtype: "f32" })).toThrow(
      /tensor ln_f\.weight holds 1e\+300, which overflows f32 to Infinity at index \[3\]/,
    );
    expect(loadCheckpoint(big).model.weights["ln_f.weight"]!.data[3]).toBe(1e300);
  });

  it("a tokenizer whose pattern is not a known one is refused before it is compiled", () => {
    const tok = Tokenizer.fromJSON({
      format: "specformer-bpe",
      version: 1,
      pattern: "\\S+|\\s+",
      merges: [],
      specialTokens: {},
    });
    const json = { ...tok.toJSON(), pattern: "(?:a+)+b|[\\s\\S]" };
    const dir = tinyWith({ [TOKENIZER_FILE]: JSON.stringify(json) });
    const start = performance.now();
    expect(fails(dir)).toBe(
      `${join(dir, TOKENIZER_FILE)}: Tokenizer.fromJSON: the pattern ` +
        `"(?:a+)+b|[\\\\s\\\\S]" is not one of the known pre-tokenization ` +
        `patterns (gpt2, whitespace, lines); a tokenizer file may not bring its ` +
        `own regular expression`,
    );
    expect(performance.now() - start).toBeLessThan(2000);
    const folder = tinyWith({ [TOKENIZER_FILE]: null });
    expect(fails(folder)).toBe(
      `${join(folder, TOKENIZER_FILE)}: cannot read: is a directory, not a file`,
    );
  });
});

describe("saveCheckpoint", () => {
  it("refuses a tokenizer whose pattern loadCheckpoint would refuse", () => {
    const tok = trainBpe("ab ab\nab ab\n", 257, { pattern: "[^\\n]+\\n?" });
    expect(() =>
      saveCheckpoint(fresh(), GPT.init(resolveModelConfig({ preset: "tiny", V: 300 })), {
        tokenizer: tok,
      }),
    ).toThrow(
      'saveCheckpoint: the pattern "[^\\\\n]+\\\\n?" is not one of the known ' +
        "pre-tokenization patterns (gpt2, whitespace, lines)",
    );
  });

  it("writes a GPT-2 model that reads back identically, as model_type gpt2", () => {
    const m = GPT.init(resolveModelConfig({ preset: "tiny", dtype: "f32" }), { seed: 3 });
    const dir = fresh();
    saveCheckpoint(dir, m);
    const hf = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(hf).toMatchObject({
      model_type: "gpt2",
      architectures: ["GPT2LMHeadModel"],
      vocab_size: 96,
      n_positions: 32,
      n_embd: 16,
      n_layer: 2,
      n_head: 2,
      n_inner: 64,
      activation_function: "gelu_new",
      torch_dtype: "float32",
    });
    const stored = readSafetensorsFile(join(dir, "model.safetensors"));
    expect(stored.metadata).toEqual({ format: "pt" });
    expect(stored.tensors.has("lm_head.weight")).toBe(false);
    const back = loadCheckpoint(dir).model;
    expect(back.config).toEqual(m.config);
    for (const [name, t] of Object.entries(m.weights))
      expect(back.weights[name]!.data).toEqual(t.data);
  });

  it("records variants in the specformer section, with the tokenizer beside the weights", () => {
    const m = GPT.init(
      resolveModelConfig({
        preset: "llama-tiny",
        V: 270,
        H: 4,
        H_kv: 2,
        placement: "sandwich",
        positions: "rope_interleaved",
      }),
      { seed: 9, init: "xavier" },
    );
    const tok = trainBpe("the cat sat on the mat; the dog sat on the log", 270);
    const path = join(fresh(), "run.safetensors");
    expect(() => saveCheckpoint(path, GPT.init("tiny"), { tokenizer: tok })).toThrow(
      "saveCheckpoint: the tokenizer has 270 ids but the model's vocabulary is V = 96",
    );
    saveCheckpoint(path, m, { tokenizer: tok });
    const ck = loadCheckpoint(path);
    expect(ck.hfConfig["model_type"]).toBe("specformer");
    expect(ck.model.config).toEqual(m.config);
    expect(ck.model.forward([1, 2, 3]).data).toEqual(m.forward([1, 2, 3]).data);
    expect(ck.tokenizer?.encode("the cat")).toEqual(tok.encode("the cat"));
    const hf = configToHf(m.config) as Record<string, Record<string, unknown>>;
    expect(() => configFromHf({ ...hf, n_embd: 32 } as never)).toThrow(
      "config.json: d_model is 16 in the specformer section but 32 in the GPT-2 fields",
    );
    expect(() =>
      configFromHf({ ...hf, specformer: { ...hf["specformer"], rope: true } } as never),
    ).toThrow('config.json: specformer section: unknown field "rope"');
    expect(() => configFromHf({ ...hf, specformer: undefined } as never)).toThrow(
      'config.json: model_type "specformer" needs the specformer section',
    );
  });
});
