/**
 * Capabilities: the `hello` field is validated, requests outside a declared capability are not
 * sent, declines filter law cases instead of stopping the law, gradient checks look past
 * declined cases, coverage is counted per formula and kind, and `strict` fails a declared
 * formula left with no check.
 */
import { describe, expect, test } from "vitest";
import { outsideCapability } from "../autodiff/capabilities.js";
import { referenceImplementation } from "../reference/implementation.js";
import { checkHello } from "./protocol.js";
import { BUNDLED_CASES, loadCases, verify } from "./run.js";
import { oneConfigurationCapabilities, restrictedImplementation } from "./planted.testing.js";

describe("hello capabilities", () => {
  const hello = {
    name: "n",
    formulas: ["layer_norm", "attention"],
    backward: true,
    dtypes: ["f64", "f32"],
  };

  test("a well-formed declaration is kept", () => {
    const caps = {
      layer_norm: { config: { eps: [1e-5] } },
      attention: { dtypes: ["f32"], dims: { m: { equals: "n" }, n: { max: 64 } } },
    };
    expect(checkHello({ ...hello, capabilities: caps }, "hello").capabilities).toEqual(caps);
    expect(checkHello(hello, "hello").capabilities).toBeUndefined();
  });

  test("each malformed declaration is refused with the field named", () => {
    expect(() => checkHello({ ...hello, capabilities: { gelu: {} } }, "hello")).toThrow(
      'hello: "capabilities" names "gelu", not in "formulas"',
    );
    expect(() =>
      checkHello({ ...hello, capabilities: { layer_norm: { eps: [1] } } }, "hello"),
    ).toThrow('hello: "capabilities".layer_norm has an unknown field "eps"');
    expect(() =>
      checkHello({ ...hello, capabilities: { layer_norm: { config: { eps: [] } } } }, "hello"),
    ).toThrow("config.eps must be a non-empty list");
    expect(() =>
      checkHello({ ...hello, capabilities: { layer_norm: { dtypes: ["i32"] } } }, "hello"),
    ).toThrow("dtypes must be a non-empty list of dtypes");
    expect(() =>
      checkHello({ ...hello, capabilities: { attention: { dims: { n: { max: "8" } } } } }, "hello"),
    ).toThrow('"max" must be a finite number');
  });
});

describe("outsideCapability", () => {
  // the bundled golden cases are the independent source of configurations and sizes
  const cases = loadCases([BUNDLED_CASES]).filter((c) => c.meta.dtype === "f64");
  const caps = oneConfigurationCapabilities();

  test("judges each golden case by its own configuration and sizes", () => {
    const verdict = (name: string) => {
      const c = cases.find((x) => x.meta.case === name)!;
      return outsideCapability(
        { capabilities: caps },
        { formula: c.meta.formula, config: c.meta.config, dtype: "f64", inputs: c.inputs },
      );
    };
    expect(verdict("layer_norm/f64/n7_d12")).toBeUndefined();
    expect(verdict("layer_norm/f64/n4_d6_eps0.1")).toMatch(
      /eps ∈ \{0\.00001\} only, not eps = 0\.1|eps ∈ \{1e-5\} only, not eps = 0\.1/,
    );
    expect(verdict("attention/f64/n7_dk4_causal")).toBeUndefined();
    expect(verdict("attention/f64/n1_m7_dk4_causal")).toBe(
      "attention is declared for m = n only, not m = 7 with n = 1",
    );
    expect(verdict("gpt/f64/gqa_V64_d16_h4_kv2_L2_n8")).toMatch(
      /not activation = gelu|not H_kv = 2/,
    );
    expect(verdict("gpt/f64/gpt2_pre_ln_V64_d16_h4_L2_n8")).toBeUndefined();
    expect(
      outsideCapability(referenceImplementation(), {
        formula: "layer_norm",
        config: { eps: 0.1 },
        dtype: "f64",
        dims: {},
      }),
    ).toBeUndefined();
  });
});

describe("a port that supports one configuration per formula", () => {
  const formulas = ["softmax", "attention", "mha", "layer_norm", "ffn"];

  test(
    "gets its supported gradient checks and at least 90 % of the applicable law × formula pairs",
    { timeout: 300_000 },
    async () => {
      const r = await verify(restrictedImplementation(), {
        properties: true,
        lawRuns: 3,
        dtype: "f64",
        formulas,
      });
      expect(r.ok).toBe(true);
      // every formula with a float64 golden case inside the capability got its gradient checked
      const grads = r.results.filter((x) => x.kind === "gradient");
      for (const f of formulas) expect(grads.find((g) => g.formula === f)?.status, f).toBe("pass");
      expect(r.results.some((x) => x.kind === "golden" && x.outside === true)).toBe(true);
      expect(r.results.some((x) => x.status === "declined")).toBe(false);
      const pairs = r.coverage!.lawPairs;
      expect(pairs.applicable).toBeGreaterThan(20);
      expect(pairs.ran / pairs.applicable).toBeGreaterThanOrEqual(0.9);
    },
  );

  test(
    "undeclared, its limits show up as declines that filter the laws' cases instead of stopping them",
    { timeout: 300_000 },
    async () => {
      const r = await verify(restrictedImplementation(undefined, { declare: false }), {
        properties: true,
        gradients: false,
        lawRuns: 3,
        dtype: "f64",
        formulas: ["layer_norm", "ffn"],
      });
      expect(r.ok).toBe(true);
      const laws = r.results.filter((x) => x.kind === "property");
      const declinedCases = laws.reduce(
        (s, x) => s + Object.values(x.law?.coverage ?? {}).reduce((t, c) => t + c.declined, 0),
        0,
      );
      expect(declinedCases).toBeGreaterThan(0);
      expect(r.coverage!.lawPairs.ran).toBeGreaterThan(0);
      for (const f of ["layer_norm", "ffn"])
        expect(r.coverage!.formulas.find((c) => c.formula === f)!.property.ran, f).toBeGreaterThan(
          0,
        );
    },
  );
});

describe("strict", () => {
  test("a declared formula left with no check of some kind fails a strict run and is named", async () => {
    // eps = 0.5 is in no golden case of layer_norm: no golden or gradient check can run
    const caps = { layer_norm: { config: { eps: [0.5] } } };
    const impl = restrictedImplementation(caps);
    const lenient = await verify(impl, { formulas: ["layer_norm", "softmax"], dtype: "f64" });
    const strict = await verify(impl, {
      formulas: ["layer_norm", "softmax"],
      dtype: "f64",
      strict: true,
    });
    expect(lenient.ok).toBe(true);
    expect(strict.ok).toBe(false);
    expect(strict.unchecked).toHaveLength(1);
    expect(strict.unchecked![0]).toMatch(/^layer_norm: no golden, no gradient check ran/);
    const ln = strict.coverage!.formulas.find((f) => f.formula === "layer_norm")!;
    expect(ln.golden.ran).toBe(0);
    expect(ln.golden.outside).toBeGreaterThan(0);
    expect(strict.coverage!.formulas.find((f) => f.formula === "softmax")!.unchecked).toEqual([]);
  });
});
