/**
 * Golden cases on disk: one safetensors file per case (tensors `in.*`, `out.*`, `cot.*`,
 * `grad.*` and the provenance JSON in `__metadata__.specformer`), indexed by
 * `golden/manifest.json`. See golden/FORMAT.md for the contract.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync, writeFileSync, mkdirSync, renameSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import type { FormulaConfig } from "../autodiff/implementation.js";
import { shapeToString, sameShape } from "../autodiff/tensor.js";
import type { FloatDType, NamedTensors, Tensor } from "../autodiff/tensor.js";
import { defaultTolerance } from "./compare.js";
import type { Tolerance, ToleranceSource } from "./compare.js";
import { readRegularFile } from "../io/files.js";
import { isJsonObject, parseStrictJson } from "../io/json.js";
import type { JsonValue } from "../io/json.js";
import {
  compareCodePoints,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from "../io/safetensors.js";
import type { SafetensorsContents } from "../io/safetensors.js";
import { GoldenFormatError, readingGolden } from "./error.js";

/** A golden file's bytes: regular files only, size bounded (io/files.ts). */
const readBytes = (path: string): Uint8Array => readingGolden(() => readRegularFile(path));
/** A golden file's tensors and metadata. */
const readContents = (bytes: Uint8Array, path: string): SafetensorsContents =>
  readingGolden(() => readSafetensors(bytes, path));
/** JSON text of a golden file (a case's metadata, the manifest), parsed strictly. */
const parseJson = (text: string, source: string, what: string): JsonValue =>
  readingGolden(() => parseStrictJson(text, source, what));

/** The `format` of every case's metadata and of the manifest. */
export const GOLDEN_FORMAT = "specformer-golden/1";

/** The four roles a tensor of a case can have, by name prefix. */
const ROLES = ["in", "out", "cot", "grad"] as const;
export type Role = (typeof ROLES)[number];

/** A tolerance a case states for one tensor. */
export interface StatedTolerance extends Tolerance {
  readonly reason: string;
}

/** The tolerance that applies to one checked tensor, and where it came from. */
export interface CaseTolerance extends StatedTolerance {
  readonly source: Exclude<ToleranceSource, "caller">;
}

/** The validated `__metadata__.specformer` object of a case. */
export interface CaseMeta {
  readonly format: typeof GOLDEN_FORMAT;
  /** Unique case name, e.g. `"layer_norm/f64/n7_d12"`. */
  readonly case: string;
  readonly formula: string;
  readonly config: FormulaConfig;
  readonly dims: Readonly<Record<string, number>>;
  readonly dtype: FloatDType;
  readonly seed: number;
  /** `null` only for cases no torch computation was involved in. */
  readonly torch_version: string | null;
  readonly generator: string;
  readonly oracle: string;
  /** Tolerances the case states, keyed `out.<name>` / `grad.<name>`. */
  readonly tolerance: Readonly<Record<string, StatedTolerance>>;
  readonly notes?: string;
  /** Per-step record of generation cases (free-form JSON). */
  readonly steps?: JsonValue;
  /** Any further fields, kept as they are. */
  readonly extra?: Readonly<Record<string, JsonValue>>;
}

/** One case, read and validated. Tensor names are without their role prefix. */
export interface GoldenCase {
  /** The file it was read from (or the label given to {@link parseCase}). */
  readonly path: string;
  readonly meta: CaseMeta;
  readonly inputs: NamedTensors;
  readonly outputs: NamedTensors;
  readonly cotangents: NamedTensors;
  readonly grads: NamedTensors;
  /**
   * The tolerance for every `out.*` and `grad.*` tensor: the case's stated one, or the
   * comparator's per-dtype default where the case states none.
   */
  readonly tolerance: Readonly<Record<string, CaseTolerance>>;
}

