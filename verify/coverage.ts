/**
 * Coverage of a verify run: per formula and per kind of check (golden, gradient, law), what ran,
 * what the implementation declined, what lay outside its declared capability — and which kinds
 * a declared formula got no check of at all (a failure under `strict`).
 */
import type { ResultKind, VerifyResult } from "./run.js";

export interface KindCount {
  /** Checks that ran (passed or failed); for laws, the laws that ran at least one case. */
  ran: number;
  declined: number;
  /** Not sent: outside the declared capability. */
  outside: number;
  /** Could not be driven (crash, hang, garbage). */
  faults: number;
  /** Applicable checks of this kind (ran + declined + faults + otherwise skipped; not those outside the capability). */
  applicable: number;
}

export interface FormulaCoverage {
  readonly formula: string;
  readonly golden: KindCount;
  readonly gradient: KindCount;
  readonly property: KindCount;
  /** Kinds with checks (applicable or outside the capability) of which none ran. */
  readonly unchecked: readonly ResultKind[];
}

export interface CoverageSummary {
  readonly formulas: readonly FormulaCoverage[];
  /** Law × formula pairs that applied, and those that ran at least one case. */
  readonly lawPairs: { readonly applicable: number; readonly ran: number };
}

const zero = (): KindCount => ({ ran: 0, declined: 0, outside: 0, faults: 0, applicable: 0 });

/**
 * Count the results of the declared formulas (`formulas`, in report order). Law results count per
 * (law, formula) pair from the law runner's per-formula coverage.
 */
export function coverageOf(
  results: readonly VerifyResult[],
  formulas: readonly string[],
): CoverageSummary {
  const rows = new Map<string, { golden: KindCount; gradient: KindCount; property: KindCount }>();
  for (const f of formulas) rows.set(f, { golden: zero(), gradient: zero(), property: zero() });
  const pairs = new Map<string, "ran" | "declined" | "outside" | "fault" | "other">();
  const rank = { ran: 4, fault: 3, declined: 2, outside: 1, other: 0 } as const;
  const note = (key: string, s: "ran" | "declined" | "outside" | "fault" | "other"): void => {
    const prev = pairs.get(key);
    if (prev === undefined || rank[s] > rank[prev]) pairs.set(key, s);
  };
  for (const r of results) {
    if (r.kind === "property") {
      const law = r.law;
      if (law === undefined) continue;
      if (law.coverage !== undefined) {
        for (const f of law.formulas) {
          const c = law.coverage[f];
          const failedHere = law.status === "failed" && law.failure?.formula === f;
          note(
            `${law.law}|${f}`,
            failedHere || (c?.ran ?? 0) > 0
              ? "ran"
              : (c?.declined ?? 0) > 0
                ? "declined"
                : (c?.outside ?? 0) > 0
                  ? "outside"
                  : "other",
          );
        }
      } else {
        for (const f of law.formulas)
          note(
            `${law.law}|${f}`,
            r.status === "pass" || r.status === "fail"
              ? "ran"
              : r.status === "declined"
                ? "declined"
                : r.status === "fault"
                  ? "fault"
                  : "other",
          );
      }
      continue;
    }
    const row = rows.get(r.formula);
    if (row === undefined) continue;
    const k = row[r.kind];
    // a golden case of a dtype the implementation does not compute does not apply to it
    if (
      r.status === "skipped" &&
      r.outside !== true &&
      /computes .* only|does not declare/.test(r.message ?? "")
    )
      continue;
    if (r.outside === true) {
      k.outside++;
      continue;
    }
    k.applicable++;
    if (r.status === "pass" || r.status === "fail") k.ran++;
    else if (r.status === "declined") k.declined++;
    else if (r.status === "fault") k.faults++;
  }
  let ran = 0;
  let applicable = 0;
  for (const [key, s] of pairs) {
    const f = key.slice(key.indexOf("|") + 1);
    const row = rows.get(f);
    if (row === undefined) continue;
    const k = row.property;
    // a law that needs configurations outside the declared capability does not apply
    if (s === "outside") {
      k.outside++;
      continue;
    }
    k.applicable++;
    applicable++;
    if (s === "ran") (k.ran++, ran++);
    else if (s === "declined") k.declined++;
    else if (s === "fault") k.faults++;
  }
  const out: FormulaCoverage[] = [];
  for (const [formula, row] of rows) {
    const unchecked = (["golden", "gradient", "property"] as const).filter(
      (k) => row[k].applicable + row[k].outside > 0 && row[k].ran === 0,
    );
    out.push({ formula, ...row, unchecked });
  }
  return { formulas: out, lawPairs: { applicable, ran } };
}

/** One line per declared formula left without a check of some kind (what `strict` fails on). */
export function uncheckedLines(c: CoverageSummary): string[] {
  return c.formulas
    .filter((f) => f.unchecked.length > 0)
    .map(
      (f) =>
        `${f.formula}: no ${f.unchecked.map((k) => (k === "property" ? "law" : k)).join(", no ")} ` +
        `check ran (${f.unchecked.map((k) => describe(f[k])).join("; ")})`,
    );
}

function describe(k: KindCount): string {
  const parts = [
    k.declined > 0 ? `${k.declined} declined` : "",
    k.outside > 0 ? `${k.outside} outside the declared capability` : "",
    k.faults > 0 ? `${k.faults} faulted` : "",
  ].filter((x) => x !== "");
  return parts.length > 0 ? parts.join(", ") : `${k.applicable} not run`;
}
