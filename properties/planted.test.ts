import { describe, expect, it } from "vitest";
import { LAWS, getLaw } from "./registry.js";
import { PLANTED, controlImplementation, plantedImplementation } from "./planted.js";
import { formatFailure, runLaw, runLaws } from "./run.js";

const ORACLE = "reference_error_bound";

describe("planted bugs", () => {
  it("plants at least 15 bugs, each naming laws of the registry other than the oracle", () => {
    expect(PLANTED.length).toBeGreaterThanOrEqual(15);
    expect(new Set(PLANTED.map((b) => b.name)).size).toBe(PLANTED.length);
    for (const bug of PLANTED) {
      expect(bug.caughtBy.length, bug.name).toBeGreaterThan(0);
      for (const l of bug.caughtBy) expect(() => getLaw(l)).not.toThrow();
      expect(bug.caughtBy).not.toContain(ORACLE);
    }
  });

  it("the reference rewritten with no mistake, as bugs are run, passes every law", async () => {
    const report = await runLaws(controlImplementation(), { runs: 8, seed: 11, shrinkTimeMs: 0 });
    expect(
      report.results
        .filter((r) => r.status === "failed")
        .flatMap(formatFailure)
        .join("\n"),
    ).toBe("");
    expect(report.passed).toBe(LAWS.length);
  });

  for (const bug of PLANTED) {
    it(`catches ${bug.name} without golden files or the oracle`, async () => {
      const impl = plantedImplementation(bug.name);
      const caught: string[] = [];
      for (const name of bug.caughtBy) {
        const r = await runLaw(impl, getLaw(name), { runs: 60, seed: 5, shrinkTimeMs: 0 });
        if (r.status === "failed") {
          caught.push(name);
          // a catch names the broken formula or one that uses it, and says what relation failed
          expect(r.failure!.message.length).toBeGreaterThan(10);
          break;
        }
      }
      expect(caught, `${bug.name}: none of ${bug.caughtBy.join(", ")} failed`).not.toEqual([]);
    });
  }
});
