import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ImplementationError } from "../autodiff/implementation.js";
import { parkMiller } from "../autodiff/random.js";
import { Tensor } from "../autodiff/tensor.js";
import {
  ProtocolError,
  checkFrameLengths,
  checkHello,
  checkResponse,
  encodeConfig,
  encodeNamedTensors,
  encodeRequest,
  encodeTensor,
  quoteLine,
  tensorFromJSON,
  tensorToJSON,
  wireFloat,
} from "./protocol.js";
import { PYTHON, pythonCanImport } from "../io/python.testing.js";

const W = "output y of formula softmax";
const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const numpyAvailable = pythonCanImport("numpy");
if (!numpyAvailable)
  console.warn(`docs/PROTOCOL.md replay skipped: \`${PYTHON} -c "import numpy"\` failed`);

function problem(obj: unknown): string {
  try {
    tensorFromJSON(obj, W);
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e).toBeInstanceOf(ImplementationError);
    return (e as Error).message;
  }
  throw new Error("expected tensorFromJSON to throw");
}

describe("tensorFromJSON", () => {
  it("decodes the documented example", () => {
    const t = tensorFromJSON({ dtype: "f64", shape: [2], data: [1, "NaN"] }, "input x");
    expect(t.dtype).toBe("f64");
    expect(Array.from(t.data)).toEqual([1, NaN]);
  });

  it("decodes the three non-finite spellings and keeps -0", () => {
    const t = tensorFromJSON(
      JSON.parse('{"dtype":"f64","shape":[4],"data":["NaN","Infinity","-Infinity",-0.0]}'),
      W,
    );
    expect(Array.from(t.data)).toEqual([NaN, Infinity, -Infinity, -0]);
    expect(Object.is(t.data[3], -0)).toBe(true);
  });

  it("rounds f32 data written with float64 precision to nearest float32", () => {
    const t = tensorFromJSON(
      { dtype: "f32", shape: [3], data: [0.1, 1 + 2 ** -30, 3.4028235677973366e38] },
      W,
    );
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.data[0]).toBe(Math.fround(0.1));
    expect(t.data[1]).toBe(1);
    expect(t.data[2]).toBe(Infinity); // above the largest float32 by more than half an ulp: rounds to ∞
  });

  it("accepts scalars and empty tensors", () => {
    expect(tensorFromJSON({ dtype: "f64", shape: [], data: [2.5] }, W).size).toBe(1);
    expect(tensorFromJSON({ dtype: "f32", shape: [0, 3], data: [] }, W).shape).toEqual([0, 3]);
  });

  it.each([
    [
      { dtype: "f64", shape: [3, 4], data: Array.from({ length: 11 }, () => 0) },
      `${W}: data has 11 numbers but shape [3, 4] needs 12`,
    ],
    [
      { dtype: "float64", shape: [1], data: [1] },
      `${W}: dtype is the string "float64"; it must be one of "f64", "f32", "i32"`,
    ],
    [{ shape: [1], data: [1] }, `${W}: dtype is missing; it must be one of "f64", "f32", "i32"`],
    [
      { dtype: "f64", shape: "3", data: [1] },
      `${W}: shape must be a list of non-negative integers, got the string "3"`,
    ],
    [
      { dtype: "f64", shape: [2, 1.5], data: [1] },
      `${W}: shape [2,1.5] is not a list of non-negative integers (axis 1 is number 1.5)`,
    ],
    [
      { dtype: "f64", shape: [-1], data: [] },
      `${W}: shape [-1] is not a list of non-negative integers (axis 0 is number -1)`,
    ],
    [
      { dtype: "f64", shape: [2], data: [1, null] },
      `${W}: data entry 1 is null; entries must be numbers or one of "NaN", "Infinity", "-Infinity"`,
    ],
    [
      { dtype: "f64", shape: [2], data: [1, "nan"] },
      `${W}: data entry 1 is the string "nan"; entries must be numbers or one of "NaN", "Infinity", "-Infinity"`,
    ],
    [
      { dtype: "f64", shape: [2], data: [1, [2]] },
      `${W}: data entry 1 is an array of 1; entries must be numbers or one of ` +
        `"NaN", "Infinity", "-Infinity" (data must be flat, row-major)`,
    ],
    [
      {
        dtype: "f64",
        shape: [2, 2],
        data: [
          [1, 2],
          [3, 4],
        ],
      },
      `${W}: data has 2 numbers but shape [2, 2] needs 4 (data must be flat, row-major; nested lists are not accepted)`,
    ],
    [
      { dtype: "f64", shape: [1], data: { 0: 1 } },
      `${W}: data must be a flat list of numbers (row-major), got an object {"0":1}`,
    ],
    [
      { dtype: "i32", shape: [2], data: [1, "NaN"] },
      `${W}: i32 data entry 1 is the string "NaN"; i32 tensors hold integers in [-2147483648, 2147483647]`,
    ],
    [
      { dtype: "i32", shape: [1], data: [2147483648] },
      `${W}: i32 data entry 0 is number 2147483648; i32 tensors hold integers in [-2147483648, 2147483647]`,
    ],
    [
      { dtype: "f64", shape: [1], data: [1], name: "y" },
      `${W}: unknown key "name" in a tensor (allowed: "dtype", "shape", "data")`,
    ],
    [[1, 2, 3], `${W}: a tensor must be an object {"dtype", "shape", "data"}, got an array of 3`],
  ])("rejects %j", (obj, message) => {
    expect(problem(obj)).toBe(message);
  });
});

