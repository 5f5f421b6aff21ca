/**
 * The options every command shares, through the one parser (in-process, as bin/specformer.mjs runs
 * it): `--formulas a,b` (and positionals where they read naturally), `--config NAME,k=v,...`, the
 * one default seed, old spellings kept as aliases, and errors prefixed with the command on stderr.
 */
import { describe, expect, it } from "vitest";
import { configFlag } from "./config.js";
import { DEFAULT_SEED, formulasFlag, seedFlag, UsageError } from "./io.js";
import { main } from "./main.js";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, {
    out: (s) => void (out += s.endsWith("\n") ? s : `${s}\n`),
    err: (s) => void (err += s.endsWith("\n") ? s : `${s}\n`),
    tty: false,
  });
  return { code, out, err };
}

const usageError = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("expected a UsageError");
};

describe("--config", () => {
  it("takes a preset, name=value pairs, or both (the pairs override the preset)", () => {
    expect(configFlag("tiny")).toEqual({
      preset: "tiny",
      presetValues: {
        V: 96,
        n_ctx: 32,
        d_model: 16,
        H: 2,
        L: 2,
        d_ff: 64,
        placement: "pre",
        activation: "gelu_tanh",
        positions: "learned",
        tied: true,
      },
      overrides: {},
    });
    expect(configFlag("d_model=8,H=2,causal=false,activation=relu")).toEqual({
      presetValues: {},
      overrides: { d_model: 8, H: 2, causal: false, activation: "relu" },
    });
    expect(configFlag("tiny,L=1")).toMatchObject({ preset: "tiny", overrides: { L: 1 } });
    expect(configFlag(undefined)).toEqual({ presetValues: {}, overrides: {} });
  });
  it("refuses an unknown preset, two presets, a pair without a value, an empty list", () => {
    expect(usageError(() => configFlag("tiy"))).toBe(
      '--config: unknown preset "tiy" (did you mean tiny?); presets: tiny, seed-post-ln, gpt2-small, llama-tiny',
    );
    expect(usageError(() => configFlag("tiny,gpt2-small"))).toBe(
      "--config: at most one preset, got tiny, gpt2-small",
    );
    expect(usageError(() => configFlag("H="))).toBe("--config: H has no value");
    expect(usageError(() => configFlag(","))).toBe(
      "--config needs a preset name or name=value pairs, e.g. --config gpt2-small or --config d_model=8,H=2",
    );
  });
});

describe("--formulas and --seed", () => {
  it("reads a,b, a positional list, or an alias — one of them", () => {
    expect(formulasFlag([{ flag: "--formulas", value: "softmax, relu" }])).toEqual([
      "softmax",
      "relu",
    ]);
    expect(formulasFlag([{ flag: "--formulas", value: undefined }], ["gelu"])).toEqual(["gelu"]);
    expect(formulasFlag([{ flag: "--formulas", value: undefined }])).toBeUndefined();
    expect(usageError(() => formulasFlag([{ flag: "--formulas", value: "a" }], ["b"]))).toBe(
      "name the formulas either with --formulas or as arguments, not both (got --formulas a and b)",
    );
  });
  it("has one default seed, and refuses a seed that is not a 32-bit non-negative integer", () => {
    expect(DEFAULT_SEED).toBe(1);
    expect(seedFlag(undefined)).toBe(DEFAULT_SEED);
    expect(seedFlag("42")).toBe(42);
    for (const bad of ["-1", "1.5", "x", "4294967296"])
      expect(usageError(() => seedFlag(bad))).toBe(
        `--seed must be an integer in 0 … 4294967295, got "${bad}"`,
      );
  });
});

