/**
 * The command as users run it, checking output and exit codes (0 ok, 1 a check failed, 2 bad
 * input): a child process of bin/specformer.mjs where the process matters (the bin itself,
 * generate's streaming to stdout), else main() in-process with the same arguments — each child
 * compiles the sources through tsx, about a second apiece.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { formulaNames } from "../spec/formula.js";
import "../spec/index.js";
import { main } from "./main.js";
import { readSafetensorsFile, writeSafetensorsFile } from "../io/safetensors.js";

const BIN = join(__dirname, "..", "bin", "specformer.mjs");

function runBin(args: string[]): { code: number; out: string; err: string } {
  try {
    const out = execFileSync(process.execPath, [BIN, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return { code: 0, out, err: "" };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, out: x.stdout, err: x.stderr };
  }
}

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, {
    out: (t) => void (out += t.endsWith("\n") ? t : `${t}\n`),
    err: (t) => void (err += t.endsWith("\n") ? t : `${t}\n`),
    tty: false,
  });
  return { code, out, err };
}

describe("specformer spec", () => {
  test("attention as LaTeX contains \\sqrt{d_k} and softmax", () => {
    const r = runBin(["spec", "attention", "--format", "latex"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("\\sqrt{d_k}");
    expect(r.out).toContain("softmax");
  });
  test("--format json parses and lists every formula with its arguments", async () => {
    const r = await run(["spec", "--format", "json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      formulas: {
        name: string;
        inputs: unknown[];
        parameters: unknown[];
        outputs: unknown[];
        hyperparameters: unknown[];
      }[];
    };
    const names = j.formulas.map((f) => f.name);
    for (const f of formulaNames()) expect(names).toContain(f);
    for (const f of [
      "softmax",
      "log_softmax",
      "causal_mask",
      "attention",
      "mha",
      "layer_norm",
      "rms_norm",
      "gelu",
      "gelu_tanh",
      "relu",
      "silu",
      "linear",
      "ffn",
      "embedding",
      "positional_sinusoidal",
      "positional_learned",
      "block_post_ln",
      "block_pre_ln",
      "logits",
      "cross_entropy",
      "gpt",
    ])
      expect(names).toContain(f);
  }, 60_000);
  test("--config gpt2-small reports 124,439,808 parameters", async () => {
    const r = await run(["spec", "--config", "gpt2-small"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("124,439,808 parameters");
  }, 60_000);
  test("one formula as JSON names its inputs, parameters, outputs and hyperparameters", async () => {
    const j = JSON.parse((await run(["spec", "layer_norm", "--format", "json"])).out);
    expect(j.inputs.map((a: { name: string }) => a.name)).toEqual(["x"]);
    expect(j.parameters.map((a: { name: string }) => a.name)).toEqual(["gamma", "beta"]);
    expect(j.outputs.map((a: { name: string }) => a.name)).toEqual(["y"]);
    const hp = j.hyperparameters as { name: string; kind: string; default: unknown; doc: string }[];
    expect(hp.map((h) => [h.name, h.kind, h.default])).toEqual([
      ["eps", "number", 1e-5],
      ["bias", "boolean", true],
      ["normalized_axes", "integer", 1],
    ]);
    expect(hp[0]!.doc).toMatch(/^ε added to the variance/);
  });
  test("--grad renders the backward pass: softmax's is y ⊙ (ȳ − Σ ȳ⊙y)", async () => {
    const r = await run(["spec", "softmax", "--grad", "--format", "latex"]);
    expect(r.out).toContain(
      "\\bar{x} = y \\odot \\left(\\bar{y} - \\sum_{j} \\bar{y} \\odot y\\right)",
    );
  });
  test("an unknown formula or bad dims exit 2 with a clear message", async () => {
    const a = await run(["spec", "atention"]);
    expect(a.code).toBe(2);
    expect(a.err).toContain('unknown formula "atention" (did you mean attention?)');
    const b = await run(["spec", "mha", "--dims", "H"]);
    expect(b.code).toBe(2);
    expect(b.err).toContain('"H" is not of the form name=value');
    const c = await run(["spec", "mha", "--dims", "heads=4"]);
    expect(c.code).toBe(2);
    expect(c.err).toContain('formula mha has no hyperparameter "heads"');
    expect((await run(["spec", "--format", "pdf"])).code).toBe(2);
  });
});

describe("other commands", () => {
  test("tokenize gives GPT-2's ids for the seed's example", async () => {
    const r = await run(["tokenize", "Hello, world!", "--json"]);
    expect(JSON.parse(r.out).ids).toEqual([15496, 11, 995, 0]);
  });
  test("gradcheck all --json reports ok for every formula", async () => {
    const r = await run(["gradcheck", "all", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { ok: boolean; results: { formula: string; ok: boolean }[] };
    expect(j.ok).toBe(true);
    const checked = new Set(j.results.map((x) => x.formula));
    for (const f of formulaNames()) expect(checked.has(f)).toBe(true);
    expect(j.results.every((x) => x.ok)).toBe(true);
  }, 120_000);
  test("compare names the changed element and exits 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-cli-"));
    const src = join(__dirname, "..", "golden", "cases", "layer_norm", "f64", "n7_d12.safetensors");
    const a = join(dir, "a.safetensors");
    const b = join(dir, "b.safetensors");
    copyFileSync(src, a);
    const st = readSafetensorsFile(a);
    const y = st.tensors.get("out.y")!.clone();
    y.data[17] = y.data[17]! + 1e-4; // [1, 5] in a 7×12 tensor
    const tensors: Record<string, typeof y> = {};
    for (const [k, v] of st.tensors) tensors[k] = v;
    tensors["out.y"] = y;
    writeSafetensorsFile(b, tensors, st.metadata);
    const r = await run(["compare", a, b]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("[1, 5]");
    expect((await run(["compare", a, a])).code).toBe(0);
    expect((await run(["compare", a, join(dir, "missing.safetensors")])).code).toBe(2);
  });
  test("golden list shows the bundled cases", async () => {
    const r = await run(["golden", "list"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("layer_norm/f64/n7_d12");
  });
  test("generate is deterministic for a seed and streams text", async () => {
    const args = [
      "generate",
      "--preset",
      "tiny",
      "--seed",
      "7",
      "--prompt",
      "Hello",
      "--max-tokens",
      "8",
      "--json",
    ];
    const a = runBin(args);
    const b = runBin(args);
    expect(a.code).toBe(0);
    expect(a.out).toBe(b.out);
    expect(JSON.parse(a.out).ids).toHaveLength(8);
    expect((await run(["generate", "--prompt", "Hello", "--preset", "nope"])).code).toBe(2);
  }, 60_000);
  test("generate: --config NAME is --preset NAME, --config NAME,k=v overrides the preset", async () => {
    const old = await run([
      "generate",
      "--preset",
      "tiny",
      "--seed",
      "7",
      "--prompt",
      "Hello",
      "--max-tokens",
      "4",
      "--json",
    ]);
    const now = await run([
      "generate",
      "--config",
      "tiny",
      "--seed",
      "7",
      "--prompt",
      "Hello",
      "--max-tokens",
      "4",
      "--json",
    ]);
    expect(now.code).toBe(0);
    expect(now.out).toBe(old.out);
    const one = JSON.parse(
      (
        await run([
          "generate",
          "--config",
          "tiny,L=1",
          "--prompt",
          "Hello",
          "--max-tokens",
          "2",
          "--json",
        ])
      ).out,
    );
    expect(one.config.L).toBe(1);
    const bad = await run([
      "generate",
      "--config",
      "tiny,L=1",
      "--weights",
      "x.safetensors",
      "--prompt",
      "Hello",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe(
      "specformer generate: give --config or --weights, not both: a checkpoint brings its own configuration\n",
    );
  }, 60_000);
  test("an unknown command exits 2", () => {
    expect(runBin(["frobnicate"]).code).toBe(2);
  });
});
