/**
 * Plots as SVG: a Vega-Lite specification compiled with vega-lite's `compile` and rendered
 * headless by a vega View (`renderer: "none"`, `toSVG()`): no network, no browser. Text widths are
 * vega's estimate without a canvas, so the same data always gives the same bytes.
 */
import type { TopLevelSpec } from "vega-lite";

export type { TopLevelSpec };

export class PlotError extends Error {
  override name = "PlotError";
}

/** Styling shared by every study's plot. */
const PLOT_CONFIG = {
  font: "Helvetica, Arial, sans-serif",
  view: { stroke: "#ccc" },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#eee" },
  // long variant names are the point of a legend here: do not truncate them
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 400 },
  title: { fontSize: 14, anchor: "start" },
} as const;

/**
 * A study's plot: the Vega-Lite schema, the title and subtitle, and `body` — the view (layers,
 * concatenations or a facet) with its data and encodings.
 */
export function plotSpec(text: string, subtitle: string, body: object): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text, subtitle },
    ...body,
  } as unknown as TopLevelSpec;
}

/** The SVG and whatever vega-lite or vega warned about while making it (a clean plot has none). */
export interface RenderedPlot {
  readonly svg: string;
  readonly warnings: readonly string[];
}

/** A vega logger that keeps warnings instead of printing them. */
function collectingLogger(warnings: string[]) {
  let level = 2; // Warn
  const logger = {
    level(l?: number) {
      if (l === undefined) return level;
      level = l;
      return logger;
    },
    error(...args: readonly unknown[]) {
      throw new PlotError(args.map(String).join(" "));
    },
    warn(...args: readonly unknown[]) {
      warnings.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
      return logger;
    },
    info: () => logger,
    debug: () => logger,
  };
  return logger;
}

/**
 * Render a Vega-Lite specification to an SVG document.
 * @throws PlotError when vega-lite cannot compile the specification (with vega-lite's message).
 */
export async function renderSvg(spec: TopLevelSpec): Promise<RenderedPlot> {
  const warnings: string[] = [];
  const logger = collectingLogger(warnings);
  // loaded on first use, so importing research/ (or the CLI) does not pay for vega
  const [{ parse, View }, { compile }] = await Promise.all([import("vega"), import("vega-lite")]);
  let vg;
  try {
    vg = compile({ config: PLOT_CONFIG, ...spec } as TopLevelSpec, {
      logger: logger as never,
    }).spec;
  } catch (e) {
    throw new PlotError(`the plot specification does not compile: ${(e as Error).message}`);
  }
  const view = new View(parse(vg), { renderer: "none", logger: logger as never });
  try {
    return { svg: await view.toSVG(), warnings };
  } finally {
    view.finalize();
  }
}
