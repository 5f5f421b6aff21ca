/**
 * The verify report as one self-contained HTML page, laid out as the terminal report: the
 * summary, the origins of the failures (the headline first), the formula table with undeclared
 * formulas collapsed and its legend, the first divergence highlighted, and for each failing
 * tensor an error heatmap and a histogram of log10 relative error. Charts are Vega-Lite specs
 * rendered to SVG here, in Node (`vega.View.toSVG`), and
 * inlined: the page has no script and loads nothing from the network.
 */
import { REPORT_MARKER_COMMENT } from "./report-files.js";
import type * as vl from "vega-lite";
import { shapeToString } from "../autodiff/tensor.js";
import type { Tensor } from "../autodiff/tensor.js";
import { formatError, formatValue } from "../golden/compare.js";
import type { TensorReport } from "../golden/compare.js";
import type { Hint } from "./diagnose.js";
import {
  budgetText,
  countsOf,
  exitCodeOf,
  LEGEND,
  originErrorText,
  originWhereText,
  outputsFirst,
  splitDeclared,
} from "./report.js";
import type { FirstDivergence, Origin, VerifyReport } from "./run.js";

/** HTML-escaped text. */
export function esc(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** Largest heatmap side in cells; bigger tensors are max-pooled in blocks. */
const MAX_CELLS = 64;
/** Highest log10 budget shown; NaN/±Inf mismatches are drawn at this value. */
const LOG_BUDGET_CAP = 16;

let svgCount = 0;

/**
 * Vega numbers the ids inside each SVG from 0 (`gradient_0`, `clip1`); inlined in one page they
 * would collide, so each SVG's ids (and the references to them) get a prefix of their own.
 */
function uniqueIds(svg: string, prefix: string): string {
  const ids = [...svg.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!);
  let out = svg;
  for (const id of new Set(ids)) {
    const q = id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    out = out
      .replace(new RegExp(`(\\sid=")${q}"`, "g"), `$1${prefix}-${id}"`)
      .replace(new RegExp(`url\\(#${q}\\)`, "g"), `url(#${prefix}-${id})`)
      .replace(new RegExp(`href="#${q}"`, "g"), `href="#${prefix}-${id}"`);
  }
  return out;
}

async function toSvg(spec: vl.TopLevelSpec): Promise<string> {
  // vega and vega-lite load here, on the first chart: `verify` without --html never pays for them
  const [vega, vegaLite] = await Promise.all([import("vega"), import("vega-lite")]);
  const compiled = vegaLite.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return uniqueIds(await view.toSVG(), `v${++svgCount}`);
  } finally {
    view.finalize();
  }
}

/** Per element: the share of the tolerance budget `|a − e| / (atol + rtol·|e|)` (∞ for NaN/Inf mismatches). */
function budgets(expected: Tensor, actual: Tensor, rtol: number, atol: number): Float64Array {
  const out = new Float64Array(expected.size);
  for (let i = 0; i < expected.size; i++) {
    const e = expected.data[i]!;
    const a = actual.data[i]!;
    if (e === a || (Number.isNaN(e) && Number.isNaN(a))) continue;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      out[i] = Infinity;
      continue;
    }
    const allowed = atol + rtol * Math.abs(e);
    out[i] = allowed > 0 ? Math.abs(a - e) / allowed : Infinity;
  }
  return out;
}

/**
 * Error heatmap: rows are every index but the last axis (flattened), columns the last axis; the
 * colour is log10 of the budget share, centred on 0 (exactly at tolerance).
 */
