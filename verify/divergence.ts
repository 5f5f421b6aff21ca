/**
 * Which failure the report leads with: the nesting level of formulas, the first divergence of a
 * run (kept for compatibility) and the independent origins its failures are grouped by.
 */
import "../spec/index.js";
import { exampleConfig, hasFormula } from "../spec/formula.js";
import { operands, type Node } from "../spec/node.js";
import { formulaGraph } from "../autodiff/graph.js";
import type { Tensor } from "../autodiff/tensor.js";
import type { Divergence } from "./localise.js";
import { formulaOrder } from "./results.js";
import type { FirstDivergence, Origin, VerifyResult } from "./results.js";

const levels = new Map<string, number>();

/**
 * Nesting depth of a formula: 0 for one that applies no other formula (softmax, causal_mask),
 * 1 + the deepest formula it applies otherwise (attention 1, mha 2, block 3, gpt 4). Formulas
 * outside the registry rank last.
 */
export function formulaLevel(name: string): number {
  const cached = levels.get(name);
  if (cached !== undefined) return cached;
  let level = 99;
  if (hasFormula(name)) {
    try {
      const g = formulaGraph(name, exampleConfig(name));
      const depth = new Map<Node, number>();
      // depth of the calls nested inside a call, not counting the call itself: its body is
      // searched up to its arguments (computed by the caller); a nested call's arguments belong
      // to this level, its body to the next
      const nested = (call: Extract<Node, { op: "call" }>): number => {
        const stop = new Set(Object.values(call.args));
        let best = 0;
        const seen = new Set<Node>();
        const stack: Node[] = [call.body];
        while (stack.length > 0) {
          const n = stack.pop()!;
          if (seen.has(n) || stop.has(n)) continue;
          seen.add(n);
          if (n.op === "call") {
            let d = depth.get(n);
            if (d === undefined) {
              d = 1 + nested(n);
              depth.set(n, d);
            }
            best = Math.max(best, d);
            stack.push(...Object.values(n.args));
            continue;
          }
          stack.push(...operands(n));
        }
        return best;
      };
      level = Math.max(
        ...Object.values(g.outputs).map((e) => (e.node.op === "call" ? nested(e.node) : 0)),
      );
    } catch {
      level = 99;
    }
  }
  levels.set(name, level);
  return level;
}

/**
 * The first divergence of the run: among failing checks, forward values before gradients before
 * laws; localised failures first; then the least nested diverging formula, a local error
 * before an inherited one, the least nested case formula (the smallest case showing it), float64
 * first, then by case name.
 */
export function pickFirstDivergence(results: readonly VerifyResult[]): FirstDivergence | null {
  const candidates: Array<{ key: (number | string)[]; d: FirstDivergence }> = [];
  for (const r of results) {
    if (r.status !== "fail") continue;
    if (r.kind === "golden") {
      const div: Divergence | null | undefined = r.localisation?.divergence;
      const failingOut = r.tensors?.find((t) => !t.ok && t.name.startsWith("out."));
      const failing = failingOut ?? r.tensors?.find((t) => !t.ok);
      const forward = failingOut !== undefined;
      const d: FirstDivergence =
        div !== null && div !== undefined
          ? {
              formula: div.formula,
              case: r.case,
              tensor: div.tensor,
              kind: "golden",
              origin: div.origin,
              path: div.path,
              explanation: div.explanation,
              maxAbsErr: div.report?.maxAbsError ?? r.maxAbsErr,
              budget: div.report?.budgetUsed ?? r.budget,
              hints: div.hints,
              report: div.report,
              ...(div.values !== undefined ? { values: div.values } : {}),
            }
          : {
              formula: r.formula,
              case: r.case,
              tensor: failing?.name ?? "?",
              kind: "golden",
              origin: "local",
              path: [r.formula],
              explanation: forward
                ? `${r.formula}'s output ${failing?.name ?? ""} diverges (not localised ` +
                  `further: earlier cases of this formula were)`
                : `the outputs of ${r.formula} match but ${failing?.name ?? "a gradient"} ` +
                  `diverges: the backward pass is wrong`,
              maxAbsErr: failing?.maxAbsError ?? r.maxAbsErr,
              budget: failing?.budgetUsed ?? r.budget,
              hints: r.hints ?? [],
              report: failing ?? null,
              ...valuesFor(r, failing?.name),
            };
      const key = [
        forward ? 0 : 1,
        div === undefined ? 1 : 0,
        formulaLevel(d.formula),
        d.origin === "local" ? 0 : 1,
        formulaLevel(r.formula),
        r.dtype === "f64" ? 0 : 1,
        r.case,
      ];
      candidates.push({ key, d });
    } else if (r.kind === "gradient") {
      const f = r.gradcheck?.failures[0];
      candidates.push({
        key: [2, 0, formulaLevel(r.formula), 0, 0, 0, r.case],
        d: {
          formula: r.formula,
          case: r.case,
          tensor: f !== undefined ? `grad (${f.input})` : "grad",
          kind: "gradient",
          origin: "local",
          path: [r.formula],
          explanation:
            r.message ?? `the backward pass of ${r.formula} disagrees with central differences`,
          maxAbsErr: r.maxAbsErr,
          budget: r.budget,
          hints: [],
          report: null,
        },
      });
    } else {
      const f = r.law?.failure;
      candidates.push({
        key: [3, 0, formulaLevel(f?.formula ?? r.formula), 0, 0, r.dtype === "f64" ? 0 : 1, r.case],
        d: {
          formula: f?.formula || r.formula,
          case: r.case,
          tensor: f?.quantity ?? "law",
          kind: "property",
          origin: "local",
          path: [f?.formula || r.formula],
          explanation: `law ${r.case} fails: ${f?.message ?? r.message ?? ""}`,
          maxAbsErr: r.maxAbsErr,
          budget: r.budget,
          hints: [],
          report: null,
          ...(r.replay !== undefined ? { replay: r.replay } : {}),
        },
      });
    }
  }
  if (candidates.length === 0) return null;
  const cmp = (a: (number | string)[], b: (number | string)[]): number => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x === y) continue;
      return x < y ? -1 : 1;
    }
    return 0;
  };
  candidates.sort((a, b) => cmp(a.key, b.key));
  return candidates[0]!.d;
}

