/** `specformer tokenize`: text as an argument, after `--`, from a file, or from standard input. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { Tokenizer } from "../reference/tokenizer/index.js";
import { runMain } from "./main.testing.js";

const run = runMain;
const ids = (json: string) => (JSON.parse(json) as { ids: number[] }).ids;

describe("specformer tokenize", () => {
  test("text that starts with '-' after --, and a file, give the same ids as the argument", async () => {
    const dash = await run(["tokenize", "--json", "--", "-x world"]);
    expect(dash.code).toBe(0);
    expect(ids(dash.out)).toEqual(Tokenizer.gpt2().encode("-x world"));
    const dir = mkdtempSync(join(tmpdir(), "specformer-tok-"));
    writeFileSync(join(dir, "t.txt"), "Hello, world!");
    const file = await run(["tokenize", "--json", "--file", join(dir, "t.txt")]);
    expect(ids(file.out)).toEqual(ids((await run(["tokenize", "--json", "Hello, world!"])).out));
    expect(ids(file.out)).toEqual([15496, 11, 995, 0]);
  });

  test("- reads standard input", () => {
    const bin = join(__dirname, "..", "bin", "specformer.mjs");
    const out = execFileSync(process.execPath, [bin, "tokenize", "--json", "-"], {
      input: "Hello, world!",
      encoding: "utf8",
    });
    expect(ids(out)).toEqual([15496, 11, 995, 0]);
  }, 60_000);

  test("bad input says what was wrong, prefixed with the command", async () => {
    const missing = await run(["tokenize", "--file", "/nonexistent/t.txt"]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(
      "specformer tokenize: --file /nonexistent/t.txt: cannot read (ENOENT)",
    );
    const both = await run(["tokenize", "--file", "/x", "text"]);
    expect(both.err).toContain(
      "specformer tokenize: give the text either with --file or as an argument, not both",
    );
    const none = await run(["tokenize"]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("specformer tokenize: tokenize takes exactly one TEXT argument");
  });
});
