/**
 * The fault suite: one misbehaving program (verify/fixtures/misbehave.mjs), a mode per way of
 * misbehaving, each run through `specformer verify` with its expected exit code and statuses —
 * and, after every run, no process left that carries the run's marker (the program and anything
 * it forked). Then the ways out of verify itself: SIGTERM, SIGINT, and a host dying of an
 * uncaught error, each with a forked grandchild that must not survive.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import { GOLDEN_FORMAT, saveCase } from "../golden/cases-io.js";
import { recordingIo } from "./main.testing.js";
import { verifyCommand } from "./verify.js";

const ROOT = join(__dirname, "..");
const MISBEHAVE = join(ROOT, "verify", "fixtures", "misbehave.mjs");
const BIN = join(ROOT, "bin", "specformer.mjs");
const node = JSON.stringify(process.execPath);

/** `count` golden cases of `identity` (y = x), no gradients. */
function identityCases(count: number): string {
  const dir = mkdtempSync(join(tmpdir(), "specformer-faults-"));
  for (let k = 0; k < count; k++) {
    const x = new Tensor("f64", [2, 3], Float64Array.from([1, -2.5, 0.1, 3, 1e-300, -7 + k]));
    saveCase(join(dir, "identity", "f64", `c${k}.safetensors`), {
      meta: {
        format: GOLDEN_FORMAT,
        case: `identity/f64/c${k}`,
        formula: "identity",
        config: {},
        dims: { n: 2, d: 3 },
        dtype: "f64",
        seed: k,
        torch_version: null,
        generator: "cli/verify-faults.test.ts",
        oracle: "identity by definition",
        tolerance: { "out.y": { rtol: 0, atol: 0, reason: "exact copy" } },
      },
      inputs: { x },
      outputs: { y: x },
    });
  }
  return dir;
}
/** Ten cases for the decline shares, four (fewer restarts to wait for) for everything else. */
const CASES_10 = identityCases(10);
const CASES = identityCases(4);

let serial = 0;
const markerFor = (mode: string): string => `sf-fault-${process.pid}-${++serial}-${mode}`;

/** Processes whose command line holds `marker` (zombies have none: they are gone, only unreaped). */
function leftovers(marker: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "latin1");
      if (cmd.includes(marker)) out.push(`${e}: ${cmd.replace(/\0/g, " ").trim()}`);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

interface Run {
  code: number;
  out: string;
  err: string;
  json:
    | {
        summary: {
          golden: Record<string, number>;
          declined: { count: number; asked: number; fails_run: boolean };
        };
        results: Array<{ status: string; message?: string }>;
        notes: string[];
        restarts: number;
      }
    | undefined;
  left: string[];
}

/** `specformer verify --impl "misbehave MODE MARKER" --json` with short timeouts; the leftovers counted right after. */
async function runMode(mode: string, timeoutS = 2, startupMs = 4000, cases = CASES): Promise<Run> {
  const marker = markerFor(mode);
  const { io, out, err } = recordingIo();
  const code = await verifyCommand(
    [
      "--impl",
      `${node} ${JSON.stringify(MISBEHAVE)} ${mode} ${marker}`,
      "--cases",
      cases,
      "--timeout",
      String(timeoutS),
      "--json",
    ],
    io,
    { startupTimeoutMs: startupMs, graceMs: 300, maxLineBytes: 1 << 20 },
  );
  const left = leftovers(marker);
  const text = out.join("");
  return {
    code,
    out: text,
    err: err.join(""),
    json: text.trim().startsWith("{") ? JSON.parse(text) : undefined,
    left,
  };
}

