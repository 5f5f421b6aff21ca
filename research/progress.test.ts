import { describe, expect, it } from "vitest";
import { Progress } from "./progress.js";

function sink(tty: boolean) {
  const out: string[] = [];
  return { out, sink: { write: (s: string) => void out.push(s), tty } };
}

describe("Progress", () => {
  it("without a terminal writes one line per finished stage", () => {
    const { out, sink: s } = sink(false);
    const p = new Progress(s, "study");
    p.stage("first", 3);
    p.tick();
    p.tick();
    p.tick();
    p.stage("second", 2);
    p.tick("detail");
    p.end();
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/^study: first — 3\/3 in \d+\.\d s\n$/);
    expect(out[1]).toMatch(/^study: second — 1\/2 in \d+\.\d s\n$/);
  });
  it("on a terminal redraws a bar in place and ends the stage with a line", () => {
    const { out, sink: s } = sink(true);
    const p = new Progress(s, "study", 10);
    p.stage("work", 4);
    for (let i = 0; i < 4; i++) p.tick(`item ${i}`);
    p.end();
    // every redraw clears the line first; the first draw shows an empty bar
    expect(out.every((l) => l.startsWith("\r\x1b[2K"))).toBe(true);
    expect(out[0]).toContain(`work ${"░".repeat(10)} 0/4`);
    // the last tick always draws: a full bar
    expect(out.some((l) => l.includes(`${"█".repeat(10)} 4/4`))).toBe(true);
    expect(out[out.length - 1]).toMatch(/study: work — 4\/4 in \d+\.\d s\n$/);
  });
  it("silent reports nothing and never throws", () => {
    const p = Progress.silent();
    p.stage("x", 1);
    p.tick();
    p.end();
    p.end();
  });
});
