/**
 * The verify run: on the reference and planted implementations (statuses, first divergence,
 * laws, gradient checks), and on misbehaving programs (verify/fixtures): every fault becomes a
 * report entry with the program's own words, the run goes on, and the exit code says so.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { ImplementationError } from "../autodiff/implementation.js";
import type { Implementation } from "../autodiff/implementation.js";
import { Tensor } from "../autodiff/tensor.js";
import { GOLDEN_FORMAT, saveCase } from "../golden/cases-io.js";
import { plantedImplementation } from "../properties/planted.js";
import { referenceImplementation } from "../reference/implementation.js";
import { ProcessImplementation } from "./process.js";
import { countsOf, exitCodeOf, formatVerifyReport, verifyReportToJSON } from "./report.js";
import { BUNDLED_CASES, formulaLevel, verify } from "./run.js";
import type { ProgressEvent, VerifyOptions, VerifyReport } from "./run.js";

/** How many committed golden cases a formula has in a dtype (golden/manifest.json, written by PyTorch's generator). */
function committedCases(formula: string, dtype: "f64" | "f32"): number {
  const m = JSON.parse(readFileSync(join(BUNDLED_CASES, "..", "manifest.json"), "utf8")) as {
    cases: { case: string }[];
  };
  return m.cases.filter((c) => c.case.startsWith(`${formula}/${dtype}/`)).length;
}
import { plantedGraphImplementation, plantMaskShift } from "./planted.testing.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (name: string, ...args: string[]): string =>
  [JSON.stringify(process.execPath), JSON.stringify(join(here, "fixtures", name)), ...args].join(
    " ",
  );

/** Golden cases for the fixtures' formulas: `identity` (y = x, grad x = cot) and `fail`. */
function fixtureCases(
  formulas: readonly string[] = ["identity"],
  count = 2,
  withGrads = true,
): string {
  const dir = mkdtempSync(join(tmpdir(), "specformer-verify-"));
  for (const formula of formulas) {
    for (let k = 0; k < count; k++) {
      const x = new Tensor("f64", [2, 3], Float64Array.from([1, -2.5, 0.1, 3, 1e-300, -7 + k]));
      const cot = new Tensor("f64", [2, 3], Float64Array.from([0.5, 1, -1, 2, 0, 0.25]));
      saveCase(join(dir, formula, "f64", `c${k}.safetensors`), {
        meta: {
          format: GOLDEN_FORMAT,
          case: `${formula}/f64/c${k}`,
          formula,
          config: {},
          dims: { n: 2, d: 3 },
          dtype: "f64",
          seed: k,
          torch_version: null,
          generator: "verify/run.test.ts",
          oracle: "identity by definition",
          tolerance: {
            "out.y": { rtol: 0, atol: 0, reason: "exact copy" },
            ...(withGrads ? { "grad.x": { rtol: 0, atol: 0, reason: "exact copy" } } : {}),
          },
        },
        inputs: { x },
        outputs: { y: x },
        ...(withGrads ? { cotangents: { y: cot }, grads: { x: cot } } : {}),
      });
    }
  }
  return dir;
}

/** Run verify on a fixture program, restarting it as the CLI does. */
async function verifyProgram(
  command: string,
  cases: string,
  opts: Partial<VerifyOptions> & { timeoutMs?: number } = {},
): Promise<VerifyReport> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const start = () =>
    ProcessImplementation.start(command, { timeoutMs, startupTimeoutMs: 20_000, graceMs: 300 });
  const impl = await start();
  try {
    return await verify(impl, { cases: [cases], command, restart: start, ...opts });
  } finally {
    await impl.close();
  }
}

