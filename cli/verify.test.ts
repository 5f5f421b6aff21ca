/**
 * `specformer verify` as users run it — arguments, exit codes (0 pass, 1 a check failed, 2
 * could not drive the implementation or bad arguments), the report formats, and the real example
 * implementations. Most tests call the command in-process (`main` with a capturing Io); one runs
 * bin/specformer.mjs as a child process, as `npx specformer` does.
 */
import { execFile, execFileSync } from "node:child_process";
import { pythonCanImport } from "../io/python.testing.js";
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  writeFileSync,
  mkdirSync,
  copyFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import type { Io } from "./io.js";
import { main } from "./main.js";
import { BUNDLED_CASES } from "../verify/run.js";

/** How many committed golden cases a formula has in a dtype (golden/manifest.json, written by PyTorch's generator). */
function committedCases(formula: string, dtype: "f64" | "f32"): number {
  const m = JSON.parse(readFileSync(join(BUNDLED_CASES, "..", "manifest.json"), "utf8")) as {
    cases: { case: string }[];
  };
  return m.cases.filter((c) => c.case.startsWith(`${formula}/${dtype}/`)).length;
}

const ROOT = join(__dirname, "..");
const BIN = join(ROOT, "bin", "specformer.mjs");

/** The command in-process, its output captured. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    out: (s) => void out.push(s.endsWith("\n") ? s : `${s}\n`),
    err: (s) => void err.push(s.endsWith("\n") ? s : `${s}\n`),
    tty: false,
  };
  const cwd = process.cwd();
  process.chdir(ROOT);
  try {
    const code = await main(args, io);
    return { code, out: out.join(""), err: err.join("") };
  } finally {
    process.chdir(cwd);
  }
}

/** bin/specformer.mjs as a child process. */
function runBin(
  args: string[],
  timeout = 120_000,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: ROOT, encoding: "utf8", timeout, maxBuffer: 64 * 1024 * 1024 },
      (e, out, err) => {
        const code =
          e === null
            ? 0
            : typeof (e as { code?: unknown }).code === "number"
              ? (e as { code: number }).code
              : -1;
        resolve({ code, out, err });
      },
    );
  });
}

const hasNumpy = pythonCanImport("numpy");

const node = JSON.stringify(process.execPath);

