/**
 * A tiny run of the benchmark: every workload at a tiny size, once, on every engine available.
 * Checks the result file's structure and that every engine's result agrees with specformer's
 * float64 result; checks that the seeded values are the same in JavaScript and Python, and that
 * the agreement check fails on a wrong result.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINES, mergeWithPrevious, runBenchmarks, type Results } from "./run.js";
import { isNetlib } from "./transport.js";
import { agree, agreementTolerance, summarize } from "./workloads.js";
import { hashTokens, hashUniform } from "./seeded.js";
import { TorchPeer, torchUnavailable } from "./peers/torch.js";

const noTorch = torchUnavailable();

describe("bench transport and partial runs", () => {
  test("a partial run replaces only the parts it ran, and keeps the rest of the report", () => {
    const base = {
      date: "2026-01-01T00:00:00.000Z",
      mode: "full",
      machine: { cores: 2 },
      rows: [{ workload: "matmul 512", engine: "specformer", dtype: "f64" }],
      targets: [],
      notes: ["old note"],
    };
    const prev = {
      ...base,
      laws: { available: true, runs: 10 },
      startup: { date: "x", loadavg: [0], skipped: "old" },
    } as unknown as Results;
    const cur = {
      ...base,
      date: "2026-02-02T00:00:00.000Z",
      mode: "quick",
      rows: [],
      notes: ["new note"],
      startup: { date: "y", loadavg: [1], skipped: "new" },
    } as unknown as Results;
    const m = mergeWithPrevious(prev, cur, ["startup"]);
    expect(m.rows).toEqual(prev.rows);
    expect(m.date).toBe(prev.date);
    expect(m.laws).toEqual(prev.laws);
    expect(m.startup).toEqual(cur.startup);
    expect(m.notes).toEqual(["old note", "2026-02-02T00:00Z (--only startup): new note"]);
  });

  test("tells the reference netlib BLAS from optimised ones", () => {
    expect(isNetlib(["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"])).toBe(true);
    expect(isNetlib(["/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"])).toBe(false);
    expect(isNetlib(["/usr/lib/x86_64-linux-gnu/libopenblas.so.0"])).toBe(false);
    expect(isNetlib([])).toBe(false);
  });
});

describe("bench smoke run", () => {
  let results: Results;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "specformer-bench-"));
    results = await runBenchmarks({ mode: "smoke", outDir: dir, log: () => {} });
  }, 120_000);

  test("the transport part checked every answer bit for bit with both transports", () => {
    const t = results.transport!;
    const echo = t.rows.filter((r) => r.peer === "node-echo");
    expect(echo.map((r) => r.transport)).toEqual(["json", "binary"]);
    for (const r of t.rows) expect(r.skipped === undefined || r.peer === "numpy").toBe(true);
    expect(t.speedup["node-echo"]).toBeGreaterThan(0);
    // the tiny GPT through the NumPy example agrees with specformer's float64 result (or says why it did not run)
    const g = results.gptProcess!;
    if (g.skipped === undefined && noTorch === undefined) expect(g.agreement?.ok).toBe(true);
    else expect(g.skipped).toMatch(/numpy not available/);
  });

  test("results.json has the run's structure", () => {
    const onDisk = JSON.parse(readFileSync(path.join(dir, "results.json"), "utf8")) as Results;
    expect(onDisk.mode).toBe("smoke");
    expect(Number.isNaN(Date.parse(onDisk.date))).toBe(false);
    expect(onDisk.machine.cores).toBeGreaterThan(0);
    expect(onDisk.machine.node).toBe(process.version);
    expect(onDisk.machine.tfjs).toMatch(/^\d+\.\d+\.\d+$/);
    if (noTorch === undefined) expect(onDisk.machine.torch?.blas).toBeTruthy();
    else expect(onDisk.machine.torchSkipped).toBe(noTorch);
    const workloads = new Set(onDisk.rows.map((r) => r.workload));
    // 3 matmul variants at one size, one block size, one GPT
    expect([...workloads].filter((w) => w.startsWith("matmul"))).toHaveLength(3);
    expect([...workloads].filter((w) => w.startsWith("block"))).toHaveLength(1);
    expect([...workloads].filter((w) => w.startsWith("gpt"))).toHaveLength(1);
    for (const w of workloads) {
      for (const e of ENGINES)
        expect(
          onDisk.rows.some((r) => r.workload === w && r.engine === e),
          `${w}: a row for ${e}`,
        ).toBe(true);
    }
    expect(onDisk.gradcheck?.ok).toBe(true);
    expect(onDisk.laws).toBeDefined();
    // 6 engine targets (two block sizes), 2 transport speed-ups (Node echo, NumPy), GPT through
    // the protocol, npm start's wall time
    expect(onDisk.targets.map((t) => t.name)).toHaveLength(10);
    const md = readFileSync(path.join(dir, "RESULTS.md"), "utf8");
    for (const h of [
      "## Machine",
      "## Targets",
      "## Matrix multiply",
      "## GPT block forward + backward",
      "## GPT-2-small-shaped model",
      "## Gradient check",
      "## Laws",
      "## Process protocol transport",
      "## GPT-2 small verified through the process protocol",
      "## `npm start`",
    ])
      expect(md).toContain(h);
  });

  test("every engine that ran agrees with specformer's float64 result; skips say why", () => {
    for (const r of results.rows) {
      const what = `${r.workload} ${r.engine} ${r.dtype}`;
      if (r.skipped !== undefined) {
        // only tfjs's missing float64, or torch where it is absent
        expect(
          r.skipped === "tfjs has no float64" || (r.engine === "torch" && r.skipped === noTorch),
          `${what}: ${r.skipped}`,
        ).toBe(true);
        continue;
      }
      expect(r.timing!.medianMs, what).toBeGreaterThan(0);
      expect(r.agreement, what).toBeDefined();
      expect(r.agreement!.missing, what).toEqual([]);
      expect(
        r.agreement!.ok,
        `${what}: ${r.agreement!.worst} > ${r.agreement!.tolerance} at ${r.agreement!.worstTensor}`,
      ).toBe(true);
    }
  });
});

describe("agreement", () => {
  test("a result off by 1e-6 relative fails the float64 tolerance and passes the float32 one", () => {
    const a = hashUniform("t", 1, [64, 64], 1).data;
    const b = Float64Array.from(a, (v, i) => (i === 7 ? v + 1e-6 * 64 : v));
    const ref = { t: summarize("t", a) };
    const other = { t: summarize("t", b) };
    expect(agree(ref, other, agreementTolerance("f64", "f64", 64)).ok).toBe(false);
    expect(agree(ref, other, agreementTolerance("f64", "f32", 64)).ok).toBe(true);
    expect(agree(ref, {}, 1).missing).toEqual(["t"]);
  });

  test("tokens are ids below V", () => {
    const t = hashTokens("tokens", 3, [1000], 7).data;
    expect(Math.min(...t)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...t)).toBe(6);
  });
});

describe.skipIf(noTorch !== undefined)("seeded values are the same in Python", () => {
  let peer: TorchPeer;
  beforeAll(() => {
    peer = new TorchPeer();
  });
  afterAll(async () => {
    await peer.close();
  });
  test("hash_u in torch_peer.py equals hashUniform bit for bit", async () => {
    for (const [name, seed, hw, center] of [
      ["attn.c_attn.weight", 20240601, 0.108, 0],
      ["ln_1.weight", 7, 0.1, 1],
      ["ü-name", 0, 1, 0],
    ] as const) {
      const js = hashUniform(name, seed, [257], hw, "f64", center).data;
      const py = await peer.request<{ values: number[] }>({
        kind: "hash",
        name,
        seed,
        size: 257,
        halfWidth: hw,
        center,
      });
      expect(py.values).toEqual([...js]);
    }
  });
});
