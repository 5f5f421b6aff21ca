import { describe, expect, test } from "vitest";
import { parkMiller } from "./random.js";

describe("parkMiller", () => {
  test("is C++'s std::minstd_rand: its 10,000th value from seed 1 is 399268537", () => {
    // the check value the C++ standard gives for minstd_rand ([rand.predef]); exact in float64
    const u = parkMiller(10_000, 1);
    expect(u).toHaveLength(10_000);
    expect(u[9_999]! * 2147483647).toBe(399268537);
    expect(u[0]).toBe(48271 / 2147483647);
  });
  test("stays inside (0, 1) and depends on the seed", () => {
    const a = parkMiller(1000, 7);
    expect(a.every((u) => u > 0 && u < 1)).toBe(true);
    expect(parkMiller(5, 8)).not.toEqual(a.slice(0, 5));
  });
});
