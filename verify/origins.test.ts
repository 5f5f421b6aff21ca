/**
 * Independent divergences: a run on an implementation with two unrelated planted mistakes — the
 * loss summed instead of averaged (forward, cross_entropy) and attention's backward pass without
 * the score scale (backward only) — reports both as origins, each with its first case and the
 * failures it explains, and leads with the upstream one (attention precedes cross_entropy).
 */
import { describe, expect, test } from "vitest";
import { plantedImplementation } from "../properties/planted.js";
import { formatVerifyReport, verifyReportToJSON } from "./report.js";
import { verify } from "./run.js";
import type { VerifyReport } from "./run.js";
import {
  backwardPlantedImplementation,
  plantAttentionScaleBackward,
  plantLossSummed,
} from "./planted-backward.testing.js";

describe("two independent planted mistakes", () => {
  let report: VerifyReport;
  test("both are reported as origins, the upstream one first", async () => {
    const impl = backwardPlantedImplementation("two bugs", plantAttentionScaleBackward, {
      forwardPlant: plantLossSummed,
    });
    report = await verify(impl, {
      formulas: ["attention", "mha", "cross_entropy", "gpt"],
      dtype: "f64",
    });
    expect(report.ok).toBe(false);
    const origins = report.origins!;
    expect(origins.map((o) => `${o.formula} ${o.kind}`)).toEqual([
      "attention backward",
      "cross_entropy forward",
    ]);
    const [attn, ce] = origins as [
      NonNullable<VerifyReport["origins"]>[number],
      NonNullable<VerifyReport["origins"]>[number],
    ];
    // attention's backward: its own golden cases fail on gradients, and so do mha's (localised there)
    const failing = report.results.filter((r) => r.status === "fail");
    const mhaLocalised = failing.filter(
      (r) => r.formula === "mha" && r.localisation?.divergence?.formula === "attention",
    );
    expect(mhaLocalised.length).toBeGreaterThan(0);
    expect(mhaLocalised.every((r) => r.localisation!.divergence!.kind === "backward")).toBe(true);
    expect(attn.firstCase.startsWith("attention/f64/")).toBe(true);
    expect(attn.input).toBeDefined();
    // every failing check is explained by exactly one origin
    expect(attn.count + ce.count).toBe(failing.length);
    // cross_entropy's forward: its cases and gpt's (whose loss is wrong) point to it
    const gptFailing = failing.filter((r) => r.kind === "golden" && r.formula === "gpt");
    expect(gptFailing.length).toBeGreaterThan(0);
    expect(
      gptFailing
        .filter((r) => r.localisation !== undefined)
        .every((r) => r.localisation!.divergence!.formula === "cross_entropy"),
    ).toBe(true);
    expect(ce.firstCase.startsWith("cross_entropy/f64/")).toBe(true);
    expect(ce.count).toBeGreaterThanOrEqual(gptFailing.length);
  }, 600_000);
  test("the JSON lists both origins with snake_case fields; first_divergence stays", () => {
    const doc = JSON.parse(verifyReportToJSON(report)) as {
      origins: Array<Record<string, unknown>>;
      first_divergence: unknown;
      results: Array<Record<string, unknown>>;
    };
    expect(doc.origins.map((o) => [o["formula"], o["kind"]])).toEqual([
      ["attention", "backward"],
      ["cross_entropy", "forward"],
    ]);
    expect(Object.keys(doc.origins[0]!)).toEqual(
      expect.arrayContaining([
        "first_case",
        "count",
        "presumed",
        "path",
        "tensor",
        "input",
        "explanation",
        "max_abs_err",
        "budget",
        "rtol",
        "atol",
      ]),
    );
    expect(doc.first_divergence).not.toBeNull();
    const mha = doc.results.find(
      (r) => r["formula"] === "mha" && r["localisation"] !== undefined,
    ) as { localisation: { divergence: Record<string, unknown> } };
    expect(mha.localisation.divergence["kind"]).toBe("backward");
    expect(mha.localisation.divergence["formula"]).toBe("attention");
    expect(mha.localisation.divergence["input"]).toBeDefined();
  });
  test("the terminal report leads with both origins", () => {
    const text = formatVerifyReport(report);
    const lines = text.split("\n");
    const at = lines.findIndex((l) => l.startsWith("origins of the failures (2)"));
    expect(at).toBeGreaterThan(-1);
    expect(lines[at + 1]).toMatch(/^ {2}1\. attention \(backward\)/);
    expect(lines.slice(at).some((l) => /^ {2}2\. cross_entropy \(forward\)/.test(l))).toBe(true);
    // the table comes after the origins; a failing mha case points to attention's backward pass
    expect(lines.findIndex((l) => l.startsWith("formula "))).toBeGreaterThan(at);
    const all = formatVerifyReport(report, { maxListed: 1000 }).split("\n");
    expect(
      all.some((l) =>
        /FAIL mha\/f64\/.* → attention:grad\.\w+ \(attention, backward, local\)/.test(l),
      ),
    ).toBe(true);
  });
});

describe("one backward-only mistake in a verify run", () => {
  test("every localised failing mha, block and gpt case points to attention's backward pass; one origin", async () => {
    const impl = backwardPlantedImplementation(
      "attention scale in backward",
      plantAttentionScaleBackward,
    );
    const report = await verify(impl, {
      formulas: ["mha", "block_pre_ln", "gpt"],
      dtype: "f64",
      gradients: false,
    });
    const failing = report.results.filter((r) => r.status === "fail");
    for (const f of ["mha", "block_pre_ln", "gpt"]) {
      const localised = failing.filter((r) => r.formula === f && r.localisation !== undefined);
      expect(localised.length).toBe(2); // the localisation limit per formula and dtype
      for (const r of localised) {
        const d = r.localisation!.divergence!;
        expect([d.formula, d.kind, d.how, d.path[d.path.length - 1]]).toEqual([
          "attention",
          "backward",
          "isolated",
          "attention",
        ]);
      }
    }
    expect(report.origins!.map((o) => `${o.formula} ${o.kind}`)).toEqual(["attention backward"]);
    expect(report.origins![0]!.count).toBe(failing.length);
    expect(report.firstDivergence!.formula).toBe("attention");
  }, 600_000);
});

describe("a law that needs the backward pass", () => {
  test("its failure joins the backward origin its formula's cases were localised to", async () => {
    const report = await verify(plantedImplementation("softmax_grad_no_subtraction"), {
      formulas: ["softmax"],
      dtype: "f64",
      properties: true,
      lawRuns: 20,
    });
    const law = report.results.find(
      (r) => r.kind === "property" && r.status === "fail" && r.case === "softmax_gradient",
    );
    expect(law?.checksGradients).toBe(true);
    // values laws on softmax pass: only gradients are wrong
    expect(
      report.results
        .filter((r) => r.kind === "property" && r.status === "fail")
        .every((r) => r.checksGradients === true),
    ).toBe(true);
    expect(report.origins!.map((o) => `${o.formula} ${o.kind}`)).toEqual(["softmax backward"]);
    expect(report.origins![0]!.count).toBe(
      report.results.filter((r) => r.status === "fail").length,
    );
  }, 600_000);
});
