/**
 * `ProcessImplementation`: any program that speaks the JSON-lines protocol (`docs/PROTOCOL.md`)
 * as an `Implementation`. specformer starts the program through the shell, writes one request
 * per line to its stdin and reads one response per line from its stdout; stderr is kept (the
 * last few kB) for reports.
 *
 * Faults never hang or crash the caller: a timeout, an exit or crash, a non-JSON line, a wrong
 * or repeated id, an `error` answer and a malformed tensor each reject the request concerned
 * with an `ImplementationError` that says what happened, quoting the offending line or the
 * stderr tail. After a fault that leaves the stream unusable (timeout, exit, garbage, wrong id)
 * the process is stopped and later requests fail fast, saying why. Stopping the program with
 * everything it started (process trees, process groups, exit hooks) is verify/process-tree.ts.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { constants as bufferConstants } from "node:buffer";
import { constants as osConstants } from "node:os";
import { ImplementationError } from "../autodiff/implementation.js";
import type {
  ImplementationErrorKind,
  BackwardRequest,
  BackwardResult,
  ForwardRequest,
  ForwardResult,
  Implementation,
} from "../autodiff/implementation.js";
import type { DType, NamedTensors } from "../autodiff/tensor.js";
import {
  BINARY_HOST,
  KeptTensors,
  PROTOCOL_VERSION,
  ProtocolError,
  checkFrameLengths,
  checkHello,
  checkResponse,
  encodeConfig,
  encodeNamedTensors,
  encodeRequest,
  namedTensorsFromJSON,
  quoteLine,
} from "./protocol.js";
import type { HelloResult, Method } from "./protocol.js";
import type { Capabilities } from "../autodiff/capabilities.js";
import { isStopping, signalTree, stopGroup, trackGroup } from "./process-tree.js";

/** Options of `ProcessImplementation.start`. */
export interface ProcessOptions {
  /** Longest wait for the answer to one `forward` / `backward` request, in ms. */
  readonly timeoutMs: number;
  /** Longest wait for the `hello` answer (program start-up included). Default `max(timeoutMs, 30 000)`. */
  readonly startupTimeoutMs?: number;
  /** Working directory of the program. Default: this process's. */
  readonly cwd?: string;
  /** Variables added to (or, with value `undefined`, removed from) this process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * How long `close()` waits for the program to exit after stdin is closed, and again after
   * SIGTERM, before SIGKILL. Default 2000 ms.
   */
  readonly graceMs?: number;
  /** Longest response line accepted, in bytes. Default `DEFAULT_MAX_LINE_BYTES` (256 MiB). */
  readonly maxLineBytes?: number;
  /** Bytes of stderr kept for reports. Default 4096. */
  readonly stderrTailBytes?: number;
  /**
   * Offer binary tensors in `hello` (docs/PROTOCOL.md, "Binary tensors"); the program decides.
   * Default true (on a little-endian host). `false`: JSON numbers only.
   */
  readonly binary?: boolean;
  /** Largest binary frame accepted, in bytes. Default (and ceiling): Node's largest Buffer. */
  readonly maxFrameBytes?: number;
}

/**
 * Default bound on one response line: 256 MiB, about 13 million float64 numbers at 20 bytes
 * each. V8 cannot hold a string beyond ~512 MiB, so a line that long could not be parsed anyway.
 */
const DEFAULT_MAX_LINE_BYTES = 256 * 1024 * 1024;

const DEFAULT_GRACE_MS = 2000;
/** Longest delay Node's timers honour (2^31 − 1 ms, about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

function checkDelay(ms: number, name: string): void {
  if (!(Number.isFinite(ms) && ms > 0 && ms <= MAX_TIMER_MS)) {
    throw new ImplementationError(
      `ProcessImplementation.start: ${name} must be a positive number of ` +
        `milliseconds up to ${MAX_TIMER_MS} (Node's timer limit), got ${String(ms)}`,
    );
  }
}
const DEFAULT_STDERR_TAIL = 4096;
const MIN_STARTUP_MS = 30_000;
/** After the program exits, how long to wait for the rest of its stdout and stderr before reporting. */
const STDERR_DRAIN_MS = 200;
/** Characters per pipe write: far below V8's string limit, large enough that a typical request is one write. */
const WRITE_CHUNK_CHARS = 1 << 22;

