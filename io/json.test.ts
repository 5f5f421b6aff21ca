import { describe, expect, it } from "vitest";
import { JsonFormatError, parseStrictJson } from "./json.js";

/** The error `fn` throws, asserting it is a JsonFormatError. */
function formatError(fn: () => unknown): JsonFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(JsonFormatError);
    return err as JsonFormatError;
  }
  throw new Error("expected a JsonFormatError, nothing was thrown");
}

describe("parseStrictJson", () => {
  it("parses without recursion: a million open brackets are a clean error, not a stack overflow", () => {
    const text = `{"__metadata__": ${"[".repeat(1_000_000)}`;
    expect(formatError(() => parseStrictJson(text, "case.safetensors", "header")).message).toBe(
      "case.safetensors: header is not valid JSON: nesting deeper than 64 levels at character 80",
    );
    const deep = `${"[".repeat(65)}${"]".repeat(65)}`;
    expect(() => parseStrictJson(deep)).toThrow("nesting deeper than 64 levels at character 64");
    const ok = `${"[".repeat(64)}1${"]".repeat(64)}`;
    expect(JSON.stringify(parseStrictJson(ok))).toBe(ok);
  });

  it("never builds objects with a prototype from header keys", () => {
    const v = parseStrictJson('{"a": {"b": 1}, "toString": 2}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(null);
    expect(Object.getPrototypeOf(v.a)).toBe(null);
    expect(v.toString).toBe(2);
    expect(({} as Record<string, unknown>).b).toBeUndefined();
  });

  it("parses standard JSON exactly and refuses the rest", () => {
    expect(
      parseStrictJson(
        '{"s": "a\\u00e9\\n\\"\\/", "n": [-0, 1.5e3, 0.25], "t": true, "f": false, "z": null}',
      ),
    ).toEqual({
      s: 'aé\n"/',
      n: [-0, 1500, 0.25],
      t: true,
      f: false,
      z: null,
    });
    expect(formatError(() => parseStrictJson("[01]", "f")).message).toBe(
      "f: JSON is not valid JSON: expected ',' or ']', found '1' at character 2",
    );
    expect(formatError(() => parseStrictJson("NaN", "f")).message).toBe(
      "f: JSON is not valid JSON: unexpected 'N' at character 0",
    );
    expect(formatError(() => parseStrictJson('"a\tb"', "f")).message).toBe(
      "f: JSON is not valid JSON: raw control character U+0009 in a string at character 2",
    );
    expect(formatError(() => parseStrictJson('"\\x"', "f")).message).toBe(
      "f: JSON is not valid JSON: bad escape \\'x' at character 2",
    );
  });

  it("refuses duplicate and reserved keys at the key's position", () => {
    const dup = formatError(() => parseStrictJson('{"a": 1, "a": 2}', "m.json", "manifest"));
    expect(dup.message).toBe(
      'm.json: manifest is not valid JSON: duplicate key "a" (a plain ' +
        "JSON.parse would silently keep the last one) at character 9",
    );
    expect(dup.source).toBe("m.json");
    expect(dup.position).toBe(9);
    expect(dup.problem).toBe(dup.message.slice("m.json: ".length));
    const proto = formatError(() => parseStrictJson('{"x": {"__proto__": 1}}', "m.json"));
    expect(proto.message).toBe(
      'm.json: JSON is not valid JSON: reserved key "__proto__" (refused: it ' +
        "could pollute object prototypes) at character 7",
    );
    expect(proto.position).toBe(7);
  });

  it("bounds the top-level keys when asked, as soon as the key past the bound starts", () => {
    const limits = { maxRootKeys: { max: 2, why: "two at most" } };
    expect(parseStrictJson('{"a": 1, "b": 2}', "f", "header", limits)).toEqual({ a: 1, b: 2 });
    const e = formatError(() => parseStrictJson('{"a": 1, "b": 2, "c"', "f", "header", limits));
    expect(e.message).toBe("f: header has more than 2 entries (two at most)");
    expect(e.position).toBe(16);
  });
});
