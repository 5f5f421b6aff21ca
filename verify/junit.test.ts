/**
 * The JUnit report is well-formed XML with the structure CI systems read, parsed by an
 * independent parser (Python's xml.etree.ElementTree) and checked for consistent counts.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { ImplementationError } from "../autodiff/implementation.js";
import type { Implementation } from "../autodiff/implementation.js";
import { referenceImplementation } from "../reference/implementation.js";
import { verifyJUnit, xmlEscape } from "./junit.js";
import { verify } from "./run.js";
import { plantedGraphImplementation, plantMaskShift } from "./planted.testing.js";

/** Parse with Python's ElementTree and summarise: suites with their attributes and children. */
const PARSE =
  `
import json, sys
import xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
def attrs(e): return dict(e.attrib)
out = {"tag": root.tag, "attrs": attrs(root), "suites": []}
for s in root:
    cases = [c for c in s if c.tag == "testcase"]
    out["suites"].append({
        "tag": s.tag, "attrs": attrs(s),
        "properties": {p.get("name"): p.get("value") for p in s.iter("property")},
        "cases": [{"attrs": attrs(c), "children": [{"tag": k.tag, ` +
  `"attrs": attrs(k), "text": k.text or ""} for k in c]} for c in ` +
  `cases],
        "other": [k.tag for k in s if k.tag not in ("testcase", "properties")],
    })
print(json.dumps(out))
`;

interface Parsed {
  tag: string;
  attrs: Record<string, string>;
  suites: Array<{
    tag: string;
    attrs: Record<string, string>;
    properties: Record<string, string>;
    cases: Array<{
      attrs: Record<string, string>;
      children: Array<{ tag: string; attrs: Record<string, string>; text: string }>;
    }>;
    other: string[];
  }>;
}

function parse(xml: string): Parsed {
  return JSON.parse(
    execFileSync("/usr/bin/python3", ["-c", PARSE], { input: xml, encoding: "utf8" }),
  ) as Parsed;
}

describe("JUnit XML", () => {
  test("failures, errors and skips in consistent counts, parsed by ElementTree", async () => {
    const planted = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const impl: Implementation = {
      ...planted,
      name: "mask off by one & <friends>",
      forward: async (req) => {
        if (req.formula === "relu")
          throw new ImplementationError(
            'implementation `x` reported an error for forward relu (request 4): relu <not> "here" \u0007',
            { kind: "declined" },
          );
        if (req.formula === "silu") throw new RangeError("index 9 out of range \u0000");
        return planted.forward(req);
      },
    };
    const report = await verify(impl, {
      formulas: ["causal_mask", "attention", "relu", "silu"],
      dtype: "f64",
    });
    const xml = verifyJUnit(report);
    const doc = parse(xml);
    expect(doc.tag).toBe("testsuites");
    let tests = 0,
      failures = 0,
      errors = 0,
      skipped = 0;
    for (const s of doc.suites) {
      expect(s.tag).toBe("testsuite");
      expect(s.other).toEqual([]);
      const kids = s.cases.map((c) => c.children[0]?.tag ?? "pass");
      expect(Number(s.attrs["tests"])).toBe(s.cases.length);
      expect(Number(s.attrs["failures"])).toBe(kids.filter((k) => k === "failure").length);
      expect(Number(s.attrs["errors"])).toBe(kids.filter((k) => k === "error").length);
      expect(Number(s.attrs["skipped"])).toBe(kids.filter((k) => k === "skipped").length);
      expect(s.properties["implementation"]).toBe("mask off by one & <friends>");
      tests += s.cases.length;
      failures += Number(s.attrs["failures"]);
      errors += Number(s.attrs["errors"]);
      skipped += Number(s.attrs["skipped"]);
    }
    expect([
      Number(doc.attrs["tests"]),
      Number(doc.attrs["failures"]),
      Number(doc.attrs["errors"]),
      Number(doc.attrs["skipped"]),
    ]).toEqual([tests, failures, errors, skipped]);
    expect(tests).toBe(report.results.length);
    expect(failures).toBe(report.results.filter((r) => r.status === "fail").length);
    expect(errors).toBe(report.results.filter((r) => r.status === "fault").length);

    const suite = (name: string) => doc.suites.find((s) => s.attrs["name"] === name)!;
    const mask = suite("golden.causal_mask").cases.find(
      (c) => c.attrs["name"] === "causal_mask/f64/n5_m5",
    )!;
    expect(mask.children[0]!.tag).toBe("failure");
    expect(mask.children[0]!.text).toContain("out.y: 4 of 25 elements outside");
    expect(mask.children[0]!.text).toContain("just above the causal diagonal");
    const relu = suite("golden.relu").cases[0]!;
    expect(relu.children[0]!.tag).toBe("skipped");
    expect(relu.children[0]!.attrs["message"]).toContain('relu <not> "here" \uFFFD');
    const silu = suite("golden.silu").cases[0]!;
    expect(silu.children[0]!.tag).toBe("error");
    expect(silu.children[0]!.attrs["message"]).toContain(
      "threw RangeError: index 9 out of range \uFFFD",
    );
    expect(suite("gradient.attention").cases[0]!.attrs["name"]).toMatch(/^gradcheck attention/);
    expect(Number(suite("golden.causal_mask").attrs["time"])).toBeGreaterThanOrEqual(0);
  });
  test("a passing run: testcases without children", async () => {
    const doc = parse(
      verifyJUnit(
        await verify(referenceImplementation(), { formulas: ["relu"], gradients: false }),
      ),
    );
    expect(doc.suites.map((s) => s.attrs["name"])).toEqual(["golden.relu"]);
    expect(doc.suites[0]!.cases.every((c) => c.children.length === 0)).toBe(true);
    expect(doc.attrs["failures"]).toBe("0");
  });
  test("escaping: markup characters and characters XML cannot hold", () => {
    expect(xmlEscape(`a<b>&"c'\u0001\tz`)).toBe("a&lt;b&gt;&amp;&quot;c&apos;\uFFFD\tz");
  });
});
