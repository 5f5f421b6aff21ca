/**
 * Localisation on implementations with one mistake planted consistently through every formula
 * that contains it (verify/planted.testing.ts), on committed golden cases: the first divergence must be
 * the planted formula, found where it first acts, with the right hint.
 */
import { describe, expect, test } from "vitest";
import { ImplementationError } from "../autodiff/implementation.js";
import type { ForwardRequest, Implementation } from "../autodiff/implementation.js";
import type { GoldenCase } from "../golden/cases-io.js";
import { referenceImplementation } from "../reference/implementation.js";
import { golden, localiseChecked } from "./cases.testing.js";
import type { Localisation } from "./localise.js";
import {
  plantedGraphImplementation,
  plantGeluTanh,
  plantMaskShift,
  plantPrePlacement,
  plantScaleDModel,
} from "./planted.testing.js";
import { knownConfig, ReferenceTrace } from "./trace.js";

async function localiseCase(
  impl: Implementation,
  c: GoldenCase,
  forward?: (req: ForwardRequest) => ReturnType<Implementation["forward"]>,
): Promise<Localisation> {
  const { ok, loc } = await localiseChecked(impl, c, forward);
  expect(ok).toBe(false);
  return loc;
}

describe("the reference trace", () => {
  test(
    "reads a configuration as the reference does: defaults filled, request " +
      "keys dropped, a misspelt key refused",
    () => {
      expect(knownConfig("layer_norm", { dtype: "f32" })).toMatchObject({ eps: 1e-5, bias: true });
      expect(knownConfig("block_pre_ln", { placement: "pre", H: 2 })["H"]).toBe(2);
      expect(() => knownConfig("attention", { causl: false })).toThrow(
        /has no hyperparameter "causl"/,
      );
    },
  );
  const c = golden("gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8");
  const trace = ReferenceTrace.build("gpt", c.meta.config, c.inputs, "f64");
  test("sites in pipeline order, named as docs/NAMES.md names them", () => {
    expect(trace.root.children.map((s) => s.name)).toEqual([
      "embedding",
      "positional_learned",
      "h.0",
      "h.1",
      "ln_f",
      "logits",
      "cross_entropy",
    ]);
    const h0 = trace.root.children[2]!;
    expect(h0.children.map((s) => s.name)).toEqual([
      "layer_norm[ln_1]",
      "mha",
      "layer_norm[ln_2]",
      "ffn",
    ]);
    const mha = h0.children[1]!;
    expect(mha.children.map((s) => s.name)).toEqual([
      "linear[W_Q]",
      "split_heads#0",
      "linear[W_K]",
      "split_heads#1",
      "linear[W_V]",
      "split_heads#2",
      "attention",
      "merge_heads",
      "linear[W_O]",
    ]);
    const mask = mha.children.find((s) => s.name === "attention")!.children[0]!;
    expect(mask.path).toEqual(["gpt", "h.0", "mha", "attention", "causal_mask"]);
    // dim hyperparameters given as dim expressions inside the graph become sizes
    // (with the mask's own conventions at their defaults: bottom-right alignment, no window)
    expect(mask.config).toEqual({ n: 8, m: 8, causal_align: "bottom_right", window: 0 });
  });
  test("values: the root equals the reference's answer, and block 1 reads block 0's output", async () => {
    const ref = (
      await referenceImplementation().forward({
        formula: "gpt",
        config: { ...c.meta.config, dtype: "f64" },
        inputs: c.inputs,
      })
    ).outputs;
    const logits = trace.value(trace.root.outputs["logits"]!);
    expect(Array.from(logits.data)).toEqual(Array.from(ref["logits"]!.data));
    const [h0, h1] = [trace.root.children[2]!, trace.root.children[3]!];
    expect(Array.from(trace.argValues(h1)["x"]!.data)).toEqual(
      Array.from(trace.value(h0.outputs["y"]!).data),
    );
  });
  test("a float32 case: request values are float32, exact values float64 of the same inputs", () => {
    const c32 = golden("mha/f32/b2_n5_d8_h2_causal");
    const t = ReferenceTrace.build("mha", c32.meta.config, c32.inputs, "f32");
    const y = t.root.outputs["y"]!;
    expect(t.value(y, "request").dtype).toBe("f32");
    expect(t.value(y, "f64").dtype).toBe("f64");
  });
});

