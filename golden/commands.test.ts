import { describe, expect, it } from "vitest";
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import { SCHEMA_VERSION } from "../autodiff/wire.js";
import { loadCase, saveCase, writeManifest } from "./cases-io.js";
import type { CaseToSave } from "./cases-io.js";
import { compareFiles, formatBytes, goldenList, goldenShow } from "./commands.js";
import { writeSafetensorsFile } from "../io/safetensors.js";
import { GoldenFormatError } from "./error.js";

function ramp(shape: number[], scale = 1): Tensor {
  const t = new Tensor("f64", shape);
  for (let i = 0; i < t.size; i++) t.data[i] = scale * Math.sin(0.9 * i + 0.2);
  return t;
}

function golden(): { dir: string; path: string; c: CaseToSave } {
  const dir = mkdtempSync(join(tmpdir(), "cmd-"));
  const c: CaseToSave = {
    meta: {
      format: "specformer-golden/1",
      case: "layer_norm/f64/n3_d5",
      formula: "layer_norm",
      config: { eps: 1e-5 },
      dims: { n: 3, d: 5 },
      dtype: "f64",
      seed: 11,
      torch_version: "1.13.0",
      generator: "commands.test.ts",
      oracle: "torch.nn.functional.layer_norm",
      tolerance: { "out.y": { rtol: 1e-12, atol: 1e-12, reason: "K = d = 5" } },
      notes: "illustration",
    },
    inputs: {
      x: ramp([3, 5]),
      gamma: ramp([5], 2),
      beta: ramp([5], 3),
      tokens: Tensor.from([3, 1, 4], "i32"),
    },
    outputs: { y: ramp([3, 5], 5) },
    cotangents: { y: ramp([3, 5], 7) },
    grads: { x: ramp([3, 5], 11), gamma: ramp([5], 13), beta: ramp([5], 17) },
  };
  const path = join(dir, "cases/layer_norm/f64/n3_d5.safetensors");
  saveCase(path, c);
  saveCase(join(dir, "cases/relu/f64/n2.safetensors"), {
    meta: {
      ...c.meta,
      case: "relu/f64/n2",
      formula: "relu",
      dims: { n: 2 },
      tolerance: {},
      notes: "x",
    },
    inputs: { x: ramp([2]) },
    outputs: { y: ramp([2]) },
  });
  writeManifest(dir);
  return { dir, path, c };
}