function valuesFor(
  r: VerifyResult,
  name: string | undefined,
): { values?: { expected: Tensor; actual: Tensor } } {
  const v = r.values?.find((x) => x.name === name);
  return v !== undefined ? { values: { expected: v.expected, actual: v.actual } } : {};
}

const applied = new Map<string, ReadonlySet<string>>();

/**
 * The formulas a formula applies at any depth, in its example configuration (mha: linear,
 * split_heads, attention, causal_mask, softmax, merge_heads). Empty outside the registry.
 */
function appliedFormulas(name: string): ReadonlySet<string> {
  const cached = applied.get(name);
  if (cached !== undefined) return cached;
  const out = new Set<string>();
  if (hasFormula(name)) {
    try {
      const g = formulaGraph(name, exampleConfig(name));
      const seen = new Set<Node>();
      const stack: Node[] = Object.values(g.outputs).map((e) => e.node);
      while (stack.length > 0) {
        const n = stack.pop()!;
        if (seen.has(n)) continue;
        seen.add(n);
        if (n.op === "call") {
          if (n.formula !== name) out.add(n.formula);
          stack.push(n.body, ...Object.values(n.args));
        } else stack.push(...operands(n));
      }
    } catch {
      // a formula whose example cannot be built applies nothing we can name
    }
  }
  applied.set(name, out);
  return out;
}

/** What a failing check says about its origin before grouping. */
interface Claim {
  readonly result: VerifyResult;
  /**
   * The check's own formula and kind (a law checks values unless it needs the backward pass; a
   * gradient check gradients).
   */
  readonly own: { readonly formula: string; readonly kind: "forward" | "backward" };
  /** Where localisation put it, when it was localised. */
  readonly divergence?: Divergence;
}

function claimOf(r: VerifyResult): Claim {
  if (r.kind === "golden") {
    const forward = (r.tensors ?? []).some((t) => !t.ok && t.name.startsWith("out."));
    const div = r.localisation?.divergence ?? undefined;
    return {
      result: r,
      own: { formula: r.formula, kind: forward ? "forward" : "backward" },
      ...(div !== undefined && div !== null ? { divergence: div } : {}),
    };
  }
  if (r.kind === "gradient") return { result: r, own: { formula: r.formula, kind: "backward" } };
  const f = r.law?.failure?.formula;
  return {
    result: r,
    own: {
      formula: f !== undefined && f !== "" ? f : r.formula,
      kind: r.checksGradients === true ? "backward" : "forward",
    },
  };
}

/** Does `c` (localised) name an origin better than its current first case? */
function preferredFirst(c: Claim, current: Claim, currentLocalised: boolean): boolean {
  if (!currentLocalised) return true;
  const rank = (x: Claim): number[] => [
    x.result.dtype === "f64" ? 0 : 1,
    formulaLevel(x.result.formula),
  ];
  const [a, b] = [rank(c), rank(current)];
  return a[0]! < b[0]! || (a[0] === b[0] && a[1]! < b[1]!);
}

/** Pipeline rank of an origin: the registry's formula order, a formula's forward before its backward. */
function originRank(
  formula: string,
  kind: "forward" | "backward",
  order: readonly string[],
): number {
  return order.indexOf(formula) * 2 + (kind === "forward" ? 0 : 1);
}

