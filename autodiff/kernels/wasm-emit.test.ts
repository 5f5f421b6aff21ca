import { describe, expect, it } from "vitest";
import { DEFAULT_SHAPE, buildGemmModule } from "./gemm-wasm.js";
import { wasm } from "./wasm-api.js";
import { ModuleBuilder, ONE_SHARED_PAGE, sleb, uleb } from "./wasm-emit.js";

describe("LEB128", () => {
  it("matches the format's published examples", () => {
    // Examples from the DWARF specification (§7.6), also used by the WebAssembly spec's LEB128.
    expect(uleb(2)).toEqual([2]);
    expect(uleb(127)).toEqual([127]);
    expect(uleb(128)).toEqual([0x80, 1]);
    expect(uleb(129)).toEqual([1 + 0x80, 1]);
    expect(uleb(130)).toEqual([2 + 0x80, 1]);
    expect(uleb(12857)).toEqual([57 + 0x80, 100]);
    expect(sleb(2)).toEqual([2]);
    expect(sleb(-2)).toEqual([0x7e]);
    expect(sleb(127)).toEqual([127 + 0x80, 0]);
    expect(sleb(-127)).toEqual([1 + 0x80, 0x7f]);
    expect(sleb(128)).toEqual([0 + 0x80, 1]);
    expect(sleb(-128)).toEqual([0 + 0x80, 0x7f]);
    expect(sleb(129)).toEqual([1 + 0x80, 1]);
    expect(sleb(-129)).toEqual([0x7f + 0x80, 0x7e]);
  });

  it("rejects values outside 32 bits", () => {
    expect(() => uleb(-1)).toThrow("uleb: -1 is not an unsigned 32-bit integer");
    expect(() => sleb(2 ** 31)).toThrow("sleb: 2147483648 is not a signed 32-bit integer");
  });
});

const memory = () => new wasm.Memory({ initial: 1, maximum: 1, shared: true });

describe("ModuleBuilder", () => {
  it("emits a loop that the engine validates and runs: Σ_{i=1}^{n} i", () => {
    const mod = new ModuleBuilder(ONE_SHARED_PAGE);
    const f = mod.func("sum", ["i32"], ["i32"]);
    const n = f.param(0);
    const s = f.local("i32");
    f.block((exit) => {
      f.loop((top) => {
        f.get(n).op("i32.eqz").brIf(exit);
        f.inc(s, { local: n });
        f.inc(n, -1);
        f.br(top);
      });
    });
    f.get(s);
    const bytes = mod.encode();
    expect(wasm.validate(bytes)).toBe(true);
    const sum = new wasm.Instance(new wasm.Module(bytes), { env: { memory: memory() } }).exports
      .sum as (n: number) => number;
    expect(sum(100)).toBe(5050);
    expect(sum(0)).toBe(0);
  });

  it("emits SIMD: an f64x2 multiply-add and a lane shuffle, checked through memory", () => {
    const mod = new ModuleBuilder(ONE_SHARED_PAGE);
    const f = mod.func("fma2", []);
    // mem[32..48) = mem[0..16) * mem[16..32) + (0.5, 0.5);  mem[48..64) = high(mem[0]) ++ high(mem[16])
    f.i32(0)
      .i32(0)
      .mem("v128.load")
      .i32(0)
      .mem("v128.load", 16)
      .op("f64x2.mul")
      .f64x2(0.5)
      .op("f64x2.add")
      .mem("v128.store", 32);
    f.i32(0).i32(0).mem("v128.load").i32(0).mem("v128.load", 16);
    f.shuffle([8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]).mem("v128.store", 48);
    const mem = memory();
    const run = new wasm.Instance(new wasm.Module(mod.encode()), { env: { memory: mem } }).exports
      .fma2 as () => void;
    const view = new Float64Array(mem.buffer, 0, 8);
    view.set([1.5, -2, 4, 8]);
    run();
    expect(Array.from(view.subarray(4, 8))).toEqual([6.5, -15.5, -2, 8]);
  });

  it("says what is wrong with a malformed function", () => {
    const mod = new ModuleBuilder(ONE_SHARED_PAGE);
    const f = mod.func("bad", []);
    let outside: Parameters<typeof f.br>[0] | undefined;
    f.block((l) => {
      outside = l;
    });
    expect(() => f.br(outside!)).toThrow("bad: branch to a label that is not enclosing");
    expect(() => f.shuffle([1, 2])).toThrow("bad: i8x16.shuffle needs 16 lane indices in [0, 31]");
    expect(() => mod.func("bad", [])).toThrow("module already has a function named bad");
  });
});

describe("buildGemmModule", () => {
  it("validates for every supported register block, and rejects unsupported ones", () => {
    for (const MR of [2, 4, 6, 8]) {
      for (const NR of [2, 4, 6, 8])
        expect(wasm.validate(buildGemmModule({ ...DEFAULT_SHAPE, MR, NR }))).toBe(true);
    }
    expect(() => buildGemmModule({ ...DEFAULT_SHAPE, MR: 3 })).toThrow(
      "MR must be 2, 4, 6 or 8, got 3",
    );
    expect(() => buildGemmModule({ ...DEFAULT_SHAPE, NR: 5 })).toThrow(
      "NR must be 2, 4, 6 or 8, got 5",
    );
    expect(() => buildGemmModule({ ...DEFAULT_SHAPE, unroll: 0 })).toThrow(
      "unroll must be an integer in [1, 8], got 0",
    );
  });
});
