import { describe, expect, it } from "vitest";
import { FileAccessError } from "../io/files.js";
import { JsonFormatError } from "../io/json.js";
import { SafetensorsFormatError } from "../io/safetensors.js";
import { GoldenFormatError, readingGolden } from "./error.js";

/** The error `read` ends in, under readingGolden. */
function caught(err: Error): unknown {
  try {
    readingGolden(() => {
      throw err;
    });
  } catch (e) {
    return e;
  }
  throw new Error("nothing was thrown");
}

describe("readingGolden: what the io layer raises for a golden file is a GoldenFormatError", () => {
  it("keeps the source, the tensor and the problem of a SafetensorsFormatError", () => {
    const problem = "shape [3] needs 12 bytes";
    const e = caught(new SafetensorsFormatError("c.safetensors", problem, "in.x", 90));
    expect(e).toBeInstanceOf(GoldenFormatError);
    const g = e as GoldenFormatError;
    expect([g.source, g.tensor, g.problem]).toEqual(["c.safetensors", "in.x", problem]);
    expect(g.message).toBe('c.safetensors: tensor "in.x": shape [3] needs 12 bytes');
  });

  it("says the same as a JsonFormatError and a FileAccessError", () => {
    const problem = "manifest is not valid JSON: x at character 3";
    const json = new JsonFormatError("manifest.json", problem, 3);
    expect(caught(json)).toEqual(new GoldenFormatError("manifest.json", json.problem));
    expect((caught(json) as Error).message).toBe(json.message);
    const file = new FileAccessError("/g/c.safetensors", "cannot read: no such file");
    expect(caught(file)).toBeInstanceOf(GoldenFormatError);
    expect((caught(file) as Error).message).toBe(file.message);
  });

  it("lets every other error through unchanged, and returns what the read returns", () => {
    const other = new RangeError("not an io error");
    expect(caught(other)).toBe(other);
    expect(readingGolden(() => 42)).toBe(42);
  });
});
