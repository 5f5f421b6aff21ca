/**
 * `specformer research`: exit codes (0 ok, 1 a check failed, 2 bad input),
 * messages, and the files a run writes — in process through `main`, and once as users run it.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Io } from "./io.js";
import { main } from "./main.js";
import { runStudy } from "./research.js";
import { parseCsv } from "../research/csv.js";
import { LN_PLACEMENT_COLUMNS } from "../research/ln-placement.js";
import { RANK_COLLAPSE_COLUMNS } from "../research/rank-collapse.js";
import type { Study } from "../research/study.js";
import { parseXml } from "../research/xml.js";

function capture(): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    tty: false,
    out(s: string) {
      io.stdout += s.endsWith("\n") ? s : `${s}\n`;
    },
    err(s: string) {
      io.stderr += s.endsWith("\n") ? s : `${s}\n`;
    },
  };
  return io;
}

async function run(args: string[]) {
  const io = capture();
  const code = await main(["research", ...args], io);
  return { code, out: io.stdout, err: io.stderr };
}

const tmp = () => mkdtempSync(join(tmpdir(), "specformer-research-"));

describe("specformer research: bad input exits 2 with a message", () => {
  it.each([
    [
      ["lnplacement"],
      'unknown study "lnplacement" (did you mean ln-placement?); studies: ' +
        "ln-placement, length-extrapolation, rank-collapse, variants, mup",
    ],
    [["attention-collapse"], 'unknown study "attention-collapse"'],
    [
      [],
      "which study? name one of ln-placement, length-extrapolation, rank-collapse, variants, mup",
    ],
    [["rank-collapse", "variants"], "research takes one study, got 2: rank-collapse variants"],
    [["rank-collapse", "--seeds", "0"], '--seeds must be a positive integer, got "0"'],
    [["rank-collapse", "--seeds", "2.5"], '--seeds must be a positive integer, got "2.5"'],
    [["rank-collapse", "--seeds", "many"], '--seeds must be a positive integer, got "many"'],
    [["rank-collapse", "--sedes", "3"], "Unknown option '--sedes'"],
    [["rank-collapse", "--quick=yes"], "Option '--quick' does not take an argument"],
    [
      ["constructor"],
      'unknown study "constructor"; studies: ln-placement, length-extrapolation, rank-collapse, variants, mup',
    ],
    [
      ["__proto__"],
      'unknown study "__proto__"; studies: ln-placement, length-extrapolation, rank-collapse, variants, mup',
    ],
    [
      ["toString"],
      'unknown study "toString"; studies: ln-placement, length-extrapolation, rank-collapse, variants, mup',
    ],
  ])("%j", async (args, message) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err.startsWith("specformer research: ")).toBe(true);
  });
  it("an --out that is a file is refused before any work", async () => {
    const f = join(tmp(), "taken");
    writeFileSync(f, "x");
    const r = await run(["rank-collapse", "--quick", "--out", f]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`--out ${f}: exists and is not a folder`);
  });
  it("nothing is created before every option is validated (an unknown study, bad seeds)", async () => {
    const parent = tmp();
    for (const args of [["constructor"], ["rank-collapse", "--seeds", "0"], ["nope"]]) {
      const r = await run([...args, "--out", join(parent, "a", "b")]);
      expect(r.code).toBe(2);
    }
    expect(existsSync(join(parent, "a"))).toBe(false);
  });
  it("an --out under /proc fails fast instead of hanging in a recursive mkdir", async () => {
    const start = performance.now();
    const r = await run(["rank-collapse", "--quick", "--out", "/proc/nope/x"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      "specformer research: --out /proc/nope/x: cannot write there: /proc does not accept new entries (ENOENT)\n",
    );
    expect(performance.now() - start).toBeLessThan(5000);
  });
  it("--help lists the studies and exits 0", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("usage: specformer research STUDY [--seeds N] [--out DIR] [--quick]");
    for (const s of ["ln-placement", "length-extrapolation", "rank-collapse", "variants", "mup"])
      expect(r.out).toContain(`  ${s}`);
  });
});

describe("specformer research rank-collapse --quick", () => {
  it("writes CSV, SVG and summary.md, reports each check and one line per stage on a non-terminal stderr", async () => {
    const out = tmp();
    const r = await run(["rank-collapse", "--quick", "--seeds", "2", "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("rank-collapse: all 4 checks pass");
    expect(r.err.trim().split("\n")).toHaveLength(8); // one finished stage per variant
    expect(r.err).not.toContain("\r");
    const csv = parseCsv(readFileSync(join(out, "rank-collapse.csv"), "utf8"));
    expect(csv.columns).toEqual([...RANK_COLLAPSE_COLUMNS]);
    expect(csv.rows.every((row) => row["seeds"] === "2")).toBe(true);
    expect(parseXml(readFileSync(join(out, "rank-collapse.svg"), "utf8")).root.name).toBe("svg");
    const summary = readFileSync(join(out, "summary.md"), "utf8");
    expect(summary).toContain("![relative residual against depth](rank-collapse.svg)");
    // the measured numbers are in the summary: the table's depth-1 residual of pure attention
    const d1 = csv.rows.find((row) => row["variant"] === "attention" && row["depth"] === "1")!;
    expect(summary).toContain(`| ${Number(Number(d1["residual_geomean"]).toPrecision(2))} |`);
  });
});

describe("exit code 1 when a check fails", () => {
  const fake = (ok: boolean): Study => ({
    name: "fake",
    description: "a study whose check is set",
    defaultSeeds: 1,
    run: async () => ({
      study: "fake",
      files: { "fake.csv": "a\n1\n" },
      summary: "# fake\n",
      checks: [{ name: "the slope", expected: "−1/2", measured: "0.1", ok }],
    }),
  });
  it("returns 1, still writes the files and names the failing check", async () => {
    const out = tmp();
    const io = capture();
    expect(await runStudy(fake(false), {}, out, io)).toBe(1);
    expect(io.stdout).toContain("FAIL the slope: 0.1 (expected −1/2)");
    expect(io.stdout).toContain("fake: 1 of 1 check failed");
    expect(existsSync(join(out, "fake.csv"))).toBe(true);
    expect(existsSync(join(out, "summary.md"))).toBe(true);
  });
  it("returns 0 when every check passes", async () => {
    expect(await runStudy(fake(true), {}, tmp(), capture())).toBe(0);
  });
});

describe("as users run it", () => {
  it("npx specformer research ln-placement --quick --out DIR writes the CSV, the SVG and the summary", () => {
    const out = tmp();
    const bin = join(__dirname, "..", "bin", "specformer.mjs");
    const stdout = execFileSync(
      process.execPath,
      [bin, "research", "ln-placement", "--quick", "--out", out],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(stdout).toContain("ln-placement: all 4 checks pass");
    const csv = parseCsv(readFileSync(join(out, "ln-placement.csv"), "utf8"));
    expect(csv.columns).toEqual([...LN_PLACEMENT_COLUMNS]);
    const svg = parseXml(readFileSync(join(out, "ln-placement.svg"), "utf8"));
    expect(
      svg.elements.some((e) => (e.attrs["class"] ?? "").includes("mark-symbol role-mark")),
    ).toBe(true);
    const summary = readFileSync(join(out, "summary.md"), "utf8");
    expect(summary).toMatch(
      /\| pre-LN: last layer's ‖∇W_2‖ against L \(log-log slope\) \| .* \| −0\.\d\d ± 0\.\d\d \| ✓ \|/,
    );
  }, 60_000);
});
