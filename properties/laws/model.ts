/**
 * Laws of blocks and the whole model: KV-cache decoding equals recomputation (a model-based
 * test with fc.commands), the tied embedding's gradient is the sum of its two uses, and blocks
 * with zeroed branch outputs reduce to the identity (pre-LN) or to their norms (post-LN).
 */
import fc from "fast-check";
import { Tensor, type NamedTensors } from "../../autodiff/tensor.js";
import type { FormulaConfig } from "../../autodiff/implementation.js";
import type { FormulaCase } from "../arbitraries.js";
import { Check, checked, twinTolerance, type Law, type LawScope } from "../law.js";
import { firstBitDifference, lastAxisRows, maxAbs, sliceAxis } from "../tensor-ops.js";
import {
  conditionedBound,
  conditionedReason,
  gamma,
  gradSensitivity,
  roundingDepth,
  unitRoundoff,
} from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb, scopedSeededCaseArb } from "./generic.js";
import { normEntryError, rowStats } from "./norms.js";
import { Rng } from "../../autodiff/random.js";
import { formulasOf } from "../../spec/index.js";

// ---------------------------------------------------------------------------------------------
// KV cache: model-based

/** What the test believes: the tokens fed so far and whether the last step's logits are known. */
interface KvModel {
  tokens: number[];
  canDecode: boolean;
}

/** The system under test: the implementation's cache after each step. */
interface KvReal {
  readonly k: Check;
  readonly config: FormulaConfig;
  readonly params: NamedTensors;
  readonly L: number;
  cache: NamedTensors;
  lastLogits: Float64Array | null;
  /** Steps run so far (for messages). */
  log: string[];
}

type KvCommand = fc.AsyncCommand<KvModel, KvReal>;

/** Feed `ids` with the cache, check logits and cache against recomputation, keep the cache. */
async function step(
  model: KvModel,
  real: KvReal,
  ids: readonly number[],
  label: string,
): Promise<void> {
  const { k } = real;
  const p = model.tokens.length;
  real.log.push(label);
  const where = `after ${real.log.join(", ")}`;
  const cacheCfg = { ...real.config, kv_cache: true };
  const inputs: NamedTensors = {
    ...real.params,
    tokens: Tensor.from(ids, "i32", [ids.length]),
    ...real.cache,
  };
  const stepOut = await k.forward(k.request("gpt", cacheCfg, inputs), `cached step (${where})`);
  const all = [...model.tokens, ...ids];
  const tokensAll = Tensor.from(all, "i32", [all.length]);
  // recomputation: the model without a cache on every token so far
  const fullReq = k.request(
    "gpt",
    { ...real.config, kv_cache: false },
    { ...real.params, tokens: tokensAll, targets: Tensor.zeros([all.length], "i32") },
  );
  const fullOut = await k.forward(fullReq, `recomputation without cache (${where})`);
  const logits = k.pick(stepOut, "logits", "gpt", "cached step");
  const fullLogits = k.pick(fullOut, "logits", "gpt", "recomputation");
  await k.expectTwin(
    `logits of positions ${p}..${all.length - 1} with the cache vs recomputed without (${where})`,
    sliceAxis(fullLogits, -2, p, ids.length),
    logits,
    fullReq,
    fullOut,
    "logits",
    { tokens: all, step: label },
  );
  // the cache itself: append-only, and equal to the keys/values computed from scratch
  const scratchReq = k.request("gpt", cacheCfg, {
    ...real.params,
    tokens: tokensAll,
    ...emptyCache(real),
  });
  const scratch = await k.forward(scratchReq, `all tokens with an empty cache (${where})`);
  const next: NamedTensors = {};
  for (let l = 0; l < real.L; l++) {
    for (const kv of ["k", "v"] as const) {
      const present = k.pick(stepOut, `present.${l}.${kv}`, "gpt", "cached step");
      const past = real.cache[`past.${l}.${kv}`]!;
      if (present.shape.at(-2) !== all.length)
        k.fail(
          `present.${l}.${kv} has ${present.shape.at(-2)} positions after ${all.length} tokens (${where})`,
          { quantity: `present.${l}.${kv}` },
        );
      const kept = sliceAxis(present, -2, 0, p);
      const i = firstBitDifference(past.dtype === kept.dtype ? past : past.to(kept.dtype), kept);
      if (i >= 0)
        k.fail(
          `present.${l}.${kv} changed cached position ${kept.unravel(i)[1]} (the cache must only grow) (${where})`,
          {
            quantity: `present.${l}.${kv}`,
            index: kept.unravel(i),
            expected: past.data[i]!,
            actual: kept.data[i]!,
          },
        );
      await k.expectTwin(
        `present.${l}.${kv} vs the keys/values of all tokens from scratch (${where})`,
        k.pick(scratch, `present.${l}.${kv}`, "gpt", "scratch"),
        present,
        scratchReq,
        scratch,
        `present.${l}.${kv}`,
      );
      next[`past.${l}.${kv}`] = present;
    }
  }
  real.cache = next;
  const rowsL = lastAxisRows(logits);
  real.lastLogits = rowsL[rowsL.length - 1] ?? null;
  model.tokens = all;
  model.canDecode = true;
}

