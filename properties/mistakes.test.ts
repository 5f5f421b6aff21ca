/** The named mistakes do what their names say, checked against the registry's own formulas. */
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { formulaGraph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { Tensor } from "../autodiff/tensor.js";
import { rewriteGraph } from "../reference/rewritten.js";
import { causalVisibility } from "./spec-values.js";
import { headsInterleaved, maskShift } from "./mistakes.js";

describe("shiftedMask", () => {
  // with no window each row sees a prefix of the keys; the shift moves its end by s. A row that
  // sees none or all of them has its boundary outside [0, m): only a bound on the shifted count
  test.each(["bottom_right", "top_left"])("%s: the rows see s more keys, a prefix", (align) => {
    let exact = 0;
    for (const [n, m] of [
      [3, 3],
      [2, 5],
      [5, 2],
      [4, 6],
    ] as const) {
      const mask = causalVisibility(n, m, { causal_align: align });
      for (const s of [-2, -1, 1, 2]) {
        const shifted = causalVisibility(n, m, { causal_align: align }, s);
        for (let i = 0; i < n; i++) {
          const seen = mask.lastVisible(i) + 1;
          const got = shifted.lastVisible(i) + 1;
          const where = `${align} n=${n} m=${m} s=${s} row ${i}`;
          for (let j = 0; j < m; j++) expect(shifted.visible(i, j), where).toBe(j < got);
          if (seen > 0 && seen < m) {
            expect(got, where).toBe(Math.min(m, Math.max(0, seen + s)));
            exact++;
          } else if (seen === 0) expect(got, where).toBeLessThanOrEqual(Math.max(0, s));
          else expect(got, where).toBeGreaterThanOrEqual(m + Math.min(0, s));
        }
      }
    }
    expect(exact).toBeGreaterThan(20);
  });

  test("leaves a sliding-window mask alone", () => {
    const g = formulaGraph("causal_mask", { n: 4, m: 4, window: 2 });
    expect(rewriteGraph(g, maskShift(1))).toBe(g);
  });
});

describe("headsInterleaved", () => {
  test("split then merge is still the identity, but head h holds columns h, h + H, …", () => {
    const H = 2;
    const dk = 3;
    const x = Tensor.from(
      Array.from({ length: 2 * H * dk }, (_, i) => i),
      "f64",
      [2, H * dk],
    );
    const run = (f: string, cfg: Record<string, number>, inputs: Record<string, Tensor>) =>
      evaluate(rewriteGraph(formulaGraph(f, cfg), headsInterleaved), inputs, { dtype: "f64" }).y!;
    const split = run("split_heads", { H }, { x });
    // row 0 of x is 0 … 5: interleaved, head 0 takes columns 0, 2, 4 and head 1 columns 1, 3, 5
    expect(Array.from(split.data.subarray(0, dk))).toEqual([0, 2, 4]);
    expect(Array.from(split.data.subarray(2 * dk, 3 * dk))).toEqual([1, 3, 5]);
    const merged = run("merge_heads", {}, { x: split });
    expect(Array.from(merged.data)).toEqual(Array.from(x.data));
  });
});
