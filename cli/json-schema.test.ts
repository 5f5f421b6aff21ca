/**
 * Every JSON document specformer writes, from the real commands (in-process, as the bin runs
 * them) and from the in-process serialisers, validated against its schema in docs/schema/, with
 * one naming style (snake_case) outside the data maps.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SCHEMA_VERSION } from "../autodiff/wire.js";
import { loadCase, saveCase } from "../golden/cases-io.js";
import { plantedImplementation } from "../properties/planted.js";
import { lawReportToJSON, runLaws } from "../properties/run.js";
import { runGenerateCommand } from "../reference/commands.js";
import { verifyReportToJSON } from "../verify/report.js";
import { verify } from "../verify/run.js";
import { validate, type Schema } from "./json-schema.js";
import { main } from "./main.js";

const ROOT = join(__dirname, "..");
const schema = (name: string): Schema =>
  JSON.parse(readFileSync(join(ROOT, "docs", "schema", `${name}.schema.json`), "utf8")) as Schema;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    tty: false,
  });
  return { code, out, err };
}

/**
 * Names from the data (hyperparameters such as `V`, dimensions such as `H_kv`, arguments such as
 * `W_Q`, formulas, a golden file's own metadata fields) sit under these keys.
 */
const DATA_MAPS = new Set([
  "config",
  "values",
  "shapes",
  "coverage",
  "law_coverage",
  "choices",
  "dims",
  "extra",
]);

/**
 * Data maps of one document only, by path: golden show's tolerances are keyed by tensor name
 * (`out.y`), while elsewhere (compare, verify, properties) `tolerance` is a record of fixed fields.
 */
const DATA_MAP_PATHS: Readonly<Record<string, readonly string[]>> = {
  "golden-show": ["$.tolerance", "$.meta.tolerance"],
};

/** Keys outside the data maps that are not snake_case (lower case, digits, underscores). */
function notSnake(
  v: unknown,
  dataPaths: readonly string[] = [],
  path = "$",
  dataMap = false,
): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => notSnake(x, dataPaths, `${path}[${i}]`));
  if (v === null || typeof v !== "object") return [];
  return Object.entries(v).flatMap(([k, x]) => [
    ...(dataMap || /^[a-z][a-z0-9_]*$/.test(k) ? [] : [`${path}.${k}`]),
    ...notSnake(
      x,
      dataPaths,
      `${path}.${k}`,
      DATA_MAPS.has(k) || dataPaths.includes(`${path}.${k}`),
    ),
  ]);
}

function conforms(text: string, name: string): Record<string, unknown> {
  const doc = JSON.parse(text) as Record<string, unknown>;
  expect(validate(doc, schema(name)), `${name}: ${text.slice(0, 200)}`).toEqual([]);
  expect(notSnake(doc, DATA_MAP_PATHS[name])).toEqual([]);
  expect(doc["schema_version"]).toBe(SCHEMA_VERSION);
  return doc;
}

describe("the schema validator", () => {
  const s: Schema = {
    $defs: { n: { type: "integer", minimum: 0 } },
    type: "object",
    properties: {
      a: { $ref: "#/$defs/n" },
      b: { enum: ["x", "y"] },
      c: { anyOf: [{ type: "null" }, { type: "array", items: { type: "string" } }] },
    },
    required: ["a"],
    additionalProperties: false,
  };
  it("accepts a conforming document", () => {
    expect(validate({ a: 3, b: "x", c: null }, s)).toEqual([]);
    expect(validate({ a: 0, c: ["p"] }, s)).toEqual([]);
  });
  it("names every violation with its path", () => {
    expect(validate({ b: "z", d: 1 }, s)).toEqual([
      '$: missing required "a"',
      '$.b: "z" is not one of ["x","y"]',
      '$: unexpected property "d"',
    ]);
    expect(validate({ a: -1 }, s)).toEqual(["$.a: -1 is below the minimum 0"]);
    expect(validate({ a: 1.5 }, s)).toEqual(["$.a: expected integer, got number"]);
    expect(validate({ a: 1, c: [2] }, s)).toEqual([
      "$.c: matches none of anyOf ($.c: expected null, got array | $.c[0]: expected string, got integer)",
    ]);
  });
  it("refuses keywords outside its subset rather than ignore them", () => {
    expect(() => validate("x", { pattern: "^a" })).toThrow(
      'keyword "pattern" at $ is outside the supported subset',
    );
    expect(() => validate(1, { $ref: "#/$defs/nope" })).toThrow(
      '$ref "#/$defs/nope" at $ names no definition',
    );
  });
  it("the shipped schemas use only that subset", () => {
    // validating an empty object walks the top-level keywords of each schema; the real documents below walk the rest
    for (const name of [
      "verify",
      "properties",
      "gradcheck",
      "compare",
      "spec",
      "tokenize",
      "generate",
      "golden-list",
      "golden-show",
    ])
      expect(() => validate({}, schema(name))).not.toThrow();
  });
});

