import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import { DEFAULT_TOLERANCE, compareCase } from "./compare.js";
import {
  buildManifest,
  listCases,
  loadCase,
  loadManifest,
  manifestToText,
  metaToJSON,
  saveCase,
  verifyManifest,
  writeManifest,
} from "./cases-io.js";
import type { CaseMeta, CaseToSave } from "./cases-io.js";
import { writeSafetensorsFile } from "../io/safetensors.js";
import { GoldenFormatError } from "./error.js";

const PYTHON = "/usr/bin/python3";
const PY_LIB = new URL("./specformer_golden.py", import.meta.url).pathname;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "cases-"));
}

function ramp(shape: number[], scale = 1, dtype: "f64" | "f32" = "f64"): Tensor {
  const t = new Tensor(dtype, shape);
  for (let i = 0; i < t.size; i++) t.data[i] = scale * Math.cos(0.7 * i + 0.1);
  return t;
}

function meta(overrides: Partial<CaseMeta> = {}): CaseMeta {
  return {
    format: "specformer-golden/1",
    case: "layer_norm/f64/n3_d4",
    formula: "layer_norm",
    config: { eps: 1e-5 },
    dims: { n: 3, d: 4 },
    dtype: "f64",
    seed: 7,
    torch_version: "1.13.0",
    generator: "test",
    oracle: "torch.nn.functional.layer_norm",
    tolerance: { "out.y": { rtol: 1e-12, atol: 1e-12, reason: "K = d = 4 terms" } },
    ...overrides,
  };
}

function layerNormCase(overrides: Partial<CaseMeta> = {}): CaseToSave {
  return {
    meta: meta(overrides),
    inputs: { x: ramp([3, 4]), gamma: ramp([4], 2), beta: ramp([4], 3) },
    outputs: { y: ramp([3, 4], 5) },
    cotangents: { y: ramp([3, 4], 7) },
    grads: { x: ramp([3, 4], 11), gamma: ramp([4], 13), beta: ramp([4], 17) },
  };
}

/** Write a file with arbitrary tensors and a raw metadata string. */
function rawCase(
  path: string,
  tensors: Record<string, Tensor>,
  specformer: string | undefined,
): string {
  writeSafetensorsFile(path, tensors, specformer === undefined ? { other: "x" } : { specformer });
  return path;
}

function formatError(fn: () => unknown): GoldenFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GoldenFormatError);
    return err as GoldenFormatError;
  }
  throw new Error("expected a GoldenFormatError, nothing was thrown");
}

