/**
 * The golden commands as library functions returning text, for the CLI to wire up:
 * `specformer golden list`, `specformer golden show`, `specformer compare`.
 * They never print and never exit; bad input comes back as a GoldenFormatError (list, show)
 * or as exit code 2 with the reader's message (compare).
 */
import { textTable } from "../io/text.js";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { shapeToString, specialCounts } from "../autodiff/tensor.js";
import type { Tensor } from "../autodiff/tensor.js";
import { SCHEMA_VERSION, toWire, wireJSON } from "../autodiff/wire.js";
import { compareNamed, formatError, formatReport, reportToJSON } from "./compare.js";
import type { Tolerance } from "./compare.js";
import {
  MANIFEST_FILE,
  listCases,
  loadCase,
  loadManifest,
  parseCase,
  summarizeCase,
} from "./cases-io.js";
import type { GoldenCase } from "./cases-io.js";
import {
  SafetensorsFormatError,
  compareCodePoints,
  readSafetensorsFile,
} from "../io/safetensors.js";
import type { SafetensorsContents } from "../io/safetensors.js";
import { GoldenFormatError } from "./error.js";

/** Bytes as `812 B`, `3.4 KiB`, `1.2 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function dimsText(dims: Readonly<Record<string, number>>): string {
  return Object.entries(dims)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

function configText(config: Readonly<Record<string, number | string | boolean>>): string {
  const parts = Object.entries(config).map(
    ([k, v]) => `${k}=${typeof v === "string" ? v : String(v)}`,
  );
  return parts.length === 0 ? "(none)" : parts.join(" ");
}

/** Where the cases of a golden folder are: its `cases/` subfolder when there is one. */
function casesRoot(goldenDir: string): string {
  const sub = join(goldenDir, "cases");
  return existsSync(sub) ? sub : goldenDir;
}

/**
 * `specformer golden list`: one row per case (case, formula, dtype, dims, tensors, size), or the
 * same as JSON: `{schema_version, dir, count, cases}` (docs/schema/golden-list.schema.json).
 * @throws GoldenFormatError for a missing folder or an unreadable case.
 */
export function goldenList(goldenDir: string, opts: { json?: boolean } = {}): string {
  const files = listCases([casesRoot(goldenDir)]);
  const cases = files
    .map(summarizeCase)
    .sort((a, b) => compareCodePoints(a.meta.case, b.meta.case));
  if (opts.json === true) {
    return (
      wireJSON({
        dir: goldenDir,
        count: cases.length,
        cases: cases.map((c) => ({
          case: c.meta.case,
          file: c.path,
          formula: c.meta.formula,
          dtype: c.meta.dtype,
          dims: c.meta.dims,
          tensors: c.tensors.map((t) => t.name),
          bytes: c.bytes,
        })),
      }) + "\n"
    );
  }
  if (cases.length === 0) return `no golden cases under ${goldenDir}\n`;
  const rows = cases.map((c) => [
    c.meta.case,
    c.meta.formula,
    c.meta.dtype,
    dimsText(c.meta.dims),
    String(c.tensors.length),
    formatBytes(c.bytes),
  ]);
  const total = cases.reduce((s, c) => s + c.bytes, 0);
  return (
    [
      ...textTable(["case", "formula", "dtype", "dims", "tensors", "size"], rows),
      "",
      `${cases.length} cases, ${formatBytes(total)}`,
    ].join("\n") + "\n"
  );
}

/**
 * Find a case by file path, by name under `<goldenDir>/cases/`, or by name in the manifest.
 * @throws GoldenFormatError naming what was tried, with similar case names when there are some.
 */
