/**
 * Rendering: every formula as LaTeX, Unicode text and JSON, in the notation of the classic
 * description (`softmax(QKᵀ/√d_k + M)V`, `φ(xW₁ + b₁)W₂ + b₂`, LayerNorm with μ, σ², ε).
 *
 * The renderer walks the same graph the engine evaluates. Calls to registry formulas print as
 * function applications (or as a bare symbol such as M); labelled nodes (μ, σ²) become their own
 * equations; movement ops that only rearrange memory are transparent.
 */
import { match } from "ts-pattern";
import {
  BATCH,
  canonicalPoly,
  dim as dimFromString,
  dimConstant,
  dimNames,
  dimToString,
  evalDim,
  type Dim,
} from "./dims.js";
import {
  buildFormula,
  exampleConfig,
  getFormula,
  hyperDims,
  latexName,
  parseRelations,
  resolveConfig,
  type ArgSpec,
  type FormulaDef,
} from "./formula.js";
import { LAYERS } from "./layers.js";
import type { Config, HyperValue, Node } from "./node.js";
import { polynomial } from "./poly.js";
import { SCALAR_FNS } from "./scalar.js";

export type Format = "latex" | "text";

/** Display symbols of formula calls. */
const CALL_SYMBOLS: Readonly<Record<string, { latex: string; text: string }>> = {
  softmax: { latex: "\\mathrm{softmax}", text: "softmax" },
  log_softmax: { latex: "\\log\\mathrm{softmax}", text: "log_softmax" },
  logsumexp: { latex: "\\mathrm{LSE}", text: "LSE" },
  attention: { latex: "\\mathrm{Attention}", text: "Attention" },
  mha: { latex: "\\mathrm{MHA}", text: "MHA" },
  layer_norm: { latex: "\\mathrm{LayerNorm}", text: "LayerNorm" },
  rms_norm: { latex: "\\mathrm{RMSNorm}", text: "RMSNorm" },
  gelu: { latex: "\\mathrm{GELU}", text: "GELU" },
  gelu_tanh: { latex: "\\mathrm{GELU}_{\\tanh}", text: "GELU_tanh" },
  relu: { latex: "\\mathrm{ReLU}", text: "ReLU" },
  silu: { latex: "\\mathrm{SiLU}", text: "SiLU" },
  ffn: { latex: "\\mathrm{FFN}", text: "FFN" },
  swiglu: { latex: "\\mathrm{SwiGLU}", text: "SwiGLU" },
  rope: { latex: "\\mathrm{RoPE}", text: "RoPE" },
  cross_entropy: { latex: "\\mathrm{CE}", text: "CE" },
  block: { latex: "\\mathrm{Block}", text: "Block" },
  block_post_ln: { latex: "\\mathrm{Block}", text: "Block" },
  block_pre_ln: { latex: "\\mathrm{Block}", text: "Block" },
};

/** Formulas whose calls print as their body (x W + b, E[t], Z W_vocabᵀ). */
const INLINE = new Set(["linear", "embedding", "logits", "positional_learned"]);

interface R {
  s: string;
  /** 0 sum, 1 product, 2 power/postfix, 3 atom */
  p: number;
}

const GREEKISH = /^[a-zA-Z]$/;

/** d_model → d_{\mathrm{model}}, d_k → d_k, H_kv → H_{\mathrm{kv}}, n_ctx → n_{\mathrm{ctx}}. */
export function dimLatex(d: Dim): string {
  if (typeof d === "number") return String(d);
  if (typeof d === "string") {
    if (d === BATCH) return "B"; // as a size: the number of batch rows
    const m = /^([A-Za-z])_([A-Za-z0-9]+)$/.exec(d);
    if (m) return m[2]!.length === 1 ? `${m[1]}_${m[2]}` : `${m[1]}_{\\mathrm{${m[2]}}}`;
    return GREEKISH.test(d) ? d : `\\mathrm{${d.replace(/_/g, "\\_")}}`;
  }
  const a = dimLatex(d.a);
  const b = dimLatex(d.b);
  const wrap = (x: Dim, s: string) =>
    typeof x === "object" && (x.op === "+" || x.op === "-") ? `(${s})` : s;
  switch (d.op) {
    case "+":
      return `${a} + ${b}`;
    case "-":
      return `${a} - ${wrap(d.b, b)}`;
    case "*":
      return `${wrap(d.a, a)} ${wrap(d.b, b)}`;
    case "/":
      return `${wrap(d.a, a)}/${wrap(d.b, b)}`;
  }
}