describe("encoding", () => {
  it("spells floats so that every float64 survives JSON.parse bit for bit", () => {
    expect([NaN, Infinity, -Infinity, -0, 0, 0.1, 1e21, 5e-324].map(wireFloat)).toEqual([
      '"NaN"',
      '"Infinity"',
      '"-Infinity"',
      "-0.0",
      "0",
      "0.1",
      "1e+21",
      "5e-324",
    ]);
    // random bit patterns (all exponents): decode(encode(x)) === x
    const bits = new BigUint64Array(20_000);
    let s = 0x9e3779b97f4a7c15n;
    for (let i = 0; i < bits.length; i++) {
      s ^= s << 13n;
      s &= (1n << 64n) - 1n;
      s ^= s >> 7n;
      s ^= s << 17n;
      s &= (1n << 64n) - 1n;
      bits[i] = s;
    }
    const x = new Tensor("f64", [bits.length], new Float64Array(bits.buffer));
    const back = tensorFromJSON(JSON.parse(encodeTensor(x)), W);
    for (let i = 0; i < x.size; i++) {
      const a = x.data[i]!;
      const b = back.data[i]!;
      if (!(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b))))
        throw new Error(`element ${i}: ${a} came back as ${b}`);
    }
  });

  it("writes f32 values as the float64 they equal, and i32 as integers", () => {
    const f = new Tensor("f32", [2], Float32Array.from([0.1, -2]));
    expect(encodeTensor(f)).toBe('{"dtype":"f32","shape":[2],"data":[0.10000000149011612,-2]}');
    expect(tensorFromJSON(JSON.parse(encodeTensor(f)), W).data).toEqual(f.data);
    const i = new Tensor("i32", [1, 2], Int32Array.from([-5, 7]));
    expect(encodeTensor(i)).toBe('{"dtype":"i32","shape":[1,2],"data":[-5,7]}');
  });

  it("tensorToJSON gives the plain-object form", () => {
    expect(tensorToJSON(new Tensor("f64", [3], Float64Array.from([NaN, 1.5, -Infinity])))).toEqual({
      dtype: "f64",
      shape: [3],
      data: ["NaN", 1.5, "-Infinity"],
    });
  });

  it("builds request lines from pieces", () => {
    const x = Tensor.scalar(1);
    const line = encodeRequest(3, "forward", {
      formula: '"relu"',
      config: encodeConfig({ eps: 1e-5, causal: true }, "formula relu"),
      inputs: ['{"x":', encodeTensor(x), "}"],
    }).join("");
    expect(JSON.parse(line)).toEqual({
      id: 3,
      method: "forward",
      params: {
        formula: "relu",
        config: { eps: 1e-5, causal: true },
        inputs: { x: { dtype: "f64", shape: [], data: [1] } },
      },
    });
  });

  it("refuses configs JSON cannot carry", () => {
    expect(() => encodeConfig({ eps: Infinity }, "formula layer_norm")).toThrow(
      "formula layer_norm: config eps is Infinity; hyperparameters must be finite numbers, strings or booleans",
    );
  });

  it("quotes at most 200 characters of an offending line", () => {
    expect(quoteLine("abc")).toBe('"abc"');
    const long = "x".repeat(250);
    expect(quoteLine(long)).toBe(`"${"x".repeat(200)}"… (250 characters in all)`);
  });
});