describe("saveCase / loadCase", () => {
  it("round-trips a case and resolves tolerances (stated, else the dtype default)", () => {
    const path = join(tmp(), "cases", "layer_norm", "f64", "n3_d4.safetensors");
    const c = layerNormCase({ notes: "a note", steps: [{ t: 1 }], extra: { custom: [1, "two"] } });
    saveCase(path, c);
    const back = loadCase(path);
    expect(back.path).toBe(path);
    expect(back.meta).toEqual(c.meta);
    expect(Object.keys(back.inputs).sort()).toEqual(["beta", "gamma", "x"]);
    expect(back.outputs.y!.toNested()).toEqual(c.outputs.y!.toNested());
    expect(back.grads.gamma!.toNested()).toEqual(c.grads!.gamma!.toNested());
    expect(back.cotangents.y!.shape).toEqual([3, 4]);
    expect(back.tolerance["out.y"]).toEqual({
      rtol: 1e-12,
      atol: 1e-12,
      reason: "K = d = 4 terms",
      source: "case",
    });
    expect(back.tolerance["grad.x"]).toEqual({
      ...DEFAULT_TOLERANCE.f64,
      reason: "torch.testing default for float64 (the case states none)",
      source: "default",
    });
    expect(Object.keys(back.tolerance)).toEqual(["grad.beta", "grad.gamma", "grad.x", "out.y"]);
    // the comparator reports the stated tolerance as the case's and the others as defaults
    const r = compareCase(back, { outputs: back.outputs, grads: back.grads });
    expect(r.ok).toBe(true);
    expect(r.tensors.map((t) => [t.name, t.tolerance.source])).toEqual([
      ["grad.beta", "default"],
      ["grad.gamma", "default"],
      ["grad.x", "default"],
      ["out.y", "case"],
    ]);
  });

  it("stores the metadata as compact JSON with sorted keys", () => {
    expect(metaToJSON(meta({ config: { z: 1, a: true } }))).toMatch(
      /^\{"case":"layer_norm\/f64\/n3_d4","config":\{"a":true,"z":1\},"dims":/,
    );
  });

  it("keeps i32 token ids and refuses to save an invalid case", () => {
    const dir = tmp();
    const emb: CaseToSave = {
      meta: meta({ case: "embedding/f32/n3", formula: "embedding", dtype: "f32", tolerance: {} }),
      inputs: { tokens: Tensor.from([0, 2, 1], "i32"), E: ramp([3, 2], 1, "f32") },
      outputs: { y: ramp([3, 2], 1, "f32") },
      cotangents: { y: ramp([3, 2], 2, "f32") },
      grads: { E: ramp([3, 2], 3, "f32") },
    };
    saveCase(join(dir, "e.safetensors"), emb);
    expect(loadCase(join(dir, "e.safetensors")).inputs.tokens!.dtype).toBe("i32");
    const bad = { ...emb, grads: { tokens: Tensor.from([0, 0, 0], "f32") } };
    expect(formatError(() => saveCase(join(dir, "bad.safetensors"), bad)).message).toBe(
      `${join(dir, "bad.safetensors")}: tensor "grad.tokens": is given for ` +
        `the integer argument "in.tokens" (token ids have no gradient)`,
    );
    expect(existsSync(join(dir, "bad.safetensors"))).toBe(false);
  });
});

describe("loadCase rejects malformed cases with messages naming file, tensor and problem", () => {
  const dir = tmp();
  const x = ramp([2, 3]);
  const good = JSON.parse(
    metaToJSON(meta({ case: "relu/f64/n2", formula: "relu", tolerance: {} })),
  ) as Record<string, unknown>;
  const withMeta = (m: Record<string, unknown>) => JSON.stringify(m);
  const cases: Array<[string, Record<string, Tensor>, string | undefined, string]> = [
    [
      "no specformer metadata",
      { "in.x": x },
      undefined,
      'not a specformer golden case: __metadata__ has no "specformer" entry',
    ],
    [
      "metadata not JSON",
      { "in.x": x },
      "{case:",
      "__metadata__.specformer is not valid JSON: expected a string key, found 'c' at character 1",
    ],
    [
      "metadata duplicate key",
      { "in.x": x },
      '{"case":"a","case":"b"}',
      '__metadata__.specformer is not valid JSON: duplicate key "case" (a ' +
        "plain JSON.parse would silently keep the last one) at character 12",
    ],
    ["metadata an array", { "in.x": x }, "[1]", "metadata must be a JSON object, found an array"],
    [
      "missing fields",
      { "in.x": x },
      '{"format":"specformer-golden/1","case":"relu/f64/n2"}',
      'metadata lacks the required fields "formula", "config", "dims", ' +
        '"dtype", "seed", "torch_version", "generator", "oracle", "tolerance"',
    ],
    [
      "wrong format",
      { "in.x": x },
      withMeta({ ...good, format: "v2" }),
      'metadata field "format" is "v2", expected "specformer-golden/1"',
    ],
    [
      "dtype f16",
      { "in.x": x },
      withMeta({ ...good, dtype: "f16" }),
      'metadata field "dtype" must be "f64" or "f32", found a string ("f16")',
    ],
    [
      "case name not formula/dtype/slug",
      { "in.x": x },
      withMeta({ ...good, case: "relu/f32/n2" }),
      'metadata field "case" is "relu/f32/n2"; it must be ' +
        '"<formula>/<dtype>/<slug>" = "relu/f64/<slug>" (slug: letters, digits, _ . -)',
    ],
    [
      "seed not an integer",
      { "in.x": x },
      withMeta({ ...good, seed: 1.5 }),
      'metadata field "seed" must be an integer, found a number (1.5)',
    ],
    [
      "nested config",
      { "in.x": x },
      withMeta({ ...good, config: { eps: [1] } }),
      'metadata config value "eps" must be a number, string or boolean, found an array',
    ],
    [
      "negative dim",
      { "in.x": x },
      withMeta({ ...good, dims: { n: -2 } }),
      'metadata dims value "n" must be a non-negative integer, found a number (-2)',
    ],
    [
      "empty oracle",
      { "in.x": x },
      withMeta({ ...good, oracle: "" }),
      'metadata field "oracle" must not be empty',
    ],
    [
      "negative rtol",
      { "in.x": x, "out.y": x },
      withMeta({ ...good, tolerance: { "out.y": { rtol: -1, atol: 0, reason: "r" } } }),
      'metadata tolerance for "out.y": "rtol" must be a finite number >= 0, found a number (-1)',
    ],
    [
      "tolerance without reason",
      { "in.x": x, "out.y": x },
      withMeta({ ...good, tolerance: { "out.y": { rtol: 1, atol: 0 } } }),
      'metadata tolerance for "out.y": "reason" must be a non-empty string saying how it was derived, found nothing',
    ],
    [
      "tolerance for a tensor the file lacks",
      { "in.x": x, "out.y": x },
      withMeta({ ...good, tolerance: { "out.z": { rtol: 1, atol: 0, reason: "r" } } }),
      'metadata states a tolerance for "out.z", which is not an out.* or grad.* tensor of the file (those are: out.y)',
    ],
    [
      "unknown prefixes",
      { "in.x": x, "weights.W": x, y: x },
      withMeta(good),
      'tensor names "weights.W", "y" have no known prefix (in., out., cot., grad.)',
    ],
    [
      "empty name after the prefix",
      { "in.": x },
      withMeta(good),
      'tensor name "in." has no known prefix (in., out., cot., grad.)',
    ],
    [
      "float tensor in another dtype",
      { "in.x": ramp([2], 1, "f32") },
      withMeta(good),
      'tensor "in.x": is f32 in a f64 case (float tensors must have the case dtype)',
    ],
    [
      "i32 cotangent",
      { "in.x": x, "out.y": x, "cot.y": Tensor.from([1], "i32") },
      withMeta(good),
      'tensor "cot.y": is i32, but cotangents and gradients are floats',
    ],
    [
      "cotangent without output",
      { "in.x": x, "cot.y": x },
      withMeta(good),
      'tensor "cot.y": has no matching output "out.y"',
    ],
    [
      "cotangent shape",
      { "in.x": x, "out.y": x, "cot.y": ramp([3, 2]) },
      withMeta(good),
      'tensor "cot.y": has shape [3, 2] but "out.y" has [2, 3]',
    ],
    [
      "gradient without argument",
      { "in.x": x, "out.y": x, "cot.y": x, "grad.W": x },
      withMeta(good),
      'tensor "grad.W": has no matching argument "in.W"',
    ],
    [
      "gradient shape",
      { "in.x": x, "out.y": x, "cot.y": x, "grad.x": ramp([6]) },
      withMeta(good),
      'tensor "grad.x": has shape [6] but "in.x" has [2, 3]',
    ],
    [
      "gradient without cotangent",
      { "in.x": x, "out.y": x, "grad.x": x },
      withMeta(good),
      "has gradients but no cotangents: a gradient is defined only by the cot.* tensors that produced it",
    ],
  ];
  it.each(cases)("%s", (label, tensors, specformer, problem) => {
    const path = rawCase(
      join(dir, `${label.replace(/\W+/g, "_")}.safetensors`),
      tensors,
      specformer,
    );
    expect(formatError(() => loadCase(path)).message).toBe(`${path}: ${problem}`);
  });

  it("passes the reader's errors through, naming the file", () => {
    const path = join(dir, "short.safetensors");
    writeFileSync(path, new Uint8Array(3));
    expect(formatError(() => loadCase(path)).message).toBe(
      `${path}: file is 3 bytes long, shorter than the 8-byte header length prefix`,
    );
    expect(formatError(() => loadCase(join(dir, "absent.safetensors"))).message).toBe(
      `${join(dir, "absent.safetensors")}: cannot read: no such file`,
    );
  });
});

describe("listCases", () => {
  it("finds .safetensors files in files and folders, recursively, sorted and without duplicates", () => {
    const dir = tmp();
    for (const p of [
      "cases/b/f64/z.safetensors",
      "cases/a/f32/y.safetensors",
      "cases/a/f32/notes.txt",
      "loose.safetensors",
    ]) {
      mkdirSync(join(dir, p, ".."), { recursive: true });
      writeFileSync(join(dir, p), "");
    }
    expect(
      listCases([join(dir, "cases"), join(dir, "loose.safetensors"), join(dir, "cases", "a")]),
    ).toEqual([
      join(dir, "cases/a/f32/y.safetensors"),
      join(dir, "cases/b/f64/z.safetensors"),
      join(dir, "loose.safetensors"),
    ]);
    expect(formatError(() => listCases([join(dir, "nowhere")])).message).toBe(
      `${join(dir, "nowhere")}: no such file or folder`,
    );
  });
});

describe("manifest", () => {
  function goldenDir(): string {
    const dir = tmp();
    saveCase(join(dir, "cases/layer_norm/f64/n3_d4.safetensors"), layerNormCase());
    saveCase(join(dir, "cases/layer_norm/f32/n3_d4.safetensors"), {
      meta: meta({ case: "layer_norm/f32/n3_d4", dtype: "f32", tolerance: {} }),
      inputs: { x: ramp([3, 4], 1, "f32") },
      outputs: { y: ramp([3, 4], 1, "f32") },
    });
    writeManifest(dir);
    return dir;
  }

  it("is written sorted by case with size and sha256, and verifies", () => {
    const dir = goldenDir();
    const m = loadManifest(dir);
    expect(m.cases.map((e) => [e.case, e.file, e.formula, e.dtype])).toEqual([
      ["layer_norm/f32/n3_d4", "cases/layer_norm/f32/n3_d4.safetensors", "layer_norm", "f32"],
      ["layer_norm/f64/n3_d4", "cases/layer_norm/f64/n3_d4.safetensors", "layer_norm", "f64"],
    ]);
    const bytes = readFileSync(join(dir, "cases/layer_norm/f64/n3_d4.safetensors"));
    expect(m.cases[1]!.bytes).toBe(bytes.length);
    expect(m.cases[1]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.torch_version).toBe("1.13.0");
    expect(verifyManifest(dir)).toEqual({ cases: 2, bytes: m.cases[0]!.bytes + m.cases[1]!.bytes });
    // regenerating reproduces it byte for byte
    expect(manifestToText(buildManifest(dir))).toBe(
      readFileSync(join(dir, "manifest.json"), "utf8"),
    );
  });

  it("reports stale, missing and unlisted files together", () => {
    const dir = goldenDir();
    const f64 = join(dir, "cases/layer_norm/f64/n3_d4.safetensors");
    const bytes = readFileSync(f64);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1; // one bit of data
    writeFileSync(f64, bytes);
    rmSync(join(dir, "cases/layer_norm/f32/n3_d4.safetensors"));
    saveCase(join(dir, "cases/relu/f64/n1.safetensors"), {
      meta: meta({ case: "relu/f64/n1", formula: "relu", tolerance: {} }),
      inputs: { x: ramp([1]) },
      outputs: { y: ramp([1]) },
    });
    const e = formatError(() => verifyManifest(dir));
    expect(e.message.split("\n")).toEqual([
      `${join(dir, "manifest.json")}: 3 problems (regenerate the goldens or the manifest):`,
      '  cases/layer_norm/f32/n3_d4.safetensors: missing (listed for case "layer_norm/f32/n3_d4")',
      expect.stringMatching(
        new RegExp(
          String.raw`^ {2}cases\/layer_norm\/f64\/n3_d4\.safetensors: stale: sha2` +
            String.raw`56 [0-9a-f]{12}… on disk, [0-9a-f]{12}… in the manifest$`,
        ),
      ),
      "  cases/relu/f64/n1.safetensors: not listed in the manifest",
    ]);
  });

  it("checks that each entry matches its file's metadata and place", () => {
    const dir = goldenDir();
    const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
      cases: Array<Record<string, unknown>>;
    };
    m.cases[0]!.formula = "rms_norm";
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(m));
    expect(formatError(() => verifyManifest(dir)).message).toContain(
      'cases/layer_norm/f32/n3_d4.safetensors: the manifest says formula "rms_norm" but the file says "layer_norm"',
    );
  });

  it("rejects malformed manifests", () => {
    const dir = tmp();
    const path = join(dir, "manifest.json");
    const entry = (c: string, extra: Record<string, unknown> = {}) => ({
      case: c,
      file: `cases/${c}.safetensors`,
      formula: "relu",
      dtype: "f64",
      bytes: 1,
      sha256: "a".repeat(64),
      ...extra,
    });
    const check = (m: unknown, problem: string) => {
      writeFileSync(path, typeof m === "string" ? m : JSON.stringify(m));
      expect(formatError(() => loadManifest(dir)).message).toBe(`${path}: ${problem}`);
    };
    check(
      {
        format: "specformer-golden/1",
        torch_version: "1",
        cases: [entry("relu/f64/b"), entry("relu/f64/a")],
      },
      'cases[1]: cases must be sorted by name, but "relu/f64/a" follows "relu/f64/b"',
    );
    check(
      {
        format: "specformer-golden/1",
        torch_version: "1",
        cases: [entry("relu/f64/a"), entry("relu/f64/a")],
      },
      'cases[1]: case "relu/f64/a" is listed twice',
    );
    check(
      { format: "specformer-golden/1", torch_version: "1", cases: [entry("a", { sha256: "XYZ" })] },
      'cases[0]."sha256" must be 64 lower-case hex digits, found "XYZ"',
    );
    check(
      {
        format: "specformer-golden/1",
        torch_version: "1",
        cases: [entry("a", { file: "../x.safetensors" })],
      },
      'cases[0]."file" "../x.safetensors" must be a relative path inside the golden folder, with "/" separators',
    );
    check(
      { format: "specformer-golden/1", torch_version: "1", cases: [entry("a", { bytes: -1 })] },
      'cases[0]."bytes" must be a non-negative integer, found a number (-1)',
    );
    check(
      { format: "specformer-golden/0", cases: [] },
      '"format" is "specformer-golden/0", expected "specformer-golden/1"',
    );
    check(
      '{"format": "specformer-golden/1", "format": 1}',
      'manifest is not valid JSON: duplicate key "format" (a plain JSON.parse ' +
        "would silently keep the last one) at character 34",
    );
    expect(formatError(() => loadManifest(tmp())).message).toMatch(
      /manifest\.json: cannot read: no such file$/,
    );
  });
});

