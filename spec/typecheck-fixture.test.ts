/**
 * The type tests must be able to fail: compile a fixture with a shape error using the same
 * TypeScript and compiler options, and assert the compiler rejects it at that line.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { expect, test } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

test("a mismatched matmul fails to compile", () => {
  let output = "";
  let failed = false;
  try {
    execFileSync(
      process.execPath,
      [
        join(root, "node_modules/typescript/bin/tsc"),
        "--noEmit",
        "--strict",
        "--noUncheckedIndexedAccess",
        "--module",
        "NodeNext",
        "--moduleResolution",
        "NodeNext",
        "--target",
        "ES2022",
        "--skipLibCheck",
        "--types",
        "node",
        join(root, "spec/fixtures/must-not-compile.ts"),
      ],
      { cwd: root, encoding: "utf8", stdio: "pipe" },
    );
  } catch (e) {
    failed = true;
    output = String((e as { stdout?: string }).stdout ?? "");
  }
  expect(failed).toBe(true);
  expect(output).toMatch(/must-not-compile\.ts\(6,\d+\): error TS2769/);
}, 60_000);