describe("compareFiles", () => {
  it("names the changed element's index and exits 1 when one element moved by 1e-4", () => {
    const { dir, path } = golden();
    const c = loadCase(path);
    const y = c.outputs.y!.clone();
    y.data[7] = y.data[7]! + 1e-4; // [1, 2] of a [3, 5] tensor
    const actual = join(dir, "actual.safetensors");
    writeSafetensorsFile(actual, {
      "out.y": y,
      "grad.x": c.grads.x!,
      "grad.gamma": c.grads.gamma!,
      "grad.beta": c.grads.beta!,
    });
    const r = compareFiles(path, actual);
    expect(r.exitCode).toBe(1);
    expect(r.text).toContain("layer_norm/f64/n3_d5");
    expect(r.text).toContain(
      "out.y: 1 of 15 elements (6.67 %) outside |a - e| <= atol + rtol*|e| " +
        "(rtol 1.000000e-12, atol 1.000000e-12: K = d = 5)",
    );
    const worst = r.text.split("\n").find((l) => l.trim().startsWith("[1, 2]"));
    expect(worst).toBeDefined();
    expect(worst).toContain("1.000000e-04");
    const json = JSON.parse(compareFiles(path, actual, { json: true }).text) as {
      ok: boolean;
      tensors: Array<{ name: string; first_mismatches: Array<{ index: number[] }> }>;
    };
    expect(json.ok).toBe(false);
    expect(
      json.tensors.find((t) => t.name === "out.y")!.first_mismatches.map((m) => m.index),
    ).toEqual([[1, 2]]);
    // a caller tolerance wide enough makes it pass
    expect(compareFiles(path, actual, { atol: 2e-4 }).exitCode).toBe(0);
  });

  it("exits 0 for a copy, and reports missing results", () => {
    const { dir, path } = golden();
    const copy = join(dir, "copy.safetensors");
    copyFileSync(path, copy);
    const same = compareFiles(path, copy);
    expect(same.exitCode).toBe(0);
    expect(same.text).toMatch(/PASS \(9 of 9 tensors pass\)/);
    const onlyY = join(dir, "only-y.safetensors");
    writeSafetensorsFile(onlyY, { "out.y": loadCase(path).outputs.y! });
    const r = compareFiles(path, onlyY);
    expect(r.exitCode).toBe(1);
    expect(r.text).toContain(
      'grad.x: missing: expected f64 [3, 5], but the actual set has no tensor "grad.x"',
    );
    expect(r.text).not.toContain("in.x"); // inputs are compared only when the result file has them
  });

  it("compares plain safetensors files with the per-dtype defaults", () => {
    const dir = mkdtempSync(join(tmpdir(), "cmd-"));
    writeSafetensorsFile(join(dir, "a.safetensors"), { w: Tensor.from([1, 2, 3], "f32") });
    writeSafetensorsFile(join(dir, "b.safetensors"), { w: Tensor.from([1, 2, 3.00001], "f32") });
    const r = compareFiles(join(dir, "a.safetensors"), join(dir, "b.safetensors"));
    expect(r.exitCode).toBe(0); // 1e-5 ≤ 1e-5 + 1.3e-6·3
    expect(r.text).toMatch(/w\s+ok\s+f32\s+\[3\]\s+1\.300000e-06\s+1\.000000e-05/);
  });

  it("exits 2 with the reader's message for unreadable input", () => {
    const { dir, path } = golden();
    const bad = join(dir, "bad.safetensors");
    writeFileSync(bad, new Uint8Array([1, 2, 3]));
    expect(compareFiles(path, bad)).toEqual({
      exitCode: 2,
      text: `error: ${bad}: file is 3 bytes long, shorter than the 8-byte header length prefix\n`,
    });
    expect(compareFiles(join(dir, "none.safetensors"), path)).toEqual({
      exitCode: 2,
      text: `error: ${join(dir, "none.safetensors")}: cannot read: no such file\n`,
    });
    expect(JSON.parse(compareFiles(path, bad, { json: true }).text)).toEqual({
      schema_version: 1,
      ok: false,
      error: `${bad}: file is 3 bytes long, shorter than the 8-byte header length prefix`,
    });
    expect(compareFiles(path, path, { rtol: -1 }).exitCode).toBe(2);
  });

  it("exits 2 at once for /dev/zero and a folder (never reads an endless or non-regular file)", () => {
    const { dir } = golden();
    const start = performance.now();
    expect(compareFiles("/dev/zero", "/dev/zero")).toEqual({
      exitCode: 2,
      text: "error: /dev/zero: cannot read: is a character device, not a regular file (only regular files are read)\n",
    });
    expect(performance.now() - start).toBeLessThan(1000);
    expect(compareFiles(dir, dir)).toEqual({
      exitCode: 2,
      text: `error: ${dir}: cannot read: is a directory, not a file\n`,
    });
  });
});

