/**
 * examples/c/check.c: built with gcc (warnings are errors) and run on the bundled softmax and
 * layer_norm float64 golden cases, on tampered copies (a mismatch must fail; a tolerance stated by
 * the case must be the one used) and on unreadable input. Skipped, saying why, without gcc.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { loadCase, saveCase } from "../../golden/cases-io.js";
import type { GoldenCase } from "../../golden/cases-io.js";

const ROOT = join(__dirname, "..", "..");
const CASES = join(ROOT, "golden", "cases");
const hasGcc = spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;
if (!hasGcc)
  console.warn("examples/c/check.test.ts: skipped — gcc is not installed (CI installs it)");

const dir = mkdtempSync(join(tmpdir(), "specformer-c-check-"));
const exe = join(dir, "check");

function check(files: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(exe, files, { encoding: "utf8" });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function f64Cases(formula: string): string[] {
  const d = join(CASES, formula, "f64");
  return readdirSync(d)
    .filter((f) => f.endsWith(".safetensors"))
    .sort()
    .map((f) => join(d, f));
}

/** The case states a convention check.c does not compute (it skips those). */
function otherConvention(file: string): boolean {
  const config = loadCase(file).meta.config;
  return "axis" in config || "bias" in config || "normalized_axes" in config;
}

/** A copy of a case with out.y changed at one element (and, optionally, another stated tolerance). */
function tampered(
  c: GoldenCase,
  delta: number,
  tolerance?: { rtol: number; atol: number },
): string {
  const y = c.outputs["y"]!.clone();
  y.data[3] = y.data[3]! + delta;
  const path = join(dir, `tampered-${Math.abs(delta)}-${tolerance?.atol ?? "case"}.safetensors`);
  const stated =
    tolerance === undefined
      ? c.meta.tolerance
      : { ...c.meta.tolerance, "out.y": { ...tolerance, reason: "widened for the test" } };
  saveCase(path, {
    meta: { ...c.meta, tolerance: stated },
    inputs: c.inputs,
    outputs: { ...c.outputs, y },
    cotangents: c.cotangents,
    grads: c.grads,
  });
  return path;
}

describe.skipIf(!hasGcc)("examples/c/check.c", () => {
  beforeAll(() => {
    execFileSync(
      "gcc",
      [
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-o",
        exe,
        join(__dirname, "check.c"),
        "-lm",
      ],
      { stdio: "pipe" },
    );
  });

  test("every bundled softmax and layer_norm float64 case passes, one line each", () => {
    const files = [...f64Cases("softmax"), ...f64Cases("layer_norm")].filter(
      (f) => !otherConvention(f),
    );
    const r = check(files);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines.length).toBe(files.length);
    for (const l of lines)
      expect(l).toMatch(
        /^PASS (softmax|layer_norm)\/f64\/\S+ {2}max_abs_err \S+ {2}\(rtol \S+, atol \S+\)$/,
      );
    expect(r.out).toContain("PASS softmax/f64/neginf_n3_m8");
    expect(r.out).toContain("PASS layer_norm/f64/n4_d6_eps0.1");
  });

  test("a tampered output fails with the worst element; the case's stated tolerance is the one used", () => {
    const c = loadCase(join(CASES, "layer_norm", "f64", "n7_d12.safetensors"));
    const bad = check([tampered(c, 1e-9)]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(
      new RegExp(
        String.raw`^FAIL layer_norm\/f64\/n7_d12 {2}1 of 84 elements outside \|` +
          String.raw`a - e\| <= atol \+ rtol\*\|e\| \(rtol 1e-13, atol 2.47e-13\)` +
          String.raw`; worst at flat index 3: `,
      ),
    );
    // the same change within a tolerance the case states passes
    const wide = check([tampered(c, 1e-9, { rtol: 0, atol: 1e-8 })]);
    expect(wide.code).toBe(0);
    expect(wide.out).toContain("(rtol 0, atol 1e-08)");
  });

  test("cases of conventions it does not compute (axis, bias, normalized_axes) are skipped, saying which", () => {
    const files = [...f64Cases("softmax"), ...f64Cases("layer_norm")].filter(otherConvention);
    expect(files.length).toBeGreaterThan(0);
    const r = check(files);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines.length).toBe(files.length);
    for (const l of lines)
      expect(l).toMatch(
        new RegExp(
          String.raw`^SKIP (softmax|layer_norm)\/f64\/\S+: config\.(axis|bias|nor` +
            String.raw`malized_axes) is a convention this program does not compute$`,
        ),
      );
  });

  test("other formulas and float32 cases are skipped, saying why", () => {
    const r = check([
      join(CASES, "relu", "f64", "n7_d12.safetensors"),
      join(CASES, "softmax", "f32", "n7_m12.safetensors"),
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      "SKIP relu/f64/n7_d12: formula relu is not one this program " +
        "recomputes\nSKIP softmax/f32/n7_m12: dtype F32 (this program reads F64 cases)\n",
    );
  });

  test("unreadable input: exit 2 with a message naming the file", () => {
    const short = join(dir, "short.safetensors");
    writeFileSync(short, Buffer.from([1, 2, 3]));
    const huge = join(dir, "huge.safetensors");
    writeFileSync(huge, Buffer.from([255, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
    const r = check([
      short,
      huge,
      join(dir, "missing.safetensors"),
      ...f64Cases("softmax")
        .filter((f) => !otherConvention(f))
        .slice(0, 1),
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`check: ${short}: shorter than the 8-byte header length`);
    expect(r.err).toContain(`check: ${huge}: the header length is larger than the file`);
    expect(r.err).toContain("missing.safetensors: No such file or directory");
    expect(r.out).toMatch(/^PASS softmax\/f64\//);
    expect(check([]).code).toBe(2);
  });
});
