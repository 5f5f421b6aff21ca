/**
 * The GEMM runtime: one shared WebAssembly memory, the kernel instance on the calling thread,
 * and a lazily started pool of worker threads that instantiate the same module over the same
 * memory.
 *
 * A job is a list of task records (sub-GEMMs on data already staged in the memory). The caller
 * writes the records, opens the job-tagged task counter, posts the job number in each ready
 * worker's mailbox word (with `Atomics.notify` only if that worker sleeps), runs tasks itself,
 * then waits until the count of finished tasks reaches the job's size. Tasks are claimed one at
 * a time inside the module (`run`), so a busy or late core just takes fewer of them, and the
 * caller never waits for a worker that has not claimed a task.
 *
 * Workers are started on the first job that asks for more than one thread, without waiting for
 * them: they boot on their own threads and join jobs once they have set their ready word. They
 * are `unref`'d, so they never keep the process alive.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import {
  DEFAULT_SHAPE,
  LAYOUT,
  TASK_FIELDS,
  buildGemmModule,
  type GemmKernelShape,
} from "./gemm-wasm.js";
import { wasm, type WasmMemory, type WasmModule } from "./wasm-api.js";

/** One sub-GEMM: C += A·B on staged data. Addresses in bytes, strides in elements. */
export interface GemmTask {
  M: number;
  N: number;
  K: number;
  A: number;
  rsA: number;
  csA: number;
  B: number;
  rsB: number;
  csB: number;
  C: number;
  ldc: number;
}

/** Cache blocking (elements): A block mc×kc in L2, B block kc×nc in L3, B micro-panel kc×NR in L1.
 *  Measured flat within ±2% for mc 64–256, kc 128–512, nc ≥ 512 at 512³ (see RESULTS.md). */
export const BLOCKING = { mc: 128, kc: 256, nc: 2048 } as const;

const PAGE = 65536;
const MAX_PAGES = 32768; // 2 GiB of address space reserved; pages are committed only as staging grows
const align64 = (n: number): number => Math.ceil(n / 64) * 64;
/** Bytes of packing buffers each thread owns. */
export const THREAD_BUFFER_BYTES =
  align64(BLOCKING.mc * BLOCKING.kc * 8) +
  align64(BLOCKING.kc * BLOCKING.nc * 8) +
  align64(DEFAULT_SHAPE.MR * DEFAULT_SHAPE.NR * 8);

/** i32 word indices of the synchronisation area (per thread t ≥ 1). */
const SYNC = {
  /** Mailbox: the last job number posted to worker t (−1: stop). */
  job: (t: number) => LAYOUT.sync / 4 + t,
  /** 1 while worker t is inside `run`. */
  busy: (t: number) => LAYOUT.sync / 4 + 16 + t,
  ready: (t: number) => LAYOUT.sync / 4 + 32 + t,
  error: (t: number) => LAYOUT.sync / 4 + 48 + t,
  /** 1 while worker t sleeps in `Atomics.wait` (so a post must notify it). */
  sleeping: (t: number) => LAYOUT.sync / 4 + 64 + t,
  /** Byte offset and length of thread t's error text. */
  textAt: (t: number) => 1024 + 160 * t,
  textBytes: 160,
} as const;

/**
 * How an idle worker waits for the next job, in three stages:
 * - it polls its mailbox for `SPIN_MS` (the engine issues matmuls back to back with little JS
 *   between them, so a polling worker joins the next product at once);
 * - then naps in `NAP_MS` slices (`Atomics.wait` with a timeout) until `DEEP_SLEEP_MS` of idleness,
 *   so the caller need not wake it;
 * - then sleeps until notified.
 * Waking a sleeping thread from the caller (`Atomics.notify`) costs 50–500 µs of the caller's
 * time on this 2-vCPU VM (measured: RESULTS.md), partly because Linux may run the woken worker on
 * the caller's CPU and preempt the caller; a worker that finds the job by itself costs nothing.
 * Polling is kept short because when other processes hold one core, the caller and the worker
 * share the other, and a polling thread then steals time from the one doing the work.
 */
const SPIN_MS = 0.3;
const NAP_MS = 0.25;
const DEEP_SLEEP_MS = 50;
/** How long the caller polls for workers' last tasks before sleeping. */
const WAIT_SPIN_MS = 0.05;