export async function heatmapSvg(
  expected: Tensor,
  actual: Tensor,
  rtol: number,
  atol: number,
  title: string,
): Promise<string> {
  const cols = expected.rank === 0 ? 1 : expected.shape[expected.rank - 1]!;
  const rows = cols === 0 ? 0 : expected.size / cols;
  const b = budgets(expected, actual, rtol, atol);
  const pr = Math.max(1, Math.ceil(rows / MAX_CELLS));
  const pc = Math.max(1, Math.ceil(cols / MAX_CELLS));
  const values: Array<{ row: number; col: number; v: number }> = [];
  for (let r = 0; r < rows; r += pr) {
    for (let c = 0; c < cols; c += pc) {
      let m = 0;
      for (let i = r; i < Math.min(rows, r + pr); i++)
        for (let j = c; j < Math.min(cols, c + pc); j++) m = Math.max(m, b[i * cols + j]!);
      const v = m === 0 ? -6 : Math.min(LOG_BUDGET_CAP, Math.max(-6, Math.log10(m)));
      values.push({ row: r / pr, col: c / pc, v });
    }
  }
  const nr = Math.ceil(rows / pr);
  const nc = Math.ceil(cols / pc);
  const cell = Math.max(4, Math.min(30, Math.floor(420 / Math.max(nr, nc, 1))));
  const hi = Math.max(1, ...values.map((x) => x.v));
  const pooled = pr > 1 || pc > 1 ? ` (max over ${pr}×${pc} blocks)` : "";
  return toSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: {
      text: title,
      subtitle: `log10 of |a − e| / (atol + rtol·|e|)${pooled}`,
      fontSize: 13,
      subtitleFontSize: 11,
    },
    width: nc * cell,
    height: nr * cell,
    data: { values },
    mark: { type: "rect" },
    encoding: {
      x: {
        field: "col",
        type: "ordinal",
        title: pc > 1 ? `column (÷${pc})` : "column",
        axis: { labelOverlap: true },
      },
      y: {
        field: "row",
        type: "ordinal",
        title: pr > 1 ? `row (÷${pr})` : "row",
        axis: { labelOverlap: true },
      },
      color: {
        field: "v",
        type: "quantitative",
        title: "log10",
        scale: {
          domain: [-6, 0, hi],
          range: ["#f7fbff", "#fff5b0", "#b30000"],
          interpolate: "rgb",
        },
      },
    },
    config: { view: { stroke: null }, background: "transparent" },
  } as vl.TopLevelSpec);
}

/**
 * Histogram of log10 relative error |a − e|/|e| over elements with e ≠ 0 (exact ones at the
 * floor). When no element has a finite e ≠ 0 (a 0/−∞ mask), the absolute error |a − e| instead;
 * `null` when no finite pair is left (every mismatch is NaN or ±∞).
 */
export async function histogramSvg(
  expected: Tensor,
  actual: Tensor,
  rtol: number,
  title: string,
): Promise<string | null> {
  const floor = expected.dtype === "f32" ? -9 : -18;
  const rel: Array<{ lr: number }> = [];
  const abs: Array<{ lr: number }> = [];
  let skipped = 0;
  for (let i = 0; i < expected.size; i++) {
    const e = expected.data[i]!;
    const a = actual.data[i]!;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      skipped++;
      continue;
    }
    const d = Math.abs(a - e);
    abs.push({ lr: d === 0 ? floor : Math.max(floor, Math.log10(d)) });
    if (e === 0) {
      skipped++;
      continue;
    }
    rel.push({ lr: d === 0 ? floor : Math.max(floor, Math.log10(d / Math.abs(e))) });
  }
  const relative = rel.length > 0;
  const values = relative ? rel : abs;
  if (values.length === 0) return null;
  const what = relative ? "log10 |a − e| / |e|" : "log10 |a − e| (no element has a finite e ≠ 0)";
  const notShown = relative
    ? `${skipped} with e = 0 or non-finite not shown`
    : `${expected.size - abs.length} non-finite not shown`;
  const note =
    `${values.length} elements${(relative ? skipped : expected.size - abs.length) > 0 ? `; ${notShown}` : ""}; ` +
    `exact matches at ${floor}`;
  const layers: unknown[] = [
    {
      mark: { type: "bar", color: "#6a51a3" },
      encoding: {
        x: {
          field: "lr",
          type: "quantitative",
          bin: { maxbins: 40, extent: [floor, Math.max(2, ...values.map((v) => Math.ceil(v.lr)))] },
          title: what,
        },
        y: { aggregate: "count", type: "quantitative", title: "elements" },
      },
    },
  ];
  if (rtol > 0 && relative) {
    layers.push({
      data: { values: [{ x: Math.log10(rtol), label: "rtol" }] },
      layer: [
        {
          mark: { type: "rule", color: "#b30000", strokeDash: [4, 3] },
          encoding: { x: { field: "x", type: "quantitative" } },
        },
        {
          mark: { type: "text", color: "#b30000", align: "left", dx: 3, dy: -4, baseline: "top" },
          encoding: {
            x: { field: "x", type: "quantitative" },
            y: { value: 0 },
            text: { field: "label" },
          },
        },
      ],
    });
  }
  return toSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: {
      text: `${title}: ${relative ? "relative" : "absolute"} error`,
      subtitle: note,
      fontSize: 13,
      subtitleFontSize: 11,
    },
    width: 320,
    height: 170,
    data: { values },
    layer: layers,
    config: { background: "transparent" },
  } as vl.TopLevelSpec);
}

