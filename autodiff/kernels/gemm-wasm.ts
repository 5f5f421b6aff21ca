/**
 * The float64 GEMM kernel as a WebAssembly SIMD128 module, emitted from TypeScript.
 *
 * Structure (GotoBLAS / BLIS): C += A·B in float64 over matrices that already sit in the module's memory,
 * each addressed by a byte base and element strides (so transposes are just strides).
 *
 * ```
 * gemm:  for jc in N step nc            ── B block kc×nc lives in L2/L3, packed once per (jc,pc)
 *          for pc in K step kc
 *            pack_b  B[pc:pc+kc, jc:jc+nc] → NR-wide column panels, k-major, zero-padded
 *            for ic in M step mc
 *              pack_a  A[ic:ic+mc, pc:pc+kc] → MR-tall row panels, k-major, zero-padded
 *              macro   C[ic:, jc:] += packedA · packedB
 * macro: for jr in nb step NR             ── one B micro-panel (kc×NR) stays in L1
 *          for ir in mb step MR           ── A micro-panels stream from L2
 *            micro: MR×NR accumulators in registers, then added to C
 * ```
 *
 * The micro-kernel holds the MR×NR block of C in MR·NR/2 `v128` locals (f64x2 each). One step of
 * k is, with `bp` and `ap` the panel cursors:
 *
 * ```
 * b_j   = v128.load        bp + 16·j            j < NR/2    (two adjacent columns of B)
 * a_i   = v128.load64_splat ap + 8·i            i < MR      (A[i,k] in both lanes)
 * acc_ij = f64x2.add(acc_ij, f64x2.mul(a_i, b_j))
 * ```
 *
 * The step can be unrolled (`unroll`, folding the step into the load offsets), but the default
 * is 1: unrolled ×4, V8 hoists the loads of several steps and spills (14 vs 21 GFLOP/s,
 * RESULTS.md). The cursors advance by 8·MR and 8·NR bytes per step. By default there is no FMA:
 * a separate multiply and add round twice, exactly as the naive loop does. With `fma` the step is
 * `acc_ij = f64x2.relaxed_madd(a_i, b_j, acc_ij)` (relaxed SIMD; Node 20 validates it only after
 * `--experimental-wasm-relaxed-simd`, see features.ts): one rounding per term where the CPU fuses,
 * so products differ from the naive loop in the last bits — opt-in only.
 * Edge blocks (fewer than MR rows or NR columns) go through a small tile
 * buffer so that padding lanes never reach C; padding is zeros in the packed panels and only ever
 * multiplies into discarded lanes, so a NaN or Inf in A or B reaches exactly the C entries it
 * should. Summation order per C entry: k ascending within each kc block, each block's partial
 * sum added to C — the same K terms as the naive loop, in a blocked order.
 *
 * Tasks: `run(thread, tag)` claims task records one at a time from a shared, job-tagged counter
 * (`i32.atomic.rmw.cmpxchg`), so the calling thread and the workers that share this memory split
 * a job of sub-GEMMs dynamically, and a late worker can never take a task of a newer job.
 */
import { FunctionBuilder, ModuleBuilder, type Label } from "./wasm-emit.js";

/** Byte layout of the first 64 KiB page, shared with the JS side (see `pool.ts`). */
export const LAYOUT = {
  /** i32: job tag · 2¹⁶ + index of the next task, claimed by compare-and-swap (see `run`). */
  nextTask: 0,
  /** i32: number of task records. */
  taskCount: 4,
  /** i32: tasks of the current job finished so far. */
  tasksDone: 20,
  /** i32 block sizes in elements: mc, kc, nc. */
  mc: 8,
  kc: 12,
  nc: 16,
  /** Per thread t: i32 byte addresses of its packed-A buffer, packed-B buffer, edge tile. */
  threadBuffers: 64,
  threadBufferStride: 16,
  maxThreads: 16,
  /** Per thread t: i32 count of tasks it has run (diagnostics: proves workers took part). */
  tasksRun: 256,
  /** i32 words the JS side uses to hand out jobs and collect completions. */
  sync: 512,
  /** Task records, `taskFields` i32 each. */
  tasks: 4096,
  taskStride: 64,
  maxTasks: Math.floor((65536 - 4096) / 64),
  /** Bytes reserved before the first thread buffer. */
  reserved: 65536,
} as const;

