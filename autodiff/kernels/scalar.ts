/**
 * Per-element kernels of the scalar functions of spec/scalar.ts. Each is a JavaScript expression
 * in `x`; `unaryLoop(fn)` compiles one monomorphic loop per function (no per-element closure call).
 */
import type { ScalarFnName } from "../../spec/scalar.js";

// erf by the classic Sun fdlibm method (rational approximations on four intervals, < 1 ulp);
// the coefficients are the published ones of that method.
const ERX = 8.45062911510467529297e-1;
const EFX = 1.28379167095512586316e-1;
const PP = [
  1.28379167095512558561e-1, -3.2504210724700149937e-1, -2.84817495755985104766e-2,
  -5.77027029648944159157e-3, -2.37630166566501626084e-5,
];
const QQ = [
  3.97917223959155352819e-1, 6.50222499887672944485e-2, 5.08130628187576562776e-3,
  1.32494738004321644526e-4, -3.9602282787753681232e-6,
];
const PA = [
  -2.36211856075265944077e-3, 4.14856118683748331666e-1, -3.72207876035701323847e-1,
  3.18346619901161753674e-1, -1.10894694282396677476e-1, 3.54783043256182359371e-2,
  -2.166375594868790843e-3,
];
const QA = [
  1.06420880400844228286e-1, 5.40397917702171048937e-1, 7.18286544141962662868e-2,
  1.26171219808761642112e-1, 1.36370839120290507362e-2, 1.1984499846799107417e-2,
];
const RA = [
  -9.86494403484714822705e-3, -6.93858572707181764372e-1, -1.05586262253232909814e1,
  -6.23753324503260060396e1, -1.62396669462573470355e2, -1.84605092906711035994e2,
  -8.12874355063065934246e1, -9.81432934416914548592,
];
const SA = [
  1.96512716674392571292e1, 1.376577541435190426e2, 4.34565877475229228821e2,
  6.45387271733267880336e2, 4.29008140027567833386e2, 1.08635005541779435134e2,
  6.57024977031928170135, -6.04244152148580987438e-2,
];
const RB = [
  -9.86494292470009928597e-3, -7.99283237680523006574e-1, -1.77579549177547519889e1,
  -1.60636384855821916062e2, -6.37566443368389627722e2, -1.02509513161107724954e3,
  -4.83519191608651397019e2,
];
const SB = [
  3.03380607434824582924e1, 3.25792512996573918826e2, 1.53672958608443695994e3,
  3.19985821950859553908e3, 2.55305040643316442583e3, 4.74528541206955367215e2,
  -2.24409524465858183362e1,
];

/** Horner: c[0] + s(c[1] + s(...)). */
function poly(c: readonly number[], s: number): number {
  let r = c[c.length - 1]!;
  for (let i = c.length - 2; i >= 0; i--) r = c[i]! + s * r;
  return r;
}
/** 1 + s(c[0] + s(c[1] + ...)). */
function poly1(c: readonly number[], s: number): number {
  return 1 + s * poly(c, s);
}

/** The error function to within 1 ulp (IEEE special cases: erf(±∞) = ±1, erf(NaN) = NaN). */
export function erf(x: number): number {
  if (x !== x) return NaN;
  const ax = Math.abs(x);
  if (ax < 0.84375) {
    if (ax < 3.725290298461914e-9) return x + EFX * x; // |x| < 2^-28
    const z = x * x;
    return x + x * (poly(PP, z) / poly1(QQ, z));
  }
  if (ax < 1.25) {
    const s = ax - 1;
    const r = ERX + poly(PA, s) / poly1(QA, s);
    return x >= 0 ? r : -r;
  }
  if (ax >= 6) return x >= 0 ? 1 : -1;
  const s = 1 / (ax * ax);
  const R = ax < 1 / 0.35 ? poly(RA, s) : poly(RB, s);
  const S = ax < 1 / 0.35 ? poly1(SA, s) : poly1(SB, s);
  // exp(−x² − 0.5625 + R/S) computed as exp(−z² − 0.5625)·exp((z − x)(z + x) + R/S) with z = x
  // rounded to 24 bits, so z² is exact in double precision.
  const z = Math.fround(ax);
  const r = Math.exp(-z * z - 0.5625) * Math.exp((z - ax) * (z + ax) + R / S);
  return x >= 0 ? 1 - r / ax : r / ax - 1;
}