/** Why the process no longer takes requests. */
interface Stopped {
  readonly kind: "timeout" | "exit" | "protocol" | "closed" | "spawn";
  /** The message of the fault that stopped it (already reported to the request that met it). */
  readonly message: string;
}

/** The error kind a request meets when the process stops for this reason while it waits. */
const ERROR_KIND: Readonly<Record<Stopped["kind"], ImplementationErrorKind>> = {
  timeout: "timeout",
  exit: "crash",
  spawn: "crash",
  protocol: "protocol",
  closed: "stopped",
};

/** A response's result and the binary frames that followed its line (empty without binary tensors). */
interface Reply {
  readonly result: Record<string, unknown>;
  readonly frames: readonly Uint8Array[];
  readonly timing: Omit<RequestTiming, "encodeMs" | "decodeMs">;
}

/**
 * Where the wall time of the last `forward` / `backwardPass` went, in ms: encoding the request,
 * writing it until the pipe took the last byte (the program reads meanwhile), waiting for the
 * first byte of the answer (the program computing, and encoding its answer), receiving the rest
 * of it, and decoding it. Transport is everything but `waitMs`.
 */
export interface RequestTiming {
  readonly encodeMs: number;
  readonly writeMs: number;
  readonly waitMs: number;
  readonly readMs: number;
  readonly decodeMs: number;
  readonly requestBytes: number;
  readonly answerBytes: number;
}

/** A response line whose declared frames are still arriving. */
interface FrameWait {
  readonly parsed: unknown;
  readonly line: string;
  readonly lengths: readonly number[];
  readonly frames: Uint8Array[];
  /** Bytes of the current frame (`frames.length - 1`) received so far. */
  filled: number;
  /** Bytes of every frame received so far, and in all. */
  received: number;
  readonly total: number;
}

interface Pending {
  readonly id: number;
  readonly method: Method;
  readonly what: string;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (e: ImplementationError) => void;
  timer: NodeJS.Timeout | undefined;
  /**
   * performance.now() when the request was sent, its last byte taken by the pipe, and the answer's
   * first byte arrived.
   */
  readonly sentAt: number;
  writtenAt?: number;
  firstByteAt?: number;
  requestBytes: number;
  answerBytes: number;
}

/** An `Implementation` backed by a program speaking the JSON-lines protocol. */
export class ProcessImplementation implements Implementation {
  readonly name: string;
  readonly formulas: readonly string[];
  readonly backward: boolean | readonly string[];
  readonly dtypes: readonly DType[];
  readonly capabilities?: Capabilities;
  /** The validated `hello` answer (with every field the program sent under `raw`). */
  readonly hello: HelloResult;

  private constructor(
    private readonly conn: Connection,
    hello: HelloResult,
  ) {
    this.hello = hello;
    this.name = hello.name;
    this.formulas = hello.formulas;
    this.backward = hello.backward;
    this.dtypes = hello.dtypes;
    if (hello.capabilities !== undefined) this.capabilities = hello.capabilities;
  }

  /**
   * Start `command` through the shell (`/bin/sh -c`), send `hello` and validate the answer.
   * Rejects with an `ImplementationError` (program exits, hangs past `startupTimeoutMs`, prints
   * garbage, or answers `hello` wrongly); the program is stopped before the promise rejects.
   *
   * @example
   * const impl = await ProcessImplementation.start("python3 examples/numpy/impl.py", { timeoutMs: 10_000 });
   * try { const { outputs } = await impl.forward({ formula: "softmax", config: {}, inputs: { x } }); }
   * finally { await impl.close(); }
   */
  static async start(command: string, opts: ProcessOptions): Promise<ProcessImplementation> {
    if (typeof command !== "string" || command.trim().length === 0) {
      throw new ImplementationError(
        `ProcessImplementation.start: command must be a non-empty shell command string, got ${JSON.stringify(command)}`,
      );
    }
    checkDelay(opts.timeoutMs, "timeoutMs");
    if (opts.startupTimeoutMs !== undefined) checkDelay(opts.startupTimeoutMs, "startupTimeoutMs");
    if (opts.graceMs !== undefined) checkDelay(opts.graceMs, "graceMs");
    if (isStopping())
      throw new ImplementationError(
        `ProcessImplementation.start: not starting ${command}: this process is stopping (it received a signal)`,
        { kind: "stopped" },
      );
    const conn = new Connection(command, opts);
    const startup = opts.startupTimeoutMs ?? Math.max(opts.timeoutMs, MIN_STARTUP_MS);
    let hello: HelloResult;
    const offerBinary = opts.binary !== false && BINARY_HOST;
    try {
      const protocol = String(PROTOCOL_VERSION);
      // kept tensors ride on binary frames, so they are offered with them
      const params: Record<string, string> = offerBinary
        ? { protocol, binary: "true", keep: "true" }
        : { protocol };
      const { result } = await conn.request("hello", params, "hello", startup);
      hello = checkHello(result, `${conn.label}: answer to hello`);
    } catch (e) {
      await conn.close(false);
      throw e;
    }
    conn.supportsShutdown = hello.shutdown;
    conn.binary = offerBinary && hello.binary;
    if (conn.binary && hello.keep) conn.kept = new KeptTensors();
    return new ProcessImplementation(conn, hello);
  }

