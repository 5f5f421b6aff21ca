/**
 * Test support: the bundled golden cases, computed by an implementation and checked the way the
 * verify run checks them (verify/run.ts), for the tests of localisation and diagnosis.
 */
import { join } from "node:path";
import type { ForwardRequest, ForwardResult, Implementation } from "../autodiff/implementation.js";
import type { NamedTensors } from "../autodiff/tensor.js";
import { loadCase } from "../golden/cases-io.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { compareCase } from "../golden/compare.js";
import type { CaseReport } from "../golden/compare.js";
import { failingCase, localise } from "./localise.js";
import type { Localisation } from "./localise.js";
import { BUNDLED_CASES } from "./run.js";

/** A bundled golden case by name: `golden("mha/f64/n7_d12_h3_causal")`. */
export function golden(name: string): GoldenCase {
  return loadCase(join(BUNDLED_CASES, `${name}.safetensors`));
}

/**
 * `c`'s forward request answered by `impl`: everything the answer held (outputs and
 * intermediates), and the golden check of the case's outputs among it.
 */
export async function forwardChecked(
  impl: Implementation,
  c: GoldenCase,
): Promise<{ actual: NamedTensors; report: CaseReport }> {
  const m = c.meta;
  const actual = (
    await impl.forward({
      formula: m.formula,
      config: { ...m.config, dtype: m.dtype },
      inputs: c.inputs,
    })
  ).outputs;
  const report = compareCase(c, {
    outputs: Object.fromEntries(Object.entries(actual).filter(([k]) => k in c.outputs)),
  });
  return { actual, report };
}

/**
 * Localises `c` as `impl` computes it, the parts' requests sent through `forward`; `ok` is the
 * golden check's verdict on the case's outputs.
 */
export async function localiseChecked(
  impl: Implementation,
  c: GoldenCase,
  forward: (req: ForwardRequest) => Promise<ForwardResult> = (r) => impl.forward(r),
): Promise<{ ok: boolean; loc: Localisation }> {
  const { actual, report } = await forwardChecked(impl, c);
  const loc = await localise({
    ...failingCase(c, report),
    forward,
    declares: (f, d) => impl.formulas.includes(f) && impl.dtypes.includes(d),
    actual,
    expected: c.outputs,
  });
  return { ok: report.ok, loc };
}
