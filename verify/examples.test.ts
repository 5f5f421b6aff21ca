/**
 * Localisation on a real, independent implementation: examples/numpy (hand-written NumPy, its
 * own backward passes) and its planted-bug twin. Skipped, saying why, without NumPy.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Implementation } from "../autodiff/implementation.js";
import { golden, localiseChecked } from "./cases.testing.js";
import { ProcessImplementation } from "./process.js";
import { pythonCanImport } from "../io/python.testing.js";

const ROOT = join(__dirname, "..");
const hasNumpy = pythonCanImport("numpy");
if (!hasNumpy)
  console.warn("verify/examples.test.ts: skipped — /usr/bin/python3 cannot import numpy");

describe.skipIf(!hasNumpy)("examples/numpy", () => {
  let good: ProcessImplementation;
  let buggy: ProcessImplementation;
  beforeAll(async () => {
    const opts = { timeoutMs: 60_000, cwd: ROOT };
    [good, buggy] = await Promise.all([
      ProcessImplementation.start("/usr/bin/python3 examples/numpy/impl.py", opts),
      ProcessImplementation.start("/usr/bin/python3 examples/numpy/impl_buggy.py", opts),
    ]);
  });
  afterAll(async () => {
    await Promise.all([good?.close(), buggy?.close()]);
  });

  test(
    "a correct implementation localises nothing: every intermediate value " +
      "and part matches (float64 and float32)",
    async () => {
      const names = [
        "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8",
        "gpt/f32/gqa_V64_d16_h4_kv2_L2_n8",
        "gpt/f64/sandwich_V50_d16_h2_L2_n8",
        "gpt/f32/parallel_V50_d16_h4_L2_n8",
        "block/f32/sandwich_rms_swiglu_n5_d8_h2",
        "mha/f32/b2_n5_d8_h2_causal",
      ];
      for (const name of names) {
        const { ok, loc } = await localiseChecked(good, golden(name));
        expect(ok, name).toBe(true);
        const wrong = loc.steps
          .filter((s) => s.status === "diverges")
          .map((s) => `${name}: ${s.tensor} (budget ${s.report?.budgetUsed})`);
        expect(wrong).toEqual([]);
        expect(loc.steps.filter((s) => s.status === "match").length).toBeGreaterThanOrEqual(4);
        expect(loc.divergence).toBeNull();
      }
    },
    60_000,
  );

  test("the planted off-by-one mask, found from the gpt case down to causal_mask", async () => {
    const { ok, loc } = await localiseChecked(
      buggy,
      golden("gpt/f32/seed_post_ln_V50_d16_h2_L2_n8"),
    );
    expect(ok).toBe(false);
    expect(loc.divergence?.formula).toBe("causal_mask");
    expect(loc.divergence?.path).toEqual(["gpt", "h.0", "mha", "attention", "causal_mask"]);
    expect(loc.divergence?.hints.map((h) => h.id)).toContain("mask-off-by-one");
  }, 60_000);

  test(
    "declaring only gpt, the intermediate values localise it: h.0.attn is " +
      "local, what follows inherited",
    async () => {
      const gptOnly: Implementation = {
        name: buggy.name,
        formulas: ["gpt"],
        backward: false,
        dtypes: buggy.dtypes,
        forward: (req) => buggy.forward(req),
      };
      const { ok, loc } = await localiseChecked(
        gptOnly,
        golden("gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8"),
      );
      expect(ok).toBe(false);
      const view = loc.steps
        .filter((s) => s.how === "intermediate")
        .map((s) => `${s.tensor} ${s.status}${s.origin !== undefined ? ` ${s.origin}` : ""}`);
      expect(view.slice(0, 6)).toEqual([
        "embed match",
        "h.0.x match",
        "h.0.attn diverges local",
        "h.0.mlp diverges inherited",
        "h.0.y diverges inherited",
        "h.1.x diverges inherited",
      ]);
      expect(view).toContain("ln_f diverges inherited");
      const d = loc.divergence!;
      expect([d.formula, d.tensor, d.origin, d.how]).toEqual([
        "mha",
        "h.0.attn",
        "local",
        "intermediate",
      ]);
      expect(d.explanation).toContain(
        "h.0.attn (mha) is the first intermediate value that diverges while " +
          "what it is computed from (h.0.x) still matches",
      );
      // nothing else is declared: the parts are named as not checked
      expect(
        loc.steps.filter((s) => s.how === "isolated").every((s) => s.status === "not declared"),
      ).toBe(true);
    },
    60_000,
  );
});
