#!/usr/bin/env python3
"""A GPT in NumPy with hand-written backward passes, speaking specformer's process protocol.

specformer runs it as the shell command ``python3 examples/numpy/impl.py``: it reads JSON
requests on stdin, one per line, and answers each with one JSON line on stdout (see
docs/PROTOCOL.md and examples/numpy/README.md). The protocol itself is ``serve`` from the
specformer Python package (``pip install ./python``; in a checkout it is found without
installing); this file is the math.

Every formula is written from the math in docs/NAMES.md: a forward function returns its output
and a ``back`` closure, and ``back(dy)`` returns the gradients by the chain rule written out by
hand (no autograd). Composite formulas (FFN, attention, blocks, the whole GPT) call the pieces
forward and their ``back`` closures in reverse order. Arrays are computed in the dtype of the
request (float64 or float32); NumPy follows IEEE 754 (NaN and infinities propagate, no
warnings).

Layout as in docs/NAMES.md: tokens are rows, ``x [..., n, d_model]``, weights multiply from the
right (``x W + b``, ``W [d_in, d_out]``), head ``h`` is columns ``h*d_k ... (h+1)*d_k - 1``, and
every formula accepts leading batch axes.

Environment: ``SPECFORMER_PLANT=mask_off_by_one`` plants a known bug (the causal mask lets query
i see key i + 1), used to prove that the verifier catches it (see impl_buggy.py).
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

np.seterr(all="ignore")  # IEEE semantics: overflow gives inf, 0/0 gives NaN, silently

PLANT = os.environ.get("SPECFORMER_PLANT", "")
PLANTS = ("", "mask_off_by_one")

Array = np.ndarray
Back = Callable[[Array], Any]


try:
    from specformer import Config, Formula as Served, FormulaError, serve
except ImportError:  # a checkout without `pip install ./python`: the package's sources
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python", "src"))
    from specformer import Config, Formula as Served, FormulaError, serve  # noqa: E402


# ============================================================================ small helpers


def sum_to_shape(g: Array, shape: Tuple[int, ...]) -> Array:
    """Sum a gradient over the axes along which its argument was broadcast."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def sum_rows(g: Array) -> Array:
    """Sum over every axis but the last (the gradient of a bias or a norm's gain)."""
    return g.reshape(-1, g.shape[-1]).sum(axis=0)


def const(x: Array, value: float) -> Any:
    """A constant in the dtype of ``x`` (keeps float32 arithmetic float32 on any NumPy)."""
    return x.dtype.type(value)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x: Array) -> Array:
    """erf elementwise: libm's erf (error below 1 ulp in float64), rounded to x's dtype."""
    return _erf(x.astype(np.float64)).astype(x.dtype)


def split_heads(t: Array, heads: int) -> Array:
    """[..., n, heads*d_k] -> [..., heads, n, d_k]; head h is columns h*d_k ... (h+1)*d_k - 1."""
    *lead, n, width = t.shape
    return t.reshape(*lead, n, heads, width // heads).swapaxes(-2, -3)


def merge_heads(t: Array) -> Array:
    """[..., heads, n, d_k] -> [..., n, heads*d_k]."""
    *lead, heads, n, d_k = t.shape
    return t.swapaxes(-2, -3).reshape(*lead, n, heads * d_k)


class Grads(dict):
    """Parameter gradients by name; a parameter used twice (tied weights) accumulates."""

    def add(self, name: str, g: Array) -> None:
        self[name] = self[name] + g if name in self else g


# ============================================================================ elementwise


def relu(x: Array) -> Tuple[Array, Back]:
    y = np.maximum(x, const(x, 0))
    # d/dx relu(x) = 1 if x > 0 else 0 (0 at x = 0, as PyTorch)
    return y, lambda dy: dy * (x > 0)


def gelu(x: Array) -> Tuple[Array, Back]:
    # gelu(x) = x Φ(x) = ½ x (1 + erf(x/√2))
    Phi = const(x, 0.5) * (const(x, 1) + erf(x * const(x, 1 / math.sqrt(2))))
    y = x * Phi

    def back(dy: Array) -> Array:
        # d/dx = Φ(x) + x φ(x), φ(x) = exp(-x²/2)/√(2π)
        phi = np.exp(const(x, -0.5) * x * x) * const(x, 1 / math.sqrt(2 * math.pi))
        return dy * (Phi + x * phi)

    return y, back


GELU_C = math.sqrt(2 / math.pi)


def gelu_tanh(x: Array) -> Tuple[Array, Back]:
    # ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))  (GPT-2 gelu_new)
    u = const(x, GELU_C) * (x + const(x, 0.044715) * x * x * x)
    t = np.tanh(u)
    y = const(x, 0.5) * x * (const(x, 1) + t)

    def back(dy: Array) -> Array:
        # d/dx = ½(1 + t) + ½ x (1 − t²) √(2/π) (1 + 3·0.044715 x²)
        du = const(x, GELU_C) * (const(x, 1) + const(x, 3 * 0.044715) * x * x)
        return dy * (const(x, 0.5) * (const(x, 1) + t) + const(x, 0.5) * x * (const(x, 1) - t * t) * du)

    return y, back


def sigmoid(x: Array) -> Array:
    # σ(x) from exp(−|x|) so neither branch overflows
    z = np.exp(-np.abs(x))
    one = const(x, 1)
    return np.where(x >= 0, one / (one + z), z / (one + z))


def silu(x: Array) -> Tuple[Array, Back]:
    s = sigmoid(x)
    y = x * s
    # d/dx x σ(x) = σ(x) (1 + x (1 − σ(x)))
    return y, lambda dy: dy * s * (const(x, 1) + x * (const(x, 1) - s))


ACTIVATIONS: Dict[str, Callable[[Array], Tuple[Array, Back]]] = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": relu, "silu": silu}


# ============================================================================ softmax family


def softmax(x: Array) -> Tuple[Array, Back]:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    # dx = y ⊙ (dy − Σ_j dy_j y_j)
    return y, lambda dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _safe_max(x: Array) -> Array:
    """Row max, with 0 where it is ±inf (so x − max stays finite for rows holding only −inf)."""
    m = x.max(axis=-1, keepdims=True)
    return np.where(np.isfinite(m), m, const(x, 0))


def logsumexp(x: Array) -> Tuple[Array, Back]:
    m = _safe_max(x)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    y = (m + np.log(s))[..., 0]
    # d/dx_j lse = softmax(x)_j
    return y, lambda dy: dy[..., None] * (e / s)


def log_softmax(x: Array) -> Tuple[Array, Back]:
    # (x − m) − log Σ exp(x − m): subtracting the max first keeps the digits that m + log Σ would round away
    m = _safe_max(x)
    xm = x - m
    y = xm - np.log(np.exp(xm).sum(axis=-1, keepdims=True))
    # dx = dy − softmax(x) Σ_j dy_j
    return y, lambda dy: dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)


