import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor } from "../autodiff/tensor.js";
import {
  MAX_HEADER_BYTES,
  MAX_TENSORS,
  SafetensorsFormatError,
  compareCodePoints,
  firstInvalidUtf8,
  readSafetensors,
  readSafetensorsFile,
  readSafetensorsHeader,
  writeSafetensors,
  writeSafetensorsFile,
} from "./safetensors.js";

const SRC = "case.safetensors";
const PYTHON = "/usr/bin/python3";
const FIXTURE = new URL("./fixtures/python-written.safetensors", import.meta.url).pathname;
const FIXTURE_SCRIPT = new URL("./fixtures/make_python_fixture.py", import.meta.url).pathname;

/** Assemble a file from raw header text and data, optionally lying about the header length. */
function craft(
  header: string | object,
  data: Uint8Array | number = 0,
  lengthOverride?: bigint,
): Uint8Array {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function entry(dtype: string, shape: number[], begin: number, end: number): object {
  return { dtype, shape, data_offsets: [begin, end] };
}

/** The error `fn` throws, asserting it is a SafetensorsFormatError. */
function formatError(fn: () => unknown): SafetensorsFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SafetensorsFormatError);
    return err as SafetensorsFormatError;
  }
  throw new Error("expected a SafetensorsFormatError, nothing was thrown");
}

function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