/**
 * Worker body, plain CommonJS so it runs in any worker without a TypeScript loader: wait for a
 * new job number in the mailbox (polling, napping, then sleeping), run its tasks, repeat.
 * `sleeping` and the mailbox are a Dekker pair: the worker sets `sleeping` and re-reads the
 * mailbox before waiting; the caller writes the mailbox and then reads `sleeping`, so one of
 * them always sees the other (all accesses sequentially consistent).
 */
const WORKER_SOURCE =
  `
const { workerData } = require("node:worker_threads");
const { module, memory, thread, JOB, BUSY, READY, ERROR, SLEEPING, ` +
  `DONE, TEXT_AT, TEXT_BYTES, SPIN_MS, NAP_MS, DEEP_SLEEP_MS } = ` +
  `workerData;
const ctl = new Int32Array(memory.buffer, 0, ${LAYOUT.tasks / 4});
const run = new WebAssembly.Instance(module, { env: { memory } }).exports.run;
// The caller set JOB to 0 before starting this worker and changes it only after READY is set.
let job = 0;
Atomics.store(ctl, READY, 1);
for (;;) {
  let next;
  const start = performance.now();
  for (let spins = 0; (next = Atomics.load(ctl, JOB)) === job; spins++) {
    if (spins < 1000) continue;
    const idle = performance.now() - start;
    if (idle < SPIN_MS) continue;
    if (idle < DEEP_SLEEP_MS) {
      Atomics.wait(ctl, JOB, job, NAP_MS);
      continue;
    }
    Atomics.store(ctl, SLEEPING, 1);
    if (Atomics.load(ctl, JOB) === job) Atomics.wait(ctl, JOB, job);
    Atomics.store(ctl, SLEEPING, 0);
  }
  if (next < 0) break;
  // BUSY is set before the job number is read again, so a caller that has seen BUSY = 0 after
  // closing a job knows this worker will only ever run a later job's tag.
  Atomics.store(ctl, BUSY, 1);
  job = Atomics.load(ctl, JOB);
  if (job < 0) break;
  try {
    run(thread, ((job - 1) % 0x7fff) + 1);
  } catch (e) {
    const text = new TextEncoder().encode(String((e && e.stack) || e)).subarray(0, TEXT_BYTES);
    new Uint8Array(memory.buffer, TEXT_AT, TEXT_BYTES).fill(0).set(text);
    Atomics.store(ctl, ERROR, 1);
  }
  Atomics.store(ctl, BUSY, 0);
  Atomics.notify(ctl, DONE);
}
`;

/**
 * Decides whether a job that may use workers should, judged by how fast jobs of its size class
 * (⌊log₂ multiply-adds⌋) ran each way: moving averages of ns per multiply-add. On a machine
 * where other processes hold cores, a worker gets descheduled holding a task, or the caller and
 * a worker share one core, and a parallel job can take several times as long as a serial one
 * (measured: RESULTS.md); so parallel is chosen only while it is not slower, and every
 * `RECHECK`-th job of a class runs the other way to keep both measurements current (each
 * re-check costs the difference once: about 4% of an idle machine's speed at 16). Results do not depend on
 * the choice: the tiles are the same either way.
 */
export class ModeChooser {
  static readonly RECHECK = 16;
  private readonly classes = new Map<number, { serial: number; parallel: number; jobs: number }>();

  /** Whether the next job of `work` multiply-adds should use workers. */
  parallel(work: number): boolean {
    const key = Math.floor(Math.log2(work));
    let c = this.classes.get(key);
    if (c === undefined) this.classes.set(key, (c = { serial: NaN, parallel: NaN, jobs: 0 }));
    c.jobs++;
    if (Number.isNaN(c.parallel)) return true;
    if (Number.isNaN(c.serial)) return false;
    const better = c.parallel <= c.serial;
    return c.jobs % ModeChooser.RECHECK === 0 ? !better : better;
  }

  /** Records that a job of `work` multiply-adds took `ms`, with workers or without. */
  record(work: number, parallel: boolean, ms: number): void {
    const c = this.classes.get(Math.floor(Math.log2(work)));
    if (c === undefined) return;
    const nsPerMac = (ms * 1e6) / work;
    const key = parallel ? "parallel" : "serial";
    c[key] = Number.isNaN(c[key]) ? nsPerMac : 0.75 * c[key] + 0.25 * nsPerMac;
  }
}