describe("goldenList and goldenShow", () => {
  it("lists cases as a table and as JSON", () => {
    const { dir } = golden();
    const text = goldenList(dir);
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^case\s+formula\s+dtype\s+dims\s+tensors\s+size$/);
    expect(lines[2]).toMatch(
      /^layer_norm\/f64\/n3_d5\s+layer_norm\s+f64\s+d=5 n=3\s+9\s+\d+\.\d KiB$/,
    );
    expect(lines[3]).toMatch(/^relu\/f64\/n2\s+relu\s+f64\s+n=2\s+2\s+\d+ B$/);
    expect(text).toContain("2 cases");
    const json = JSON.parse(goldenList(dir, { json: true })) as {
      schema_version: number;
      dir: string;
      count: number;
      cases: Array<{ case: string; file: string; dims: object; tensors: string[] }>;
    };
    expect(Object.keys(json)).toEqual(["schema_version", "dir", "count", "cases"]);
    expect(json.schema_version).toBe(SCHEMA_VERSION);
    expect(json.dir).toBe(dir);
    expect(json.count).toBe(2);
    expect(json.cases.map((c) => c.case)).toEqual(["layer_norm/f64/n3_d5", "relu/f64/n2"]);
    expect(Object.keys(json.cases[0]!)).toEqual([
      "case",
      "file",
      "formula",
      "dtype",
      "dims",
      "tensors",
      "bytes",
    ]);
    expect(json.cases[0]!.file).toBe(join(dir, "cases/layer_norm/f64/n3_d5.safetensors"));
    expect(json.cases[0]!.dims).toEqual({ d: 5, n: 3 });
    expect(json.cases[1]!.tensors).toEqual(["in.x", "out.y"]);
    const empty = mkdtempSync(join(tmpdir(), "empty-"));
    expect(goldenList(empty)).toMatch(/^no golden cases under /);
    expect(JSON.parse(goldenList(empty, { json: true }))).toEqual({
      schema_version: SCHEMA_VERSION,
      dir: empty,
      count: 0,
      cases: [],
    });
  });

  it("shows metadata, tensor statistics and tolerances, found by name or path", () => {
    const { dir, path, c } = golden();
    const text = goldenShow("layer_norm/f64/n3_d5", dir);
    expect(goldenShow(path, dir)).toBe(text);
    expect(text).toMatch(/^case\s+layer_norm\/f64\/n3_d5$/m);
    expect(text).toMatch(/^oracle\s+torch\.nn\.functional\.layer_norm$/m);
    expect(text).toMatch(/^config\s+eps=0\.00001$/m);
    const x = c.inputs.x!;
    const min = Math.min(...x.data);
    const max = Math.max(...x.data);
    const row = text.split("\n").find((l) => l.startsWith("in.x "))!;
    const cells = row.split(/\s{2,}/);
    expect(cells.slice(0, 3)).toEqual(["in.x", "f64", "[3, 5]"]);
    expect(cells[3]).toBe(min.toExponential(6).replace(/e([+-])(\d)$/, "e$10$2"));
    expect(Number(cells[4])).toBeCloseTo(max, 6);
    expect(Number(cells[5])).toBeCloseTo(Array.from(x.data).reduce((s, v) => s + v, 0) / 15, 6);
    expect(text).toMatch(/^in\.tokens\s+i32\s+\[3\]\s+1\s+4\s+2\.667$/m);
    expect(text).toMatch(/^out\.y\s+1\.000000e-12\s+1\.000000e-12\s+case\s+K = d = 5$/m);
    expect(text).toMatch(
      new RegExp(
        String.raw`^grad\.x\s+1\.000000e-07\s+1\.000000e-07\s+default\s+torch\.` +
          String.raw`testing default for float64 \(the case states none\)$`,
        "m",
      ),
    );
    const json = JSON.parse(goldenShow("relu/f64/n2", dir, { json: true })) as {
      meta: { case: string };
      tensors: Array<{ name: string }>;
    };
    expect(Object.keys(json)).toEqual(["schema_version", "path", "meta", "tensors", "tolerance"]);
    expect(json.meta.case).toBe("relu/f64/n2");
    expect(json.tensors.map((t) => t.name)).toEqual(["in.x", "out.y"]);
    expect(Object.keys(json.tensors[0]!)).toEqual([
      "name",
      "dtype",
      "shape",
      "min",
      "max",
      "mean",
      "nan",
      "pos_inf",
      "neg_inf",
    ]);
  });

  it("shows non-finite statistics as strings and the metadata as the file holds it", () => {
    const { dir, c } = golden();
    const x = new Tensor("f64", [2, 2]);
    x.data.set([NaN, Infinity, -Infinity, NaN]);
    const path = join(dir, "odd.safetensors");
    const steps = [{ step: 0, runnerUp: 3 }];
    saveCase(path, {
      meta: {
        ...c.meta,
        case: "relu/f64/odd",
        formula: "relu",
        tolerance: {},
        steps,
        extra: { sourceModel: "m", checkpoint: "x/y" },
      },
      inputs: { x },
      outputs: { y: ramp([2]) },
    });
    const json = JSON.parse(goldenShow(path, dir, { json: true })) as {
      meta: Record<string, unknown>;
      tensors: Array<Record<string, unknown>>;
    };
    expect(json.tensors[0]).toEqual({
      name: "in.x",
      dtype: "f64",
      shape: [2, 2],
      min: "Infinity",
      max: "-Infinity",
      mean: "NaN",
      nan: 2,
      pos_inf: 1,
      neg_inf: 1,
    });
    // names inside extra and steps are the file's data: not converted to snake_case
    expect(json.meta["extra"]).toEqual({ checkpoint: "x/y", sourceModel: "m" });
    expect(json.meta["steps"]).toEqual(steps);
    expect(json.meta["config"]).toEqual({ eps: 1e-5 });
  });

  it("says what it tried when a case is not found", () => {
    const { dir } = golden();
    expect(() => goldenShow("layer_norm/f64/n9", dir)).toThrow(GoldenFormatError);
    expect(() => goldenShow("layer_norm/f64/n9", dir)).toThrow(
      `layer_norm/f64/n9: no such file, and no case of that name in ${dir} (similar: layer_norm/f64/n3_d5)`,
    );
  });

  it("formats sizes", () => {
    expect([formatBytes(812), formatBytes(3482), formatBytes(5 * 1024 * 1024)]).toEqual([
      "812 B",
      "3.4 KiB",
      "5.0 MiB",
    ]);
  });
});
