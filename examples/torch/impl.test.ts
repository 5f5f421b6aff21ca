/**
 * PyTorch through the process protocol: its goldens pass, and the same program with a kernel
 * whose softmax running maximum starts at −10000 (SPECFORMER_TORCH_PLANT) fails exactly the
 * extreme-magnitude goldens (rows entirely below −1e4), not the ordinary ones.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = "/usr/bin/python3";

function torchMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import torch, numpy"], { stdio: "pipe" });
    return undefined;
  } catch {
    return `skipped: \`${PYTHON} -c "import torch, numpy"\` failed; install python3-torch to run the PyTorch example`;
  }
}
const skip = torchMissing();
if (skip !== undefined) console.warn(skip);

interface Row {
  readonly kind: string;
  readonly case: string;
  readonly status: string;
}

function verify(env: string): { code: number; rows: Row[] } {
  const cmd = `${env}${PYTHON} examples/torch/impl.py`;
  const r = spawnSync(
    process.execPath,
    [
      "bin/specformer.mjs",
      "verify",
      "--impl",
      cmd,
      "--formulas",
      "softmax,attention,cross_entropy",
      "--json",
    ],
    { cwd: repo, encoding: "utf8", timeout: 240_000 },
  );
  const report = JSON.parse(r.stdout) as { results: Row[] };
  return { code: r.status ?? -1, rows: report.results.filter((x) => x.kind === "golden") };
}

describe.skipIf(skip !== undefined)("examples/torch", () => {
  it("passes the goldens of softmax, attention and cross_entropy, extreme magnitudes included", () => {
    const { code, rows } = verify("");
    expect(rows.filter((r) => r.status !== "pass")).toEqual([]);
    expect(rows.filter((r) => r.case.includes("below1e4")).length).toBeGreaterThanOrEqual(10);
    expect(code).toBe(0);
  }, 300_000);

  it("with the running maximum seeded at −10000 fails every golden whose rows lie below −1e4, and only those", () => {
    const { code, rows } = verify("SPECFORMER_TORCH_PLANT=running_max_minus_10000 ");
    const failed = rows.filter((r) => r.status === "fail").map((r) => r.case);
    const extreme = rows.filter((r) => r.case.includes("below1e4")).map((r) => r.case);
    expect(code).toBe(1);
    expect(extreme.length).toBeGreaterThanOrEqual(10);
    // the plant replaces softmax (attention's included) and nothing else: those rows turn into 0/0
    for (const c of extreme.filter((c) => c.startsWith("softmax/") || c.startsWith("attention/")))
      expect(failed, c).toContain(c);
    expect(failed.every((c) => c.includes("below1e4"))).toBe(true);
  }, 300_000);
});