/** The process-wide GEMM runtime (created on first use). */
export class GemmRuntime {
  readonly memory: WasmMemory;
  private readonly module: WasmModule;
  private readonly runMain: (thread: number, tag: number) => void;
  private readonly workers: (Worker | undefined)[] = [];
  private ctl: Int32Array;
  private threads = 1;
  private job = 0;
  private view: Float64Array;
  private readonly chooser = new ModeChooser();
  /** Why workers are no longer started, after one died; undefined while all is well. */
  workerFailure: string | undefined;
  /** `"adaptive"`: use workers while they make jobs faster (see `chooseParallel`);
   *  `"always"`: for every job that qualifies (tests of the parallel path). */
  policy: "adaptive" | "always" = "adaptive";
  /** Jobs run with workers, and jobs that could have used them but ran on the caller alone. */
  readonly stats = { parallelJobs: 0, serialJobs: 0 };

  constructor(readonly shape: GemmKernelShape = DEFAULT_SHAPE) {
    this.module = new wasm.Module(buildGemmModule(shape, MAX_PAGES));
    this.memory = new wasm.Memory({
      initial: Math.ceil(LAYOUT.reserved / PAGE),
      maximum: MAX_PAGES,
      shared: true,
    });
    const exports = new wasm.Instance(this.module, { env: { memory: this.memory } })
      .exports as unknown as { run: (t: number, tag: number) => void };
    this.runMain = exports.run;
    this.ctl = new Int32Array(this.memory.buffer, 0, LAYOUT.reserved / 4);
    this.view = new Float64Array(this.memory.buffer);
    this.ctl[LAYOUT.mc / 4] = BLOCKING.mc;
    this.ctl[LAYOUT.kc / 4] = BLOCKING.kc;
    this.ctl[LAYOUT.nc / 4] = BLOCKING.nc;
    this.layThreadBuffers(1);
  }

  /** First byte free for staging: after the reserved page and every thread's buffers. */
  get heapStart(): number {
    return LAYOUT.reserved + this.threads * THREAD_BUFFER_BYTES;
  }

  /** A Float64Array over the whole memory (renewed after growth). */
  get f64(): Float64Array {
    if (this.view.buffer.byteLength !== this.memory.buffer.byteLength)
      this.view = new Float64Array(this.memory.buffer);
    return this.view;
  }