describe("writeSafetensors / readSafetensors round trip", () => {
  const specials64 = [
    0,
    -0,
    1,
    -1,
    Infinity,
    -Infinity,
    NaN,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    Number.MAX_VALUE,
    1 / 3,
  ];
  const f32min = 2 ** -149; // smallest float32 subnormal
  const specials32 = [
    0,
    -0,
    1.5,
    Infinity,
    -Infinity,
    NaN,
    f32min,
    -f32min,
    3.4028234663852886e38,
    Math.fround(0.1),
  ];

  it("preserves every bit of NaN, ±Inf, −0 and subnormals in f64, f32 and i32", () => {
    const x = Tensor.from(specials64, "f64", [3, 4]);
    const y = Tensor.from(specials32, "f32", [2, 5]);
    const t = Tensor.from([-2147483648, -1, 0, 2147483647], "i32", [4]);
    const s = Tensor.scalar(Math.PI);
    const e = new Tensor("f32", [0, 7]);
    const file = writeSafetensors(
      { "in.x": x, "in.y": y, "in.tokens": t, "out.loss": s, empty: e },
      { k: "v" },
    );
    const { tensors, metadata } = readSafetensors(file, SRC);
    expect([...tensors.keys()]).toEqual(["empty", "in.tokens", "in.x", "in.y", "out.loss"]);
    for (const [name, orig] of [
      ["in.x", x],
      ["in.y", y],
      ["in.tokens", t],
      ["out.loss", s],
      ["empty", e],
    ] as const) {
      const got = tensors.get(name)!;
      expect(got.dtype).toBe(orig.dtype);
      expect(got.shape).toEqual(orig.shape);
      expect(bytesOf(got)).toEqual(bytesOf(orig));
    }
    expect(Object.is(tensors.get("in.x")!.data[1], -0)).toBe(true);
    expect(tensors.get("in.x")!.data[7]).toBe(5e-324);
    expect(tensors.get("in.y")!.data[6]).toBe(f32min);
    expect({ ...metadata }).toEqual({ k: "v" });
    // writing what was read reproduces the file byte for byte
    expect(writeSafetensors(tensors, metadata)).toEqual(file);
  });

  it("lays the file out as documented: padded header, metadata first, sorted names, ascending offsets", () => {
    const file = writeSafetensors(
      { b: Tensor.from([1, 2, 3]), a: Tensor.from([1], "f32"), é: Tensor.from([1], "i32") },
      { z: "1" },
    );
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const text = new TextDecoder().decode(file.subarray(8, 8 + n));
    expect(text.trimEnd()).toBe(
      '{"__metadata__":{"z":"1"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"b":{"dtype":"F64","shape":[3],"data_offsets":[4,28]},"é":{"dtype":"I32","shape":[1],"data_offsets":[28,32]}}',
    );
    expect(text.length - text.trimEnd().length).toBeLessThan(8);
    expect(file.length).toBe(8 + n + 32);
  });

  it("sorts names by code point as Python does, not by UTF-16 unit", () => {
    // U+FF21 (one UTF-16 unit 0xFF21) sorts before U+1F600 (surrogates 0xD83D...) by code point
    expect(["\u{1F600}", "\uFF21"].sort(compareCodePoints)).toEqual(["\uFF21", "\u{1F600}"]);
    expect(["b", "a", "ab", ""].sort(compareCodePoints)).toEqual(["", "a", "ab", "b"]);
  });

  it("writes files atomically and reads them back", () => {
    const dir = mkdtempSync(join(tmpdir(), "st-"));
    const path = join(dir, "sub", "x.safetensors");
    writeSafetensorsFile(path, {
      x: Tensor.from([
        [1, 2],
        [3, 4],
      ]),
    });
    expect(readSafetensorsFile(path).tensors.get("x")!.toNested()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(formatError(() => readSafetensorsFile(join(dir, "nope.safetensors"))).message).toBe(
      `${join(dir, "nope.safetensors")}: cannot read: no such file`,
    );
    expect(formatError(() => readSafetensorsFile(dir)).message).toContain("is a directory");
  });

  it("reads data at any alignment of the input buffer", () => {
    const file = writeSafetensors({ x: Tensor.from([1.25, -2.5, NaN]) });
    const big = new Uint8Array(file.length + 3);
    big.set(file, 3);
    const shifted = big.subarray(3);
    expect(shifted.byteOffset % 8).toBe(3);
    const x = readSafetensors(shifted, SRC).tensors.get("x")!;
    expect(Array.from(x.data)).toEqual([1.25, -2.5, NaN]);
    shifted.fill(0); // the tensor owns a copy
    expect(x.data[0]).toBe(1.25);
  });

  it("refuses reserved names, non-Tensor values and non-string metadata when writing", () => {
    expect(formatError(() => writeSafetensors({ __metadata__: Tensor.from([1]) })).message).toBe(
      '<writeSafetensors>: tensor "__metadata__": the name is reserved and cannot be a tensor name',
    );
    expect(formatError(() => writeSafetensors({ x: [1, 2] as unknown as Tensor })).message).toBe(
      '<writeSafetensors>: tensor "x": value must be a Tensor, found an array',
    );
    expect(formatError(() => writeSafetensors({}, { n: 3 as unknown as string })).message).toBe(
      '<writeSafetensors>: metadata value for "n" must be a string, found a number (3)',
    );
  });
});

describe("a file written by Python's struct + json", () => {
  it("reads every dtype, the misaligned buffer and the metadata", () => {
    const { tensors, metadata } = readSafetensorsFile(FIXTURE);
    const a = tensors.get("a_f64")!;
    expect(a.dtype).toBe("f64");
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(a.data)).toEqual([0, 1, 2, 3, 4, 5].map((i) => (i - 2.5) / 7));

    const b = tensors.get("b_f32")!;
    expect(b.dtype).toBe("f32");
    expect(Array.from(b.data)).toEqual([1.5, -0, Infinity, -Infinity, NaN, 2 ** -149]);
    expect(Object.is(b.data[1], -0)).toBe(true);

    expect(Array.from(tensors.get("c_i32")!.data)).toEqual([-2147483648, 0, 2147483647]);
    const d = tensors.get("d_i64")!;
    expect(d.dtype).toBe("i32");
    expect(d.toNested()).toEqual([
      [0, -1],
      [50256, 2147483647],
    ]);

    // binary16: 65504 is the largest finite half, 2^-24 the smallest subnormal
    const e = tensors.get("e_f16")!;
    expect(e.dtype).toBe("f32");
    expect(Array.from(e.data)).toEqual([1, -2.5, 65504, 2 ** -24, -0, Infinity]);
    expect(Object.is(e.data[4], -0)).toBe(true);
    expect(Array.from(tensors.get("f_bf16")!.data)).toEqual([1, -3, 2 ** -130]);

    expect(tensors.get("g_empty")!.shape).toEqual([0, 3]);
    const h = tensors.get("h_scalar")!;
    expect(h.shape).toEqual([]);
    expect(h.data[0]).toBe(Math.PI);
    expect(tensors.get("in.h.0.attn.c_attn.weight")!.toNested()).toEqual([
      [-1, -0.75, -0.5, -0.25, 0, 0.25],
      [0.5, 0.75, 1, 1.25, 1.5, 1.75],
    ]);
    expect(metadata.note).toBe("non-ASCII text: üß→\u{1F600}");
    expect(JSON.parse(metadata.specformer!)).toEqual({
      written_by: "make_python_fixture.py",
      pi: Math.PI,
    });
    const header = readSafetensorsHeader(readFileSync(FIXTURE), FIXTURE);
    expect(header.dataStart % 2).toBe(1); // misaligned on purpose
  });

  it.skipIf(!existsSync(PYTHON))("is what the committed script writes", () => {
    const out = join(mkdtempSync(join(tmpdir(), "st-py-")), "f.safetensors");
    execFileSync(PYTHON, [FIXTURE_SCRIPT, out]);
    expect(readFileSync(out)).toEqual(readFileSync(FIXTURE));
  });
});