def cross_entropy(logits: Array, targets: Array) -> Tuple[Array, Back]:
    """Mean over every position of −log softmax(logits)[target]; loss has shape []."""
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise FormulaError(f"targets have shape {list(targets.shape)} but logits {list(logits.shape)} need {list(logits.shape[:-1])}")
    check_ids(targets, V, "targets")
    logp, back_logp = log_softmax(logits)
    picked = np.take_along_axis(logp, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    count = max(targets.size, 1)
    loss = -picked.sum() / const(logits, count)

    def back(dloss: Array) -> Array:
        dlogp = np.zeros_like(logp)
        np.put_along_axis(dlogp, targets[..., None].astype(np.int64), -dloss / const(logits, count), axis=-1)
        return back_logp(dlogp)

    return np.asarray(loss, dtype=logits.dtype), back


def check_ids(ids: Array, V: int, what: str) -> None:
    if ids.size == 0:
        return
    bad = np.argwhere((ids < 0) | (ids >= V))
    if len(bad) > 0:
        at = [int(i) for i in bad[0]]
        raise FormulaError(f"{what}[{', '.join(map(str, at))}] = {int(ids[tuple(at)])} is not a token id in [0, {V})")


# ============================================================================ norms, linear, FFN


def layer_norm(x: Array, gamma: Array, beta: Optional[Array], eps: float) -> Tuple[Array, Back]:
    """(x − μ)/√(σ² + ε) ⊙ γ + β over the last axis; biased variance, ε inside the square root."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = const(x, 1) / np.sqrt(var + const(x, eps))
    xhat = xc * rstd
    y = xhat * gamma + (beta if beta is not None else const(x, 0))

    def back(dy: Array) -> Tuple[Array, Array, Optional[Array]]:
        g = dy * gamma
        # dx = rstd (g − mean(g) − x̂ mean(g ⊙ x̂))
        dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
        return dx, sum_rows(dy * xhat), (sum_rows(dy) if beta is not None else None)

    return y, back


def rms_norm(x: Array, gamma: Array, eps: float) -> Tuple[Array, Back]:
    """x / √(mean(x²) + ε) ⊙ γ over the last axis."""
    r = const(x, 1) / np.sqrt((x * x).mean(axis=-1, keepdims=True) + const(x, eps))
    y = x * r * gamma

    def back(dy: Array) -> Tuple[Array, Array, None]:
        g = dy * gamma
        # dr/dx_i = −r³ x_i / d, so dx = r g − x r³ mean(g ⊙ x)
        dx = r * g - x * (r * r * r) * (g * x).mean(axis=-1, keepdims=True)
        return dx, sum_rows(dy * x * r), None

    return y, back


def linear(x: Array, W: Array, b: Optional[Array]) -> Tuple[Array, Back]:
    """x W + b with W [d_in, d_out]."""
    if x.shape[-1] != W.shape[0]:
        raise FormulaError(f"x has {x.shape[-1]} features (last axis of {list(x.shape)}) but W has {W.shape[0]} rows ({list(W.shape)})")
    y = x @ W
    if b is not None:
        y = y + b

    def back(dy: Array) -> Tuple[Array, Array, Optional[Array]]:
        dy2 = dy.reshape(-1, dy.shape[-1])
        dW = x.reshape(-1, x.shape[-1]).T @ dy2
        return dy @ W.T, dW, (dy2.sum(axis=0) if b is not None else None)

    return y, back


def ffn(x: Array, W_1: Array, b_1: Optional[Array], W_2: Array, b_2: Optional[Array], activation: str) -> Tuple[Array, Back]:
    """φ(x W_1 + b_1) W_2 + b_2."""
    if activation not in ACTIVATIONS:
        raise FormulaError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    h, back_1 = linear(x, W_1, b_1)
    a, back_act = ACTIVATIONS[activation](h)
    y, back_2 = linear(a, W_2, b_2)

    def back(dy: Array) -> Tuple[Array, Array, Optional[Array], Array, Optional[Array]]:
        da, dW_2, db_2 = back_2(dy)
        dx, dW_1, db_1 = back_1(back_act(da))
        return dx, dW_1, db_1, dW_2, db_2

    return y, back


def swiglu(x: Array, W_gate: Array, W_up: Array, W_down: Array) -> Tuple[Array, Back]:
    """(silu(x W_gate) ⊙ x W_up) W_down, no biases."""
    g, back_g = linear(x, W_gate, None)
    u, back_u = linear(x, W_up, None)
    s, back_s = silu(g)
    a = s * u
    y, back_d = linear(a, W_down, None)

    def back(dy: Array) -> Tuple[Array, Array, Array, Array]:
        da, dW_down, _ = back_d(dy)
        dx_u, dW_up, _ = back_u(da * s)
        dx_g, dW_gate, _ = back_g(back_s(da * u))
        return dx_g + dx_u, dW_gate, dW_up, dW_down

    return y, back


# ============================================================================ embeddings, positions


def embedding(tokens: Array, E: Array) -> Tuple[Array, Back]:
    """Row E[t] for every token id t."""
    check_ids(tokens, E.shape[0], "tokens")
    idx = tokens.astype(np.int64)
    y = E[idx]

    def back(dy: Array) -> Array:
        dE = np.zeros_like(E)
        np.add.at(dE, idx.reshape(-1), dy.reshape(-1, E.shape[1]))
        return dE

    return y, back


def sinusoidal(n: int, d_model: int, offset: int, dtype: Any) -> Array:
    """p[i, 2k] = sin(i / 10000^(2k/d_model)), p[i, 2k+1] = cos(same), i = offset ... offset+n−1."""
    pos = np.arange(offset, offset + n, dtype=dtype)[:, None]
    two_k = np.arange(0, d_model, 2, dtype=dtype)
    angle = pos / np.power(dtype(10000), two_k / dtype(d_model))  # [n, ceil(d_model/2)]
    p = np.zeros((n, d_model), dtype=dtype)
    p[:, 0::2] = np.sin(angle)
    p[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return p


def causal_allowed(n: int, m: int) -> Array:
    """bool [n, m]: query i (of n) sees key j (of m) iff j ≤ i + (m − n) (bottom-right aligned)."""
    i = np.arange(n)[:, None]
    j = np.arange(m)[None, :]
    shift = m - n + (1 if PLANT == "mask_off_by_one" else 0)
    return j <= i + shift


# ============================================================================ attention


def attention(Q: Array, K: Array, V: Array, causal: bool) -> Tuple[Array, Back]:
    """softmax(Q Kᵀ / √d_k + M) V with the causal mask M; a query that sees no key gets zero weights."""
    n, m, d_k = Q.shape[-2], K.shape[-2], Q.shape[-1]
    if K.shape[-1] != d_k:
        raise FormulaError(f"Q has d_k = {d_k} but K has {K.shape[-1]} columns (Q {list(Q.shape)}, K {list(K.shape)})")
    if V.shape[-2] != m:
        raise FormulaError(f"K has m = {m} rows but V has {V.shape[-2]} (K {list(K.shape)}, V {list(V.shape)})")
    scale = const(Q, math.sqrt(d_k))
    S = (Q @ K.swapaxes(-1, -2)) / scale  # [..., n, m]
    if causal:
        allowed = causal_allowed(n, m)
        S = np.where(allowed, S, const(S, -np.inf))
        # a row with no allowed key: max 0 instead of −∞ keeps exp finite; its weights are set to 0
        mx = np.where(allowed.any(axis=-1, keepdims=True), S.max(axis=-1, keepdims=True), const(S, 0))
        e = np.exp(S - mx)
        den = e.sum(axis=-1, keepdims=True)
        P = e / np.where(den == 0, const(S, 1), den)
    else:
        P, _ = softmax(S)
    y = P @ V

    def back(dy: Array) -> Tuple[Array, Array, Array]:
        dV = P.swapaxes(-1, -2) @ dy
        dP = dy @ V.swapaxes(-1, -2)
        dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True)) / scale  # masked entries have P = 0
        dQ = dS @ K
        dK = dS.swapaxes(-1, -2) @ Q
        return sum_to_shape(dQ, Q.shape), sum_to_shape(dK, K.shape), sum_to_shape(dV, V.shape)

    return y, back


def heads_attention(q: Array, k: Array, v: Array, H: int, H_kv: int, causal: bool) -> Tuple[Array, Back]:
    """Projected q [..., n, H·d_k] and k, v [..., n, H_kv·d_k] → merged heads [..., n, H·d_k].
    Query head h uses key/value head ⌊h / (H / H_kv)⌋ (grouped-query attention when H_kv < H)."""
    group = H // H_kv
    qh, kh, vh = split_heads(q, H), split_heads(k, H_kv), split_heads(v, H_kv)  # [..., heads, n, d_k]
    kr, vr = np.repeat(kh, group, axis=-3), np.repeat(vh, group, axis=-3)
    o, back_att = attention(qh, kr, vr, causal)
    y = merge_heads(o)

    def back(dy: Array) -> Tuple[Array, Array, Array]:
        dqh, dkr, dvr = back_att(split_heads(dy, H))
        # the H / H_kv query heads sharing a KV head sum their gradients into it
        fold = lambda t: t.reshape(*t.shape[:-3], H_kv, group, *t.shape[-2:]).sum(axis=-3)  # noqa: E731
        return merge_heads(dqh), merge_heads(fold(dkr)), merge_heads(fold(dvr))

    return y, back


def check_heads(d_model: int, H: int, H_kv: int) -> None:
    if H < 1 or d_model % H != 0:
        raise FormulaError(f"d_model = {d_model} is not divisible by H = {H}")
    if H_kv < 1 or H % H_kv != 0:
        raise FormulaError(f"H = {H} is not divisible by H_kv = {H_kv}")


# ============================================================================ blocks


class Block:
    """One transformer block with Hugging Face GPT-2 parameter names (``p`` without the
    ``h.{l}.`` prefix). ``forward`` returns y and the branch outputs; ``backward`` adds the
    parameter gradients to ``grads`` under ``prefix + name`` and returns dx."""

    def __init__(self, p: Dict[str, Array], cfg: "Config", prefix: str = ""):
        self.p, self.prefix = p, prefix
        self.H = cfg.int("H")
        self.H_kv = cfg.int("H_kv", self.H)
        self.eps = cfg.num("eps", 1e-5)
        self.causal = cfg.bool("causal", True)
        self.norm = cfg.choice("norm", ("layer_norm", "rms_norm"), "layer_norm")
        self.activation = cfg.choice("activation", ("gelu", "gelu_tanh", "relu", "swiglu"), "gelu")
        self.bias = cfg.bool("bias", True)
        self.parallel = cfg.bool("parallel", False)
        cfg.choice("positions", ("none",), "none")  # rope / alibi are not implemented here
        if cfg.bool("kv_cache", False):
            raise FormulaError("kv_cache = true is not implemented by this implementation")

    def param(self, name: str) -> Array:
        full = self.prefix + name
        if name not in self.p:
            raise FormulaError(f"missing parameter {full}")
        return self.p[name]

    def opt(self, name: str) -> Optional[Array]:
        return self.param(name) if self.bias else None

    # each piece returns (y, back) where back(dy, grads) -> d(input)

    def N(self, name: str, x: Array) -> Tuple[Array, Callable[[Array, Grads], Array]]:
        gamma = self.param(f"{name}.weight")
        if self.norm == "layer_norm":
            y, back = layer_norm(x, gamma, self.param(f"{name}.bias"), self.eps)
        else:
            y, back = rms_norm(x, gamma, self.eps)

        def b(dy: Array, grads: Grads) -> Array:
            dx, dgamma, dbeta = back(dy)
            grads.add(f"{self.prefix}{name}.weight", dgamma)
            if dbeta is not None:
                grads.add(f"{self.prefix}{name}.bias", dbeta)
            return dx

        return y, b

    def A(self, x: Array) -> Tuple[Array, Callable[[Array, Grads], Array]]:
        d_model = x.shape[-1]
        check_heads(d_model, self.H, self.H_kv)
        d_kv = self.H_kv * (d_model // self.H)
        qkv, back_in = linear(x, self.param("attn.c_attn.weight"), self.opt("attn.c_attn.bias"))
        if qkv.shape[-1] != d_model + 2 * d_kv:
            raise FormulaError(f"attn.c_attn.weight has {qkv.shape[-1]} columns but H = {self.H}, H_kv = {self.H_kv}, d_model = {d_model} need {d_model + 2 * d_kv}")
        q, k, v = qkv[..., :d_model], qkv[..., d_model : d_model + d_kv], qkv[..., d_model + d_kv :]
        o, back_att = heads_attention(q, k, v, self.H, self.H_kv, self.causal)
        y, back_out = linear(o, self.param("attn.c_proj.weight"), self.opt("attn.c_proj.bias"))

        def b(dy: Array, grads: Grads) -> Array:
            do, dW_O, db_O = back_out(dy)
            dq, dk, dv = back_att(do)
            dx, dW, db = back_in(np.concatenate([dq, dk, dv], axis=-1))
            grads.add(f"{self.prefix}attn.c_proj.weight", dW_O)
            grads.add(f"{self.prefix}attn.c_attn.weight", dW)
            if self.bias:
                grads.add(f"{self.prefix}attn.c_proj.bias", db_O)
                grads.add(f"{self.prefix}attn.c_attn.bias", db)
            return dx

        return y, b

    def M(self, x: Array) -> Tuple[Array, Callable[[Array, Grads], Array]]:
        if self.activation == "swiglu":
            y, back = swiglu(x, self.param("mlp.gate_proj.weight"), self.param("mlp.up_proj.weight"), self.param("mlp.down_proj.weight"))

            def b(dy: Array, grads: Grads) -> Array:
                dx, dg, du, dd = back(dy)
                for name, g in (("gate_proj", dg), ("up_proj", du), ("down_proj", dd)):
                    grads.add(f"{self.prefix}mlp.{name}.weight", g)
                return dx

            return y, b
        y, back = ffn(x, self.param("mlp.c_fc.weight"), self.opt("mlp.c_fc.bias"), self.param("mlp.c_proj.weight"), self.opt("mlp.c_proj.bias"), self.activation)

        def b2(dy: Array, grads: Grads) -> Array:
            dx, dW_1, db_1, dW_2, db_2 = back(dy)
            grads.add(f"{self.prefix}mlp.c_fc.weight", dW_1)
            grads.add(f"{self.prefix}mlp.c_proj.weight", dW_2)
            if self.bias:
                grads.add(f"{self.prefix}mlp.c_fc.bias", db_1)
                grads.add(f"{self.prefix}mlp.c_proj.bias", db_2)
            return dx

        return y, b2

    def forward(self, x: Array, placement: str) -> Tuple[Array, Dict[str, Array], Callable[[Array, Grads], Array]]:
        """y, {"attn": branch output, "mlp": branch output}, back."""
        if self.parallel:
            if placement != "pre":
                raise FormulaError("parallel blocks are pre-norm (x + attn(ln_1 x) + mlp(ln_1 x)); placement must be pre")
            h, bN1 = self.N("ln_1", x)  # GPT-J: x + attn(ln_1 x) + mlp(ln_1 x)
            a, bA = self.A(h)
            m, bM = self.M(h)

            def back_par(dy: Array, grads: Grads) -> Array:
                return dy + bN1(bA(dy, grads) + bM(dy, grads), grads)

            return x + a + m, {"attn": a, "mlp": m}, back_par
        if placement == "post":  # x' = LN_1(x + MHA(x)), y = LN_2(x' + FFN(x'))  (the seed's block)
            a, bA = self.A(x)
            x1, bN1 = self.N("ln_1", x + a)
            m, bM = self.M(x1)
            y, bN2 = self.N("ln_2", x1 + m)

            def back_post(dy: Array, grads: Grads) -> Array:
                ds2 = bN2(dy, grads)
                dx1 = ds2 + bM(ds2, grads)
                ds1 = bN1(dx1, grads)
                return ds1 + bA(ds1, grads)

            return y, {"attn": a, "mlp": m}, back_post
        if placement == "pre":  # x' = x + MHA(LN_1 x), y = x' + FFN(LN_2 x')  (GPT-2)
            h1, bN1 = self.N("ln_1", x)
            a, bA = self.A(h1)
            x1 = x + a
            h2, bN2 = self.N("ln_2", x1)
            m, bM = self.M(h2)

            def back_pre(dy: Array, grads: Grads) -> Array:
                dx1 = dy + bN2(bM(dy, grads), grads)
                return dx1 + bN1(bA(dx1, grads), grads)

            return x1 + m, {"attn": a, "mlp": m}, back_pre
        if placement == "sandwich":  # x' = x + LN_3(MHA(LN_1 x)), y = x' + LN_4(FFN(LN_2 x'))
            h1, bN1 = self.N("ln_1", x)
            a0, bA = self.A(h1)
            a, bN3 = self.N("ln_3", a0)
            x1 = x + a
            h2, bN2 = self.N("ln_2", x1)
            m0, bM = self.M(h2)
            m, bN4 = self.N("ln_4", m0)

            def back_sandwich(dy: Array, grads: Grads) -> Array:
                dx1 = dy + bN2(bM(bN4(dy, grads), grads), grads)
                return dx1 + bN1(bA(bN3(dx1, grads), grads), grads)

            return x1 + m, {"attn": a, "mlp": m}, back_sandwich
        raise FormulaError(f"placement {placement!r} is not one of post, pre, sandwich")


# ============================================================================ the whole model


def gpt(args: Dict[str, Array], cfg: "Config", dtype: Any) -> Tuple[Dict[str, Array], Callable[[Dict[str, Array]], Grads]]:
    """Embedding (+ positions) → L blocks → (ln_f) → logits = x W_vocabᵀ; loss = cross-entropy."""
    V, d_model, L = cfg.int("V"), cfg.int("d_model"), cfg.int("L")
    n_ctx = cfg.int("n_ctx")
    placement = cfg.choice("placement", ("post", "pre", "sandwich"), "post")
    positions = cfg.choice("positions", ("learned", "sinusoidal", "none"), "learned")
    tied = cfg.bool("tied", True)
    tokens = need(args, "tokens")
    n = tokens.shape[-1] if tokens.ndim > 0 else 0
    if tokens.ndim == 0:
        raise FormulaError("tokens must have at least one axis ([..., n])")
    if n > n_ctx:
        raise FormulaError(f"sequence length n = {n} exceeds n_ctx = {n_ctx}")
    E = need(args, "wte.weight")
    if E.shape != (V, d_model):
        raise FormulaError(f"wte.weight has shape {list(E.shape)} but V = {V}, d_model = {d_model} need [{V}, {d_model}]")
    out: Dict[str, Array] = {}
    e, back_embed = embedding(tokens, E)
    out["embed"] = e
    x = e
    if positions == "learned":
        P = need(args, "wpe.weight")
        x = x + P[:n]
    elif positions == "sinusoidal":
        x = x + sinusoidal(n, d_model, 0, dtype)
    block_cfg = Config({k: v for k, v in cfg.items() if k not in ("positions", "V", "d_model", "L", "n_ctx", "d_ff", "tied")})
    backs = []
    for l in range(L):
        prefix = f"h.{l}."
        p = {k[len(prefix) :]: v for k, v in args.items() if k.startswith(prefix)}
        out[f"h.{l}.x"] = x
        x, branches, back = Block(p, block_cfg, prefix).forward(x, placement)
        out[f"h.{l}.attn"], out[f"h.{l}.mlp"], out[f"h.{l}.y"] = branches["attn"], branches["mlp"], x
        backs.append(back)
    back_f = None
    if placement in ("pre", "sandwich"):
        x, back_f = final_norm(args, block_cfg, x)
        out["ln_f"] = x
    W_vocab = E if tied else need(args, "lm_head.weight")
    logits = x @ W_vocab.T
    out["logits"] = logits
    targets = args.get("targets")
    back_ce = None
    if targets is not None:
        out["loss"], back_ce = cross_entropy(logits, targets)

    def back(cot: Dict[str, Array]) -> Grads:
        grads = Grads()
        dlogits = cot.get("logits", np.zeros_like(logits))
        if "loss" in cot:
            if back_ce is None:
                raise FormulaError("a cotangent for loss needs targets")
            dlogits = dlogits + back_ce(cot["loss"])
        dx = dlogits @ W_vocab
        dW_vocab = dlogits.reshape(-1, V).T @ x.reshape(-1, d_model)
        grads.add("wte.weight" if tied else "lm_head.weight", dW_vocab)
        if back_f is not None:
            dx = back_f(dx, grads)
        for l in reversed(range(L)):
            dx = backs[l](dx, grads)
        if positions == "learned":
            dP = np.zeros_like(args["wpe.weight"])
            dP[:n] = dx.reshape(-1, n, d_model).sum(axis=0)  # every batch row used the same positions
            grads.add("wpe.weight", dP)
        grads.add("wte.weight", back_embed(dx))
        return grads

    return out, back


def final_norm(args: Dict[str, Array], cfg: "Config", x: Array) -> Tuple[Array, Callable[[Array, Grads], Array]]:
    """ln_f, the norm after the last block of pre-LN and sandwich models."""
    p = {k: v for k, v in args.items() if k.startswith("ln_f.")}
    return Block(p, cfg, "").N("ln_f", x)


# ============================================================================ requests


def need(args: Dict[str, Array], name: str) -> Array:
    if name not in args:
        raise FormulaError(f"missing argument {name} (given: {', '.join(sorted(args)) or 'none'})")
    return args[name]


# A formula: (args, cfg, dtype) -> (outputs, back) with back(cotangents) -> {argument: grad}.
Formula = Callable[[Dict[str, Array], Config, Any], Tuple[Dict[str, Array], Callable[[Dict[str, Array]], Dict[str, Array]]]]


def unary(fn: Callable[[Array], Tuple[Array, Back]]) -> Formula:
    def f(a: Dict[str, Array], cfg: Config, dtype: Any):
        y, back = fn(need(a, "x"))
        return {"y": y}, lambda cot: {"x": back(cot["y"])}

    return f


def f_layer_norm(a, cfg, dtype):
    decline_unless(cfg, "layer_norm", {"normalized_axes": 1})
    bias = cfg.bool("bias", True)
    x, gamma, beta = need(a, "x"), need(a, "gamma"), (need(a, "beta") if bias else None)
    check_last(x, gamma, "gamma")
    if beta is not None:
        check_last(x, beta, "beta")
    y, back = layer_norm(x, gamma, beta, cfg.num("eps", 1e-5))
    names = ("x", "gamma", "beta") if bias else ("x", "gamma")
    return {"y": y}, lambda cot: dict(zip(names, back(cot["y"])))


def f_rms_norm(a, cfg, dtype):
    x, gamma = need(a, "x"), need(a, "gamma")
    check_last(x, gamma, "gamma")
    y, back = rms_norm(x, gamma, cfg.num("eps", 1e-6))
    return {"y": y}, lambda cot: dict(zip(("x", "gamma"), back(cot["y"])))


def check_last(x: Array, v: Array, name: str) -> None:
    if v.shape != (x.shape[-1],):
        raise FormulaError(f"{name} has shape {list(v.shape)} but x {list(x.shape)} needs [{x.shape[-1]}]")


def f_linear(a, cfg, dtype):
    bias = cfg.bool("bias", True)
    y, back = linear(need(a, "x"), need(a, "W"), need(a, "b") if bias else None)
    names = ("x", "W", "b") if bias else ("x", "W")
    return {"y": y}, lambda cot: dict(zip(names, back(cot["y"])))


def f_dropout(a, cfg, dtype):
    """y = m·x/(1 − p) with the given keep mask m (nonzero keeps); p = 1 gives zeros; ∂x = m·ȳ/(1 − p)."""
    x, keep = need(a, "x"), need(a, "keep_mask")
    p = cfg.num("p", 0.5)
    if not 0 <= p <= 1:
        raise FormulaError(f"dropout: p must lie in [0, 1], got {p}")
    if keep.shape != x.shape:
        raise FormulaError(f"keep_mask has shape {list(keep.shape)} but x has {list(x.shape)}")
    scale = x.dtype.type(0 if p == 1 else 1 / (1 - p))
    kept = keep != 0
    y = np.where(kept, x * scale, x.dtype.type(0))
    return {"y": y}, lambda cot: {"x": np.where(kept, cot["y"] * scale, x.dtype.type(0))}


def f_ffn(a, cfg, dtype):
    act = cfg.choice("activation", tuple(ACTIVATIONS), "gelu")
    y, back = ffn(need(a, "x"), need(a, "W_1"), a.get("b_1"), need(a, "W_2"), a.get("b_2"), act)

    def grads(cot):
        g = dict(zip(("x", "W_1", "b_1", "W_2", "b_2"), back(cot["y"])))
        return {k: v for k, v in g.items() if v is not None}

    return {"y": y}, grads


def f_swiglu(a, cfg, dtype):
    y, back = swiglu(need(a, "x"), need(a, "W_gate"), need(a, "W_up"), need(a, "W_down"))
    return {"y": y}, lambda cot: dict(zip(("x", "W_gate", "W_up", "W_down"), back(cot["y"])))


def f_embedding(a, cfg, dtype):
    y, back = embedding(need(a, "tokens"), need(a, "E"))
    return {"y": y}, lambda cot: {"E": back(cot["y"])}


def f_positional_sinusoidal(a, cfg, dtype):
    return {"y": sinusoidal(cfg.int("n"), cfg.int("d_model"), cfg.int("offset", 0), dtype)}, lambda cot: {}


def f_positional_learned(a, cfg, dtype):
    P = need(a, "P")
    n, offset = cfg.int("n"), cfg.int("offset", 0)
    if offset < 0 or offset + n > P.shape[0]:
        raise FormulaError(f"rows {offset} ... {offset + n - 1} are outside P with n_ctx = {P.shape[0]} rows")

    def back(cot):
        dP = np.zeros_like(P)
        dP[offset : offset + n] = cot["y"]
        return {"P": dP}

    return {"y": P[offset : offset + n].copy()}, back


def f_causal_mask(a, cfg, dtype):
    only_default_conventions(cfg, "causal_mask")
    n = cfg.int("n")
    m = cfg.int("m", n)
    y = np.where(causal_allowed(n, m), dtype(0), dtype(-np.inf)).astype(dtype)
    return {"y": y}, lambda cot: {}


def only_default_conventions(cfg: Config, formula: str) -> None:
    """Conventions this implementation does not compute are declined, never read as their default."""
    defaults = {"causal_align": "bottom_right", "window": 0, "mask": "none", "mask_shape": "scores", "softcap": 0}
    for key, default in defaults.items():
        if key in cfg and cfg[key] != default:
            raise FormulaError(f"{formula}: {key} = {cfg[key]!r} is not implemented by this implementation")
    for key in ("scale", "H_kv"):
        if key in cfg and formula == "attention":
            raise FormulaError(f"{formula}: {key} is not implemented by this implementation")


def f_attention(a, cfg, dtype):
    only_default_conventions(cfg, "attention")
    if cfg.bool("alibi", False):
        raise FormulaError("alibi = true is not implemented by this implementation")
    y, back = attention(need(a, "Q"), need(a, "K"), need(a, "V"), cfg.bool("causal", True))
    return {"y": y}, lambda cot: dict(zip(("Q", "K", "V"), back(cot["y"])))


def f_mha(a, cfg, dtype):
    only_default_conventions(cfg, "mha")
    H = cfg.int("H")
    H_kv = cfg.int("H_kv", H)
    cfg.choice("positions", ("none",), "none")
    if cfg.bool("kv_cache", False) or cfg.int("offset", 0) != 0:
        raise FormulaError("KV-cache decoding (kv_cache, offset) is not implemented by this implementation")
    bias = cfg.bool("bias", True)
    x = need(a, "x")
    check_heads(x.shape[-1], H, H_kv)
    b = (lambda name: need(a, name)) if bias else (lambda name: None)
    q, back_q = linear(x, need(a, "W_Q"), b("b_Q"))
    k, back_k = linear(x, need(a, "W_K"), b("b_K"))
    v, back_v = linear(x, need(a, "W_V"), b("b_V"))
    o, back_att = heads_attention(q, k, v, H, H_kv, cfg.bool("causal", True))
    y, back_o = linear(o, need(a, "W_O"), b("b_O"))

    def back(cot):
        do, dW_O, db_O = back_o(cot["y"])
        dq, dk, dv = back_att(do)
        dx_q, dW_Q, db_Q = back_q(dq)
        dx_k, dW_K, db_K = back_k(dk)
        dx_v, dW_V, db_V = back_v(dv)
        g = {"x": dx_q + dx_k + dx_v, "W_Q": dW_Q, "W_K": dW_K, "W_V": dW_V, "W_O": dW_O}
        if bias:
            g.update({"b_Q": db_Q, "b_K": db_K, "b_V": db_V, "b_O": db_O})
        return g

    return {"y": y}, back


def no_final_softcap(cfg: Config, formula: str) -> None:
    if cfg.num("final_softcap", 0.0) != 0:
        raise FormulaError(f"{formula}: final_softcap = {cfg['final_softcap']!r} is not implemented by this implementation")


def f_logits(a, cfg, dtype):
    no_final_softcap(cfg, "logits")
    x, W = need(a, "x"), need(a, "W_vocab")
    y = x @ W.T

    def back(cot):
        dy = cot["y"]
        return {"x": dy @ W, "W_vocab": dy.reshape(-1, W.shape[0]).T @ x.reshape(-1, W.shape[1])}

    return {"y": y}, back


def decline_unless(cfg: Config, formula: str, defaults: Dict[str, Any]) -> None:
    """Hyperparameters this implementation does not compute are declined, never read as their default."""
    for key, default in defaults.items():
        if key in cfg and cfg[key] != default:
            raise FormulaError(f"{formula}: {key} = {cfg[key]!r} is not implemented by this implementation")


def over_axis(fn: Callable[[Array], Tuple[Array, Back]]) -> Formula:
    """A last-axis softmax-family function over config.axis (negative): the axis moved last and back."""

    def f(a: Dict[str, Array], cfg: Config, dtype: Any):
        x = need(a, "x")
        axis = cfg.int("axis", -1)
        if axis >= 0 or -axis > x.ndim:
            raise FormulaError(f"axis = {axis} must be negative and name one of the {x.ndim} axes of x {list(x.shape)}")
        y, back = fn(np.moveaxis(x, axis, -1))
        return {"y": np.moveaxis(y, -1, axis)}, lambda cot: {"x": np.moveaxis(back(np.moveaxis(cot["y"], axis, -1)), -1, axis)}

    return f


def f_cross_entropy(a, cfg, dtype):
    decline_unless(cfg, "cross_entropy", {"label_smoothing": 0, "reduction": "mean", "weight": False})
    loss, back = cross_entropy(need(a, "logits"), need(a, "targets"))
    return {"loss": loss}, lambda cot: {"logits": back(cot["loss"])}


def block_formula(placement: Optional[str]) -> Formula:
    def f(a, cfg, dtype):
        x = need(a, "x")
        p = {k: v for k, v in a.items() if k != "x"}
        where = placement if placement is not None else cfg.choice("placement", ("post", "pre", "sandwich"), "post")
        y, _, back = Block(p, cfg).forward(x, where)

        def grads(cot):
            g = Grads()
            g["x"] = back(cot["y"], g)
            return g

        return {"y": y}, grads

    return f


def f_gpt(a, cfg, dtype):
    if cfg.bool("kv_cache", False):
        raise FormulaError("kv_cache = true is not implemented by this implementation")
    no_final_softcap(cfg, "gpt")
    return gpt(a, cfg, dtype)


FORMULAS: Dict[str, Formula] = {
    "softmax": over_axis(softmax),
    "log_softmax": over_axis(log_softmax),
    "logsumexp": unary(logsumexp),
    "causal_mask": f_causal_mask,
    "attention": f_attention,
    "mha": f_mha,
    "layer_norm": f_layer_norm,
    "rms_norm": f_rms_norm,
    "gelu": unary(gelu),
    "gelu_tanh": unary(gelu_tanh),
    "relu": unary(relu),
    "silu": unary(silu),
    "linear": f_linear,
    "dropout": f_dropout,
    "ffn": f_ffn,
    "swiglu": f_swiglu,
    "embedding": f_embedding,
    "positional_sinusoidal": f_positional_sinusoidal,
    "positional_learned": f_positional_learned,
    "logits": f_logits,
    "cross_entropy": f_cross_entropy,
    "block": block_formula(None),
    "block_post_ln": block_formula("post"),
    "block_pre_ln": block_formula("pre"),
    "gpt": f_gpt,
}

# ============================================================================ the wire
# The protocol (hello, tensor encoding, errors, shutdown) is the specformer Python package's
# serve(); this file adds what is particular to it: a request's dtype, and cotangents of the
# intermediate outputs of gpt, which it refuses.


DTYPES = {"f64": np.float64, "f32": np.float32}
NAMES_OF = {np.dtype(np.float64): "f64", np.dtype(np.float32): "f32"}


def is_intermediate(name: str) -> bool:
    """The optional localisation outputs of gpt (docs/NAMES.md): embed, h.{l}.*, ln_f."""
    return name in ("embed", "ln_f") or name.startswith("h.")


def request_dtype(inputs: Dict[str, Array], cfg: Config) -> Any:
    """config.dtype when given (formulas without float arguments need it), else the float inputs' dtype."""
    floats = {NAMES_OF[v.dtype] for v in inputs.values() if v.dtype != np.int32}
    if "dtype" in cfg:
        d = cfg.choice("dtype", ("f64", "f32"))
        if floats and floats != {d}:
            raise FormulaError(f"config dtype is {d} but float arguments are {', '.join(sorted(floats))}")
        return DTYPES[d]
    if len(floats) > 1:
        raise FormulaError(f"float arguments mix dtypes {', '.join(sorted(floats))}; send one dtype per request")
    return DTYPES[floats.pop()] if floats else np.float64


def decline_unsupported(name: str, cfg: Config) -> None:
    """Partial RoPE, position ids and attention/residual dropout are declined, never read as their default."""
    if name != "dropout" and cfg.get("dropout", 0) not in (0, 0.0):
        raise FormulaError(f"{name}: dropout = {cfg['dropout']!r} is not implemented by this implementation")
    for key in ("rotary_dims", "position_ids"):
        if cfg.get(key) not in (None, False):
            raise FormulaError(f"{name}: {key} = {cfg[key]!r} is not implemented by this implementation")


def served(name: str, formula: Formula) -> Served:
    """One formula of FORMULAS as serve() takes it: forward, and backward through its ``back``."""

    def forward(inputs: Dict[str, Array], config: Dict[str, Any]) -> Dict[str, Array]:
        cfg = Config(dict(config))
        decline_unsupported(name, cfg)
        return formula(inputs, cfg, request_dtype(inputs, cfg))[0]

    def backward(inputs: Dict[str, Array], cot: Dict[str, Array], config: Dict[str, Any]) -> Dict[str, Array]:
        cfg = Config(dict(config))
        decline_unsupported(name, cfg)
        outputs, back = formula(inputs, cfg, request_dtype(inputs, cfg))
        for k, c in cot.items():
            if k not in outputs:
                raise FormulaError(f"cotangent {k} names no output of {name} (outputs: {', '.join(outputs)})")
            if is_intermediate(k):
                raise FormulaError(f"cotangent {k}: gradients of intermediate outputs are not supported (give cotangents of {', '.join(o for o in outputs if not is_intermediate(o))})")
            if c.shape != np.shape(outputs[k]):
                raise FormulaError(f"cotangent {k} has shape {list(c.shape)} but output {k} has {list(np.shape(outputs[k]))}")
        # an output without a cotangent contributes nothing: its cotangent is zero
        full = {k: cot.get(k, np.zeros_like(v)).astype(np.asarray(v).dtype) for k, v in outputs.items() if not is_intermediate(k)}
        return back(full)

    return Served(forward, backward)


# The configurations this example declines, declared in hello (docs/PROTOCOL.md, "Capabilities"):
# the verifier then sends nothing outside them and its laws generate inside them, instead of
# drawing thousands of cases this program can only refuse. Each entry mirrors a FormulaError of
# the formulas above; examples/numpy/impl.test.ts sends a request just outside every entry and
# expects it declined, so a convention implemented later fails that test until it is listed here.
NO_KV_CACHE = {"kv_cache": [False]}
CAPABILITIES = {
    "causal_mask": {"config": {"causal_align": ["bottom_right"], "window": [0]}},
    "attention": {"config": {"causal_align": ["bottom_right"], "window": [0], "mask": ["none"], "softcap": [0], "alibi": [False]}},
    "mha": {"config": {"window": [0], "softcap": [0], "positions": ["none"], "offset": [0], **NO_KV_CACHE}},
    "block": {"config": {"positions": ["none"], **NO_KV_CACHE}},
    "block_pre_ln": {"config": {"positions": ["none"], **NO_KV_CACHE}},
    "block_post_ln": {"config": {"positions": ["none"], **NO_KV_CACHE}},
    "logits": {"config": {"final_softcap": [0]}},
    "gpt": {"config": {"positions": ["learned", "sinusoidal", "none"], "final_softcap": [0], **NO_KV_CACHE}},
}


def main() -> None:
    if PLANT not in PLANTS:
        sys.stderr.write(f"SPECFORMER_PLANT={PLANT!r} is not one of {PLANTS[1:]}\n")
        sys.exit(2)
    name = "numpy-reference" + (f" (planted bug: {PLANT})" if PLANT else "")
    capabilities = {f: c for f, c in CAPABILITIES.items() if f in FORMULAS}
    serve({f: served(f, formula) for f, formula in FORMULAS.items()}, name=name, numpy=np.__version__, capabilities=capabilities)


if __name__ == "__main__":
    main()
