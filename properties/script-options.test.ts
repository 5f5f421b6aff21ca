import { describe, expect, it } from "vitest";
import { dtypesOption, parseOptionPairs } from "./script-options.js";

describe("script options", () => {
  it("gives each --name value pair to its handler, in order", () => {
    const seen: string[] = [];
    parseOptionPairs(["--runs", "5", "--out", "x.md", "--runs", "7"], {
      "--runs": (v) => seen.push(`runs ${v}`),
      "--out": (v) => seen.push(`out ${v}`),
    });
    expect(seen).toEqual(["runs 5", "out x.md", "runs 7"]);
  });

  it("rejects an option without a value, and an unknown one", () => {
    const handlers = { "--runs": () => {} };
    expect(() => parseOptionPairs(["--runs"], handlers)).toThrow("--runs needs a value");
    expect(() => parseOptionPairs(["--law", "x"], handlers)).toThrow("unknown option --law");
    expect(() => parseOptionPairs(["toString", "x"], handlers)).toThrow("unknown option toString");
  });

  it("reads --dtype f64, f32 or both", () => {
    expect(dtypesOption("both")).toEqual(["f64", "f32"]);
    expect(dtypesOption("f32")).toEqual(["f32"]);
    expect(() => dtypesOption("f16")).toThrow("--dtype must be f64, f32 or both, got f16");
  });
});