/** A constant (or dim) that is zero for every binding. */
function isZero(n: Node): boolean {
  return (n.op === "const" && n.value === 0) || (n.op === "dim" && dimConstant(n.dim) === 0);
}

/** `d_k/2 + d_k/2` → `d_k`, `0 + n` → `n`: the simplest equal form when it is a single term. */
function simplifyDim(d: Dim): Dim {
  const p = canonicalPoly(d);
  if (p === null || p.size !== 1) return d;
  const [[mono, c]] = [...p.entries()] as [[string, number]];
  if (mono === "") return c;
  const factors = mono.split("*").map((f) => f.split("^") as [string, string]);
  if (factors.length === 1 && factors[0]![1] === "1") {
    const name = factors[0]![0];
    if (c === 1) return name;
    if (Number.isInteger(c)) return { op: "*", a: c, b: name };
    if (Number.isInteger(1 / c)) return { op: "/", a: name, b: 1 / c };
  }
  return d;
}

function num(v: number, fmt: Format): string {
  if (v === Number.NEGATIVE_INFINITY) return fmt === "latex" ? "-\\infty" : "−∞";
  if (v === Number.POSITIVE_INFINITY) return fmt === "latex" ? "\\infty" : "∞";
  if (Number.isInteger(v)) return String(v);
  const s = Math.abs(v) < 1e-3 ? v.toExponential() : String(v);
  if (fmt === "latex" && /e/.test(s)) {
    const [m, e] = s.split("e");
    return `${m} \\cdot 10^{${Number(e)}}`;
  }
  return s;
}

/** Renders graph nodes; collects the equations of labelled sub-expressions. */
export class Renderer {
  readonly equations: { lhs: string; rhs: string }[] = [];
  private readonly bound = new Map<Node, string>();
  private readonly names = new Map<Node, { latex: string; text: string }>();

  constructor(readonly fmt: Format) {}

  /** Treat `n` as the named symbol (a formula argument, a forward output in a gradient). */
  name(n: Node, latex: string, text: string): void {
    this.names.set(n, { latex, text });
  }

  private L = (latex: string, text: string): string => (this.fmt === "latex" ? latex : text);

  private paren(r: R, min: number): string {
    return r.p >= min ? r.s : this.L(`\\left(${r.s}\\right)`, `(${r.s})`);
  }

  render(n: Node): string {
    return this.r(n).s;
  }

  r(n: Node): R {
    const named = this.names.get(n);
    if (named) return { s: this.L(named.latex, named.text), p: 3 };
    if (n.display !== undefined) return this.r(n.display);
    if (n.label !== undefined && n.op !== "input") {
      const sym = this.L(n.label.latex, n.label.text);
      if (!this.bound.has(n)) {
        this.bound.set(n, sym);
        const rhs = this.raw(n).s;
        this.equations.push({ lhs: sym, rhs });
      }
      return { s: sym, p: 3 };
    }
    return this.raw(n);
  }

