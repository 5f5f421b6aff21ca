/**
 * Driver of the PyTorch peer (torch_peer.py): a child process of Debian's Python that takes one
 * JSON job per line and answers one JSON line each.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

/** Debian's interpreter: the one with torch and NumPy (the `python3` first on PATH may lack them). */
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./torch_peer.py", import.meta.url));

/** Why torch cannot run here, or undefined when it can. */
export function torchUnavailable(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ["-c", "import torch, numpy"], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0)
    return `${PYTHON} cannot import torch and numpy: ${(r.stderr || r.error?.message || "").trim().split("\n").at(-1)}`;
  return undefined;
}

export class TorchPeer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: ((line: string) => void)[] = [];
  private stderr = "";
  private exited: string | undefined;

  constructor() {
    this.child = spawn(PYTHON, [SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
    createInterface({ input: this.child.stdout }).on("line", (line) =>
      this.pending.shift()?.(line),
    );
    this.child.stderr.on(
      "data",
      (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)),
    );
    this.child.on("exit", (code, signal) => {
      this.exited = `torch peer exited (${signal ?? `code ${code}`})${this.stderr ? `: ${this.stderr.trim()}` : ""}`;
      for (const p of this.pending.splice(0)) p(JSON.stringify({ error: this.exited }));
    });
  }

  /** Send one job and wait for its answer; a job that fails in Python rejects with its error. */
  request<T>(job: Record<string, unknown>): Promise<T> {
    if (this.exited !== undefined) return Promise.reject(new Error(this.exited));
    return new Promise<T>((resolve, reject) => {
      this.pending.push((line) => {
        let r: unknown;
        try {
          r = JSON.parse(line);
        } catch {
          reject(new Error(`torch peer printed a line that is not JSON: ${line.slice(0, 200)}`));
          return;
        }
        const err = (r as { error?: string }).error;
        if (err !== undefined) reject(new Error(`torch peer, job ${String(job["kind"])}: ${err}`));
        else resolve(r as T);
      });
      this.child.stdin.write(JSON.stringify(job) + "\n");
    });
  }

  /** Close stdin and wait for the process to end. */
  async close(): Promise<void> {
    if (this.exited !== undefined) return;
    await new Promise<void>((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.stdin.end();
    });
  }
}
