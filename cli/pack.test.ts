/**
 * specformer as a package, the way a user gets it: `npm pack` (which builds dist/ through
 * `prepare`), installed into an empty folder without network (the runtime dependencies are linked
 * from this checkout's node_modules, so `npm install --offline` finds them satisfied), then an ESM
 * script and a type-checked TypeScript consumer use the public API, and `npx specformer
 * --version` runs the compiled command.
 */
import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";

const ROOT = join(__dirname, "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  dependencies: Record<string, string>;
};
const sh = (cmd: string, args: string[], cwd: string): string =>
  execFileSync(cmd, args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      SPECFORMER_SOURCE: "",
      npm_config_audit: "false",
      npm_config_fund: "false",
      npm_config_update_notifier: "false",
    },
  });

let dir = "";
let packed: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "specformer-pack-"));
  const out = JSON.parse(sh("npm", ["pack", "--json", "--pack-destination", dir], ROOT)) as {
    filename: string;
    files: { path: string }[];
  }[];
  packed = out[0]!.files.map((f) => f.path);
  const consumer = join(dir, "consumer");
  mkdirSync(join(consumer, "node_modules"), { recursive: true });
  writeFileSync(
    join(consumer, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  for (const dep of Object.keys(pkg.dependencies))
    symlinkSync(join(ROOT, "node_modules", dep), join(consumer, "node_modules", dep));
  sh("npm", ["install", "--offline", "--ignore-scripts", join(dir, out[0]!.filename)], consumer);
  // the consumer's own dev dependency (npm install prunes what its package.json does not name)
  mkdirSync(join(consumer, "node_modules", "@types"), { recursive: true });
  symlinkSync(
    join(ROOT, "node_modules", "@types", "node"),
    join(consumer, "node_modules", "@types", "node"),
  );
}, 600_000);

describe("npm pack", () => {
  test(
    "ships the compiled library, the bin, the goldens and the GPT-2 ranks, " +
      "and no tests, bench, CI or TypeScript sources",
    () => {
      expect(packed).toContain("dist/index.js");
      expect(packed).toContain("dist/index.d.ts");
      expect(packed).toContain("dist/cli/main.js");
      expect(packed).toContain("bin/specformer.mjs");
      expect(packed).toContain("golden/manifest.json");
      expect(packed).toContain("reference/data/gpt2-ranks.json");
      expect(packed).toContain("reference/data/GPT2-RANKS-LICENSE.md");
      expect(
        packed.filter((p) => p.startsWith("golden/cases/") && p.endsWith(".safetensors")).length,
      ).toBeGreaterThan(50);
      const unwanted = packed.filter((p) =>
        /\.test\.|\.test-d\.|^bench\/|^dist\/bench\/|^\.ci\/|^examples\/|\/fixtures\/|(?<!\.d)\.ts$/.test(
          p,
        ),
      );
      expect(unwanted).toEqual([]);
    },
  );
});

describe("the installed package", () => {
  test(
    "an ESM script imports 'specformer', evaluates, differentiates and " +
      "verifies the reference on the bundled goldens",
    () => {
      const consumer = join(dir, "consumer");
      writeFileSync(
        join(consumer, "use.mjs"),
        `import { formulaNames, formulaGraph, evaluate, vjp, Tensor, ` +
          `referenceImplementation, verify, BUNDLED_CASES, packageVersion } from ` +
          `"specformer";
const x = Tensor.from([[1, 2, 3]]);
const y = evaluate(formulaGraph("softmax"), { x }).y;
const g = vjp(formulaGraph("softmax"), { x }, { y: Tensor.from([[1, 0, 0]]) }).grads;
const report = await verify(referenceImplementation(), { formulas: ["softmax"], gradients: false });
console.log(JSON.stringify({ version: packageVersion(), formulas: ` +
          `formulaNames().length, sum: [...y.data].reduce((a, b) => a + b, 0), ` +
          `grads: Object.keys(g), cases: report.results.filter((r) => r.kind === ` +
          `"golden").length, ok: report.ok, bundled: BUNDLED_CASES }));
`,
      );
      const r = JSON.parse(sh(process.execPath, ["use.mjs"], consumer)) as {
        version: string;
        formulas: number;
        sum: number;
        grads: string[];
        cases: number;
        ok: boolean;
        bundled: string;
      };
      expect(r.version).toBe(pkg.version);
      expect(r.formulas).toBeGreaterThan(20);
      expect(r.sum).toBeCloseTo(1, 12);
      expect(r.grads).toEqual(["x"]);
      expect(r.cases).toBeGreaterThan(0);
      expect(r.ok).toBe(true);
      expect(r.bundled).toBe(join(consumer, "node_modules", "specformer", "golden", "cases"));
    },
    120_000,
  );

  test(
    "a TypeScript consumer type-checks against the declarations (a wrong " +
      "call does not) and its output runs under plain node",
    () => {
      const consumer = join(dir, "consumer");
      writeFileSync(
        join(consumer, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "NodeNext",
            moduleResolution: "NodeNext",
            strict: true,
            outDir: "out",
            types: ["node"],
            skipLibCheck: true,
          },
          include: ["*.ts"],
        }),
      );
      writeFileSync(
        join(consumer, "use.ts"),
        `import { formulaGraph, evaluate, Tensor, getFormula, renderFormula, ` +
          `type Implementation, type VerifyReport, verify, referenceImplementation ` +
          `} from "specformer";
const impl: Implementation = referenceImplementation();
const t: Tensor = Tensor.from([[0.5, -1]]);
const out = evaluate(formulaGraph("layer_norm", { eps: 1e-5 }), { x: ` +
          `t, gamma: Tensor.from([1, 1]), beta: Tensor.from([0, 0]) ` +
          `});
const report: VerifyReport = await verify(impl, { formulas: ["layer_norm"], dtype: "f64", gradients: false });
console.log(JSON.stringify({ name: getFormula("layer_norm").name, ` +
          `latex: renderFormula("layer_norm").latex.length > 0, y: ` +
          `Object.keys(out), ok: report.ok }));
`,
      );
      // the declarations carry the types: a wrong argument is a compile error (one tsc run checks
      // both files; it still emits use.js, which then runs under plain node)
      writeFileSync(
        join(consumer, "wrong.ts"),
        `import { verify } from "specformer";\nawait verify("not an implementation");\n`,
      );
      const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
      let diagnostics = "";
      try {
        sh(process.execPath, [tsc, "-p", "tsconfig.json"], consumer);
      } catch (e) {
        diagnostics = String((e as { stdout: string }).stdout);
      }
      expect(diagnostics).toMatch(/^wrong\.ts\(2,\d+\): error TS2345/m);
      expect(
        diagnostics.split("\n").filter((l) => /error TS/.test(l) && !l.startsWith("wrong.ts")),
      ).toEqual([]);
      const r = JSON.parse(sh(process.execPath, [join("out", "use.js")], consumer)) as {
        name: string;
        latex: boolean;
        y: string[];
        ok: boolean;
      };
      expect(r).toEqual({ name: "layer_norm", latex: true, y: ["y"], ok: true });
    },
    180_000,
  );

  test("npx specformer --version prints the package's version (compiled JavaScript, no tsx)", () => {
    const consumer = join(dir, "consumer");
    expect(
      sh("npx", ["--offline", "--no-install", "specformer", "--version"], consumer).trim(),
    ).toBe(pkg.version);
    expect(readdirSync(join(consumer, "node_modules"))).not.toContain("tsx");
  }, 60_000);
});