/** What {@link saveCase} writes: metadata (its `tolerance` the stated ones) and tensors by role. */
export interface CaseToSave {
  readonly meta: CaseMeta;
  readonly inputs: NamedTensors;
  readonly outputs: NamedTensors;
  readonly cotangents?: NamedTensors;
  readonly grads?: NamedTensors;
}

// ---------------------------------------------------------------------------------------------
// Metadata validation

const REQUIRED = [
  "format",
  "case",
  "formula",
  "config",
  "dims",
  "dtype",
  "seed",
  "torch_version",
  "generator",
  "oracle",
  "tolerance",
] as const;
const KNOWN = new Set<string>([...REQUIRED, "notes", "steps"]);

function kind(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v} (${JSON.stringify(v)})`;
}

/**
 * Validate the parsed `__metadata__.specformer` object.
 * @throws GoldenFormatError naming `source` and the field.
 */
function validateMeta(raw: JsonValue, source: string): CaseMeta {
  const fail = (problem: string): never => {
    throw new GoldenFormatError(source, `metadata ${problem}`);
  };
  if (!isJsonObject(raw)) return fail(`must be a JSON object, found ${kind(raw)}`);
  const missing = REQUIRED.filter((k) => !(k in raw));
  if (missing.length > 0)
    fail(
      `lacks the required field${missing.length > 1 ? "s" : ""} ${missing.map((k) => `"${k}"`).join(", ")}`,
    );
  const str = (k: string): string => {
    const v = raw[k];
    if (typeof v !== "string") return fail(`field "${k}" must be a string, found ${kind(v)}`);
    if (v === "") return fail(`field "${k}" must not be empty`);
    return v;
  };
  if (raw.format !== GOLDEN_FORMAT)
    fail(`field "format" is ${JSON.stringify(raw.format)}, expected "${GOLDEN_FORMAT}"`);
  const caseName = str("case");
  const formula = str("formula");
  const generator = str("generator");
  const oracle = str("oracle");
  const tv = raw.torch_version;
  if (tv !== null && typeof tv !== "string")
    fail(`field "torch_version" must be a string (or null), found ${kind(tv)}`);
  const dtype = raw.dtype;
  if (dtype !== "f64" && dtype !== "f32")
    fail(`field "dtype" must be "f64" or "f32", found ${kind(dtype)}`);
  const parts = caseName.split("/");
  if (
    parts.length !== 3 ||
    parts[0] !== formula ||
    parts[1] !== dtype ||
    !/^[A-Za-z0-9_.-]+$/.test(parts[2]!)
  ) {
    fail(
      `field "case" is ${JSON.stringify(caseName)}; it must be ` +
        `"<formula>/<dtype>/<slug>" = "${formula}/${String(dtype)}/<slug>" ` +
        `(slug: letters, digits, _ . -)`,
    );
  }
  const seed = raw.seed;
  if (typeof seed !== "number" || !Number.isSafeInteger(seed))
    fail(`field "seed" must be an integer, found ${kind(seed)}`);

  const config = raw.config;
  if (!isJsonObject(config)) return fail(`field "config" must be an object, found ${kind(config)}`);
  const cfg: Record<string, number | string | boolean> = {};
  for (const k of Object.keys(config)) {
    const v = config[k];
    if (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean") {
      fail(`config value "${k}" must be a number, string or boolean, found ${kind(v)}`);
    }
    cfg[k] = v as number | string | boolean;
  }
  const dims = raw.dims;
  if (!isJsonObject(dims)) return fail(`field "dims" must be an object, found ${kind(dims)}`);
  const d: Record<string, number> = {};
  for (const k of Object.keys(dims)) {
    const v = dims[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      fail(`dims value "${k}" must be a non-negative integer, found ${kind(v)}`);
    d[k] = v as number;
  }
  const tol = raw.tolerance;
  if (!isJsonObject(tol)) return fail(`field "tolerance" must be an object, found ${kind(tol)}`);
  const tolerance: Record<string, StatedTolerance> = {};
  for (const k of Object.keys(tol)) {
    const t = tol[k];
    if (!isJsonObject(t))
      return fail(`tolerance for "${k}" must be an object {rtol, atol, reason}, found ${kind(t)}`);
    for (const f of ["rtol", "atol"] as const) {
      const v = t[f];
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
        fail(`tolerance for "${k}": "${f}" must be a finite number >= 0, found ${kind(v)}`);
    }
    if (typeof t.reason !== "string" || t.reason.trim() === "")
      fail(
        `tolerance for "${k}": "reason" must be a non-empty string saying how it was derived, found ${kind(t.reason)}`,
      );
    for (const f of Object.keys(t)) {
      if (f !== "rtol" && f !== "atol" && f !== "reason")
        fail(`tolerance for "${k}" has unexpected key "${f}" (allowed: rtol, atol, reason)`);
    }
    tolerance[k] = { rtol: t.rtol as number, atol: t.atol as number, reason: t.reason as string };
  }
  let notes: string | undefined;
  if ("notes" in raw) {
    if (typeof raw.notes !== "string")
      fail(`field "notes" must be a string, found ${kind(raw.notes)}`);
    notes = raw.notes as string;
  }
  const extra: Record<string, JsonValue> = {};
  for (const k of Object.keys(raw)) if (!KNOWN.has(k)) extra[k] = raw[k]!;
  return {
    format: GOLDEN_FORMAT,
    case: caseName,
    formula,
    config: cfg,
    dims: d,
    dtype: dtype as FloatDType,
    seed: seed as number,
    torch_version: tv as string | null,
    generator,
    oracle,
    tolerance,
    ...(notes !== undefined ? { notes } : {}),
    ...("steps" in raw ? { steps: raw.steps! } : {}),
    ...(Object.keys(extra).length > 0 ? { extra } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Cases

/**
 * Interpret parsed safetensors contents as a golden case, checking the case-level rules:
 * metadata fields, role prefixes, float tensors in the case dtype, `cot.<o>` shaped like a float
 * `out.<o>`, `grad.<a>` shaped like a float `in.<a>`, tolerances only for `out.*`/`grad.*`
 * tensors the file has.
 */
export function parseCase(contents: SafetensorsContents, source: string): GoldenCase {
  const text = contents.metadata.specformer;
  if (text === undefined) {
    throw new GoldenFormatError(
      source,
      `not a specformer golden case: __metadata__ has no "specformer" entry`,
    );
  }
  const meta = validateMeta(parseJson(text, source, "__metadata__.specformer"), source);
  const byRole: Record<Role, NamedTensors> = { in: {}, out: {}, cot: {}, grad: {} };
  const unknown: string[] = [];
  for (const [name, t] of contents.tensors) {
    const dot = name.indexOf(".");
    const role = name.slice(0, dot) as Role;
    const rest = name.slice(dot + 1);
    if (dot < 0 || !ROLES.includes(role) || rest === "") {
      unknown.push(name);
      continue;
    }
    byRole[role][rest] = t;
  }
  if (unknown.length > 0) {
    throw new GoldenFormatError(
      source,
      `tensor name${unknown.length > 1 ? "s" : ""} ` +
        `${unknown.map((n) => JSON.stringify(n)).join(", ")} ` +
        `${unknown.length > 1 ? "have" : "has"} no known prefix (in., out., cot., grad.)`,
    );
  }
  for (const [name, t] of contents.tensors) {
    const role = name.slice(0, name.indexOf(".")) as Role;
    if (t.dtype !== "i32" && t.dtype !== meta.dtype) {
      throw new GoldenFormatError(
        source,
        `is ${t.dtype} in a ${meta.dtype} case (float tensors must have the case dtype)`,
        name,
      );
    }
    if (t.dtype === "i32" && (role === "cot" || role === "grad")) {
      throw new GoldenFormatError(source, `is i32, but cotangents and gradients are floats`, name);
    }
  }
  for (const [o, c] of Object.entries(byRole.cot)) {
    const out = byRole.out[o];
    if (out === undefined)
      throw new GoldenFormatError(source, `has no matching output "out.${o}"`, `cot.${o}`);
    if (out.dtype === "i32")
      throw new GoldenFormatError(
        source,
        `is given for the integer output "out.${o}", which has no cotangent`,
        `cot.${o}`,
      );
    if (!sameShape(c.shape, out.shape)) {
      throw new GoldenFormatError(
        source,
        `has shape ${shapeToString(c.shape)} but "out.${o}" has ${shapeToString(out.shape)}`,
        `cot.${o}`,
      );
    }
  }
  for (const [a, g] of Object.entries(byRole.grad)) {
    const arg = byRole.in[a];
    if (arg === undefined)
      throw new GoldenFormatError(source, `has no matching argument "in.${a}"`, `grad.${a}`);
    if (arg.dtype === "i32")
      throw new GoldenFormatError(
        source,
        `is given for the integer argument "in.${a}" (token ids have no gradient)`,
        `grad.${a}`,
      );
    if (!sameShape(g.shape, arg.shape)) {
      throw new GoldenFormatError(
        source,
        `has shape ${shapeToString(g.shape)} but "in.${a}" has ${shapeToString(arg.shape)}`,
        `grad.${a}`,
      );
    }
  }
  if (Object.keys(byRole.grad).length > 0 && Object.keys(byRole.cot).length === 0) {
    throw new GoldenFormatError(
      source,
      `has gradients but no cotangents: a gradient is defined only by the cot.* tensors that produced it`,
    );
  }
  const checked = [...contents.tensors.keys()].filter(
    (n) => n.startsWith("out.") || n.startsWith("grad."),
  );
  for (const k of Object.keys(meta.tolerance)) {
    if (!checked.includes(k)) {
      throw new GoldenFormatError(
        source,
        `metadata states a tolerance for "${k}", which is not an out.* or ` +
          `grad.* tensor of the file (those are: ${checked.join(", ") || "none"})`,
      );
    }
  }
  const tolerance: Record<string, CaseTolerance> = {};
  for (const k of checked.sort(compareCodePoints)) {
    const stated = meta.tolerance[k];
    if (stated !== undefined) tolerance[k] = { ...stated, source: "case" };
    else {
      const d = defaultTolerance(contents.tensors.get(k)!.dtype);
      tolerance[k] = {
        rtol: d.rtol,
        atol: d.atol,
        reason: `${d.reason} (the case states none)`,
        source: "default",
      };
    }
  }
  return {
    path: source,
    meta,
    inputs: byRole.in,
    outputs: byRole.out,
    cotangents: byRole.cot,
    grads: byRole.grad,
    tolerance,
  };
}

/**
 * Read and validate one case file.
 * @throws GoldenFormatError naming the file, the tensor or field, and the problem.
 */
export function loadCase(path: string): GoldenCase {
  return parseCase(readContents(readBytes(path), path), path);
}

/** Recursively sort object keys (code-point order), as Python's `json.dumps(sort_keys=True)`. */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort(compareCodePoints))
      out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** The metadata as stored: compact JSON with sorted keys; `extra` fields merged back in. */
export function metaToJSON(meta: CaseMeta): string {
  const { extra, ...rest } = meta;
  const obj: Record<string, unknown> = { ...(extra ?? {}), ...rest };
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === "number" && !Number.isFinite(v))
      throw new GoldenFormatError(
        "<metaToJSON>",
        `metadata field "${k}" is ${v}, which JSON cannot hold`,
      );
  }
  return JSON.stringify(sortKeys(obj));
}

/**
 * Validate and write one case (`in.*`, `out.*`, `cot.*`, `grad.*` plus the metadata). The bytes
 * are parsed back before the file is written, so an invalid case is refused, not saved.
 */
export function saveCase(path: string, c: CaseToSave): void {
  const tensors = new Map<string, Tensor>();
  const add = (role: Role, set: NamedTensors | undefined): void => {
    for (const [k, t] of Object.entries(set ?? {})) tensors.set(`${role}.${k}`, t);
  };
  add("in", c.inputs);
  add("out", c.outputs);
  add("cot", c.cotangents);
  add("grad", c.grads);
  const meta = { specformer: metaToJSON(c.meta) };
  const bytes = readingGolden(() => writeSafetensors(tensors, meta, path));
  parseCase(readContents(bytes, path), path);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

// ---------------------------------------------------------------------------------------------
// Listing

/**
 * Every `.safetensors` file in the given files and folders (folders searched recursively),
 * sorted, without duplicates. A path that does not exist is an error.
 */
export function listCases(goldenDirOrPaths: readonly string[]): string[] {
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile() && entry.name.endsWith(".safetensors")) found.add(p);
    }
  };
  for (const p of goldenDirOrPaths) {
    if (!existsSync(p)) throw new GoldenFormatError(p, "no such file or folder");
    if (statSync(p).isDirectory()) walk(p);
    else found.add(p);
  }
  return [...found].sort(compareCodePoints);
}

/** Header-level facts about a case file, read without converting its data. */
export interface CaseSummary {
  readonly path: string;
  readonly meta: CaseMeta;
  readonly tensors: ReadonlyArray<{ name: string; dtype: string; shape: readonly number[] }>;
  readonly bytes: number;
}

/** Read a case's header and metadata only (fast listing). */
export function summarizeCase(path: string): CaseSummary {
  const bytes = readBytes(path);
  const h = readingGolden(() => readSafetensorsHeader(bytes, path));
  const text = h.metadata.specformer;
  if (text === undefined)
    throw new GoldenFormatError(
      path,
      `not a specformer golden case: __metadata__ has no "specformer" entry`,
    );
  const meta = validateMeta(parseJson(text, path, "__metadata__.specformer"), path);
  return {
    path,
    meta,
    tensors: [...h.entries]
      .sort((a, b) => compareCodePoints(a.name, b.name))
      .map((e) => ({ name: e.name, dtype: e.dtype, shape: e.shape })),
    bytes: bytes.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Manifest

export interface ManifestEntry {
  readonly case: string;
  /** Relative to the golden folder, with `/` separators: `cases/<formula>/<dtype>/<slug>.safetensors`. */
  readonly file: string;
  readonly formula: string;
  readonly dtype: FloatDType;
  readonly bytes: number;
  /** Lower-case hex SHA-256 of the file. */
  readonly sha256: string;
}

export interface Manifest {
  readonly format: typeof GOLDEN_FORMAT;
  readonly torch_version: string | null;
  readonly cases: readonly ManifestEntry[];
}

export const MANIFEST_FILE = "manifest.json";

/**
 * Read and validate `<goldenDir>/manifest.json`: fields and types, entries sorted by case name,
 * case names and files unique, files relative and inside the folder.
 */
export function loadManifest(goldenDir: string): Manifest {
  const path = join(goldenDir, MANIFEST_FILE);
  const text = new TextDecoder().decode(readBytes(path));
  const raw = parseJson(text, path, "manifest");
  const fail = (problem: string): never => {
    throw new GoldenFormatError(path, problem);
  };
  if (!isJsonObject(raw)) return fail(`must be a JSON object, found ${kind(raw)}`);
  if (raw.format !== GOLDEN_FORMAT)
    fail(`"format" is ${JSON.stringify(raw.format ?? null)}, expected "${GOLDEN_FORMAT}"`);
  const tv = raw.torch_version;
  if (tv !== null && typeof tv !== "string")
    fail(`"torch_version" must be a string (or null), found ${kind(tv)}`);
  if (!Array.isArray(raw.cases)) return fail(`"cases" must be an array, found ${kind(raw.cases)}`);
  const entries: ManifestEntry[] = [];
  const files = new Set<string>();
  raw.cases.forEach((e, i) => {
    const at = `cases[${i}]`;
    if (!isJsonObject(e)) return fail(`${at} must be an object, found ${kind(e)}`);
    for (const k of ["case", "file", "formula", "sha256"]) {
      if (typeof e[k] !== "string" || e[k] === "")
        fail(`${at}."${k}" must be a non-empty string, found ${kind(e[k])}`);
    }
    if (e.dtype !== "f64" && e.dtype !== "f32")
      fail(`${at}."dtype" must be "f64" or "f32", found ${kind(e.dtype)}`);
    if (typeof e.bytes !== "number" || !Number.isSafeInteger(e.bytes) || e.bytes < 0)
      fail(`${at}."bytes" must be a non-negative integer, found ${kind(e.bytes)}`);
    const file = e.file as string;
    if (
      file.startsWith("/") ||
      file.includes("\\") ||
      file.split("/").some((p) => p === ".." || p === "." || p === "")
    ) {
      fail(
        `${at}."file" ${JSON.stringify(file)} must be a relative path inside the golden folder, with "/" separators`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(e.sha256 as string))
      fail(`${at}."sha256" must be 64 lower-case hex digits, found ${JSON.stringify(e.sha256)}`);
    const prev = entries[entries.length - 1];
    if (prev !== undefined) {
      const order = compareCodePoints(prev.case, e.case as string);
      if (order === 0) fail(`${at}: case ${JSON.stringify(e.case)} is listed twice`);
      if (order > 0)
        fail(
          `${at}: cases must be sorted by name, but ${JSON.stringify(e.case)} follows ${JSON.stringify(prev.case)}`,
        );
    }
    if (files.has(file)) fail(`${at}: file ${JSON.stringify(file)} is listed twice`);
    files.add(file);
    entries.push({
      case: e.case as string,
      file,
      formula: e.formula as string,
      dtype: e.dtype as FloatDType,
      bytes: e.bytes as number,
      sha256: e.sha256 as string,
    });
  });
  return { format: GOLDEN_FORMAT, torch_version: tv as string | null, cases: entries };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function relPath(goldenDir: string, file: string): string {
  return relative(goldenDir, file).split(sep).join("/");
}

/**
 * Build the manifest of every case under `<goldenDir>/cases` (what the Python generator writes:
 * entries sorted by case name, no timestamps). All cases must share one torch version.
 */
export function buildManifest(goldenDir: string): Manifest {
  const root = join(goldenDir, "cases");
  const files = existsSync(root) ? listCases([root]) : [];
  const entries: ManifestEntry[] = [];
  const versions = new Set<string | null>();
  const seen = new Map<string, string>();
  for (const f of files) {
    const bytes = readBytes(f);
    const c = parseCase(readContents(bytes, f), f);
    const rel = relPath(goldenDir, f);
    const other = seen.get(c.meta.case);
    if (other !== undefined)
      throw new GoldenFormatError(f, `case ${JSON.stringify(c.meta.case)} is also in ${other}`);
    seen.set(c.meta.case, rel);
    versions.add(c.meta.torch_version);
    entries.push({
      case: c.meta.case,
      file: rel,
      formula: c.meta.formula,
      dtype: c.meta.dtype,
      bytes: bytes.length,
      sha256: sha256(bytes),
    });
  }
  if (versions.size > 1) {
    throw new GoldenFormatError(
      goldenDir,
      `cases come from different torch versions ` +
        `(${[...versions].map((v) => JSON.stringify(v)).join(", ")}); regenerate them with one`,
    );
  }
  entries.sort((a, b) => compareCodePoints(a.case, b.case));
  return {
    format: GOLDEN_FORMAT,
    torch_version: versions.size === 0 ? null : [...versions][0]!,
    cases: entries,
  };
}

/** The manifest's canonical text: `json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"`. */
export function manifestToText(m: Manifest): string {
  const ordered = {
    format: m.format,
    torch_version: m.torch_version,
    cases: m.cases.map((e) => ({
      case: e.case,
      file: e.file,
      formula: e.formula,
      dtype: e.dtype,
      bytes: e.bytes,
      sha256: e.sha256,
    })),
  };
  return JSON.stringify(ordered, null, 2) + "\n";
}