describe("the reference", () => {
  test("passes its golden cases and gradient checks; nothing diverges", async () => {
    const r = await verify(referenceImplementation(), {
      formulas: ["softmax", "layer_norm", "attention"],
      dtype: "f64",
    });
    expect(r.ok).toBe(true);
    expect(exitCodeOf(r)).toBe(0);
    expect(countsOf(r.results, "golden")).toEqual({
      pass:
        committedCases("softmax", "f64") +
        committedCases("layer_norm", "f64") +
        committedCases("attention", "f64"),
      fail: 0,
      declined: 0,
      fault: 0,
      skipped: 0,
    });
    expect(
      r.results.filter((x) => x.kind === "gradient").map((x) => [x.formula, x.status]),
    ).toEqual([
      ["softmax", "pass"],
      ["attention", "pass"],
      ["layer_norm", "pass"],
    ]);
    expect(r.firstDivergence).toBeNull();
    for (const g of r.results) if (g.kind === "golden") expect(g.budget!).toBeLessThanOrEqual(1);
  });
  test("the laws run through the same implementation", async () => {
    const r = await verify(referenceImplementation(), {
      formulas: ["softmax"],
      dtype: "f64",
      properties: true,
      lawRuns: 5,
      gradients: false,
    });
    const laws = r.results.filter((x) => x.kind === "property");
    expect(laws.length).toBeGreaterThan(3);
    expect(laws.every((x) => x.status === "pass")).toBe(true);
    expect(laws.map((x) => x.case)).toContain("softmax_simplex");
  });
  test("a law whose case the implementation declines is declined, and re-run on the law's other formulas", async () => {
    const ref = referenceImplementation();
    const impl: Implementation = {
      ...ref,
      name: "no mha",
      forward: async (req) => {
        if (req.formula === "mha")
          throw new ImplementationError(
            "implementation `no mha` reported an error for forward mha (request 7): mha is not implemented",
            { kind: "declined" },
          );
        return ref.forward(req);
      },
    };
    const r = await verify(impl, {
      cases: [join(BUNDLED_CASES, "relu")],
      properties: true,
      lawRuns: 5,
      gradients: false,
      dtype: "f64",
    });
    const causality = r.results.filter((x) => x.kind === "property" && x.case === "causality");
    expect(causality.find((x) => x.formula === "mha")?.status).toBe("declined");
    // every mha case was declined: a filter that left nothing to run, not a failure
    expect(causality.find((x) => x.formula === "mha")?.message).toContain(
      "no generated case could be run: mha: ",
    );
    expect(causality.find((x) => x.formula === "mha")?.law?.coverage?.["mha"]?.ran).toBe(0);
    expect(causality.find((x) => x.formula === "attention")?.status).toBe("pass");
    expect(r.results.filter((x) => x.kind === "property").every((x) => x.status !== "fail")).toBe(
      true,
    );
    expect(exitCodeOf(r)).toBe(0);
  }, 60_000);
  test("progress reports each phase", async () => {
    const events: ProgressEvent[] = [];
    await verify(referenceImplementation(), {
      formulas: ["relu"],
      onProgress: (e) => events.push(e),
    });
    expect(new Set(events.map((e) => e.phase))).toEqual(new Set(["golden", "gradient"]));
    expect(events.find((e) => e.phase === "golden" && e.done === 0)?.total).toBe(6);
  });
  test("nothing to check is not a pass", async () => {
    const r = await verify(referenceImplementation(), { formulas: ["identity"] });
    expect(r.ok).toBe(false);
    expect(exitCodeOf(r)).toBe(2);
    expect(r.notes.join("\n")).toContain("nothing was checked");
  });
  test("formula levels follow nesting", () => {
    expect([
      formulaLevel("softmax"),
      formulaLevel("causal_mask"),
      formulaLevel("attention"),
      formulaLevel("mha"),
      formulaLevel("block"),
      formulaLevel("gpt"),
    ]).toEqual([0, 0, 1, 2, 3, 4]);
  });
});

