/** `specformer compare` errors carry the command's prefix, like every other command's. */
import { describe, expect, test } from "vitest";
import { recordingIo } from "./main.testing.js";
import { main } from "./main.js";

describe("specformer compare", () => {
  test("an unreadable file is exit 2 with 'specformer compare: ' and the file's problem on stderr", async () => {
    const { io, out, err } = recordingIo();
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