  /** Makes sure staging bytes [heapStart, heapStart + bytes) exist. */
  reserve(bytes: number): void {
    const need = this.heapStart + bytes;
    const have = this.memory.buffer.byteLength;
    if (need > have) {
      const pages = Math.ceil((need - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES)
        throw new RangeError(
          `matmul: staging needs ${need} bytes, more than the ${MAX_PAGES * PAGE}-byte kernel memory`,
        );
      this.memory.grow(pages);
    }
  }

  /** Number of threads (caller included) jobs may use; workers beyond the first job start lazily. */
  setThreads(threads: number): void {
    if (!Number.isInteger(threads) || threads < 1 || threads > LAYOUT.maxThreads) {
      throw new RangeError(
        `matmul threads must be an integer in [1, ${LAYOUT.maxThreads}], got ${threads}`,
      );
    }
    this.layThreadBuffers(threads);
  }

  get threadCount(): number {
    return this.threads;
  }

  /** Workers (not counting the caller) that have booted and take jobs. */
  get readyWorkers(): number {
    let n = 0;
    for (let t = 1; t < this.threads; t++)
      if (this.workers[t] !== undefined && Atomics.load(this.ctl, SYNC.ready(t)) === 1) n++;
    return n;
  }

  /** Tasks run so far by thread t (0 is the caller). */
  tasksRunBy(t: number): number {
    return Atomics.load(this.ctl, LAYOUT.tasksRun / 4 + t);
  }

  /**
   * Runs the tasks to completion. `parallel` allows handing them to workers (started now if
   * they do not exist yet); otherwise the caller runs them alone.
   */
  execute(tasks: readonly GemmTask[], parallel: boolean): void {
    for (let start = 0; start < tasks.length; start += LAYOUT.maxTasks) {
      this.executeBatch(tasks.slice(start, start + LAYOUT.maxTasks), parallel);
    }
  }

  private executeBatch(tasks: readonly GemmTask[], parallel: boolean): void {
    const ctl = this.ctl;
    for (let i = 0; i < tasks.length; i++) {
      const task = tasks[i]!;
      const base = (LAYOUT.tasks + i * LAYOUT.taskStride) / 4;
      for (let f = 0; f < TASK_FIELDS.length; f++) ctl[base + f] = task[TASK_FIELDS[f]!];
    }
    // Job tags run 1…0x7fff; tag 0 never matches a job, so storing it closes the counter.
    const job = (this.job = this.job >= 0x3fffffff ? 1 : this.job + 1);
    const tag = jobTag(job);
    ctl[LAYOUT.taskCount / 4] = tasks.length;
    Atomics.store(ctl, LAYOUT.tasksDone / 4, 0);
    Atomics.store(ctl, LAYOUT.nextTask / 4, tag * 0x10000);

    const t0 = performance.now();
    const helpers: number[] = [];
    const eligible = parallel && tasks.length > 1 && this.threads > 1;
    let work = 0;
    for (const task of tasks) work += task.M * task.N * task.K;
    if (eligible) this.startWorkers();
    if (eligible && (this.policy === "always" || this.chooser.parallel(work))) {
      for (let t = 1; t < this.threads; t++) {
        if (Atomics.load(ctl, SYNC.ready(t)) !== 1) continue;
        helpers.push(t);
        Atomics.store(ctl, SYNC.job(t), job);
        if (Atomics.load(ctl, SYNC.sleeping(t)) === 1) Atomics.notify(ctl, SYNC.job(t));
      }
    }
    let mainError: unknown;
    try {
      this.runMain(0, tag);
    } catch (e) {
      mainError = e;
    }
    let failed = mainError !== undefined;
    if (!failed) {
      // Wait for tasks that workers claimed and are still running (poll, then sleep).
      const until = performance.now() + WAIT_SPIN_MS;
      for (let spins = 0; ; spins++) {
        const done = Atomics.load(ctl, LAYOUT.tasksDone / 4);
        if (done === tasks.length) break;
        if (helpers.some((t) => Atomics.load(ctl, SYNC.error(t)) !== 0)) {
          failed = true;
          break;
        }
        if (spins > 100 && performance.now() > until)
          Atomics.wait(ctl, LAYOUT.tasksDone / 4, done, 100);
      }
    }
    // Close the counter: a worker still in `run` can then claim nothing (its compare-and-swap
    // carries this job's tag). With every task done nothing of this job is in flight; after a
    // failure some task may be, so wait for every worker to leave `run`.
    Atomics.store(ctl, LAYOUT.nextTask / 4, 0);
    if (failed) {
      for (const t of helpers) {
        while (Atomics.load(ctl, SYNC.busy(t)) !== 0) Atomics.wait(ctl, SYNC.busy(t), 1, 1);
      }
    } else if (eligible) {
      // A job offered to no ready worker (still booting) ran serially, and counts as such.
      this.chooser.record(work, helpers.length > 0, performance.now() - t0);
      if (helpers.length > 0) this.stats.parallelJobs++;
      else this.stats.serialJobs++;
    }
    // Collect (and clear) every worker's error before throwing, so none leaks into a later job.
    let workerError: Error | undefined;
    for (const t of helpers) {
      if (Atomics.load(ctl, SYNC.error(t)) === 0) continue;
      const bytes = new Uint8Array(this.memory.buffer, SYNC.textAt(t), SYNC.textBytes).slice();
      const end = bytes.indexOf(0);
      Atomics.store(ctl, SYNC.error(t), 0);
      workerError ??= new Error(
        `matmul worker ${t} failed: ${new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end))}`,
      );
    }
    if (mainError !== undefined) throw mainError;
    if (workerError !== undefined) throw workerError;
  }

  /** Stops and forgets every worker (they restart lazily on the next parallel job). */
  shutdown(): Promise<void> {
    const ended: Promise<number>[] = [];
    for (let t = 1; t < this.workers.length; t++) {
      const w = this.workers[t];
      if (w === undefined) continue;
      Atomics.store(this.ctl, SYNC.job(t), -1);
      Atomics.notify(this.ctl, SYNC.job(t));
      Atomics.store(this.ctl, SYNC.ready(t), 0);
      ended.push(w.terminate());
      this.workers[t] = undefined;
    }
    return Promise.all(ended).then(() => undefined);
  }

  private startWorkers(): void {
    if (this.workerFailure !== undefined) return;
    for (let t = 1; t < this.threads; t++) {
      if (this.workers[t] !== undefined) continue;
      Atomics.store(this.ctl, SYNC.ready(t), 0);
      Atomics.store(this.ctl, SYNC.error(t), 0);
      Atomics.store(this.ctl, SYNC.job(t), 0);
      Atomics.store(this.ctl, SYNC.busy(t), 0);
      Atomics.store(this.ctl, SYNC.sleeping(t), 0);
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          module: this.module,
          memory: this.memory,
          thread: t,
          JOB: SYNC.job(t),
          BUSY: SYNC.busy(t),
          READY: SYNC.ready(t),
          ERROR: SYNC.error(t),
          SLEEPING: SYNC.sleeping(t),
          DONE: LAYOUT.tasksDone / 4,
          SPIN_MS,
          NAP_MS,
          DEEP_SLEEP_MS,
          TEXT_AT: SYNC.textAt(t),
          TEXT_BYTES: SYNC.textBytes,
        },
      });
      worker.unref();
      // A worker that fails to boot never sets its ready word, so jobs simply go on without it.
      // A worker that dies (it cannot instantiate the module, say) stops taking jobs, and no
      // new ones are started: products go on, on the calling thread alone.
      worker.on("error", (e: unknown) => {
        Atomics.store(this.ctl, SYNC.ready(t), 0);
        this.workers[t] = undefined;
        this.workerFailure ??= e instanceof Error ? e.message : String(e);
      });
      this.workers[t] = worker;
    }
  }

  private layThreadBuffers(threads: number): void {
    this.threads = threads;
    const end = LAYOUT.reserved + threads * THREAD_BUFFER_BYTES;
    if (end > this.memory.buffer.byteLength)
      this.memory.grow(Math.ceil((end - this.memory.buffer.byteLength) / PAGE));
    for (let t = 0; t < threads; t++) {
      const base = LAYOUT.reserved + t * THREAD_BUFFER_BYTES;
      const pa = base;
      const pb = pa + align64(BLOCKING.mc * BLOCKING.kc * 8);
      const tile = pb + align64(BLOCKING.kc * BLOCKING.nc * 8);
      const w = (LAYOUT.threadBuffers + t * LAYOUT.threadBufferStride) / 4;
      this.ctl[w] = pa;
      this.ctl[w + 1] = pb;
      this.ctl[w + 2] = tile;
    }
  }
}