describe("planted mistakes", () => {
  test("an off-by-one mask: the first divergence is the mask's own case, with the band hint", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const r = await verify(impl, {
      formulas: ["causal_mask", "attention", "block_pre_ln"],
      dtype: "f64",
      gradients: false,
    });
    expect(r.ok).toBe(false);
    expect(exitCodeOf(r)).toBe(1);
    const d = r.firstDivergence!;
    expect(d.formula).toBe("causal_mask");
    expect(d.case).toMatch(/^causal_mask\/f64\//);
    expect(d.hints.map((h) => h.id)).toContain("mask-off-by-one");
    // composites are localised to the mask; n = 1 and non-causal cases cannot show the bug and pass
    const block = r.results.find((x) => x.case === "block_pre_ln/f64/b2_n5_d8_h2")!;
    expect(block.status).toBe("fail");
    expect(block.localisation?.divergence?.path).toEqual([
      "block_pre_ln",
      "mha",
      "attention",
      "causal_mask",
    ]);
    expect(r.results.find((x) => x.case === "attention/f64/n1_m1_dk3_causal")?.status).toBe("pass");
    expect(
      r.results.find((x) => x.case === "attention/f64/b2_n6_m9_dk5_dv3_noncausal")?.status,
    ).toBe("pass");
  });
  test("a broken attention (properties' planted bug) fails its cases, and the laws catch it too", async () => {
    const impl = plantedImplementation("causal_mask_off_by_one");
    const r = await verify(impl, {
      formulas: ["attention"],
      dtype: "f64",
      properties: true,
      lawRuns: 20,
      gradients: false,
      seed: 1,
    });
    const d = r.firstDivergence!;
    expect(d.formula).toBe("attention");
    expect(d.kind).toBe("golden");
    expect(d.hints.map((h) => [h.id, h.evidence])).toContainEqual(["mask-off-by-one", "match"]);
    const causality = r.results.find((x) => x.kind === "property" && x.case === "causality");
    expect(causality?.status).toBe("fail");
    // the replay command names the law, seed, path, formula scope and dtype, and replays the same failure
    const replay = causality!.replay!;
    expect(replay).toMatch(
      /^npx specformer verify --law causality --seed 1 --path [\d:]+ --formulas attention --dtype f64$/,
    );
    const path = /--path (\S+)/.exec(replay)![1]!;
    const again = await verify(impl, {
      formulas: ["attention"],
      dtype: "f64",
      law: "causality",
      seed: 1,
      lawPath: path,
    });
    expect(again.results.map((x) => `${x.kind}:${x.case}:${x.status}`)).toEqual([
      "property:causality:fail",
    ]);
    expect(again.results[0]!.law?.failure?.message).toBe(causality!.law?.failure?.message);
  });
  test("a wrong backward pass: outputs match, grad.* and the finite-difference check fail", async () => {
    const impl = plantedImplementation("softmax_grad_no_subtraction");
    const r = await verify(impl, { formulas: ["softmax"], dtype: "f64" });
    const c = r.results.find((x) => x.case === "softmax/f64/n7_m12")!;
    expect(c.status).toBe("fail");
    expect(c.tensors!.find((t) => t.name === "out.y")!.ok).toBe(true);
    expect(c.tensors!.find((t) => t.name === "grad.x")!.ok).toBe(false);
    expect(r.results.find((x) => x.kind === "gradient")?.status).toBe("fail");
    expect(r.firstDivergence?.tensor).toBe("grad.x");
    expect(r.firstDivergence?.explanation).toContain("the backward pass is wrong");
  });
  test("an in-process exception is a fault; an error answer is declined, not failed", async () => {
    const ref = referenceImplementation();
    const impl: Implementation = {
      ...ref,
      name: "moody",
      forward: async (req) => {
        if (req.formula === "relu")
          throw new TypeError("Cannot read properties of undefined (reading 'shape')");
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        if (req.formula === "gelu_tanh") throw "out of memory";
        if (req.formula === "silu")
          throw new ImplementationError(
            "implementation `moody` reported an error for forward silu (request 3): silu is not supported",
            { kind: "declined" },
          );
        return ref.forward(req);
      },
    };
    const r = await verify(impl, {
      formulas: ["relu", "silu", "gelu", "gelu_tanh"],
      dtype: "f64",
      gradients: false,
    });
    const relu = r.results.filter((x) => x.formula === "relu");
    expect(relu.every((x) => x.status === "fault")).toBe(true);
    expect(relu[0]!.message).toBe(
      "moody threw TypeError: Cannot read properties of undefined (reading 'shape')",
    );
    expect(
      r.results.filter((x) => x.formula === "silu").every((x) => x.status === "declined" && x.ok),
    ).toBe(true);
    expect(r.results.filter((x) => x.formula === "gelu").every((x) => x.status === "pass")).toBe(
      true,
    );
    expect(r.results.find((x) => x.formula === "gelu_tanh")?.message).toBe(
      "moody threw a non-Error value: out of memory",
    );
    expect(exitCodeOf(r)).toBe(2);
  });
  test(
    "the error's kind decides, never its text: a fault quoting the decline " +
      "phrase is a fault, a decline quoting the stop phrase is declined",
    async () => {
      const ref = referenceImplementation();
      let restarts = 0;
      const impl: Implementation = {
        ...ref,
        name: "tricky",
        forward: async (req) => {
          if (req.formula === "relu")
            throw new ImplementationError(
              "implementation `tricky` exited with code 1\nstderr tail:\nx reported an error for forward relu",
              { kind: "crash" },
            );
          if (req.formula === "silu")
            throw new ImplementationError(
              "implementation `tricky` reported an error for forward silu (request " +
                "3): implementation was stopped after a timeout",
              { kind: "declined" },
            );
          return ref.forward(req);
        },
      };
      const r = await verify(impl, {
        formulas: ["relu", "silu", "gelu"],
        dtype: "f64",
        gradients: false,
        restart: async () => (restarts++, impl),
      });
      expect(new Set(r.results.filter((x) => x.formula === "relu").map((x) => x.status))).toEqual(
        new Set(["fault"]),
      );
      expect(new Set(r.results.filter((x) => x.formula === "silu").map((x) => x.status))).toEqual(
        new Set(["declined"]),
      );
      expect(restarts).toBe(0);
      expect(r.restarts).toBe(0);
      expect(r.ok).toBe(false);
      expect(exitCodeOf(r)).toBe(2);
    },
  );
  test(
    "declines: more than half of the checks declined fails the run (exit " +
      "1), any decline under strict does; the summary states the share",
    async () => {
      const ref = referenceImplementation();
      const impl: Implementation = {
        ...ref,
        name: "shy",
        forward: async (req) => {
          if (req.formula !== "gelu")
            throw new ImplementationError(
              `implementation \`shy\` reported an error for forward ${req.formula}: not supported`,
              { kind: "declined" },
            );
          return ref.forward(req);
        },
      };
      const mostly = await verify(impl, {
        formulas: ["relu", "silu", "gelu"],
        dtype: "f64",
        gradients: false,
      });
      expect(mostly.declines.count).toBeGreaterThan(mostly.declines.asked / 2);
      expect(mostly.declines.failsRun).toBe(true);
      expect(mostly.ok).toBe(false);
      expect(exitCodeOf(mostly)).toBe(1);
      expect(formatVerifyReport(mostly)).toMatch(
        /\d+ of \d+ checks declined \(\d+(\.\d)? %\) — too many: the run fails — FAILED/,
      );
      const j = JSON.parse(verifyReportToJSON(mostly));
      expect(j.summary.declined).toMatchObject({
        count: mostly.declines.count,
        asked: mostly.declines.asked,
        limit: 0.5,
        fails_run: true,
      });
      const few = await verify(impl, {
        formulas: ["relu", "gelu"],
        dtype: "f64",
        gradients: false,
      });
      expect(few.declines.share).toBeLessThanOrEqual(0.5);
      expect(exitCodeOf(few)).toBe(0);
      expect(formatVerifyReport(few)).toMatch(/checks declined \(\d+(\.\d)? %\) — OK/);
      const strict = await verify(impl, {
        formulas: ["relu", "gelu"],
        dtype: "f64",
        gradients: false,
        strict: true,
      });
      expect(strict.ok).toBe(false);
      expect(exitCodeOf(strict)).toBe(1);
      expect(strict.notes.join("\n")).toContain("--strict: the implementation declined");
    },
  );
});

