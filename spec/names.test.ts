/**
 * docs/NAMES.md is a public contract (golden files, the process protocol and users' adapters use
 * these names): it must agree with the registry.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import "./index.js";
import { exampleConfig, formulaNames, getFormula } from "./formula.js";
import { blockParams, gptParams } from "./formulas/model.js";

const doc = readFileSync(join(__dirname, "..", "docs", "NAMES.md"), "utf8");
const section = (title: string) =>
  doc.slice(doc.indexOf(title), doc.indexOf("\n## ", doc.indexOf(title) + 1));
const ticks = (s: string) => [...s.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

describe("docs/NAMES.md agrees with the registry", () => {
  const rows = section("## Core formulas")
    .split("\n")
    .filter((l) => l.startsWith("| `"))
    .map((l) => l.split("|").map((c) => c.trim()));
  test("the core table lists formulas that exist", () => {
    expect(rows.length).toBeGreaterThan(15);
    for (const r of rows) expect(formulaNames()).toContain(ticks(r[1]!)[0]);
  });
  for (const r of rows) {
    const name = ticks(r[1]!)[0]!;
    test(`${name}: arguments and outputs`, () => {
      const def = getFormula(name);
      const cfg = exampleConfig(name);
      const docArgs = ticks(r[2]!)
        .map((a) => a.split(" ")[0]!)
        .filter((a) => !a.startsWith("["));
      const regArgs = def.args(cfg).map((a) => a.name);
      expect(regArgs).toEqual(docArgs);
      const docOuts = ticks(r[3]!).map((o) => o.split(" ")[0]!);
      expect(def.outputs(cfg).map((o) => o.name)).toEqual(docOuts);
    });
  }
  test("every hyperparameter the registry declares is named on the page", () => {
    const named = new Set(ticks(doc));
    const missing = formulaNames().flatMap((f) =>
      getFormula(f)
        .hyper.filter((h) => !named.has(h.name))
        .map((h) => `${f}.${h.name}`),
    );
    expect(missing).toEqual([]);
  });
  test("the attention conventions table names the PyTorch, Hugging Face and ONNX spellings", () => {
    const table = section("## Attention conventions");
    for (const name of [
      "causal_align",
      "top_left",
      "bottom_right",
      "window",
      "mask",
      "scale",
      "softcap",
      "H_kv",
    ])
      expect(ticks(table)).toContain(name);
    for (const name of [
      "is_causal=True",
      "attn_mask",
      "sliding_window",
      "attn_logit_softcapping",
      "num_key_value_heads",
      "key_padding_mask",
    ])
      expect(table).toContain(name);
  });
  test("block parameter names are the documented ones, and every documented one is used", () => {
    const documented = new Set(
      ticks(section("## Blocks").split("Block hyperparameters")[0]!).filter((t) =>
        /\.(weight|bias)$/.test(t),
      ),
    );
    const seen = new Set<string>();
    for (const norm of ["layer_norm", "rms_norm"])
      for (const placement of ["post", "pre", "sandwich"])
        for (const activation of ["gelu", "swiglu"])
          for (const bias of [true, false])
            for (const parallel of [false, true]) {
              if (parallel && placement !== "pre") continue;
              for (const p of blockParams({ norm, placement, activation, bias, parallel, H: 2 })) {
                expect(documented.has(p.name), p.name).toBe(true);
                seen.add(p.name);
              }
            }
    for (const d of documented) expect(seen.has(d), d).toBe(true);
  });
  test("gpt uses the Hugging Face GPT-2 names", () => {
    const names = gptParams({
      L: 2,
      positions: "learned",
      placement: "pre",
      norm: "layer_norm",
      activation: "gelu_tanh",
      tied: true,
      H: 2,
    }).map((p) => p.name);
    expect(names.slice(0, 3)).toEqual(["wte.weight", "wpe.weight", "h.0.ln_1.weight"]);
    expect(names).toContain("h.1.attn.c_attn.weight");
    expect(names).toContain("h.1.mlp.c_proj.bias");
    expect(names.slice(-2)).toEqual(["ln_f.weight", "ln_f.bias"]);
    expect(
      gptParams({
        L: 1,
        tied: false,
        positions: "rope",
        placement: "pre",
        norm: "rms_norm",
        activation: "swiglu",
        H: 2,
      }).map((p) => p.name),
    ).toContain("lm_head.weight");
  });
});
