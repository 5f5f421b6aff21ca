import { describe, expect, it, vi } from "vitest";
import "./index.js";
import { getFormula, MAX_DIM_SIZE, resolveConfig } from "./formula.js";
import { findPreset, getPreset, unknownPresetMessage } from "./presets.js";

describe("resolveConfig bounds sizes before any graph is built", () => {
  const gpt = getFormula("gpt");
  const base = getPreset("tiny");

  it.each([
    [{ L: 3200 }, "formula gpt: hyperparameter L (blocks) is 3200, above the limit of 256"],
    [{ L: 100_000 }, "formula gpt: hyperparameter L (blocks) is 100000, above the limit of 256"],
    [
      { d_model: 1e9 },
      `formula gpt: hyperparameter d_model (width) is 1000000000, above the limit of ${MAX_DIM_SIZE} for any dim`,
    ],
    [
      { V: 2 ** 20 + 1 },
      `formula gpt: hyperparameter V (vocabulary size) is 1048577, above the limit of ${MAX_DIM_SIZE} for any dim`,
    ],
    [
      { n_ctx: 1e7 },
      `formula gpt: hyperparameter n_ctx (maximum context (rows of wpe)) is ` +
        `10000000, above the limit of ${MAX_DIM_SIZE} for any dim`,
    ],
  ])("%j", (over, message) => {
    // the refusal comes from the declarations: the formula's graph builder is never entered
    const build = vi.spyOn(gpt, "build");
    expect(() => resolveConfig(gpt, { ...base, ...over })).toThrow(message);
    expect(build).not.toHaveBeenCalled();
    build.mockRestore();
  });

  it("accepts the limits themselves", () => {
    expect(resolveConfig(gpt, { ...base, L: 256, V: MAX_DIM_SIZE })["L"]).toBe(256);
  });
});

describe("preset lookup takes own keys only", () => {
  it.each(["__proto__", "constructor", "toString", "hasOwnProperty"])("%s is no preset", (name) => {
    expect(findPreset(name)).toBeUndefined();
    expect(() => getPreset(name)).toThrow(
      `unknown preset "${name}"; presets: tiny, seed-post-ln, gpt2-small, llama-tiny`,
    );
  });

  it("suggests close names", () => {
    expect(unknownPresetMessage("tiy")).toBe(
      'unknown preset "tiy" (did you mean tiny?); presets: tiny, seed-post-ln, gpt2-small, llama-tiny',
    );
    expect(findPreset("tiny")).toBe(getPreset("tiny"));
  });
});