  /** Where the time of the last forward or backward request went (see `RequestTiming`). */
  lastTiming: RequestTiming | undefined;

  /** How tensors travel: `"binary"` frames (negotiated in hello) or `"json"` numbers. */
  get transport(): "binary" | "json" {
    return this.conn.binary ? "binary" : "json";
  }

  /** The shell command the program was started with. */
  get command(): string {
    return this.conn.command;
  }

  /** Process id of the started shell (the program or its parent), while it runs. */
  get pid(): number | undefined {
    return this.conn.pid;
  }

  /** The last bytes the program wrote to stderr (at most `stderrTailBytes`), decoded as UTF-8. */
  stderrTail(): string {
    return this.conn.stderrTail();
  }

  /** Exit code and signal once the program has exited, else `undefined`. */
  get exit(): { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined {
    return this.conn.exitInfo;
  }

  /**
   * A fault no request met: the program exited, or printed garbage or a duplicate answer, while
   * no request was waiting (after its last answer, say). Such a program still faulted; the
   * verify run reports it.
   */
  get fault(): ImplementationError | undefined {
    return this.conn.unreported;
  }

  /** Compute a formula's outputs. Unknown extra outputs in the answer are kept. */
  async forward(req: ForwardRequest): Promise<ForwardResult> {
    return { outputs: await this.exchange("forward", req, null) };
  }

  /** Gradient of Σ_out Σ(out ⊙ cotangent) with respect to each float argument. */
  async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
    return { grads: await this.exchange("backward", req, req.cotangents) };
  }

  /**
   * Stop the program: send `shutdown` if it offered one, close its stdin, wait `graceMs` for it
   * to exit, then SIGTERM, then SIGKILL (children before parents, so none is left a zombie).
   * Idempotent; resolves once the program has exited and every handle is released.
   */
  close(): Promise<void> {
    return this.conn.close(true);
  }

  /**
   * One `forward` or `backward` request: the formula, its config and tensors encoded (the
   * cotangents only for `backward`), then the answer's `outputs` or `grads` decoded; the time each
   * step took is kept in `lastTiming`.
   */
  private async exchange(
    method: "forward" | "backward",
    req: ForwardRequest,
    cotangents: NamedTensors | null,
  ): Promise<NamedTensors> {
    const where = `formula ${req.formula}`;
    this.checkRequest(req, method);
    const t0 = performance.now();
    const sent = this.conn.binary ? [] : undefined;
    const encode = (ts: NamedTensors, role: string) =>
      encodeNamedTensors(ts, (n) => `${role} ${n} of ${where}`, sent, this.conn.kept);
    const params = this.conn.encoding(() => ({
      formula: JSON.stringify(req.formula),
      config: encodeConfig(req.config, where),
      inputs: encode(req.inputs, "input"),
      ...(cotangents !== null ? { cotangents: encode(cotangents, "cotangent") } : {}),
    }));
    const encodeMs = performance.now() - t0;
    const reply = await this.conn.requestKeeping(method, params, `${method} ${req.formula}`, sent);
    const t1 = performance.now();
    const [key, each, asked] =
      method === "forward" ? ["outputs", "output", ""] : ["grads", "grad", " (backward)"];
    const answer = this.conn.decode(() =>
      namedTensorsFromJSON(
        reply.result[key],
        `${this.conn.label}: "${key}" of ${where}${asked}`,
        (n) => `${this.conn.label}: ${each} ${n} of ${where}${asked}`,
        this.conn.binary ? reply.frames : undefined,
      ),
    );
    this.lastTiming = { encodeMs, ...reply.timing, decodeMs: performance.now() - t1 };
    return answer;
  }

