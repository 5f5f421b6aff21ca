/**
 * Test support: the Python the tests run the examples and golden scripts with, and whether it has
 * the modules a test needs (a test without them is skipped, saying why).
 */
import { execFileSync } from "node:child_process";

/** The interpreter the tests start Python programs with. */
export const PYTHON = "/usr/bin/python3";

/** Whether {@link PYTHON} can import `modules` (`"numpy"`, `"torch, numpy"`). */
export function pythonCanImport(modules: string): boolean {
  try {
    execFileSync(PYTHON, ["-c", `import ${modules}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
