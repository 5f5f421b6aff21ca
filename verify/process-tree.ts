/**
 * Stopping the programs specformer starts, and everything they start: the process tree read from
 * /proc (Linux) and signalled deepest first, the process group each program leads, and the hooks
 * that stop every tracked group when this process exits or receives a signal.
 *
 * verify/process.ts speaks the protocol; this module only knows pids, groups and signals.
 */
import { readdirSync, readFileSync } from "node:fs";

/**
 * Signal the program and everything it started, deepest first, waiting for each level to be
 * gone before signalling its parents: a parent still alive reaps its dying child, so no process
 * is orphaned into a zombie (a container's PID 1 often reaps nothing). With SIGTERM the climb
 * stops at a level that survives (its parents must outlive it); SIGKILL always reaches the top,
 * then sweeps the process group for anything that left the tree. Linux reads the tree from
 * /proc; elsewhere the process group is signalled at once.
 */
export async function signalTree(root: number, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  const levels = descendantLevels(root);
  if (levels === undefined) {
    killQuietly(-root, signal);
    return;
  }
  for (let depth = levels.length - 1; depth >= 1; depth--) {
    const pids = levels[depth]!;
    for (const pid of pids) killQuietly(pid, signal);
    const gone = await waitGone(pids, LEVEL_WAIT_MS);
    if (!gone && signal === "SIGTERM") return;
  }
  killQuietly(root, signal);
  if (signal === "SIGKILL") killQuietly(-root, signal);
}

/** How long a level of the tree gets to disappear after a signal before its parents get one. */
const LEVEL_WAIT_MS = 100;

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone (ESRCH), or not ours to signal (EPERM)
  }
}

/** One line of /proc/PID/stat, the fields this module reads. */
interface ProcStat {
  readonly pid: number;
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
}

/** Every process's state, parent and group from /proc, or undefined where there is no /proc. */
function procStats(): ProcStat[] | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const out: ProcStat[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, "latin1");
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so parse after
    // the last ')'
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [state, ppid, pgrp] = rest;
    out.push({ pid: Number(e), state: state ?? "", ppid: Number(ppid), pgrp: Number(pgrp) });
  }
  return out;
}

/** Pids by depth below `root`: `[[root], children, ...]`, or undefined without /proc. */
function descendantLevels(root: number): number[][] | undefined {
  const stats = procStats();
  if (stats === undefined) return undefined;
  const children = new Map<number, number[]>();
  for (const { pid, ppid } of stats) {
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const levels: number[][] = [[root]];
  for (;;) {
    const next = levels[levels.length - 1]!.flatMap((p) => children.get(p) ?? []);
    if (next.length === 0 || levels.length > 64) break;
    levels.push(next);
  }
  return levels;
}

/** Wait (at most `ms`) until none of `pids` exists any more: each has exited and been reaped. */
async function waitGone(pids: readonly number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = pids.some((p) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    });
    if (!alive) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ------------------------------------------------------------------------------ process groups

/**
 * Process groups of programs started and not yet stopped (group id → grace period in ms). Each
 * program leads its own group (`detached`), and whatever it forks stays in that group unless it
 * calls setsid itself; so signalling the group reaches grandchildren that outlived their parent.
 */
const liveGroups = new Map<number, number>();
/** A signal arrived: no new program is started from now on. */
let stopping = false;

/** Has this process received a signal (so no new program may start)? */
export function isStopping(): boolean {
  return stopping;
}

/**
 * Track the process group a program leads, so that it is stopped on every way out of this
 * process; `graceMs` is how long it gets after SIGTERM before SIGKILL.
 */
export function trackGroup(pgid: number, graceMs: number): void {
  liveGroups.set(pgid, graceMs);
  registerExitHook();
}
/** How long a group gets to disappear after SIGKILL before it is given up on. */
const KILL_WAIT_MS = 2000;

/** Does any process of group `pgid` still run? Zombies (exited, not yet reaped) do not count. */
function groupAlive(pgid: number): boolean {
  const stats = procStats();
  if (stats === undefined) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  return stats.some((p) => p.pgrp === pgid && p.state !== "Z" && p.state !== "X");
}

async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!groupAlive(pgid)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** SIGTERM to the whole group, SIGKILL after `graceMs`, and wait until none of it runs. */
export async function stopGroup(pgid: number, graceMs: number): Promise<void> {
  if (groupAlive(pgid)) {
    killQuietly(-pgid, "SIGTERM");
    if (!(await waitGroupGone(pgid, graceMs))) {
      killQuietly(-pgid, "SIGKILL");
      await waitGroupGone(pgid, KILL_WAIT_MS);
    }
  }
  liveGroups.delete(pgid);
}

/** Stop every program still running (SIGTERM, SIGKILL after its grace period) and wait for them. */
async function stopAllImplementations(): Promise<void> {
  await Promise.all([...liveGroups].map(([pgid, grace]) => stopGroup(pgid, grace)));
}

/** The same, synchronously, for the `exit` event (nothing asynchronous runs there). */
function stopAllNow(): void {
  const groups = [...liveGroups];
  if (groups.length === 0) return;
  for (const [pgid] of groups) killQuietly(-pgid, "SIGTERM");
  const grace = Math.min(Math.max(...groups.map(([, g]) => g)), KILL_WAIT_MS);
  const deadline = Date.now() + grace;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (groups.some(([pgid]) => groupAlive(pgid)) && Date.now() < deadline) {
    Atomics.wait(nap, 0, 0, 10);
  }
  for (const [pgid] of groups) if (groupAlive(pgid)) killQuietly(-pgid, "SIGKILL");
  liveGroups.clear();
}

let exitHookRegistered = false;

/**
 * On every way out of this process, its programs are stopped: the `exit` event (normal end,
 * `process.exit`, an uncaught error) stops them synchronously; SIGINT, SIGTERM and SIGHUP stop
 * them (TERM, then KILL after the grace period), then the signal takes its default course —
 * unless the host program listens for it too, in which case the host decides.
 */
function registerExitHook(): void {
  if (exitHookRegistered) return;
  exitHookRegistered = true;
  process.on("exit", stopAllNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      stopping = true;
      void stopAllImplementations().finally(() => {
        process.removeListener(signal, onSignal);
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
    };
    process.on(signal, onSignal);
  }
}
