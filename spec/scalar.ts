/**
 * Scalar elementwise functions, each declared once as a math string in `x` that mathjs parses,
 * renders and (in tests) differentiates symbolically. The engine's fast kernels and derivative
 * rules live in autodiff/ and are checked against these strings.
 */
export interface ScalarFn {
  readonly name: string;
  /** The function of `x` as a mathjs expression. */
  readonly math: string;
  /** One line: what it is and where it is used. */
  readonly doc: string;
  /** LaTeX of f applied to an argument already rendered as LaTeX. */
  readonly latex: (arg: string) => string;
  /** Unicode text of f applied to an argument. */
  readonly text: (arg: string) => string;
  /** Differentiable everywhere it is defined (so mathjs's derivative is a fair oracle). */
  readonly smooth: boolean;
}

const fn = (
  name: string,
  math: string,
  doc: string,
  latex: (a: string) => string,
  text: (a: string) => string,
  smooth = true,
): ScalarFn => ({
  name,
  math,
  doc,
  latex,
  text,
  smooth,
});
const op = (texName: string) => (a: string) => `\\${texName}\\left(${a}\\right)`;
const call = (name: string) => (a: string) => `${name}(${a})`;
const mrm = (name: string) => (a: string) => `\\mathrm{${name}}\\left(${a}\\right)`;

/**
 * The closed set of scalar functions. Adding one means adding its kernel (autodiff/kernels) and its
 * derivative rule (autodiff/vjp); exhaustive tables make a missing entry a compile error.
 */
export const SCALAR_FNS = {
  neg: fn(
    "neg",
    "-x",
    "negation",
    (a) => `-${a}`,
    (a) => `−${a}`,
  ),
  exp: fn("exp", "exp(x)", "exponential", op("exp"), call("exp")),
  log: fn("log", "log(x)", "natural logarithm", op("log"), call("log")),
  sqrt: fn(
    "sqrt",
    "sqrt(x)",
    "square root",
    (a) => `\\sqrt{${a}}`,
    (a) => `√(${a})`,
  ),
  rsqrt: fn(
    "rsqrt",
    "1/sqrt(x)",
    "reciprocal square root (LayerNorm's 1/σ)",
    (a) => `\\frac{1}{\\sqrt{${a}}}`,
    (a) => `1/√(${a})`,
  ),
  recip: fn(
    "recip",
    "1/x",
    "reciprocal",
    (a) => `\\frac{1}{${a}}`,
    (a) => `1/(${a})`,
  ),
  square: fn(
    "square",
    "x^2",
    "square",
    (a) => `\\left(${a}\\right)^{2}`,
    (a) => `(${a})²`,
  ),
  tanh: fn("tanh", "tanh(x)", "hyperbolic tangent", op("tanh"), call("tanh")),
  sigmoid: fn(
    "sigmoid",
    "1/(1+exp(-x))",
    "logistic sigmoid σ",
    (a) => `\\sigma\\left(${a}\\right)`,
    call("σ"),
  ),
  erf: fn("erf", "erf(x)", "error function", mrm("erf"), call("erf")),
  sin: fn("sin", "sin(x)", "sine (sinusoidal positions, RoPE)", op("sin"), call("sin")),
  cos: fn("cos", "cos(x)", "cosine (sinusoidal positions, RoPE)", op("cos"), call("cos")),
  abs: fn(
    "abs",
    "abs(x)",
    "absolute value",
    (a) => `\\left|${a}\\right|`,
    (a) => `|${a}|`,
    false,
  ),
  relu: fn("relu", "max(x, 0)", "ReLU, max(x, 0)", mrm("ReLU"), call("ReLU"), false),
  step: fn(
    "step",
    "x > 0 ? 1 : 0",
    "Heaviside step, 1 for x > 0 (ReLU's derivative)",
    (a) => `\\mathbb{1}\\left[${a} > 0\\right]`,
    (a) => `𝟙[${a} > 0]`,
    false,
  ),
  floor: fn(
    "floor",
    "floor(x)",
    "floor (integer index arithmetic)",
    (a) => `\\left\\lfloor ${a} \\right\\rfloor`,
    (a) => `⌊${a}⌋`,
    false,
  ),
  gelu: fn(
    "gelu",
    "0.5*x*(1+erf(x/sqrt(2)))",
    "GELU, exact form x·Φ(x) (PyTorch default)",
    mrm("GELU"),
    call("GELU"),
  ),
  gelu_grad: fn(
    "gelu_grad",
    "0.5*(1+erf(x/sqrt(2))) + x*exp(-x^2/2)/sqrt(2*pi)",
    "GELU'(x) = Φ(x) + x·φ(x)",
    mrm("GELU'"),
    call("GELU'"),
  ),
  gelu_tanh: fn(
    "gelu_tanh",
    "0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))",
    "GELU, tanh approximation (GPT-2 gelu_new)",
    mrm("GELU_{\\tanh}"),
    call("GELU_tanh"),
  ),
  gelu_tanh_grad: fn(
    "gelu_tanh_grad",
    "0.5*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) + " +
      "0.5*x*(1-tanh(sqrt(2/pi)*(x+0.044715*x^3))^2)*sqrt(2/pi)*(1+3*0.044715*x^2)",
    "derivative of the tanh-form GELU",
    mrm("GELU_{\\tanh}'"),
    call("GELU_tanh'"),
  ),
  silu: fn("silu", "x/(1+exp(-x))", "SiLU (swish), x·σ(x)", mrm("SiLU"), call("SiLU")),
  silu_grad: fn(
    "silu_grad",
    "(1+exp(-x)+x*exp(-x))/(1+exp(-x))^2",
    "SiLU'(x) = σ(x)(1 + x(1 − σ(x)))",
    mrm("SiLU'"),
    call("SiLU'"),
  ),
} as const satisfies Record<string, ScalarFn>;

/** The name of a scalar elementwise function: a key of {@link SCALAR_FNS}. */
export type ScalarFnName = keyof typeof SCALAR_FNS;
/** The names of all scalar elementwise functions, in declaration order. */
export const SCALAR_FN_NAMES = Object.keys(SCALAR_FNS) as ScalarFnName[];

/**
 * LaTeX of the function's defining math string, via mathjs (`f(x) = ...`). mathjs loads on the
 * first call: formulas render without it, and it costs seconds to import.
 */
export async function scalarDefinitionLatex(name: ScalarFnName): Promise<string> {
  const { parse } = await import("mathjs");
  return parse(SCALAR_FNS[name].math).toTex({ parenthesis: "auto", implicit: "hide" });
}
