/**
 * No source line over 120 characters. Prettier (`npm run format:check`, part of `npm test`) lays
 * code out at 100 columns, but it leaves strings, regular expressions and comments whole; this
 * check covers those, counting characters (code points), not bytes or UTF-16 units.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, test } from "vitest";

const ROOT = join(__dirname, "..");
const LIMIT = 120;
const SKIP = new Set(["node_modules", "dist", ".git", "results", "cases"]);

/** Every .ts and .mjs file below `dir`. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIP.has(e.name) && !e.name.startsWith(".")) out.push(...sources(p));
    } else if (/\.(ts|mjs)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** `name:line: length` for each line of `text` longer than {@link LIMIT} characters. */
function longLines(name: string, text: string): string[] {
  return text
    .split("\n")
    .map((line, i) => ({ n: [...line].length, i }))
    .filter(({ n }) => n > LIMIT)
    .map(({ n, i }) => `${name}:${i + 1}: ${n} characters`);
}

describe("line length", () => {
  test("a line of 121 characters is found, one of 120 (multi-byte characters counted once) is not", () => {
    const ok = "x".repeat(118) + "∂Σ";
    const long = "y".repeat(121);
    expect(longLines("f.ts", [ok, long, ""].join("\n"))).toEqual(["f.ts:2: 121 characters"]);
  });

  test(`no source line is longer than ${LIMIT} characters`, () => {
    const files = sources(ROOT);
    expect(files.length).toBeGreaterThan(100);
    const found = files.flatMap((f) => longLines(relative(ROOT, f), readFileSync(f, "utf8")));
    expect(found).toEqual([]);
  });
});
