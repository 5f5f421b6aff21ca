import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ModeChooser } from "./pool.js";

// The worker-pool tests need a runtime nobody started: test files may share a module instance
// (vitest's isolate: false), so they load fresh copies of matmul.js and pool.js.
let configureMatmul: typeof import("./matmul.js").configureMatmul;
let matmul: typeof import("./matmul.js").matmul;
let shutdownMatmulWorkers: typeof import("./matmul.js").shutdownMatmulWorkers;
let gemmRuntime: typeof import("./pool.js").gemmRuntime;
let gemmRuntimeStarted: typeof import("./pool.js").gemmRuntimeStarted;

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

async function untilReady(workers: number): Promise<void> {
  const rt = gemmRuntime();
  for (let waited = 0; rt.readyWorkers < workers && waited < 20_000; waited += 10)
    await new Promise((r) => setTimeout(r, 10));
}

function square(n: number, value: number): Float64Array {
  return new Float64Array(n * n).fill(value);
}

describe("ModeChooser", () => {
  it("tries workers first, then serial, then keeps the faster way and re-checks every 16th job", () => {
    const chooser = new ModeChooser();
    const work = 1e6;
    const choices: boolean[] = [];
    // Workers take 2 ms per job, the caller alone 1 ms (a machine busy with other processes).
    for (let job = 0; job < 48; job++) {
      const parallel = chooser.parallel(work);
      choices.push(parallel);
      chooser.record(work, parallel, parallel ? 2 : 1);
    }
    expect(choices.slice(0, 2)).toEqual([true, false]);
    // Jobs 16, 32, 48 (1-based) re-check the slower way; all others run serially.
    expect(choices.map((p, i) => (p ? i + 1 : 0)).filter((i) => i > 0)).toEqual([1, 16, 32, 48]);
    // Other size classes are judged separately.
    expect(chooser.parallel(work * 4)).toBe(true);
  });

  it("switches back to workers once they are faster again", () => {
    const chooser = new ModeChooser();
    const work = 1e6;
    let serialMs = 1;
    const choices: boolean[] = [];
    for (let job = 0; job < 60; job++) {
      if (job === 10) serialMs = 3; // the other processes are gone: workers (2 ms) now win
      const parallel = chooser.parallel(work);
      choices.push(parallel);
      chooser.record(work, parallel, parallel ? 2 : serialMs);
    }
    expect(choices.slice(40)).toEqual(choices.slice(40).map((_, i) => (41 + i) % 16 !== 0));
  });
});

// The tests below share one runtime and run in order.
describe("worker pool", () => {
  beforeAll(async () => {
    vi.resetModules();
    ({ configureMatmul, matmul, shutdownMatmulWorkers } = await import("./matmul.js"));
    ({ gemmRuntime, gemmRuntimeStarted } = await import("./pool.js"));
  });
  it("is not created by small products (lazy start)", () => {
    const c = new Float64Array(4);
    matmul({ dtype: "f64", a: square(2, 1), b: square(2, 2), c, batch: 1, M: 2, N: 2, K: 2 });
    expect(Array.from(c)).toEqual([4, 4, 4, 4]);
    expect(gemmRuntimeStarted()).toBe(false);
  });

  it("starts workers on the first parallel product, and they take tasks", async () => {
    configureMatmul({ threads: 2, workers: "always" });
    expect(gemmRuntime().readyWorkers).toBe(0);
    const n = 300;
    const c = new Float64Array(n * n);
    matmul({ dtype: "f64", a: square(n, 1), b: square(n, 0.5), c, batch: 1, M: n, N: n, K: n });
    expect(c.every((v) => v === 150)).toBe(true);
    await untilReady(1);
    const rt = gemmRuntime();
    expect(rt.readyWorkers).toBe(1);
    const before = rt.tasksRunBy(1);
    // Back-to-back products until the worker has taken part (on an idle machine, the first
    // one; a machine busy with other processes may leave the worker unscheduled for a while).
    const a = square(n, 1);
    const b = square(n, 0.25);
    for (let i = 0; i < 2000 && rt.tasksRunBy(1) === before; i++) {
      c.fill(NaN);
      matmul({ dtype: "f64", a, b, c, batch: 1, M: n, N: n, K: n });
      expect(c.every((v) => v === 75)).toBe(true);
    }
    expect(rt.tasksRunBy(1)).toBeGreaterThan(before);
  });

  it("reports a trap inside the kernel as an error and keeps working afterwards", () => {
    const rt = gemmRuntime();
    const outside = rt.memory.buffer.byteLength; // first byte past the memory
    const bad = {
      M: 4,
      N: 4,
      K: 4,
      A: outside,
      rsA: 4,
      csA: 1,
      B: outside,
      rsB: 4,
      csB: 1,
      C: rt.heapStart,
      ldc: 4,
    };
    expect(() => rt.execute([bad, bad, bad, bad], true)).toThrow(/out of bounds/);
    const n = 300;
    const c = new Float64Array(n * n);
    matmul({ dtype: "f64", a: square(n, 2), b: square(n, 0.5), c, batch: 1, M: n, N: n, K: n });
    expect(c.every((v) => v === 300)).toBe(true);
  });

  it("restarts workers lazily after shutdown", async () => {
    await shutdownMatmulWorkers();
    const rt = gemmRuntime();
    expect(rt.readyWorkers).toBe(0);
    const n = 300;
    const c = new Float64Array(n * n);
    matmul({ dtype: "f64", a: square(n, 1), b: square(n, 1), c, batch: 1, M: n, N: n, K: n });
    expect(c.every((v) => v === 300)).toBe(true);
    await untilReady(1);
    expect(rt.readyWorkers).toBe(1);
    await shutdownMatmulWorkers();
  });

  it("rejects a thread count outside [1, 16]", () => {
    expect(() => configureMatmul({ threads: 0 })).toThrow(
      "matmul threads must be an integer in [1, 16], got 0",
    );
    expect(() => configureMatmul({ threads: 2.5 })).toThrow(
      "matmul threads must be an integer in [1, 16], got 2.5",
    );
  });

  it("never keeps a process alive: a script that used the workers exits by itself", () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-pool-"));
    try {
      const script = join(dir, "child.mts");
      const matmulPath = join(repoRoot, "autodiff/kernels/matmul.ts");
      writeFileSync(
        script,
        `import { configureMatmul, matmul } from ${JSON.stringify(matmulPath)};
configureMatmul({ threads: 2 });
const n = 300;
const a = new Float64Array(n * n).fill(1);
const c = new Float64Array(n * n);
for (let i = 0; i < 20; i++) {
  matmul({ dtype: "f64", a, b: a, c, batch: 1, M: n, N: n, K: n });
  await new Promise((r) => setTimeout(r, 5)); // let the worker boot and join
}
console.log("done", c[0]);
`,
      );
      const t0 = Date.now();
      const child = spawnSync(process.execPath, ["--import", "tsx", script], {
        cwd: repoRoot,
        timeout: 30_000,
        encoding: "utf8",
      });
      expect(child.stderr).toBe("");
      expect(child.status).toBe(0);
      expect(child.stdout.trim()).toBe("done 300");
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