/** Build and write `<goldenDir>/manifest.json`; returns the manifest. */
export function writeManifest(goldenDir: string): Manifest {
  const m = buildManifest(goldenDir);
  writeFileSync(join(goldenDir, MANIFEST_FILE), manifestToText(m));
  return m;
}

export interface ManifestCheck {
  readonly cases: number;
  readonly bytes: number;
}

/**
 * Check the manifest against the files: each listed file exists, has the listed size and
 * SHA-256, reads as a valid case whose name, formula, dtype and torch version match the entry;
 * and every case file under `cases/` is listed.
 *
 * @throws GoldenFormatError listing every problem found (one per line).
 */
export function verifyManifest(goldenDir: string): ManifestCheck {
  const m = loadManifest(goldenDir);
  const problems: string[] = [];
  let total = 0;
  const listed = new Set<string>();
  for (const e of m.cases) {
    const path = join(goldenDir, ...e.file.split("/"));
    listed.add(e.file);
    if (!existsSync(path)) {
      problems.push(`${e.file}: missing (listed for case ${JSON.stringify(e.case)})`);
      continue;
    }
    const bytes = readBytes(path);
    total += bytes.length;
    if (bytes.length !== e.bytes)
      problems.push(`${e.file}: stale: ${bytes.length} bytes on disk, ${e.bytes} in the manifest`);
    const digest = sha256(bytes);
    if (digest !== e.sha256) {
      problems.push(
        `${e.file}: stale: sha256 ${digest.slice(0, 12)}… on disk, ${e.sha256.slice(0, 12)}… in the manifest`,
      );
    }
    try {
      const c = parseCase(readContents(bytes, path), path);
      for (const [field, want, got] of [
        ["case", e.case, c.meta.case],
        ["formula", e.formula, c.meta.formula],
        ["dtype", e.dtype, c.meta.dtype],
      ] as const) {
        if (want !== got)
          problems.push(
            `${e.file}: the manifest says ${field} ${JSON.stringify(want)} but the file says ${JSON.stringify(got)}`,
          );
      }
      if (e.file !== `cases/${c.meta.case}.safetensors`) {
        problems.push(
          `${e.file}: case ${JSON.stringify(c.meta.case)} belongs at cases/${c.meta.case}.safetensors`,
        );
      }
      if (c.meta.torch_version !== m.torch_version) {
        problems.push(
          `${e.file}: made with torch ${JSON.stringify(c.meta.torch_version)}, ` +
            `the manifest says ${JSON.stringify(m.torch_version)}`,
        );
      }
    } catch (err) {
      if (!(err instanceof GoldenFormatError)) throw err;
      problems.push(`${e.file}: unreadable: ${err.message}`);
    }
  }
  const root = join(goldenDir, "cases");
  for (const f of existsSync(root) ? listCases([root]) : []) {
    const rel = relPath(goldenDir, f);
    if (!listed.has(rel)) problems.push(`${rel}: not listed in the manifest`);
  }
  if (problems.length > 0) {
    throw new GoldenFormatError(
      join(goldenDir, MANIFEST_FILE),
      `${problems.length} problem${problems.length > 1 ? "s" : ""} ` +
        `(regenerate the goldens or the manifest):\n  ${problems.join("\n  ")}`,
    );
  }
  return { cases: m.cases.length, bytes: total };
}