describe.skipIf(!existsSync(PYTHON) || !existsSync(PY_LIB))(
  "interoperability with the Python side (golden/specformer_golden.py)",
  () => {
    it("reads a case and manifest Python wrote, and reproduces the manifest byte for byte", () => {
      const dir = tmp();
      const script =
        `
import sys, numpy as np
sys.path.insert(0, ${JSON.stringify(join(PY_LIB, ".."))})
from specformer_golden import write_case, write_manifest
d = sys.argv[1]
x = np.arange(12, dtype="<f8").reshape(3, 4) / 7 - 0.5
y = np.tanh(x)
cot = np.cos(x)
write_case(d + "/cases/tanh/f64/n3_d4.safetensors", ` +
        `case="tanh/f64/n3_d4", formula="tanh", config={"eps": 1e-05, "causal": ` +
        `True},
    dims={"n": 3, "d": 4}, dtype="f64", seed=3, inputs={"x": x, "tokens": np.array([1, 2, 3])}, outputs={"y": y},
    cotangents={"y": cot}, grads={"x": cot * (1 - y * y)},
    tolerance={"out.y": {"rtol": 1e-13, "atol": 1e-13, "reason": "one ` +
        `op"}, "grad.x": {"rtol": 1e-12, "atol": 1e-12, "reason": "three ` +
        `ops"}},
    oracle="numpy.tanh", torch_version="1.13.0", notes="written by the interop test")
write_manifest(d)
`;
      execFileSync(PYTHON, ["-c", script, dir]);
      const c = loadCase(join(dir, "cases/tanh/f64/n3_d4.safetensors"));
      expect(c.meta).toMatchObject({
        case: "tanh/f64/n3_d4",
        config: { eps: 1e-5, causal: true },
        dims: { n: 3, d: 4 },
        seed: 3,
        notes: "written by the interop test",
      });
      expect(c.inputs.tokens!.dtype).toBe("i32");
      expect(c.inputs.x!.data[5]).toBe(5 / 7 - 0.5);
      expect(c.outputs.y!.data[5]).toBeCloseTo(Math.tanh(5 / 7 - 0.5), 15);
      expect(c.tolerance["grad.x"]).toEqual({
        rtol: 1e-12,
        atol: 1e-12,
        reason: "three ops",
        source: "case",
      });
      expect(verifyManifest(dir).cases).toBe(1);
      expect(manifestToText(buildManifest(dir))).toBe(
        readFileSync(join(dir, "manifest.json"), "utf8"),
      );
    });

    it("writes cases that Python reads back", () => {
      const dir = tmp();
      const path = join(dir, "cases/layer_norm/f64/n3_d4.safetensors");
      const c = layerNormCase({
        tolerance: Object.fromEntries(
          ["out.y", "grad.x", "grad.gamma", "grad.beta"].map((k) => [
            k,
            { rtol: 1e-12, atol: 1e-12, reason: "stated" },
          ]),
        ),
      });
      saveCase(path, c);
      const out = execFileSync(PYTHON, [
        "-c",
        `import sys, json; sys.path.insert(0, ${JSON.stringify(join(PY_LIB, ".."))})
from specformer_golden import read_case
c = read_case(sys.argv[1])
print(json.dumps({"case": c.meta["case"], "names": sorted(c.tensors), "g": c.grads["gamma"].tolist()}))`,
        path,
      ]).toString();
      expect(JSON.parse(out)).toEqual({
        case: "layer_norm/f64/n3_d4",
        names: [
          "cot.y",
          "grad.beta",
          "grad.gamma",
          "grad.x",
          "in.beta",
          "in.gamma",
          "in.x",
          "out.y",
        ],
        g: Array.from(c.grads!.gamma!.data),
      });
    });
  },
);