/** Fields of one task record, in order (addresses in bytes, strides in elements). */
export const TASK_FIELDS = [
  "M",
  "N",
  "K",
  "A",
  "rsA",
  "csA",
  "B",
  "rsB",
  "csB",
  "C",
  "ldc",
] as const;

export interface GemmKernelShape {
  /** Rows of the register block. */
  MR: number;
  /** Columns of the register block; even (f64x2 lanes). */
  NR: number;
  /** k steps per loop iteration of the micro-kernel. */
  unroll: number;
  /** Panels filled per pass when packing members adjacent in memory (see `emitPack`). */
  packGroup: number;
  /** f64x2 accumulators (true), or scalar f64 ones (a variant kept to measure what SIMD buys). */
  simd: boolean;
  /** Multiply-add with `f64x2.relaxed_madd` (needs `simd` and a runtime that has relaxed SIMD). */
  fma?: boolean;
}

/** The register block used by default: 4×4 keeps 8 accumulators + 2 B vectors + 1 A splat +
 *  1 product in registers (x64 has 16 XMM registers; V8 reserves one as scratch). */
export const DEFAULT_SHAPE: GemmKernelShape = { MR: 4, NR: 4, unroll: 1, packGroup: 4, simd: true };

/** Emits the kernel module. Its memory is imported as `env.memory` (shared, up to `maxPages`). */
export function buildGemmModule(
  shape: GemmKernelShape = DEFAULT_SHAPE,
  maxPages = 32768,
): Uint8Array {
  const { MR, NR, unroll, packGroup } = shape;
  // Packing copies members in pairs (v128 = two f64), so both block dimensions are even.
  if (!Number.isInteger(MR) || MR < 2 || MR > 8 || MR % 2 !== 0)
    throw new RangeError(`MR must be 2, 4, 6 or 8, got ${MR}`);
  if (!Number.isInteger(NR) || NR < 2 || NR > 8 || NR % 2 !== 0)
    throw new RangeError(`NR must be 2, 4, 6 or 8, got ${NR}`);
  if (!Number.isInteger(unroll) || unroll < 1 || unroll > 8)
    throw new RangeError(`unroll must be an integer in [1, 8], got ${unroll}`);
  if (!Number.isInteger(packGroup) || packGroup < 1 || packGroup > 8)
    throw new RangeError(`packGroup must be an integer in [1, 8], got ${packGroup}`);

  const mod = new ModuleBuilder({
    module: "env",
    name: "memory",
    initial: 1,
    maximum: maxPages,
    shared: true,
  });
  const packA = emitPack(mod, "pack_a", MR, packGroup);
  const packB = emitPack(mod, "pack_b", NR, packGroup);
  const macro = emitMacro(mod, shape);
  const gemm = emitGemm(mod, packA, packB, macro);
  emitRun(mod, gemm);
  return mod.encode();
}

/** i8x16.shuffle lanes picking the low f64 of each operand, and the high f64 of each. */
const LOW_LANES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const HIGH_LANES = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

/** `dst = min(a, b)` for i32 locals. */
function min(f: FunctionBuilder, a: number, b: number): FunctionBuilder {
  return f.get(a).get(b).get(a).get(b).op("i32.lt_s").op("select");
}

/** `while (cond()) body()` as block/loop with the test at the top. */
function whileLoop(f: FunctionBuilder, cond: () => void, body: (exit: Label) => void): void {
  f.block((exit) => {
    f.loop((top) => {
      cond();
      f.op("i32.eqz").brIf(exit);
      body(exit);
      f.br(top);
    });
  });
}