describe("specformer verify: arguments", () => {
  test("a bad dtype, an unknown formula, a bad timeout or a stray argument: exit 2 saying what was wrong", async () => {
    const dtype = await run(["verify", "--dtype", "f16"]);
    expect(dtype.code).toBe(2);
    expect(dtype.err).toContain('--dtype must be f64 or f32, got "f16"');
    const formula = await run(["verify", "--formulas", "softmx"]);
    expect(formula.code).toBe(2);
    expect(formula.err).toContain("softmx");
    expect(formula.err).toContain("softmax");
    const timeout = await run(["verify", "--timeout", "0"]);
    expect(timeout.code).toBe(2);
    expect(timeout.err).toContain("--timeout must be a positive number of seconds");
    const law = await run(["verify", "--law", "nosuchlaw"]);
    expect(law.code).toBe(2);
    expect(law.err).toContain('unknown law "nosuchlaw"');
    const path = await run(["verify", "--path", "1:2"]);
    expect(path.code).toBe(2);
    expect(path.err).toContain(
      "--path replays one law's counterexample: give --law and --seed too",
    );
    const stray = await run(["verify", "golden/cases"]);
    expect(stray.code).toBe(2);
    expect(stray.err).toContain('unexpected argument "golden/cases"');
  }, 60_000);
  test("a timeout beyond Node's timer limit is bad input, not a 1 ms timer", async () => {
    for (const t of ["2147484", "1e7"]) {
      const r = await run(["verify", "--impl", "true", "--timeout", t]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(
        `--timeout must be at most 2147483 seconds (Node's timer limit, 2^31 − 1 ms), got "${t}"`,
      );
    }
  });
  test(
    "report paths are checked before the run: folder, missing folder, " +
      "shared path, golden file, someone else's file",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
      const golden = join(dir, "n1_d5.safetensors");
      copyFileSync(join(ROOT, "golden", "cases", "relu", "f64", "n1_d5.safetensors"), golden);
      const before = readFileSync(golden);
      writeFileSync(join(dir, "notes.txt"), "my notes\n");
      const cases: Array<[string[], string]> = [
        [["--html", dir], `--html ${JSON.stringify(dir)}: is a folder`],
        [["--junit", join(dir, "nope", "r.xml")], `the folder ${join(dir, "nope")} does not exist`],
        [
          ["--junit", join(dir, "r.xml"), "--html", join(dir, ".", "r.xml")],
          "the same file as --junit",
        ],
        [["--junit", golden], "a .safetensors file is a golden case or tensor file, not a report"],
        [
          ["--html", join(dir, "notes.txt")],
          "the file exists and is not a specformer report; give --force to replace it",
        ],
      ];
      for (const [args, message] of cases) {
        const r = await run(["verify", "--formulas", "relu", ...args]);
        expect(r.code).toBe(2);
        expect(r.err).toContain(message);
        expect(r.out).toBe(""); // nothing ran
      }
      expect(readFileSync(golden)).toEqual(before);
      expect(readFileSync(join(dir, "notes.txt"), "utf8")).toBe("my notes\n");
    },
  );
  test(
    "reports replace earlier reports, and other files only with --force; " +
      "the written files carry the marker",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
      writeFileSync(join(dir, "r.json"), "mine\n");
      const args = [
        "verify",
        "--formulas",
        "relu",
        "--dtype",
        "f64",
        "--runs",
        "2",
        "--junit",
        join(dir, "r.xml"),
        "--json-file",
        join(dir, "r.json"),
      ];
      const refused = await run(args);
      expect(refused.code).toBe(2);
      const forced = await run([...args, "--force"]);
      expect(forced.code).toBe(0);
      expect(forced.out).toContain("— OK");
      expect(readFileSync(join(dir, "r.xml"), "utf8")).toContain("<!-- specformer-report:");
      expect(JSON.parse(readFileSync(join(dir, "r.json"), "utf8")).report).toContain(
        "specformer-report",
      );
      const again = await run(args); // both are specformer reports now
      expect(again.code).toBe(0);
      expect(again.err).toContain(`wrote JSON report ${join(dir, "r.json")}`);
      expect(readdirSync(dir).sort()).toEqual(["r.json", "r.xml"]); // no temporary files left
    },
    120_000,
  );
  test("--help prints the usage", async () => {
    const r = await run(["verify", "--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("usage: specformer verify");
    expect(r.out).toContain("--junit FILE");
  });
  test("a malformed golden file given with --cases: exit 2 naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
    writeFileSync(join(dir, "broken.safetensors"), Buffer.from([1, 2, 3]));
    const r = await run(["verify", "--cases", dir]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("broken.safetensors");
    expect(r.err).toContain("unreadable golden case");
  });
});

describe("specformer verify: the implementation cannot be started", () => {
  test("a program that exits before hello: exit 2 with its stderr", async () => {
    const r = await run(["verify", "--impl", `${node} verify/fixtures/crash.mjs --at hello`]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("the implementation could not be started");
    expect(r.err).toContain("exited with code 3 before answering hello");
    expect(r.err).toContain("No module named 'numpy'");
  });
  test("a command the shell cannot find, as JSON", async () => {
    const r = await run(["verify", "--impl", "specformer-no-such-program-xyz", "--json"]);
    expect(r.code).toBe(2);
    const j = JSON.parse(r.out);
    expect(j.ok).toBe(false);
    expect(j.error).toContain("127");
    expect(j.error).toContain("the shell could not find the command");
  });
});

describe("specformer verify: the built-in reference", () => {
  test("table, JSON, JUnit and HTML for a few formulas", async () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
    const r = await run([
      "verify",
      "--formulas",
      "softmax,layer_norm",
      "--dtype",
      "f64",
      "--runs",
      "3",
      "--junit",
      join(dir, "r.xml"),
      "--html",
      join(dir, "r.html"),
    ]);
    expect(r.code).toBe(0);
    const nSoftmax = committedCases("softmax", "f64");
    const nLayerNorm = committedCases("layer_norm", "f64");
    expect(r.out).toMatch(new RegExp(`softmax\\s+${nSoftmax}/${nSoftmax}`));
    expect(r.out).toMatch(new RegExp(`layer_norm\\s+${nLayerNorm}/${nLayerNorm}`));
    expect(r.out).toContain("— OK");
    expect(r.err).toContain(`wrote JUnit report ${join(dir, "r.xml")}`);
    expect(readFileSync(join(dir, "r.xml"), "utf8")).toContain(
      `<testsuite name="golden.softmax" tests="${nSoftmax}" failures="0"`,
    );
    expect(readFileSync(join(dir, "r.html"), "utf8")).toContain("<!doctype html>");
    const j = await run(["verify", "--formulas", "relu", "--json", "--runs", "3"]);
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.out);
    expect(doc.ok).toBe(true);
    expect(doc.first_divergence).toBeNull();
    expect(doc.results.map((x: { kind: string }) => x.kind)).toEqual(
      expect.arrayContaining(["golden", "gradient", "property"]),
    );
  }, 120_000);
});