function hintsHtml(hints: readonly Hint[]): string {
  if (hints.length === 0) return "";
  return `<ul class="hints">${hints
    .map(
      (h) =>
        `<li><span class="tag ` +
        `${h.evidence}">${h.evidence === "match" ? "match" : "pattern"}</span> ` +
        `${esc(h.message)}</li>`,
    )
    .join("")}</ul>`;
}

function tensorSummary(t: TensorReport): string {
  if (t.problem !== null) return esc(`${t.name}: ${t.problem}`);
  const worst =
    t.worst !== null
      ? `; worst element ${shapeToString(t.worst.index)}: expected ` +
        `${formatValue(t.worst.expected, t.expectedDtype, t.worst.actual)}, ` +
        `actual ${formatValue(t.worst.actual, t.actualDtype, t.worst.expected)}`
      : "";
  return esc(
    `${t.name} ${t.expectedDtype ?? ""} ` +
      `${shapeToString(t.expectedShape ?? [])}: ${t.mismatched} of ${t.size} ` +
      `elements outside tolerance, max abs err ${formatError(t.maxAbsError)}, ` +
      `max rel err ${formatError(t.maxRelError)}, budget ` +
      `${budgetText(t.budgetUsed)} (rtol ${formatError(t.tolerance.rtol)}, ` +
      `atol ${formatError(t.tolerance.atol)})${worst}`,
  );
}

async function chartsHtml(
  expected: Tensor,
  actual: Tensor,
  rtol: number,
  atol: number,
  title: string,
): Promise<string> {
  if (expected.size !== actual.size || expected.size === 0) return "";
  const [h, g] = await Promise.all([
    heatmapSvg(expected, actual, rtol, atol, `${title}: error`),
    histogramSvg(expected, actual, rtol, title),
  ]);
  return (
    `<div class="charts"><figure ` +
    `class="heatmap">${h}` +
    `</figure>` +
    (g === null
      ? `<p class="meta">every mismatch is NaN or ±∞: no error histogram</p>`
      : `<figure class="histogram">${g}</figure>`) +
    `</div>`
  );
}

async function divergenceHtml(d: FirstDivergence): Promise<string> {
  const r = d.report;
  const charts =
    d.values !== undefined && r !== null
      ? await chartsHtml(
          d.values.expected,
          d.values.actual,
          r.tolerance.rtol,
          r.tolerance.atol,
          d.tensor,
        )
      : "";
  return (
    `<section class="first-divergence" id="first-divergence">
<h2>First divergence: <code>${esc(d.formula)}</code></h2>
<p>${esc(d.kind === "golden" ? "golden case" : d.kind === "gradient" ? "gradient check on" : "law")} ` +
    `<code>${esc(d.case)}</code>, tensor <code>${esc(d.tensor)}</code> — ` +
    `<strong>${esc(d.origin)}</strong></p>
