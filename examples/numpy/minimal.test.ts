/**
 * The Python package as a user installs it: `pip install ./python` into a fresh virtual
 * environment (Debian's /usr/bin/python3, its NumPy through --system-site-packages, no network:
 * --no-index --no-build-isolation), then the 20-line NumPy adapter examples/numpy/minimal.py
 * (softmax with a backward pass, layer_norm forward) passes `specformer verify`, and the
 * package's own tests and doctests pass against the installed copy.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { recordingIo } from "../../cli/main.testing.js";
import { main } from "../../cli/main.js";

const ROOT = join(__dirname, "..", "..");
const PYTHON = "/usr/bin/python3";

function missing(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import numpy, venv, ensurepip"], { stdio: "pipe" });
    return undefined;
  } catch {
    return `skipped: ${PYTHON} lacks numpy or venv (apt-get install python3-numpy python3-venv)`;
  }
}
const skip = missing();
if (skip !== undefined) console.warn(skip);

let venv = "";

describe.skipIf(skip !== undefined)("pip install ./python, then a 20-line NumPy adapter", () => {
  beforeAll(() => {
    venv = join(mkdtempSync(join(tmpdir(), "specformer-venv-")), "venv");
    execFileSync(PYTHON, ["-m", "venv", "--system-site-packages", venv], { stdio: "pipe" });
    execFileSync(
      join(venv, "bin", "pip"),
      ["install", "--no-index", "--no-build-isolation", "--quiet", join(ROOT, "python")],
      { stdio: "pipe", cwd: tmpdir() },
    );
  }, 180_000);

  test("the package is installed in the venv, not read from the checkout", () => {
    const where = execFileSync(
      join(venv, "bin", "python"),
      ["-c", "import specformer; print(specformer.__file__)"],
      { encoding: "utf8", cwd: tmpdir() },
    ).trim();
    expect(where.startsWith(join(venv, "lib"))).toBe(true);
  });

  test("examples/numpy/minimal.py (20 lines of math and one serve call) passes specformer verify", async () => {
    expect(
      readFileSync(join(ROOT, "examples", "numpy", "minimal.py"), "utf8")
        .trimEnd()
        .split("\n").length,
    ).toBeLessThanOrEqual(30);
    const { io, out, err } = recordingIo();
    const code = await main(
      [
        "verify",
        "--impl",
        `${join(venv, "bin", "python")} ${join(ROOT, "examples", "numpy", "minimal.py")}`,
        "--json",
      ],
      io,
    );
    expect(err.join("")).toBe("");
    expect(code).toBe(0);
    const report = JSON.parse(out.join("")) as {
      ok: boolean;
      implementation: { name: string };
      results: { kind: string; formula: string; status: string }[];
    };
    expect(report.implementation.name).toBe("minimal numpy");
    const passed = (kind: string, formula: string) =>
      report.results.filter((r) => r.kind === kind && r.formula === formula && r.status === "pass")
        .length;
    expect(passed("golden", "softmax")).toBeGreaterThan(0);
    expect(passed("golden", "layer_norm")).toBeGreaterThan(0);
    expect(passed("gradient", "softmax")).toBe(1);
    expect(report.results.filter((r) => r.status === "fail" || r.status === "fault")).toEqual([]);
  }, 180_000);

  test("the package's tests and doctests pass against the installed copy", () => {
    const r = execFileSync(
      join(venv, "bin", "python"),
      ["-m", "unittest", "discover", "-s", join(ROOT, "python", "tests")],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: tmpdir() },
    );
    expect(r).toContain("specformer.golden: ");
  }, 180_000);
});