describe("real outputs conform to docs/schema/", () => {
  it("verify --json: the reference, passing", async () => {
    const r = await run(["verify", "--formulas", "softmax", "--json"]);
    expect(r.code).toBe(0);
    conforms(r.out, "verify");
  });
  it("verify --json: an implementation that cannot start", async () => {
    const r = await run(["verify", "--impl", "/nonexistent/specformer-impl", "--json"]);
    expect(r.code).toBe(2);
    expect(conforms(r.out, "verify")["error"]).toEqual(expect.any(String));
  });
  it("verifyReportToJSON of a failing run (localised, with law failures) has the CLI's shape", async () => {
    const report = await verify(plantedImplementation("causal_mask_missing"), {
      formulas: ["attention", "mha"],
      dtype: "f64",
      properties: true,
      lawRuns: 10,
      seed: 1,
    });
    expect(report.ok).toBe(false);
    const doc = conforms(verifyReportToJSON(report), "verify");
    const results = doc["results"] as { status: string; kind: string }[];
    expect(results.some((x) => x.kind === "property" && x.status === "fail")).toBe(true);
    expect(results.some((x) => x.kind === "golden" && x.status === "fail")).toBe(true);
  });
  it("properties --json, passing and failing (counterexample, replay), and lawReportToJSON alike", async () => {
    const pass = await run(["properties", "--law", "softmax_simplex", "--runs", "3", "--json"]);
    expect(pass.code).toBe(0);
    conforms(pass.out, "properties");
    const fail = await run([
      "properties",
      "--law",
      "cross_entropy",
      "--runs",
      "30",
      "--planted",
      "cross_entropy_summed",
      "--json",
    ]);
    expect(fail.code).toBe(1);
    const doc = conforms(fail.out, "properties");
    expect(
      (doc["results"] as { replay?: { num_shrinks: number } }[])[0]!.replay!.num_shrinks,
    ).toEqual(expect.any(Number));
    const direct = await runLaws(plantedImplementation("cross_entropy_summed"), {
      law: "cross_entropy",
      runs: 30,
      seed: 1,
      implementationArgs: "--planted cross_entropy_summed",
    });
    const same = conforms(lawReportToJSON(direct), "properties");
    expect(Object.keys(same)).toEqual(Object.keys(doc));
  });
  it("gradcheck --json", async () => {
    const r = await run(["gradcheck", "softmax", "causal_mask", "--json"]);
    expect(r.code).toBe(0);
    conforms(r.out, "gradcheck");
  });
  it("compare --json: equal, different, unreadable", async () => {
    const a = join(ROOT, "golden", "cases", "layer_norm", "f64", "n7_d12.safetensors");
    const b = join(ROOT, "golden", "cases", "layer_norm", "f32", "n7_d12.safetensors");
    const same = await run(["compare", a, a, "--json"]);
    expect(same.code).toBe(0);
    conforms(same.out, "compare");
    const diff = await run(["compare", a, b, "--json"]);
    expect(diff.code).toBe(1);
    conforms(diff.out, "compare");
    const bad = await run(["compare", a, join(ROOT, "no-such.safetensors"), "--json"]);
    expect(bad.code).toBe(2);
    conforms(bad.out + bad.err, "compare");
  });
  it("spec --format json: one formula, several, the pipeline", async () => {
    conforms((await run(["spec", "attention", "--grad", "--format", "json"])).out, "spec");
    conforms((await run(["spec", "--formulas", "softmax,gpt", "--format", "json"])).out, "spec");
    conforms((await run(["spec", "--config", "tiny", "--format", "json"])).out, "spec");
  });
  it("tokenize --json and generate --json", async () => {
    conforms((await run(["tokenize", "Hello, world!", "--json"])).out, "tokenize");
    const g = await runGenerateCommand({ prompt: "Hi", preset: "tiny", maxTokens: 3, json: true });
    expect(g.exitCode).toBe(0);
    conforms(g.text, "generate");
    const bad = await runGenerateCommand({ prompt: "Hi", topK: 0, json: true });
    conforms(bad.text, "generate");
  });
  it("golden list --json: the bundled cases, and an empty folder", async () => {
    const r = await run(["golden", "list", "--json"]);
    expect(r.code).toBe(0);
    const doc = conforms(r.out, "golden-list");
    const cases = doc["cases"] as { case: string; dims: Record<string, number> }[];
    expect(doc["count"]).toBe(cases.length);
    expect(cases.map((c) => c.case)).toContain("layer_norm/f64/n7_d12");
    expect(cases.some((c) => "H_kv" in c.dims)).toBe(true); // dimension names as the cases spell them
    const empty = await run([
      "golden",
      "list",
      "--dir",
      mkdtempSync(join(tmpdir(), "golden-empty-")),
      "--json",
    ]);
    expect(empty.code).toBe(0);
    expect(conforms(empty.out, "golden-list")["cases"]).toEqual([]);
  });
  it(
    "golden show --json: a case with a config, a generation case with " +
      "steps, a case with extra metadata, non-finite tensors",
    async () => {
      const shown: Record<string, Record<string, unknown>> = {};
      for (const name of [
        "layer_norm/f64/n7_d12",
        "gpt_generate/f64/gpt2_pre_ln_V64_d16_h4_L2_prompt4",
        "gpt/f32/checkpoint-tiny-gpt2",
        "causal_mask/f32/n5_m5",
      ]) {
        const r = await run(["golden", "show", name, "--json"]);
        expect(r.code).toBe(0);
        shown[name] = conforms(r.out, "golden-show")["meta"] as Record<string, unknown>;
      }
      expect(shown["layer_norm/f64/n7_d12"]!["config"]).toEqual({ eps: expect.any(Number) });
      expect(shown["gpt_generate/f64/gpt2_pre_ln_V64_d16_h4_L2_prompt4"]!["steps"]).toEqual(
        expect.any(Array),
      );
      expect(shown["gpt/f32/checkpoint-tiny-gpt2"]!["extra"]).toEqual({
        checkpoint: expect.any(String),
      });
      // a tensor without a finite value: min, max and mean as strings
      const dir = mkdtempSync(join(tmpdir(), "golden-show-"));
      const c = loadCase(join(ROOT, "golden", "cases", "causal_mask", "f32", "n5_m5.safetensors"));
      const y = c.outputs["y"]!.clone();
      y.data.fill(-Infinity);
      const file = join(dir, "all-inf.safetensors");
      saveCase(file, { meta: { ...c.meta, tolerance: {} }, inputs: c.inputs, outputs: { y } });
      const r = await run(["golden", "show", file, "--json"]);
      expect(r.code).toBe(0);
      const t = (conforms(r.out, "golden-show")["tensors"] as Record<string, unknown>[]).find(
        (x) => x["name"] === "out.y",
      )!;
      expect([t["min"], t["max"], t["mean"], t["neg_inf"]]).toEqual([
        "Infinity",
        "-Infinity",
        "NaN",
        25,
      ]);
    },
  );
});
