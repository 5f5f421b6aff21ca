/**
 * The little statistics the studies need: means and spreads over seeds, and least-squares lines
 * (a log-log fit is a line through (ln x, ln y), its slope the exponent of a power law).
 */

/** A problem with the numbers handed to a statistic. */
export class StatsError extends Error {
  override name = "StatsError";
}

function checkFinite(xs: readonly number[], what: string): void {
  xs.forEach((v, i) => {
    if (!Number.isFinite(v))
      throw new StatsError(`${what}: value ${i} is ${v}, not a finite number`);
  });
}

/** Arithmetic mean. @example mean([1, 2, 6]) // 3 */
export function mean(xs: readonly number[]): number {
  if (xs.length === 0) throw new StatsError("mean of no values");
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation (n − 1 in the denominator); 0 for a single value. @example std([1, 3]) // √2 */
export function std(xs: readonly number[]): number {
  if (xs.length === 0) throw new StatsError("standard deviation of no values");
  if (xs.length === 1) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

/** Median (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new StatsError("median of no values");
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

export interface LineFit {
  /** b in y = a + b·x. */
  readonly slope: number;
  /** a in y = a + b·x. */
  readonly intercept: number;
  /**
   * Standard error of the slope, s / √Σ(x − x̄)² with s² = Σ residual² / (n − 2);
   * NaN with only two points (a line through two points has no residual to estimate it from).
   */
  readonly slopeSE: number;
  /** Coefficient of determination (1 when every point is on the line; NaN when y is constant). */
  readonly r2: number;
  readonly n: number;
}

/**
 * Ordinary least squares y ≈ a + b·x.
 *
 * b = Σ(x − x̄)(y − ȳ) / Σ(x − x̄)², a = ȳ − b·x̄.
 *
 * @throws StatsError for fewer than two points, unequal lengths, non-finite values or all x equal.
 * @example linearFit([0, 1, 2], [1, 3, 5]).slope // 2
 */
export function linearFit(xs: readonly number[], ys: readonly number[]): LineFit {
  if (xs.length !== ys.length)
    throw new StatsError(`linearFit: ${xs.length} x values but ${ys.length} y values`);
  if (xs.length < 2)
    throw new StatsError(`linearFit: a line needs at least 2 points, got ${xs.length}`);
  checkFinite(xs, "linearFit x");
  checkFinite(ys, "linearFit y");
  const n = xs.length;
  const mx = mean(xs);
  const my = mean(ys);
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) throw new StatsError(`linearFit: every x equals ${mx}; the slope is undefined`);
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i]! - intercept - slope * xs[i]!) ** 2;
  const slopeSE = n > 2 ? Math.sqrt(sse / (n - 2) / sxx) : Number.NaN;
  const r2 = syy === 0 ? Number.NaN : 1 - sse / syy;
  return { slope, intercept, slopeSE, r2, n };
}

/**
 * Fit y ≈ C·x^k by least squares on (ln x, ln y); returns the line in log space (slope = k).
 * @throws StatsError for a non-positive x or y.
 * @example logLogFit([1, 4, 16], [2, 1, 0.5]).slope // −0.5
 */
export function logLogFit(xs: readonly number[], ys: readonly number[]): LineFit {
  const lx = xs.map((x, i) => {
    if (!(x > 0)) throw new StatsError(`logLogFit: x value ${i} is ${x}; a power law needs x > 0`);
    return Math.log(x);
  });
  const ly = ys.map((y, i) => {
    if (!(y > 0)) throw new StatsError(`logLogFit: y value ${i} is ${y}; a power law needs y > 0`);
    return Math.log(y);
  });
  return linearFit(lx, ly);
}

/**
 * Two-sided 95% quantile t₀.₉₇₅ of Student's t distribution with `df` degrees of freedom
 * (the standard table, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2, for df ≤ 30; beyond, Cornish–Fisher
 * from the normal z = 1.959964: z + (z³ + z)/(4·df), within 2e-3 of the table at df = 30).
 * @example tQuantile975(4) // 2.776
 */
export function tQuantile975(df: number): number {
  if (!Number.isInteger(df) || df < 1)
    throw new StatsError(`tQuantile975: degrees of freedom must be a positive integer, got ${df}`);
  const table = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16,
    2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052,
    2.048, 2.045, 2.042,
  ];
  if (df <= table.length) return table[df - 1]!;
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df);
}

/** A mean difference with its 95% confidence interval. */
export interface PairedInterval {
  /** Mean of the per-pair differences a − b. */
  readonly mean: number;
  /** Half-width t₀.₉₇₅(n − 1)·s/√n (NaN for a single pair). */
  readonly halfWidth: number;
  readonly low: number;
  readonly high: number;
  /** Standard deviation of the differences. */
  readonly sd: number;
  readonly n: number;
  /** The interval excludes 0. */
  readonly significant: boolean;
}

/**
 * The paired t interval of a − b over matched pairs (e.g. the same seed for two variants): the
 * differences d_i = a_i − b_i, mean ± t₀.₉₇₅(n − 1)·sd(d)/√n. Pairing removes what the two share
 * (initial weights and data order), which an unpaired spread of a alone would count as noise.
 * @throws StatsError for unequal lengths, no pairs or non-finite values.
 * @example pairedInterval([2, 3, 4], [1, 1, 1]).mean // 2
 */
export function pairedInterval(a: readonly number[], b: readonly number[]): PairedInterval {
  if (a.length !== b.length)
    throw new StatsError(
      `pairedInterval: ${a.length} values against ${b.length}; pairs need equal lengths`,
    );
  if (a.length === 0) throw new StatsError("pairedInterval: no pairs");
  checkFinite(a, "pairedInterval a");
  checkFinite(b, "pairedInterval b");
  const d = a.map((x, i) => x - b[i]!);
  const m = mean(d);
  const n = d.length;
  const sd = std(d);
  const halfWidth = n > 1 ? (tQuantile975(n - 1) * sd) / Math.sqrt(n) : Number.NaN;
  return {
    mean: m,
    halfWidth,
    low: m - halfWidth,
    high: m + halfWidth,
    sd,
    n,
    significant: n > 1 && (m - halfWidth > 0 || m + halfWidth < 0),
  };
}
