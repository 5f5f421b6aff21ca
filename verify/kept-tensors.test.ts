/**
 * Kept tensors (docs/PROTOCOL.md, "Kept tensors"): a large input is sent once and referenced
 * while the program keeps it; a changed tensor is sent again; references the program does not
 * hold, and keeps it never negotiated, are refused with messages that say so.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import { ProcessImplementation } from "./process.js";
import { KEEP_MIN_BYTES, checkHello } from "./protocol.js";
import { PYTHON, pythonCanImport } from "../io/python.testing.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const IMPL = join("examples", "numpy", "impl.py");
const numpy = pythonCanImport("numpy");

/** Feed raw bytes to the NumPy example, close its stdin, and return its answer lines and stderr. */
function raw(
  chunks: readonly (string | Uint8Array)[],
): Promise<{ lines: Record<string, unknown>[]; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [IMPL], { cwd: repo, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      // each answer line, then the frames it declares
      const all = Buffer.concat(out);
      const lines: Record<string, unknown>[] = [];
      for (let at = 0; at < all.length; ) {
        const nl = all.indexOf(10, at);
        const line = JSON.parse(all.subarray(at, nl).toString("utf8")) as Record<string, unknown>;
        lines.push(line);
        at = nl + 1 + ((line["frames"] as number[] | undefined) ?? []).reduce((a, b) => a + b, 0);
      }
      resolve({ lines, stderr: err, code });
    });
    for (const c of chunks) child.stdin.write(c);
    child.stdin.end();
  });
}

const hello = (keep: boolean) =>
  JSON.stringify({
    id: 1,
    method: "hello",
    params: { protocol: 1, binary: true, ...(keep ? { keep: true } : {}) },
  }) + "\n";
const forward = (id: number, x: Record<string, unknown>, frames?: number[]) =>
  JSON.stringify({
    id,
    ...(frames ? { frames } : {}),
    method: "forward",
    params: { formula: "relu", config: {}, inputs: { x } },
  }) + "\n";
const errorOf = (line: Record<string, unknown> | undefined): string =>
  (line?.["error"] as { message?: string } | undefined)?.message ?? "(no error)";

describe.skipIf(!numpy)("kept tensors with the NumPy example", () => {
  it("sends a large input once, references it while kept, and sends it again when changed or dropped", async () => {
    const n = KEEP_MIN_BYTES / 8;
    const x = new Tensor(
      "f64",
      [n],
      Float64Array.from({ length: n }, (_, i) => Math.sin(i) - 0.25),
    );
    const other = new Tensor(
      "f64",
      [n],
      Float64Array.from({ length: n }, (_, i) => Math.cos(i)),
    );
    const impl = await ProcessImplementation.start(`${PYTHON} ${IMPL}`, {
      timeoutMs: 60_000,
      cwd: repo,
    });
    try {
      expect(impl.hello.keep).toBe(true);
      const relu = (t: Tensor) => Float64Array.from(t.data, (v) => Math.max(v, 0));
      const sent: number[] = [];
      const run = async (t: Tensor) => {
        const y = (await impl.forward({ formula: "relu", config: {}, inputs: { x: t } })).outputs[
          "y"
        ]!;
        sent.push(impl.lastTiming!.requestBytes);
        expect(Array.from(y.data)).toEqual(Array.from(relu(t)));
      };
      await run(x); // sent in full, kept
      await run(x); // a reference
      x.data[7] = 3.5; // changed in place: sent again
      await run(x);
      await run(other); // x is not referenced, so the program drops it
      await run(x); // sent again
      const full = KEEP_MIN_BYTES;
      expect(sent[0]).toBeGreaterThan(full);
      expect(sent[1]).toBeLessThan(1000);
      expect(sent[2]).toBeGreaterThan(full);
      expect(sent[3]).toBeGreaterThan(full);
      expect(sent[4]).toBeGreaterThan(full);
    } finally {
      await impl.close();
    }
  });

  it(
    "refuses a reference to a tensor it does not keep, a reference that " +
      "misstates it, and keep without negotiation",
    async () => {
      const bytes = new Uint8Array(new Float64Array([-1, 2]).buffer);
      const kept = await raw([
        hello(true),
        forward(2, { dtype: "f64", shape: [2], ref: "t9" }),
        forward(3, { dtype: "f64", shape: [2], frame: 0, keep: "a" }, [16]),
        bytes,
        forward(4, { dtype: "f64", shape: [1, 2], ref: "a" }),
        forward(5, { dtype: "f64", shape: [2], ref: "a" }),
        forward(6, { dtype: "f64", shape: [2], ref: "a", frame: 0 }, [16]),
        bytes,
      ]);
      expect((kept.lines[0]!["result"] as Record<string, unknown>)["keep"]).toBe(true);
      expect(errorOf(kept.lines[1])).toBe(
        "forward relu: input x: no kept tensor 't9' (kept: none); a reference " +
          "names a tensor that the previous request kept or referenced",
      );
      expect(kept.lines[2]!["result"]).toBeDefined();
      expect(errorOf(kept.lines[3])).toBe(
        "forward relu: input x: kept tensor 'a' is f64 [2], not f64 [1, 2]",
      );
      // the failed request 4 left what request 3 kept in place
      expect(kept.lines[4]!["result"]).toBeDefined();
      expect(errorOf(kept.lines[5])).toBe(
        `forward relu: input x: a kept-tensor reference is {"dtype", "shape", ` +
          `"ref"} and nothing else, got keys ['dtype', 'frame', 'ref', 'shape']`,
      );
      expect(kept.code).toBe(0);

      const plain = await raw([
        hello(false),
        forward(2, { dtype: "f64", shape: [2], frame: 0, keep: "a" }, [16]),
        bytes,
        forward(3, { dtype: "f64", shape: [2], ref: "a" }),
      ]);
      expect((plain.lines[0]!["result"] as Record<string, unknown>)["keep"]).toBeUndefined();
      expect(errorOf(plain.lines[1])).toBe(
        'forward relu: input x: "ref" and "keep" need kept tensors, which were not negotiated in hello',
      );
      expect(errorOf(plain.lines[2])).toBe(
        'forward relu: input x: "ref" and "keep" need kept tensors, which were not negotiated in hello',
      );
    },
  );

  it("stops, saying so, when a request's frame is shorter than its line announced", async () => {
    const r = await raw([
      hello(true),
      forward(2, { dtype: "f64", shape: [10], frame: 0, keep: "a" }, [80]),
      new Uint8Array(40),
    ]);
    expect(r.lines.length).toBe(1);
    expect(r.stderr).toContain(
      "input ended inside a binary frame: 40 of 80 bytes arrived; stopping",
    );
  });
});

describe("kept tensors in hello", () => {
  it("takes keep as a boolean and nothing else", () => {
    const base = { name: "p", formulas: ["relu"], backward: true, dtypes: ["f64"], binary: true };
    expect(checkHello({ ...base, keep: true }, "hello").keep).toBe(true);
    expect(checkHello(base, "hello").keep).toBe(false);
    expect(() => checkHello({ ...base, keep: "yes" }, "hello")).toThrow(
      'hello: "keep" must be a boolean when present, got the string "yes"',
    );
  });
});