/**
 * Group the failing checks of a run by localised origin (formula and kind). A localised golden
 * case belongs to its divergence; a failing check that was not localised (past the limit, a
 * gradient check, a law) is presumed to share the most upstream origin of the same kind that
 * localised failures of its own formula point to or that its formula applies (a gpt gradient
 * check and an origin in attention's backward pass); else it is an origin of its own. Most
 * upstream first.
 */
function originsOf(results: readonly VerifyResult[]): Origin[] {
  return groupByOrigin(results).map((x) => x.origin);
}

/** {@link originsOf} with the failing checks each origin explains. */
export function groupByOrigin(
  results: readonly VerifyResult[],
): Array<{ origin: Origin; results: VerifyResult[] }> {
  const claims = results.filter((r) => r.status === "fail").map(claimOf);
  const key = (formula: string, kind: string): string => `${formula}\u0000${kind}`;
  const groups = new Map<
    string,
    {
      formula: string;
      kind: "forward" | "backward";
      first: Claim;
      localised: number;
      presumed: number;
      members: VerifyResult[];
    }
  >();
  const add = (
    formula: string,
    kind: "forward" | "backward",
    c: Claim,
    localised: boolean,
  ): void => {
    const k = key(formula, kind);
    let g = groups.get(k);
    if (g === undefined)
      groups.set(k, (g = { formula, kind, first: c, localised: 0, presumed: 0, members: [] }));
    // its first case: a localised one before a presumed one, float64 first, the least nested case formula
    else if (localised && preferredFirst(c, g.first, g.localised > 0)) g.first = c;
    g.members.push(c.result);
    if (localised) g.localised++;
    else g.presumed++;
  };
  // where the localised checks of each formula and kind point
  const pointsTo = new Map<string, Array<{ formula: string; kind: "forward" | "backward" }>>();
  for (const c of claims) {
    if (c.divergence === undefined) continue;
    add(c.divergence.formula, c.divergence.kind, c, true);
    const k = key(c.own.formula, c.own.kind);
    const list = pointsTo.get(k) ?? [];
    if (!list.some((x) => x.formula === c.divergence!.formula && x.kind === c.divergence!.kind))
      list.push({ formula: c.divergence.formula, kind: c.divergence.kind });
    pointsTo.set(k, list);
  }
  const order = formulaOrder([
    ...claims.map((c) => c.own.formula),
    ...claims.flatMap((c) => (c.divergence !== undefined ? [c.divergence.formula] : [])),
  ]);
  for (const c of claims) {
    if (c.divergence !== undefined) continue;
    const inside = appliedFormulas(c.own.formula);
    const targets = [
      ...(pointsTo.get(key(c.own.formula, c.own.kind)) ?? []),
      ...[...groups.values()].filter(
        (g) =>
          g.localised > 0 &&
          g.kind === c.own.kind &&
          (g.formula === c.own.formula || inside.has(g.formula)),
      ),
    ];
    const target =
      [...targets].sort(
        (a, b) => originRank(a.formula, a.kind, order) - originRank(b.formula, b.kind, order),
      )[0] ?? c.own;
    add(target.formula, target.kind, c, false);
  }
  const origins = [...groups.values()].map((g): { origin: Origin; results: VerifyResult[] } => ({
    origin: originOf(g),
    results: g.members,
  }));
  return origins.sort(
    (a, b) =>
      originRank(a.origin.formula, a.origin.kind, order) -
      originRank(b.origin.formula, b.origin.kind, order),
  );
}

function originOf(g: {
  formula: string;
  kind: "forward" | "backward";
  first: Claim;
  localised: number;
  presumed: number;
}): Origin {
  {
    const c = g.first;
    const r = c.result;
    const d = c.divergence;
    if (d !== undefined && d.formula === g.formula && d.kind === g.kind) {
      return {
        formula: g.formula,
        kind: g.kind,
        firstCase: r.case,
        path: d.path,
        tensor: d.tensor,
        ...(d.input !== undefined ? { input: d.input } : {}),
        explanation: d.explanation,
        count: g.localised + g.presumed,
        presumed: g.presumed,
        report: d.report,
        hints: d.hints,
      };
    }
    // an origin no check was localised to: the check's own failure is all there is to say
    const failing = (r.tensors ?? []).find(
      (t) => !t.ok && (g.kind === "forward") === t.name.startsWith("out."),
    );
    const what =
      r.kind === "golden"
        ? `golden case ${r.case}`
        : r.kind === "gradient"
          ? `the gradient check of ${r.formula} (${r.case})`
          : `law ${r.case}`;
    return {
      formula: g.formula,
      kind: g.kind,
      firstCase: r.case,
      path: [g.formula],
      tensor:
        failing?.name ?? (r.kind === "property" ? (r.law?.failure?.quantity ?? "law") : "grad"),
      explanation: `${what} fails${r.message !== undefined ? `: ${r.message}` : ""} (not localised)`,
      count: g.localised + g.presumed,
      presumed: g.presumed,
      report: failing ?? null,
      hints: r.hints ?? [],
    };
  }
}