  private checkRequest(req: ForwardRequest, method: "forward" | "backward"): void {
    if (!this.formulas.includes(req.formula)) {
      throw new ImplementationError(
        `${this.conn.label} does not implement formula ` +
          `${JSON.stringify(req.formula)} (its hello lists: ` +
          `${this.formulas.join(", ") || "nothing"})`,
      );
    }
    if (method === "backward") {
      const ok =
        this.backward === true ||
        (Array.isArray(this.backward) && this.backward.includes(req.formula));
      if (!ok)
        throw new ImplementationError(
          `${this.conn.label} declares no backward for formula ${req.formula} ` +
            `(hello "backward": ${JSON.stringify(this.backward)})`,
        );
    }
    for (const [name, t] of Object.entries(req.inputs)) {
      if (t !== undefined && t.dtype !== "i32" && !this.dtypes.includes(t.dtype)) {
        throw new ImplementationError(
          `${this.conn.label} computes in ${this.dtypes.join(", ")} only; input ` +
            `${name} of formula ${req.formula} is ${t.dtype}`,
        );
      }
    }
  }
}

// ------------------------------------------------------------------------------ the connection

/** One running program: spawning, line framing, request/response matching, fault handling, shutdown. */
class Connection {
  readonly command: string;
  readonly label: string;
  supportsShutdown = false;
  /** Binary tensors were negotiated in hello: requests and answers may carry frames. */
  binary = false;
  /** Kept tensors were negotiated in hello (docs/PROTOCOL.md, "Kept tensors"). */
  kept: KeptTensors | undefined;
  /** The first fault that stopped the program while no request was pending (see `ProcessImplementation.fault`). */
  unreported: ImplementationError | undefined;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private readonly child: ChildProcess;
  private readonly timeoutMs: number;
  private readonly graceMs: number;
  private readonly maxLineBytes: number;
  private readonly maxFrameBytes: number;
  private readonly stderrLimit: number;
  /** The frames of the last response line, while they arrive. */
  private frameWait: FrameWait | undefined;

  private nextId = 1;
  private readonly answered = new Set<number>();
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped: Stopped | undefined;

  private lineChunks: Buffer[] = [];
  private lineBytes = 0;
  private stderrChunks: Buffer[] = [];
  private stderrBytes = 0;

  private readonly exited: Promise<void>;
  private closing: Promise<void> | undefined;
  /** close() was called: an exit from now on is expected, not a fault (unless a request was waiting). */
  private closeRequested = false;
  private terminating: Promise<void> | undefined;