  private raw(n: Node): R {
    const L = this.L;
    return match<Node, R>(n)
      .with({ op: "input" }, (n) => ({
        s: n.label ? L(n.label.latex, n.label.text) : L(latexName(n.name), n.name),
        p: 3,
      }))
      .with({ op: "const" }, (n) => ({ s: num(n.value, this.fmt), p: n.value < 0 ? 0 : 3 }))
      .with({ op: "dim" }, (n) => ({
        s: L(dimLatex(n.dim), dimToString(n.dim).replace("...", "B")),
        p: typeof n.dim === "object" ? 0 : 3,
      }))
      .with({ op: "iota" }, (n) => ({
        s: ["i", "j", "k", "l"][n.axis] ?? `\\iota_{${n.axis}}`,
        p: 3,
      }))
      .with({ op: "unary" }, (n) => {
        const f = SCALAR_FNS[n.fn];
        if (n.fn === "neg") {
          const x = this.r(n.x);
          return { s: `-${this.paren(x, 1)}`, p: 0 };
        }
        if (n.fn === "square")
          return {
            s: L(`${this.paren(this.r(n.x), 3)}^{2}`, `${this.paren(this.r(n.x), 3)}²`),
            p: 2,
          };
        if (n.fn === "exp" && this.fmt === "latex") return { s: `e^{${this.r(n.x).s}}`, p: 2 };
        const arg = this.r(n.x).s;
        return { s: this.fmt === "latex" ? f.latex(arg) : f.text(arg), p: 3 };
      })
      .with({ op: "binary" }, (n) => {
        const a = this.r(n.a);
        const b = this.r(n.b);
        const scalar = (x: Node) => x.shape.length === 0;
        return match(n.fn)
          .with("add", () => (isZero(n.b) ? a : isZero(n.a) ? b : { s: `${a.s} + ${b.s}`, p: 0 }))
          .with("sub", () => (isZero(n.b) ? a : { s: `${a.s} - ${this.paren(b, 1)}`, p: 0 }))
          .with("mul", () => {
            const op = scalar(n.a) || scalar(n.b) ? L(" \\cdot ", "·") : L(" \\odot ", " ⊙ ");
            if (
              n.a.op === "binary" &&
              n.a.fn === "div" &&
              n.a.a.op === "const" &&
              n.a.a.value === 1
            ) {
              // (1/d) Σ … renders as \frac{1}{d} \sum …
              return { s: `${this.r(n.a).s}${L(" ", "·")}${this.paren(b, 1)}`, p: 1 };
            }
            return { s: `${this.paren(a, 1)}${op}${this.paren(b, 1)}`, p: 1 };
          })
          .with("div", () => ({
            s: L(`\\frac{${a.s}}{${b.s}}`, `${this.paren(a, 2)}/${this.paren(b, 2)}`),
            p: this.fmt === "latex" ? 3 : 1,
          }))
          .with("pow", () => ({
            s: L(`${this.paren(a, 3)}^{${b.s}}`, `${this.paren(a, 3)}^(${b.s})`),
            p: 2,
          }))
          .with("max", () => ({
            s: L(`\\max\\left(${a.s}, ${b.s}\\right)`, `max(${a.s}, ${b.s})`),
            p: 3,
          }))
          .with("min", () => ({
            s: L(`\\min\\left(${a.s}, ${b.s}\\right)`, `min(${a.s}, ${b.s})`),
            p: 3,
          }))
          .with("eq", () => ({ s: L(`[${a.s} = ${b.s}]`, `[${a.s} = ${b.s}]`), p: 3 }))
          .with("lt", () => ({ s: L(`[${a.s} < ${b.s}]`, `[${a.s} < ${b.s}]`), p: 3 }))
          .with("le", () => ({ s: L(`[${a.s} \\le ${b.s}]`, `[${a.s} ≤ ${b.s}]`), p: 3 }))
          .exhaustive();
      })
      .with({ op: "reduce" }, (n) => {
        const x = this.r(n.x);
        const last = n.axes.length === 1 && n.axes[0] === n.x.shape.length - 1;
        const idx = last ? "j" : L("\\text{rows}", "rows");
        return n.fn === "sum"
          ? { s: L(`\\sum_{${idx}} ${this.paren(x, 1)}`, `Σ_${idx} ${this.paren(x, 1)}`), p: 1 }
          : { s: L(`\\max_{${idx}} ${this.paren(x, 2)}`, `max_${idx} ${this.paren(x, 2)}`), p: 1 };
      })
      .with({ op: "reshape" }, { op: "broadcast" }, { op: "stopgrad" }, (n) => this.r(n.x))
      .with({ op: "permute" }, (n) => {
        const r = n.perm.length;
        const swap =
          r >= 2 &&
          n.perm[r - 1] === r - 2 &&
          n.perm[r - 2] === r - 1 &&
          n.perm.slice(0, -2).every((p, i) => p === i);
        if (!swap) return this.r(n.x);
        return {
          s: L(`${this.paren(this.r(n.x), 3)}^\\top`, `${this.paren(this.r(n.x), 3)}ᵀ`),
          p: 2,
        };
      })
      .with({ op: "slice" }, (n) => {
        const size = n.shape[n.axis]!;
        const from = n.start;
        const end = dimConstant(from) === 0 ? size : ({ op: "+", a: from, b: size } as Dim);
        const lo = L(dimLatex(simplifyDim(from)), dimToString(simplifyDim(from)));
        const hi = L(dimLatex(simplifyDim(end)), dimToString(simplifyDim(end)));
        const pre =
          n.axis === n.x.shape.length - 1 && n.x.shape.length > 1 ? L(":,\\,", ":, ") : "";
        return {
          s: `${this.paren(this.r(n.x), 3)}_{[${pre}${lo}:${hi}]}`
            .replace("_{", L("_{", "["))
            .replace(/\]}$/, L("]}", "]")),
          p: 2,
        };
      })
      .with({ op: "concat" }, (n) => ({
        s: L(
          `\\left[${n.xs.map((x) => this.r(x).s).join(";\\,")}\\right]`,
          `[${n.xs.map((x) => this.r(x).s).join("; ")}]`,
        ),
        p: 3,
      }))
      .with({ op: "matmul" }, (n) => ({
        s: `${this.paren(this.r(n.a), 1)}${L(" ", "·")}${this.paren(this.r(n.b), 2)}`,
        p: 1,
      }))
      .with({ op: "gather" }, (n) => ({
        s: `${this.paren(this.r(n.table), 3)}[${this.r(n.indices).s}]`,
        p: 2,
      }))
      .with({ op: "scatter_add" }, (n) => ({
        s: L(
          `\\mathrm{scatter}\\left(${this.r(n.updates).s}, ${this.r(n.indices).s}\\right)`,
          `scatter(${this.r(n.updates).s}, ${this.r(n.indices).s})`,
        ),
        p: 3,
      }))
      .with({ op: "where" }, (n) => ({
        s: L(
          `\\begin{cases} ${this.r(n.a).s} & \\text{if } ${this.r(n.cond).s} ` +
            `\\\\ ${this.r(n.b).s} & \\text{otherwise} \\end{cases}`,
          `(${this.r(n.a).s} if ${this.r(n.cond).s} else ${this.r(n.b).s})`,
        ),
        p: 3,
      }))
      .with({ op: "call" }, (n) => this.call(n))
      .exhaustive();
  }

  private call(n: Extract<Node, { op: "call" }>): R {
    const def = getFormula(n.formula);
    if (INLINE.has(n.formula)) return this.r(n.body);
    const sym = n.symbol ??
      def.symbol ??
      CALL_SYMBOLS[n.formula] ?? {
        latex: `\\mathrm{${n.formula.replace(/_/g, "\\_")}}`,
        text: n.formula,
      };
    if (def.symbolOnly) return { s: this.L(sym.latex, sym.text), p: 3 };
    const inputs = def
      .args(n.config)
      .filter((a) => a.role === "input" && n.args[a.name] !== undefined);
    const args = inputs.map((a) => this.r(n.args[a.name]!).s).join(", ");
    return { s: this.L(`${sym.latex}\\left(${args}\\right)`, `${sym.text}(${args})`), p: 3 };
  }
}

