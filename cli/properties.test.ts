/**
 * `specformer properties` through the one CLI parser (in-process, as bin/specformer.mjs runs it):
 * its options, their old spellings, and every bad argument's message and exit code.
 */
import { describe, expect, it } from "vitest";
import { lawNames } from "../properties/registry.js";
import { main } from "./main.js";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(["properties", ...args], {
    out: (s) => void (out += s.endsWith("\n") ? s : `${s}\n`),
    err: (s) => void (err += s.endsWith("\n") ? s : `${s}\n`),
    tty: false,
  });
  return { code, out, err };
}

describe("specformer properties", () => {
  const bad = async (args: string[], message: string | RegExp) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    const line = r.err.split("\n")[0]!;
    expect(line.startsWith("specformer properties: ")).toBe(true);
    if (typeof message === "string") expect(line).toBe(`specformer properties: ${message}`);
    else expect(line.replace(/^specformer properties: /, "")).toMatch(message);
    return r;
  };

  it("rejects bad arguments with exit code 2 and a message on stderr", async () => {
    expect((await bad(["--bogus"], /^Unknown option '--bogus'/)).err).toContain(
      "usage: specformer properties",
    );
    expect((await bad(["--law"], /^Option '--law <value>' argument missing/)).err).toContain(
      "usage: specformer properties",
    );
    await bad(
      ["softmax"],
      'unexpected argument "softmax" (formulas are chosen with --formulas a,b)',
    );
    await bad(["--runs", "0"], '--runs must be a positive integer, got "0"');
    await bad(["--runs", "ten"], '--runs must be an integer, got "ten"');
    await bad(["--seed", "1.5"], '--seed must be an integer in 0 … 4294967295, got "1.5"');
    await bad(["--dtype", "f16"], '--dtype must be f64 or f32, got "f16"');
    await bad(
      ["--path", "1:2", "--seed", "3"],
      "--path replays one law's counterexample: give --law too",
    );
    await bad(
      ["--path", "1:2", "--law", "causality"],
      "--path replays a counterexample from its seed: give --seed too",
    );
    await bad(
      ["--path", "1;2", "--law", "causality", "--seed", "3"],
      '--path must look like 12:0:3 (fast-check\'s counterexample path, with @hint for model-based laws), got "1;2"',
    );
    await bad(
      ["--law", "causal"],
      `unknown law "causal" (did you mean causality, causal_alignment?); laws: ${lawNames().join(", ")}`,
    );
    await bad(["--formulas", "softmx"], /^unknown formula "softmx"; known formulas: softmax, /);
    await bad(
      ["--formulas", ","],
      "--formulas needs at least one formula name, e.g. --formulas softmax,layer_norm",
    );
    await bad(
      ["--formulas", "softmax", "--formula", "relu"],
      "--formulas and --formula say the same thing: give one of them",
    );
    await bad(
      ["--planted", "nope"],
      /^unknown planted bug "nope"; planted bugs: causal_mask_off_by_one, /,
    );
    await bad(
      ["--planted", "softmax_no_max_subtraction", "--impl", "true"],
      "--planted cannot be combined with --impl: it names the implementation itself",
    );
    await bad(
      ["--impl", " "],
      '--impl needs a shell command, e.g. --impl "python3 examples/numpy/impl.py"',
    );
  });

  it("lists the laws", async () => {
    const r = await run(["--list"]);
    expect(r.code).toBe(0);
    for (const name of lawNames()) expect(r.out).toContain(name);
  });

  it("exits 0 when the laws pass and 1 when one fails", async () => {
    const pass = await run(["--law", "softmax_simplex", "--runs", "5", "--seed", "1"]);
    expect(pass.code).toBe(0);
    expect(pass.out).toContain("1 passed, 0 failed, 0 skipped");
    const fail = await run([
      "--law",
      "cross_entropy",
      "--runs",
      "30",
      "--seed",
      "1",
      "--planted",
      "cross_entropy_summed",
      "--json",
    ]);
    expect(fail.code).toBe(1);
    expect((JSON.parse(fail.out) as { failed: number }).failed).toBe(1);
  });

  it("takes --formulas a,b, and --formula F as its old spelling", async () => {
    // causality applies to attention and mha (and more); the run keeps the two named
    const two = await run([
      "--law",
      "causality",
      "--runs",
      "3",
      "--formulas",
      "attention,mha,softmax",
      "--json",
    ]);
    expect(two.code).toBe(0);
    expect(
      (JSON.parse(two.out) as { results: { formulas: string[] }[] }).results[0]!.formulas,
    ).toEqual(["attention", "mha"]);
    const old = await run([
      "--law",
      "softmax_simplex",
      "--runs",
      "3",
      "--formula",
      "softmax",
      "--json",
    ]);
    expect(old.code).toBe(0);
    expect(
      (JSON.parse(old.out) as { results: { formulas: string[] }[] }).results[0]!.formulas,
    ).toEqual(["softmax"]);
  });

  it("uses the one default seed, 1, and names it in the report", async () => {
    const r = await run(["--law", "softmax_simplex", "--runs", "2", "--json"]);
    expect((JSON.parse(r.out) as { seed: number }).seed).toBe(1);
  });

  it("takes --impl=COMMAND as well as --impl COMMAND, and says when the program cannot start", async () => {
    for (const args of [
      ["--impl=/nonexistent/specformer-impl"],
      ["--impl", "/nonexistent/specformer-impl"],
    ]) {
      const r = await run([...args, "--law", "softmax_simplex", "--runs", "2"]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/^specformer properties: the implementation could not be started: /);
    }
  });

  it("prints its usage, --impl included, for --help", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("usage: specformer properties [--impl COMMAND]");
    expect(r.out).toContain("--impl COMMAND");
  });
});
