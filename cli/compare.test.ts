/** `specformer compare` errors carry the command's prefix, like every other command's. */
import { describe, expect, test } from "vitest";
import type { Io } from "./io.js";
import { main } from "./main.js";

describe("specformer compare", () => {
  test("an unreadable file is exit 2 with 'specformer compare: ' and the file's problem on stderr", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { out: (s) => void out.push(s), err: (s) => void err.push(s), tty: false };
    const code = await main(
      ["compare", "/nonexistent/a.safetensors", "/nonexistent/b.safetensors"],
      io,
    );
    expect(code).toBe(2);
    expect(out).toEqual([]);
    expect(err.join("")).toBe(
      "specformer compare: /nonexistent/a.safetensors: cannot read: no such file\n",
    );
  });
});
