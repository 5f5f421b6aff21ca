/**
 * Type-level tests of the configuration types derived from the declarations (spec/configs.ts):
 * the right keys with the right value types, and a misspelt key or a wrong value rejected at
 * compile time. Checked by the typecheck step (`tsc --noEmit`); spec/typecheck-fixture.test.ts
 * proves that step fails on a type error.
 */
import { describe, expectTypeOf, test } from "vitest";
import type { FormulaConfigInputs, FormulaConfigs, FormulaName } from "./configs.js";
import { resolveConfigOf } from "./configs.js";
import type { GPTConfig } from "../reference/model.js";

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

describe("derived configuration types", () => {
  test("layer_norm: exactly its declared keys, defaults present", () => {
    type C = FormulaConfigs["layer_norm"];
    type _keys = Expect<Equal<keyof C, "eps" | "bias" | "normalized_axes">>;
    expectTypeOf<C["eps"]>().toEqualTypeOf<number>();
    expectTypeOf<C["bias"]>().toEqualTypeOf<boolean>();
    const c = resolveConfigOf("layer_norm", { eps: 1e-6 });
    expectTypeOf(c.normalized_axes).toEqualTypeOf<number>();
    // @ts-expect-error a misspelt key does not exist
    void c.epsilon;
    // @ts-expect-error a misspelt key is not accepted in a configuration
    resolveConfigOf("layer_norm", { epsilon: 1e-6 } satisfies FormulaConfigInputs["layer_norm"]);
  });

  test("attention: enums are choices, dims may be expressions, no default: optional", () => {
    type C = FormulaConfigs["attention"];
    expectTypeOf<C["causal_align"]>().toEqualTypeOf<"bottom_right" | "top_left">();
    expectTypeOf<C["mask"]>().toEqualTypeOf<"none" | "boolean" | "additive">();
    expectTypeOf<C["causal"]>().toEqualTypeOf<boolean>();
    expectTypeOf<C["H"]>().toEqualTypeOf<number | string | undefined>();
    expectTypeOf<C["scale"]>().toEqualTypeOf<number | undefined>();
    const ok: FormulaConfigInputs["attention"] = { causal: false, causal_align: "top_left" };
    void ok;
    // @ts-expect-error causl is not a key of attention
    const typo: FormulaConfigInputs["attention"] = { causl: false };
    // @ts-expect-error left is not a causal alignment
    const badChoice: FormulaConfigInputs["attention"] = { causal_align: "left" };
    // @ts-expect-error causal is a boolean
    const badType: FormulaConfigInputs["attention"] = { causal: 1 };
    void [typo, badChoice, badType];
  });

  test("a fixed block has no placement; the registry's names are the declared ones", () => {
    type PreLn = FormulaConfigs["block_pre_ln"];
    type _noPlacement = Expect<Equal<"placement" extends keyof PreLn ? true : false, false>>;
    type Some = "layer_norm" | "gpt" | "gelu";
    type _names = Expect<Equal<Some extends FormulaName ? true : false, true>>;
    // @ts-expect-error no formula is called layernorm
    type _typo = FormulaConfigs["layernorm"];
  });

  test("the reference model's configuration follows the gpt declaration", () => {
    expectTypeOf<GPTConfig["placement"]>().toEqualTypeOf<"post" | "pre" | "sandwich">();
    expectTypeOf<GPTConfig["H_kv"]>().toEqualTypeOf<number>();
    expectTypeOf<GPTConfig["window"]>().toEqualTypeOf<number>();
    // @ts-expect-error kv_cache is a switch of one evaluation (inModel: false), not of a model
    type _noCache = GPTConfig["kv_cache"];
  });
});
