/**
 * Reading untrusted files with bounds, and making output folders without surprises.
 *
 * A path given on the command line may name anything: a folder, a FIFO that blocks the reader
 * forever, `/dev/zero` that never ends, a file far larger than memory. {@link readRegularFile}
 * reads only regular files, checks the size before reading a byte of content, and reads at most
 * that many bytes. {@link makeFolders} creates a folder one level at a time: Node's
 * `mkdirSync(p, { recursive: true })` loops forever on some paths (`/proc/nope/x`).
 */
import {
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  rmdirSync,
  statSync,
  type Stats,
} from "node:fs";
import { dirname, resolve } from "node:path";

/** The error for a path that cannot be read or written as asked; the message names the path. */
export class FileAccessError extends Error {
  override name = "FileAccessError";
  readonly path: string;
  /** The problem, without the path prefix. */
  readonly problem: string;
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.path = path;
    this.problem = problem;
  }
}

/** Largest file read by default: 4 GiB (a GPT-2 large checkpoint in float32 is 3.1 GB). */
const MAX_FILE_BYTES = 4 * 2 ** 30;

/** What a stat says a path is, in words, for messages. */
function kindOf(s: Stats): string {
  if (s.isDirectory()) return "a folder";
  if (s.isFIFO()) return "a FIFO (named pipe)";
  if (s.isCharacterDevice()) return "a character device";
  if (s.isBlockDevice()) return "a block device";
  if (s.isSocket()) return "a socket";
  if (s.isSymbolicLink()) return "a symbolic link";
  return s.isFile() ? "a file" : "not a regular file";
}

function sizeText(n: number): string {
  if (n < 2 ** 20) return `${n} bytes`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(1)} GiB`;
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOTDIR") return "a component of the path is not a folder";
  if (code === "ELOOP") return "too many symbolic links";
  return code ?? (err as Error).message;
}

/**
 * The bytes of a regular file of at most `maxBytes` bytes. Folders, FIFOs, devices and sockets are
 * refused from their `stat`, before the file is opened; the size is checked before reading; the
 * open uses O_NONBLOCK (so a FIFO swapped in after the check cannot block) and the opened file is
 * checked again, and no more than its stated size is read.
 * @param what  names the file in messages ("config", "checkpoint"); default "file".
 * @throws FileAccessError naming the path and what is wrong.
 */
export function readRegularFile(
  path: string,
  opts: { maxBytes?: number; what?: string } = {},
): Buffer {
  const maxBytes = opts.maxBytes ?? MAX_FILE_BYTES;
  const what = opts.what ?? "file";
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw new FileAccessError(path, `cannot read: ${errnoText(err)}`);
  }
  const check = (s: Stats): void => {
    if (s.isDirectory()) throw new FileAccessError(path, `cannot read: is a directory, not a file`);
    if (!s.isFile())
      throw new FileAccessError(
        path,
        `cannot read: is ${kindOf(s)}, not a regular file (only regular files are read)`,
      );
    if (s.size > maxBytes)
      throw new FileAccessError(
        path,
        `cannot read: ${sizeText(s.size)} is larger than the ${sizeText(maxBytes)} a ${what} may be`,
      );
  };
  check(st);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new FileAccessError(path, `cannot read: ${errnoText(err)}`);
  }
  try {
    const now = fstatSync(fd);
    check(now);
    const buf = Buffer.allocUnsafe(now.size);
    let at = 0;
    while (at < buf.length) {
      const n = readSync(fd, buf, at, buf.length - at, at);
      if (n === 0) break;
      at += n;
    }
    if (at !== buf.length)
      throw new FileAccessError(
        path,
        `cannot read: the file shrank from ${now.size} to ${at} bytes while it was read`,
      );
    return buf;
  } catch (err) {
    if (err instanceof FileAccessError) throw err;
    throw new FileAccessError(path, `cannot read: ${errnoText(err)}`);
  } finally {
    closeSync(fd);
  }
}

/** A regular file's UTF-8 text, with the checks of {@link readRegularFile}. */
export function readRegularText(
  path: string,
  opts: { maxBytes?: number; what?: string } = {},
): string {
  return readRegularFile(path, opts).toString("utf8");
}

/**
 * Walk up from `dir` to the nearest folder that exists: that folder (the root when nothing exists)
 * and the missing levels below it, deepest first.
 * @throws FileAccessError when a level exists but is not a folder, or cannot be examined
 * (`statFailure` starts that message).
 */
function nearestExistingFolder(
  dir: string,
  statFailure: string,
): { existing: string; missing: string[] } {
  const abs = resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    let st: Stats | undefined;
    try {
      st = statSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR")
        throw new FileAccessError(dir, `${statFailure}: ${p}: ${errnoText(err)}`);
    }
    if (st !== undefined) {
      if (!st.isDirectory())
        throw new FileAccessError(
          dir,
          p === abs
            ? "exists and is not a folder"
            : `cannot create this folder: ${p} is ${kindOf(st)}, not a folder`,
        );
      return { existing: p, missing };
    }
    const up = dirname(p);
    if (up === p) return { existing: p, missing };
    missing.push(p);
    p = up;
  }
}

/**
 * Check, without creating anything, that `dir` is or can become a folder we may write into: it is
 * a folder, or its nearest existing ancestor is one, and that one is writable.
 * @throws FileAccessError naming the path and the reason.
 */
export function checkFolderTarget(dir: string): void {
  const p = nearestExistingFolder(dir, "cannot create or use this folder").existing;
  // The nearest existing folder must accept a new entry. A probe folder, removed at once, is the
  // only honest test: access(W_OK) says yes to root on /proc, where mkdir then fails.
  const probe = `${p}/.specformer-probe-${process.pid}`;
  try {
    mkdirSync(probe);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new FileAccessError(
      dir,
      `cannot write there: ${p} does not accept new entries (${code})`,
    );
  }
  rmdirSync(probe);
}

/**
 * Create `dir` and its missing parents one level at a time (`mkdir -p`), never with Node's
 * recursive mkdir, which can loop forever on paths under /proc.
 * @throws FileAccessError naming the level that could not be made.
 */
export function makeFolders(dir: string): void {
  const { missing } = nearestExistingFolder(dir, "cannot create this folder");
  for (const m of missing.reverse()) {
    try {
      mkdirSync(m);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && statSync(m).isDirectory()) continue;
      throw new FileAccessError(
        dir,
        `cannot create this folder: mkdir ${m} failed ` +
          `(${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
}