const PY_LIB = new URL("../golden/specformer_golden.py", import.meta.url).pathname;

describe.skipIf(!existsSync(PYTHON))("agreement with golden/specformer_golden.py", () => {
  it("writes the same bytes as its encode_safetensors for the same tensors and metadata", () => {
    const out = join(mkdtempSync(join(tmpdir(), "st-py-")), "py.safetensors");
    const metadata = { specformer: '{"k": 1}', a: 'ü " \\ \n\u0001' };
    const script = [
      "import sys, json, numpy as np",
      `sys.path.insert(0, ${JSON.stringify(join(PY_LIB, ".."))})`,
      "from specformer_golden import encode_safetensors",
      't = {"out.y": np.array([[0.5, -2.0, np.inf]], dtype="<f8"), "in.x": np.array([1.25, -0.0], dtype="<f4"),',
      '     "in.tokens": np.array([3, 50256], dtype="<i4"), "w" + chr(0xe9): ' +
        'np.zeros((0, 2), dtype="<f8"), "s": np.array(7.0)}',
      'open(sys.argv[1], "wb").write(encode_safetensors(t, json.loads(sys.argv[2])))',
    ].join("\n");
    execFileSync(PYTHON, ["-c", script, out, JSON.stringify(metadata)]);
    const ours = writeSafetensors(
      {
        "out.y": Tensor.from([[0.5, -2, Infinity]]),
        "in.x": Tensor.from([1.25, -0], "f32"),
        "in.tokens": Tensor.from([3, 50256], "i32"),
        wé: new Tensor("f64", [0, 2]),
        s: Tensor.scalar(7),
      },
      metadata,
    );
    expect(new TextDecoder().decode(ours.subarray(8, 200))).toBe(
      new TextDecoder().decode(readFileSync(out).subarray(8, 200)),
    );
    expect(ours).toEqual(new Uint8Array(readFileSync(out)));
  });
});

