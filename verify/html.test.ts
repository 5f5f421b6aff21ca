/**
 * The HTML report in a real browser (Debian's Chromium, driven by playwright-core): no console
 * errors, no network, the heatmaps render (SVG rect marks of non-zero size), the layout follows
 * the terminal report (origins, formula table, collapsed undeclared formulas, legend) and the
 * first divergence is highlighted. Saves a screenshot (to $SPECFORMER_SCREENSHOT, e.g. docs/img/verify-report.png,
 * or the temp folder). Skipped, saying why, without /usr/bin/chromium.
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, test } from "vitest";
import { Tensor } from "../autodiff/tensor.js";
import { esc, heatmapSvg, histogramSvg, renderHtmlReport } from "./html.js";
import { verify } from "./run.js";
import { plantedGraphImplementation, plantMaskShift } from "./planted.testing.js";

// the browser-side functions of page.evaluate run in the page (the project compiles without DOM types)
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare function getComputedStyle(e: unknown): any;

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium)
  console.warn(
    `verify/html.test.ts: browser test skipped — ${CHROMIUM} is absent (CI installs Debian's chromium)`,
  );

describe("charts rendered in Node", () => {
  test("a heatmap has one rect mark per cell; big tensors are max-pooled", async () => {
    const e = Tensor.from([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const a = Tensor.from([
      [1, 2.5, 3],
      [4, 5, Number.NEGATIVE_INFINITY],
    ]);
    const svg = await heatmapSvg(e, a, 1e-7, 1e-7, "y");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/aria-roledescription="rect mark"/g)?.length).toBe(6);
    const big = Tensor.zeros([200, 130]);
    const pooled = await heatmapSvg(big, big, 1e-7, 1e-7, "big");
    expect(pooled.match(/aria-roledescription="rect mark"/g)?.length).toBe(
      Math.ceil(200 / 4) * Math.ceil(130 / 3),
    );
    expect(pooled).toContain("max over 4×3 blocks");
  });
  test("a histogram of log10 relative error with the rtol line", async () => {
    const e = Tensor.from([1, 2, 4, 0]);
    const a = Tensor.from([1, 2.002, 4.4, 1]);
    const svg = (await histogramSvg(e, a, 1e-3, "y"))!;
    expect(svg).toContain("rtol");
    expect(svg).toContain("1 with e = 0 or non-finite not shown");
    // a 0/−∞ mask: absolute error over the finite pairs; nothing finite left: no histogram
    const mask = Tensor.from([0, Number.NEGATIVE_INFINITY, 0]);
    expect(await histogramSvg(mask, Tensor.from([0, 0, 0]), 1e-7, "m")).toContain(
      "log10 |a − e| (no element has a finite e ≠ 0)",
    );
    expect(
      await histogramSvg(Tensor.from([Number.NEGATIVE_INFINITY]), Tensor.from([0]), 1e-7, "m"),
    ).toBeNull();
  });
  test("escaping", () => {
    expect(esc(`<a href="x">&</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
  });
});

describe.skipIf(!hasChromium)("the page in headless Chromium", () => {
  test("no console errors, no network, heatmaps render, the first divergence is highlighted; screenshot", async () => {
    // block_pre_ln is not declared: the report collapses it to one line
    const impl = plantedGraphImplementation(
      "GPT port with an off-by-one causal mask",
      plantMaskShift(1),
      ["causal_mask", "softmax", "attention"],
    );
    const report = await verify(impl, {
      formulas: ["softmax", "causal_mask", "attention", "block_pre_ln"],
      dtype: "f64",
      gradients: false,
    });
    const html = await renderHtmlReport(report);
    // nothing to fetch: no script, stylesheet link, source or external url(); SVG-internal url(#id) only
    expect(html).not.toMatch(/<script|<link|src=|@import|url\((?!#)/i);
    const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!);
    expect(new Set(ids).size).toBe(ids.length);
    const dir = mkdtempSync(join(tmpdir(), "specformer-html-"));
    const file = join(dir, "report.html");
    writeFileSync(file, html);

    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 1500 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));
      page.on("request", (r) => requests.push(r.url()));
      const url = pathToFileURL(file).href;
      await page.goto(url, { waitUntil: "load" });
      expect(problems).toEqual([]);
      expect(requests).toEqual([url]);

      const sizes = await page.evaluate(() =>
        [...document.querySelectorAll("figure.heatmap svg")].map((svg: any) => {
          const cells: Array<{ width: number; height: number }> = [
            ...svg.querySelectorAll('path[aria-roledescription="rect mark"]'),
          ].map((p: any) => p.getBoundingClientRect());
          return {
            cells: cells.length,
            minWidth: Math.min(...cells.map((r) => r.width)),
            minHeight: Math.min(...cells.map((r) => r.height)),
          };
        }),
      );
      expect(sizes.length).toBeGreaterThan(2);
      for (const s of sizes) {
        expect(s.cells).toBeGreaterThan(0);
        expect(s.minWidth).toBeGreaterThan(0);
        expect(s.minHeight).toBeGreaterThan(0);
      }
      const first = await page.evaluate(() => {
        const box = document.querySelector("section.first-divergence");
        if (box === null) return null;
        const style = getComputedStyle(box);
        return {
          text: box.textContent ?? "",
          border: style.borderTopColor,
          heatmaps: box.querySelectorAll("figure.heatmap svg").length,
          top: box.getBoundingClientRect().top,
        };
      });
      expect(first).not.toBeNull();
      expect(first!.text).toContain("First divergence: causal_mask");
      expect(first!.text).toContain("just above the causal diagonal");
      expect(first!.border).toBe("rgb(198, 40, 40)");
      expect(first!.heatmaps).toBe(1);
      // laid out as the terminal report: origins at the top, then the formula table (undeclared
      // formulas on one line, the legend), then the headline's details, all in the first screen
      const layout = await page.evaluate(() => {
        const top = (sel: string) =>
          document.querySelector(sel)?.getBoundingClientRect().top ?? null;
        const headline = document.querySelector("section.origins li.headline");
        const okCells = [...document.querySelectorAll("table.formulas tr:not(.bad) td.ok")].length;
        return {
          origins: top("section.origins"),
          table: top("table.formulas"),
          undeclared: top("p.undeclared"),
          legend: top("p.legend"),
          headline: headline?.textContent ?? "",
          okCells,
        };
      });
      expect(layout.origins).not.toBeNull();
      expect(layout.origins!).toBeLessThan(200);
      expect(layout.headline).toContain("causal_mask (forward)");
      expect(layout.table!).toBeGreaterThan(layout.origins!);
      expect(layout.undeclared!).toBeGreaterThan(layout.table!);
      expect(layout.legend!).toBeGreaterThan(layout.undeclared!);
      expect(first!.top).toBeGreaterThan(layout.legend!);
      expect(first!.top).toBeLessThan(1500); // in the first screen (the screenshot's viewport)
      // passing rows show "ok" in both error columns rather than a raw relative error
      expect(layout.okCells).toBeGreaterThan(0);
      const shot = process.env["SPECFORMER_SCREENSHOT"] ?? join(dir, "verify-report.png");
      await page.screenshot({ path: shot });
      expect(existsSync(shot)).toBe(true);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
