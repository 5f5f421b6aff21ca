/**
 * The reference against every PyTorch golden case in the manifest (a new case is covered without
 * new test code): outputs and gradients within the case's stated tolerance; float64 cases also
 * within 1e-9 of the tensor's scale unless the case itself states a looser (measured) bound;
 * float32 cases run in float32 mode.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { loadCase, loadManifest } from "./cases-io.js";
import { compareCase, formatReport } from "./compare.js";
import { referenceImplementation } from "../reference/implementation.js";
import { supportsBackward } from "../autodiff/implementation.js";

const dir = join(import.meta.dirname);
const manifest = loadManifest(dir);
const impl = referenceImplementation();

describe("the reference matches every golden case", () => {
  test("the manifest is not empty and every file is listed", () => {
    expect(manifest.cases.length).toBeGreaterThan(300);
  });
  test.each(manifest.cases.map((c) => [c.case, c.file] as const))("%s", async (_name, file) => {
    const g = loadCase(join(dir, file));
    const config = { ...g.meta.config, dtype: g.meta.dtype };
    const { outputs } = await impl.forward({ formula: g.meta.formula, config, inputs: g.inputs });
    const actual: { outputs: typeof outputs; grads?: typeof outputs } = { outputs: {} };
    for (const k of Object.keys(g.outputs))
      (actual.outputs as Record<string, unknown>)[k] = outputs[k];
    if (Object.keys(g.grads).length > 0 && supportsBackward(impl, g.meta.formula)) {
      actual.grads = (
        await impl.backwardPass!({
          formula: g.meta.formula,
          config,
          inputs: g.inputs,
          cotangents: g.cotangents,
        })
      ).grads;
    }
    const report = compareCase(g, actual);
    expect(report.ok, formatReport(report)).toBe(true);
    if (g.meta.dtype === "f64") {
      for (const t of report.tensors) {
        const e = (t.name.startsWith("out.") ? g.outputs : g.grads)[
          t.name.slice(t.name.indexOf(".") + 1)
        ]!;
        let scale = 1;
        for (let i = 0; i < e.size; i++)
          if (Number.isFinite(e.data[i]!)) scale = Math.max(scale, Math.abs(e.data[i]!));
        const stated = g.meta.tolerance[t.name]?.rtol ?? 0;
        expect(
          t.maxAbsError / scale,
          `${t.name}: ${t.maxAbsError} at scale ${scale}`,
        ).toBeLessThanOrEqual(Math.max(1e-9, stated));
      }
    }
  });
});