// ---------------------------------------------------------------------------------------------
// Formula documents

/**
 * A formula rendered for documents: its signature, arguments, hyperparameters, equations (LaTeX and
 * Unicode text) and parameter count.
 */
export interface RenderedFormula {
  readonly name: string;
  readonly description: string;
  readonly category: string;
  /** One line, e.g. `mha(x, W_Q, …; H) → y`. */
  readonly signature: string;
  readonly inputs: readonly RenderedArg[];
  readonly parameters: readonly RenderedArg[];
  readonly outputs: readonly { name: string; shape: string[]; doc: string }[];
  readonly hyperparameters: readonly {
    name: string;
    kind: string;
    default?: unknown;
    choices?: readonly string[];
    doc: string;
  }[];
  readonly relations: readonly string[];
  readonly notes: readonly string[];
  /** Equations, the last one(s) defining the outputs. */
  readonly latex: readonly string[];
  /** The same equations as Unicode text. */
  readonly text: readonly string[];
  /** Σ over parameters of Π shape, symbolically (null when there are none). */
  readonly parameterCount: {
    readonly symbolic: string;
    readonly latex: string;
    readonly value?: number;
  } | null;
}

/**
 * One argument of a rendered formula: its symbolic shape, whether it holds floats or integer ids,
 * and its description.
 */