function resolveCase(caseNameOrPath: string, goldenDir: string): string {
  if (existsSync(caseNameOrPath) && statSync(caseNameOrPath).isFile()) return caseNameOrPath;
  const direct = join(goldenDir, "cases", `${caseNameOrPath}.safetensors`);
  if (existsSync(direct)) return direct;
  if (existsSync(join(goldenDir, MANIFEST_FILE))) {
    const hit = loadManifest(goldenDir).cases.find((e) => e.case === caseNameOrPath);
    if (hit !== undefined) return join(goldenDir, ...hit.file.split("/"));
  }
  const known = existsSync(goldenDir)
    ? listCases([casesRoot(goldenDir)]).map((p) => summarizeCase(p).meta.case)
    : [];
  const similar = known
    .filter((k) => k.includes(caseNameOrPath) || caseNameOrPath.includes(k.split("/")[0]!))
    .slice(0, 8);
  throw new GoldenFormatError(
    caseNameOrPath,
    `no such file, and no case of that name in ` +
      `${goldenDir}${similar.length > 0 ? ` (similar: ${similar.join(", ")})` : ""}`,
  );
}

interface TensorStats {
  min: number;
  max: number;
  mean: number;
  finite: number;
  nan: number;
  posInf: number;
  negInf: number;
}