describe("spec", () => {
  it("names formulas as arguments or with --formulas, alike", async () => {
    const a = await run(["spec", "softmax", "relu"]);
    const b = await run(["spec", "--formulas", "softmax,relu"]);
    expect(a.code).toBe(0);
    expect(b.out).toBe(a.out);
    expect(a.out).toContain("softmax(x; axis) → y");
    expect(a.out).toContain("relu(x) → y");
  });
  it(
    "--config takes a preset's hyperparameters the formula has, and pairs; " +
      "--dims is the pairs' other spelling",
    async () => {
      const pairs = await run(["spec", "mha", "--config", "H=4", "--format", "json"]);
      const dims = await run(["spec", "mha", "--dims", "H=4", "--format", "json"]);
      expect(pairs.code).toBe(0);
      expect(dims.out).toBe(pairs.out);
      const heads = (doc: { hyperparameters: { name: string; default: unknown }[] }) =>
        doc.hyperparameters.find((h) => h.name === "H")!.default;
      expect(heads(JSON.parse(pairs.out))).toBe(4);
      // gpt2-small has eps = 1e-5 and H = 12 (and d_model, V … that layer_norm does not take)
      const preset = JSON.parse(
        (await run(["spec", "layer_norm", "--config", "gpt2-small,eps=0.001", "--format", "json"]))
          .out,
      );
      expect(preset.hyperparameters.map((h: { name: string }) => h.name)).toEqual([
        "eps",
        "bias",
        "normalized_axes",
      ]);
      expect(preset.hyperparameters[0]).toMatchObject({
        name: "eps",
        kind: "number",
        default: 0.001,
      });
    },
  );
  it("--config on the pipeline: a preset with pairs over it", async () => {
    const r = await run(["spec", "--config", "tiny,L=1"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("Configuration `tiny + L=1`: V = 96, n_ctx = 32, d_model = 16, L = 1,");
  });
  it("errors say the command and go to stderr", async () => {
    const r = await run(["spec", "mha", "--config", "d_model=8"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/^specformer spec: formula mha has no hyperparameter "d_model"/);
    const both = await run(["spec", "softmax", "--formulas", "relu"]);
    expect(both.err).toBe(
      "specformer spec: name the formulas either with --formulas or as " +
        "arguments, not both (got --formulas relu and softmax)\n",
    );
  });
});

describe("gradcheck", () => {
  it("takes formulas as arguments or with --formulas, uses the default seed, and --config's preset", async () => {
    const a = JSON.parse(
      (await run(["gradcheck", "softmax", "relu", "--mode", "full", "--json"])).out,
    );
    const b = JSON.parse(
      (await run(["gradcheck", "--formulas", "softmax,relu", "--mode", "full", "--json"])).out,
    );
    expect(a.ok).toBe(true);
    expect(a.seed).toBe(DEFAULT_SEED);
    expect(b).toEqual(a);
    expect(a.results.map((r: { formula: string }) => r.formula)).toEqual(["softmax", "relu"]);
    const preset = await run([
      "gradcheck",
      "layer_norm",
      "--config",
      "llama-tiny",
      "--mode",
      "full",
      "--json",
    ]);
    expect(preset.code).toBe(0);
  });
  it("refuses 'all' mixed with names, and unknown hyperparameters, naming the command", async () => {
    expect((await run(["gradcheck", "all", "softmax"])).err).toBe(
      `specformer gradcheck: "all" stands alone: give it, or formula names, not both\n`,
    );
    const r = await run(["gradcheck", "softmax", "--config", "heads=2"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^specformer gradcheck: .*heads/);
  });
});

describe("verify", () => {
  it("takes --impl=COMMAND as well as --impl COMMAND", async () => {
    for (const args of [
      ["--impl=/nonexistent/specformer-impl"],
      ["--impl", "/nonexistent/specformer-impl"],
    ]) {
      const r = await run(["verify", ...args, "--formulas", "softmax", "--timeout", "5"]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/^specformer verify: the implementation could not be started/);
    }
  });
  it("refuses an empty --formulas list and a bad seed, naming the command", async () => {
    expect((await run(["verify", "--formulas", ","])).err).toBe(
      "specformer verify: --formulas needs at least one formula name, e.g. --formulas softmax,layer_norm\n",
    );
    expect((await run(["verify", "--seed=-3"])).err).toBe(
      'specformer verify: --seed must be an integer in 0 … 4294967295, got "-3"\n',
    );
  });
});