export interface RenderedArg {
  readonly name: string;
  readonly shape: string[];
  readonly dtype: "float" | "int";
  readonly doc: string;
}

function argOut(a: ArgSpec): RenderedArg {
  return { name: a.name, shape: [...a.shape], dtype: a.int ? "int" : "float", doc: a.doc };
}

/** Equations of a formula's outputs in one format. */
function formulaEquations(def: FormulaDef, config: Config, fmt: Format): string[] {
  const built = buildFormula(def.name, config);
  const r = new Renderer(fmt);
  const lines: string[] = [];
  const outs = Object.entries(built.outputs);
  // the outputs are calls of this formula: its definition is their body
  const rhs = outs.map(
    ([name, e]) =>
      [
        name,
        r.render(e.node.op === "call" && e.node.formula === def.name ? e.node.body : e.node),
      ] as const,
  );
  for (const eq of r.equations) lines.push(`${eq.lhs} = ${eq.rhs}`);
  for (const [name, s] of rhs) lines.push(`${fmt === "latex" ? latexName(name) : name} = ${s}`);
  return lines;
}

/** Render one formula. `config` fills hyperparameters (the formula's example when omitted). */
export function renderFormula(name: string, config?: Config): RenderedFormula {
  const def = getFormula(name);
  const cfg = config === undefined ? exampleConfig(name) : resolveConfig(def, config);
  const args = def.args(cfg);
  const inputs = args.filter((a) => a.role === "input");
  const params = args.filter((a) => a.role === "param");
  const outputs = def.outputs(cfg);
  const hp = def.hyper.filter((h) => cfg[h.name] !== undefined || h.default !== undefined);
  const sig =
    `${name}(${inputs.map((a) => a.name).join(", ")}` +
    `${
      params.length
        ? `${inputs.length ? ", " : ""}` +
          `${params.length > 6 ? `…${params.length} parameters` : params.map((a) => a.name).join(", ")}`
        : ""
    }` +
    `${hp.length ? `; ${hp.map((h) => h.name).join(", ")}` : ""}) ` +
    `→ ${outputs.map((o) => o.name).join(", ")}`;
  return {
    name,
    description: def.description,
    category: def.category,
    signature: sig,
    inputs: inputs.map(argOut),
    parameters: params.map(argOut),
    outputs: outputs.map((o) => ({ name: o.name, shape: [...o.shape], doc: o.doc })),
    hyperparameters: def.hyper.map((h) => ({
      name: h.name,
      kind: h.kind,
      ...(cfg[h.name] !== undefined
        ? { default: cfg[h.name] }
        : h.default !== undefined
          ? { default: h.default }
          : {}),
      ...(h.choices ? { choices: h.choices } : {}),
      doc: h.doc,
    })),
    relations: def.relations?.(cfg) ?? [],
    notes: def.notes ?? [],
    latex: formulaEquations(def, cfg, "latex"),
    text: formulaEquations(def, cfg, "text"),
    parameterCount: parameterCount(def, cfg),
  };
}