/** The tag of job number `job` ≥ 1: 1…0x7fff, different for any 0x7fff consecutive jobs (the
 *  worker computes it the same way). */
function jobTag(job: number): number {
  return ((job - 1) % 0x7fff) + 1;
}

let runtime: GemmRuntime | undefined;
let kernelShape: GemmKernelShape = DEFAULT_SHAPE;
/** One runtime per kernel shape used so far, so that switching back and forth (a benchmark
 *  interleaving FMA and mul+add) reuses the compiled module, memory and workers. */
const runtimes = new Map<string, GemmRuntime>();

/** The shared runtime, created on first call with one thread per available core. */
export function gemmRuntime(): GemmRuntime {
  if (runtime === undefined) {
    runtime = new GemmRuntime(kernelShape);
    runtime.setThreads(Math.min(availableParallelism(), LAYOUT.maxThreads));
    runtimes.set(JSON.stringify(kernelShape), runtime);
  }
  return runtime;
}

/**
 * The kernel products run with from now on. The runtime of that kernel is kept (or created
 * with the current one's threads and policy); the other stays, idle, for a switch back.
 */
export function setGemmKernelShape(shape: GemmKernelShape): void {
  kernelShape = shape;
  const old = runtime;
  if (old === undefined || JSON.stringify(old.shape) === JSON.stringify(shape)) return;
  let next = runtimes.get(JSON.stringify(shape));
  if (next === undefined) {
    next = new GemmRuntime(shape);
    runtimes.set(JSON.stringify(shape), next);
  }
  // the thread cap and worker policy set so far carry over
  if (next.threadCount !== old.threadCount) next.setThreads(old.threadCount);
  next.policy = old.policy;
  runtime = next;
}

/** Stops the workers of every runtime (they restart lazily). */
export async function shutdownGemmRuntimes(): Promise<void> {
  await Promise.all([...runtimes.values()].map((r) => r.shutdown()));
}

/** The kernel shape the next product runs with. */
export function gemmKernelShape(): GemmKernelShape {
  return kernelShape;
}

/** True once `gemmRuntime()` has been called (for tests of lazy start). */
export function gemmRuntimeStarted(): boolean {
  return runtime !== undefined;
}
