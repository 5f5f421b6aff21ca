import { describe, expect, it } from "vitest";
import { referenceImplementation } from "../reference/implementation.js";
import type { Implementation } from "../autodiff/implementation.js";
import { plantedImplementation } from "./planted.js";
import { main } from "../cli/main.js";
import { formatLawReport, lawReportToJSON, runLaws, type LawResult } from "./run.js";

const ref = referenceImplementation();

/** An implementation that computes softmax only, forward only. */
const softmaxOnly: Implementation = {
  name: "softmax only",
  formulas: ["softmax"],
  backward: false,
  dtypes: ["f64"],
  forward: (req) => ref.forward(req),
};

describe("skipping", () => {
  it(
    "reports laws for undeclared formulas, or needing a missing backward " +
      "pass, as skipped — never passed",
    async () => {
      const report = await runLaws(softmaxOnly, { runs: 5, seed: 1 });
      const byName = new Map(report.results.map((r) => [r.law, r]));
      expect(byName.get("softmax_simplex")).toMatchObject({
        status: "passed",
        formulas: ["softmax"],
        runs: 5,
      });
      expect(byName.get("causality")).toMatchObject({
        status: "skipped",
        runs: 0,
        skipped:
          "the implementation declares none of attention, mha, block, block_post_ln, block_pre_ln, gpt",
      });
      expect(byName.get("softmax_gradient")).toMatchObject({
        status: "skipped",
        skipped: "no applicable formula (softmax: needs its backward pass)",
      });
      // alibi_forms needs softmax and alibi_bias: the implementation lacks the formula itself
      expect(byName.get("alibi_forms")!.status).toBe("skipped");
      for (const r of report.results) if (r.status === "passed") expect(r.runs).toBeGreaterThan(0);
      expect(report.ok).toBe(true);
      expect(report.skipped).toBe(report.results.filter((r) => r.status === "skipped").length);
      expect(report.skipped).toBeGreaterThan(20);
    },
  );

  it("skips everything for a dtype the implementation does not compute", async () => {
    const report = await runLaws(softmaxOnly, {
      runs: 5,
      seed: 1,
      dtype: "f32",
      law: "softmax_simplex",
    });
    expect(report.results[0]).toMatchObject({
      status: "skipped",
      skipped: "the implementation does not compute f32 (it declares f64)",
    });
  });

  it("names the formula a law does not apply to", async () => {
    const report = await runLaws(ref, { runs: 5, seed: 1, law: "kv_cache", formula: "softmax" });
    expect(report.results[0]!.skipped).toBe(
      "the law does not apply to softmax (it applies to gpt)",
    );
  });
});

describe("failures and replay", () => {
  let first: LawResult;

  it("reports the shrunk counterexample with its seed, path and replay command", async () => {
    const report = await runLaws(plantedImplementation("causal_mask_missing"), {
      law: "causality",
      runs: 50,
      seed: 7,
      shrinkTimeMs: 3000,
      implementationArgs: "--planted causal_mask_missing",
    });
    expect(report.ok).toBe(false);
    first = report.results[0]!;
    expect(first.status).toBe("failed");
    expect(first.failure!.formula).toBe("attention");
    expect(first.failure!.message).toMatch(/^y rows 0\.\.\d+ after changing rows/);
    expect(first.replay!.seed).toBe(7);
    expect(first.replay!.command).toBe(
      `npx specformer properties --law causality --seed 7 --path ${first.replay!.path} --planted causal_mask_missing`,
    );
    // shrinking reaches the smallest case that shows a leak: two queries, one key
    expect(first.counterexample!.shapes["Q"]![0]).toBe(2);
    const text = formatLawReport(report);
    expect(text).toContain("FAILED causality");
    expect(text).toContain(`replay: ${first.replay!.command}`);
    expect(text).toMatch(
      /causality +attention, mha, block, block_post_ln, block_pre_ +\d+ +FAILED/,
    );
  });

  it("replays the same counterexample from the seed and path", async () => {
    const again = await runLaws(plantedImplementation("causal_mask_missing"), {
      law: "causality",
      seed: first.replay!.seed,
      path: first.replay!.path,
    });
    const r = again.results[0]!;
    expect(r.status).toBe("failed");
    expect(r.failure).toEqual(first.failure);
    expect(r.counterexample).toEqual(first.counterexample);
    expect(r.replay!.path).toBe(first.replay!.path);
  });

  it("replays through the command, from the printed arguments", async () => {
    const args = first.replay!.command.replace(/^npx specformer properties /, "").split(" ");
    let text = "";
    const code = await main(["properties", ...args], {
      out: (s) => void (text += s),
      err: (s) => void (text += s),
      tty: false,
    });
    expect(code).toBe(1);
    expect(text).toContain(first.failure!.message);
  });

  it("replays a model-based (fc.commands) counterexample", async () => {
    const impl = plantedImplementation("kv_positions_from_zero");
    const report = await runLaws(impl, { law: "kv_cache", runs: 30, seed: 3, shrinkTimeMs: 4000 });
    const r = report.results[0]!;
    expect(r.status).toBe("failed");
    expect(r.replay!.path).toMatch(/^[\d:]+@\S+$/);
    expect(r.counterexample!.choices["commands"]).toMatch(/append\(\[/);
    const again = (
      await runLaws(impl, { law: "kv_cache", seed: r.replay!.seed, path: r.replay!.path })
    ).results[0]!;
    expect(again.failure).toEqual(r.failure);
    expect(again.counterexample!.choices).toEqual(r.counterexample!.choices);
  });

  it("writes valid JSON with non-finite numbers as strings", async () => {
    // seed 3: a case with scores near +1000 (exp overflows to NaN); rows moved below −1e4 give zeros instead
    const report = await runLaws(plantedImplementation("softmax_no_max_subtraction"), {
      law: "softmax_simplex",
      runs: 50,
      seed: 3,
      shrinkTimeMs: 1000,
    });
    const json = JSON.parse(lawReportToJSON(report)) as {
      ok: boolean;
      results: { status: string; failure: { actual?: unknown } }[];
    };
    expect(json.ok).toBe(false);
    expect(json.results[0]!.status).toBe("failed");
    expect(json.results[0]!.failure.actual).toBe("NaN");
  });
});