describe("responses and hello", () => {
  it.each([
    ["[1]", "a response must be a JSON object, got an array of 1"],
    ['{"result":{}}', 'a response needs an integer "id", got nothing'],
    ['{"id":"1","result":{}}', 'a response needs an integer "id", got the string "1"'],
    ['{"id":1}', 'response 1 must have exactly one of "result" and "error" (it has neither)'],
    [
      '{"id":1,"result":{},"error":{"message":"x"}}',
      'response 1 must have exactly one of "result" and "error" (it has both)',
    ],
    ['{"id":1,"result":[]}', 'response 1: "result" must be an object, got an array of 0'],
  ])("finds the problem in %s", (line, message) => {
    expect(checkResponse(JSON.parse(line))).toEqual({ problem: message });
  });

  it("passes on a malformed error as text", () => {
    expect(checkResponse({ id: 2, error: "out of memory" })).toEqual({
      response: { id: 2, error: { message: "out of memory" } },
    });
  });

  it("validates hello", () => {
    const ok = checkHello(
      { name: "n", formulas: ["softmax", "gelu"], backward: ["gelu"], dtypes: ["f32"], extra: 1 },
      "hello",
    );
    expect(ok.backward).toEqual(["gelu"]);
    expect(ok.shutdown).toBe(false);
    expect(ok.raw["extra"]).toBe(1);
    expect(() =>
      checkHello({ name: "n", formulas: ["a", "a"], backward: true, dtypes: ["f64"] }, "hello"),
    ).toThrow('hello: "formulas" lists "a" twice');
    expect(() =>
      checkHello({ name: "n", formulas: ["a"], backward: "yes", dtypes: ["f64"] }, "hello"),
    ).toThrow(
      'hello: "backward" must be true, false or a list of formula names, got the string "yes"',
    );
    expect(() =>
      checkHello({ name: "n", formulas: ["a"], backward: true, dtypes: [] }, "hello"),
    ).toThrow(
      'hello: "dtypes" must be a non-empty list of dtype names ("f64", "f32", "i32"), got an array of 0',
    );
    expect(() =>
      checkHello({ name: "n", formulas: [1], backward: true, dtypes: ["f64"] }, "hello"),
    ).toThrow('hello: "formulas" must be a list of formula names (strings); entry 0 is number 1');
  });
});

describe("large tensors", () => {
  // the throughput (MB/s) is measured by bench/timings.ts (npm run bench -- --only timings), not asserted here
  it("encodes and decodes 10 MB of float64 (1.25 M numbers) exactly, with and without non-finite values", () => {
    const n = 1_250_000;
    // 1.25 M values over seven decades, from a fixed sequence
    const data = Float64Array.from(parkMiller(n, 7), (u, i) => (u - 0.5) * 10 ** ((i % 7) - 3));
    const x = new Tensor("f64", [n], data);
    const text = encodeTensor(x);
    const back = tensorFromJSON(JSON.parse(text), W);
    let same = back.size === n;
    for (let i = 0; i < n; i++) if (back.data[i] !== data[i]) same = false;
    expect(same).toBe(true);
    // with one NaN the encoder takes its per-element path
    data[n >> 1] = NaN;
    const text2 = encodeTensor(x);
    expect(text2).toContain('"NaN"');
    expect(Number.isNaN(tensorFromJSON(JSON.parse(text2), W).data[n >> 1])).toBe(true);
  });
});

