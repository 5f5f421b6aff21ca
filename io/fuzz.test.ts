import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { checkFile, fuzzProperty, newStats, validFileArb } from "./fuzz.js";

describe("safetensors reader under mutation fuzzing", () => {
  it("valid files from the generator parse consistently", () => {
    const stats = newStats();
    fc.assert(
      fc.property(validFileArb, (bytes) => checkFile(bytes, stats)),
      { numRuns: 100 },
    );
    expect(stats.parsed).toBe(100);
    expect(stats.rejected).toBe(0);
  });

  it("500 mutated files: each parses consistently or raises SafetensorsFormatError, quickly", () => {
    const stats = newStats();
    fc.assert(fuzzProperty(stats), { numRuns: 500 });
    expect(stats.runs).toBe(500);
    // the mutations reach both outcomes and many different checks
    expect(stats.parsed).toBeGreaterThan(0);
    expect(stats.rejected).toBeGreaterThan(400);
    expect(stats.problems.size).toBeGreaterThan(10);
  });
});