${d.path.length > 1 ? `<p class="path">${d.path.map((p) => `<code>${esc(p)}</code>`).join(" › ")}</p>` : ""}
<p>${esc(d.explanation)}</p>
${r !== null ? `<p class="tensor">${tensorSummary(r)}</p>` : ""}
${hintsHtml(d.hints)}
${d.replay !== undefined ? `<p>replay: <code>${esc(d.replay)}</code></p>` : ""}
${charts}
</section>`
  );
}

function statusCell(s: string): string {
  return `<td class="st-${s}">${esc(s)}</td>`;
}

/** The terminal report's table: declared formulas, then the others on one line, then the legend. */
function formulaTable(report: VerifyReport): string {
  const { declared, undeclared } = splitDeclared(report);
  const rows = declared.map((r) => {
    const g = r.golden;
    const ran = g.pass + g.fail;
    const golden = ran + g.fault === 0 ? "-" : `${g.pass}/${ran + g.fault}`;
    const other = [
      g.declined > 0 ? `${g.declined} declined` : "",
      g.fault > 0 ? `${g.fault} fault` : "",
      g.skipped > 0 ? `${g.skipped} skipped` : "",
    ]
      .filter(Boolean)
      .join(", ");
    const laws =
      r.laws.pass + r.laws.fail === 0 ? "-" : `${r.laws.pass}/${r.laws.pass + r.laws.fail}`;
    const bad =
      g.fail + g.fault > 0 || r.gradient === "fail" || r.gradient === "fault" || r.laws.fail > 0;
    // a passing row's errors are within tolerance (its budget says how far): shown as "ok"
    const errCell = (x: number | null) =>
      g.fail > 0 ? `<td>${x === null ? "-" : esc(formatError(x))}</td>` : `<td class="ok">ok</td>`;
    const budget =
      `<td${r.budget !== null && r.budget > 1 ? ` class="st-fail"` : ""}` +
      `>${esc(budgetText(r.budget))}</td>`;
    return (
      `<tr class="${bad ? "bad" : ""}"><td><code>${esc(r.formula)}` +
      `</code></td><td${g.fail + g.fault > 0 ? ` class="st-fail"` : ""}` +
      `>${golden}</td><td>${esc(other)}</td>${errCell(r.maxAbs)}` +
      `${errCell(r.maxRel)}${budget}` +
      `${r.gradient === null ? "<td>-</td>" : statusCell(r.gradient)}` +
      `<td${r.laws.fail > 0 ? ` class="st-fail"` : ""}>${laws}</td></tr>`
    );
  });
  const table =
    `<table class="formulas"><thead><tr><th>formula</th><th>golden</th><th>not ` +
    `run</th><th>max abs err</th><th>max rel ` +
    `err</th><th>budget</th><th>gradient</th><th>laws</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
  const collapsed =
    undeclared.length > 0
      ? `<p class="meta undeclared">not declared (not checked): ` +
        `${undeclared.map((r) => `<code>${esc(r.formula)}</code>`).join(", ")}</p>`
      : "";
  return `${table}\n${collapsed}\n<p class="meta legend">${LEGEND.map(esc).join(" ")}</p>`;
}

/** The failures grouped by origin, the headline (most upstream) first. */
function originsHtml(origins: readonly Origin[]): string {
  const items = origins.map((o, i) => {
    const explains =
      `explains ${o.count} failing ` +
      `check${o.count === 1 ? "" : "s"}` +
      `${o.presumed > 0 ? ` (${o.presumed} by their formula, not localised themselves)` : ""}`;
    const e = originErrorText(o);
    return (
      `<li class="${i === 0 ? "headline" : ""}"><strong><code>${esc(o.formula)}</code> ` +
      `(${esc(o.kind)})</strong> — ${esc(originWhereText(o))}; first in ` +
      `<code>${esc(o.firstCase)}</code>; ` +
      `${esc(explains)}` +
      `${e !== "" ? `<br><span class="meta">${esc(e)}</span>` : ""}` +
      `<br>${esc(o.explanation)}${hintsHtml(o.hints)}</li>`
    );
  });
  return (
    `<section class="origins" id="origins"><h2>Origins of the failures ` +
    `(${origins.length}), most upstream ` +
    `first</h2><ol>${items.join("")}</ol></section>`
  );
}

