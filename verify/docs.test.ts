/**
 * docs/VERIFY.md is checked against the code: its worked example (making golden cases with
 * golden/specformer_golden.py and PyTorch) is run and its output verified, its table of hints
 * names every hint, and the screenshot it shows exists.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { referenceImplementation } from "../reference/implementation.js";
import { HINT_IDS } from "./diagnose.js";
import { ProcessImplementation } from "./process.js";
import { PYTHON, pythonCanImport } from "../io/python.testing.js";
import { countsOf } from "./report.js";
import { verify } from "./run.js";

const ROOT = join(__dirname, "..");
const DOC = readFileSync(join(ROOT, "docs", "VERIFY.md"), "utf8");

function example(name: string): string {
  const m = new RegExp(`<!-- example:${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(DOC);
  if (m === null) throw new Error(`docs/VERIFY.md has no example:${name} block`);
  return m[1]!;
}

const hasTorch = pythonCanImport("torch, numpy");
if (!hasTorch)
  console.warn(
    "verify/docs.test.ts: the golden-making example is skipped — /usr/bin/python3 cannot import torch and numpy",
  );

describe("docs/VERIFY.md", () => {
  test.skipIf(!hasTorch)(
    "the worked example makes golden cases that the reference and the NumPy implementation pass",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "specformer-docs-"));
      const script = join(dir, "make_goldens.py");
      writeFileSync(script, example("goldens"));
      const out = join(dir, "my-goldens");
      const printed = execFileSync(PYTHON, [script, out], {
        cwd: ROOT,
        encoding: "utf8",
      });
      expect(printed).toBe("wrote layer_norm/f64/mine_n5_d48\nwrote layer_norm/f32/mine_n5_d48\n");
      expect(existsSync(join(out, "manifest.json"))).toBe(true);

      const ref = await verify(referenceImplementation(), { cases: [out] });
      expect(countsOf(ref.results, "golden")).toEqual({
        pass: 2,
        fail: 0,
        declined: 0,
        fault: 0,
        skipped: 0,
      });
      expect(ref.results.find((r) => r.kind === "gradient")?.status).toBe("pass");

      const numpy = await ProcessImplementation.start("/usr/bin/python3 examples/numpy/impl.py", {
        timeoutMs: 30_000,
        cwd: ROOT,
      });
      try {
        const r = await verify(numpy, { cases: [out] });
        expect(r.ok).toBe(true);
        expect(r.results.map((x) => `${x.kind}:${x.case}:${x.status}`)).toEqual([
          "golden:layer_norm/f32/mine_n5_d48:pass",
          "golden:layer_norm/f64/mine_n5_d48:pass",
          "gradient:layer_norm/f64/mine_n5_d48:pass",
        ]);
        // the gradients were compared too
        expect(r.results[0]!.tensors!.map((t) => t.name)).toEqual([
          "grad.beta",
          "grad.gamma",
          "grad.x",
          "out.y",
        ]);
      } finally {
        await numpy.close();
      }
    },
    60_000,
  );

  test("the table of hints names every hint", () => {
    const section = DOC.slice(
      DOC.indexOf("## Diagnosis hints"),
      DOC.indexOf("## When the implementation misbehaves"),
    );
    const named = new Set(
      [...section.matchAll(/^\| `([a-z-]+)`(?:, `([a-z-]+)`)? \|/gm)].flatMap((m) =>
        [m[1]!, m[2]].filter((x): x is string => x !== undefined),
      ),
    );
    expect([...named].sort()).toEqual([...HINT_IDS].sort());
  });

  test("the screenshot it shows exists", () => {
    expect(DOC).toContain("](img/verify-report.png)");
    expect(existsSync(join(ROOT, "docs", "img", "verify-report.png"))).toBe(true);
  });
});
