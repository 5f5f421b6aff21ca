/**
 * Dependencies point one way (docs: README's Design section): a module imports only from its own
 * folder and from folders of a lower layer. Two folders of one layer (reference/ and golden/,
 * verify/ and research/, cli/ and bench/) do not import each other. Tests may reach anywhere.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";

const ROOT = join(__dirname, "..");
/** Each top-level folder's layer, lowest first. */
const LAYER: Readonly<Record<string, number>> = {
  spec: 0,
  autodiff: 1,
  io: 2,
  reference: 3,
  golden: 3,
  properties: 4,
  verify: 5,
  research: 5,
  cli: 6,
  bench: 6,
  examples: 7,
};

/** Non-test .ts sources below `dir` (fixtures left out), relative to ROOT. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "fixtures") out.push(...sources(p));
    } else if (e.name.endsWith(".ts") && !/\.test(-d)?\.ts$/.test(e.name)) out.push(p);
  }
  return out;
}

/** `file -> import` for each relative import (static or dynamic) that does not point down. */
function upwardImports(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    const from = file.split("/")[0]!;
    for (const ref of ts.preProcessFile(text, true, true).importedFiles) {
      if (!ref.fileName.startsWith(".")) continue;
      const to = normalize(join(dirname(file), ref.fileName)).split("/")[0]!;
      const [a, b] = [LAYER[from], LAYER[to]];
      if (to !== from && a !== undefined && b !== undefined && b >= a) {
        out.push(`${file} -> ${ref.fileName}`);
      }
    }
  }
  return out.sort();
}

describe("layers", () => {
  test("an import up, or across one layer, is found (static and dynamic)", () => {
    const files = new Map([
      ["io/a.ts", 'import { x } from "../reference/model.js";\nimport "./b.js";'],
      [
        "golden/b.ts",
        'const m = await import("../reference/model.js");\nimport { t } from "../io/a.js";',
      ],
      ["cli/c.ts", 'import { v } from "../verify/run.js";\nimport fc from "fast-check";'],
    ]);
    expect(upwardImports(files)).toEqual([
      "golden/b.ts -> ../reference/model.js",
      "io/a.ts -> ../reference/model.js",
    ]);
  });

  test("no module imports from a folder of its own layer or above", () => {
    const files = new Map(
      Object.keys(LAYER)
        .flatMap(sources)
        .map((f) => [f, readFileSync(join(ROOT, f), "utf8")] as const),
    );
    expect(files.size).toBeGreaterThan(100);
    expect(upwardImports(files)).toEqual([]);
  });
});
