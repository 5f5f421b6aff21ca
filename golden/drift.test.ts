import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { pythonCanImport } from "../io/python.testing.js";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const python = "/usr/bin/python3";
const hasNumpy = pythonCanImport("numpy");

describe("golden/check_drift.py", () => {
  it.skipIf(!hasNumpy)(
    "plants each kind of violation in a tiny golden folder and reports it (--self-test)",
    () => {
      const r = spawnSync(python, [`${here}check_drift.py`, "--self-test"], {
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(r.stdout).toContain("drift scenarios passed");
      expect(r.stdout).toMatch(/\d+ examples, 0 failures/);
      expect(r.status).toBe(0);
    },
  );
});
