/**
 * Mutation fuzzing of the safetensors reader.
 *
 * Valid files are written with our writer, then damaged: truncated, bytes flipped, numbers in
 * the header changed, keys deleted or inserted, entries duplicated, dtypes swapped, data bytes
 * added or removed. Every damaged file must either parse consistently (all invariants below
 * hold) or raise our own {@link SafetensorsFormatError}: never another exception, never a hang.
 *
 * `npm test` runs 500 cases (io/fuzz.test.ts). The deep run:
 *
 *     npx tsx io/fuzz.ts --runs 20000 [--seed N]
 *
 * prints runs, outcomes and timing, and appends a dated line to io/FUZZ.md.
 */
import fc from "fast-check";
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Tensor, sizeOf } from "../autodiff/tensor.js";
import type { DType } from "../autodiff/tensor.js";
import {
  SafetensorsFormatError,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from "./safetensors.js";

/** A case slower than this counts as a hang (the reader is linear; real cases take well under 1 ms). */
const HANG_MS = 2000;

const NAMES = [
  "in.x",
  "in.gamma",
  "out.y",
  "grad.x",
  "cot.y",
  "in.h.0.attn.c_attn.weight",
  "a",
  "ü→",
  "",
];
const DTYPE_SIZE: Record<string, number> = {
  F64: 8,
  F32: 4,
  I32: 4,
  I64: 8,
  F16: 2,
  BF16: 2,
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  U16: 2,
  I16: 2,
  U32: 4,
  U64: 8,
  C64: 8,
};

const valueArb = fc.oneof(
  fc.double(),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 5e-324, 1e308, -1),
  fc.integer({ min: -1000, max: 1000 }),
);

const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({
    dtype: fc.constantFrom<DType>("f64", "f32", "i32"),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
  })
  .chain(({ dtype, shape }) =>
    fc.array(valueArb, { minLength: sizeOf(shape), maxLength: sizeOf(shape) }).map((vals) => {
      const t = new Tensor(dtype, shape);
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i]!;
        t.data[i] = dtype === "i32" ? (Number.isFinite(v) ? Math.trunc(v) | 0 : 0) : v;
      }
      return t;
    }),
  );

function fileArb(minKeys: number): fc.Arbitrary<Uint8Array> {
  return fc
    .record({
      tensors: fc.dictionary(fc.constantFrom(...NAMES), tensorArb, { minKeys, maxKeys: 4 }),
      metadata: fc.option(
        fc.dictionary(fc.constantFrom("specformer", "note", "x"), fc.string({ maxLength: 12 }), {
          maxKeys: 2,
        }),
        { nil: undefined },
      ),
    })
    .map(({ tensors, metadata }) => writeSafetensors(tensors, metadata));
}

/** A valid file: 0–4 tensors, optional metadata. */
export const validFileArb: fc.Arbitrary<Uint8Array> = fileArb(0);

interface Parts {
  header: string;
  data: Uint8Array;
}

function split(file: Uint8Array): Parts | null {
  if (file.length < 8) return null;
  const n = Number(
    new DataView(file.buffer, file.byteOffset, file.byteLength).getBigUint64(0, true),
  );
  if (8 + n > file.length) return null;
  return { header: new TextDecoder().decode(file.subarray(8, 8 + n)), data: file.subarray(8 + n) };
}

function join(header: string, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, h.length + lengthDelta)), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** Edit the header text, keeping the header length right (or, sometimes, wrong by a little). */
function editHeader(
  file: Uint8Array,
  edit: (header: string) => string,
  lengthDelta: number,
): Uint8Array {
  const p = split(file);
  if (p === null) return file;
  return join(edit(p.header), p.data, lengthDelta);
}

const REPLACEMENT_NUMBERS = [
  "0",
  "1",
  "-1",
  "2",
  "7",
  "8",
  "16",
  "1.5",
  "-0",
  "1e400",
  "9007199254740993",
  "4294967296",
  "1e20",
  "null",
  '"8"',
  "[]",
  "{}",
];
const INSERT_KEYS = [
  '"__proto__"',
  '"constructor"',
  '"prototype"',
  '"__metadata__"',
  '"dtype"',
  '"shape"',
  '"data_offsets"',
  '"in.x"',
  '"out.y"',
  '"extra"',
];
const INSERT_VALUES = [
  '{"dtype":"F64","shape":[1],"data_offsets":[0,8]}',
  '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}',
  '"F64"',
  "[0,8]",
  "[]",
  "1",
  "null",
  '{"k":"v"}',
  '{"k":1}',
  "{}",
];
const DTYPE_NAMES = [...Object.keys(DTYPE_SIZE), "Q4", "f64", ""];