describe("binary tensors (frames)", () => {
  const frameProblem = (obj: unknown, frames: Uint8Array[]): string => {
    try {
      tensorFromJSON(obj, W, frames);
    } catch (e) {
      expect(e).toBeInstanceOf(ProtocolError);
      return (e as Error).message;
    }
    throw new Error("expected tensorFromJSON to throw");
  };

  it("encodes tensors as frame references and decodes them back, bits kept", () => {
    const x = new Tensor(
      "f64",
      [2],
      new Float64Array(new BigUint64Array([0x7ff8000000000001n, 0x8000000000000000n]).buffer),
    );
    const t = new Tensor("i32", [3], Int32Array.of(7, -1, 0));
    const frames: Uint8Array[] = [];
    const text = encodeNamedTensors({ x, t }, (n) => n, frames).join("");
    expect(JSON.parse(text)).toEqual({
      x: { dtype: "f64", shape: [2], frame: 0 },
      t: { dtype: "i32", shape: [3], frame: 1 },
    });
    expect(frames.map((f) => f.byteLength)).toEqual([16, 12]);
    const line = encodeRequest(4, "forward", { inputs: text }, frames).join("");
    expect(JSON.parse(line)).toMatchObject({ id: 4, frames: [16, 12], method: "forward" });
    // frames arrive as byte copies at any offset: an unaligned one is copied, an aligned one viewed
    const bytes = new Uint8Array(1 + 16);
    bytes.set(frames[0]!, 1);
    const back = tensorFromJSON({ dtype: "f64", shape: [2], frame: 0 }, W, [bytes.subarray(1)]);
    expect(Array.from(new BigUint64Array(back.data.buffer, back.data.byteOffset, 2))).toEqual([
      0x7ff8000000000001n,
      0x8000000000000000n,
    ]);
    expect(
      Array.from(tensorFromJSON({ dtype: "i32", shape: [3], frame: 1 }, W, frames).data),
    ).toEqual([7, -1, 0]);
  });

  it("names what is wrong with a binary tensor", () => {
    const f = [new Uint8Array(24)];
    expect(frameProblem({ dtype: "f64", shape: [2, 2], frame: 0 }, f)).toBe(
      `${W}: frame 0 has 24 bytes but f64 shape [2, 2] needs 32 (4 × 8)`,
    );
    expect(frameProblem({ dtype: "f32", shape: [3], frame: 1 }, f)).toBe(
      `${W}: "frame" is number 1; it must be the index of a frame that ` +
        `follows the line (the message has frames 0 to 0)`,
    );
    expect(frameProblem({ dtype: "f32", shape: [3], frame: 0 }, [])).toMatch(
      /\(the message has no frames\)$/,
    );
    expect(frameProblem({ dtype: "bf16", shape: [3], frame: 0 }, f)).toBe(
      `${W}: dtype is the string "bf16"; it must be one of "f64", "f32", "i32"`,
    );
    expect(frameProblem({ dtype: "f64", shape: [3], frame: 0, data: [1, 2, 3] }, f)).toBe(
      `${W}: a tensor has either "data" or "frame", not both`,
    );
    expect(frameProblem({ dtype: "f64", shape: [3], frame: "0" }, f)).toMatch(
      /"frame" is the string "0"; it must be the index/,
    );
    // without negotiation "frame" is an unknown key, with a hint
    expect(problem({ dtype: "f64", shape: [3], frame: 0 })).toBe(
      `${W}: unknown key "frame" in a tensor (allowed: "dtype", "shape", ` +
        `"data") ("frame" needs binary tensors, which were not negotiated in hello)`,
    );
  });

  it("validates a message's frames list", () => {
    expect(checkFrameLengths([0, 8, 16], "line", 100)).toEqual([0, 8, 16]);
    expect(() => checkFrameLengths([8, -1], "line", 100)).toThrow(
      'line: "frames" entry 1 is number -1; it must be a byte count (a non-negative integer)',
    );
    expect(() => checkFrameLengths([8, 1.5], "line", 100)).toThrow(
      'line: "frames" entry 1 is number 1.5; it must be a byte count',
    );
    expect(() => checkFrameLengths([101], "line", 100)).toThrow(
      'line: "frames" entry 0 is 101 bytes, more than the limit of 100 bytes per frame',
    );
    expect(() => checkFrameLengths({ 0: 8 }, "line", 100)).toThrow(
      'line: "frames" must be a list of byte counts, got an object {"0":8}',
    );
  });

  it("reads binary from hello: true, false, absent, or an error", () => {
    const base = { name: "p", formulas: ["relu"], backward: true, dtypes: ["f64"] };
    expect(checkHello({ ...base, binary: true }, "hello").binary).toBe(true);
    expect(checkHello({ ...base }, "hello").binary).toBe(false);
    expect(() => checkHello({ ...base, binary: "yes" }, "hello")).toThrow(
      'hello: "binary" must be a boolean when present, got the string "yes"',
    );
  });
});

