/**
 * A port states its conventions and is verified against them: a hand-written attention that
 * implements top-left or bottom-right causal masks and boolean or additive masks passes the
 * PyTorch cases of those conventions (n ≠ m, padding, fully masked rows) and declines the ones it
 * does not implement; the same port reading every request as top-left fails the bottom-right
 * cases, so stating the convention is what makes the check meaningful.
 */
import { describe, expect, test } from "vitest";
import {
  ImplementationError,
  type ForwardRequest,
  type Implementation,
} from "../autodiff/implementation.js";
import { Tensor, sizeOf } from "../autodiff/tensor.js";
import { countsOf } from "./report.js";
import { verify } from "./run.js";

/** softmax(s·QKᵀ + mask) V with a causal mask of either alignment; rows that see no key are 0. */
function attentionPort(name: string, opts: { alwaysTopLeft: boolean }): Implementation {
  return {
    name,
    formulas: ["attention"],
    backward: false,
    dtypes: ["f64", "f32"],
    async forward(req: ForwardRequest) {
      const c = req.config;
      for (const k of ["window", "softcap", "H_kv", "alibi"]) {
        const v = c[k];
        if (v !== undefined && v !== 0 && v !== false)
          throw new ImplementationError(
            `${name} reported an error for forward attention: ${k} is not implemented`,
            { kind: "declined" },
          );
      }
      // masks of the scores' own shape only: a broadcast mask is declined, not indexed as a full one
      if ((c["mask_shape"] ?? "scores") !== "scores")
        throw new ImplementationError(
          `${name} reported an error for forward attention: mask_shape ${String(c["mask_shape"])} is not implemented`,
          { kind: "declined" },
        );
      const { Q, K, V, mask } = req.inputs as Record<string, Tensor | undefined>;
      const n = Q!.shape.at(-2)!;
      const d = Q!.shape.at(-1)!;
      const m = K!.shape.at(-2)!;
      const dv = V!.shape.at(-1)!;
      const B = sizeOf(Q!.shape.slice(0, -2));
      const scale = typeof c["scale"] === "number" ? c["scale"] : 1 / Math.sqrt(d);
      const topLeft = opts.alwaysTopLeft || c["causal_align"] === "top_left";
      const y = new Float64Array(B * n * dv);
      const s = new Float64Array(m);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < n; i++) {
          let mx = -Infinity;
          for (let j = 0; j < m; j++) {
            let dot = 0;
            for (let k = 0; k < d; k++)
              dot += Q!.data[(b * n + i) * d + k]! * K!.data[(b * m + j) * d + k]!;
            let v = scale * dot;
            const mk = mask?.data[(b * n + i) * m + j];
            if (c["mask"] === "boolean" && mk === 0) v = -Infinity;
            if (c["mask"] === "additive") v += mk!;
            if (c["causal"] !== false && j > (topLeft ? i : i + m - n)) v = -Infinity;
            s[j] = v;
            mx = Math.max(mx, v);
          }
          if (mx === -Infinity) continue; // no visible key: a zero row
          let sum = 0;
          for (let j = 0; j < m; j++) sum += s[j] = Math.exp(s[j]! - mx);
          for (let j = 0; j < m; j++)
            for (let e = 0; e < dv; e++)
              y[(b * n + i) * dv + e] =
                y[(b * n + i) * dv + e]! + (s[j]! / sum) * V!.data[(b * m + j) * dv + e]!;
        }
      const out = new Tensor("f64", [...Q!.shape.slice(0, -1), dv], y);
      return { outputs: { y: Q!.dtype === "f32" ? out.to("f32") : out } };
    },
  };
}

/**
 * Mean cross-entropy over the positions whose target is not `ignore_index` (config, default −100),
 * or over all when `honourIgnore` is false.
 */
