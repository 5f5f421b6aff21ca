import { describe, expect, it } from "vitest";
import { PlotError, renderSvg, type TopLevelSpec } from "./plot.js";
import { markGroups, parseXml } from "./xml.js";

describe("renderSvg", () => {
  it("renders a line chart headless as well-formed SVG with one path per series", async () => {
    const values = [
      { x: 1, y: 2, s: "alpha" },
      { x: 2, y: 3, s: "alpha" },
      { x: 1, y: 1, s: "beta" },
      { x: 2, y: 0.5, s: "beta" },
    ];
    const { svg, warnings } = await renderSvg({
      data: { values },
      mark: "line",
      encoding: {
        x: { field: "x", type: "quantitative" },
        y: { field: "y", type: "quantitative" },
        color: { field: "s", type: "nominal" },
      },
    } as TopLevelSpec);
    expect(warnings).toEqual([]);
    const { root, elements } = parseXml(svg);
    expect(root.name).toBe("svg");
    expect(markGroups(elements, "line")).toHaveLength(2);
    expect(svg).toContain(">alpha<");
    expect(svg).toContain(">beta<");
  });
  it("is deterministic (committed plots do not churn)", async () => {
    const spec = {
      data: { values: [{ a: 1, b: 2 }] },
      mark: "point",
      encoding: {
        x: { field: "a", type: "quantitative" },
        y: { field: "b", type: "quantitative" },
      },
    } as TopLevelSpec;
    expect((await renderSvg(spec)).svg).toBe((await renderSvg(spec)).svg);
  });
  it("reports vega-lite's warnings instead of printing them", async () => {
    const { warnings } = await renderSvg({
      data: { values: [{ a: 1 }] },
      mark: "point",
      encoding: { x: { field: "a", type: "quantitative", scale: { type: "log", zero: true } } },
    } as unknown as TopLevelSpec);
    expect(warnings.length).toBeGreaterThan(0);
  });
  it("wraps a specification vega-lite cannot compile in a PlotError", async () => {
    await expect(
      renderSvg({ data: { values: [] }, mark: "nonsense" } as unknown as TopLevelSpec),
    ).rejects.toThrow(PlotError);
    await expect(
      renderSvg({ data: { values: [] }, mark: "nonsense" } as unknown as TopLevelSpec),
    ).rejects.toThrow(/^the plot specification does not compile: ./);
  });
});
