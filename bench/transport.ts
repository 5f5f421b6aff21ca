/**
 * The process protocol's transport, measured: a 1.25 M-element float64 tensor (10 MB) sent to a
 * program and answered back, with JSON numbers and with binary frames (docs/PROTOCOL.md, "Binary
 * tensors"), through the Node echo fixture (identity: transport alone) and the NumPy example
 * (`relu` through specformer.serve: transport plus Python's handling). Each answer is checked
 * against what was sent before its time counts. Also records which BLAS the NumPy peer loaded
 * (from its /proc/PID/maps), since a peer on the reference netlib BLAS is not a fair one.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Tensor } from "../autodiff/tensor.js";
import { ProcessImplementation } from "../verify/process.js";
import { timingOf, type Timing } from "./workloads.js";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
export const PYTHON = "/usr/bin/python3";

export interface TransportRow {
  readonly peer: "node-echo" | "numpy";
  readonly transport: "json" | "binary";
  readonly elements: number;
  readonly timing?: Timing;
  readonly skipped?: string;
}

export interface TransportResults {
  readonly rows: TransportRow[];
  /** binary speed-up (JSON median / binary median) per peer. */
  readonly speedup: Partial<Record<TransportRow["peer"], number>>;
  /** BLAS libraries mapped by the NumPy peer process, and whether it is the reference netlib BLAS. */
  readonly numpyBlas?: { readonly libraries: readonly string[]; readonly netlib: boolean };
}

/** The shared libraries a running process has mapped whose names say BLAS or LAPACK. */
function blasLibrariesOf(pid: number): string[] {
  const libs = new Set<string>();
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
      const p = line.trim().split(/\s+/)[5];
      if (p !== undefined && /blas|lapack|mkl/i.test(path.basename(p))) libs.add(p);
    }
  } catch {
    // not Linux, or the process is gone
  }
  return [...libs].sort();
}

/**
 * Is this the reference (netlib) BLAS? Debian installs it as .../blas/libblas.so.3 (the
 * alternatives' default without OpenBLAS); OpenBLAS, BLIS and MKL name themselves.
 */
export function isNetlib(libs: readonly string[]): boolean {
  const blas = libs.filter((l) => /blas/i.test(path.basename(l)));
  return (
    blas.length > 0 &&
    blas.every((l) => !/openblas|blis|mkl|atlas/i.test(l) && /\/libblas\.so/.test(realpath(l)))
  );
}

/** BLAS libraries of a process or, when it is the shell that started the program, of its children. */
function blasOfTree(pid: number): string[] {
  const own = blasLibrariesOf(pid);
  if (own.length > 0) return own;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
  return [...new Set(children.flatMap((c) => blasLibrariesOf(c)))].sort();
}

function realpath(p: string): string {
  try {
    return execFileSync("readlink", ["-f", p], { encoding: "utf8" }).trim();
  } catch {
    return p;
  }
}

function payload(n: number): Tensor {
  // values of every sign and many magnitudes (so relu keeps half), deterministic
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.7) * 10 ** ((i % 9) - 4);
  return new Tensor("f64", [1000, n / 1000], data);
}

function sameBits(a: Float64Array | Float32Array | Int32Array, b: Float64Array): boolean {
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return x.equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function measure(
  peer: TransportRow["peer"],
  transport: TransportRow["transport"],
  x: Tensor,
  reps: number,
  log: (l: string) => void,
): Promise<{ row: TransportRow; blas?: string[] }> {
  const cmd =
    peer === "node-echo"
      ? `${JSON.stringify(process.execPath)} verify/fixtures/echo.mjs`
      : `${PYTHON} examples/numpy/impl.py`;
  const formula = peer === "node-echo" ? "identity" : "relu";
  const expected =
    peer === "node-echo"
      ? (x.data as Float64Array)
      : Float64Array.from(x.data, (v) => (v > 0 ? v : 0));
  const impl = await ProcessImplementation.start(cmd, {
    timeoutMs: 600_000,
    cwd: ROOT,
    binary: transport === "binary",
  });
  try {
    if (impl.transport !== transport)
      throw new Error(`${peer} answered hello with transport ${impl.transport}, not ${transport}`);
    const blas = peer === "numpy" && impl.pid !== undefined ? blasOfTree(impl.pid) : undefined;
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const y = (await impl.forward({ formula, config: {}, inputs: { x } })).outputs["y"]!;
      times.push(performance.now() - t0);
      // relu of -0 and of positive values are exact in both; compare bits, not tolerances
      if (!sameBits(y.data, expected))
        throw new Error(
          `${peer} ${transport}: the answer differs from what was expected, bit for bit`,
        );
    }
    const timing = timingOf(times);
    log(
      `transport ${peer} ${transport}: ${timing.medianMs.toFixed(0)} ms for ` +
        `${x.size} float64 there and back (${reps} runs)`,
    );
    return { row: { peer, transport, elements: x.size, timing }, ...(blas ? { blas } : {}) };
  } finally {
    await impl.close();
  }
}

/** Round trips of `elements` float64 (default 1.25 M) through each peer, JSON then binary. */
export async function transportBench(opts: {
  elements?: number;
  repsJson: number;
  repsBinary: number;
  numpy: boolean;
  log: (l: string) => void;
}): Promise<TransportResults> {
  const x = payload(opts.elements ?? 1_250_000);
  const rows: TransportRow[] = [];
  let numpyBlas: TransportResults["numpyBlas"];
  for (const peer of ["node-echo", "numpy"] as const) {
    if (peer === "numpy" && !opts.numpy) {
      rows.push({
        peer,
        transport: "json",
        elements: x.size,
        skipped: `${PYTHON} with numpy not available`,
      });
      continue;
    }
    for (const transport of ["json", "binary"] as const) {
      try {
        const { row, blas } = await measure(
          peer,
          transport,
          x,
          transport === "json" ? opts.repsJson : opts.repsBinary,
          opts.log,
        );
        rows.push(row);
        if (blas !== undefined && numpyBlas === undefined)
          numpyBlas = { libraries: blas, netlib: isNetlib(blas) };
      } catch (e) {
        rows.push({
          peer,
          transport,
          elements: x.size,
          skipped: `failed: ${(e as Error).message.split("\n")[0]}`,
        });
        opts.log(`transport ${peer} ${transport} failed: ${(e as Error).message}`);
      }
    }
  }
  const speedup: TransportResults["speedup"] = {};
  for (const peer of ["node-echo", "numpy"] as const) {
    const j = rows.find((r) => r.peer === peer && r.transport === "json")?.timing;
    const b = rows.find((r) => r.peer === peer && r.transport === "binary")?.timing;
    if (j && b) speedup[peer] = j.medianMs / b.medianMs;
  }
  return { rows, speedup, ...(numpyBlas ? { numpyBlas } : {}) };
}
