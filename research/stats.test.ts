import { describe, expect, it } from "vitest";
import { linearFit, logLogFit, mean, median, std, StatsError } from "./stats.js";

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
    expect(() => linearFit([2, 2, 2], [1, 2, 3])).toThrow("every x equals 2; the slope is undefined");
    expect(() => linearFit([1, 2], [1, Number.NaN])).toThrow("linearFit y: value 1 is NaN");
  });
});

describe("logLogFit", () => {
  it("recovers the exponent of a power law", () => {
    const xs = [2, 4, 8, 16, 32];
    expect(logLogFit(xs, xs.map((x) => 3 * x ** -0.5)).slope).toBeCloseTo(-0.5, 12);
    expect(logLogFit(xs, xs.map(() => 1.7)).slope).toBeCloseTo(0, 12);
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