const CSS =
  `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", ` +
  `sans-serif; margin: 24px auto; max-width: 1100px; color: #1a1a1a; ` +
  `padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; ` +
  `margin-top: 28px; } h3 { font-size: 15px; margin: 18px 0 4px; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, monospace; ` +
  `background: #f3f3f3; padding: 0 3px; border-radius: 3px; ` +
  `}
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 700; color: white; }
.verdict.ok { background: #2e7d32; } .verdict.fail { background: #c62828; } .verdict.fault { background: #6d4c41; }
.meta { color: #555; }
table { border-collapse: collapse; margin-top: 8px; } th, td { ` +
  `border-bottom: 1px solid #e2e2e2; padding: 3px 10px; text-align: left; ` +
  `}
th { background: #fafafa; } tr.bad td:first-child code { background: #ffd6d6; }
.st-pass { color: #2e7d32; } .st-fail, .st-fault { color: #c62828; ` +
  `font-weight: 700; } .st-declined { color: #a36b00; } .st-skipped { ` +
  `color: #888; }
.first-divergence { border: 2px solid #c62828; background: #fff5f5; ` +
  `border-radius: 6px; padding: 4px 18px 14px; margin-top: 18px; ` +
  `}
.first-divergence h2 { color: #c62828; }
.origins ol { padding-left: 22px; } .origins li { margin-bottom: 8px; ` +
  `} .origins li.headline { border-left: 4px solid #c62828; padding-left: ` +
  `8px; }
td.ok { color: #888; } .legend { font-size: 12px; }
.hints { padding-left: 18px; } .tag { font-size: 11px; padding: 1px 6px; border-radius: 8px; color: white; }
.tag.match { background: #c62828; } .tag.pattern { background: #a36b00; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; align-items: ` +
  `flex-start; } figure { margin: 6px 0; background: white; border: 1px ` +
  `solid #eee; border-radius: 4px; padding: 4px; ` +
  `}
.failure { border-top: 1px solid #e2e2e2; padding-top: 4px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
`;