  constructor(command: string, opts: ProcessOptions) {
    this.command = command;
    this.label = `implementation \`${command.length > 120 ? `${command.slice(0, 120)}…` : command}\``;
    this.timeoutMs = opts.timeoutMs;
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxFrameBytes = Math.min(
      opts.maxFrameBytes ?? bufferConstants.MAX_LENGTH,
      bufferConstants.MAX_LENGTH,
    );
    this.stderrLimit = opts.stderrTailBytes ?? DEFAULT_STDERR_TAIL;

    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    // detached: the program leads its own process group, so it can be stopped with everything
    // it started and does not receive the terminal's Ctrl-C meant for specformer.
    this.child = spawn(command, {
      shell: true,
      cwd: opts.cwd,
      env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    if (this.child.pid !== undefined) trackGroup(this.child.pid, this.graceMs);

    let onExited!: () => void;
    this.exited = new Promise<void>((resolve) => (onExited = resolve));

    this.child.stdout!.on("data", (chunk: Buffer) => this.onStdout(chunk));
    this.child.stderr!.on("data", (chunk: Buffer) => this.onStderr(chunk));
    // Writing to a program that has exited raises EPIPE here; the exit itself is what gets reported.
    this.child.stdin!.on("error", () => {});
    this.child.stdout!.on("error", () => {});
    this.child.stderr!.on("error", () => {});
    this.child.on("error", (err: NodeJS.ErrnoException) => {
      // spawn itself failed (e.g. cwd does not exist): no exit event will follow.
      const message =
        `${this.label} could not be started: ` +
        `${err.message}${opts.cwd !== undefined ? ` (cwd ${JSON.stringify(opts.cwd)})` : ""}`;
      if (this.exitInfo === undefined) this.exitInfo = { code: null, signal: null };
      this.fail({ kind: "spawn", message }, false);
      this.releaseHandles();
      onExited();
    });
    this.child.on("exit", (code, signal) => {
      this.exitInfo = { code, signal };
      // stdout may still hold a last answer and stderr the crash message: let both drain
      // (bounded: a grandchild may keep the pipes open) before reporting.
      const drained = (
        stream: NodeJS.ReadableStream & { readableEnded: boolean; destroyed: boolean },
      ): Promise<void> =>
        new Promise<void>((resolve) => {
          if (stream.readableEnded || stream.destroyed) return resolve();
          const t = setTimeout(resolve, STDERR_DRAIN_MS);
          stream.once("close", () => {
            clearTimeout(t);
            resolve();
          });
        });
      void Promise.all([drained(this.child.stdout!), drained(this.child.stderr!)]).then(() => {
        if ((this.stopped === undefined && !this.closeRequested) || this.pending !== undefined) {
          this.fail({ kind: "exit", message: this.exitMessage() }, false);
        }
        this.releaseHandles();
        onExited();
      });
    });
  }

  get pid(): number | undefined {
    return this.exitInfo === undefined ? this.child.pid : undefined;
  }

  stderrTail(): string {
    const buf = Buffer.concat(this.stderrChunks);
    const text = buf.subarray(Math.max(0, buf.length - this.stderrLimit)).toString("utf8");
    // a cut through a multi-byte character decodes as U+FFFD at the start
    return text.replace(/^\uFFFD+/, "");
  }

  /** Send one request and resolve with its `result`; requests are sent one at a time, in call order. */
  request(
    method: Method,
    params: { readonly [key: string]: string | readonly string[] },
    what: string,
    timeoutMs = this.timeoutMs,
    frames?: readonly Uint8Array[],
  ): Promise<Reply> {
    const run = (): Promise<Reply> =>
      new Promise((resolve, reject) => {
        if (this.stopped !== undefined) return reject(this.stoppedError(what));
        const id = this.nextId++;
        const described = `${what} (request ${id})`;
        const pending: Pending = {
          id,
          method,
          what: described,
          resolve,
          reject,
          timer: undefined,
          sentAt: performance.now(),
          requestBytes: 0,
          answerBytes: 0,
        };
        this.pending = pending;
        pending.timer = setTimeout(() => {
          this.fail(
            {
              kind: "timeout",
              message:
                `${this.label} did not answer ${described} within ${timeoutMs} ` +
                `ms${this.cutSuffix()}; the process was stopped${this.tailSuffix()}`,
            },
            true,
          );
        }, timeoutMs);
        const parts = encodeRequest(id, method, params, frames);
        parts.push("\n");
        const stdin = this.child.stdin!;
        if (!stdin.writable) return; // the exit handler reports it
        for (const chunk of coalesce(parts)) {
          pending.requestBytes += Buffer.byteLength(chunk);
          stdin.write(chunk);
        }
        // the frames follow the line; written as views, so the tensors must not change until sent
        for (const f of frames ?? []) {
          pending.requestBytes += f.byteLength;
          if (f.byteLength > 0) stdin.write(f);
        }
        stdin.write("", () => (pending.writtenAt = performance.now()));
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Encode a request; if that fails, the kept tensors forget the half-encoded one. */
  encoding<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      this.kept?.settle(false);
      throw e;
    }
  }

  /** `request`, then tell the kept tensors whether the program took the request's keeps. */
  async requestKeeping(
    method: Method,
    params: { readonly [key: string]: string | readonly string[] },
    what: string,
    frames?: readonly Uint8Array[],
  ): Promise<Reply> {
    try {
      const reply = await this.request(method, params, what, undefined, frames);
      this.kept?.settle(true);
      return reply;
    } catch (e) {
      this.kept?.settle(false);
      throw e;
    }
  }

  /** Run a decoder of a result; its ProtocolError gains the stderr tail and stays an ImplementationError. */
  decode<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof ProtocolError)
        throw new ProtocolError(e.message, { stderrTail: this.stderrTail() });
      throw e;
    }
  }

  // ---------------------------------------------------------------------------- input