describe.skipIf(!hasNumpy)("specformer verify on examples/numpy (skipped without NumPy)", () => {
  test("impl.py: ok, exit 0", async () => {
    const r = await run(["verify", "--impl", "/usr/bin/python3 examples/numpy/impl.py", "--json"]);
    const j = JSON.parse(r.out);
    expect(j.ok).toBe(true);
    expect(r.code).toBe(0);
    expect(j.summary.golden.pass).toBeGreaterThanOrEqual(270);
    expect(j.summary.golden.fail).toBe(0);
    // RoPE and ALiBi configurations are answered with an error: declined, not failed
    expect(j.summary.golden.declined).toBeGreaterThan(0);
    expect(j.first_divergence).toBeNull();
  }, 120_000);
  test(
    "impl_buggy.py (through bin/specformer.mjs): not ok, exit 1, the first " +
      "divergence is the causal mask (off by one)",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
      const r = await runBin([
        "verify",
        "--impl",
        "/usr/bin/python3 examples/numpy/impl_buggy.py",
        "--json",
        "--junit",
        join(dir, "r.xml"),
      ]);
      const j = JSON.parse(r.out);
      expect(j.ok).toBe(false);
      expect(r.code).toBe(1);
      expect(j.first_divergence.formula).toBe("causal_mask");
      expect(j.first_divergence.hints.map((h: { id: string }) => h.id)).toContain(
        "mask-off-by-one",
      );
      const gpt = j.results.find(
        (x: { case: string }) => x.case === "gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8",
      );
      expect(gpt.status).toBe("fail");
      expect(gpt.localisation.divergence.path).toEqual([
        "gpt",
        "h.0",
        "mha",
        "attention",
        "causal_mask",
      ]);
      // the failing set is exactly what the planted bug can reach: causal cases where some query has a later key
      // 71 before the four causal extreme-magnitude attention cases (below1e4_*_causal*)
      expect(j.summary.golden.fail).toBe(75);
      expect(readFileSync(join(dir, "r.xml"), "utf8")).toContain('failures="75"');
    },
    120_000,
  );
  test("the text report spells out the first divergence", async () => {
    const r = await run([
      "verify",
      "--impl",
      "/usr/bin/python3 examples/numpy/impl_buggy.py",
      "--formulas",
      "causal_mask,attention",
      "--dtype",
      "f64",
    ]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("first divergence: causal_mask");
    expect(r.out).toContain("just above the causal diagonal");
  }, 60_000);
});

describe("specformer verify with custom goldens (--cases) and a fixture program", () => {
  test("the echo fixture on copies of golden files: formulas it does not declare are skipped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "specformer-cli-verify-"));
    mkdirSync(join(dir, "relu"));
    copyFileSync(
      join(ROOT, "golden/cases/relu/f64/n7_d12.safetensors"),
      join(dir, "relu", "n7_d12.safetensors"),
    );
    const r = await run([
      "verify",
      "--impl",
      `${node} verify/fixtures/echo.mjs`,
      "--cases",
      dir,
      "--json",
    ]);
    const j = JSON.parse(r.out);
    expect(
      j.results.map((x: { status: string; message: string }) => [x.status, x.message]),
    ).toEqual([["skipped", "the implementation does not declare relu"]]);
    expect(r.code).toBe(2); // nothing was checked
    expect(j.notes.join("\n")).toContain("nothing was checked");
  });
});
