import { describe, expect, it } from "vitest";
import { intervalText, requirePositiveInteger, signed, studySizes } from "./study.js";

describe("studySizes", () => {
  const quick = { n: 2, seeds: 1 };
  const dflt = { n: 8, seeds: 5 };
  it("takes the quick or default sizes, then opts.sizes, then opts.seeds", () => {
    expect(studySizes({}, quick, dflt)).toEqual({ n: 8, seeds: 5 });
    expect(studySizes({ quick: true }, quick, dflt)).toEqual({ n: 2, seeds: 1 });
    expect(studySizes({ sizes: { n: 3, seeds: 2 } }, quick, dflt)).toEqual({ n: 3, seeds: 2 });
    expect(studySizes({ seeds: 4, sizes: { seeds: 2 } }, quick, dflt)).toEqual({ n: 8, seeds: 4 });
  });
  it("names a bad seed count", () => {
    expect(() => studySizes({ seeds: 0 }, quick, dflt)).toThrow(
      "seeds must be a positive integer, got 0",
    );
  });
});

describe("requirePositiveInteger", () => {
  it("passes 1, 2, … and names the study, the size and the value otherwise", () => {
    expect(() => requirePositiveInteger("s", "n", 1)).not.toThrow();
    for (const v of [0, -1, 1.5, Number.NaN])
      expect(() => requirePositiveInteger("s", "n", v)).toThrow(
        `s: n must be a positive integer, got ${v}`,
      );
  });
});

describe("signed, intervalText", () => {
  it("write the sign always, with a true minus", () => {
    expect([signed(0.0123), signed(-0.004), signed(0), signed(1.5, 1)]).toEqual([
      "+0.012",
      "−0.004",
      "+0.000",
      "+1.5",
    ]);
    const d = { mean: 0.012, low: -0.004, high: 0.028, halfWidth: 0.016, sd: 0.01, n: 3 };
    expect(intervalText({ ...d, significant: false })).toBe("+0.012 [−0.004, +0.028]");
  });
});