function emptyCache(real: KvReal): NamedTensors {
  const out: NamedTensors = {};
  const H_kv = Number(real.config["H_kv"] ?? real.config["H"]);
  const d_k = Number(real.config["d_model"]) / Number(real.config["H"]);
  for (let l = 0; l < real.L; l++)
    for (const kv of ["k", "v"])
      out[`past.${l}.${kv}`] = Tensor.zeros([H_kv, 0, d_k], real.k.dtype);
  return out;
}

class AppendCommand implements KvCommand {
  constructor(
    readonly ids: readonly number[],
    readonly nCtx: number,
  ) {}
  check(m: Readonly<KvModel>): boolean {
    return m.tokens.length + this.ids.length <= this.nCtx;
  }
  async run(m: KvModel, r: KvReal): Promise<void> {
    await step(m, r, this.ids, `append [${this.ids.join(", ")}]`);
  }
  toString(): string {
    return `append([${this.ids.join(", ")}])`;
  }
}

class DecodeCommand implements KvCommand {
  constructor(readonly nCtx: number) {}
  check(m: Readonly<KvModel>): boolean {
    return m.canDecode && m.tokens.length + 1 <= this.nCtx;
  }
  async run(m: KvModel, r: KvReal): Promise<void> {
    const row = r.lastLogits!;
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
    await step(m, r, [best], `decode → ${best}`);
  }
  toString(): string {
    return "decode()";
  }
}

class TruncateCommand implements KvCommand {
  constructor(readonly keep: number) {}
  check(m: Readonly<KvModel>): boolean {
    return m.tokens.length >= 1;
  }
  async run(m: KvModel, r: KvReal): Promise<void> {
    const keep = this.keep % (m.tokens.length + 1);
    const next: NamedTensors = {};
    for (const [name, t] of Object.entries(r.cache)) next[name] = sliceAxis(t, -2, 0, keep);
    r.cache = next;
    r.log.push(`truncate to ${keep}`);
    m.tokens = m.tokens.slice(0, keep);
    m.canDecode = false;
    r.lastLogits = null;
  }
  toString(): string {
    return `truncate(${this.keep})`;
  }
}

interface KvCase extends FormulaCase {
  readonly commands: Iterable<KvCommand>;
}

