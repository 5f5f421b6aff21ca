/**
 * Report files (`--junit`, `--html`, `--json-file`): checked before the run starts, written
 * atomically after it. A path is refused when its folder is missing or not writable, when it
 * names a folder or anything but a regular file, when two reports share it, when it ends in
 * `.safetensors` (a golden file), or when it holds a file that specformer's report writer did
 * not write — unless `force` is given. Every report format carries `REPORT_MARKER` near its
 * start (a comment in XML and HTML, a field in JSON), which is how an earlier report is known.
 */
import {
  accessSync,
  closeSync,
  constants,
  fsyncSync,
  lstatSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** The text every report file carries within its first `MARKER_WINDOW` bytes. */
export const REPORT_MARKER = "specformer-report";
/** An XML/HTML comment holding the marker, placed right after the XML declaration or doctype. */
// no "--" inside: XML comments cannot hold it
export const REPORT_MARKER_COMMENT =
  `<!-- ${REPORT_MARKER}: written by specformer verify, which may replace ` + `this file -->`;
const MARKER_WINDOW = 4096;

/** A report file the command was asked to write: the flag that named it and its path. */
export interface ReportTarget {
  readonly flag: string;
  readonly path: string;
}

/** Report paths that cannot be used; the message lists every problem, one per line. */
export class ReportPathError extends Error {
  override name = "ReportPathError";
}

/** Was the file at `path` written by specformer's report writer (its marker near the start)? */
function isSpecformerReport(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const buf = Buffer.alloc(MARKER_WINDOW);
    const n = readSync(fd, buf, 0, MARKER_WINDOW, 0);
    return buf.subarray(0, n).toString("latin1").includes(REPORT_MARKER);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Check report paths before anything runs; throws `ReportPathError` naming each bad one.
 * `force` allows replacing an existing regular file that is not a specformer report.
 */
export function checkReportPaths(
  targets: readonly ReportTarget[],
  opts: { readonly force?: boolean } = {},
): void {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const { flag, path } of targets) {
    const where = `${flag} ${JSON.stringify(path)}`;
    if (path.trim() === "") {
      problems.push(`${flag} needs a file path`);
      continue;
    }
    if (/\.safetensors$/i.test(path)) {
      problems.push(
        `${where}: a .safetensors file is a golden case or tensor file, not a report; choose another name`,
      );
      continue;
    }
    const abs = resolve(path);
    const parent = dirname(abs);
    let parentReal: string;
    try {
      if (!statSync(parent).isDirectory()) {
        problems.push(`${where}: ${parent} is not a folder`);
        continue;
      }
      parentReal = realpathSync(parent);
    } catch {
      problems.push(`${where}: the folder ${parent} does not exist`);
      continue;
    }
    try {
      accessSync(parent, constants.W_OK);
    } catch {
      problems.push(`${where}: the folder ${parent} is not writable`);
      continue;
    }
    // the same file under two names (a symlinked folder, ./x and x) is one path
    const key = join(parentReal, basename(abs));
    const other = seen.get(key);
    if (other !== undefined) {
      problems.push(`${where}: the same file as ${other}; each report needs its own file`);
      continue;
    }
    seen.set(key, where);
    let exists = true;
    try {
      lstatSync(abs);
    } catch {
      exists = false;
    }
    if (!exists) continue;
    let st;
    try {
      st = statSync(abs);
    } catch {
      problems.push(`${where}: is a symbolic link to nothing`);
      continue;
    }
    if (st.isDirectory()) {
      problems.push(
        `${where}: is a folder; give a file path inside it, e.g. ` +
          `${JSON.stringify(join(path, "report" + extensionOf(flag)))}`,
      );
      continue;
    }
    if (!st.isFile()) {
      problems.push(
        `${where}: is not a regular file (a device, FIFO or socket); reports are written only to regular files`,
      );
      continue;
    }
    if (!opts.force && !isSpecformerReport(abs)) {
      problems.push(
        `${where}: the file exists and is not a specformer report; give --force to replace it`,
      );
    }
  }
  if (problems.length > 0) throw new ReportPathError(problems.join("\n"));
}

function extensionOf(flag: string): string {
  return flag.includes("junit") ? ".xml" : flag.includes("html") ? ".html" : ".json";
}

/**
 * Write `text` to `path` atomically: a temporary file in the same folder, flushed to disk, then
 * renamed over `path` — a reader sees the old file or the new one, never half of either, and a
 * failed write leaves the old file as it was.
 */
export function writeFileAtomically(path: string, text: string): void {
  const abs = resolve(path);
  const tmp = join(
    dirname(abs),
    `.${basename(abs)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`,
  );
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx", 0o644);
    const buf = Buffer.from(text, "utf8");
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, abs);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw e;
  }
}