describe("dtype conversion limits", () => {
  const i64 = (values: bigint[]): Uint8Array => new Uint8Array(new BigInt64Array(values).buffer);

  it("reads I64 into i32 only when every value fits", () => {
    const ok = craft({ t: entry("I64", [2], 0, 16) }, i64([-2147483648n, 2147483647n]));
    expect(Array.from(readSafetensors(ok, SRC).tensors.get("t")!.data)).toEqual([
      -2147483648, 2147483647,
    ]);
    const bad = craft({ t: entry("I64", [2, 2], 0, 32) }, i64([0n, 1n, 2n, 4294967296n]));
    expect(formatError(() => readSafetensors(bad, SRC)).message).toBe(
      'case.safetensors: tensor "t": I64 value 4294967296 at index [1, 1] ' +
        "does not fit in i32 (I64 is read as i32 only when every value fits)",
    );
  });

  it("names unsupported and unknown dtypes", () => {
    expect(
      formatError(() => readSafetensors(craft({ mask: entry("BOOL", [3], 0, 3) }, 3), SRC)).message,
    ).toBe(
      'case.safetensors: tensor "mask": unsupported dtype BOOL (this reader converts F64, F32, I32, I64, F16, BF16)',
    );
    expect(
      formatError(() => readSafetensors(craft({ ids: entry("U8", [2], 0, 2) }, 2), SRC)).message,
    ).toContain('tensor "ids": unsupported dtype U8');
    const e = formatError(() => readSafetensors(craft({ q: entry("Q4", [2], 0, 2) }, 2), SRC));
    expect(e.message).toMatch(
      /^case\.safetensors: tensor "q": unknown dtype "Q4" \(known: F64, F32, I32, I64, F16, BF16, BOOL, U8/,
    );
    expect(e.tensor).toBe("q");
    expect(e.source).toBe(SRC);
    // the header alone (spans, shapes) is still valid for a known but unconverted dtype
    expect(
      readSafetensorsHeader(craft({ mask: entry("BOOL", [3], 0, 3) }, 3), SRC).entries[0]!.dtype,
    ).toBe("BOOL");
  });
});

describe("hardening: every malformed file gets a clear SafetensorsFormatError", () => {
  const good = { x: entry("F64", [2], 0, 16) };
  const cases: Array<[string, Uint8Array, string]> = [
    [
      "empty file",
      new Uint8Array(0),
      "case.safetensors: file is 0 bytes long, shorter than the 8-byte header length prefix",
    ],
    [
      "7-byte file",
      new Uint8Array(7),
      "case.safetensors: file is 7 bytes long, shorter than the 8-byte header length prefix",
    ],
    [
      "header length past the end",
      craft(good, 16, 1000n),
      "case.safetensors: header length 1000 is larger than the 71 bytes that " +
        "follow the length prefix (file truncated?)",
    ],
    [
      "header length above the bound",
      craft(good, 16, BigInt(MAX_HEADER_BYTES) + 1n),
      `case.safetensors: header length ${MAX_HEADER_BYTES + 1} exceeds the 100000000-byte bound`,
    ],
    [
      "u64 header length",
      craft(good, 16, 0xffffffffffffffffn),
      "case.safetensors: header length 18446744073709551615 exceeds the 100000000-byte bound",
    ],
    [
      "header length 0",
      craft("", 0),
      "case.safetensors: header length 0 is too short to hold a JSON object",
    ],
    [
      "header not an object",
      craft("[1, 2]", 0),
      "case.safetensors: header must start with '{', found '['",
    ],
    [
      "header with a BOM",
      craft("\uFEFF{}", 0),
      "case.safetensors: header must start with '{', found U+FEFF",
    ],
    [
      "header JSON broken",
      craft('{"x": {"dtype": "F64",}}', 0),
      "case.safetensors: header is not valid JSON: expected a string key, found '}' at character 22",
    ],
    [
      "header JSON truncated",
      craft('{"x": {"dtype"', 0),
      "case.safetensors: header is not valid JSON: expected ':' after key " +
        '"dtype", found end of input at character 14',
    ],
    [
      "trailing garbage",
      craft("{} x", 0),
      "case.safetensors: header is not valid JSON: unexpected 'x' after the JSON value at character 3",
    ],
    [
      "__proto__ key",
      craft('{"__proto__": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}', 8),
      'case.safetensors: header is not valid JSON: reserved key "__proto__" ' +
        "(refused: it could pollute object prototypes) at character 1",
    ],
    [
      "constructor key",
      craft('{"constructor": {}}', 0),
      'case.safetensors: header is not valid JSON: reserved key "constructor" ' +
        "(refused: it could pollute object prototypes) at character 1",
    ],
    [
      "prototype key inside metadata",
      craft('{"__metadata__": {"prototype": "x"}}', 0),
      'case.safetensors: header is not valid JSON: reserved key "prototype" ' +
        "(refused: it could pollute object prototypes) at character 18",
    ],
    [
      "duplicate tensor name",
      craft(
        '{"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}, "x": ' +
          '{"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}',
        16,
      ),
      'case.safetensors: header is not valid JSON: duplicate key "x" (a plain ' +
        "JSON.parse would silently keep the last one) at character 62",
    ],
    [
      "duplicate field in an entry",
      craft('{"x": {"dtype": "F64", "shape": [1], "shape": [2], "data_offsets": [0, 8]}}', 8),
      'case.safetensors: header is not valid JSON: duplicate key "shape" (a ' +
        "plain JSON.parse would silently keep the last one) at character 37",
    ],
    [
      "entry not an object",
      craft({ x: [1] }, 0),
      'case.safetensors: tensor "x": entry must be an object {dtype, shape, data_offsets}, found an array',
    ],
    [
      "missing dtype",
      craft({ x: { shape: [1], data_offsets: [0, 8] } }, 8),
      'case.safetensors: tensor "x": entry is missing "dtype"',
    ],
    [
      "missing shape",
      craft({ x: { dtype: "F64", data_offsets: [0, 8] } }, 8),
      'case.safetensors: tensor "x": entry is missing "shape"',
    ],
    [
      "missing data_offsets",
      craft({ x: { dtype: "F64", shape: [1] } }, 8),
      'case.safetensors: tensor "x": entry is missing "data_offsets"',
    ],
    [
      "unexpected entry key",
      craft({ x: { ...entry("F64", [1], 0, 8), stride: [1] } }, 8),
      'case.safetensors: tensor "x": entry has unexpected key "stride" (allowed: dtype, shape, data_offsets)',
    ],
    [
      "dtype not a string",
      craft({ x: { dtype: 8, shape: [1], data_offsets: [0, 8] } }, 8),
      'case.safetensors: tensor "x": "dtype" must be a string, found a number (8)',
    ],
    [
      "shape not an array",
      craft({ x: { dtype: "F64", shape: 2, data_offsets: [0, 16] } }, 16),
      'case.safetensors: tensor "x": "shape" must be an array of integers, found a number (2)',
    ],
    [
      "shape entry a string",
      craft({ x: entry("F64", ["2" as unknown as number], 0, 16) }, 16),
      'case.safetensors: tensor "x": "shape"[0] must be an integer, found a string ("2")',
    ],
    [
      "negative shape",
      craft({ x: entry("F64", [2, -1], 0, 16) }, 16),
      'case.safetensors: tensor "x": "shape"[1] is -1, which is negative',
    ],
    [
      "fractional shape",
      craft({ x: entry("F64", [1.5], 0, 16) }, 16),
      'case.safetensors: tensor "x": "shape"[0] is 1.5, not an integer',
    ],
    [
      "huge shape",
      craft('{"x": {"dtype": "F64", "shape": [1e300], "data_offsets": [0, 8]}}', 8),
      'case.safetensors: tensor "x": "shape"[0] is 1e+300, too large (above 2^53 - 1)',
    ],
    [
      "shape 1e400",
      craft('{"x": {"dtype": "F64", "shape": [1e400], "data_offsets": [0, 8]}}', 8),
      'case.safetensors: tensor "x": "shape"[0] is Infinity, not an integer',
    ],
    [
      "shape product beyond the buffer",
      craft({ x: entry("F64", [4294967296, 4294967296, 4294967296], 0, 8) }, 8),
      'case.safetensors: tensor "x": shape [4294967296, 4294967296, ' +
        "4294967296] of F64 (8 bytes each) needs more than the 8-byte data " +
        "buffer but data_offsets [0, 8] span 8",
    ],
    [
      "offsets with 3 numbers",
      craft({ x: { dtype: "F64", shape: [1], data_offsets: [0, 8, 16] } }, 16),
      'case.safetensors: tensor "x": "data_offsets" must hold exactly 2 integers [begin, end], found 3',
    ],
    [
      "negative offset",
      craft({ x: entry("F64", [1], -8, 0) }, 8),
      'case.safetensors: tensor "x": "data_offsets"[0] is -8, which is negative',
    ],
    [
      "begin > end",
      craft({ x: entry("F64", [0], 8, 0) }, 8),
      'case.safetensors: tensor "x": data_offsets [8, 0] has begin > end',
    ],
    [
      "offsets out of the buffer",
      craft({ x: entry("F64", [2], 0, 16) }, 8),
      'case.safetensors: tensor "x": data_offsets [0, 16] run past the end of the 8-byte data buffer',
    ],
    [
      "span length ≠ shape × size",
      craft({ x: entry("F32", [3], 0, 8) }, 8),
      'case.safetensors: tensor "x": shape [3] of F32 (4 bytes each) needs 12 bytes but data_offsets [0, 8] span 8',
    ],
    [
      "overlapping spans",
      craft({ a: entry("F64", [2], 0, 16), b: entry("F64", [1], 8, 16) }, 16),
      'case.safetensors: tensor "b": data_offsets [8, 16] overlap tensor "a" at [0, 16]',
    ],
    [
      "hole between spans",
      craft({ a: entry("F64", [1], 0, 8), b: entry("F64", [1], 16, 24) }, 24),
      'case.safetensors: tensor "b": data_offsets [16, 24] leave a hole: ' +
        "bytes [8, 16) of the data buffer belong to no tensor",
    ],
    [
      "hole at the start",
      craft({ a: entry("F32", [1], 4, 8) }, 8),
      'case.safetensors: tensor "a": data_offsets [4, 8] leave a hole: bytes ' +
        "[0, 4) of the data buffer belong to no tensor",
    ],
    [
      "unused trailing bytes",
      craft(good, 20),
      "case.safetensors: bytes [16, 20) at the end of the data buffer belong to no tensor",
    ],
    [
      "metadata not an object",
      craft({ __metadata__: "x" }, 0),
      'case.safetensors: "__metadata__" must be an object of strings, found a string ("x")',
    ],
    [
      "metadata value not a string",
      craft({ __metadata__: { seed: 3 } }, 0),
      'case.safetensors: "__metadata__" value for key "seed" must be a string, found a number (3)',
    ],
    [
      "metadata value null",
      craft({ __metadata__: { notes: null } }, 0),
      'case.safetensors: "__metadata__" value for key "notes" must be a string, found null',
    ],
    [
      "nesting too deep",
      craft(`{"__metadata__": ${"[".repeat(100)}`, 0),
      "case.safetensors: header is not valid JSON: nesting deeper than 64 levels at character 80",
    ],
  ];
  it.each(cases)("%s", (_label, bytes, message) => {
    expect(formatError(() => readSafetensors(bytes, SRC)).message).toBe(message);
  });

  it("refuses a header with more than MAX_TENSORS tensors, quickly (a million zero-size tensors)", () => {
    const entries = (n: number): string => {
      const parts: string[] = [];
      for (let i = 0; i < n; i++)
        parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
      return `{${parts.join(",")}}`;
    };
    const start = performance.now();
    expect(formatError(() => readSafetensors(craft(entries(1_000_000)), SRC)).message).toBe(
      `case.safetensors: header has more than ${MAX_TENSORS + 1} entries (at ` +
        `most ${MAX_TENSORS} tensors and "__metadata__")`,
    );
    expect(performance.now() - start).toBeLessThan(20_000); // was 73 s and 2.3 GB, then a stack overflow
    // exactly the bound is accepted, with metadata beside it
    const atBound = entries(MAX_TENSORS).replace(/^\{/, '{"__metadata__":{"a":"b"},');
    expect(readSafetensorsHeader(craft(atBound), SRC).entries).toHaveLength(MAX_TENSORS);
  }, 60_000);

  it("reads only regular files: a folder, a FIFO and /dev/zero are refused before reading", () => {
    const dir = mkdtempSync(join(tmpdir(), "st-"));
    expect(formatError(() => readSafetensorsFile(dir)).message).toBe(
      `${dir}: cannot read: is a directory, not a file`,
    );
    expect(formatError(() => readSafetensorsFile("/dev/zero")).message).toBe(
      "/dev/zero: cannot read: is a character device, not a regular file (only regular files are read)",
    );
    const fifo = join(dir, "pipe.safetensors");
    execFileSync("mkfifo", [fifo]);
    expect(formatError(() => readSafetensorsFile(fifo)).message).toBe(
      `${fifo}: cannot read: is a FIFO (named pipe), not a regular file (only regular files are read)`,
    );
  });

  it("reports the first invalid UTF-8 byte of the header", () => {
    const h = new TextEncoder().encode('{"x": 1}');
    const bad = new Uint8Array([...h.subarray(0, 3), 0xff, ...h.subarray(3)]);
    const file = new Uint8Array(8 + bad.length);
    new DataView(file.buffer).setBigUint64(0, BigInt(bad.length), true);
    file.set(bad, 8);
    expect(formatError(() => readSafetensors(file, SRC)).message).toBe(
      "case.safetensors: header is not valid UTF-8 (bad byte 0xff at header offset 3)",
    );
  });

  it("validates UTF-8 per RFC 3629", () => {
    const u = (...b: number[]) => firstInvalidUtf8(new Uint8Array(b));
    expect(u(0x41, 0xc3, 0xbc, 0xe2, 0x86, 0x92, 0xf0, 0x9f, 0x98, 0x80)).toBe(-1); // A ü → 😀
    expect(u(0xc0, 0x80)).toBe(0); // overlong NUL
    expect(u(0xe0, 0x80, 0x80)).toBe(1); // overlong
    expect(u(0xed, 0xa0, 0x80)).toBe(1); // surrogate U+D800
    expect(u(0xf4, 0x90, 0x80, 0x80)).toBe(1); // above U+10FFFF
    expect(u(0x41, 0xe2, 0x86)).toBe(1); // truncated sequence
    expect(u(0x80)).toBe(0); // stray continuation
  });

  it("accepts zero-size tensors anywhere a span boundary is", () => {
    const file = craft(
      { a: entry("F64", [1], 0, 8), e: entry("F32", [0, 4], 8, 8), z: entry("I32", [0], 0, 0) },
      8,
    );
    const { tensors } = readSafetensors(file, SRC);
    expect(tensors.get("e")!.shape).toEqual([0, 4]);
    expect(tensors.get("z")!.size).toBe(0);
  });
});

describe("SafetensorsFormatError carries the byte of the file where the problem is", () => {
  it("the length prefix, the header's bytes and JSON, and the data spans each name their byte", () => {
    expect(formatError(() => readSafetensors(new Uint8Array(5), SRC)).byteOffset).toBe(0);
    expect(formatError(() => readSafetensors(craft("{}", 0, 100n), SRC)).byteOffset).toBe(0);
    const utf8 = new Uint8Array([
      ...new TextEncoder().encode('{"x'),
      0xff,
      ...new TextEncoder().encode('": 1}'),
    ]);
    const badUtf8 = new Uint8Array(8 + utf8.length);
    new DataView(badUtf8.buffer).setBigUint64(0, BigInt(utf8.length), true);
    badUtf8.set(utf8, 8);
    expect(formatError(() => readSafetensors(badUtf8, SRC)).byteOffset).toBe(8 + 3);
    // a JSON error's character position becomes a byte: "é" takes two bytes before the duplicate key
    const dup = formatError(() => readSafetensors(craft('{"é": {}, "é": {}}'), SRC));
    expect(dup.message).toBe(
      'case.safetensors: header is not valid JSON: duplicate key "é" (a plain ' +
        "JSON.parse would silently keep the last one) at character 10",
    );
    expect(dup.byteOffset).toBe(8 + 11);
    const header = { a: entry("F64", [1], 0, 8), b: entry("F64", [1], 16, 24) };
    const hole = formatError(() => readSafetensors(craft(header, 24), SRC));
    expect(hole.tensor).toBe("b");
    const dataStart = 8 + new TextEncoder().encode(JSON.stringify(header)).length;
    expect(hole.byteOffset).toBe(dataStart + 8);
    const trailing = formatError(() =>
      readSafetensors(craft({ a: entry("F64", [1], 0, 8) }, 12), SRC),
    );
    expect(trailing.byteOffset).toBe(8 + JSON.stringify({ a: entry("F64", [1], 0, 8) }).length + 8);
  });

  it("an I64 value that does not fit i32 is reported at its own 8 bytes", () => {
    const data = new Uint8Array(16);
    new DataView(data.buffer).setBigInt64(8, 1n << 40n, true);
    const header = { t: entry("I64", [2], 0, 16) };
    const e = formatError(() => readSafetensors(craft(header, data), SRC));
    expect(e.tensor).toBe("t");
    expect(e.problem).toContain("I64 value 1099511627776 at index [1]");
    expect(e.byteOffset).toBe(8 + JSON.stringify(header).length + 8);
  });

  it("a header-entry problem names the tensor (its header key) and the problem apart", () => {
    const e = formatError(() => readSafetensors(craft({ w: entry("F32", [3], 0, 8) }, 8), SRC));
    expect(e.source).toBe(SRC);
    expect(e.tensor).toBe("w");
    expect(e.message).toBe(`${SRC}: tensor "w": ${e.problem}`);
  });
});

describe("readSafetensors({ skip })", () => {
  const file = craft(
    { mask: entry("BOOL", [3], 0, 3), x: entry("F32", [1], 3, 7), y: entry("F64", [1], 7, 15) },
    15,
  );

  it("leaves out the tensors it names, so a dtype the reader does not convert may be there", () => {
    expect(formatError(() => readSafetensors(file, SRC)).tensor).toBe("mask");
    const { tensors } = readSafetensors(file, SRC, { skip: (name) => name === "mask" });
    expect([...tensors.keys()]).toEqual(["x", "y"]);
    expect(tensors.get("x")!.dtype).toBe("f32");
    const none = readSafetensors(file, SRC, { skip: () => true });
    expect(none.tensors.size).toBe(0);
  });

  it("still checks the skipped tensors' header entries and spans", () => {
    const overlapping = craft({ mask: entry("BOOL", [3], 0, 3), x: entry("U8", [2], 2, 4) }, 4);
    const e = formatError(() => readSafetensors(overlapping, SRC, { skip: () => true }));
    expect(e.tensor).toBe("x");
    expect(e.problem).toContain("overlap");
    const unknown = craft({ m: entry("Q4", [1], 0, 1) }, 1);
    expect(
      formatError(() => readSafetensors(unknown, SRC, { skip: () => true })).problem,
    ).toContain('unknown dtype "Q4"');
  });

  it("readSafetensorsFile passes the option on", () => {
    const dir = mkdtempSync(join(tmpdir(), "st-skip-"));
    const path = join(dir, "m.safetensors");
    writeFileSync(path, file);
    expect([...readSafetensorsFile(path, { skip: (n) => n !== "y" }).tensors.keys()]).toEqual([
      "y",
    ]);
  });
});