function crossEntropyPort(name: string, honourIgnore: boolean): Implementation {
  return {
    name,
    formulas: ["cross_entropy"],
    backward: false,
    dtypes: ["f64", "f32"],
    async forward(req: ForwardRequest) {
      const { logits: z, targets: t } = req.inputs as Record<string, Tensor>;
      const V = z!.shape.at(-1)!;
      const ignore =
        typeof req.config["ignore_index"] === "number" ? req.config["ignore_index"] : -100;
      // this port computes the plain mean only: other conventions are declined, not answered wrongly
      const c = req.config;
      if (
        (c["label_smoothing"] ?? 0) !== 0 ||
        (c["reduction"] ?? "mean") !== "mean" ||
        c["weight"] === true
      ) {
        throw new ImplementationError(`${name} computes the unweighted, unsmoothed mean only`, {
          kind: "declined",
        });
      }
      let sum = 0;
      let count = 0;
      for (let r = 0; r < t!.size; r++) {
        const target = t!.data[r]!;
        if (honourIgnore && target === ignore) continue;
        let mx = -Infinity;
        for (let j = 0; j < V; j++) mx = Math.max(mx, z!.data[r * V + j]!);
        let e = 0;
        for (let j = 0; j < V; j++) e += Math.exp(z!.data[r * V + j]! - mx);
        sum += mx + Math.log(e) - (z!.data[r * V + target] ?? 0);
        count++;
      }
      const loss = Tensor.scalar(sum / count, "f64");
      return { outputs: { loss: z!.dtype === "f32" ? loss.to("f32") : loss } };
    },
  };
}

/**
 * `port` verified on the float64 golden cases of `formula` (values only), and the status of its
 * case `{formula}/f64/{slug}`.
 */
async function verifyCases(port: Implementation, formula: string) {
  const r = await verify(port, { formulas: [formula], dtype: "f64", gradients: false });
  const status = (slug: string) =>
    r.results.find((x) => x.case === `${formula}/f64/${slug}`)?.status;
  return { r, status };
}

describe("a port verified by stating its cross-entropy convention", () => {
  test("ignore_index = −100 (and −1) pass when the port leaves those positions out of the mean", async () => {
    const { r, status } = await verifyCases(crossEntropyPort("port", true), "cross_entropy");
    expect(status("ignore_default_b2_n5_V7")).toBe("pass");
    expect(status("ignore_minus1_n6_V9")).toBe("pass");
    // every case it computes passes; the smoothing, summed, per-position and weighted cases are
    // declined (more than half of them, so the run itself does not pass: the decline limit)
    for (const x of r.results) {
      const plain = !/smooth|sum_|none_|weight/.test(x.case ?? "");
      expect([x.case, x.status]).toEqual([x.case, plain ? "pass" : "declined"]);
    }
    expect(r.results.filter((x) => x.status === "pass").length).toBeGreaterThanOrEqual(8);
  });
  test("a port that averages over every position fails the ignore_index cases", async () => {
    const { status } = await verifyCases(
      crossEntropyPort("no ignore_index", false),
      "cross_entropy",
    );
    expect(status("ignore_default_b2_n5_V7")).toBe("fail");
    expect(status("n7_V11")).toBe("pass");
  });
});

describe("a port verified by stating its attention conventions", () => {
  test(
    "top-left with n ≠ m, padding masks and additive masks pass; " +
      "conventions the port lacks are declined",
    async () => {
      const port = attentionPort("port", { alwaysTopLeft: false });
      const { r, status } = await verifyCases(port, "attention");
      expect(status("top_left_n3_m7_dk4")).toBe("pass");
      expect(status("top_left_b2_n6_m4_dk3")).toBe("pass");
      expect(status("mask_bool_padding_b2_n5_dk4")).toBe("pass");
      expect(status("mask_bool_causal_b2_h2_n4_m6_dk3")).toBe("pass");
      expect(status("mask_additive_b2_n4_m6_dk3")).toBe("pass");
      expect(status("n3_m8_dk4_causal_kvcache")).toBe("pass");
      expect(status("window3_n7_dk4")).toBe("declined");
      expect(status("softcap2_n5_dk4")).toBe("declined");
      const counts = countsOf(r.results, "golden");
      expect(counts.fail + counts.fault).toBe(0);
      expect(r.ok).toBe(true);
    },
  );

  test("the same port reading every causal request as top-left fails the bottom-right cases with n ≠ m", async () => {
    const port = attentionPort("top-left only", { alwaysTopLeft: true });
    const { r, status } = await verifyCases(port, "attention");
    expect(status("n3_m8_dk4_causal_kvcache")).toBe("fail");
    expect(status("top_left_n3_m7_dk4")).toBe("pass");
    // n = m: the alignments agree
    expect(status("n7_dk4_causal")).toBe("pass");
    expect(r.ok).toBe(false);
  });
});
