import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkFolderTarget, FileAccessError, makeFolders, readRegularFile } from "./files.js";

const message = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FileAccessError);
    return (e as Error).message;
  }
  throw new Error("expected an error");
};

describe("readRegularFile", () => {
  it("reads a regular file whole", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-"));
    writeFileSync(join(dir, "a"), "hello");
    expect(readRegularFile(join(dir, "a")).toString()).toBe("hello");
  });

  it("checks the size before reading, naming the bound", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-"));
    writeFileSync(join(dir, "big"), Buffer.alloc(2048));
    expect(
      message(() => readRegularFile(join(dir, "big"), { maxBytes: 1024, what: "config" })),
    ).toBe(
      `${join(dir, "big")}: cannot read: 2048 bytes is larger than the 1024 bytes a config may be`,
    );
  });

  it("refuses folders, FIFOs and devices, and names a missing file", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-"));
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(message(() => readRegularFile(fifo))).toBe(
      `${fifo}: cannot read: is a FIFO (named pipe), not a regular file (only regular files are read)`,
    );
    expect(message(() => readRegularFile("/dev/zero"))).toBe(
      "/dev/zero: cannot read: is a character device, not a regular file (only regular files are read)",
    );
    expect(message(() => readRegularFile(dir))).toBe(
      `${dir}: cannot read: is a directory, not a file`,
    );
    expect(message(() => readRegularFile(join(dir, "none")))).toBe(
      `${join(dir, "none")}: cannot read: no such file`,
    );
  });
});

describe("checkFolderTarget and makeFolders", () => {
  it("accepts a new folder under a writable one without creating anything", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-"));
    checkFolderTarget(join(dir, "a", "b"));
    expect(readdirSync(dir)).toEqual([]);
    makeFolders(join(dir, "a", "b"));
    expect(statSync(join(dir, "a", "b")).isDirectory()).toBe(true);
    makeFolders(join(dir, "a", "b")); // existing: nothing to do
  });

  it("refuses a path through a file, naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-"));
    writeFileSync(join(dir, "f"), "x");
    expect(message(() => checkFolderTarget(join(dir, "f")))).toBe(
      `${join(dir, "f")}: exists and is not a folder`,
    );
    expect(message(() => checkFolderTarget(join(dir, "f", "x")))).toBe(
      `${join(dir, "f", "x")}: cannot create this folder: ${join(dir, "f")} is a file, not a folder`,
    );
    expect(message(() => makeFolders(join(dir, "f", "x")))).toBe(
      `${join(dir, "f", "x")}: cannot create this folder: ${join(dir, "f")} is a file, not a folder`,
    );
  });

  it("fails fast under /proc, where Node's recursive mkdir loops forever", () => {
    const start = performance.now();
    expect(message(() => checkFolderTarget("/proc/nope/x"))).toBe(
      "/proc/nope/x: cannot write there: /proc does not accept new entries (ENOENT)",
    );
    expect(message(() => makeFolders("/proc/nope/x"))).toBe(
      "/proc/nope/x: cannot create this folder: mkdir /proc/nope failed (ENOENT)",
    );
    expect(existsSync("/proc/nope")).toBe(false);
    expect(performance.now() - start).toBeLessThan(1000);
  });
});