/** One mutation of a file. */
const mutationArb: fc.Arbitrary<(file: Uint8Array) => Uint8Array> = fc.oneof(
  // truncation
  fc
    .oneof(
      { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
      { weight: 4, arbitrary: fc.double({ min: 0.5, max: 1, noNaN: true }) },
    )
    .map((f) => (file: Uint8Array) => file.slice(0, Math.floor(file.length * f))),
  // byte flips, biased towards the header
  fc
    .array(
      fc.record({
        where: fc.double({ min: 0, max: 1, noNaN: true }),
        xor: fc.integer({ min: 1, max: 255 }),
        inHeader: fc.boolean(),
      }),
      { minLength: 1, maxLength: 4 },
    )
    .map((flips) => (file: Uint8Array) => {
      const out = file.slice();
      const p = split(file);
      const headerEnd = p === null ? out.length : out.length - p.data.length;
      for (const { where, xor, inHeader } of flips) {
        const span = inHeader ? headerEnd : out.length;
        if (span === 0) continue;
        const i = Math.min(span - 1, Math.floor(where * span));
        out[i] = out[i]! ^ xor;
      }
      return out;
    }),
  // change one number in the header (shapes, offsets, lengths)
  fc
    .record({
      which: fc.nat(),
      by: fc.oneof(fc.constantFrom(...REPLACEMENT_NUMBERS), fc.integer({ min: -3, max: 3 })),
      delta: fc.constantFrom(0, 0, 0, 1, -1),
    })
    .map(
      ({ which, by, delta }) =>
        (file: Uint8Array) =>
          editHeader(
            file,
            (h) => {
              const nums = [...h.matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)];
              if (nums.length === 0) return h;
              const m = nums[which % nums.length]!;
              const text = typeof by === "number" ? String(Number(m[0]) + by) : by;
              return h.slice(0, m.index) + text + h.slice(m.index + m[0].length);
            },
            delta,
          ),
    ),
  // delete a key (top level or inside an entry)
  fc.record({ which: fc.nat(), delta: fc.constantFrom(0, 0, 2) }).map(
    ({ which, delta }) =>
      (file: Uint8Array) =>
        editHeader(
          file,
          (h) => {
            const keys = [...h.matchAll(/"(?:[^"\\]|\\.)*":/g)];
            if (keys.length === 0) return h;
            const k = keys[which % keys.length]!;
            // remove `"key":` and its value up to the next ',' or '}' at the same depth
            let i = k.index + k[0].length;
            let depth = 0;
            let inString = false;
            for (; i < h.length; i++) {
              const c = h[i];
              if (inString) {
                if (c === "\\") i++;
                else if (c === '"') inString = false;
              } else if (c === '"') inString = true;
              else if (c === "{" || c === "[") depth++;
              else if (c === "}" || c === "]") {
                if (depth === 0) break;
                depth--;
              } else if (c === "," && depth === 0) {
                i++;
                break;
              }
            }
            return h.slice(0, k.index) + h.slice(i);
          },
          delta,
        ),
  ),
  // insert a key after some '{'
  fc
    .record({
      which: fc.nat(),
      key: fc.constantFrom(...INSERT_KEYS),
      value: fc.constantFrom(...INSERT_VALUES),
    })
    .map(
      ({ which, key, value }) =>
        (file: Uint8Array) =>
          editHeader(
            file,
            (h) => {
              const braces = [...h.matchAll(/\{/g)];
              if (braces.length === 0) return h;
              const at = braces[which % braces.length]!.index + 1;
              const rest = h.slice(at).trimStart();
              return `${h.slice(0, at)}${key}:${value}${rest.startsWith("}") ? "" : ","}${h.slice(at)}`;
            },
            0,
          ),
    ),
  // duplicate a tensor entry
  fc.nat().map(
    (which) => (file: Uint8Array) =>
      editHeader(
        file,
        (h) => {
          const entries = [...h.matchAll(/"(?:[^"\\]|\\.)*":\{"dtype"[^}]*\}/g)];
          if (entries.length === 0) return h;
          const e = entries[which % entries.length]!;
          return h.slice(0, e.index) + e[0] + "," + h.slice(e.index);
        },
        0,
      ),
  ),
  // swap a dtype
  fc.record({ which: fc.nat(), dtype: fc.constantFrom(...DTYPE_NAMES) }).map(
    ({ which, dtype }) =>
      (file: Uint8Array) =>
        editHeader(
          file,
          (h) => {
            const ds = [...h.matchAll(/"dtype":"([^"]*)"/g)];
            if (ds.length === 0) return h;
            const d = ds[which % ds.length]!;
            return h.slice(0, d.index) + `"dtype":"${dtype}"` + h.slice(d.index + d[0].length);
          },
          0,
        ),
  ),
  // add or remove data bytes
  fc.integer({ min: -9, max: 9 }).map((k) => (file: Uint8Array) => {
    if (k < 0) return file.slice(0, Math.max(0, file.length + k));
    const out = new Uint8Array(file.length + k);
    out.set(file);
    return out;
  }),
);

/** A valid file with 1–3 mutations applied. */
const mutatedFileArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(fileArb(1), fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
  .map(([file, muts]) => muts.reduce((f, m) => m(f), file));

export interface FuzzStats {
  runs: number;
  parsed: number;
  rejected: number;
  maxCaseMs: number;
  /** How often each kind of problem was reported (the message with numbers and names blanked). */
  problems: Map<string, number>;
}

export function newStats(): FuzzStats {
  return { runs: 0, parsed: 0, rejected: 0, maxCaseMs: 0, problems: new Map() };
}

function sameBits(a: Tensor, b: Tensor): boolean {
  if (
    a.dtype !== b.dtype ||
    a.shape.length !== b.shape.length ||
    a.shape.some((d, i) => d !== b.shape[i])
  )
    return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * The fuzz property for one (possibly damaged) file: a parse must be consistent, a rejection must
 * be a SafetensorsFormatError, and either must come quickly. Throws (failing the property) otherwise.
 */
export function checkFile(bytes: Uint8Array, stats?: FuzzStats): void {
  const t0 = performance.now();
  let contents: ReturnType<typeof readSafetensors> | undefined;
  try {
    contents = readSafetensors(bytes, "fuzz.safetensors");
  } catch (err) {
    if (!(err instanceof SafetensorsFormatError))
      throw new Error(`reader raised ${String(err)} instead of a SafetensorsFormatError`);
    if (!err.message.startsWith("fuzz.safetensors: "))
      throw new Error(`error does not name the file: ${err.message}`);
    const at = err.byteOffset;
    if (at !== undefined && !(Number.isInteger(at) && at >= 0 && at <= bytes.length)) {
      throw new Error(`byte offset ${at} is outside the ${bytes.length}-byte file: ${err.message}`);
    }
    if (stats) {
      stats.rejected++;
      const kind = err.problem.replace(
        /"(?:[^"\\]|\\.)*"|'[^']*'|U\+[0-9A-F]+|0x[0-9a-f]+|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|\[[^\]]*\]/g,
        "_",
      );
      stats.problems.set(kind, (stats.problems.get(kind) ?? 0) + 1);
    }
  }
  if (contents !== undefined) {
    // invariants of a consistent parse
    const h = readSafetensorsHeader(bytes, "fuzz.safetensors");
    if (h.dataStart + h.dataLength !== bytes.length)
      throw new Error("header and data do not add up to the file");
    let covered = 0;
    for (const e of h.entries) {
      const t = contents.tensors.get(e.name);
      if (t === undefined) throw new Error(`entry ${e.name} has no tensor`);
      const span = e.dataOffsets[1] - e.dataOffsets[0];
      if (t.data.length !== sizeOf(e.shape))
        throw new Error(`${e.name}: ${t.data.length} elements for shape ${e.shape}`);
      if (span !== sizeOf(e.shape) * DTYPE_SIZE[e.dtype]!)
        throw new Error(`${e.name}: span ${span} does not match shape × size`);
      if (e.dataOffsets[1] > h.dataLength) throw new Error(`${e.name}: span past the buffer`);
      covered += span;
    }
    if (covered !== h.dataLength)
      throw new Error(`spans cover ${covered} of ${h.dataLength} bytes`);
    if (contents.tensors.size !== h.entries.length)
      throw new Error("tensor count differs from the entry count");
    for (const v of Object.values(contents.metadata))
      if (typeof v !== "string") throw new Error("metadata value not a string");
    // what was read writes and reads back to the same tensors
    const again = readSafetensors(writeSafetensors(contents.tensors, contents.metadata), "rewrite");
    for (const [name, t] of contents.tensors) {
      if (!sameBits(t, again.tensors.get(name)!)) throw new Error(`${name} changed on rewrite`);
    }
    if (stats) stats.parsed++;
  }
  const ms = performance.now() - t0;
  if (stats) {
    stats.runs++;
    stats.maxCaseMs = Math.max(stats.maxCaseMs, ms);
  }
  if (ms > HANG_MS)
    throw new Error(`reader took ${ms.toFixed(0)} ms on a ${bytes.length}-byte file`);
}

/** The property over mutated files, for `fc.assert`/`fc.check`. */
export function fuzzProperty(stats?: FuzzStats): fc.IPropertyWithHooks<[Uint8Array]> {
  return fc.property(mutatedFileArb, (bytes) => checkFile(bytes, stats));
}

function parseArgs(argv: string[]): { runs: number; seed: number } {
  let runs = 20000;
  let seed = Date.now() % 2 ** 31;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if ((a === "--runs" || a === "--seed") && (v === undefined || !/^\d+$/.test(v))) {
      throw new Error(
        `${a} needs a non-negative integer, got ${v === undefined ? "nothing" : JSON.stringify(v)}`,
      );
    }
    if (a === "--runs") runs = Number(v);
    else if (a === "--seed") seed = Number(v);
    else
      throw new Error(
        `unknown argument ${JSON.stringify(a)} (usage: npx tsx io/fuzz.ts [--runs N] [--seed S])`,
      );
    i++;
  }
  return { runs, seed };
}

