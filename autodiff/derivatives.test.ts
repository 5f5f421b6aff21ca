/**
 * mathjs as an independent oracle: the derivative of every scalar function that a VJP rule uses is
 * compared with mathjs's symbolic derivative of the function's math string (spec/scalar.ts), and the
 * derivative functions' own derivatives (second order) likewise. mathjs has no derivative rule for
 * erf; we give it the textbook one, d/dx erf(u) = (2/√π) e^(−u²) u', by differentiating with erf(u)
 * held as a symbol E and adding ∂f/∂E · dE/dx — everything else is mathjs's.
 */
import fc from "fast-check";
import { derivative, parse, type MathNode } from "mathjs";
import { describe, expect, test } from "vitest";
import "../spec/index.js";
import { SCALAR_FNS, SCALAR_FN_NAMES, type ScalarFnName } from "../spec/scalar.js";
import { input } from "../spec/expr.js";
import { scalarDerivative } from "./vjp.js";
import { evaluate } from "./evaluate.js";
import { Tensor } from "./tensor.js";
import { erf, scalarKernel } from "./kernels/scalar.js";
import { erf as mathErf } from "mathjs";

/** d/dx of a math string, with erf's rule supplied; returns a numeric function. */
function mathjsDerivative(src: string): (x: number) => number {
  const node = parse(src);
  const erfCalls: MathNode[] = [];
  node.traverse((n) => {
    if (n.type === "FunctionNode" && (n as unknown as { fn: { name: string } }).fn.name === "erf")
      erfCalls.push(n);
  });
  if (erfCalls.length === 0) {
    const d = derivative(node, "x").compile();
    return (x) => d.evaluate({ x }) as number;
  }
  // replace each erf(u_k) by a symbol E_k: f(x, E_1..E_m); df/dx = ∂f/∂x + Σ ∂f/∂E_k · (2/√π) e^(−u_k²) u_k'
  const args = erfCalls.map((c) => (c as unknown as { args: MathNode[] }).args[0]!);
  let k = 0;
  const replaced = node.transform((n) =>
    n.type === "FunctionNode" && (n as unknown as { fn: { name: string } }).fn.name === "erf"
      ? parse(`E${k++}`)
      : n,
  );
  const dfdx = derivative(replaced, "x").compile();
  const dfdE = args.map((_, i) => derivative(replaced, `E${i}`).compile());
  const du = args.map((u) => derivative(u, "x").compile());
  const uc = args.map((u) => u.compile());
  return (x) => {
    const scope: Record<string, number> = { x };
    args.forEach((_, i) => (scope[`E${i}`] = mathErf(uc[i]!.evaluate({ x }) as number) as number));
    let d = dfdx.evaluate(scope) as number;
    args.forEach((_, i) => {
      const u = uc[i]!.evaluate({ x }) as number;
      d +=
        (dfdE[i]!.evaluate(scope) as number) *
        (2 / Math.sqrt(Math.PI)) *
        Math.exp(-u * u) *
        (du[i]!.evaluate({ x }) as number);
    });
    return d;
  };
}

/** Our derivative of fn at x: the VJP rule's graph, evaluated. */
function ruleDerivative(fn: ScalarFnName): ((x: number) => number) | null {
  const x = input("x", ["k"]);
  const y = input("y", ["k"]);
  const d = scalarDerivative(fn, x, y);
  if (d === null) return null;
  const g = {
    name: `d ${fn}`,
    config: {},
    args: { x, y },
    outputs: { d },
    relations: [],
    hyper: new Map(),
  };
  const f = scalarKernel(fn);
  return (v) => evaluate(g, { x: Tensor.from([v]), y: Tensor.from([f(v)]) })["d"]!.data[0]!;
}

const DOMAIN: Partial<Record<ScalarFnName, [number, number]>> = {
  log: [0.05, 50],
  sqrt: [0.05, 50],
  rsqrt: [0.05, 50],
  recip: [0.05, 50],
};
const points = (fn: ScalarFnName) => {
  const [lo, hi] = DOMAIN[fn] ?? [-6, 6];
  // away from 0 and from integers (the kinks of relu, abs, step and floor)
  return fc.sample(
    fc.double({ min: lo, max: hi, noNaN: true }).filter((v) => Math.abs(v - Math.round(v)) > 1e-3),
    { numRuns: 200, seed: 7 },
  );
};
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12 + 1e-10 * Math.abs(b);

describe("scalar kernels agree with their math strings (mathjs evaluates them)", () => {
  for (const fn of SCALAR_FN_NAMES) {
    // step(0) is a convention; mathjs's floor rounds within its epsilon (floor(6 − 1e-15) = 6): both are
    // exercised through the piecewise check below instead
    if (fn === "step" || fn === "floor") continue;
    test(fn, () => {
      const k = scalarKernel(fn);
      const m = parse(SCALAR_FNS[fn].math).compile();
      for (const x of points(fn))
        expect(
          close(k(x), m.evaluate({ x }) as number),
          `${fn}(${x}) = ${k(x)} vs ${m.evaluate({ x })}`,
        ).toBe(true);
    });
  }
});

describe("derivatives used by VJP rules equal mathjs's symbolic derivatives", () => {
  for (const fn of SCALAR_FN_NAMES) {
    const smooth = SCALAR_FNS[fn].smooth;
    test(`${fn}${smooth ? "" : " (piecewise: compared away from its kinks)"}`, () => {
      const ours = ruleDerivative(fn);
      if (!smooth) {
        // relu' = step, abs' = sign, step' = floor' = 0 almost everywhere: compare with central differences
        const f = scalarKernel(fn);
        for (const x of points(fn)) {
          const h = 1e-7;
          const fd = (f(x + h) - f(x - h)) / (2 * h);
          const a = ours === null ? 0 : ours(x);
          expect(Math.abs(a - fd) < 1e-6, `${fn}'(${x})`).toBe(true);
        }
        return;
      }
      expect(ours, fn).not.toBeNull();
      const oracle = mathjsDerivative(SCALAR_FNS[fn].math);
      for (const x of points(fn))
        expect(
          close(ours!(x), oracle(x)),
          `${fn}'(${x}) = ${ours!(x)} vs mathjs ${oracle(x)}`,
        ).toBe(true);
    });
  }
});

describe("erf", () => {
  test("matches mathjs's erf (an independent implementation) across its range", () => {
    for (const x of fc.sample(fc.double({ min: -7, max: 7, noNaN: true }), {
      numRuns: 2000,
      seed: 11,
    })) {
      const e = mathErf(x) as number;
      expect(Math.abs(erf(x) - e) <= 4e-16 * Math.max(1, Math.abs(e)), `erf(${x})`).toBe(true);
    }
  });
  test("special values", () => {
    expect(erf(0)).toBe(0);
    expect(Object.is(erf(-0), -0)).toBe(true);
    expect(erf(Infinity)).toBe(1);
    expect(erf(-Infinity)).toBe(-1);
    expect(erf(NaN)).toBeNaN();
  });
});