export const kvCache: Law<KvCase> = {
  name: "kv_cache",
  formulas: ["gpt"],
  statement:
    "decoding with a KV cache equals recomputation: after any sequence of " +
    "append(ids) / greedy decode() / truncate(t) steps, the cached step's " +
    "logits equal the uncached model's logits of the same positions, and " +
    "present.{l}.k/v grow append-only and equal the keys/values computed from scratch",
  tolerance: twinTolerance(
    "two evaluations of the same positions (cached and recomputed): " +
      "2·γ_K·(S + κ̂) of the recomputation (tolerance.ts); the cached past is " +
      "copied, not recomputed, so the kept positions must be bitwise equal",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedSeededCaseArb(scope, f, {
        fixed: { causal: true, kv_cache: false },
        dims: { batch: "none", maxN: 1, minV: 3 },
        configFromDims: (d) => ({ n_ctx: d.n_ctx + 5 }),
      }).chain((c) => {
        const V = Number(c.config["V"]);
        const nCtx = Number(c.config["n_ctx"]);
        const ids = fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength: 3 });
        const commands = fc.commands(
          [
            ids.map((a) => new AppendCommand(a, nCtx)),
            fc.constant(new DecodeCommand(nCtx)),
            fc.nat({ max: 8 }).map((t) => new TruncateCommand(t)),
          ],
          {
            maxCommands: 6,
            ...(scope.replayPath !== undefined ? { replayPath: scope.replayPath } : {}),
          },
        );
        return commands.map((cmds) => ({ ...c, commands: cmds }));
      }),
    ),
  check: checked("kv_cache", async (k: Check, c: KvCase) => {
    const params: NamedTensors = { ...c.inputs };
    delete params["tokens"];
    delete params["targets"];
    const L = Number(c.config["L"]);
    const real: KvReal = { k, config: c.config, params, L, cache: {}, lastLogits: null, log: [] };
    real.cache = emptyCache(real);
    await fc.asyncModelRun(() => ({ model: { tokens: [], canDecode: false }, real }), c.commands);
  }),
};

// ---------------------------------------------------------------------------------------------

interface TiedCase extends FormulaCase {
  readonly cotSeed: number;
}

export const tiedEmbedding: Law<TiedCase> = {
  name: "tied_embedding",
  formulas: ["gpt"],
  statement:
    "∂L/∂E of the tied model (W_vocab = E) = ∂L/∂wte + ∂L/∂lm_head of the " +
    "untied twin evaluated with lm_head.weight = wte.weight; every other " +
    "gradient is the same",
  tolerance: {
    derivation:
      "the two computations differ only in how the two uses' contributions " +
      "are accumulated: 2·γ_K·(S + κ̂) with K = 2·K_forward + N (the reverse " +
      "pass mirrors the forward; the embedding gradient scatters N rows) and " +
      "κ̂ the untied backward's measured response to rounding-sized " +
      "perturbations (tolerance.ts)",
    bound: (dtype, s) => 2 * gamma(2 * (s["K"] ?? 1) + (s["N"] ?? 1), dtype),
    scale: "S + κ̂ of the gradients",
  },
  backward: "required",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedSeededCaseArb(scope, f, {
        fixed: { tied: true, kv_cache: false },
        dims: { batch: "any" },
      }).chain((c) =>
        fc.integer({ min: 0, max: 0x7fffffff }).map((cotSeed) => ({ ...c, cotSeed })),
      ),
    ),
  check: checked("tied_embedding", async (k: Check, c: TiedCase) => {
    const req = k.request("gpt", c.config, c.inputs);
    const out = await k.forward(req, "tied forward");
    const logits = k.pick(out, "logits", "gpt", "tied forward");
    const rng = new Rng(c.cotSeed);
    const cotangents = {
      logits: rng.normalTensor(logits.shape, 1, c.dtype),
      loss: Tensor.scalar(1, c.dtype),
    };
    const tied = await k.backward({ ...req, cotangents }, "tied backward");
    const untiedReq = {
      ...k.request(
        "gpt",
        { ...c.config, tied: false },
        { ...c.inputs, "lm_head.weight": c.inputs["wte.weight"]! },
      ),
      cotangents,
    };
    const untied = await k.backward(untiedReq, "untied backward");
    const gE = untied["wte.weight"];
    const gH = untied["lm_head.weight"];
    const gT = tied["wte.weight"];
    if (gE === undefined || gH === undefined || gT === undefined)
      k.fail(
        `backward did not return wte.weight (tied: ${gT !== undefined}) or ` +
          `wte.weight / lm_head.weight (untied: ${gE !== undefined}, ` +
          `${gH !== undefined})`,
        { quantity: "grads" },
      );
    let scales: Awaited<ReturnType<typeof gradSensitivity>>;
    try {
      scales = await gradSensitivity(k.impl, untiedReq, untied, c.dtype);
    } catch (e) {
      k.fail(`the backward probe threw: ${String(e)}`);
    }
    const N = c.inputs["tokens"]!.size;
    const K = 2 * roundingDepth({ formula: "gpt", config: c.config, inputs: c.inputs }) + N;
    const sum = Tensor.zeros(gE.shape, "f64");
    for (let i = 0; i < sum.size; i++) sum.data[i] = gE.data[i]! + gH.data[i]!;
    const sE = scales["wte.weight"]!;
    const sH = scales["lm_head.weight"]!;
    const combined = { S: sE.S + sH.S, kappa: sE.kappa + sH.kappa, perturbed: sE.perturbed };
    k.expectClose(
      "∂L/∂E (tied) vs ∂L/∂wte + ∂L/∂lm_head (untied)",
      sum,
      gT,
      conditionedBound(c.dtype, K, combined),
      conditionedReason(c.dtype, K, combined),
    );
    for (const [name, g] of Object.entries(tied)) {
      if (name === "wte.weight") continue;
      const other = untied[name];
      if (other === undefined)
        k.fail(`the untied backward has no gradient for ${name}`, { quantity: name });
      const sc = scales[name];
      if (sc === undefined) continue;
      k.expectClose(
        `∂L/∂${name} tied vs untied`,
        other,
        g,
        conditionedBound(c.dtype, K, sc),
        conditionedReason(c.dtype, K, sc),
      );
    }
  }),
};

