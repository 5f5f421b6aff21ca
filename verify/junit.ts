/**
 * The verify report as JUnit XML, the format CI systems (GitHub Actions reporters, GitLab,
 * Jenkins, Azure) read: one `<testsuite>` per kind and formula, one `<testcase>` per golden case,
 * gradient check or law. A failing check is a `<failure>`, an implementation that could not be
 * driven an `<error>`, a declined or skipped check `<skipped>`.
 */
import { REPORT_MARKER_COMMENT } from "./report-files.js";
import { formatError } from "../golden/compare.js";
import { firstDivergenceText } from "./report.js";
import type { VerifyReport, VerifyResult } from "./run.js";
import { formulaOrder } from "./run.js";

/** Characters XML 1.0 cannot hold at all (control characters other than tab, newline, return). */
// eslint-disable-next-line no-control-regex
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Text or attribute value escaped for XML; characters XML cannot hold become U+FFFD. */
export function xmlEscape(s: string): string {
  return s
    .replace(INVALID_XML, "\uFFFD")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function detail(r: VerifyResult): string {
  const lines: string[] = [];
  if (r.message !== undefined) lines.push(r.message);
  for (const t of r.tensors ?? []) {
    if (t.ok) continue;
    lines.push(
      t.problem ??
        `${t.name}: ${t.mismatched} of ${t.size} elements outside |a - e| <= ` +
          `atol + rtol*|e| (rtol ${formatError(t.tolerance.rtol)}, atol ` +
          `${formatError(t.tolerance.atol)}); max abs err ` +
          `${formatError(t.maxAbsError)}, max rel err ` +
          `${formatError(t.maxRelError)}`,
    );
    if (t.worst !== null)
      lines.push(
        `  worst element [${t.worst.index.join(", ")}]: expected ${t.worst.expected}, actual ${t.worst.actual}`,
      );
  }
  const d = r.localisation?.divergence;
  if (d !== null && d !== undefined) {
    lines.push(`localised: ${d.tensor} (${d.formula}, ${d.origin}): ${d.explanation}`);
    for (const h of d.hints) lines.push(`  hint: ${h.message}`);
  }
  for (const h of r.hints ?? []) lines.push(`hint: ${h.message}`);
  if (r.law?.failure !== undefined) {
    const f = r.law.failure;
    lines.push(`${f.formula} ${JSON.stringify(f.config)} ${f.dtype}`);
    if (f.quantity !== undefined)
      lines.push(
        `${f.quantity}: expected ${f.expected}, actual ${f.actual}, abs err ${f.absError}, allowed ${f.allowed}`,
      );
  }
  if (r.replay !== undefined) lines.push(`replay: ${r.replay}`);
  for (const f of r.gradcheck?.failures ?? [])
    lines.push(
      `${f.input}: analytic ${f.analytic}, numeric ${f.numeric}, abs err ${f.absErr}, allowed ${f.allowed}`,
    );
  if (r.fault?.line !== undefined) lines.push(`line: ${r.fault.line}`);
  if (r.fault?.stderrTail !== undefined) lines.push("stderr:", r.fault.stderrTail);
  return lines.join("\n");
}

function testcase(r: VerifyResult, classname: string): string {
  const name =
    r.kind === "golden"
      ? r.case
      : r.kind === "gradient"
        ? `gradcheck ${r.formula} (${r.case})`
        : `law ${r.case}${r.dtype !== null ? ` (${r.dtype})` : ""}`;
  const open =
    `    <testcase classname="${xmlEscape(classname)}" ` +
    `name="${xmlEscape(name)}" time="${seconds(r.timeMs)}"`;
  const firstLine = (s: string) => s.split("\n")[0]!.slice(0, 300);
  const holding = (element: string) => `${open}>\n      ${element}\n    </testcase>`;
  // a <failure> or <error>: the first line of `message` as its message, every detail as its text
  const reporting = (tag: "failure" | "error", type: string, message: string, text: string) =>
    holding(
      `<${tag} type="${type}" message="${xmlEscape(firstLine(message))}">` +
        `${xmlEscape(text)}</${tag}>`,
    );
  switch (r.status) {
    case "pass":
      return `${open}/>`;
    case "fail": {
      const text = detail(r);
      return reporting("failure", "mismatch", text || "failed", text);
    }
    case "fault":
      return reporting(
        "error",
        "ImplementationError",
        r.fault?.message ?? r.message ?? "fault",
        detail(r),
      );
    case "declined":
    case "skipped":
      return holding(
        `<skipped message="${xmlEscape(`${r.status}: ${firstLine(r.message ?? "")}`)}"/>`,
      );
  }
}

/**
 * Suite names (`kind.formula`, `law.name`): golden suites in pipeline order, then gradient checks,
 * then laws by name.
 */
function sortSuiteNames(names: readonly string[]): string[] {
  const order = (name: string): number =>
    ["golden", "gradient", "law"].indexOf(name.slice(0, name.indexOf(".")));
  const rest = (name: string) => name.slice(name.indexOf(".") + 1);
  const byFormula = formulaOrder(names.filter((n) => !n.startsWith("law.")).map(rest));
  return [...names].sort((a, b) => {
    const d = order(a) - order(b);
    if (d !== 0) return d;
    const fa = rest(a);
    const fb = rest(b);
    return a.startsWith("law.")
      ? fa < fb
        ? -1
        : fa > fb
          ? 1
          : 0
      : byFormula.indexOf(fa) - byFormula.indexOf(fb);
  });
}

/**
 * The report as a JUnit XML document (the schema Jenkins and most CI reporters validate against:
 * `testsuites` › `testsuite` › `properties`, `testcase` › `failure` | `error` | `skipped`).
 */
export function verifyJUnit(report: VerifyReport): string {
  const groups = new Map<string, VerifyResult[]>();
  const kindName = (r: VerifyResult) => (r.kind === "property" ? "law" : r.kind);
  for (const r of report.results) {
    const key = `${kindName(r)}.${r.kind === "property" ? r.case : r.formula}`;
    const list = groups.get(key) ?? [];
    list.push(r);
    groups.set(key, list);
  }
  const keys = sortSuiteNames([...groups.keys()]);
  const count = (rs: readonly VerifyResult[], s: string) => rs.filter((r) => r.status === s).length;
  const impl = report.implementation;
  const props = [
    ["implementation", impl.name],
    ["command", impl.command ?? "(built-in reference)"],
    ["seed", String(report.seed)],
    ...(report.firstDivergence !== null
      ? [["first_divergence", firstDivergenceText(report.firstDivergence).join("\n")]]
      : []),
  ];
  const properties =
    `    <properties>\n` +
    props
      .map(([k, v]) => `      <property name="${xmlEscape(k!)}" value="${xmlEscape(v!)}"/>`)
      .join("\n") +
    `\n ` +
    `   </properties>`;
  const suites = keys.map((name) => {
    const rs = groups.get(name)!;
    const time = rs.reduce((s, r) => s + r.timeMs, 0);
    return (
      `  <testsuite name="${xmlEscape(name)}" tests="${rs.length}" ` +
      `failures="${count(rs, "fail")}" errors="${count(rs, "fault")}" ` +
      `skipped="${count(rs, "skipped") + count(rs, "declined")}" ` +
      `time="${seconds(time)}">\n` +
      `${properties}\n` +
      rs.map((r) => testcase(r, `specformer.verify.${name}`)).join("\n") +
      `\n  </testsuite>`
    );
  });
  const all = report.results;
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n${REPORT_MARKER_COMMENT}\n` +
    `<testsuites name="specformer verify" tests="${all.length}" ` +
    `failures="${count(all, "fail")}" errors="${count(all, "fault")}" ` +
    `skipped="${count(all, "skipped") + count(all, "declined")}" ` +
    `time="${seconds(report.timeMs)}">\n` +
    suites.map((x) => `${x}\n`).join("") +
    `</testsuites>\n`
  );
}

/** A JUnit document that is not one `specformer verify --junit` writes. */
export class JUnitMergeError extends Error {
  override name = "JUnitMergeError";
}

const SUITE = new RegExp(
  String.raw`<testsuite name="([^"]*)" tests="(\d+)" failures="(\d+)" err` +
    String.raw`ors="(\d+)" skipped="(\d+)" time="([\d.]+)">\n( {4}<properti` +
    String.raw`es>[\s\S]*?<\/properties>)\n([\s\S]*?)\n? {2}<\/testsuite>`,
  "g",
);