describe("docs/PROTOCOL.md worked exchange", () => {
  const doc = readFileSync(join(repo, "docs", "PROTOCOL.md"), "utf8");
  const block = /<!-- exchange -->\n```text\n([\s\S]*?)\n```/.exec(doc)?.[1];
  const lines = (block ?? "").split("\n");
  const requests = lines.filter((l) => l.startsWith("> ")).map((l) => l.slice(2));
  const responses = lines.filter((l) => l.startsWith("< ")).map((l) => l.slice(2));

  it("is well-formed: every request answered in order, every tensor valid", () => {
    expect(block).toBeDefined();
    expect(requests.length).toBe(6);
    expect(responses.length).toBe(requests.length);
    requests.forEach((text, k) => {
      const req = JSON.parse(text) as {
        id: number;
        method: string;
        params: Record<string, unknown>;
      };
      expect(req.id).toBe(k + 1);
      for (const group of ["inputs", "cotangents"]) {
        for (const [name, t] of Object.entries(
          (req.params[group] ?? {}) as Record<string, unknown>,
        ))
          tensorFromJSON(t, `request ${req.id} ${group} ${name}`);
      }
      const checked = checkResponse(JSON.parse(responses[k]!));
      if (!("response" in checked)) throw new Error(`response ${k + 1}: ${checked.problem}`);
      expect(checked.response.id).toBe(req.id);
      if (req.method === "hello" && "result" in checked.response)
        checkHello(checked.response.result, "hello");
      if ("result" in checked.response) {
        for (const group of ["outputs", "grads"]) {
          for (const [name, t] of Object.entries(
            (checked.response.result[group] ?? {}) as Record<string, unknown>,
          ))
            tensorFromJSON(t, `response ${req.id} ${group} ${name}`);
        }
      }
    });
  });

  it("states numbers that agree with layer_norm and softmax written out", () => {
    const y = tensorFromJSON(
      (JSON.parse(responses[1]!) as { result: { outputs: { y: unknown } } }).result.outputs.y,
      "y",
    );
    // rows [1, 2, 4] and [0.5, -0.5, 0]; gamma [1, 1, 2]; beta [0, 0.25, 0]; eps 1e-5; biased variance
    const rows = [
      [1, 2, 4],
      [0.5, -0.5, 0],
    ];
    const want = rows.flatMap((r) => {
      const mu = (r[0]! + r[1]! + r[2]!) / 3;
      const v = r.reduce((a, b) => a + (b - mu) ** 2, 0) / 3;
      return r.map((b, j) => ((b - mu) / Math.sqrt(v + 1e-5)) * [1, 1, 2][j]! + [0, 0.25, 0][j]!);
    });
    want.forEach((w, i) => expect(Math.abs(y.data[i]! - w)).toBeLessThan(16 * 2 ** -53 * 4));
    const p = tensorFromJSON(
      (JSON.parse(responses[3]!) as { result: { outputs: { y: unknown } } }).result.outputs.y,
      "p",
    );
    const x = [0, -Infinity, 1, Math.fround(0.1)];
    const s = x.reduce((a, b) => a + Math.exp(b - 1), 0);
    x.forEach((v, i) =>
      expect(Math.abs(p.data[i]! - Math.exp(v - 1) / s)).toBeLessThan(8 * 2 ** -24),
    );
  });

  it.skipIf(!numpyAvailable)("is what examples/numpy/impl.py answers today", () => {
    const out = execFileSync(PYTHON, ["examples/numpy/impl.py"], {
      cwd: repo,
      input: requests.join("\n") + "\n",
      encoding: "utf8",
    });
    const got = out.trimEnd().split("\n");
    expect(got.length).toBe(responses.length);
    // compare JSON values (spacing and number spelling may differ); floats to within a few ulps
    const same = (a: unknown, b: unknown, path: string): void => {
      if (typeof a === "number" && typeof b === "number") {
        if (!(Math.abs(a - b) <= 4 * Number.EPSILON * Math.max(Math.abs(a), Math.abs(b))))
          throw new Error(`${path}: ${a} vs ${b}`);
      } else if (Array.isArray(a) && Array.isArray(b)) {
        expect(a.length, path).toBe(b.length);
        a.forEach((v, i) => same(v, b[i], `${path}[${i}]`));
      } else if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
        const keys = Object.keys(a).filter((k) => k !== "numpy"); // hello reports the local NumPy version
        expect(keys.sort(), path).toEqual(
          Object.keys(b)
            .filter((k) => k !== "numpy")
            .sort(),
        );
        for (const k of keys)
          same(
            (a as Record<string, unknown>)[k],
            (b as Record<string, unknown>)[k],
            `${path}.${k}`,
          );
      } else expect(a, path).toEqual(b);
    };
    got.forEach((line, k) =>
      same(JSON.parse(line), JSON.parse(responses[k]!), `response ${k + 1}`),
    );
  });
});
