/**
 * `verify --shard K/N` for a CI matrix: the shards are disjoint, their union is the unsharded run
 * (golden cases, gradient checks and laws, with the same outcomes), and `junit-merge` of their
 * JUnit reports holds the same test cases and counts as the unsharded run's report.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { runMain } from "./main.testing.js";

const run = runMain;

interface Row {
  kind: string;
  formula: string;
  case: string;
  dtype: string | null;
  status: string;
}
const key = (r: Row) => `${r.kind} ${r.formula} ${r.case} ${r.dtype} ${r.status}`;
const testcases = (xml: string) =>
  [
    ...xml.matchAll(
      /<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(\/>|>\s*<(failure|error|skipped))/g,
    ),
  ]
    .map((m) => `${m[1]} ${m[2]} ${m[4] ?? "pass"}`)
    .sort();
const rootCounts = (xml: string) =>
  /<testsuites name="specformer verify" (tests="\d+" failures="\d+" errors="\d+" skipped="\d+")/.exec(
    xml,
  )?.[1];

describe("verify --shard K/N", () => {
  test(
    "three shards are disjoint, their union is the unsharded run, and " +
      "junit-merge of their reports equals its report",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "specformer-shard-"));
      const common = ["verify", "--formulas", "softmax,layer_norm,gelu", "--runs", "3", "--json"];
      const full = await run([...common, "--junit", join(dir, "full.xml")]);
      expect(full.code).toBe(0);
      const fullRows = (JSON.parse(full.out) as { results: Row[] }).results;
      expect(new Set(fullRows.map((r) => r.kind))).toEqual(
        new Set(["golden", "gradient", "property"]),
      );
      const shardRows: Row[][] = [];
      for (const k of [1, 2, 3]) {
        const r = await run([
          ...common,
          "--shard",
          `${k}/3`,
          "--junit",
          join(dir, `shard${k}.xml`),
        ]);
        expect(r.code).toBe(0);
        shardRows.push((JSON.parse(r.out) as { results: Row[] }).results);
      }
      // every shard does some of each kind of work
      for (const rows of shardRows) expect(rows.length).toBeGreaterThan(0);
      const union = shardRows.flat().map(key).sort();
      expect(new Set(union).size).toBe(union.length);
      expect(union).toEqual(fullRows.map(key).sort());

      const merged = await run([
        "junit-merge",
        join(dir, "shard1.xml"),
        join(dir, "shard2.xml"),
        join(dir, "shard3.xml"),
        "--out",
        join(dir, "merged.xml"),
      ]);
      expect(merged.code).toBe(0);
      const fullXml = readFileSync(join(dir, "full.xml"), "utf8");
      const mergedXml = readFileSync(join(dir, "merged.xml"), "utf8");
      expect(testcases(mergedXml)).toEqual(testcases(fullXml));
      expect(testcases(fullXml).length).toBe(fullRows.length);
      expect(rootCounts(mergedXml)).toBe(rootCounts(fullXml));
    },
    300_000,
  );

  test("a malformed --shard is bad input naming the flag", async () => {
    for (const bad of ["0/3", "4/3", "2", "a/b", "1/0"]) {
      const r = await run(["verify", "--shard", bad]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(
        `specformer verify: --shard must be K/N with 1 ≤ K ≤ N (e.g. --shard 2/4), got "${bad}"`,
      );
    }
  });

  test("junit-merge refuses a file that is not a verify JUnit report, naming it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-shard-"));
    const path = join(dir, "other.xml");
    (await import("node:fs")).writeFileSync(
      path,
      "<testsuites><testsuite name='x'/></testsuites>\n",
    );
    const r = await run(["junit-merge", path]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      `specformer junit-merge: ${path}: not a JUnit report of specformer verify`,
    );
    const none = await run(["junit-merge"]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("specformer junit-merge: name the JUnit reports to merge");
  });
});