// ---------------------------------------------------------------------------------------------

const BLOCKS = formulasOf("block");

export const zeroBranches: Law<FormulaCase> = {
  name: "zero_branches",
  formulas: BLOCKS,
  statement:
    "with the branch outputs zeroed (W_O = 0, W_2 = 0 and their biases): a " +
    "pre-LN block is the identity, a sandwich block adds β₃ + β₄ (LayerNorm " +
    "of a zero row is β), a post-LN block is N₂(N₁(x)) with its own norms",
  tolerance: {
    derivation:
      "pre-LN: exact — each branch is a sum of a·0 = ±0 terms plus a zero " +
      "bias, and x + 0 = x. Sandwich: two additions, 2u·(|x| + |β₃| + |β₄|). " +
      "Post-LN: N₁ of x (x + 0 is exact) computed twice, within 2e₁ (e_max of " +
      "norms.ts for the row of x), passed through N₂ with Lipschitz |γ₂|(2 + " +
      "√d)/σ₂, plus N₂'s own 2e₂ times |γ₂|",
    bound: (dtype) => 2 * unitRoundoff(dtype),
    scale: "|x| + |β₃| + |β₄| (pre: 0; post: e_max terms)",
  },
  arbitrary: (scope: LawScope) =>
    oneOfFormulas(scope, (f) => {
      const norms = ["layer_norm", "rms_norm"].filter((n) => scope.declared.includes(n));
      const placements = ["pre", "sandwich", ...(norms.length > 0 ? ["post"] : [])];
      const choose: Record<string, readonly (string | number | boolean)[]> =
        f === "block"
          ? { placement: placements, norm: norms.length > 0 ? norms : ["layer_norm", "rms_norm"] }
          : {};
      return scopedCaseArb(scope, f, { choose, dims: { batch: "any" } }).filter(
        (c) =>
          (c.formula !== "block_post_ln" || scope.declared.includes("layer_norm")) &&
          !(
            c.formula === "block" &&
            c.config["placement"] === "post" &&
            !scope.declared.includes(String(c.config["norm"]))
          ),
      );
    }),
  check: checked("zero_branches", async (k: Check, c: FormulaCase) => {
    const inputs: NamedTensors = { ...c.inputs };
    for (const name of [
      "attn.c_proj.weight",
      "attn.c_proj.bias",
      "mlp.c_proj.weight",
      "mlp.c_proj.bias",
      "mlp.down_proj.weight",
    ]) {
      const t = inputs[name];
      if (t !== undefined) inputs[name] = Tensor.zeros(t.shape, c.dtype);
    }
    const placement =
      c.formula === "block_pre_ln"
        ? "pre"
        : c.formula === "block_post_ln"
          ? "post"
          : String(c.config["placement"]);
    const norm = c.formula === "block" ? String(c.config["norm"]) : "layer_norm";
    const x = inputs["x"]!;
    const y = await k.output(k.request(c.formula, c.config, inputs), "y");
    const u = unitRoundoff(c.dtype);
    const d = x.shape.at(-1)!;
    if (placement === "pre" || c.config["parallel"] === true) {
      k.expectEqual("pre-LN block with zeroed branches vs x", x, y, "exact: x + (±0) = x");
      return;
    }
    if (placement === "sandwich") {
      const b3 = inputs["ln_3.bias"];
      const b4 = inputs["ln_4.bias"];
      const want = Tensor.zeros(x.shape, "f64");
      const allowed = new Float64Array(x.size);
      for (let i = 0; i < x.size; i++) {
        const a = b3 === undefined ? 0 : b3.data[i % d]!;
        const b = b4 === undefined ? 0 : b4.data[i % d]!;
        want.data[i] = x.data[i]! + a + b;
        allowed[i] = 2 * u * (Math.abs(x.data[i]!) + Math.abs(a) + Math.abs(b));
      }
      k.expectClose(
        "sandwich block with zeroed branches vs x + β₃ + β₄",
        want,
        y,
        allowed,
        "2u·(|x| + |β₃| + |β₄|)",
      );
      return;
    }
    const eps = Number(c.config["eps"]);
    const params = (l: string): NamedTensors =>
      norm === "layer_norm"
        ? { gamma: inputs[`${l}.weight`]!, beta: inputs[`${l}.bias`]! }
        : { gamma: inputs[`${l}.weight`]! };
    const n1 = await k.output(
      k.request(norm, { eps }, { x, ...params("ln_1") }),
      "y",
      "N₁(x) with the implementation's norm",
    );
    k.expectFinite(`${norm}(x)`, n1);
    const n2 = await k.output(
      k.request(norm, { eps }, { x: n1, ...params("ln_2") }),
      "y",
      "N₂(N₁(x))",
    );
    k.expectFinite(`${norm}(${norm}(x))`, n2);
    const rms = norm === "rms_norm";
    const g2 = inputs["ln_2.weight"]!;
    const g2max = maxAbs(g2);
    const g1 = inputs["ln_1.weight"]!;
    const g1max = maxAbs(g1);
    const rowsX = lastAxisRows(x);
    const rowsN1 = lastAxisRows(n1);
    const allowed = new Float64Array(x.size);
    rowsX.forEach((row, r) => {
      const e1 = normEntryError(rowStats(row, eps, rms), d, eps, c.dtype, rms) * g1max;
      const s2 = rowStats(rowsN1[r]!, eps, rms);
      const e2 = normEntryError(s2, d, eps, c.dtype, rms) * g2max;
      const through = (2 * e1 * g2max * (2 + Math.sqrt(d))) / s2.sigma;
      for (let j = 0; j < d; j++)
        allowed[r * d + j] = through + 2 * e2 + 4 * u * (Math.abs(n2.data[r * d + j]!) + 1);
    });
    k.expectClose(
      `post-LN block with zeroed branches vs ${norm}₂(${norm}₁(x))`,
      n2,
      y,
      allowed,
      "2e₁·|γ₂|(2 + √d)/σ₂ + 2e₂ (norms.ts), per row",
      { eps },
    );
  }),
};
