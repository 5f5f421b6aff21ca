/**
 * A tiny WebAssembly binary emitter: just enough of the format (types, one imported memory,
 * functions, exports, code) and of the instruction set (integer arithmetic, f64 scalar, the
 * SIMD128 f64x2 subset, i32 atomics) to write the matmul kernels in TypeScript, readably,
 * without a build toolchain. The committed TypeScript is the kernel's source; the bytes are
 * produced at load time and validated by the engine itself.
 *
 * Encoding reference: WebAssembly Core Specification 2.0, §5 (binary format), plus the
 * fixed-width SIMD (0xFD prefix) and threads (0xFE prefix) opcode tables.
 */

/** Value types and their one-byte codes (spec §5.3.1). */
const ValType = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b } as const;
export type ValTypeName = keyof typeof ValType;

/** Unsigned LEB128 (spec §5.2.2). */
export function uleb(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new RangeError(`uleb: ${n} is not an unsigned 32-bit integer`);
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 for i32 immediates. */
export function sleb(n: number): number[] {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff)
    throw new RangeError(`sleb: ${n} is not a signed 32-bit integer`);
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function utf8(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

/** Instructions without immediates, by their text-format names. */
const SIMPLE: Record<string, readonly number[]> = {
  unreachable: [0x00],
  nop: [0x01],
  return: [0x0f],
  drop: [0x1a],
  select: [0x1b],
  "i32.eqz": [0x45],
  "i32.eq": [0x46],
  "i32.ne": [0x47],
  "i32.lt_s": [0x48],
  "i32.lt_u": [0x49],
  "i32.gt_s": [0x4a],
  "i32.gt_u": [0x4b],
  "i32.le_s": [0x4c],
  "i32.le_u": [0x4d],
  "i32.ge_s": [0x4e],
  "i32.ge_u": [0x4f],
  "i32.add": [0x6a],
  "i32.sub": [0x6b],
  "i32.mul": [0x6c],
  "i32.div_s": [0x6d],
  "i32.rem_u": [0x70],
  "i32.and": [0x71],
  "i32.or": [0x72],
  "i32.shl": [0x74],
  "i32.shr_s": [0x75],
  "i32.shr_u": [0x76],
  "f64.add": [0xa0],
  "f64.sub": [0xa1],
  "f64.mul": [0xa2],
  "f64.promote_f32": [0xbb],
  "f32.demote_f64": [0xb6],
  // SIMD128: 0xFD prefix, then the opcode as u32 LEB128.
  "f64x2.splat": [0xfd, ...uleb(0x14)],
  "f64x2.add": [0xfd, ...uleb(0xf0)],
  "f64x2.sub": [0xfd, ...uleb(0xf1)],
  "f64x2.mul": [0xfd, ...uleb(0xf2)],
  // Relaxed SIMD: a·b + c, fused (one rounding) or not, as the platform does it.
  "f64x2.relaxed_madd": [0xfd, ...uleb(0x107)],
};

/** Memory instructions: opcode bytes and natural alignment (log2 bytes). */
const MEMORY: Record<string, { code: readonly number[]; align: number }> = {
  "i32.load": { code: [0x28], align: 2 },
  "f32.load": { code: [0x2a], align: 2 },
  "f64.load": { code: [0x2b], align: 3 },
  "i32.store": { code: [0x36], align: 2 },
  "f32.store": { code: [0x38], align: 2 },
  "f64.store": { code: [0x39], align: 3 },
  "v128.load": { code: [0xfd, ...uleb(0x00)], align: 4 },
  "v128.load64_splat": { code: [0xfd, ...uleb(0x0a)], align: 3 },
  "v128.store": { code: [0xfd, ...uleb(0x0b)], align: 4 },
  // Threads proposal: atomics require exactly natural alignment.
  "i32.atomic.load": { code: [0xfe, ...uleb(0x10)], align: 2 },
  "i32.atomic.store": { code: [0xfe, ...uleb(0x17)], align: 2 },
  "i32.atomic.rmw.add": { code: [0xfe, ...uleb(0x1e)], align: 2 },
  "i32.atomic.rmw.cmpxchg": { code: [0xfe, ...uleb(0x48)], align: 2 },
};

export type SimpleOp = keyof typeof SIMPLE & string;
export type MemoryOp = keyof typeof MEMORY & string;

/** A branch target: the block or loop it names, resolved to a relative depth when used. */
export interface Label {
  readonly id: number;
}

/**
 * One function's body, written as a stack machine. Structured control takes callbacks so the
 * nesting in TypeScript mirrors the nesting in WebAssembly; branches name their `Label` and the
 * emitter computes the relative depth.
 */
export class FunctionBuilder {
  readonly code: number[] = [];
  readonly localTypes: ValTypeName[] = [];
  private readonly labels: Label[] = [];
  private nextLabel = 0;

  constructor(
    readonly name: string,
    readonly params: readonly ValTypeName[],
    readonly results: readonly ValTypeName[],
    readonly index: number,
  ) {}

  /** Index of parameter `i` (parameters are the first locals). */
  param(i: number): number {
    if (i < 0 || i >= this.params.length) throw new RangeError(`${this.name}: no parameter ${i}`);
    return i;
  }

  /** Declares a new local and returns its index. */
  local(type: ValTypeName): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }

  op(name: SimpleOp): this {
    const bytes = SIMPLE[name];
    if (bytes === undefined) throw new Error(`${this.name}: unknown instruction ${name}`);
    this.code.push(...bytes);
    return this;
  }

  /** A load or store with a constant byte `offset` added to the address on the stack. */
  mem(name: MemoryOp, offset = 0): this {
    const m = MEMORY[name];
    if (m === undefined) throw new Error(`${this.name}: unknown memory instruction ${name}`);
    this.code.push(...m.code, ...uleb(m.align), ...uleb(offset));
    return this;
  }

  get(local: number): this {
    this.code.push(0x20, ...uleb(local));
    return this;
  }

  set(local: number): this {
    this.code.push(0x21, ...uleb(local));
    return this;
  }

  tee(local: number): this {
    this.code.push(0x22, ...uleb(local));
    return this;
  }

  i32(value: number): this {
    this.code.push(0x41, ...sleb(value));
    return this;
  }

  f64(value: number): this {
    const bytes = new Uint8Array(new Float64Array([value]).buffer);
    this.code.push(0x44, ...bytes);
    return this;
  }

  /** `v128.const` with both f64 lanes set to `value`. */
  f64x2(value: number): this {
    const bytes = new Uint8Array(new Float64Array([value, value]).buffer);
    this.code.push(0xfd, ...uleb(0x0c), ...bytes);
    return this;
  }

  /** `i8x16.shuffle`: byte i of the result is byte lanes[i] of (first ++ second), lanes < 32. */
  shuffle(lanes: readonly number[]): this {
    if (lanes.length !== 16 || lanes.some((l) => !Number.isInteger(l) || l < 0 || l > 31)) {
      throw new RangeError(`${this.name}: i8x16.shuffle needs 16 lane indices in [0, 31]`);
    }
    this.code.push(0xfd, ...uleb(0x0d), ...lanes);
    return this;
  }

  call(fn: FunctionBuilder): this {
    this.code.push(0x10, ...uleb(fn.index));
    return this;
  }

  /** `local = local + delta` for an i32 local. */
  inc(local: number, delta: number | { local: number }): this {
    this.get(local);
    if (typeof delta === "number") this.i32(delta);
    else this.get(delta.local);
    return this.op("i32.add").set(local);
  }

  block(body: (end: Label) => void): this {
    return this.structured(0x02, body);
  }

  loop(body: (top: Label) => void): this {
    return this.structured(0x03, body);
  }

  /** `if` consuming the i32 condition on the stack; `otherwise` adds an `else` arm. */
  if(then: () => void, otherwise?: () => void): this {
    this.code.push(0x04, 0x40);
    const label = { id: this.nextLabel++ };
    this.labels.push(label);
    then();
    if (otherwise !== undefined) {
      this.code.push(0x05);
      otherwise();
    }
    this.labels.pop();
    this.code.push(0x0b);
    return this;
  }

  br(label: Label): this {
    this.code.push(0x0c, ...uleb(this.depth(label)));
    return this;
  }

  brIf(label: Label): this {
    this.code.push(0x0d, ...uleb(this.depth(label)));
    return this;
  }

  private structured(opcode: number, body: (label: Label) => void): this {
    this.code.push(opcode, 0x40);
    const label = { id: this.nextLabel++ };
    this.labels.push(label);
    body(label);
    this.labels.pop();
    this.code.push(0x0b);
    return this;
  }

  private depth(label: Label): number {
    const i = this.labels.lastIndexOf(label);
    if (i < 0) throw new Error(`${this.name}: branch to a label that is not enclosing`);
    return this.labels.length - 1 - i;
  }

  /** The function's code-section entry: locals run-length encoded, then the body and `end`. */
  encode(): number[] {
    if (this.labels.length !== 0) throw new Error(`${this.name}: unclosed block`);
    const groups: number[][] = [];
    let i = 0;
    while (i < this.localTypes.length) {
      const t = this.localTypes[i]!;
      let j = i;
      while (j < this.localTypes.length && this.localTypes[j] === t) j++;
      groups.push([...uleb(j - i), ValType[t]]);
      i = j;
    }
    const body = [...vec(groups), ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

export interface MemoryImport {
  module: string;
  name: string;
  /** Pages of 64 KiB. */
  initial: number;
  maximum: number;
  shared: boolean;
}

/** One shared page (64 KiB) imported as `env.memory`: enough for a probe or a test module. */
export const ONE_SHARED_PAGE: Readonly<MemoryImport> = {
  module: "env",
  name: "memory",
  initial: 1,
  maximum: 1,
  shared: true,
};

/** A module with one imported memory and any number of functions. */
export class ModuleBuilder {
  private readonly functions: FunctionBuilder[] = [];
  private readonly exported = new Set<string>();

  constructor(private readonly memory: Readonly<MemoryImport>) {}

  func(
    name: string,
    params: readonly ValTypeName[],
    results: readonly ValTypeName[] = [],
    exported = true,
  ): FunctionBuilder {
    if (this.functions.some((f) => f.name === name))
      throw new Error(`module already has a function named ${name}`);
    const f = new FunctionBuilder(name, params, results, this.functions.length);
    this.functions.push(f);
    if (exported) this.exported.add(name);
    return f;
  }

  /** The module's bytes. */
  encode(): Uint8Array {
    const signatures: string[] = [];
    const typeIndex = this.functions.map((f) => {
      const key = `${f.params.join(",")}->${f.results.join(",")}`;
      let i = signatures.indexOf(key);
      if (i < 0) i = signatures.push(key) - 1;
      return i;
    });
    const types = signatures.map((key) => {
      const [p, r] = key.split("->") as [string, string];
      const ps = p === "" ? [] : (p.split(",") as ValTypeName[]);
      const rs = r === "" ? [] : (r.split(",") as ValTypeName[]);
      return [
        0x60,
        ...uleb(ps.length),
        ...ps.map((t) => ValType[t]),
        ...uleb(rs.length),
        ...rs.map((t) => ValType[t]),
      ];
    });
    const m = this.memory;
    const limits = [m.shared ? 0x03 : 0x01, ...uleb(m.initial), ...uleb(m.maximum)];
    const imports = [[...utf8(m.module), ...utf8(m.name), 0x02, ...limits]];
    const exports = this.functions
      .filter((f) => this.exported.has(f.name))
      .map((f) => [...utf8(f.name), 0x00, ...uleb(f.index)]);
    const bytes = [
      0x00,
      0x61,
      0x73,
      0x6d,
      0x01,
      0x00,
      0x00,
      0x00,
      ...section(1, vec(types)),
      ...section(2, vec(imports)),
      ...section(3, vec(typeIndex.map((i) => uleb(i)))),
      ...section(7, vec(exports)),
      ...section(10, vec(this.functions.map((f) => f.encode()))),
    ];
    return new Uint8Array(bytes);
  }
}