const SQRT1_2 = Math.SQRT1_2;
const SQRT_2_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Per-element code in `x` (helpers in scope: erf, and the constants above): an expression, or
 * statements binding temporaries followed by the expression (`{ pre, expr }`), which the loop
 * compiles inline — no per-element function call.
 */
export type ScalarKernel = string | { readonly pre: string; readonly expr: string };

export const SCALAR_KERNELS: Record<ScalarFnName, ScalarKernel> = {
  neg: "-x",
  exp: "Math.exp(x)",
  log: "Math.log(x)",
  sqrt: "Math.sqrt(x)",
  rsqrt: "1 / Math.sqrt(x)",
  recip: "1 / x",
  square: "x * x",
  tanh: "Math.tanh(x)",
  // σ(x) = 1/(1 + e^{−x}), computed without overflow for large |x|
  sigmoid: "x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))",
  erf: "erf(x)",
  sin: "Math.sin(x)",
  cos: "Math.cos(x)",
  abs: "Math.abs(x)",
  relu: "x > 0 ? x : (x === x ? 0 : x)",
  step: "x > 0 ? 1 : (x === x ? 0 : x)",
  floor: "Math.floor(x)",
  // x·Φ(x), Φ(x) = ½(1 + erf(x/√2))
  gelu: "0.5 * x * (1 + erf(x * SQRT1_2))",
  // Φ(x) + x·φ(x)
  gelu_grad: "0.5 * (1 + erf(x * SQRT1_2)) + x * Math.exp(-0.5 * x * x) * INV_SQRT_2PI",
  gelu_tanh: "0.5 * x * (1 + Math.tanh(SQRT_2_PI * (x + 0.044715 * x * x * x)))",
  // ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh(√(2/π)(x + 0.044715x³))
  gelu_tanh_grad: {
    pre: "const t = Math.tanh(SQRT_2_PI * (x + 0.044715 * x * x * x));",
    expr: "0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_PI * (1 + 0.134145 * x * x)",
  },
  // x·σ(x)
  silu: "x >= 0 ? x / (1 + Math.exp(-x)) : x * Math.exp(x) / (1 + Math.exp(x))",
  // σ(x)(1 + x(1 − σ(x)))
  silu_grad: {
    pre: "const s = x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));",
    expr: "s * (1 + x * (1 - s))",
  },
};

type Loop = (
  inp: ArrayLike<number>,
  out: { [i: number]: number; length: number },
  n: number,
) => void;
type Fn1 = (x: number) => number;

const loops = new Map<ScalarFnName, Loop>();
const scalars = new Map<ScalarFnName, Fn1>();

function compile<T>(body: string): T {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function("erf", "SQRT1_2", "SQRT_2_PI", "INV_SQRT_2PI", body)(
    erf,
    SQRT1_2,
    SQRT_2_PI,
    INV_SQRT_2PI,
  ) as T;
}

/** out[i] = f(inp[i]) for i < n, one compiled loop per function. */
export function unaryLoop(fn: ScalarFnName): Loop {
  let l = loops.get(fn);
  if (l === undefined) {
    const k = SCALAR_KERNELS[fn];
    const [pre, expr] = typeof k === "string" ? ["", k] : [k.pre, k.expr];
    l = compile<Loop>(
      `return function ${fn}Loop(inp, out, n) { for (let i = 0; i < n; i++) { ` +
        `const x = inp[i]; ${pre} out[i] = ${expr}; } };`,
    );
    loops.set(fn, l);
  }
  return l;
}

/** f(x) for one number (tests, oracles). */
export function scalarKernel(fn: ScalarFnName): Fn1 {
  let f = scalars.get(fn);
  if (f === undefined) {
    const k = SCALAR_KERNELS[fn];
    const [pre, expr] = typeof k === "string" ? ["", k] : [k.pre, k.expr];
    f = compile<Fn1>(`return function ${fn}Kernel(x) { ${pre} return ${expr}; };`);
    scalars.set(fn, f);
  }
  return f;
}