  private onStdout(chunk: Buffer): void {
    const p = this.pending;
    if (p !== undefined) {
      p.firstByteAt ??= performance.now();
      p.answerBytes += chunk.length;
    }
    let start = 0;
    while (start < chunk.length) {
      if (this.frameWait !== undefined) {
        start = this.fillFrames(chunk, start);
        continue;
      }
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      this.pushLinePart(chunk.subarray(start, nl));
      if (this.stopped?.kind === "protocol") return;
      const line = Buffer.concat(this.lineChunks, this.lineBytes).toString("utf8");
      this.lineChunks = [];
      this.lineBytes = 0;
      this.onLine(line);
      start = nl + 1;
    }
    if (start < chunk.length) this.pushLinePart(chunk.subarray(start));
  }

  /** Copy the bytes of `chunk` from `start` into the frames being received; returns where they end. */
  private fillFrames(chunk: Buffer, start: number): number {
    const w = this.frameWait!;
    let at = start;
    while (w.received < w.total && at < chunk.length) {
      const k = w.frames.length - 1;
      const cur = w.frames[k]!;
      const n = Math.min(cur.byteLength - w.filled, chunk.length - at);
      cur.set(chunk.subarray(at, at + n), w.filled);
      w.filled += n;
      w.received += n;
      at += n;
      if (w.filled === cur.byteLength) this.nextFrame(w);
    }
    if (w.received === w.total) {
      this.frameWait = undefined;
      this.onResponse(w.parsed, w.line, w.frames);
    }
    return at;
  }

  /** Open the next frame of `w` that has bytes (empty frames are complete at once). */
  private nextFrame(w: FrameWait): void {
    w.filled = 0;
    while (w.frames.length < w.lengths.length) {
      const len = w.lengths[w.frames.length]!;
      // a buffer of its own (not from Node's pool): tensors view it at offset 0
      w.frames.push(
        len === 0 ? new Uint8Array(0) : new Uint8Array(Buffer.allocUnsafeSlow(len).buffer, 0, len),
      );
      if (len > 0) return;
    }
  }

  private pushLinePart(part: Buffer): void {
    if (part.length === 0) return;
    this.lineBytes += part.length;
    if (this.lineBytes > this.maxLineBytes) {
      const head = Buffer.concat(this.lineChunks.concat(part)).subarray(0, 200).toString("utf8");
      this.lineChunks = [];
      this.lineBytes = 0;
      this.fail(
        {
          kind: "protocol",
          message:
            `${this.label} sent a line longer than ${this.maxLineBytes} bytes (the ` +
            `limit; see docs/PROTOCOL.md, "Message size") while answering ` +
            `${this.pending?.what ?? "nothing"}; it starts ${quoteLine(head)}`,
        },
        true,
      );
      return;
    }
    this.lineChunks.push(part); // stream chunks are fresh buffers: keeping a view is safe
  }