/** min, max and mean over the finite values; non-finite ones are counted, not hidden. */
function stats(t: Tensor): TensorStats {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let finite = 0;
  for (let i = 0; i < t.size; i++) {
    const v = t.data[i]!;
    if (!Number.isFinite(v)) continue;
    finite++;
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const s = specialCounts(t);
  return {
    min,
    max,
    mean: finite > 0 ? sum / finite : NaN,
    finite,
    nan: s.nan,
    posInf: s.posInf,
    negInf: s.negInf,
  };
}

function tensorRows(tensors: Iterable<[string, Tensor]>): string[][] {
  return [...tensors].map(([name, t]) => {
    const s = stats(t);
    const none = s.finite === 0;
    const nonFinite = [
      s.nan > 0 ? `NaN ${s.nan}` : "",
      s.posInf > 0 ? `+Inf ${s.posInf}` : "",
      s.negInf > 0 ? `-Inf ${s.negInf}` : "",
    ]
      .filter(Boolean)
      .join(", ");
    return [
      name,
      t.dtype,
      shapeToString(t.shape),
      none ? "-" : t.dtype === "i32" ? String(s.min) : formatError(s.min),
      none ? "-" : t.dtype === "i32" ? String(s.max) : formatError(s.max),
      none ? "-" : t.dtype === "i32" ? s.mean.toFixed(3) : formatError(s.mean),
      nonFinite,
    ];
  });
}

function caseTensors(c: GoldenCase): Array<[string, Tensor]> {
  const all: Array<[string, Tensor]> = [];
  for (const [prefix, set] of [
    ["in", c.inputs],
    ["out", c.outputs],
    ["cot", c.cotangents],
    ["grad", c.grads],
  ] as const) {
    for (const [k, t] of Object.entries(set)) all.push([`${prefix}.${k}`, t]);
  }
  return all.sort((a, b) => compareCodePoints(a[0], b[0]));
}

/**
 * `specformer golden show CASE`: metadata, every tensor (name, dtype, shape, min, max, mean over
 * finite values, non-finite counts) and the tolerances, as text or JSON
 * (docs/schema/golden-show.schema.json).
 * @throws GoldenFormatError when the case cannot be found or read.
 */
export function goldenShow(
  caseNameOrPath: string,
  goldenDir: string,
  opts: { json?: boolean } = {},
): string {
  const path = resolveCase(caseNameOrPath, goldenDir);
  const c = loadCase(path);
  const tensors = caseTensors(c);
  if (opts.json === true) {
    const document = toWire({
      tensors: tensors.map(([name, t]) => {
        const s = stats(t);
        return {
          name,
          dtype: t.dtype,
          shape: t.shape,
          min: s.min,
          max: s.max,
          mean: s.mean,
          nan: s.nan,
          pos_inf: s.posInf,
          neg_inf: s.negInf,
        };
      }),
      tolerance: c.tolerance,
    }) as object;
    // The metadata goes out as the file holds it, not through toWire: its fields are snake_case
    // by the format (golden/FORMAT.md), and the names inside `extra` (the file's other fields) and
    // `steps` (free-form) are the file's data, which toWire would convert. Read from JSON, it holds
    // no non-finite numbers.
    return (
      JSON.stringify({ schema_version: SCHEMA_VERSION, path, meta: c.meta, ...document }, null, 2) +
      "\n"
    );
  }
  const m = c.meta;
  const fields: Array<[string, string]> = [
    ["case", m.case],
    ["file", path],
    ["formula", m.formula],
    ["oracle", m.oracle],
    ["dtype", m.dtype],
    ["dims", dimsText(m.dims)],
    ["config", configText(m.config)],
    ["seed", String(m.seed)],
    ["torch", m.torch_version ?? "(none)"],
    ["generator", m.generator],
  ];
  if (m.notes !== undefined) fields.push(["notes", m.notes]);
  if (m.steps !== undefined)
    fields.push(["steps", Array.isArray(m.steps) ? `${m.steps.length} recorded` : "recorded"]);
  for (const [k, v] of Object.entries(m.extra ?? {})) fields.push([k, JSON.stringify(v)]);
  const w = Math.max(...fields.map(([k]) => k.length));
  const lines = fields.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  lines.push(
    "",
    ...textTable(
      ["tensor", "dtype", "shape", "min", "max", "mean", "non-finite"],
      tensorRows(tensors),
    ),
  );
  lines.push(
    "",
    ...textTable(
      ["tolerance", "rtol", "atol", "source", "reason"],
      Object.entries(c.tolerance).map(([k, t]) => [
        k,
        formatError(t.rtol),
        formatError(t.atol),
        t.source,
        t.reason,
      ]),
    ),
  );
  return lines.join("\n") + "\n";
}

export interface CompareFilesResult {
  /** 0: every tensor within tolerance; 1: a mismatch; 2: an input could not be read. */
  readonly exitCode: 0 | 1 | 2;
  readonly text: string;
}

/**
 * `specformer compare EXPECTED ACTUAL`: compare two safetensors files tensor by tensor.
 *
 * When EXPECTED is a golden case, its stated tolerances apply (else the per-dtype defaults)
 * and its `in.*`/`cot.*` tensors are compared only when ACTUAL has them (an implementation's
 * result file usually holds only `out.*` and `grad.*`). `rtol`/`atol` override every tolerance.
 */
export function compareFiles(
  expectedPath: string,
  actualPath: string,
  opts: { rtol?: number; atol?: number; json?: boolean } = {},
): CompareFilesResult {
  const unreadable = (err: unknown): CompareFilesResult => {
    const bad = err instanceof GoldenFormatError || err instanceof SafetensorsFormatError;
    if (bad || err instanceof RangeError) {
      return {
        exitCode: 2,
        text:
          opts.json === true
            ? wireJSON({ ok: false, error: err.message }) + "\n"
            : `error: ${err.message}\n`,
      };
    }
    throw err;
  };
  let expected: SafetensorsContents;
  let actual: SafetensorsContents;
  const tolerances: Record<string, Tolerance> = {};
  let title = `${expectedPath} vs ${actualPath}`;
  try {
    expected = readSafetensorsFile(expectedPath);
    actual = readSafetensorsFile(actualPath);
  } catch (err) {
    return unreadable(err);
  }
  const exp = new Map(expected.tensors);
  if (expected.metadata.specformer !== undefined) {
    let golden: GoldenCase;
    try {
      golden = parseCase(expected, expectedPath);
    } catch (err) {
      return unreadable(err);
    }
    title = `${golden.meta.case} (${title})`;
    for (const [k, t] of Object.entries(golden.tolerance))
      if (t.source === "case") tolerances[k] = t;
    for (const name of [...exp.keys()]) {
      if ((name.startsWith("in.") || name.startsWith("cot.")) && !actual.tensors.has(name))
        exp.delete(name);
    }
  }
  try {
    const report = compareNamed(exp, actual.tensors, tolerances, {
      rtol: opts.rtol,
      atol: opts.atol,
      title,
    });
    return {
      exitCode: report.ok ? 0 : 1,
      text: opts.json === true ? reportToJSON(report) + "\n" : formatReport(report),
    };
  } catch (err) {
    return unreadable(err);
  }
}