describe("programs that misbehave (verify/fixtures)", () => {
  const cases = fixtureCases(["identity", "fail"]);
  test("a well-behaved program passes; its error answers are declined", async () => {
    const r = await verifyProgram(fixture("echo.mjs"), cases);
    expect(
      r.results.filter((x) => x.formula === "identity").map((x) => `${x.kind}:${x.status}`),
    ).toEqual(["golden:pass", "golden:pass", "gradient:pass"]);
    const declined = r.results.filter((x) => x.formula === "fail");
    expect(declined.map((x) => x.status)).toEqual(["declined", "declined"]);
    expect(declined[0]!.message).toContain("reported an error for forward fail (request");
    expect(declined[0]!.message).toContain("formula fail cannot take x of shape [2, 3]");
    expect(r.ok).toBe(true);
    expect(exitCodeOf(r)).toBe(0);
  });
  test(
    "a crash: each request is a fault with the stderr tail, the program is " +
      "restarted and the run goes on",
    async () => {
      const r = await verifyProgram(
        fixture("crash.mjs", "--at", "forward"),
        fixtureCases(["identity", "fail"], 3),
        { maxRestarts: 1 },
      );
      const identity = r.results.filter((x) => x.formula === "identity");
      // case 0 crashes; case 1 finds the program stopped, restarts it, crashes it again; then no more restarts
      expect(identity.map((x) => `${x.kind}:${x.status}`)).toEqual([
        "golden:fault",
        "golden:fault",
        "golden:skipped",
        "gradient:skipped",
      ]);
      expect(identity[0]!.message).toContain(
        "exited with code 1 while computing forward identity (request 2)",
      );
      expect(identity[0]!.fault?.stderrTail).toContain(
        "crash: forward identity: index 7 is out of bounds for axis 0 with size 4",
      );
      expect(identity[2]!.message).toContain("was not restarted again (1 restart already)");
      expect(r.restarts).toBe(1);
      // the fixture declares no formula "fail": those cases are skipped as not declared
      expect(new Set(r.results.filter((x) => x.formula === "fail").map((x) => x.message))).toEqual(
        new Set(["the implementation does not declare fail"]),
      );
      expect(r.faulted).toBe(true);
      expect(exitCodeOf(r)).toBe(2);
      expect(formatVerifyReport(r)).toContain("index 7 is out of bounds");
    },
    60_000,
  );
  test("a program that answers and exits is restarted for the next request", async () => {
    // the fixture answers every request as a forward one: cases without gradients
    const r = await verifyProgram(
      fixture("crash.mjs", "--answer-first"),
      fixtureCases(["identity"], 3, false),
      { gradients: false },
    );
    // each program answers once and exits: a later request either finds it stopped (restart,
    // then pass) or races its exit (a fault saying so) — never a wrong value
    expect(r.results[0]!.status).toBe("pass");
    for (const x of r.results) {
      expect(["pass", "fault"]).toContain(x.status);
      if (x.status === "fault") expect(x.message).toContain("exited with code 0");
    }
    expect(r.restarts).toBeGreaterThanOrEqual(1);
    expect(r.notes.join("\n")).toContain("restarted the implementation after it was stopped");
  }, 60_000);
  test("a hang: a timeout fault per request, bounded by the restarts", async () => {
    const t0 = Date.now();
    const r = await verifyProgram(fixture("hang.mjs"), fixtureCases(["identity"]), {
      timeoutMs: 300,
      maxRestarts: 1,
      gradients: false,
    });
    expect(r.results.map((x) => x.status)).toEqual(["fault", "fault"]);
    expect(r.results[0]!.message).toContain(
      "did not answer forward identity (request 2) within 300 ms; the process was stopped",
    );
    expect(r.results[0]!.fault?.stderrTail).toContain("hang: started");
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);
  test("garbage on stdout: the offending line is quoted", async () => {
    const r = await verifyProgram(fixture("garbage.mjs"), fixtureCases(["identity"], 1), {
      gradients: false,
    });
    expect(r.results[0]!.status).toBe("fault");
    expect(r.results[0]!.message).toContain("printed a line on stdout that is not JSON");
    expect(r.results[0]!.message).toContain('"loading weights from /tmp/model.bin ... done"');
    expect(exitCodeOf(r)).toBe(2);
  }, 60_000);
  test("a malformed tensor: a fault, and the program keeps running (no restart)", async () => {
    const r = await verifyProgram(fixture("bad-tensor.mjs", "count"), fixtureCases(["identity"]), {
      gradients: false,
    });
    expect(r.results.map((x) => x.status)).toEqual(["fault", "fault"]);
    expect(r.results[0]!.message).toContain(
      "output y of formula identity: data has 11 numbers but shape [3, 4] needs 12",
    );
    expect(r.restarts).toBe(0);
  }, 60_000);
  test("an answer with a wrong id", async () => {
    const r = await verifyProgram(fixture("wrong-id.mjs"), fixtureCases(["identity"], 1), {
      gradients: false,
    });
    expect(r.results[0]!.status).toBe("fault");
    expect(r.results[0]!.message).toContain(
      "answered with id 1002 while waiting for forward identity (request 2)",
    );
  }, 60_000);
  test("the JSON report holds every fault with its stderr tail", async () => {
    const r = await verifyProgram(
      fixture("crash.mjs", "--at", "forward"),
      fixtureCases(["identity"], 1),
      { gradients: false, maxRestarts: 0 },
    );
    const j = JSON.parse(verifyReportToJSON(r)) as {
      ok: boolean;
      exit_code: number;
      results: Array<{ status: string; fault?: { message: string; stderr_tail: string | null } }>;
    };
    expect(j.ok).toBe(false);
    expect(j.exit_code).toBe(2);
    expect(j.results[0]!.status).toBe("fault");
    expect(j.results[0]!.fault!.stderr_tail).toContain("crash: forward identity");
  }, 60_000);
});

describe("reports", () => {
  test("JSON: the documented fields, non-finite numbers as strings", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const r = await verify(impl, {
      formulas: ["causal_mask", "attention"],
      dtype: "f64",
      gradients: false,
    });
    const j = JSON.parse(verifyReportToJSON(r));
    expect(Object.keys(j)).toEqual([
      "report",
      "schema_version",
      "ok",
      "exit_code",
      "implementation",
      "summary",
      "results",
      "first_divergence",
      "origins",
      "coverage",
      "notes",
      "restarts",
      "seed",
      "time_ms",
    ]);
    expect(j.ok).toBe(false);
    expect(j.implementation.name).toBe("mask off by one");
    for (const x of j.results)
      for (const k of ["kind", "formula", "case", "ok", "max_abs_err", "max_rel_err"])
        expect(x).toHaveProperty(k);
    expect(j.first_divergence.formula).toBe("causal_mask");
    expect(j.first_divergence.max_abs_err).toBe("Infinity");
    expect(Object.keys(j.first_divergence)).toEqual(
      expect.arrayContaining(["formula", "case", "tensor", "origin", "hints"]),
    );
    const localised = j.results.filter(
      (x: { formula: string; localisation?: unknown }) =>
        x.formula === "attention" && x.localisation !== undefined,
    );
    // two failing cases per formula and dtype are localised
    expect(localised.length).toBe(2);
    for (const x of localised) expect(x.localisation.divergence.formula).toBe("causal_mask");
  });
  test("the terminal table: plain without colour, ANSI with it", async () => {
    const r = await verify(referenceImplementation(), { formulas: ["relu"], gradients: false });
    const plain = formatVerifyReport(r);
    expect(plain).not.toContain("\x1b[");
    expect(plain).toMatch(
      /formula\s+golden\s+not run\s+max abs err\s+max rel err\s+budget\s+gradient\s+laws/,
    );
    expect(plain).toMatch(/relu\s+6\/6/);
    expect(plain).toContain("golden cases: 6 pass — OK");
    expect(formatVerifyReport(r, { colour: true })).toContain("\x1b[32m");
  });
});
