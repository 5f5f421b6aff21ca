/**
 * golden/FORMAT.md is a contract other languages read: its byte dump must be what our writer
 * produces, and its Python, C and Rust readers must print what our reader reads.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import { loadCase, metaToJSON, saveCase } from "./cases-io.js";
import type { CaseMeta, CaseToSave } from "./cases-io.js";
import { readSafetensorsFile } from "../io/safetensors.js";

const DOC = readFileSync(new URL("./FORMAT.md", import.meta.url), "utf8");

function example(kind: string): string {
  const m = new RegExp(`<!-- example:${kind} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(DOC);
  if (m === null) throw new Error(`FORMAT.md has no example:${kind} block`);
  return m[1]!;
}

/** The first of `candidates` that runs with `--version`, or null. */
function tool(...candidates: string[]): string | null {
  for (const c of candidates) {
    try {
      execFileSync(c, ["--version"], { stdio: "ignore" });
      return c;
    } catch {
      // try the next one
    }
  }
  return null;
}

const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : null;
const CC = tool("cc", "gcc", "clang");
const RUSTC = tool("rustc", join(homedir(), ".cargo/bin/rustc"));

const reluMeta: CaseMeta = {
  format: "specformer-golden/1",
  case: "relu/f64/n2",
  formula: "relu",
  config: {},
  dims: { n: 2 },
  dtype: "f64",
  seed: 0,
  torch_version: "1.13.0",
  generator: "FORMAT.md example",
  oracle: "torch.relu",
  tolerance: {
    "out.y": { rtol: 0, atol: 0, reason: "exact" },
    "grad.x": { rtol: 0, atol: 0, reason: "exact" },
  },
};
const relu: CaseToSave = {
  meta: reluMeta,
  inputs: { x: Tensor.from([-1.5, 2]) },
  outputs: { y: Tensor.from([0, 2]) },
  cotangents: { y: Tensor.from([0.5, -1]) },
  grads: { x: Tensor.from([0, -1]) },
};

/** A second case exercising F32 and I32 in the readers. */
const embedding: CaseToSave = {
  meta: {
    ...reluMeta,
    case: "embedding/f32/n3",
    formula: "embedding",
    dtype: "f32",
    dims: { n: 3, V: 3, d_model: 2 },
    tolerance: {},
  },
  inputs: {
    tokens: Tensor.from([2, 0, -7], "i32"),
    E: Tensor.from(
      [
        [0.1, -2],
        [3.5, 1e-30],
        [Math.fround(1 / 3), 65504],
      ],
      "f32",
    ),
  },
  outputs: {
    y: Tensor.from(
      [
        [0.1, -2],
        [3.5, 1e-30],
        [1, 2],
      ],
      "f32",
    ),
  },
};

function hexdump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let o = 0; o < bytes.length; o += 16) {
    const row = bytes.subarray(o, o + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (b) =>
      b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".",
    ).join("");
    lines.push(`${o.toString(16).padStart(4, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n") + "\n";
}

const dir = mkdtempSync(join(tmpdir(), "format-doc-"));
const reluPath = join(dir, "cases/relu/f64/n2.safetensors");
const embPath = join(dir, "cases/embedding/f32/n3.safetensors");
saveCase(reluPath, relu);
saveCase(embPath, embedding);

/** dtype, shape and values of a tensor as our reader sees them. */
function expectedPrint(
  path: string,
  name: string,
): { dtype: string; shape: string; values: number[] } {
  const t = readSafetensorsFile(path).tensors.get(name)!;
  return { dtype: t.dtype.toUpperCase(), shape: t.shape.join(" "), values: Array.from(t.data) };
}

/** Parse a reader's output; float32 values printed with float32's shortest digits are rounded back. */
function parsePrint(out: string): { dtype: string; shape: string; values: number[] } {
  const [dtype, shape, ...values] = out.trimEnd().split("\n");
  return {
    dtype: dtype!,
    shape: shape!,
    values: values.map((v) => (dtype === "F32" ? Math.fround(Number(v)) : Number(v))),
  };
}

const PROBES: Array<[string, string]> = [
  [reluPath, "in.x"],
  [reluPath, "grad.x"],
  [embPath, "in.tokens"],
  [embPath, "in.E"],
];

describe("FORMAT.md", () => {
  it("shows the bytes our writer produces for the worked example", () => {
    expect(hexdump(readFileSync(reluPath))).toBe(example("hexdump"));
    expect(DOC).toContain(`\`\`\`json\n${metaToJSON(reluMeta)}\n\`\`\``);
    expect(DOC).toContain(`is these ${readFileSync(reluPath).length} bytes`);
    expect(loadCase(reluPath).grads.x!.toNested()).toEqual([0, -1]);
  });

  it.skipIf(PYTHON === null)("Python reader prints what our reader reads", () => {
    const script = join(dir, "read_case.py");
    writeFileSync(script, example("python"));
    for (const [path, name] of PROBES) {
      const out = execFileSync(PYTHON!, [script, path, name]).toString();
      const [first, ...rest] = out.split("\n");
      const meta = loadCase(path).meta;
      expect(first!.slice(0, meta.case.length + 1)).toBe(`${meta.case} `);
      expect(JSON.parse(first!.slice(meta.case.length + 1))).toEqual(meta.tolerance[name] ?? null);
      expect(parsePrint(rest.join("\n"))).toEqual(expectedPrint(path, name));
    }
  });

  it.skipIf(CC === null)(
    "C reader compiles without warnings and prints what our reader reads",
    () => {
      const src = join(dir, "read_tensor.c");
      const bin = join(dir, "read_tensor_c");
      writeFileSync(src, example("c"));
      execFileSync(CC!, ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-o", bin, src]);
      for (const [path, name] of PROBES) {
        expect(parsePrint(execFileSync(bin, [path, name]).toString())).toEqual(
          expectedPrint(path, name),
        );
      }
    },
  );

  it.skipIf(RUSTC === null)(
    "Rust reader compiles and prints what our reader reads",
    () => {
      const src = join(dir, "read_tensor.rs");
      const bin = join(dir, "read_tensor_rs");
      writeFileSync(src, example("rust"));
      execFileSync(RUSTC!, ["--edition", "2021", "-o", bin, src], { stdio: "pipe" });
      for (const [path, name] of PROBES) {
        expect(parsePrint(execFileSync(bin, [path, name]).toString())).toEqual(
          expectedPrint(path, name),
        );
      }
    },
    60_000,
  );
});