/** Σ_params Π shape as a polynomial in the dims, with relations substituted, and its value when all dims are bound. */
function parameterCount(def: FormulaDef, cfg: Config): RenderedFormula["parameterCount"] {
  const params = def.args(cfg).filter((a) => a.role === "param");
  if (params.length === 0) return null;
  const subst = derivedDims(def, cfg, params);
  const resolve = (d: Dim): Dim => substituteAll(d, subst);
  const prod = (p: ArgSpec): Dim =>
    p.shape.reduce<Dim>((acc, d) => ({ op: "*", a: acc, b: dimFromString(d) }), 1);
  const sum = (ds: Dim[]): Dim => ds.reduce<Dim>((a, b) => ({ op: "+", a, b }), 0);
  // the L blocks of a model count once, times the symbol L
  const L = cfg[LAYERS.count];
  const blocks = typeof L === "number" ? Array.from({ length: L }, (_, l) => LAYERS.prefix(l)) : [];
  const layered = params.filter((p) => blocks.some((b) => p.name.startsWith(b)));
  const rest = params.filter((p) => !layered.includes(p));
  const block = layered.filter((p) => p.name.startsWith(LAYERS.prefix(0)));
  const perBlock: Dim = { op: "*", a: LAYERS.count, b: sum(block.map(prod)) };
  const total: Dim =
    layered.length > 0 ? { op: "+", a: sum(rest.map(prod)), b: perBlock } : sum(params.map(prod));
  const poly = polynomial(resolve(total));
  const env = new Map<string, number>(hyperDims(def, cfg));
  if (typeof L === "number") env.set(LAYERS.count, L);
  let value: number | undefined;
  try {
    value = evalDim(resolve(total), env);
  } catch {
    value = undefined;
  }
  return { symbolic: poly.text, latex: poly.latex, ...(value !== undefined ? { value } : {}) };
}

/**
 * Dims the declared relations derive, as expressions in the others (d_k = d_model/H,
 * d_kv = H_kv·d_model/H, H_kv = H when unset). The relations are stated with every dim
 * hyperparameter as its name, so the count stays symbolic in H; each relation eliminates one dim
 * that the configuration does not set — the one the fewest parameters are declared in (d_k, not
 * d_model).
 */
function derivedDims(def: FormulaDef, cfg: Config, params: readonly ArgSpec[]): Map<string, Dim> {
  const symbolic: Record<string, HyperValue> = { ...cfg };
  for (const h of def.hyper) {
    if (h.dim === true && typeof cfg[h.name] === "number") symbolic[h.name] = h.name;
  }
  const set = hyperDims(def, cfg);
  const declares = (p: ArgSpec, k: string) =>
    p.shape.some((d) => dimNames(dimFromString(d)).has(k));
  const uses = (name: string) => params.filter((p) => declares(p, name)).length;
  const subst = new Map<string, Dim>();
  for (const r of parseRelations(def, symbolic)) {
    const a = substituteAll(r.a, subst);
    const b = substituteAll(r.b, subst);
    const free = [...dimNames(a), ...dimNames(b)].filter((k) => !set.has(k) && !subst.has(k));
    if (free.length === 0) continue;
    const name = free.reduce((x, y) => (uses(y) < uses(x) ? y : x));
    const value = dimNames(a).has(name) ? solveDim(a, b, name) : solveDim(b, a, name);
    if (value === undefined) continue;
    for (const [k, v] of subst) subst.set(k, substituteAll(v, new Map([[name, value]])));
    subst.set(name, value);
  }
  return subst;
}

/** `side = other` solved for `name`, which occurs once in `side`: H·d_k = d_model → d_model/H. */
function solveDim(side: Dim, other: Dim, name: string): Dim | undefined {
  if (side === name) return other;
  if (typeof side !== "object") return undefined;
  const inA = dimNames(side.a).has(name);
  const [x, y] = inA ? [side.a, side.b] : [side.b, side.a];
  switch (side.op) {
    case "+":
      return solveDim(x, { op: "-", a: other, b: y }, name);
    case "-":
      return solveDim(x, inA ? { op: "+", a: other, b: y } : { op: "-", a: y, b: other }, name);
    case "*":
      return solveDim(x, { op: "/", a: other, b: y }, name);
    case "/":
      return solveDim(x, inA ? { op: "*", a: other, b: y } : { op: "/", a: y, b: other }, name);
  }
}

function substituteAll(d: Dim, s: ReadonlyMap<string, Dim>): Dim {
  if (typeof d === "string") return s.get(d) ?? d;
  if (typeof d === "number") return d;
  return { op: d.op, a: substituteAll(d.a, s), b: substituteAll(d.b, s) };
}