/**
 * pack(src, ws, ls, count, len, dst): copies a count×len block into W-wide panels.
 * Element (w, l) of the block is at `src + w·ws + l·ls` (byte strides); panel p holds members
 * p·W … p·W+W−1, stored l-major: dst[p·W·len + l·W + r]. Members past `count` are zeros.
 * For A: members are rows (ws = row stride), l is k. For B: members are columns, l is k.
 *
 * Three copy loops for full panels, chosen at run time from the strides:
 * - ws = 8 (members adjacent: B row-major, A transposed): G panels at a time, so that each
 *   step of l reads whole cache lines, with W/2 v128 moves per panel;
 * - ls = 8 (each member contiguous along l: A row-major, B transposed): per panel, transpose
 *   2×2 blocks with two shuffles;
 * - otherwise one value at a time.
 */
function emitPack(mod: ModuleBuilder, name: string, W: number, G: number): FunctionBuilder {
  const f = mod.func(name, ["i32", "i32", "i32", "i32", "i32", "i32"], [], true);
  const [src, ws, ls, count, len, dst] = [0, 1, 2, 3, 4, 5];
  const p = f.local("i32");
  const l = f.local("i32");
  const q = f.local("i32");
  const d = f.local("i32");
  const r = f.local("i32");
  const end = f.local("i32");
  const panelBytes = f.local("i32");
  const ptr = Array.from({ length: Math.max(W, G) }, () => f.local("i32"));

  f.i32(0).set(p);
  f.get(ws).i32(8).op("i32.eq");
  f.if(() => {
    // G panels at a time: each step of l reads G·W adjacent values (whole cache lines) and
    // deals W of them to each of the G panels, which are W·len·8 bytes apart.
    f.get(len)
      .i32(8 * W)
      .op("i32.mul")
      .set(panelBytes);
    whileLoop(
      f,
      () =>
        f
          .get(count)
          .get(p)
          .op("i32.sub")
          .i32(G * W)
          .op("i32.ge_s"),
      () => {
        f.get(src).get(p).i32(3).op("i32.shl").op("i32.add").set(q);
        for (let g = 0; g < G; g++)
          f.get(dst).get(panelBytes).i32(g).op("i32.mul").op("i32.add").set(ptr[g]!);
        f.get(len).set(l);
        whileLoop(
          f,
          () => f.get(l).i32(0).op("i32.gt_s"),
          () => {
            for (let g = 0; g < G; g++) {
              for (let v = 0; v < W / 2; v++)
                f.get(ptr[g]!)
                  .get(q)
                  .mem("v128.load", 8 * W * g + 16 * v)
                  .mem("v128.store", 16 * v);
              f.inc(ptr[g]!, 8 * W);
            }
            f.inc(q, { local: ls });
            f.inc(l, -1);
          },
        );
        f.inc(p, G * W);
        f.get(dst).get(panelBytes).i32(G).op("i32.mul").op("i32.add").set(dst);
      },
    );
  });
  whileLoop(
    f,
    () => f.get(p).get(count).op("i32.lt_s"),
    () => {
      f.get(count).get(p).op("i32.sub").i32(W).op("i32.ge_s");
      f.if(
        () => {
          for (let m = 0; m < W; m++) {
            f.get(src).get(p).i32(m).op("i32.add").get(ws).op("i32.mul").op("i32.add").set(ptr[m]!);
          }
          f.get(len).set(l);
          f.get(ls).i32(8).op("i32.eq");
          f.if(() => {
            // x = (m,l),(m,l+1) and y = (m+1,l),(m+1,l+1) become (m,l),(m+1,l) = low lanes of x
            // and y, and (m,l+1),(m+1,l+1) = high lanes.
            whileLoop(
              f,
              () => f.get(l).i32(2).op("i32.ge_s"),
              () => {
                for (let m = 0; m < W; m += 2) {
                  f.get(dst)
                    .get(ptr[m]!)
                    .mem("v128.load")
                    .get(ptr[m + 1]!)
                    .mem("v128.load")
                    .shuffle(LOW_LANES)
                    .mem("v128.store", 8 * m);
                  f.get(dst)
                    .get(ptr[m]!)
                    .mem("v128.load")
                    .get(ptr[m + 1]!)
                    .mem("v128.load")
                    .shuffle(HIGH_LANES)
                    .mem("v128.store", 8 * (W + m));
                }
                for (let m = 0; m < W; m++) f.inc(ptr[m]!, 16);
                f.inc(dst, 16 * W);
                f.inc(l, -2);
              },
            );
          });
          // Any stride (and the odd last step of the transposing copy): one value at a time.
          whileLoop(
            f,
            () => f.get(l).i32(0).op("i32.gt_s"),
            () => {
              for (let m = 0; m < W; m++) {
                f.get(dst)
                  .get(ptr[m]!)
                  .mem("f64.load")
                  .mem("f64.store", 8 * m);
                f.inc(ptr[m]!, { local: ls });
              }
              f.inc(dst, 8 * W);
              f.inc(l, -1);
            },
          );
        },
        () => {
          // Partial panel: zero it, then copy the members that exist.
          f.get(dst)
            .get(len)
            .i32(8 * W)
            .op("i32.mul")
            .op("i32.add")
            .set(end);
          f.get(dst).set(d);
          whileLoop(
            f,
            () => f.get(d).get(end).op("i32.lt_u"),
            () => {
              f.get(d).f64(0).mem("f64.store");
              f.inc(d, 8);
            },
          );
          f.i32(0).set(r);
          whileLoop(
            f,
            () => f.get(r).get(count).get(p).op("i32.sub").op("i32.lt_s"),
            () => {
              f.get(src).get(p).get(r).op("i32.add").get(ws).op("i32.mul").op("i32.add").set(q);
              f.get(dst).get(r).i32(3).op("i32.shl").op("i32.add").set(d);
              whileLoop(
                f,
                () => f.get(d).get(end).op("i32.lt_u"),
                () => {
                  f.get(d).get(q).mem("f64.load").mem("f64.store");
                  f.inc(q, { local: ls });
                  f.inc(d, 8 * W);
                },
              );
              f.inc(r, 1);
            },
          );
          f.get(end).set(dst);
        },
      );
      f.inc(p, W);
    },
  );
  return f;
}

