/**
 * The implementation as a verify run drives it: requests go to the current program; a program
 * stopped by a fault is restarted (at most `maxRestarts` times) and the request retried once;
 * once it cannot be, every later check is skipped with the reason.
 */
import { ImplementationError } from "../autodiff/implementation.js";
import type {
  BackwardRequest,
  ForwardRequest,
  Implementation,
} from "../autodiff/implementation.js";
import type { FaultInfo, VerifyOptions } from "./results.js";

export function faultInfo(e: ImplementationError): FaultInfo {
  return {
    message: e.message,
    ...(e.detail?.stderrTail !== undefined && e.detail.stderrTail !== ""
      ? { stderrTail: e.detail.stderrTail }
      : {}),
    ...(e.detail?.line !== undefined ? { line: e.detail.line } : {}),
  };
}

/** The implementation is stopped for good: the check was not run (it is skipped, not failed again). */
export class StoppedForGood extends ImplementationError {
  override name = "StoppedForGood";
  constructor(message: string) {
    super(message, { kind: "stopped" });
  }
}

/** A program that was stopped after a fault answers every later request with an error of kind `stopped`. */
function isStopped(e: unknown): e is ImplementationError {
  return e instanceof ImplementationError && e.kind === "stopped" && !(e instanceof StoppedForGood);
}

/** The fault an implementation met while no request was waiting (process implementations record one). */
export function lateFault(impl: Implementation): ImplementationError | undefined {
  const f = (impl as { readonly fault?: unknown }).fault;
  return f instanceof ImplementationError && f.kind !== "declined" ? f : undefined;
}

/**
 * The implementation as the run drives it: requests go to the current program; when it has been
 * stopped by an earlier fault, a fresh one is started (if allowed) and the request retried once.
 */
export class Driver {
  impl: Implementation;
  restarts = 0;
  dead: string | undefined;
  lateFault: ImplementationError | undefined;
  readonly notes: string[] = [];

  constructor(
    impl: Implementation,
    private readonly opts: VerifyOptions,
  ) {
    this.impl = impl;
  }

  async call<T>(f: (impl: Implementation) => Promise<T>): Promise<T> {
    if (this.dead !== undefined) throw new StoppedForGood(this.dead);
    try {
      return await f(this.impl).catch((e: unknown) => {
        // an in-process implementation's own exception is its fault, reported like a process's
        if (e instanceof ImplementationError) throw e;
        throw new ImplementationError(
          `${this.impl.name} threw ` +
            `${e instanceof Error ? `${e.name}: ${e.message}` : `a non-Error value: ${String(e)}`}`,
          { kind: "failed" },
        );
      });
    } catch (e) {
      if (!isStopped(e)) throw e;
      const max = this.opts.maxRestarts ?? 3;
      if (this.opts.restart === undefined || this.restarts >= max) {
        this.dead =
          this.opts.restart === undefined
            ? `the implementation was stopped by an earlier fault and cannot be restarted: ${(e as Error).message}`
            : `the implementation was stopped by an earlier fault and was not ` +
              `restarted again (${max} restart${max === 1 ? "" : "s"} already): ` +
              `${(e as Error).message}`;
        this.notes.push(this.dead);
        throw new StoppedForGood(this.dead);
      }
      this.restarts++;
      const old = this.impl;
      await old.close?.().catch(() => undefined);
      try {
        this.impl = await this.opts.restart();
      } catch (err) {
        this.dead = `the implementation could not be restarted after a fault: ${(err as Error).message}`;
        this.notes.push(this.dead);
        throw new StoppedForGood(this.dead);
      }
      this.notes.push(
        `restarted the implementation after it was stopped (${(e as Error).message.split("\n")[0]})`,
      );
      return await f(this.impl);
    }
  }

  /** The driver as an Implementation (for laws and gradient checks, which call it directly). */
  asImplementation(): Implementation {
    const self = this;
    const base = this.impl;
    const out: Implementation = {
      name: base.name,
      formulas: base.formulas,
      backward: base.backward,
      dtypes: base.dtypes,
      ...(base.capabilities !== undefined ? { capabilities: base.capabilities } : {}),
      forward: (req: ForwardRequest) => self.call((i) => i.forward(req)),
    };
    if (base.backwardPass !== undefined) {
      (out as { backwardPass?: Implementation["backwardPass"] }).backwardPass = (
        req: BackwardRequest,
      ) =>
        self.call((i) => {
          if (i.backwardPass === undefined)
            throw new ImplementationError(`${i.name} has no backward pass`);
          return i.backwardPass(req);
        });
    }
    return out;
  }
}