/** The whole report as one HTML page (no script, no network). */
export async function renderHtmlReport(
  report: VerifyReport,
  opts: { maxCharts?: number } = {},
): Promise<string> {
  const impl = report.implementation;
  const code = exitCodeOf(report);
  const verdict =
    code === 0
      ? `<span class="verdict ok">OK</span>`
      : code === 1
        ? `<span class="verdict fail">FAILED</span>`
        : `<span class="verdict fault">COULD NOT VERIFY</span>`;
  const parts: string[] = [];
  for (const kind of ["golden", "gradient", "property"] as const) {
    const c = countsOf(report.results, kind);
    const total = c.pass + c.fail + c.declined + c.fault + c.skipped;
    if (total === 0) continue;
    parts.push(
      `${kind === "property" ? "laws" : kind === "golden" ? "golden cases" : "gradient checks"}: ` +
        `${c.pass} pass, ${c.fail} ` +
        `fail${c.fault > 0 ? `, ${c.fault} fault` : ""}` +
        `${c.declined > 0 ? `, ${c.declined} declined` : ""}` +
        `${c.skipped > 0 ? `, ${c.skipped} skipped` : ""}`,
    );
  }
  const body: string[] = [];
  body.push(`<h1>specformer verify ${verdict}</h1>`);
  body.push(
    `<p class="meta">${esc(impl.name)}${impl.command !== undefined ? ` — <code>${esc(impl.command)}</code>` : ""}; ` +
      `${impl.formulas.length} formulas, dtypes ` +
      `${esc(impl.dtypes.join(", "))}; seed ${report.seed}; ` +
      `${(report.timeMs / 1000).toFixed(1)} s</p>`,
  );
  body.push(`<p>${esc(parts.join("; "))}</p>`);
  // the terminal report's order: origins, the formula table (undeclared ones collapsed, legend), the headline's details
  const origins = report.origins ?? [];
  if (origins.length > 0) body.push(originsHtml(origins));
  body.push(`<h2>Formulas</h2>`, formulaTable(report));
  if (report.firstDivergence !== null) body.push(await divergenceHtml(report.firstDivergence));

  const failing = report.results.filter((r) => r.status === "fail");
  if (failing.length > 0) {
    body.push(`<h2>Failures (${failing.length})</h2>`);
    let charts = 0;
    for (const r of failing) {
      const items: string[] = [
        `<div class="failure"><h3><code>${esc(r.kind === "golden" ? r.case : `${r.kind} ${r.case}`)}</code> ` +
          `<span class="meta">${esc(r.formula)}</span></h3>`,
      ];
      for (const t of outputsFirst((r.tensors ?? []).filter((x) => !x.ok)))
        items.push(`<p class="tensor">${tensorSummary(t)}</p>`);
      const d = r.localisation?.divergence;
      if (d !== null && d !== undefined) {
        // a case of the diverging formula itself says no more than its own tensors and hints
        if (d.formula !== r.formula || d.how !== "output")
          items.push(
            `<p>localised: <code>${esc(d.tensor)}</code> ` +
              `(${esc(d.formula)}${d.kind === "backward" ? ", backward" : ""}, ` +
              `${esc(d.origin)}) — ${esc(d.explanation)}</p>`,
          );
        items.push(hintsHtml(d.hints));
      }
      items.push(hintsHtml(r.hints ?? []));
      if (r.message !== undefined && r.kind !== "golden") items.push(`<p>${esc(r.message)}</p>`);
      if (r.replay !== undefined) items.push(`<p>replay: <code>${esc(r.replay)}</code></p>`);
      for (const v of r.values ?? []) {
        if (charts >= (opts.maxCharts ?? 24)) break;
        charts++;
        items.push(await chartsHtml(v.expected, v.actual, v.rtol, v.atol, `${r.case} ${v.name}`));
      }
      items.push(`</div>`);
      body.push(items.join("\n"));
    }
  }
  const faults = report.results.filter((r) => r.status === "fault");
  if (faults.length > 0) {
    body.push(`<h2>Faults (${faults.length})</h2>`);
    for (const r of faults) {
      body.push(
        `<div class="failure"><h3><code>${esc(r.case)}` +
          `</code></h3><p>${esc(r.fault?.message ?? r.message ?? "")}` +
          `</p>${r.fault?.stderrTail !== undefined ? `<pre>${esc(r.fault.stderrTail)}</pre>` : ""}</div>`,
      );
    }
  }
  const declined = report.results.filter((r) => r.status === "declined");
  if (declined.length > 0) {
    body.push(
      `<h2>Declined by the implementation ` +
        `(${declined.length})</h2><ul>${declined
          .map(
            (r) =>
              `<li><code>${esc(r.case)}</code>: ` +
              `${esc((r.message ?? "").replace(/^implementation `[^`]*` /, ""))}</li>`,
          )
          .join("")}</ul>`,
    );
  }
  if (report.notes.length > 0)
    body.push(`<h2>Notes</h2><ul>${report.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`);
  return `<!doctype html>
${REPORT_MARKER_COMMENT}
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>specformer verify — ${esc(impl.name)}</title>
<style>${CSS}</style>
</head>
<body>
${body.join("\n")}
</body>
</html>
`;
}