/**
 * macro(mb, nb, kb, pa, pb, c, ldc, tile): C[0:mb, 0:nb] += packedA · packedB, where C's rows
 * are `ldc` bytes apart, packedA holds ⌈mb/MR⌉ panels of MR×kb and packedB ⌈nb/NR⌉ panels of kb×NR.
 */
function emitMacro(
  mod: ModuleBuilder,
  { MR, NR, unroll, simd, fma }: GemmKernelShape,
): FunctionBuilder {
  if (fma === true && !simd) throw new RangeError("fma needs the SIMD kernel");
  const f = mod.func("macro", ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"], [], true);
  const [mb, nb, kb, pa, pb, c, ldc, tile] = [0, 1, 2, 3, 4, 5, 6, 7];
  const jr = f.local("i32");
  const ir = f.local("i32");
  const bpanel = f.local("i32");
  const ap = f.local("i32");
  const bp = f.local("i32");
  const kk = f.local("i32");
  const cp = f.local("i32");
  const rows = f.local("i32");
  const cols = f.local("i32");
  const i = f.local("i32");
  const j = f.local("i32");
  const t = f.local("i32");
  // Lanes per accumulator: 2 with SIMD (f64x2), 1 for the scalar variant kept for comparison.
  const V = simd ? 2 : 1;
  const NV = NR / V;
  const T = simd ? "v128" : "f64";
  const load = simd ? "v128.load" : "f64.load";
  const store = simd ? "v128.store" : "f64.store";
  const [mul, add] = simd
    ? (["f64x2.mul", "f64x2.add"] as const)
    : (["f64.mul", "f64.add"] as const);
  const acc: number[][] = Array.from({ length: MR }, () =>
    Array.from({ length: NV }, () => f.local(T)),
  );
  const bv = Array.from({ length: NV }, () => f.local(T));
  const a = f.local(T);

  /** One step of k: B row loads, then for each row of A a splat and NR/V multiply-adds. */
  const step = (u: number): void => {
    for (let v = 0; v < NV; v++)
      f.get(bp)
        .mem(load, 8 * NR * u + 8 * V * v)
        .set(bv[v]!);
    for (let m = 0; m < MR; m++) {
      f.get(ap)
        .mem(simd ? "v128.load64_splat" : "f64.load", 8 * MR * u + 8 * m)
        .set(a);
      for (let v = 0; v < NV; v++) {
        const sum = acc[m]![v]!;
        // relaxed_madd(x, y, z) = x·y + z
        if (fma === true) f.get(a).get(bv[v]!).get(sum).op("f64x2.relaxed_madd").set(sum);
        else f.get(acc[m]![v]!).get(a).get(bv[v]!).op(mul).op(add).set(acc[m]![v]!);
      }
    }
  };

  f.i32(0).set(jr);
  whileLoop(
    f,
    () => f.get(jr).get(nb).op("i32.lt_s"),
    () => {
      f.get(nb).get(jr).op("i32.sub").set(cols);
      f.get(pb).get(jr).get(kb).op("i32.mul").i32(3).op("i32.shl").op("i32.add").set(bpanel);
      f.i32(0).set(ir);
      whileLoop(
        f,
        () => f.get(ir).get(mb).op("i32.lt_s"),
        () => {
          f.get(mb).get(ir).op("i32.sub").set(rows);
          f.get(pa).get(ir).get(kb).op("i32.mul").i32(3).op("i32.shl").op("i32.add").set(ap);
          f.get(bpanel).set(bp);
          for (const row of acc) for (const x of row) (simd ? f.f64x2(0) : f.f64(0)).set(x);
          f.get(kb).set(kk);
          if (unroll > 1) {
            whileLoop(
              f,
              () => f.get(kk).i32(unroll).op("i32.ge_s"),
              () => {
                for (let u = 0; u < unroll; u++) step(u);
                f.inc(ap, 8 * MR * unroll);
                f.inc(bp, 8 * NR * unroll);
                f.inc(kk, -unroll);
              },
            );
          }
          whileLoop(
            f,
            () => f.get(kk).i32(0).op("i32.gt_s"),
            () => {
              step(0);
              f.inc(ap, 8 * MR);
              f.inc(bp, 8 * NR);
              f.inc(kk, -1);
            },
          );

          f.get(c)
            .get(ir)
            .get(ldc)
            .op("i32.mul")
            .op("i32.add")
            .get(jr)
            .i32(3)
            .op("i32.shl")
            .op("i32.add")
            .set(cp);
          f.get(rows).i32(MR).op("i32.ge_s").get(cols).i32(NR).op("i32.ge_s").op("i32.and");
          f.if(
            () => {
              // Full block: C row m, vector v += acc[m][v].
              for (let m = 0; m < MR; m++) {
                for (let v = 0; v < NV; v++) {
                  f.get(cp)
                    .get(cp)
                    .mem(load, 8 * V * v)
                    .get(acc[m]![v]!)
                    .op(add)
                    .mem(store, 8 * V * v);
                }
                if (m < MR - 1) f.inc(cp, { local: ldc });
              }
            },
            () => {
              // Edge block: spill the accumulators to the tile, add only the rows and columns that exist.
              for (let m = 0; m < MR; m++) {
                for (let v = 0; v < NV; v++)
                  f.get(tile)
                    .get(acc[m]![v]!)
                    .mem(store, 8 * (m * NR + V * v));
              }
              f.i32(0).set(i);
              whileLoop(
                f,
                () => f.get(i).get(rows).op("i32.lt_s").get(i).i32(MR).op("i32.lt_s").op("i32.and"),
                () => {
                  f.get(tile)
                    .get(i)
                    .i32(8 * NR)
                    .op("i32.mul")
                    .op("i32.add")
                    .set(t);
                  f.i32(0).set(j);
                  whileLoop(
                    f,
                    () =>
                      f.get(j).get(cols).op("i32.lt_s").get(j).i32(NR).op("i32.lt_s").op("i32.and"),
                    () => {
                      f.get(cp).get(j).i32(3).op("i32.shl").op("i32.add");
                      f.get(cp).get(j).i32(3).op("i32.shl").op("i32.add").mem("f64.load");
                      f.get(t).get(j).i32(3).op("i32.shl").op("i32.add").mem("f64.load");
                      f.op("f64.add").mem("f64.store");
                      f.inc(j, 1);
                    },
                  );
                  f.inc(cp, { local: ldc });
                  f.inc(i, 1);
                },
              );
            },
          );
          f.inc(ir, MR);
        },
      );
      f.inc(jr, NR);
    },
  );
  return f;
}

/**
 * gemm(M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, pa, pb, tile): C += A·B with A[i,k] at
 * A + 8(i·rsA + k·csA), B[k,j] at B + 8(k·rsB + j·csB), C[i,j] at C + 8(i·ldc + j); block sizes
 * mc, kc, nc read from the layout header; pa, pb, tile are this thread's buffers.
 */
function emitGemm(
  mod: ModuleBuilder,
  packA: FunctionBuilder,
  packB: FunctionBuilder,
  macro: FunctionBuilder,
): FunctionBuilder {
  const f = mod.func("gemm", Array<"i32">(14).fill("i32"), [], true);
  const [M, N, K, A, rsA, csA, B, rsB, csB, C, ldc, pa, pb, tile] = Array.from(
    { length: 14 },
    (_, k) => k,
  ) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const mc = f.local("i32");
  const kc = f.local("i32");
  const nc = f.local("i32");
  const jc = f.local("i32");
  const pc = f.local("i32");
  const ic = f.local("i32");
  const mbk = f.local("i32");
  const nbk = f.local("i32");
  const kbk = f.local("i32");
  const rem = f.local("i32");

  f.i32(0).mem("i32.load", LAYOUT.mc).set(mc);
  f.i32(0).mem("i32.load", LAYOUT.kc).set(kc);
  f.i32(0).mem("i32.load", LAYOUT.nc).set(nc);
  // Element strides → byte strides.
  for (const s of [rsA, csA, rsB, csB, ldc]) f.get(s).i32(3).op("i32.shl").set(s);

  f.i32(0).set(jc);
  whileLoop(
    f,
    () => f.get(jc).get(N).op("i32.lt_s"),
    () => {
      f.get(N).get(jc).op("i32.sub").set(rem);
      min(f, nc, rem).set(nbk);
      f.i32(0).set(pc);
      whileLoop(
        f,
        () => f.get(pc).get(K).op("i32.lt_s"),
        () => {
          f.get(K).get(pc).op("i32.sub").set(rem);
          min(f, kc, rem).set(kbk);
          // pack_b(B + pc·rsB + jc·csB, ws = csB, ls = rsB, count = nb, len = kb, pb)
          f.get(B)
            .get(pc)
            .get(rsB)
            .op("i32.mul")
            .op("i32.add")
            .get(jc)
            .get(csB)
            .op("i32.mul")
            .op("i32.add");
          f.get(csB).get(rsB).get(nbk).get(kbk).get(pb).call(packB);
          f.i32(0).set(ic);
          whileLoop(
            f,
            () => f.get(ic).get(M).op("i32.lt_s"),
            () => {
              f.get(M).get(ic).op("i32.sub").set(rem);
              min(f, mc, rem).set(mbk);
              // pack_a(A + ic·rsA + pc·csA, ws = rsA, ls = csA, count = mb, len = kb, pa)
              f.get(A)
                .get(ic)
                .get(rsA)
                .op("i32.mul")
                .op("i32.add")
                .get(pc)
                .get(csA)
                .op("i32.mul")
                .op("i32.add");
              f.get(rsA).get(csA).get(mbk).get(kbk).get(pa).call(packA);
              // macro(mb, nb, kb, pa, pb, C + ic·ldc + 8·jc, ldc, tile)
              f.get(mbk).get(nbk).get(kbk).get(pa).get(pb);
              f.get(C)
                .get(ic)
                .get(ldc)
                .op("i32.mul")
                .op("i32.add")
                .get(jc)
                .i32(3)
                .op("i32.shl")
                .op("i32.add");
              f.get(ldc).get(tile).call(macro);
              f.get(ic).get(mc).op("i32.add").set(ic);
            },
          );
          f.get(pc).get(kc).op("i32.add").set(pc);
        },
      );
      f.get(jc).get(nc).op("i32.add").set(jc);
    },
  );
  return f;
}

/**
 * run(thread, tag): take task records until none of job `tag` are left, running each with this
 * thread's buffers. The word at `nextTask` is tag·2¹⁶ + next index; a task is claimed by
 * compare-and-swap of that word, so a thread still holding an old tag can never claim a task of
 * a newer job. Each finished task adds one to `tasksDone`, which is what the caller waits on.
 */
function emitRun(mod: ModuleBuilder, gemm: FunctionBuilder): void {
  const f = mod.func("run", ["i32", "i32"], [], true);
  const [thread, tag] = [0, 1];
  const w = f.local("i32");
  const t = f.local("i32");
  const rec = f.local("i32");
  const buf = f.local("i32");
  f.i32(LAYOUT.threadBuffers)
    .get(thread)
    .i32(LAYOUT.threadBufferStride)
    .op("i32.mul")
    .op("i32.add")
    .set(buf);
  f.loop((top) => {
    f.i32(0).mem("i32.atomic.load", LAYOUT.nextTask).set(w);
    f.get(w).i32(16).op("i32.shr_u").get(tag).op("i32.ne");
    f.if(() => f.op("return"));
    f.get(w).i32(0xffff).op("i32.and").tee(t);
    f.i32(0).mem("i32.load", LAYOUT.taskCount).op("i32.ge_u");
    f.if(() => f.op("return"));
    // Claim index t: nextTask w → w + 1, or retry if another thread moved it first.
    f.i32(0)
      .get(w)
      .get(w)
      .i32(1)
      .op("i32.add")
      .mem("i32.atomic.rmw.cmpxchg", LAYOUT.nextTask)
      .get(w)
      .op("i32.ne")
      .brIf(top);
    // tasksRun[thread] += 1 (each thread owns its word, so no atomic is needed)
    f.get(thread)
      .i32(2)
      .op("i32.shl")
      .get(thread)
      .i32(2)
      .op("i32.shl")
      .mem("i32.load", LAYOUT.tasksRun)
      .i32(1)
      .op("i32.add");
    f.mem("i32.store", LAYOUT.tasksRun);
    f.i32(LAYOUT.tasks).get(t).i32(LAYOUT.taskStride).op("i32.mul").op("i32.add").set(rec);
    for (let k = 0; k < TASK_FIELDS.length; k++) f.get(rec).mem("i32.load", 4 * k);
    f.get(buf).mem("i32.load", 0).get(buf).mem("i32.load", 4).get(buf).mem("i32.load", 8);
    f.call(gemm);
    f.i32(0).i32(1).mem("i32.atomic.rmw.add", LAYOUT.tasksDone).op("drop");
    f.br(top);
  });
}