const statuses = (r: Run): string[] => (r.json?.results ?? []).map((x) => x.status);
/** Every string of the JSON report (unescaped), and stderr. */
function everything(r: Run): string {
  const strings: string[] = [r.err];
  const walk = (v: unknown): void => {
    if (typeof v === "string") strings.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(r.json ?? r.out);
  return strings.join("\n");
}

interface Mode {
  readonly mode: string;
  readonly code: 0 | 1 | 2;
  /** Text the report (stdout or stderr) must hold. */
  readonly says?: RegExp;
  readonly check?: (r: Run) => void;
  readonly timeoutS?: number;
  readonly startupMs?: number;
  readonly cases?: string;
}

const MODES: readonly Mode[] = [
  // before or at hello: verify cannot start, exit 2
  { mode: "crash-before-hello", code: 2, says: /exited with code 3 before answering hello/ },
  { mode: "exit0-before-hello", code: 2, says: /exited with code 0 before answering hello/ },
  { mode: "fork-then-exit", code: 2, says: /exited with code 1 before answering hello/ },
  {
    mode: "hang-hello",
    code: 2,
    says: /did not answer hello \(request 1\) within 1000 ms/,
    startupMs: 1000,
  },
  {
    mode: "non-json-hello",
    code: 2,
    says: /printed a line on stdout that is not JSON .*"Hello from impl.py, loading model..."/,
  },
  { mode: "bad-hello", code: 2, says: /formulas/ },
  {
    mode: "hello-wrong-id",
    code: 2,
    says: /answered with id 41 while waiting for hello \(request 1\)/,
  },
  { mode: "unknown-formula", code: 2, says: /nothing was checked/ },
  // faults during the run: exit 2, never OK
  {
    mode: "crash-mid-run",
    code: 2,
    says: /exited with code 1 while computing forward identity \(request 3\)/,
    check: (r) => expect(statuses(r)).toContain("fault"),
  },
  { mode: "crash-signal", code: 2, says: /SIGSEGV/ },
  {
    mode: "exit0-mid-run",
    code: 2,
    says: /exited with code 0 while computing forward identity \(request 3\)/,
  },
  {
    mode: "crash-decline-phrase",
    code: 2,
    says: /exited with code 1 while computing forward identity/,
    check: (r) => {
      expect(statuses(r)).toContain("fault");
      expect(statuses(r)).not.toContain("declined");
    },
  },
  {
    mode: "hang-request",
    code: 2,
    says: /did not answer forward identity \(request 2\) within 400 ms; the process was stopped/,
    timeoutS: 0.4,
  },
  {
    mode: "close-stdout",
    code: 2,
    says: /did not answer forward identity \(request 2\) within 400 ms/,
    timeoutS: 0.4,
  },
  {
    mode: "garbage-line",
    code: 2,
    says: /printed a line on stdout that is not JSON .*"loading weights ... done"/,
  },
  {
    mode: "partial-line-exit",
    code: 2,
    says: /exited with code 0 while computing forward identity \(request 2\)/,
  },
  { mode: "nan-literal", code: 2, says: /not JSON/ },
  { mode: "inf-literal", code: 2, says: /not JSON/ },
  {
    mode: "wrong-id",
    code: 2,
    says: /answered with id 1002 while waiting for forward identity \(request 2\)/,
  },
  { mode: "duplicate-answer", code: 2, says: /answered request 2 twice/ },
  {
    mode: "malformed-tensor",
    code: 2,
    says: /data has 5 numbers but shape \[2, 3\] needs 6/,
    check: (r) => expect(r.json!.restarts).toBe(0),
  },
  {
    mode: "wrong-dtype",
    code: 2,
    says: /dtype is the string "f16"; it must be one of "f64", "f32", "i32"/,
  },
  { mode: "huge-line", code: 2, says: /sent a line longer than 1048576 bytes/ },
  // well-formed answers with wrong values: exit 1
  {
    mode: "wrong-shape",
    code: 1,
    check: (r) => expect(statuses(r).every((s) => s === "fail")).toBe(true),
  },
  {
    mode: "nan-values",
    code: 1,
    check: (r) => expect(statuses(r).every((s) => s === "fail")).toBe(true),
  },
  {
    mode: "missing-output",
    code: 1,
    check: (r) => expect(statuses(r).every((s) => s === "fail")).toBe(true),
  },
  // declines
  {
    mode: "decline-all",
    code: 2,
    says: /nothing was checked/,
    check: (r) => expect(r.json!.summary.golden["declined"]).toBe(4),
  },
  {
    mode: "decline-90",
    code: 1,
    cases: CASES_10,
    says: /declined 9 of the 10 checks sent to it \(90 %\); more than 50 % fails the run/,
    check: (r) =>
      expect(r.json!.summary.declined).toMatchObject({ count: 9, asked: 10, fails_run: true }),
  },
  {
    mode: "decline-stop-phrase",
    code: 0,
    cases: CASES_10,
    check: (r) => {
      expect(r.json!.summary.golden).toMatchObject({ pass: 7, declined: 3, fault: 0 });
      expect(r.json!.restarts).toBe(0);
    },
  },
  // programs that behave at the protocol level, whatever else they do
  { mode: "fork-then-answer", code: 0 },
  { mode: "fork-sigterm-proof-then-answer", code: 0 },
  { mode: "ignore-sigterm", code: 0 },
  { mode: "stderr-flood", code: 0 },
  { mode: "slow", code: 0 },
  { mode: "crlf", code: 0 },
];

describe("the fault suite: every misbehaviour has its exit code, and leaves no process behind", () => {
  test("at least 25 modes", () => {
    expect(MODES.length).toBeGreaterThanOrEqual(25);
    expect(new Set(MODES.map((m) => m.mode)).size).toBe(MODES.length);
  });
  for (const m of MODES) {
    // two at a time: each mostly waits for its program
    test.concurrent(
      `${m.mode}: exit ${m.code}`,
      async () => {
        const r = await runMode(m.mode, m.timeoutS, m.startupMs, m.cases);
        expect({ code: r.code, left: r.left }, everything(r)).toEqual({ code: m.code, left: [] });
        if (m.says !== undefined) expect(everything(r)).toMatch(m.says);
        if (m.code === 0) expect(statuses(r)).toContain("pass");
        m.check?.(r);
      },
      30_000,
    );
  }
});

/** Start bin/specformer.mjs verify on a program that forks a grandchild and hangs; resolve once both run. */
async function startHungVerify(marker: string): Promise<ReturnType<typeof spawn>> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "verify",
      "--impl",
      `${node} ${JSON.stringify(MISBEHAVE)} fork-then-hang ${marker}`,
      "--cases",
      CASES,
      "--timeout",
      "120",
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const deadline = Date.now() + 90_000; // bin/specformer.mjs compiles the CLI first: slow on a loaded machine
  // the shell (or the program), the program, the grandchild: at least two processes carry the marker
  while (
    leftovers(marker).filter((l) => l.includes("-e")).length === 0 ||
    leftovers(marker).length < 2
  ) {
    if (Date.now() > deadline)
      throw new Error(`the implementation did not start: ${leftovers(marker).join("; ")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

function exited(
  child: ReturnType<typeof spawn>,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve({ code: child.exitCode, signal: child.signalCode });
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

describe("no implementation outlives specformer verify", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(
      `${signal} to specformer verify stops the implementation and its ` +
        `grandchild, then verify dies of the signal`,
      async () => {
        const marker = markerFor(`signal-${signal}`);
        const child = await startHungVerify(marker);
        child.kill(signal);
        const how = await exited(child);
        expect(how.signal).toBe(signal);
        expect(leftovers(marker)).toEqual([]);
      },
      120_000,
    );
  }
  test("a host that dies of an uncaught error takes its implementation and the grandchild with it", async () => {
    const marker = markerFor("uncaught");
    const host = spawn(
      process.execPath,
      [
        join(ROOT, "verify", "fixtures", "uncaught-host.mjs"),
        `${node} ${JSON.stringify(MISBEHAVE)} fork-then-hang ${marker}`,
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    host.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const how = await exited(host);
    expect(how.code).toBe(1);
    expect(stderr).toContain("boom: an uncaught error in the host");
    expect(leftovers(marker)).toEqual([]);
  }, 60_000);
});
