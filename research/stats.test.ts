import { describe, expect, it } from "vitest";
import {
  linearFit,
  logLogFit,
  mean,
  median,
  pairedInterval,
  std,
  StatsError,
  tQuantile975,
} from "./stats.js";

describe("mean, std, median", () => {
  it("match hand-computed values", () => {
    expect(mean([1, 2, 6])).toBe(3);
    // deviations −2, 0, 2 → Σ = 8, / (n − 1) = 4
    expect(std([1, 3, 5])).toBe(2);
    expect(std([7])).toBe(0);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
  it("refuse empty input with a message", () => {
    expect(() => mean([])).toThrow("mean of no values");
    expect(() => std([])).toThrow("standard deviation of no values");
    expect(() => median([])).toThrow("median of no values");
  });
});

describe("linearFit", () => {
  it("recovers an exact line, r² = 1 and a zero standard error", () => {
    const f = linearFit([0, 1, 2, 3], [1, 3, 5, 7]);
    expect(f.slope).toBe(2);
    expect(f.intercept).toBe(1);
    expect(f.r2).toBe(1);
    expect(f.slopeSE).toBe(0);
  });
  it("gives the textbook slope, intercept and standard error for noisy points", () => {
    // x = 0,1,2,3; y = 0,2,1,3: x̄ = 1.5, ȳ = 1.5, Sxx = 5, Sxy = 4 → b = 0.8, a = 0.3;
    // residuals −0.3, 0.9, −0.9, 0.3 → SSE = 1.8, s² = 0.9, SE = √(0.9/5)
    const f = linearFit([0, 1, 2, 3], [0, 2, 1, 3]);
    expect(f.slope).toBeCloseTo(0.8, 15);
    expect(f.intercept).toBeCloseTo(0.3, 15);
    expect(f.slopeSE).toBeCloseTo(Math.sqrt(0.18), 15);
    expect(f.r2).toBeCloseTo(1 - 1.8 / 5, 15);
  });
  it("has no standard error with two points", () => {
    expect(linearFit([1, 2], [3, 5]).slopeSE).toBeNaN();
  });
  it("names what is wrong with bad input", () => {
    expect(() => linearFit([1], [1])).toThrow("a line needs at least 2 points, got 1");
    expect(() => linearFit([1, 2], [1])).toThrow("2 x values but 1 y values");
    expect(() => linearFit([2, 2, 2], [1, 2, 3])).toThrow(
      "every x equals 2; the slope is undefined",
    );
    expect(() => linearFit([1, 2], [1, Number.NaN])).toThrow("linearFit y: value 1 is NaN");
  });
});

describe("logLogFit", () => {
  it("recovers the exponent of a power law", () => {
    const xs = [2, 4, 8, 16, 32];
    expect(
      logLogFit(
        xs,
        xs.map((x) => 3 * x ** -0.5),
      ).slope,
    ).toBeCloseTo(-0.5, 12);
    expect(
      logLogFit(
        xs,
        xs.map(() => 1.7),
      ).slope,
    ).toBeCloseTo(0, 12);
  });
  it("refuses values a power law cannot have", () => {
    expect(() => logLogFit([1, 0], [1, 1])).toThrow(StatsError);
    expect(() => logLogFit([1, 0], [1, 1])).toThrow("x value 1 is 0; a power law needs x > 0");
    expect(() => logLogFit([1, 2], [1, -1])).toThrow("y value 1 is -1; a power law needs y > 0");
  });
});

describe("the TSDoc examples", () => {
  it("hold as written", () => {
    expect(mean([1, 2, 6])).toBe(3);
    expect(std([1, 3])).toBe(Math.SQRT2);
    expect(linearFit([0, 1, 2], [1, 3, 5]).slope).toBe(2);
    expect(logLogFit([1, 4, 16], [2, 1, 0.5]).slope).toBeCloseTo(-0.5, 15);
  });
});

describe("tQuantile975 and pairedInterval", () => {
  it("give the table's t quantiles and the normal limit", () => {
    expect(tQuantile975(1)).toBe(12.706);
    expect(tQuantile975(4)).toBe(2.776);
    expect(tQuantile975(30)).toBe(2.042);
    // table value at df = 60 is 2.000, at df = 120 it is 1.980
    expect(tQuantile975(60)).toBeCloseTo(2.0, 2);
    expect(tQuantile975(120)).toBeCloseTo(1.98, 2);
    expect(() => tQuantile975(0)).toThrow("degrees of freedom must be a positive integer, got 0");
  });
  it("computes the paired t interval by hand", () => {
    // d = 1, 2, 3: mean 2, sd 1, half-width t(2)·1/√3 = 4.303/√3
    const r = pairedInterval([2, 4, 6], [1, 2, 3]);
    expect(r.mean).toBe(2);
    expect(r.sd).toBe(1);
    expect(r.halfWidth).toBeCloseTo(4.303 / Math.sqrt(3), 12);
    // 2 − 2.484 < 0: three pairs this scattered do not exclude 0
    expect(r.significant).toBe(false);
    // d = 1, 2, 3, 4: mean 2.5, sd √(5/3), half-width 3.182·√(5/3)/2 = 2.054 → [0.446, 4.554]
    const r4 = pairedInterval([2, 4, 6, 8], [1, 2, 3, 4]);
    expect(r4.low).toBeCloseTo(2.5 - (3.182 * Math.sqrt(5 / 3)) / 2, 12);
    expect(r4.significant).toBe(true);
    // d = −1, 1: mean 0 → never significant
    expect(pairedInterval([0, 2], [1, 1]).significant).toBe(false);
    // one pair: no interval
    expect(Number.isNaN(pairedInterval([1], [0]).halfWidth)).toBe(true);
    expect(pairedInterval([1], [0]).significant).toBe(false);
  });
  it("pairing removes what a pair shares: a shift hidden in the spread is significant", () => {
    const base = [4.1, 4.3, 4.2, 4.4, 4.0];
    const variant = base.map((x, i) => x - 0.05 + (i % 2 === 0 ? 0.001 : -0.001));
    expect(std(base)).toBeGreaterThan(0.15);
    const r = pairedInterval(variant, base);
    expect(r.mean).toBeCloseTo(-0.05 + 0.001 / 5, 12);
    expect(r.high).toBeLessThan(0);
    expect(r.significant).toBe(true);
  });
  it("refuses unequal lengths, no pairs and non-finite values", () => {
    expect(() => pairedInterval([1, 2], [1])).toThrow("2 values against 1");
    expect(() => pairedInterval([], [])).toThrow("no pairs");
    expect(() => pairedInterval([1, Number.NaN], [1, 2])).toThrow("value 1 is NaN");
  });
});