  private onLine(raw: string): void {
    if (this.stopped !== undefined) return; // the stream is no longer trusted (or no longer wanted)
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim().length === 0) return; // blank lines carry nothing; tolerated
    const waiting =
      this.pending === undefined
        ? "while no request was pending"
        : `while waiting for ${this.pending.what}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return this.protocolFault(
        `${this.label} printed a line on stdout that is not JSON (${why}) ` +
          `${waiting}: ${quoteLine(line)}. stdout must carry only protocol lines; ` +
          `print logs to stderr`,
        line,
      );
    }
    const declared =
      typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)["frames"]
        : undefined;
    if (declared !== undefined) {
      if (!this.binary) {
        return this.protocolFault(
          `${this.label} sent a line declaring binary "frames" ${waiting}, but ` +
            `binary tensors were not negotiated in hello (it must answer hello with ` +
            `"binary": true first): ${quoteLine(line)}`,
          line,
        );
      }
      let lengths: number[];
      try {
        lengths = checkFrameLengths(
          declared,
          `${this.label} sent a line ${waiting} whose`,
          this.maxFrameBytes,
        );
      } catch (e) {
        return this.protocolFault(`${(e as Error).message}: ${quoteLine(line)}`, line);
      }
      const total = lengths.reduce((a, b) => a + b, 0);
      if (total > 0) {
        const w: FrameWait = { parsed, line, lengths, frames: [], filled: 0, received: 0, total };
        this.nextFrame(w);
        this.frameWait = w;
        return;
      }
      return this.onResponse(
        parsed,
        line,
        lengths.map(() => new Uint8Array(0)),
      );
    }
    this.onResponse(parsed, line, []);
  }

  /** A complete response: its parsed line and the frames that followed it. */
  private onResponse(parsed: unknown, line: string, frames: readonly Uint8Array[]): void {
    if (this.stopped !== undefined) return;
    const waiting =
      this.pending === undefined
        ? "while no request was pending"
        : `while waiting for ${this.pending.what}`;
    const checked = checkResponse(parsed);
    if ("problem" in checked) {
      return this.protocolFault(
        `${this.label} printed a line that is not a protocol response ` +
          `(${checked.problem}) ${waiting}: ${quoteLine(line)}`,
        line,
      );
    }
    const { response } = checked;
    const pending = this.pending;
    if (pending === undefined) {
      const what = this.answered.has(response.id)
        ? `answered request ${response.id} twice`
        : `sent response id ${response.id}, which no request has`;
      return this.protocolFault(
        `${this.label} ${what} (arrived while no request was pending): ${quoteLine(line)}`,
        line,
      );
    }
    if (response.id !== pending.id) {
      const what = this.answered.has(response.id)
        ? `answered request ${response.id} twice (the second answer arrived while waiting for ${pending.what})`
        : `answered with id ${response.id} while waiting for ${pending.what}`;
      return this.protocolFault(`${this.label} ${what}: ${quoteLine(line)}`, line);
    }
    this.pending = undefined;
    clearTimeout(pending.timer);
    this.answered.add(response.id);
    if ("error" in response) {
      pending.reject(
        new ImplementationError(
          `${this.label} reported an error for ${pending.what}: ${response.error.message}`,
          {
            kind: "declined",
            stderrTail: this.stderrTail(),
            line: line.slice(0, 200),
          },
        ),
      );
    } else {
      const now = performance.now();
      const written = pending.writtenAt ?? pending.sentAt;
      const first = pending.firstByteAt ?? now;
      pending.resolve({
        result: response.result,
        frames,
        timing: {
          writeMs: written - pending.sentAt,
          waitMs: Math.max(0, first - written),
          readMs: now - first,
          requestBytes: pending.requestBytes,
          answerBytes: pending.answerBytes,
        },
      });
    }
  }

  private onStderr(chunk: Buffer): void {
    this.stderrChunks.push(chunk);
    this.stderrBytes += chunk.length;
    // keep at least the last stderrLimit bytes, dropping whole old chunks
    while (
      this.stderrChunks.length > 1 &&
      this.stderrBytes - this.stderrChunks[0]!.length >= this.stderrLimit
    ) {
      this.stderrBytes -= this.stderrChunks.shift()!.length;
    }
  }

  // ---------------------------------------------------------------------------- faults

  private protocolFault(message: string, line: string): void {
    this.fail({ kind: "protocol", message: `${message}${this.tailSuffix()}` }, true, line);
  }

  /** Record the fault that stops the process, reject the pending request with it, and (if asked) stop the process. */
  private fail(stopped: Stopped, terminate: boolean, line?: string): void {
    if (this.stopped === undefined) this.stopped = stopped; // the first fault is the reason
    const pending = this.pending;
    if (
      pending === undefined &&
      stopped.kind !== "closed" &&
      !this.closeRequested &&
      this.unreported === undefined
    ) {
      this.unreported = new ImplementationError(stopped.message, {
        kind: ERROR_KIND[stopped.kind],
        stderrTail: this.stderrTail(),
        ...(line !== undefined ? { line: line.slice(0, 200) } : {}),
      });
    }
    if (pending !== undefined) {
      this.pending = undefined;
      clearTimeout(pending.timer);
      pending.reject(
        new ImplementationError(stopped.message, {
          kind: ERROR_KIND[stopped.kind],
          stderrTail: this.stderrTail(),
          ...(line !== undefined ? { line: line.slice(0, 200) } : {}),
        }),
      );
    }
    if (terminate) void this.terminate();
  }

  private stoppedError(what: string): ImplementationError {
    const s = this.stopped!;
    const after =
      s.kind === "timeout"
        ? "a timeout"
        : s.kind === "exit"
          ? "it exited"
          : s.kind === "protocol"
            ? "a protocol error"
            : s.kind === "spawn"
              ? "it failed to start"
              : "close()";
    return new ImplementationError(
      `${this.label}: cannot send ${what}: implementation was stopped after ${after}: ${s.message}`,
      {
        kind: "stopped",
        stderrTail: this.stderrTail(),
      },
    );
  }

  private exitMessage(): string {
    const { code, signal } = this.exitInfo!;
    const how =
      signal !== null ? `was killed by signal ${signal}` : `exited with code ${String(code)}`;
    const p = this.pending;
    const when =
      p === undefined
        ? this.answered.size === 0
          ? " before answering hello"
          : ""
        : p.method === "hello"
          ? " before answering hello"
          : ` while computing ${p.what}`;
    const hint =
      code === 127
        ? " (the shell could not find the command)"
        : code === 126
          ? " (the command is not executable)"
          : signalHint(code);
    return `${this.label} ${how}${when}${hint}${this.cutSuffix()}${this.tailSuffix()}`;
  }

  /** When an answer's binary frames are still arriving: how much of them came (a truncated frame). */
  private cutSuffix(): string {
    const w = this.frameWait;
    if (w === undefined) return "";
    return (
      `; its answer was cut short: ${w.received} of the ${w.total} bytes of ` +
      `binary frames its line declared arrived (frame ${w.frames.length - 1} ` +
      `of ${w.lengths.length} incomplete)`
    );
  }

  private tailSuffix(): string {
    const tail = this.stderrTail().trimEnd();
    return tail.length > 0 ? `\nstderr tail:\n${tail}` : " (stderr was empty)";
  }

  // ---------------------------------------------------------------------------- shutdown

  close(polite: boolean): Promise<void> {
    if (this.closing === undefined) this.closing = this.doClose(polite);
    return this.closing;
  }

  private async doClose(polite: boolean): Promise<void> {
    this.closeRequested = true;
    if (this.pending !== undefined) {
      // close() does not wait for work in flight: that request fails now, the program is stopped
      this.fail(
        {
          kind: "closed",
          message: `${this.label} was closed while computing ${this.pending.what}`,
        },
        false,
      );
    } else if (polite && this.supportsShutdown && this.stopped === undefined) {
      await this.request("shutdown", {}, "shutdown", this.graceMs).catch(() => undefined);
      // how the program ended its shutdown (exit, or no answer) is no fault of a later request
      this.stopped = undefined;
    }
    this.fail({ kind: "closed", message: `${this.label} was closed` }, false);
    if (this.exitInfo === undefined) {
      this.child.stdin!.end();
      if (!(await this.waitExit(this.graceMs))) await this.terminate();
    }
    await this.exited;
    // whatever the program started and left behind (a forked worker, a `sleep`) is in its group
    if (this.child.pid !== undefined) await stopGroup(this.child.pid, this.graceMs);
  }

  /** SIGTERM, then after `graceMs` SIGKILL; children before parents. Resolves when the program has exited. */
  private terminate(): Promise<void> {
    if (this.terminating === undefined) {
      this.terminating = (async () => {
        if (this.exitInfo !== undefined) return;
        this.child.stdin!.destroy();
        const pid = this.child.pid;
        if (pid !== undefined) await signalTree(pid, "SIGTERM");
        if (await this.waitExit(this.graceMs)) return;
        if (pid !== undefined) await signalTree(pid, "SIGKILL");
        await this.exited;
      })().then(() =>
        this.child.pid !== undefined ? stopGroup(this.child.pid, this.graceMs) : undefined,
      );
    }
    return this.terminating;
  }

  private async waitExit(ms: number): Promise<boolean> {
    if (this.exitInfo !== undefined) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]);
    clearTimeout(timer);
    return done;
  }

  private releaseHandles(): void {
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }
}

/** The shell reports a program killed by signal N as exit code 128 + N: name the signal. */
function signalHint(code: number | null): string {
  if (code === null || code <= 128 || code > 128 + 64) return "";
  const name = Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0];
  return name === undefined ? "" : ` (the shell's code for a program killed by signal ${name})`;
}

/** Pieces of text joined into few chunks of at most about `limit` characters each. */
function coalesce(parts: readonly string[], limit = WRITE_CHUNK_CHARS): string[] {
  // every pipe write is a system call and a wake-up of the reader: a request of many small pieces
  // (a block's dozen tensors, names and separators) goes out in one write, a huge one in a few
  const out: string[] = [];
  let run: string[] = [];
  let size = 0;
  for (const p of parts) {
    if (size > 0 && size + p.length > limit) {
      out.push(run.join(""));
      run = [];
      size = 0;
    }
    run.push(p);
    size += p.length;
  }
  if (run.length > 0) out.push(run.join(""));
  return out;
}