describe("localising a planted mistake", () => {
  test("an off-by-one causal mask inside gpt is found in h.0's attention, as the mask itself", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const loc = await localiseCase(impl, golden("gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8"));
    const d = loc.divergence!;
    expect(d.formula).toBe("causal_mask");
    expect(d.path).toEqual(["gpt", "h.0", "mha", "attention", "causal_mask"]);
    expect(d.tensor).toBe("h.0/mha/attention/causal_mask:y");
    expect(d.origin).toBe("local");
    expect(d.how).toBe("isolated");
    expect(d.hints.map((h) => h.id)).toContain("mask-off-by-one");
    // what came before the first block matched; the block, its MHA and attention diverged locally
    const status = (t: string) => loc.steps.find((s) => s.tensor === t)?.status;
    expect(status("embedding:y")).toBe("match");
    expect(status("positional_learned:y")).toBe("match");
    expect(status("h.0/layer_norm[ln_1]:y")).toBe("match");
    expect(status("h.0:y")).toBe("diverges");
    expect(status("h.0/mha/linear[W_Q]:y")).toBe("match");
    expect(status("h.0/mha/attention:y")).toBe("diverges");
  });
  test("the same in float32", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const loc = await localiseCase(impl, golden("block_post_ln/f32/n7_d12_h3"));
    expect(loc.divergence?.formula).toBe("causal_mask");
    expect(loc.divergence?.path).toEqual(["block_post_ln", "mha", "attention", "causal_mask"]);
  });
  test("GELU's tanh form inside a block's FFN", async () => {
    const impl = plantedGraphImplementation("gelu tanh", plantGeluTanh);
    const loc = await localiseCase(impl, golden("block/f64/post_n7_d12_h3"));
    expect(loc.divergence?.formula).toBe("gelu");
    expect(loc.divergence?.path).toEqual(["block", "ffn", "gelu"]);
    expect(loc.divergence?.hints.map((h) => [h.id, h.evidence])).toContainEqual([
      "gelu-tanh",
      "match",
    ]);
  });
  test("the attention scale 1/√d_model inside mha: the attention diverges, its parts do not", async () => {
    const impl = plantedGraphImplementation("scale", plantScaleDModel);
    const loc = await localiseCase(impl, golden("mha/f64/n7_d12_h3_causal"));
    const d = loc.divergence!;
    expect(d.formula).toBe("attention");
    expect(d.explanation).toContain("its parts causal_mask:y, softmax:y match in isolation");
    expect(d.hints.map((h) => h.id)).toContain("attention-scale");
  });
  test("every part right, the composition wrong: the block itself, with the placement hint", async () => {
    const impl = plantedGraphImplementation("pre placement", plantPrePlacement);
    const loc = await localiseCase(impl, golden("block/f64/post_n7_d12_h3"));
    const d = loc.divergence!;
    expect(d.formula).toBe("block");
    expect(d.how).toBe("output");
    expect(d.explanation).toContain(
      "every part of block matches in isolation (mha, layer_norm[ln_1], ffn, layer_norm[ln_2])",
    );
    expect(d.hints.map((h) => h.id)).toContain("placement");
  });
  test("parts the implementation does not declare are named, not checked", async () => {
    const planted = plantedGraphImplementation("mask off by one", plantMaskShift(1), [
      "mha",
      "linear",
    ]);
    const loc = await localiseCase(planted, golden("mha/f64/n7_d12_h3_causal"));
    expect(loc.steps.find((s) => s.tensor === "attention")?.status).toBe("not declared");
    expect(loc.divergence?.formula).toBe("mha");
    expect(loc.divergence?.explanation).toContain("not checked: split_heads#0 (not declared)");
  });
});

describe("implementation errors while localising", () => {
  test("an error answer for a part is recorded as declined and the search goes on", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    const forward = async (req: ForwardRequest) => {
      if (req.formula === "linear")
        throw new ImplementationError(
          `implementation \`x\` reported an error for forward linear (request 9): linear is not supported here`,
          { kind: "declined" },
        );
      return impl.forward(req);
    };
    const loc = await localiseCase(impl, golden("mha/f64/n7_d12_h3_causal"), forward);
    // the search stops at the first diverging part (attention), before linear[W_O]
    expect(loc.steps.filter((s) => s.status === "declined").map((s) => s.tensor)).toEqual([
      "linear[W_Q]",
      "linear[W_K]",
      "linear[W_V]",
    ]);
    expect(loc.divergence?.formula).toBe("causal_mask");
  });
  test("a program that was stopped cuts the search short with the fault", async () => {
    const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
    let calls = 0;
    const forward = async (req: ForwardRequest) => {
      if (++calls > 2)
        throw new ImplementationError(
          "implementation `x`: cannot send forward mha (request 5): " +
            "implementation was stopped after it exited: exited with code 1",
          { kind: "stopped" },
        );
      return impl.forward(req);
    };
    const loc = await localiseCase(impl, golden("block/f64/post_n7_d12_h3"), forward);
    expect(loc.fault?.message).toContain("was stopped after it exited");
    expect(loc.requests).toBe(3);
  });
  test(
    "the kind decides, not the text: a decline quoting the stop phrase is " +
      "declined, a fault quoting the decline phrase is a failed step",
    async () => {
      const impl = plantedGraphImplementation("mask off by one", plantMaskShift(1));
      const forward = async (req: ForwardRequest) => {
        if (req.formula === "linear")
          throw new ImplementationError(
            "implementation `x` reported an error for forward linear (request 9): " +
              "implementation was stopped after a timeout",
            { kind: "declined" },
          );
        if (req.formula === "split_heads")
          throw new ImplementationError(
            "implementation `x` exited with code 1\nstderr tail:\nx reported an error for forward",
            { kind: "crash" },
          );
        return impl.forward(req);
      };
      const loc = await localiseCase(impl, golden("mha/f64/n7_d12_h3_causal"), forward);
      expect(loc.fault).toBeUndefined();
      expect(loc.steps.filter((s) => s.status === "declined").map((s) => s.tensor)).toEqual([
        "linear[W_Q]",
        "linear[W_K]",
        "linear[W_V]",
      ]);
      expect(
        loc.steps.filter((s) => s.formula === "split_heads").map((s) => s.status),
      ).not.toContain("declined");
    },
  );
});