/**
 * Merge the JUnit reports of `verify --shard K/N` runs into one document: suites of the same name
 * (a formula whose golden cases were dealt to several shards) become one suite holding every
 * shard's test cases, with the counts and times summed; the root's counts are recomputed.
 * @throws JUnitMergeError naming the document that is not a `verify --junit` report.
 */
export function mergeJUnit(
  documents: readonly { readonly source: string; readonly xml: string }[],
): string {
  if (documents.length === 0) throw new JUnitMergeError("no JUnit reports to merge");
  interface Suite {
    tests: number;
    failures: number;
    errors: number;
    skipped: number;
    time: number;
    properties: string;
    cases: string[];
  }
  const suites = new Map<string, Suite>();
  let time = 0;
  for (const { source, xml } of documents) {
    const root = new RegExp(
      String.raw`<testsuites name="specformer verify" tests="(\d+)" failures=` +
        String.raw`"\d+" errors="\d+" skipped="\d+" time="([\d.]+)">`,
    ).exec(xml);
    if (root === null || !xml.trimEnd().endsWith("</testsuites>"))
      throw new JUnitMergeError(
        `${source}: not a JUnit report of specformer verify (no <testsuites ` +
          `name="specformer verify" …> … </testsuites>)`,
      );
    time = Math.max(time, Number(root[2]));
    let n = 0;
    for (const m of xml.matchAll(SUITE)) {
      const [, name, tests, failures, errors, skipped, t, properties, body] = m;
      const s = suites.get(name!) ?? {
        tests: 0,
        failures: 0,
        errors: 0,
        skipped: 0,
        time: 0,
        properties: properties!,
        cases: [],
      };
      s.tests += Number(tests);
      s.failures += Number(failures);
      s.errors += Number(errors);
      s.skipped += Number(skipped);
      s.time += Number(t);
      if (body!.trim() !== "") s.cases.push(body!.replace(/\n$/, ""));
      suites.set(name!, s);
      n += Number(tests);
    }
    if (n !== Number(root[1]))
      throw new JUnitMergeError(
        `${source}: its root counts ${root[1]} tests but its suites hold ${n}: the file was cut short or edited`,
      );
  }
  const names = sortSuiteNames([...suites.keys()]);
  const total = (k: "tests" | "failures" | "errors" | "skipped") =>
    names.reduce((a, n) => a + suites.get(n)![k], 0);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    // the shards ran in parallel: the wall time is the slowest shard's
    `<testsuites name="specformer verify" tests="${total("tests")}" ` +
    `failures="${total("failures")}" errors="${total("errors")}" ` +
    `skipped="${total("skipped")}" time="${time.toFixed(3)}">\n` +
    names
      .map((name) => {
        const s = suites.get(name)!;
        return (
          `  <testsuite name="${name}" tests="${s.tests}" ` +
          `failures="${s.failures}" errors="${s.errors}" skipped="${s.skipped}" ` +
          `time="${s.time.toFixed(3)}">\n${s.properties}\n${s.cases.map((c) => `${c}\n`).join("")} ` +
          ` </testsuite>\n`
        );
      })
      .join("") +
    `</testsuites>\n`
  );
}