function main(): number {
  const { runs, seed } = parseArgs(process.argv.slice(2));
  const stats = newStats();
  const t0 = performance.now();
  const details = fc.check(fuzzProperty(stats), { numRuns: runs, seed });
  const seconds = (performance.now() - t0) / 1000;
  const ok = !details.failed;
  const lines = [
    `safetensors fuzz: ${ok ? "PASS" : "FAIL"}`,
    `runs ${details.numRuns}, seed ${seed}, ${seconds.toFixed(1)} s ` +
      `(${((seconds * 1e6) / Math.max(1, stats.runs)).toFixed(0)} µs per case, ` +
      `slowest ${stats.maxCaseMs.toFixed(1)} ms)`,
    `parsed consistently: ${stats.parsed}, rejected with SafetensorsFormatError: ${stats.rejected}`,
    "most frequent problems:",
    ...[...stats.problems.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([k, n]) => `  ${String(n).padStart(6)}  ${k}`),
  ];
  if (!ok) lines.push(fc.defaultReportMessage(details) ?? "failed");
  process.stdout.write(lines.join("\n") + "\n");

  const fuzzMd = fileURLToPath(new URL("./FUZZ.md", import.meta.url));
  if (!existsSync(fuzzMd)) {
    writeFileSync(
      fuzzMd,
      "# Safetensors reader fuzz runs\n\nEach line is one deep run of `npx " +
        "tsx io/fuzz.ts --runs N` (see io/fuzz.ts): mutated valid files that " +
        "must parse consistently or raise SafetensorsFormatError.\n\n",
    );
  }
  const date = new Date().toISOString().slice(0, 10);
  appendFileSync(
    fuzzMd,
    `- ${date}: ${ok ? "pass" : "FAIL"}, ${details.numRuns} runs, seed ` +
      `${seed}, ${seconds.toFixed(1)} s, slowest case ` +
      `${stats.maxCaseMs.toFixed(1)} ms; ` +
      `${stats.parsed} parsed consistently, ${stats.rejected} rejected with ` +
      `SafetensorsFormatError (${stats.problems.size} distinct problems); node ` +
      `${process.version}\n`,
  );
  return ok ? 0 : 1;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main();
}
