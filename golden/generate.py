#!/usr/bin/python3
"""Generate specformer's golden cases with PyTorch.

    /usr/bin/python3 golden/generate.py [--out DIR] [--only PATTERN] [--list]
    /usr/bin/python3 golden/generate.py --hf-gpt2 DIR --tokens 464,2068,... --out DIR2

The goldens are the project's independent oracle: everything here follows PyTorch, Hugging
Face and LLaMA conventions and docs/NAMES.md, never the TypeScript code. Outputs come from
torch's own modules where they exist (``F.softmax``, ``F.layer_norm``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer``, ...); what torch 1.13 lacks (RMSNorm, RoPE, ALiBi, GQA,
SwiGLU, whole GPTs, sandwich/parallel blocks) is written in torch ops and cross-checked
against the modules before anything is written. Gradients come from ``torch.autograd``.

Each case is seeded from a hash of its name, so cases do not depend on each other or on
the order they run in; files and manifest are byte-identical across runs. See
golden/GENERATOR.md for the case rules and the tolerance rule.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

# Fix the order of every floating-point sum before torch loads: one thread everywhere, and
# the baseline x86-64 kernels of OpenBLAS and of ATen's own CPU ops, so that another x86-64
# machine with the same torch build reproduces the files instead of picking other SIMD kernels.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_CORETYPE": "Prescott",
    "ATEN_CPU_CAPABILITY": "default",
}
# SPECFORMER_GOLDEN_UNPINNED=1 leaves the kernels and thread counts to the environment, so that
# golden/drift-variants.sh can regenerate under other BLAS kernels, SIMD widths and thread counts
# and show that the committed files hold within their tolerances there too.
UNPINNED = os.environ.get("SPECFORMER_GOLDEN_UNPINNED") == "1"
if not UNPINNED:
    os.environ.update(PINNED_ENV)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.stateless import functional_call  # noqa: E402

sys.dont_write_bytecode = True  # keep golden/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import specformer_golden as sg  # noqa: E402

GENERATOR = "golden/generate.py 1"
F64 = torch.float64
NEG_INF = float("-inf")
Args = dict[str, torch.Tensor]

# ============================================================================ the math
# Every function is dtype-generic: the same code runs in float32 (the stored result of a
# float32 case) and in float64 (the exact reference its tolerance is measured against).


def causal_allowed(n: int, m: int) -> torch.Tensor:
    """bool [n, m]: query i sees key j iff j <= i + (m - n) (bottom-right aligned)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    return j <= i + (m - n)


def causal_mask_where(n: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    """[n, m] additive mask, 0 where allowed and -inf elsewhere."""
    return torch.where(causal_allowed(n, m), torch.zeros((), dtype=dtype), torch.full((), NEG_INF, dtype=dtype))


def causal_mask_triu(n: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    """The torch idiom: -inf strictly above diagonal m - n (j - i >= m - n + 1)."""
    if n == m:  # torch's own square causal mask
        return nn.Transformer.generate_square_subsequent_mask(n).to(dtype)
    return torch.triu(torch.full((n, m), NEG_INF, dtype=dtype), diagonal=m - n + 1)


def attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, causal: bool, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d_k) + bias + M) V; rows whose keys are all masked get zero weights.

    Q [..., n, d_k], K [..., m, d_k], V [..., m, d_v], bias broadcastable to [..., n, m].
    """
    n, m, d_k = Q.shape[-2], K.shape[-2], Q.shape[-1]
    scores = Q @ K.transpose(-1, -2) / math.sqrt(d_k)  # [..., n, m]
    if bias is not None:
        scores = scores + bias
    if not causal:
        return F.softmax(scores, dim=-1) @ V
    allowed = causal_allowed(n, m)
    scores = scores.masked_fill(~allowed, NEG_INF)
    empty = ~allowed.any(dim=-1, keepdim=True)  # [n, 1]: queries that see no key (n > m)
    if bool(empty.any()):
        zero = torch.zeros((), dtype=scores.dtype)
        # finite scores in empty rows keep softmax (and its backward) free of NaN; the
        # rows are then set to zero weights explicitly, so output and gradients are 0.
        w = torch.where(empty, zero, F.softmax(torch.where(empty, zero, scores), dim=-1))
    else:
        w = F.softmax(scores, dim=-1)
    return w @ V


def _identity_mha(d: int, dtype: torch.dtype) -> tuple[nn.MultiheadAttention, Args]:
    mod = nn.MultiheadAttention(d, 1, bias=False, batch_first=True, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    return mod, {"in_proj_weight": torch.cat([eye, eye, eye], 0), "out_proj.weight": eye}


def attention_via_mha(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, causal: bool) -> torch.Tensor:
    """The same attention from nn.MultiheadAttention with H = 1 and identity projections.

    V's columns are fed in chunks of d_k (zero-padded), since the module's value width is
    its embed dim; rows that see no key (n > m) are zero by definition and the remaining
    rows form an ordinary bottom-right aligned problem.
    """
    n, m, d_k, d_v = Q.shape[-2], K.shape[-2], Q.shape[-1], V.shape[-1]
    lead = Q.shape[:-2]
    q = Q.reshape(-1, n, d_k)
    k = K.reshape(-1, m, d_k)
    v = V.reshape(-1, m, d_v)
    skip = max(0, n - m) if causal else 0
    mask = ~causal_allowed(n, m)[skip:] if causal else None
    mod, params = _identity_mha(d_k, Q.dtype)
    pad = (-d_v) % d_k
    vp = torch.cat([v, torch.zeros(v.shape[0], m, pad, dtype=v.dtype)], -1) if pad else v
    chunks = []
    for c in range(0, d_v + pad, d_k):
        y, _ = functional_call(mod, params, (q[:, skip:], k, vp[..., c : c + d_k]), {"attn_mask": mask, "need_weights": False})
        chunks.append(y)
    y = torch.cat(chunks, -1)[..., :d_v]
    if skip:
        y = torch.cat([torch.zeros(y.shape[0], skip, d_v, dtype=y.dtype), y], 1)
    return y.reshape(*lead, n, d_v)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[..., n, heads·d_k] -> [..., heads, n, d_k] (head h = column block h)."""
    return t.reshape(*t.shape[:-1], heads, t.shape[-1] // heads).transpose(-2, -3)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """[..., H, n, d_k] -> [..., n, H·d_k]."""
    t = t.transpose(-2, -3)
    return t.reshape(*t.shape[:-2], -1)


def mha_module(a: Args, H: int, causal: bool) -> torch.Tensor:
    """nn.MultiheadAttention with our right-multiplied weights mapped onto it."""
    x = a["x"]
    n, d = x.shape[-2], x.shape[-1]
    mod = nn.MultiheadAttention(d, H, bias=True, batch_first=True, dtype=x.dtype)
    params = {
        "in_proj_weight": torch.cat([a["W_Q"].T, a["W_K"].T, a["W_V"].T], 0),
        "in_proj_bias": torch.cat([a["b_Q"], a["b_K"], a["b_V"]]),
        "out_proj.weight": a["W_O"].T,
        "out_proj.bias": a["b_O"],
    }
    xb = x.reshape(-1, n, d)
    mask = ~causal_allowed(n, n) if causal else None
    y, _ = functional_call(mod, params, (xb, xb, xb), {"attn_mask": mask, "need_weights": False})
    return y.reshape(x.shape)


def mha_explicit(a: Args, H: int, causal: bool) -> torch.Tensor:
    x = a["x"]
    q = split_heads(x @ a["W_Q"] + a["b_Q"], H)  # [..., H, n, d_k]
    k = split_heads(x @ a["W_K"] + a["b_K"], H)
    v = split_heads(x @ a["W_V"] + a["b_V"], H)
    return merge_heads(attention(q, k, v, causal)) @ a["W_O"] + a["b_O"]


def layer_norm_explicit(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * gamma + beta


def rms_norm(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm: gamma · x · rsqrt(mean(x²) + eps)."""
    return gamma * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rms_norm_alt(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    d = x.shape[-1]
    return x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + eps) * gamma


ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}
ACT_ORACLE = {"gelu": "F.gelu", "gelu_tanh": "F.gelu(approximate='tanh')", "relu": "F.relu", "silu": "F.silu"}
ACT_EXPLICIT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: torch.where(x > 0, x, torch.zeros((), dtype=x.dtype)),
    "silu": lambda x: x * torch.sigmoid(x),
}


def linear_sum(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x W (+ b) as an explicit broadcast-multiply-and-sum (a different summation than BLAS)."""
    y = (x[..., :, None] * W).sum(-2)
    return y if b is None else y + b


def linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x W + b with W [d_in, d_out], via torch's F.linear (which wants the transpose)."""
    return F.linear(x, W.T, b)


def sinusoidal(n: int, d_model: int, offset: int, dtype: torch.dtype) -> torch.Tensor:
    """p[i, 2k] = sin(i / 10000^(2k/d_model)), p[i, 2k+1] = cos(same); i = offset … offset+n−1."""
    pos = torch.arange(offset, offset + n, dtype=dtype)[:, None]
    two_k = torch.arange(0, d_model, 2, dtype=dtype)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=dtype), two_k / d_model)  # [n, ceil(d/2)]
    y = torch.zeros(n, d_model, dtype=dtype)
    y[:, 0::2] = torch.sin(angle)
    y[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return y


def sinusoidal_annotated(n: int, d_model: int, offset: int, dtype: torch.dtype) -> torch.Tensor:
    """The Annotated Transformer's form: angle = i · exp(−2k · ln(10000) / d_model)."""
    pos = torch.arange(offset, offset + n, dtype=dtype)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=dtype) * (-math.log(10000.0) / d_model))
    angle = pos * div
    return torch.stack([torch.sin(angle), torch.cos(angle)], -1).reshape(n, -1)[:, :d_model]


def rope_half(x: torch.Tensor, base: float, offset: int) -> torch.Tensor:
    """HF LLaMA: x·cos + rotate_half(x)·sin, pairs (i, i + d_k/2), inv_freq = base^(−2i/d_k)."""
    n, d_k = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d_k, 2, dtype=x.dtype) / d_k))
    t = torch.arange(offset, offset + n, dtype=x.dtype)
    freqs = torch.outer(t, inv_freq)  # [n, d_k/2]: angle p·inv_freq[i]
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : d_k // 2], x[..., d_k // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * emb.cos() + rotated * emb.sin()


def rope_interleaved(x: torch.Tensor, base: float, offset: int) -> torch.Tensor:
    """Meta LLaMA / RoFormer: pairs (2i, 2i+1) as complex numbers times e^{i·p·inv_freq[i]}."""
    n, d_k = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d_k, 2, dtype=x.dtype)[: d_k // 2] / d_k))
    t = torch.arange(offset, offset + n, dtype=x.dtype)
    freqs = torch.outer(t, inv_freq)
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs)  # [n, d_k/2] complex
    xc = torch.view_as_complex(x.contiguous().reshape(*x.shape[:-1], d_k // 2, 2))
    return torch.view_as_real(xc * freqs_cis).flatten(-2)


def _half_to_interleaved(d_k: int) -> torch.Tensor:
    """Column order taking the half layout (i, i + d_k/2) to adjacent pairs (2i, 2i+1)."""
    h = d_k // 2
    return torch.tensor([c for i in range(h) for c in (i, i + h)])


def rope_half_via_interleaved(x: torch.Tensor, base: float, offset: int) -> torch.Tensor:
    perm = _half_to_interleaved(x.shape[-1])
    inv = torch.argsort(perm)
    return rope_interleaved(x[..., perm], base, offset)[..., inv]


def rope_interleaved_via_half(x: torch.Tensor, base: float, offset: int) -> torch.Tensor:
    perm = _half_to_interleaved(x.shape[-1])
    inv = torch.argsort(perm)
    return rope_half(x[..., inv], base, offset)[..., perm]


ROPE = {"half": rope_half, "interleaved": rope_interleaved}


def get_slopes(n: int) -> list[float]:
    """ALiBi head slopes, verbatim from Press et al. (ofirpress/attention_with_linear_biases)."""

    def get_slopes_power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]


def slopes_closed_form(H: int) -> list[float]:
    """s_h = 2^(−8(h+1)/c) for the c = 2^⌊log2 H⌋ first heads, then 2^(−8(2j+1)/(2c))."""
    c = 2 ** math.floor(math.log2(H))
    first = [2.0 ** (-8.0 * (h + 1) / c) for h in range(c)]
    rest = [2.0 ** (-8.0 * (2 * j + 1) / (2 * c)) for j in range(H - c)]
    return first + rest


def alibi_bias(H: int, n: int, m: int, form: str, dtype: torch.dtype, slopes: list[float] | None = None) -> torch.Tensor:
    """[H, n, m]: relative s_h·(j − i − (m − n)); absolute s_h·j."""
    s = torch.tensor(get_slopes(H) if slopes is None else slopes, dtype=dtype)[:, None, None]
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    dist = (j - i - (m - n)) if form == "relative" else j.expand(n, m)
    return s * dist.to(dtype)[None]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())


def cross_entropy_explicit(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    mx = logits.max(-1, keepdim=True).values
    lse = mx + torch.log(torch.exp(logits - mx).sum(-1, keepdim=True))
    picked = logits.gather(-1, targets.long()[..., None])
    return (lse - picked).mean()


# ---------------------------------------------------------------------------- blocks

BLOCK_DEFAULTS: dict[str, Any] = {
    "eps": 1e-5,
    "causal": True,
    "norm": "layer_norm",
    "placement": "pre",
    "activation": "gelu",
    "positions": "none",
    "rope_base": 10000,
    "bias": True,
    "parallel": False,
}


def block_config(H: int, **kw: Any) -> dict[str, Any]:
    cfg = dict(BLOCK_DEFAULTS, H=H, H_kv=kw.pop("H_kv", H))
    for k, v in kw.items():
        if k not in cfg:
            raise KeyError(f"unknown block hyperparameter {k!r}")
        cfg[k] = v
    if cfg["parallel"] and cfg["placement"] != "pre":
        raise ValueError("parallel blocks are pre-norm (x + attn(ln_1 x) + mlp(ln_1 x))")
    return cfg


def norm(x: torch.Tensor, p: Args, name: str, cfg: dict[str, Any]) -> torch.Tensor:
    if cfg["norm"] == "layer_norm":
        return F.layer_norm(x, (x.shape[-1],), p[f"{name}.weight"], p[f"{name}.bias"], cfg["eps"])
    return rms_norm(x, p[f"{name}.weight"], cfg["eps"])


def attn_branch(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """Causal self-attention of one block, GPT-2 parameter names, GQA/RoPE/ALiBi per cfg."""
    n, d_model = x.shape[-2], x.shape[-1]
    H, H_kv = cfg["H"], cfg["H_kv"]
    d_k = d_model // H
    qkv = linear(x, p["attn.c_attn.weight"], p.get("attn.c_attn.bias"))  # [..., n, (H + 2 H_kv) d_k]
    q, k, v = qkv.split([H * d_k, H_kv * d_k, H_kv * d_k], dim=-1)
    q, k, v = split_heads(q, H), split_heads(k, H_kv), split_heads(v, H_kv)  # [..., heads, n, d_k]
    pos = cfg["positions"]
    if pos in ("rope", "rope_interleaved"):
        rot = rope_half if pos == "rope" else rope_interleaved
        q, k = rot(q, cfg["rope_base"], 0), rot(k, cfg["rope_base"], 0)
    if H_kv != H:  # HF repeat_kv: query head h uses KV head floor(h / (H / H_kv))
        k = k.repeat_interleave(H // H_kv, dim=-3)
        v = v.repeat_interleave(H // H_kv, dim=-3)
    bias = alibi_bias(H, n, n, "relative", x.dtype) if pos == "alibi" else None
    y = merge_heads(attention(q, k, v, cfg["causal"], bias))  # [..., n, d_model]
    return linear(y, p["attn.c_proj.weight"], p.get("attn.c_proj.bias"))


def mlp_branch(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    if cfg["activation"] == "swiglu":  # (silu(x W_gate) ⊙ x W_up) W_down
        return linear(F.silu(linear(x, p["mlp.gate_proj.weight"])) * linear(x, p["mlp.up_proj.weight"]), p["mlp.down_proj.weight"])
    h = ACT[cfg["activation"]](linear(x, p["mlp.c_fc.weight"], p.get("mlp.c_fc.bias")))
    return linear(h, p["mlp.c_proj.weight"], p.get("mlp.c_proj.bias"))


def block(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """One transformer block (hand-written, HF conventions)."""
    A = lambda t: attn_branch(t, p, cfg)  # noqa: E731
    M = lambda t: mlp_branch(t, p, cfg)  # noqa: E731
    N = lambda t, k: norm(t, p, k, cfg)  # noqa: E731
    if cfg["parallel"]:  # GPT-J: x + attn(ln_1 x) + mlp(ln_1 x)
        h = N(x, "ln_1")
        return x + A(h) + M(h)
    if cfg["placement"] == "post":  # x' = LN_1(x + MHA(x)), y = LN_2(x' + FFN(x'))
        x1 = N(x + A(x), "ln_1")
        return N(x1 + M(x1), "ln_2")
    if cfg["placement"] == "pre":  # x' = x + MHA(LN_1 x), y = x' + FFN(LN_2 x')
        x1 = x + A(N(x, "ln_1"))
        return x1 + M(N(x1, "ln_2"))
    if cfg["placement"] == "sandwich":  # x' = x + LN_3(MHA(LN_1 x)), y = x' + LN_4(FFN(LN_2 x'))
        x1 = x + N(A(N(x, "ln_1")), "ln_3")
        return x1 + N(M(N(x1, "ln_2")), "ln_4")
    raise ValueError(f"unknown placement {cfg['placement']!r}")


def module_supports(cfg: dict[str, Any]) -> bool:
    """Whether nn.TransformerEncoderLayer (torch 1.13) can express this block."""
    return (
        cfg["norm"] == "layer_norm"
        and cfg["placement"] in ("post", "pre")
        and not cfg["parallel"]
        and cfg["positions"] == "none"
        and cfg["bias"]
        and cfg["activation"] in ("gelu", "gelu_tanh", "relu")
    )


def block_module(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """The block as nn.TransformerEncoderLayer (dropout 0, eval, batch_first) with mapped
    weights. GQA is expressed by repeating each KV head's columns of c_attn for its group."""
    if not module_supports(cfg):
        raise ValueError(f"nn.TransformerEncoderLayer cannot express block config {cfg}")
    n, d = x.shape[-2], x.shape[-1]
    H, H_kv = cfg["H"], cfg["H_kv"]
    d_k = d // H
    W, b = p["attn.c_attn.weight"], p["attn.c_attn.bias"]
    if H_kv != H:
        g = H // H_kv
        kv_cols = [H * d_k + (h // g) * d_k + c for h in range(H) for c in range(d_k)]
        v_cols = [c + H_kv * d_k for c in kv_cols]
        idx = torch.tensor(list(range(H * d_k)) + kv_cols + v_cols)
        W, b = W.index_select(1, idx), b.index_select(0, idx)
    act: Any = {"gelu": "gelu", "relu": "relu", "gelu_tanh": ACT["gelu_tanh"]}[cfg["activation"]]
    layer = nn.TransformerEncoderLayer(
        d,
        H,
        p["mlp.c_fc.weight"].shape[1],
        dropout=0.0,
        activation=act,
        layer_norm_eps=cfg["eps"],
        batch_first=True,
        norm_first=cfg["placement"] == "pre",
        dtype=x.dtype,
    ).eval()
    params = {
        "self_attn.in_proj_weight": W.T,  # rows Q | K | V, each the transpose of our column block
        "self_attn.in_proj_bias": b,
        "self_attn.out_proj.weight": p["attn.c_proj.weight"].T,
        "self_attn.out_proj.bias": p["attn.c_proj.bias"],
        "linear1.weight": p["mlp.c_fc.weight"].T,
        "linear1.bias": p["mlp.c_fc.bias"],
        "linear2.weight": p["mlp.c_proj.weight"].T,
        "linear2.bias": p["mlp.c_proj.bias"],
        "norm1.weight": p["ln_1.weight"],
        "norm1.bias": p["ln_1.bias"],
        "norm2.weight": p["ln_2.weight"],
        "norm2.bias": p["ln_2.bias"],
    }
    mask = ~causal_allowed(n, n) if cfg["causal"] else None
    y = functional_call(layer, params, (x.reshape(-1, n, d),), {"src_mask": mask})
    return y.reshape(x.shape)


def _norm_alt(x: torch.Tensor, p: Args, name: str, cfg: dict[str, Any]) -> torch.Tensor:
    if cfg["norm"] == "layer_norm":
        return layer_norm_explicit(x, p[f"{name}.weight"], p[f"{name}.bias"], cfg["eps"])
    return rms_norm_alt(x, p[f"{name}.weight"], cfg["eps"])


def _attn_branch_module(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """The attention branch as nn.MultiheadAttention: GQA by repeating KV columns, ALiBi and
    the causal mask as one additive per-head attn_mask [B·H, n, n]."""
    n, d = x.shape[-2], x.shape[-1]
    H, H_kv = cfg["H"], cfg["H_kv"]
    d_k = d // H
    W, b = p["attn.c_attn.weight"], p.get("attn.c_attn.bias")
    if H_kv != H:
        g = H // H_kv
        kv_cols = [H * d_k + (h // g) * d_k + c for h in range(H) for c in range(d_k)]
        idx = torch.tensor(list(range(H * d_k)) + kv_cols + [c + H_kv * d_k for c in kv_cols])
        W = W.index_select(1, idx)
        b = None if b is None else b.index_select(0, idx)
    if cfg["positions"] in ("rope", "rope_interleaved"):
        # RoPE acts between the projections and the scores, where nn.MultiheadAttention has no
        # hook: project explicitly, rotate with the other convention's code (columns permuted),
        # then attend per head with the H = 1 identity-projection module.
        rot = rope_half_via_interleaved if cfg["positions"] == "rope" else rope_interleaved_via_half
        q, k, v = linear_sum(x, W, b).split(H * d_k, dim=-1)  # KV already repeated to H heads
        q, k, v = split_heads(q, H), split_heads(k, H), split_heads(v, H)
        q, k = rot(q, cfg["rope_base"], 0), rot(k, cfg["rope_base"], 0)
        return linear_sum(merge_heads(attention_via_mha(q, k, v, cfg["causal"])), p["attn.c_proj.weight"], p.get("attn.c_proj.bias"))
    mod = nn.MultiheadAttention(d, H, bias=cfg["bias"], batch_first=True, dtype=x.dtype)
    params = {"in_proj_weight": W.T, "out_proj.weight": p["attn.c_proj.weight"].T}
    if cfg["bias"]:
        params.update({"in_proj_bias": b, "out_proj.bias": p["attn.c_proj.bias"]})
    xb = x.reshape(-1, n, d)
    mask: torch.Tensor | None
    if cfg["positions"] == "alibi":
        m = alibi_bias(H, n, n, "relative", x.dtype, slopes_closed_form(H))
        if cfg["causal"]:
            m = m + causal_mask_triu(n, n, x.dtype)
        mask = m[None].expand(xb.shape[0], H, n, n).reshape(-1, n, n)  # index b·H + h
    elif cfg["positions"] == "none":
        mask = ~causal_allowed(n, n) if cfg["causal"] else None
    else:
        raise ValueError(f"nn.MultiheadAttention cannot apply positions = {cfg['positions']!r}")
    y, _ = functional_call(mod, params, (xb, xb, xb), {"attn_mask": mask, "need_weights": False})
    return y.reshape(x.shape)


def _mlp_branch_alt(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    if cfg["activation"] == "swiglu":
        return linear_sum(ACT_EXPLICIT["silu"](linear_sum(x, p["mlp.gate_proj.weight"])) * linear_sum(x, p["mlp.up_proj.weight"]), p["mlp.down_proj.weight"])
    h = ACT_EXPLICIT[cfg["activation"]](linear_sum(x, p["mlp.c_fc.weight"], p.get("mlp.c_fc.bias")))
    return linear_sum(h, p["mlp.c_proj.weight"], p.get("mlp.c_proj.bias"))


def composed_supports(cfg: dict[str, Any]) -> bool:
    return cfg["positions"] in ("none", "alibi", "rope", "rope_interleaved")


def block_composed(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """A second computation of any block: attention from nn.MultiheadAttention (with RoPE:
    explicit projections, the other RoPE convention permuted, the H = 1 identity module per
    head), norms, activations and products in their explicit forms, placements per docs/NAMES.md."""
    A = lambda t: _attn_branch_module(t, p, cfg)  # noqa: E731
    M = lambda t: _mlp_branch_alt(t, p, cfg)  # noqa: E731
    N = lambda t, k: _norm_alt(t, p, k, cfg)  # noqa: E731
    placement = "parallel" if cfg["parallel"] else cfg["placement"]
    if placement == "parallel":
        h = N(x, "ln_1")
        return x + A(h) + M(h)
    if placement == "post":
        h = N(x + A(x), "ln_1")
        return N(h + M(h), "ln_2")
    if placement == "pre":
        h = x + A(N(x, "ln_1"))
        return h + M(N(h, "ln_2"))
    h = x + N(A(N(x, "ln_1")), "ln_3")  # sandwich
    return h + N(M(N(h, "ln_2")), "ln_4")


def block_alt(x: torch.Tensor, p: Args, cfg: dict[str, Any]) -> torch.Tensor:
    """nn.TransformerEncoderLayer where it applies, else the module-composed block."""
    return block_module(x, p, cfg) if module_supports(cfg) else block_composed(x, p, cfg)


def alt_name_for(cfg: dict[str, Any]) -> str:
    gqa = ", KV columns repeated per group" if cfg["H_kv"] != cfg["H"] else ""
    if module_supports(cfg):
        return "nn.TransformerEncoderLayer" + gqa
    if cfg["positions"] == "alibi":
        return "nn.MultiheadAttention branch (ALiBi as attn_mask" + gqa + ") with explicit norms and FFN"
    if cfg["positions"] in ("rope", "rope_interleaved"):
        return "explicit projections, RoPE via the other convention permuted, per-head nn.MultiheadAttention (H = 1, identity)" + gqa + ", explicit norms and FFN"
    return "nn.MultiheadAttention branch" + gqa + " with explicit norms and FFN"


def block_param_shapes(cfg: dict[str, Any], d_model: int, d_ff: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, init kind)} of one block, GPT-2 names without the h.{l}. prefix."""
    H, H_kv = cfg["H"], cfg["H_kv"]
    if d_model % H or H % H_kv:
        raise ValueError(f"d_model = {d_model} must be divisible by H = {H}, and H by H_kv = {H_kv}")
    d_k = d_model // H
    s: dict[str, tuple[tuple[int, ...], str]] = {}
    norms = ["ln_1"] + ([] if cfg["parallel"] else ["ln_2"]) + (["ln_3", "ln_4"] if cfg["placement"] == "sandwich" else [])
    for ln in norms:
        s[f"{ln}.weight"] = ((d_model,), "gain")
        if cfg["norm"] == "layer_norm":
            s[f"{ln}.bias"] = ((d_model,), "bias")
    s["attn.c_attn.weight"] = ((d_model, (H + 2 * H_kv) * d_k), "weight")
    s["attn.c_proj.weight"] = ((d_model, d_model), "weight")
    if cfg["activation"] == "swiglu":
        s["mlp.gate_proj.weight"] = ((d_model, d_ff), "weight")
        s["mlp.up_proj.weight"] = ((d_model, d_ff), "weight")
        s["mlp.down_proj.weight"] = ((d_ff, d_model), "weight")
    else:
        s["mlp.c_fc.weight"] = ((d_model, d_ff), "weight")
        s["mlp.c_proj.weight"] = ((d_ff, d_model), "weight")
    if cfg["bias"]:
        s["attn.c_attn.bias"] = (((H + 2 * H_kv) * d_k,), "bias")
        s["attn.c_proj.bias"] = ((d_model,), "bias")
        if cfg["activation"] != "swiglu":
            s["mlp.c_fc.bias"] = ((d_ff,), "bias")
            s["mlp.c_proj.bias"] = ((d_model,), "bias")
    return s


# ---------------------------------------------------------------------------- gpt

GPT_DEFAULTS: dict[str, Any] = dict(BLOCK_DEFAULTS, tied=True, positions="learned", final_softcap=0.0)


def soft_cap(z: torch.Tensor, c: float) -> torch.Tensor:
    """Gemma 2's final logit soft cap: c·tanh(z/c) (HF Gemma2ForCausalLM, final_logit_softcapping); 0 = none."""
    return z if c == 0 else c * torch.tanh(z / c)


def gpt_config(*, V: int, n_ctx: int, d_model: int, L: int, d_ff: int, H: int, **kw: Any) -> dict[str, Any]:
    cfg = dict(GPT_DEFAULTS, V=V, n_ctx=n_ctx, d_model=d_model, L=L, d_ff=d_ff, H=H, H_kv=kw.pop("H_kv", H))
    for k, v in kw.items():
        if k not in cfg:
            raise KeyError(f"unknown gpt hyperparameter {k!r}")
        cfg[k] = v
    return cfg


def gpt_block_config(cfg: dict[str, Any]) -> dict[str, Any]:
    pos = cfg["positions"] if cfg["positions"] in ("rope", "rope_interleaved", "alibi") else "none"
    keys = [k for k in BLOCK_DEFAULTS if k != "positions"]
    return block_config(cfg["H"], H_kv=cfg["H_kv"], positions=pos, **{k: cfg[k] for k in keys})


def has_ln_f(cfg: dict[str, Any]) -> bool:
    return cfg["placement"] in ("pre", "sandwich")


def gpt_param_shapes(cfg: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    d = cfg["d_model"]
    s: dict[str, tuple[tuple[int, ...], str]] = {"wte.weight": ((cfg["V"], d), "embedding")}
    if cfg["positions"] == "learned":
        s["wpe.weight"] = ((cfg["n_ctx"], d), "embedding")
    bcfg = gpt_block_config(cfg)
    for l in range(cfg["L"]):
        for k, v in block_param_shapes(bcfg, d, cfg["d_ff"]).items():
            s[f"h.{l}.{k}"] = v
    if has_ln_f(cfg):
        s["ln_f.weight"] = ((d,), "gain")
        if cfg["norm"] == "layer_norm":
            s["ln_f.bias"] = ((d,), "bias")
    if not cfg["tied"]:
        s["lm_head.weight"] = ((cfg["V"], d), "embedding")
    return s


def _sub(p: Args, prefix: str) -> Args:
    return {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}


def gpt_logits(tokens: torch.Tensor, p: Args, cfg: dict[str, Any], use_module: bool = False) -> torch.Tensor:
    """Embedding (+ positions) → L blocks → (ln_f) → x W_vocabᵀ. ``use_module`` is the second,
    independent computation: blocks from nn.TransformerEncoderLayer or nn.MultiheadAttention."""
    n = tokens.shape[-1]
    if n > cfg["n_ctx"]:
        raise ValueError(f"sequence length {n} exceeds n_ctx = {cfg['n_ctx']}")
    wte = p["wte.weight"]
    x = F.embedding(tokens.long(), wte)
    if cfg["positions"] == "learned":
        x = x + p["wpe.weight"][:n]
    elif cfg["positions"] == "sinusoidal":
        x = x + sinusoidal(n, cfg["d_model"], 0, wte.dtype)
    bcfg = gpt_block_config(cfg)
    for l in range(cfg["L"]):
        x = (block_alt if use_module else block)(x, _sub(p, f"h.{l}."), bcfg)
    if has_ln_f(cfg):
        x = (_norm_alt if use_module else norm)(x, p, "ln_f", cfg)
    W_vocab = wte if cfg["tied"] else p["lm_head.weight"]
    return soft_cap(F.linear(x, W_vocab) if use_module else x @ W_vocab.T, cfg["final_softcap"])


def gpt_forward(a: Args, cfg: dict[str, Any], use_module: bool = False) -> Args:
    logits = gpt_logits(a["tokens"], a, cfg, use_module)
    return {"logits": logits, "loss": cross_entropy(logits, a["targets"])}


def gpt_K(cfg: dict[str, Any], n: int, rows: int, with_loss: bool = True) -> tuple[int, str]:
    d, d_k = cfg["d_model"], cfg["d_model"] // cfg["H"]
    kb, why = block_K(gpt_block_config(cfg), d, d_k, n, cfg["d_ff"])
    cap = 3 if cfg["final_softcap"] else 0
    K = cfg["L"] * kb + (d if has_ln_f(cfg) else 0) + d + cap
    text = f"L·({why}) + {'ln_f d_model + ' if has_ln_f(cfg) else ''}logits d_model" + (" + 3 (soft cap)" if cap else "")
    if with_loss:
        K += cfg["V"] + rows
        text += " + V + positions averaged"
    return K, text


def block_K(cfg: dict[str, Any], d: int, d_k: int, m: int, d_ff: int) -> tuple[int, str]:
    norms = 2 if not cfg["parallel"] else 1
    if cfg["placement"] == "sandwich":
        norms += 2
    K = norms * d + (d + d_k + m) + (d + d_ff)
    return K, f"{norms} norms·d_model + mha (d_model + d_k + m) + ffn (d_model + d_ff)"


# ============================================================================ cases


def stable_seed(text: str) -> int:
    """31-bit seed from the SHA-256 of a case name: independent of run order."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little") & 0x7FFFFFFF


class Draw:
    """Seeded float64 draws (a case's inputs are drawn in float64, then rounded for f32)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=self.g, dtype=F64) * scale + shift

    def uniform(self, *shape: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, dtype=F64) * (hi - lo) + lo

    def tokens(self, V: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, V, shape, generator=self.g, dtype=torch.int64)

    def params(self, shapes: dict[str, tuple[tuple[int, ...], str]]) -> Args:
        """weights ~ N(0, 1/d_in), gains 1 + 0.1·N, biases 0.1·N, embeddings 0.3·N."""
        out: Args = {}
        for name in sorted(shapes):
            shape, kind = shapes[name]
            if kind == "weight":
                out[name] = self.normal(*shape, scale=1.0 / math.sqrt(shape[0]))
            elif kind == "gain":
                out[name] = self.normal(*shape, scale=0.1, shift=1.0)
            elif kind == "bias":
                out[name] = self.normal(*shape, scale=0.1)
            elif kind == "embedding":
                out[name] = self.normal(*shape, scale=0.3)
            else:
                raise ValueError(kind)
        return out


@dataclass
class Spec:
    """One case family: expands to one case per dtype, ``<formula>/<dtype>/<slug>``."""

    formula: str
    slug: str
    dims: dict[str, int]
    config: dict[str, Any]
    make: Callable[[Draw], Args]  # float64 / int64 arguments
    oracle: Callable[[Args], Any]  # dtype-generic; returns {output: tensor} or one tensor (y)
    oracle_name: str
    K: tuple[int, str]  # accumulation chain of every output (and of argument gradients)
    params: tuple[str, ...] = ()  # arguments whose gradient sums over all rows
    rows: int = 1
    alt: Callable[[Args], Any] | None = None  # a second, independent float64 computation
    alt_name: str = ""
    dtypes: tuple[str, ...] = ("f64", "f32")
    notes: str | None = None
    generate_steps: int = 0  # > 0: a gpt_generate case
    gen_cfg: dict[str, Any] = field(default_factory=dict)
    f32_ulp: bool = False  # float32: also admit what one float32 ulp of every input changes (extreme magnitudes)

    def name(self, dtype: str) -> str:
        return f"{self.formula}/{dtype}/{self.slug}"


SPECS: list[Spec] = []


def spec(**kw: Any) -> None:
    SPECS.append(Spec(**kw))


def rows_of(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


def lead_dims(shape: tuple[int, ...], names: str) -> dict[str, int]:
    """Name the leading batch axes B (and H for [B, H, n, d_k])."""
    return dict(zip(names.split(), shape))


# ---------------------------------------------------------------------------- core formulas


def x_maker(shape: tuple[int, ...], kind: str = "normal") -> Callable[[Draw], Args]:
    def make(r: Draw) -> Args:
        if kind == "normal":
            x = r.normal(*shape)
        elif kind == "wide":  # tails of the activations
            x = r.normal(*shape, scale=6.0)
        elif kind == "scale1e3":  # logits of magnitude 1e3: saturating softmax
            x = r.normal(*shape, scale=1e3)
        elif kind == "near1e3":  # large common offset, O(1) spread: needs max subtraction
            x = r.normal(*shape, scale=2.0, shift=1e3)
        elif kind == "largeneg":  # a row entirely near −1e4, other rows half near −1e4
            x = r.normal(*shape)
            low = r.normal(*shape, shift=-1e4)
            pick = r.uniform(*shape, lo=0, hi=1) < 0.5
            x = torch.where(pick, low, x)
            x[..., 0, :] = low[..., 0, :]
        elif kind == "neginf":  # −inf entries (masked logits); every row keeps a finite one
            x = r.normal(*shape)
            x[..., 0, 1] = NEG_INF
            x[..., 0, 3] = NEG_INF
            x[..., -1, 1:] = NEG_INF
        else:
            raise ValueError(kind)
        return {"x": x}

    return make


def softmax_family() -> None:
    shapes = [
        ("n1_m5", (1, 5), "normal"),
        ("n7_m12", (7, 12), "normal"),
        ("b2_n3_m13", (2, 3, 13), "normal"),
        ("n4_m1", (4, 1), "normal"),
        ("vec_m9", (9,), "normal"),
        ("scale1e3_n4_m10", (4, 10), "scale1e3"),
        ("near1e3_n4_m10", (4, 10), "near1e3"),
        ("largeneg_n3_m8", (3, 8), "largeneg"),
    ]
    ops = {
        "softmax": (lambda a: F.softmax(a["x"], -1), "torch.nn.functional.softmax",
                    lambda a: torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values) / torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1, keepdim=True),
                    "explicit exp(x − max)/Σ"),
        "log_softmax": (lambda a: F.log_softmax(a["x"], -1), "torch.nn.functional.log_softmax",
                        lambda a: a["x"] - (a["x"].max(-1, keepdim=True).values + torch.log(torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1, keepdim=True))),
                        "explicit x − (max + log Σ exp(x − max))"),
        "logsumexp": (lambda a: torch.logsumexp(a["x"], -1), "torch.logsumexp",
                      lambda a: a["x"].max(-1).values + torch.log(torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1)),
                      "explicit max + log Σ exp(x − max)"),
    }
    extra = {
        "softmax": [("neginf_n3_m8", (3, 8), "neginf"), ("long_n2_m4096", (2, 4096), "normal")],
        "log_softmax": [("long_n2_m4096", (2, 4096), "normal")],
        "logsumexp": [("neginf_n3_m8", (3, 8), "neginf")],
    }
    for formula, (fn, oname, alt, aname) in ops.items():
        for slug, shape, kind in shapes + extra[formula]:
            m = shape[-1]
            dims = {"n": rows_of(shape), "m": m} if len(shape) <= 2 else {**lead_dims(shape, "B"), "n": shape[-2], "m": m}
            spec(formula=formula, slug=slug, dims=dims, config={}, make=x_maker(shape, kind), oracle=fn,
                 oracle_name=oname, K=(m, f"m = {m}"), alt=alt, alt_name=aname,
                 notes={"neginf": "rows contain −inf entries (masked logits); each row keeps a finite entry",
                        "scale1e3": "logits of magnitude 1e3", "near1e3": "logits 1e3 + 2·N(0,1): exp overflows without max subtraction",
                        "largeneg": "entries near −1e4 (one row entirely)"}.get(kind))


def cross_entropy_family() -> None:
    for slug, lead, V, kind in [
        ("n1_V5", (1,), 5, "normal"),
        ("n7_V11", (7,), 11, "normal"),
        ("b2_n3_V13", (2, 3), 13, "normal"),
        ("scale1e3_n4_V10", (4,), 10, "scale1e3"),
        ("near1e3_n4_V10", (4,), 10, "near1e3"),
    ]:
        def make(r: Draw, lead=lead, V=V, kind=kind) -> Args:
            a = x_maker((*lead, V), kind)(r)
            return {"logits": a["x"], "targets": r.tokens(V, *lead)}

        N = math.prod(lead)
        dims = {**lead_dims(lead[:-1], "B"), "n": lead[-1], "V": V}
        spec(formula="cross_entropy", slug=slug, dims=dims, config={}, make=make,
             oracle=lambda a: {"loss": cross_entropy(a["logits"], a["targets"])},
             oracle_name="torch.nn.functional.cross_entropy (mean)", K=(V + N, f"V + positions averaged = {V} + {N}"),
             alt=lambda a: {"loss": cross_entropy_explicit(a["logits"], a["targets"])}, alt_name="explicit logsumexp − picked logit",
             notes={"scale1e3": "logits of magnitude 1e3", "near1e3": "logits 1e3 + 2·N(0,1)"}.get(kind))


# ---------------------------------------------------------------------------- cross-entropy conventions (issue 13)


def cross_entropy_conventions_family() -> None:
    for slug, lead, V, ignore, ignored in [
        ("ignore_default_b2_n5_V7", (2, 5), 7, -100, [(0, 1), (0, 4), (1, 0)]),
        ("ignore_minus1_n6_V9", (6,), 9, -1, [(2,), (3,)]),
    ]:
        def make(r: Draw, lead=lead, V=V, ignore=ignore, ignored=ignored) -> Args:
            t = r.tokens(V, *lead)
            for pos in ignored:
                t[pos] = ignore
            return {"logits": r.normal(*lead, V), "targets": t}

        N = math.prod(lead)
        spec(formula="cross_entropy", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "V": V},
             config={} if ignore == -100 else {"ignore_index": ignore}, make=make,
             oracle=lambda a, ig=ignore: {"loss": F.cross_entropy(a["logits"].reshape(-1, a["logits"].shape[-1]), a["targets"].reshape(-1).long(), ignore_index=ig)},
             oracle_name=f"torch.nn.functional.cross_entropy(ignore_index={ignore}) (mean over counted positions)",
             K=(V + N, f"V + positions averaged = {V} + {N}"),
             notes=f"{len(ignored)} of {N} targets are ignore_index = {ignore}: left out of the loss and of its mean; their logits get zero gradient")



# ---------------------------------------------------------------------------- loss, normalisation and product conventions (issue 13)


def cross_entropy_explicit_full(z: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None, eps: float, reduction: str, ignore: int) -> torch.Tensor:
    """PyTorch's documented cross-entropy in explicit torch ops, differentiable in the class weights:
    loss_i = (1 − ε)·w[t_i]·(−log p_{i,t_i}) + (ε/V)·Σ_c w_c·(−log p_{i,c}), 0 where t_i = ignore;
    mean = Σ loss_i / Σ_{counted} w[t_i] (the count without weights)."""
    V = z.shape[-1]
    logp = F.log_softmax(z, dim=-1)
    keep = t != ignore
    ids = torch.where(keep, t, torch.zeros_like(t)).long()
    wv = torch.ones(V, dtype=z.dtype) if w is None else w
    wt = wv[ids] * keep
    nll = -logp.gather(-1, ids[..., None])[..., 0]
    smooth = -(logp * wv).sum(-1)
    loss = torch.where(keep, (1 - eps) * wv[ids] * nll + (eps / V) * smooth, torch.zeros_like(nll))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wt.sum()


def cross_entropy_torch(z: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None, eps: float, reduction: str, ignore: int) -> torch.Tensor:
    """F.cross_entropy on [positions, V] (per-position losses reshaped back to the targets' shape).
    torch 1.13's nll_loss does not differentiate the weight: its gradient is added from the explicit
    ops as (e − e.detach()), exactly 0 in value, so values and logit gradients stay F.cross_entropy's."""
    V = z.shape[-1]
    out = F.cross_entropy(z.reshape(-1, V), t.reshape(-1).long(), weight=None if w is None else w.detach(),
                          ignore_index=ignore, reduction=reduction, label_smoothing=eps)
    if reduction == "none":
        out = out.reshape(t.shape)
    if w is not None and w.requires_grad:
        e = cross_entropy_explicit_full(z.detach(), t, w, eps, reduction, ignore)
        out = out + (e - e.detach())
    return out


def cross_entropy_options_family() -> None:
    cases = [
        # slug, lead, V, config, ignored positions, weight
        ("smooth0.1_n7_V11", (7,), 11, {"label_smoothing": 0.1}, [], False),
        ("smooth0.25_ignore_b2_n5_V7", (2, 5), 7, {"label_smoothing": 0.25}, [(0, 1), (1, 3)], False),
        ("smooth1_n4_V5", (4,), 5, {"label_smoothing": 1.0}, [], False),
        ("sum_b2_n3_V13", (2, 3), 13, {"reduction": "sum"}, [], False),
        ("sum_ignore_n6_V9", (6,), 9, {"reduction": "sum"}, [(2,), (4,)], False),
        ("none_b2_n4_V7", (2, 4), 7, {"reduction": "none"}, [(1, 2)], False),
        ("none_n1_V5", (1,), 5, {"reduction": "none"}, [], False),
        ("weight_n7_V11", (7,), 11, {"weight": True}, [], True),
        ("weight_ignore_b2_n5_V7", (2, 5), 7, {"weight": True}, [(0, 0), (1, 4)], True),
        ("weight_smooth0.2_ignore_n6_V9", (6,), 9, {"weight": True, "label_smoothing": 0.2}, [(3,)], True),
        ("weight_sum_n5_V6", (5,), 6, {"weight": True, "reduction": "sum"}, [(1,)], True),
        ("weight_none_smooth0.1_b2_n3_V5", (2, 3), 5, {"weight": True, "reduction": "none", "label_smoothing": 0.1}, [(0, 2)], True),
    ]
    for slug, lead, V, config, ignored, weighted in cases:
        def make(r: Draw, lead=lead, V=V, ignored=ignored, weighted=weighted) -> Args:
            t = r.tokens(V, *lead)
            for pos in ignored:
                t[pos] = -100
            a = {"logits": r.normal(*lead, V), "targets": t}
            if weighted:
                a["weight"] = r.uniform(V, lo=0.2, hi=2.0)
            return a

        eps = float(config.get("label_smoothing", 0.0))
        red = str(config.get("reduction", "mean"))
        N = math.prod(lead)

        def oracle(a: Args, eps=eps, red=red) -> Args:
            return {"loss": cross_entropy_torch(a["logits"], a["targets"], a.get("weight"), eps, red, -100)}

        def alt(a: Args, eps=eps, red=red) -> Args:
            return {"loss": cross_entropy_explicit_full(a["logits"], a["targets"], a.get("weight"), eps, red, -100)}

        what = [f"label_smoothing={eps}"] if eps else []
        what += [f"reduction={red!r}"] if red != "mean" else []
        what += ["weight=w (its gradient from explicit torch ops: nll_loss does not differentiate it)"] if weighted else []
        spec(formula="cross_entropy", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "V": V}, config=config, make=make,
             oracle=oracle, oracle_name=f"torch.nn.functional.cross_entropy({', '.join(what)})",
             K=(2 * V + N, f"2·V + positions = 2·{V} + {N} (smoothing sums over V classes)"), params=("weight",) if weighted else (), rows=N,
             alt=alt, alt_name="explicit log_softmax, gather and weighted sums (PyTorch's documented formula)",
             notes=(f"{len(ignored)} of {N} targets are ignore_index = −100" if ignored else "no ignored targets")
             + (": weights uniform in [0.2, 2]" if weighted else ""))


def softmax_axis_family() -> None:
    for formula in ("softmax", "log_softmax"):
        fn = F.softmax if formula == "softmax" else F.log_softmax
        for slug, shape, axis in [
            ("axis-2_n5_m4", (5, 4), -2),
            ("axis-2_b2_m3_r7", (2, 3, 7), -2),
            ("axis-3_m4_r3_r2", (4, 3, 2), -3),
            ("axis-3_b2_m5_r1_r3", (2, 5, 1, 3), -3),
            ("axis-2_m1_r6", (1, 6), -2),
        ]:
            k = -axis
            m = shape[-k]
            dims = {**lead_dims(shape[:-k], "B"), "m": m, **{f"r_{i}": shape[-k + i] for i in range(1, k)}}
            oname = f"torch.nn.functional.{formula}(dim={axis})"
            spec(formula=formula, slug=slug, dims=dims, config={"axis": axis}, make=x_maker(shape),
                 oracle=lambda a, fn=fn, axis=axis: fn(a["x"], dim=axis), oracle_name=oname, K=(m, f"m = {m}"),
                 alt=lambda a, fn=fn, axis=axis: fn(a["x"].movedim(axis, -1), dim=-1).movedim(-1, axis),
                 alt_name=f"{formula} over the last axis of x.movedim({axis}, -1), moved back")


def layer_norm_explicit_k(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor | None, eps: float, k: int) -> torch.Tensor:
    axes = tuple(range(-k, 0))
    mu = x.mean(axes, keepdim=True)
    var = ((x - mu) ** 2).mean(axes, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * gamma
    return y if beta is None else y + beta


def norm_options_family() -> None:
    for slug, shape, k, bias in [
        ("nobias_n7_d12", (7, 12), 1, False),
        ("nobias_b2_n3_d9", (2, 3, 9), 1, False),
        ("nobias_n3_d1", (3, 1), 1, False),
        ("axes2_n4_r3_d5", (4, 3, 5), 2, True),
        ("axes2_b2_n3_r2_d7", (2, 3, 2, 7), 2, True),
        ("axes3_n2_r2_r3_d4", (2, 2, 3, 4), 3, True),
        ("axes2_nobias_n5_r4_d3", (5, 4, 3), 2, False),
        ("axes2_n1_r1_d6", (1, 1, 6), 2, True),
    ]:
        ns = shape[-k:]

        def make(r: Draw, shape=shape, ns=ns, bias=bias) -> Args:
            a = {"x": r.normal(*shape), "gamma": r.normal(*ns, scale=0.1, shift=1.0)}
            if bias:
                a["beta"] = r.normal(*ns, scale=0.1)
            return a

        config: dict[str, Any] = {"eps": 1e-5}
        if not bias:
            config["bias"] = False
        if k > 1:
            config["normalized_axes"] = k
        count = math.prod(ns)
        lead = shape[:-k]
        dims = {**lead_dims(lead[:-1], "B"), "n": lead[-1], **{f"r_{i}": ns[i - 1] for i in range(1, k)}, "d": ns[-1]}
        spec(formula="layer_norm", slug=slug, dims=dims, config=config, make=make,
             oracle=lambda a, ns=ns: F.layer_norm(a["x"], ns, a["gamma"], a.get("beta"), 1e-5),
             oracle_name=f"torch.nn.functional.layer_norm(normalized_shape={list(ns)}{', bias=None' if not bias else ''})",
             K=(count, f"normalised elements = {count}"), params=("gamma", "beta") if bias else ("gamma",), rows=math.prod(lead),
             alt=lambda a, k=k: layer_norm_explicit_k(a["x"], a["gamma"], a.get("beta"), 1e-5, k),
             alt_name=f"explicit mean and biased variance over the last {k} axes",
             # d = 1: x̂ = (x − μ)/√ε is 0 only up to the rounding of μ, which 1/√ε ≈ 316 amplifies;
             # in float32 that is ~1e-5 and depends on the kernel's summation, not on correctness
             dtypes=("f64",) if count == 1 else ("f64", "f32"),
             notes=("no beta (nanoGPT LayerNorm(bias=False))" if not bias else None))


def linear_options_family() -> None:
    for slug, lead, d_in, d_out in [("nobias_n7_din12_dout5", (7,), 12, 5), ("nobias_b2_n3_din8_dout6", (2, 3), 8, 6), ("nobias_n1_din1_dout3", (1,), 1, 3)]:
        def make(r: Draw, lead=lead, d_in=d_in, d_out=d_out) -> Args:
            return {"x": r.normal(*lead, d_in), "W": r.normal(d_in, d_out, scale=1 / math.sqrt(d_in))}

        spec(formula="linear", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_in": d_in, "d_out": d_out}, config={"bias": False},
             make=make, oracle=lambda a: linear(a["x"], a["W"]), oracle_name="torch.nn.functional.linear(x, Wᵀ) (no bias)",
             K=(d_in, f"d_in = {d_in}"), params=("W",), rows=math.prod(lead),
             alt=lambda a: linear_sum(a["x"], a["W"]), alt_name="broadcast multiply and sum")


def matmul_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.matmul as a broadcast multiply and sum: a 1-D a is a row [1, k], a 1-D b a column [k, 1]."""
    a2 = a[None, :] if a.dim() == 1 else a
    b2 = b[:, None] if b.dim() == 1 else b
    y = (a2.unsqueeze(-1) * b2.unsqueeze(-3)).sum(-2)
    if b.dim() == 1:
        y = y[..., 0]
    if a.dim() == 1:
        y = y[..., 0] if b.dim() == 1 else y[..., 0, :]
    return y


def matmul_family() -> None:
    # slug, a shape, b shape, config (a_batch, b_batch, vector)
    for slug, sa, sb, config in [
        ("n5_k3_p4", (5, 3), (3, 4), {"a_batch": "none", "b_batch": "none"}),
        ("batch_b2_n3_k4_p5", (2, 3, 4), (2, 4, 5), {}),
        ("bcast_B2x1_H3_n4_k3_p2", (2, 1, 4, 3), (3, 3, 2), {"a_batch": "B,1", "b_batch": "H"}),
        ("bcast_1xH_Bx1_n2_k5_p3", (1, 3, 2, 5), (2, 1, 5, 3), {"a_batch": "1,H", "b_batch": "B,1"}),
        ("weight_b2_n3_k4_p6", (2, 3, 4), (4, 6), {"b_batch": "none"}),
        ("vec_a_k4_b2_p3", (4,), (2, 4, 3), {"a_batch": "none", "vector": "a"}),
        ("vec_b_b2_n3_k5", (2, 3, 5), (5,), {"b_batch": "none", "vector": "b"}),
        ("dot_k7", (7,), (7,), {"a_batch": "none", "b_batch": "none", "vector": "both"}),
        ("n1_k1_p1", (1, 1), (1, 1), {"a_batch": "none", "b_batch": "none"}),
    ]:
        def make(r: Draw, sa=sa, sb=sb) -> Args:
            return {"a": r.normal(*sa), "b": r.normal(*sb)}

        k = sa[-1]
        rows = math.prod(torch.broadcast_shapes(sa[:-2], sb[:-2])) * (sa[-2] if len(sa) > 1 else 1) * (sb[-1] if len(sb) > 1 else 1)
        names: dict[str, int] = {"d_in": k}
        if len(sa) > 1:
            names["n"] = sa[-2]
        if len(sb) > 1:
            names["d_out"] = sb[-1]
        for bname, bshape in (("a_batch", sa[:-2]), ("b_batch", sb[:-2])):
            spec_dims = str(config.get(bname, "...")).split(",")
            if spec_dims != ["..."] and spec_dims != ["none"]:
                names.update({d: n for d, n in zip(spec_dims, bshape) if not d.isdigit()})
        spec(formula="matmul", slug=slug, dims={**names}, config=config, make=make,
             oracle=lambda a: torch.matmul(a["a"], a["b"]), oracle_name="torch.matmul",
             K=(k, f"d_in = {k}"), params=("a", "b"), rows=rows,
             alt=lambda a: matmul_sum(a["a"], a["b"]),
             alt_name="broadcast multiply and sum")


def causal_mask_family() -> None:
    for n, m in [(1, 1), (7, 7), (5, 5), (3, 8), (6, 3)]:
        spec(formula="causal_mask", slug=f"n{n}_m{m}", dims={"n": n, "m": m}, config={"n": n, "m": m},
             make=lambda r: {},
             oracle=lambda a, n=n, m=m: causal_mask_triu(n, m, a["__dtype__"]),
             oracle_name="torch.nn.Transformer.generate_square_subsequent_mask" if n == m else "torch.triu(full(−inf), diagonal = m − n + 1)",
             K=(1, "no arithmetic"), alt=lambda a, n=n, m=m: causal_mask_where(n, m, a["__dtype__"]), alt_name="where(j ≤ i + m − n, 0, −inf)",
             notes="n > m: the first n − m rows are entirely −inf" if n > m else ("KV-cache mask (n < m), bottom-right aligned" if n < m else None))


def attention_family() -> None:
    for slug, lead, n, m, d_k, d_v, causal in [
        ("n7_dk4_causal", (), 7, 7, 4, 4, True),
        ("b2_h3_n5_dk4_causal", (2, 3), 5, 5, 4, 4, True),
        ("b2_n6_m9_dk5_dv3_noncausal", (2,), 6, 9, 5, 3, False),
        ("n3_m8_dk4_causal_kvcache", (), 3, 8, 4, 4, True),
        ("n6_m3_dk4_causal_masked_rows", (), 6, 3, 4, 4, True),
        ("n1_m1_dk3_causal", (), 1, 1, 3, 3, True),
        ("n1_m7_dk4_causal", (), 1, 7, 4, 4, True),
        ("n5_dk1_dv2_noncausal", (), 5, 5, 1, 2, False),
    ]:
        def make(r: Draw, lead=lead, n=n, m=m, d_k=d_k, d_v=d_v) -> Args:
            return {"Q": r.normal(*lead, n, d_k), "K": r.normal(*lead, m, d_k), "V": r.normal(*lead, m, d_v)}

        dims = {**lead_dims(lead, "B H"), "n": n, "m": m, "d_k": d_k, "d_v": d_v}
        spec(formula="attention", slug=slug, dims=dims, config={"causal": causal}, make=make,
             oracle=lambda a, c=causal: attention(a["Q"], a["K"], a["V"], c),
             oracle_name="explicit softmax(Q Kᵀ/√d_k + M) V in torch ops (torch.where zeroes fully masked rows)",
             K=(d_k + m, f"d_k + m = {d_k} + {m}"),
             alt=lambda a, c=causal: attention_via_mha(a["Q"], a["K"], a["V"], c),
             alt_name="nn.MultiheadAttention, H = 1, identity projections",
             notes=("queries 0…2 see no key (n > m): zero weights, output 0, gradient 0" if n > m else
                    "KV-cache shape (n < m), causal mask bottom-right aligned" if n < m and causal else None))


# ---------------------------------------------------------------------------- attention conventions (issue 13)


def causal_allowed_aligned(n: int, m: int, align: str, window: int) -> torch.Tensor:
    """bool [n, m]: query i at position i' = i + (m - n) (bottom_right) or i (top_left) sees keys
    j <= i', and with a window w >= 1 only i' - w < j <= i' (HF Mistral sliding_window)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    pos = i + (m - n) if align == "bottom_right" else i
    ok = j <= pos
    return ok & (j > pos - window) if window > 0 else ok


def attention_conventions(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *, causal: bool = True, align: str = "bottom_right",
                          window: int = 0, mask_kind: str = "none", mask: torch.Tensor | None = None,
                          scale: float | None = None, softcap: float = 0.0, groups: int = 1) -> torch.Tensor:
    """torch 2's F.scaled_dot_product_attention semantics in torch 1.13 ops, plus HF's conventions.

    Scores s·Q Kᵀ (s = scale, default 1/sqrt(d_k)); soft cap c·tanh(scores/c) (HF Gemma 2);
    a boolean mask (nonzero = attend, SDPA's bool attn_mask) or an additive one (SDPA's float
    attn_mask); the causal mask top-left (SDPA is_causal) or bottom-right (FlashAttention >= 2.1),
    optionally windowed; K/V heads repeated for grouped-query attention (HF repeat_kv). Rows that
    see no key get zero weights (SDPA would give NaN), as the spec documents.
    """
    if groups > 1:
        K = K.repeat_interleave(groups, dim=-3)  # HF repeat_kv: query head h uses K/V head h // groups
        V = V.repeat_interleave(groups, dim=-3)
    n, m, d_k = Q.shape[-2], K.shape[-2], Q.shape[-1]
    qk = Q @ K.transpose(-1, -2)
    scores = qk / math.sqrt(d_k) if scale is None else qk * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    allowed = torch.ones(scores.shape, dtype=torch.bool)
    if mask_kind == "boolean":
        allowed = allowed & (mask != 0)
    elif mask_kind == "additive":
        scores = scores + mask
    if causal:
        allowed = allowed & causal_allowed_aligned(n, m, align, window)
    scores = scores.masked_fill(~allowed, NEG_INF)
    empty = (scores == NEG_INF).all(dim=-1, keepdim=True)
    zero = torch.zeros((), dtype=scores.dtype)
    w = torch.where(empty, zero, F.softmax(torch.where(empty, zero, scores), dim=-1))
    return w @ V


def attention_conventions_family() -> None:
    sdpa = "explicit torch ops with torch 2 F.scaled_dot_product_attention semantics (torch 1.13 has no fused op)"
    cases: list[tuple[str, tuple[int, ...], int, int, int, int, dict[str, Any], str, str | None]] = [
        # slug, lead, n, m, d_k, d_v, config, mask kind, notes
        ("top_left_n3_m7_dk4", (), 3, 7, 4, 4, {"causal": True, "causal_align": "top_left"}, "none",
         "top-left causal with n < m: query i sees keys 0..i (SDPA is_causal=True); bottom-right would differ"),
        ("top_left_b2_n6_m4_dk3", (2,), 6, 4, 3, 5, {"causal": True, "causal_align": "top_left"}, "none",
         "top-left causal with n > m: rows 3..5 see every key"),
        ("top_left_n5_dk4", (), 5, 5, 4, 4, {"causal": True, "causal_align": "top_left"}, "none", "n = m: equal to bottom-right"),
        ("window3_n7_dk4", (), 7, 7, 4, 3, {"causal": True, "window": 3}, "none", "sliding window w = 3: keys i − 2 … i (HF Mistral sliding_window = 3)"),
        ("window2_top_left_b2_n4_m6_dk3", (2,), 4, 6, 3, 3, {"causal": True, "causal_align": "top_left", "window": 2}, "none", None),
        ("window1_n3_m5_dk2", (), 3, 5, 2, 2, {"causal": True, "window": 1}, "none", "w = 1: each query sees only its own position"),
        ("mask_bool_padding_b2_n5_dk4", (2,), 5, 5, 4, 4, {"causal": False, "mask": "boolean"}, "padding",
         "boolean padding mask (i32, nonzero = attend): batch 0 pads keys 3, 4, batch 1 pads key 0; batch 1 row 2 sees no key (output 0, gradient 0)"),
        ("mask_bool_causal_b2_h2_n4_m6_dk3", (2, 2), 4, 6, 3, 2, {"causal": True, "mask": "boolean"}, "random", "boolean mask and the causal mask together"),
        ("mask_additive_b2_n4_m6_dk3", (2,), 4, 6, 3, 3, {"causal": False, "mask": "additive"}, "additive",
         "additive float mask with −inf entries (SDPA's float attn_mask; a fully −inf row gives output 0)"),
        ("scale0.25_n4_m5_dk4", (), 4, 5, 4, 4, {"causal": True, "scale": 0.25}, "none", "scale s = 0.25 instead of 1/√d_k = 0.5"),
        ("softcap2_n5_dk4", (), 5, 5, 4, 4, {"causal": True, "softcap": 2.0}, "wide", "soft cap c = 2 (Gemma 2 attn_logit_softcapping), queries of scale 3"),
        ("softcap50_top_left_n3_m6_dk3", (), 3, 6, 3, 3, {"causal": True, "causal_align": "top_left", "softcap": 50.0}, "wide", None),
        ("gqa_b2_h4_hkv2_n5_dk3", (2,), 5, 5, 3, 3, {"causal": True, "H": 4, "H_kv": 2}, "none", "grouped-query: query head h uses K/V head h // 2 (HF repeat_kv)"),
        ("mqa_h3_hkv1_n4_m6_dk2", (), 4, 6, 2, 4, {"causal": True, "H": 3, "H_kv": 1}, "none", "multi-query: every query head uses the one K/V head"),
        ("gemma_like_h4_hkv2_n6_dk4", (), 6, 6, 4, 4, {"causal": True, "H": 4, "H_kv": 2, "softcap": 20.0, "window": 4, "mask": "boolean"}, "padding",
         "grouped heads, soft cap, window and a padding mask together"),
    ]
    for slug, lead, n, m, d_k, d_v, config, kind, notes in cases:
        H, Hkv = config.get("H"), config.get("H_kv")
        groups = 1 if Hkv is None else H // Hkv
        qlead = lead if H is None else (*lead, H)
        kvlead = lead if Hkv is None else (*lead, Hkv)

        def make(r: Draw, qlead=qlead, kvlead=kvlead, n=n, m=m, d_k=d_k, d_v=d_v, kind=kind, config=config) -> Args:
            qscale = 3.0 if kind == "wide" else 1.0
            a = {"Q": r.normal(*qlead, n, d_k, scale=qscale), "K": r.normal(*kvlead, m, d_k), "V": r.normal(*kvlead, m, d_v)}
            mshape = (*qlead, n, m)
            if kind == "padding":
                keep = torch.ones(mshape, dtype=torch.int64)
                if len(qlead) >= 1 and qlead[0] == 2:
                    keep[0, ..., 3:] = 0
                    keep[1, ..., 0] = 0
                    keep[1, ..., 2, :] = 0
                else:
                    keep[..., 0] = 0
                    keep[..., 1, :] = 0
                a["mask"] = keep
            elif kind == "random":
                a["mask"] = (r.uniform(*mshape, lo=0, hi=1) < 0.7).to(torch.int64)
            elif kind == "additive":
                add = r.normal(*mshape)
                hide = r.uniform(*mshape, lo=0, hi=1) < 0.3
                add = torch.where(hide, torch.full((), NEG_INF, dtype=add.dtype), add)
                add[0, 1, :] = NEG_INF  # a row that sees no key
                a["mask"] = add
            return a

        Kdepth = d_k + m + (3 if config.get("softcap") else 0)
        spec(formula="attention", slug=slug, dims={**lead_dims(lead, "B"), **({"H": H, "H_kv": Hkv} if H else {}), "n": n, "m": m, "d_k": d_k, "d_v": d_v},
             config=config, make=make,
             oracle=lambda a, c=config, g=groups: attention_conventions(
                 a["Q"], a["K"], a["V"], causal=c.get("causal", True), align=c.get("causal_align", "bottom_right"), window=c.get("window", 0),
                 mask_kind=c.get("mask", "none"), mask=a.get("mask"), scale=c.get("scale"), softcap=c.get("softcap", 0.0), groups=g),
             oracle_name=sdpa, K=(Kdepth, f"d_k + m = {d_k} + {m}" + (" + 3 (soft cap)" if config.get("softcap") else "")), notes=notes)


def mha_family() -> None:
    for slug, lead, n, d, H, causal in [
        ("n7_d12_h3_causal", (), 7, 12, 3, True),
        ("b2_n5_d8_h2_causal", (2,), 5, 8, 2, True),
        ("n1_d6_h1_causal", (), 1, 6, 1, True),
        ("n6_d12_h4_noncausal", (), 6, 12, 4, False),
        ("n4_d12_h6_causal", (), 4, 12, 6, True),
        ("n3_d5_h5_causal", (), 3, 5, 5, True),
    ]:
        def make(r: Draw, lead=lead, n=n, d=d) -> Args:
            a = {"x": r.normal(*lead, n, d)}
            for k in ("W_Q", "W_K", "W_V", "W_O"):
                a[k] = r.normal(d, d, scale=1 / math.sqrt(d))
            for k in ("b_Q", "b_K", "b_V", "b_O"):
                a[k] = r.normal(d, scale=0.1)
            return a

        d_k = d // H
        spec(formula="mha", slug=slug, dims={**lead_dims(lead, "B"), "n": n, "d_model": d, "H": H, "d_k": d_k},
             config={"H": H, "causal": causal}, make=make,
             oracle=lambda a, H=H, c=causal: mha_module(a, H, c),
             oracle_name="torch.nn.MultiheadAttention (batch_first; in_proj_weight = cat(W_Qᵀ, W_Kᵀ, W_Vᵀ), out_proj.weight = W_Oᵀ)",
             K=(d + d_k + n, f"d_model + d_k + m = {d} + {d_k} + {n}"),
             params=("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"), rows=math.prod(lead) * n,
             alt=lambda a, H=H, c=causal: mha_explicit(a, H, c), alt_name="explicit heads as column blocks")


def norm_family() -> None:
    for slug, shape, kind, eps in [
        ("n7_d12", (7, 12), "normal", 1e-5),
        ("n1_d5", (1, 5), "normal", 1e-5),
        ("b2_n3_d9", (2, 3, 9), "normal", 1e-5),
        ("n3_d1", (3, 1), "normal", 1e-5),
        ("n4_d6_eps0.1", (4, 6), "normal", 0.1),
        ("nearconst_n4_d16", (4, 16), "nearconst", 1e-5),
        ("nearconst_eps1e-12_n4_d16", (4, 16), "nearconst", 1e-12),
        ("offset1e4_n3_d8", (3, 8), "offset1e4", 1e-5),
        ("long_n2_d4096", (2, 4096), "normal", 1e-5),
    ]:
        def make(r: Draw, shape=shape, kind=kind) -> Args:
            d = shape[-1]
            if kind == "nearconst":
                x = r.normal(*shape, scale=1e-6, shift=1.0)
            elif kind == "offset1e4":
                x = r.normal(*shape, shift=1e4)
            else:
                x = r.normal(*shape)
            return {"x": x, "gamma": r.normal(d, scale=0.1, shift=1.0), "beta": r.normal(d, scale=0.1)}

        d = shape[-1]
        dims = {**lead_dims(shape[:-2], "B"), "n": shape[-2], "d": d}
        spec(formula="layer_norm", slug=slug, dims=dims, config={"eps": eps}, make=make,
             oracle=lambda a, eps=eps: F.layer_norm(a["x"], (a["x"].shape[-1],), a["gamma"], a["beta"], eps),
             oracle_name="torch.nn.functional.layer_norm", K=(d, f"d = {d}"), params=("gamma", "beta"), rows=rows_of(shape),
             alt=lambda a, eps=eps: layer_norm_explicit(a["x"], a["gamma"], a["beta"], eps), alt_name="explicit biased variance",
             # float32 cannot resolve a variance of 1e-12 around 1 (its spacing there is 1.2e-7)
             dtypes=("f64",) if eps < 1e-9 else ("f64", "f32"),
             notes={"nearconst": "near-constant rows 1 + 1e-6·N(0,1)" + (": variance 1e-12 ~ eps, strongly ill-conditioned" if eps < 1e-9 else ": eps dominates the variance"),
                    "offset1e4": "rows 1e4 + N(0,1): cancellation in x − mean"}.get(kind))
    for slug, shape, kind, eps in [
        ("n7_d12", (7, 12), "normal", 1e-6),
        ("n1_d5", (1, 5), "normal", 1e-6),
        ("b2_n3_d9", (2, 3, 9), "normal", 1e-6),
        ("n3_d1", (3, 1), "normal", 1e-6),
        ("nearconst_n4_d16", (4, 16), "nearconst", 1e-6),
        ("small_n3_d8_eps1e-5", (3, 8), "small", 1e-5),
    ]:
        def make(r: Draw, shape=shape, kind=kind) -> Args:
            d = shape[-1]
            x = {"nearconst": lambda: r.normal(*shape, scale=1e-6, shift=1.0), "small": lambda: r.normal(*shape, scale=3e-3)}.get(kind, lambda: r.normal(*shape))()
            return {"x": x, "gamma": r.normal(d, scale=0.1, shift=1.0)}

        d = shape[-1]
        dims = {**lead_dims(shape[:-2], "B"), "n": shape[-2], "d": d}
        spec(formula="rms_norm", slug=slug, dims=dims, config={"eps": eps}, make=make,
             oracle=lambda a, eps=eps: rms_norm(a["x"], a["gamma"], eps),
             oracle_name="explicit torch ops, HF LlamaRMSNorm (gamma · x · rsqrt(mean(x²) + eps))", K=(d, f"d = {d}"),
             params=("gamma",), rows=rows_of(shape),
             alt=lambda a, eps=eps: rms_norm_alt(a["x"], a["gamma"], eps), alt_name="x / sqrt(‖x‖²/d + eps) · gamma via torch.linalg.vector_norm",
             notes={"nearconst": "near-constant rows 1 + 1e-6·N(0,1)", "small": "entries ~3e-3: mean(x²) ~ 1e-5 = eps, so eps matters"}.get(kind))


def activation_family() -> None:
    for formula in ("gelu", "gelu_tanh", "relu", "silu"):
        for slug, shape, kind in [("n7_d12", (7, 12), "normal"), ("n1_d5", (1, 5), "normal"), ("b2_n3_d5_wide", (2, 3, 5), "wide")]:
            dims = {**lead_dims(shape[:-2], "B"), "n": shape[-2], "d": shape[-1]}
            spec(formula=formula, slug=slug, dims=dims, config={}, make=x_maker(shape, kind), oracle=lambda a, f=formula: ACT[f](a["x"]),
                 oracle_name=f"torch.nn.functional.{ACT_ORACLE[formula][2:]}", K=(1, "elementwise"),
                 alt=lambda a, f=formula: ACT_EXPLICIT[f](a["x"]), alt_name="the closed form in torch ops",
                 notes="x ~ 6·N(0,1): both tails" if kind == "wide" else None)


def linear_family() -> None:
    for slug, lead, d_in, d_out in [("n7_din12_dout5", (7,), 12, 5), ("n1_din3_dout1", (1,), 3, 1), ("b2_n3_din8_dout6", (2, 3), 8, 6), ("n4_din1_dout7", (4,), 1, 7)]:
        def make(r: Draw, lead=lead, d_in=d_in, d_out=d_out) -> Args:
            return {"x": r.normal(*lead, d_in), "W": r.normal(d_in, d_out, scale=1 / math.sqrt(d_in)), "b": r.normal(d_out, scale=0.1)}

        spec(formula="linear", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_in": d_in, "d_out": d_out}, config={},
             make=make, oracle=lambda a: linear(a["x"], a["W"], a["b"]), oracle_name="torch.nn.functional.linear(x, Wᵀ, b)",
             K=(d_in, f"d_in = {d_in}"), params=("W", "b"), rows=math.prod(lead),
             alt=lambda a: linear_sum(a["x"], a["W"], a["b"]), alt_name="broadcast multiply and sum")
    for slug, lead, d, d_ff, act in [
        ("gelu_n7_d12_dff20", (7,), 12, 20, "gelu"),
        ("gelu_b2_n3_d8_dff16", (2, 3), 8, 16, "gelu"),
        ("gelu_tanh_n4_d6_dff11", (4,), 6, 11, "gelu_tanh"),
        ("relu_n1_d5_dff7", (1,), 5, 7, "relu"),
        ("silu_b2_n3_d8_dff12", (2, 3), 8, 12, "silu"),
    ]:
        def make(r: Draw, lead=lead, d=d, d_ff=d_ff) -> Args:
            return {"x": r.normal(*lead, d), "W_1": r.normal(d, d_ff, scale=1 / math.sqrt(d)), "b_1": r.normal(d_ff, scale=0.1),
                    "W_2": r.normal(d_ff, d, scale=1 / math.sqrt(d_ff)), "b_2": r.normal(d, scale=0.1)}

        spec(formula="ffn", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_model": d, "d_ff": d_ff},
             config={"activation": act}, make=make,
             oracle=lambda a, act=act: linear(ACT[act](linear(a["x"], a["W_1"], a["b_1"])), a["W_2"], a["b_2"]),
             oracle_name=f"torch.nn.functional.linear → {ACT_ORACLE[act]} → torch.nn.functional.linear",
             K=(d + d_ff, f"d_model + d_ff = {d} + {d_ff}"), params=("W_1", "b_1", "W_2", "b_2"), rows=math.prod(lead),
             alt=lambda a, act=act: linear_sum(ACT_EXPLICIT[act](linear_sum(a["x"], a["W_1"], a["b_1"])), a["W_2"], a["b_2"]),
             alt_name="broadcast-sum products and the activation's closed form")
    for slug, lead, d, d_ff in [("n7_d12_dff20", (7,), 12, 20), ("n1_d5_dff6", (1,), 5, 6), ("b2_n3_d8_dff12", (2, 3), 8, 12)]:
        def make(r: Draw, lead=lead, d=d, d_ff=d_ff) -> Args:
            return {"x": r.normal(*lead, d), "W_gate": r.normal(d, d_ff, scale=1 / math.sqrt(d)),
                    "W_up": r.normal(d, d_ff, scale=1 / math.sqrt(d)), "W_down": r.normal(d_ff, d, scale=1 / math.sqrt(d_ff))}

        spec(formula="swiglu", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_model": d, "d_ff": d_ff}, config={},
             make=make,
             oracle=lambda a: linear(F.silu(linear(a["x"], a["W_gate"])) * linear(a["x"], a["W_up"]), a["W_down"]),
             oracle_name="torch.nn.functional.linear / silu: (silu(x W_gate) ⊙ x W_up) W_down (HF LlamaMLP)",
             K=(d + d_ff, f"d_model + d_ff = {d} + {d_ff}"), params=("W_gate", "W_up", "W_down"), rows=math.prod(lead),
             alt=lambda a: linear_sum(ACT_EXPLICIT["silu"](linear_sum(a["x"], a["W_gate"])) * linear_sum(a["x"], a["W_up"]), a["W_down"]),
             alt_name="broadcast-sum products, x·sigmoid(x)")
    for slug, lead, d, V in [("n7_d12_V11", (7,), 12, 11), ("n1_d5_V7", (1,), 5, 7), ("b2_n3_d8_V13", (2, 3), 8, 13)]:
        def make(r: Draw, lead=lead, d=d, V=V) -> Args:
            return {"x": r.normal(*lead, d), "W_vocab": r.normal(V, d, scale=0.3)}

        spec(formula="logits", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_model": d, "V": V}, config={}, make=make,
             oracle=lambda a: F.linear(a["x"], a["W_vocab"]), oracle_name="torch.nn.functional.linear(x, W_vocab)",
             K=(d, f"d_model = {d}"), params=("W_vocab",), rows=math.prod(lead),
             alt=lambda a: (a["x"][..., None, :] * a["W_vocab"]).sum(-1), alt_name="broadcast multiply and sum")
    for slug, lead, d, V, c in [("softcap1_n7_d12_V11", (7,), 12, 11, 1.0), ("softcap30_b2_n3_d8_V13", (2, 3), 8, 13, 30.0)]:
        def make(r: Draw, lead=lead, d=d, V=V, c=c) -> Args:
            # logits of size ~c, so that the cap bends them
            return {"x": r.normal(*lead, d, scale=c), "W_vocab": r.normal(V, d, scale=0.3)}

        spec(formula="logits", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "d_model": d, "V": V},
             config={"final_softcap": c}, make=make,
             oracle=lambda a, c=c: soft_cap(F.linear(a["x"], a["W_vocab"]), c),
             oracle_name="torch.nn.functional.linear(x, W_vocab), then c·tanh(z/c) (HF Gemma 2 final_logit_softcapping)",
             K=(d + 3, f"d_model + 3 (soft cap) = {d} + 3"), params=("W_vocab",), rows=math.prod(lead),
             alt=lambda a, c=c: c * torch.tanh((a["x"][..., None, :] * a["W_vocab"]).sum(-1) / c),
             alt_name="broadcast multiply and sum, then the cap")


def embedding_family() -> None:
    for slug, lead, V, d in [("n7_V11_d5", (7,), 11, 5), ("b2_n4_V20_d6", (2, 4), 20, 6), ("n1_V3_d4", (1,), 3, 4), ("n9_V4_d3_repeats", (9,), 4, 3)]:
        def make(r: Draw, lead=lead, V=V, d=d) -> Args:
            return {"tokens": r.tokens(V, *lead), "E": r.normal(V, d, scale=0.3)}

        spec(formula="embedding", slug=slug, dims={**lead_dims(lead[:-1], "B"), "n": lead[-1], "V": V, "d_model": d}, config={},
             make=make, oracle=lambda a: F.embedding(a["tokens"].long(), a["E"]), oracle_name="torch.nn.functional.embedding",
             K=(1, "a row copy"), params=("E",), rows=math.prod(lead),
             alt=lambda a: F.one_hot(a["tokens"].long(), a["E"].shape[0]).to(a["E"].dtype) @ a["E"], alt_name="one-hot matmul",
             notes="repeated token ids: grad.E accumulates" if "repeats" in slug else None)
    for n, d, offset in [(7, 12, 0), (1, 5, 0), (4, 9, 100), (16, 16, 0), (5, 1, 0)]:
        spec(formula="positional_sinusoidal", slug=f"n{n}_d{d}" + (f"_offset{offset}" if offset else ""), dims={"n": n, "d_model": d},
             config={"n": n, "d_model": d, "offset": offset}, make=lambda r: {},
             oracle=lambda a, n=n, d=d, o=offset: sinusoidal(n, d, o, a["__dtype__"]),
             oracle_name="explicit torch ops: sin/cos(i / 10000^(2k/d_model))", K=(1, "elementwise"),
             alt=lambda a, n=n, d=d, o=offset: sinusoidal_annotated(n, d, o, a["__dtype__"]), alt_name="i · exp(−2k·ln 10000/d_model)",
             notes="odd d_model: the last column is a sin" if d % 2 else None)
    for n, n_ctx, d, offset in [(5, 8, 6, 0), (1, 3, 5, 0), (4, 10, 7, 3), (8, 8, 4, 0)]:
        def make(r: Draw, n_ctx=n_ctx, d=d) -> Args:
            return {"P": r.normal(n_ctx, d, scale=0.3)}

        spec(formula="positional_learned", slug=f"n{n}_nctx{n_ctx}_d{d}" + (f"_offset{offset}" if offset else ""),
             dims={"n": n, "n_ctx": n_ctx, "d_model": d}, config={"n": n, "offset": offset}, make=make,
             oracle=lambda a, n=n, o=offset: F.embedding(torch.arange(o, o + n), a["P"]), oracle_name="torch.nn.functional.embedding(arange(offset, offset + n), P)",
             K=(1, "a row copy"), alt=lambda a, n=n, o=offset: a["P"][o : o + n], alt_name="slice P[offset : offset + n]")


def rope_family() -> None:
    for conv in ("half", "interleaved"):
        for slug, lead, n, d_k, offset, base in [
            ("n7_dk12", (), 7, 12, 0, 10000),
            ("b2_h3_n5_dk8", (2, 3), 5, 8, 0, 10000),
            ("n1_dk4_offset9", (), 1, 4, 9, 10000),
            ("n4_dk6_offset20_base500", (), 4, 6, 20, 500),
            ("n3_dk2", (), 3, 2, 0, 10000),
        ]:
            def make(r: Draw, lead=lead, n=n, d_k=d_k) -> Args:
                return {"x": r.normal(*lead, n, d_k)}

            spec(formula="rope", slug=f"{conv}_{slug}", dims={**lead_dims(lead, "B H"), "n": n, "d_k": d_k},
                 config={"base": base, "offset": offset, "convention": conv}, make=make,
                 oracle=lambda a, c=conv, b=base, o=offset: ROPE[c](a["x"], b, o),
                 oracle_name="explicit torch ops, HF LLaMA rotate_half" if conv == "half" else "explicit torch ops, Meta LLaMA complex multiply (torch.polar, view_as_complex)",
                 K=(2, "x·cos + rot(x)·sin"),
                 alt=lambda a, c=conv, b=base, o=offset: (rope_half_via_interleaved if c == "half" else rope_interleaved_via_half)(a["x"], b, o),
                 alt_name="the other convention with columns permuted")
    for form in ("relative", "absolute"):
        for H, n, m in ([(1, 1, 1), (3, 5, 5), (4, 6, 6), (6, 4, 4), (3, 3, 7), (12, 4, 4)] if form == "relative" else [(3, 5, 5), (4, 6, 6), (6, 4, 4), (4, 3, 7), (4, 1, 5)]):
            spec(formula="alibi_bias", slug=f"{form}_h{H}_n{n}" + (f"_m{m}" if m != n else ""), dims={"H": H, "n": n, "m": m},
                 config={"H": H, "n": n, "m": m, "form": form}, make=lambda r: {},
                 oracle=lambda a, H=H, n=n, m=m, f=form: alibi_bias(H, n, m, f, a["__dtype__"]),
                 oracle_name="explicit torch ops, slopes from Press et al. get_slopes", K=(1, "one product"),
                 alt=lambda a, H=H, n=n, m=m, f=form: alibi_bias(H, n, m, f, a["__dtype__"], slopes_closed_form(H)),
                 alt_name="closed-form slopes 2^(−8(h+1)/c)",
                 notes=("non-power-of-two H: slopes of 2^⌊log2 H⌋ heads then every other slope of the 2× schedule" if H & (H - 1) else None))


# ---------------------------------------------------------------------------- broadcast masks, partial RoPE, dropout


def attention_mask_broadcast_family() -> None:
    """Masks of another shape than the scores, broadcast by torch's (NumPy's) rules, as SDPA's attn_mask is."""
    sdpa = "explicit torch ops with torch 2 F.scaled_dot_product_attention semantics (torch 1.13 has no fused op); the mask broadcast by torch"
    cases: list[tuple[str, tuple[int, ...], int | None, int, int, int, int, dict[str, Any], tuple[int, ...], str, str | None]] = [
        # slug, batch lead, H (explicit head axis), n, m, d_k, d_v, config, mask shape, mask kind, notes
        ("pad_b2_h3_n4_dk3", (2,), 3, 4, 4, 3, 3, {"causal": True, "mask": "boolean", "mask_shape": "...,1,1,m"}, (2, 1, 1, 4), "leftpad",
         "HF padding mask [B, 1, 1, m] with causal attention: batch 1 is left-padded by 2, so its rows 0 and 1 see no key (output 0, gradient 0)"),
        ("pad_additive_b2_h2_n3_m5_dk4", (2,), 2, 3, 5, 4, 2, {"causal": True, "mask": "additive", "mask_shape": "...,1,1,m"}, (2, 1, 1, 5), "padadd",
         "additive padding mask [B, 1, 1, m] of 0 / −inf (HF's expanded 4-D mask uses the dtype's min instead of −inf)"),
        ("per_head_additive_h3_n4_m5_dk3", (), 3, 4, 5, 3, 3, {"causal": False, "mask": "additive", "mask_shape": "H,n,m"}, (3, 4, 5), "additive",
         "per-head additive mask [H, n, m] with −inf entries; head 0 row 1 sees no key"),
        ("keys_b2_h2_n4_m6_dk3", (2, 2), None, 4, 6, 3, 2, {"causal": True, "mask": "boolean", "mask_shape": "m"}, (6,), "keys",
         "one boolean row [m] for every batch row, head and query (keys 2 and 5 hidden), with the causal mask"),
        ("bias_b2_n5_dk4", (2,), None, 5, 5, 4, 4, {"causal": False, "mask": "additive", "mask_shape": "n,m"}, (5, 5), "finite",
         "a finite additive bias [n, m] shared by the batch (T5-like position bias); its gradient sums over the batch"),
        ("batch_keys_b3_n3_m4_dk2", (3,), None, 3, 4, 2, 3, {"causal": False, "mask": "boolean", "mask_shape": "...,1,m"}, (3, 1, 4), "rowpad",
         "a key mask per batch row [B, 1, m] (no head axis): batch 2 hides every key, so all its rows are 0"),
        ("shared_rows_b2_h3_n4_m4_dk3", (2,), 3, 4, 4, 3, 3, {"causal": False, "mask": "additive", "mask_shape": "1,n,m"}, (1, 4, 4), "finite",
         "one additive [1, n, m] mask for every batch row and head"),
        ("head_keys_b2_h2_n3_m5_dk3", (2,), 2, 3, 5, 3, 3, {"causal": False, "mask": "boolean", "mask_shape": "...,H,1,m"}, (2, 2, 1, 5), "random",
         "a key mask per batch row and head [B, H, 1, m]"),
        ("gqa_rows_b2_h4_hkv2_n4_dk3", (2,), 4, 4, 4, 3, 3, {"causal": True, "H": 4, "H_kv": 2, "mask": "boolean", "mask_shape": "...,1,n,m"}, (2, 1, 4, 4), "random",
         "grouped heads with a per-batch mask [B, 1, n, m] shared by the heads"),
    ]
    for slug, lead, H, n, m, d_k, d_v, config, mshape, kind, notes in cases:
        Hkv = config.get("H_kv")
        groups = 1 if Hkv is None else H // Hkv
        qlead = lead if H is None else (*lead, H)
        kvlead = qlead if Hkv is None else (*lead, Hkv)

        def make(r: Draw, qlead=qlead, kvlead=kvlead, n=n, m=m, d_k=d_k, d_v=d_v, kind=kind, mshape=mshape) -> Args:
            a = {"Q": r.normal(*qlead, n, d_k), "K": r.normal(*kvlead, m, d_k), "V": r.normal(*kvlead, m, d_v)}
            if kind == "leftpad":  # batch 0 unpadded, batch 1 left-padded by 2
                keep = torch.ones(mshape, dtype=torch.int64)
                keep[1, ..., :2] = 0
            elif kind == "padadd":  # batch 0 pads the last key, batch 1 the first two
                keep = torch.ones(mshape, dtype=torch.int64)
                keep[0, ..., -1] = 0
                keep[1, ..., :2] = 0
                a["mask"] = torch.where(keep != 0, torch.zeros((), dtype=F64), torch.full((), NEG_INF, dtype=F64))
                return a
            elif kind == "keys":
                keep = torch.ones(mshape, dtype=torch.int64)
                keep[2] = 0
                keep[5] = 0
            elif kind == "rowpad":
                keep = torch.ones(mshape, dtype=torch.int64)
                keep[0, 0, 1] = 0
                keep[2] = 0
            elif kind == "random":
                keep = (r.uniform(*mshape, lo=0, hi=1) < 0.7).to(torch.int64)
            elif kind == "additive":
                add = r.normal(*mshape)
                add = torch.where(r.uniform(*mshape, lo=0, hi=1) < 0.3, torch.full((), NEG_INF, dtype=F64), add)
                add[0, 1, :] = NEG_INF
                a["mask"] = add
                return a
            elif kind == "finite":
                a["mask"] = r.normal(*mshape)
                return a
            else:
                raise ValueError(kind)
            a["mask"] = keep
            return a

        dims = {**lead_dims(lead, "B"), **({"H": H} if H is not None else {}), **({"H_kv": Hkv} if Hkv is not None else {}), "n": n, "m": m, "d_k": d_k, "d_v": d_v}
        spec(formula="attention", slug=f"mask_{slug}", dims=dims, config=config, make=make,
             oracle=lambda a, c=config, g=groups: attention_conventions(
                 a["Q"], a["K"], a["V"], causal=c.get("causal", True), mask_kind=c["mask"], mask=a["mask"], groups=g),
             oracle_name=sdpa, K=(d_k + m, f"d_k + m = {d_k} + {m}"), notes=notes)


def rope_partial(x: torch.Tensor, base: float, rotary_dims: int, convention: str, offset: int = 0,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """HF GPT-NeoX / Phi partial rotary: the first r = rotary_dims dims rotate with inv_freq over r
    (NeoX rotary_ndims = int(rotary_pct·head_size)), the rest pass through; cos and sin are rows of
    a table gathered by position_ids (HF apply_rotary_pos_emb), default offset … offset + n − 1."""
    n = x.shape[-2]
    pos = torch.arange(offset, offset + n) if position_ids is None else position_ids
    x_rot, x_pass = x[..., :rotary_dims], x[..., rotary_dims:]
    if rotary_dims == 0:
        return x
    table_len = int(pos.max()) + 1
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dims, 2, dtype=x.dtype) / rotary_dims))
    freqs = torch.outer(torch.arange(table_len, dtype=x.dtype), inv_freq)  # [positions, r/2]
    if convention == "half":
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[pos], emb.sin()[pos]  # [..., n, r]
        x1, x2 = x_rot[..., : rotary_dims // 2], x_rot[..., rotary_dims // 2 :]
        rotated = x_rot * cos + torch.cat((-x2, x1), dim=-1) * sin
    else:  # GPT-J: pairs (2i, 2i+1), rotate_every_two
        emb = torch.repeat_interleave(freqs, 2, dim=-1)
        cos, sin = emb.cos()[pos], emb.sin()[pos]
        x1, x2 = x_rot[..., ::2], x_rot[..., 1::2]
        rotated = x_rot * cos + torch.stack((-x2, x1), dim=-1).flatten(-2) * sin
    return torch.cat((rotated, x_pass), dim=-1)


def rope_conventions_family() -> None:
    for slug, lead, n, d_k, cfg, ids in [
        # GPT-NeoX-20B: rotary_pct 0.25 of head size 96 → 24; here 0.25 of 8 → 2
        ("half_r2_n5_dk8", (), 5, 8, {"rotary_dims": 2}, None),
        ("half_r4_b2_h3_n4_dk6", (2, 3), 4, 6, {"rotary_dims": 4, "offset": 3}, None),
        ("interleaved_r4_n5_dk7", (), 5, 7, {"rotary_dims": 4, "convention": "interleaved"}, None),
        ("half_r0_n3_dk4", (), 3, 4, {"rotary_dims": 0}, None),
        ("half_ids_leftpad_b2_n5_dk4", (2,), 5, 4, {"position_ids": True}, [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]),
        ("half_ids_packed_n6_dk6_r4", (), 6, 6, {"position_ids": True, "rotary_dims": 4}, [0, 1, 2, 0, 1, 2]),
        ("interleaved_ids_b2_h2_n3_dk4", (2, 2), 3, 4, {"position_ids": True, "convention": "interleaved"}, [[[5, 6, 7], [5, 6, 7]], [[0, 9, 30], [0, 9, 30]]]),
    ]:
        def make(r: Draw, lead=lead, n=n, d_k=d_k, ids=ids) -> Args:
            a = {"x": r.normal(*lead, n, d_k)}
            if ids is not None:
                a["position_ids"] = torch.tensor(ids, dtype=torch.int64)
            return a

        full = {"base": 10000, "offset": 0, "convention": "half", **cfg}
        rd = cfg.get("rotary_dims", d_k)
        spec(formula="rope", slug=slug, dims={**lead_dims(lead, "B H"), "n": n, "d_k": d_k}, config=cfg, make=make,
             oracle=lambda a, f=full, rd=rd: rope_partial(a["x"], f["base"], rd, f["convention"], f["offset"], a.get("position_ids")),
             oracle_name="explicit torch ops, HF GPT-NeoX partial rotary (cos/sin table rows gathered by position_ids)"
             if full["convention"] == "half" else "explicit torch ops, HF GPT-J rotate_every_two on the first rotary_dim dims",
             K=(2, "x·cos + rot(x)·sin"),
             notes=("rotary_dims 0: no dim rotates (y = x)" if rd == 0 else
                    "left padding: batch 0 has two pad rows at position 0 (HF position_ids = cumsum(attention_mask) − 1, clamped)" if "leftpad" in slug else
                    "two packed sequences of 3 rows, positions restart at 0" if "packed" in slug else None))


def dropout_family() -> None:
    explicit = "explicit torch ops x·mask/(1 − p) (the keep mask drawn with torch.Generator: rand ≥ p)"
    for slug, shape, p in [
        ("p0.1_b2_n3_d5", (2, 3, 5), 0.1),
        ("p0.5_n7", (7,), 0.5),
        ("p0_n4_d3", (4, 3), 0.0),
        ("p0.9_b2_h2_n3_m3", (2, 2, 3, 3), 0.9),
    ]:
        def make(r: Draw, shape=shape, p=p) -> Args:
            return {"x": r.normal(*shape), "keep_mask": (r.uniform(*shape, lo=0, hi=1) >= p).to(torch.int64)}

        spec(formula="dropout", slug=slug, dims={}, config={"p": p}, make=make,
             oracle=lambda a, p=p: a["x"] * a["keep_mask"].to(a["x"].dtype) / (1 - p),
             oracle_name=explicit, K=(2, "1/(1 − p) and one product"))

    # the mask F.dropout itself draws, recovered from its output where x ≠ 0 (x ~ N(0, 1) has no zeros)
    seed, p, shape = 1234, 0.3, (3, 4, 5)

    def f_dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return F.dropout(x, p, training=True)

    def make_f(r: Draw) -> Args:
        x = r.normal(*shape)
        return {"x": x, "keep_mask": (f_dropout(x, p, seed) != 0).to(torch.int64)}

    spec(formula="dropout", slug="p0.3_torch_seed1234_n3_m4_d5", dims={}, config={"p": p}, make=make_f,
         oracle=lambda a: a["x"] * a["keep_mask"].to(a["x"].dtype) / (1 - p),
         oracle_name="explicit torch ops x·mask/(1 − p), the mask recovered from torch.nn.functional.dropout(x, 0.3, training=True) after torch.manual_seed(1234) where x ≠ 0",
         K=(2, "1/(1 − p) and one product"),
         alt=lambda a: f_dropout(a["x"], p, seed), alt_name="torch.nn.functional.dropout itself with the same seed (the same mask)",
         notes="cross-check against PyTorch's own dropout: its mask, its scaling")
    # p = 1: PyTorch drops everything and returns zeros (x·mask/(1 − p) would be 0/0)
    spec(formula="dropout", slug="p1_n3_d4", dims={}, config={"p": 1.0},
         make=lambda r: {"x": r.normal(3, 4), "keep_mask": torch.zeros(3, 4, dtype=torch.int64)},
         oracle=lambda a: F.dropout(a["x"], 1.0, training=True), oracle_name="torch.nn.functional.dropout(x, p=1, training=True): zeros",
         K=(1, "no arithmetic"), notes="p = 1 gives zeros in value and gradient, no NaN")


# ---------------------------------------------------------------------------- extreme magnitudes
# Rows a kernel meets in practice (masked or saturated scores, confident logits) at magnitudes
# where a hand-written kernel's shortcuts break: a running maximum seeded at −10000 instead of
# −inf turns a row entirely below −1e4 into 0/0 (softmax) or a wrong average (attention), and a
# one-pass variance loses everything at a 1e4 offset. PyTorch is exact on all of them. The
# tolerances follow the usual rules (float32: measured against float64 on the same inputs;
# float64: 64·K·u, widened to 4× the measured spread where the conditioning is large: a score
# of −3e4 known to u·3e4 moves a probability by that absolute amount).


def extreme_rows(shape: tuple[int, ...], kind: str) -> Callable[[Draw], torch.Tensor]:
    """Rows of ``shape`` (last axis = a row) for the extreme-magnitude cases:

    - ``below1e4``: every entry below −1e4: rows at −3e4 + N(0,1), −1e5 + N(0,1), −1.2e4 − 50·|N|,
      −3e4 + 1e3·N(0,1) (cycled over the rows);
    - ``below1e4_neginf``: the same with −inf entries (a mask) in every row, each row keeping a
      finite entry (the first row only one);
    - ``pm1e4``: entries ±1e4 + N(0,1) (random signs), so the maximum is near +1e4.
    """

    def make(r: Draw) -> torch.Tensor:
        m = shape[-1]
        rows = r.normal(*shape[:-1], m) if len(shape) > 1 else r.normal(m)
        flat = rows.reshape(-1, m)
        if kind in ("below1e4", "below1e4_neginf"):
            for i in range(flat.shape[0]):
                z = flat[i].clone()
                flat[i] = [z - 3e4, z - 1e5, -1.2e4 - 50 * z.abs(), 1e3 * z - 3e4][i % 4]
            if kind == "below1e4_neginf":
                for i in range(flat.shape[0]):
                    masked = torch.rand(m, generator=r.g, dtype=F64) < 0.5
                    keep = int(torch.randint(0, m, (1,), generator=r.g))
                    masked[keep] = False
                    if i == 0:
                        masked[:] = True
                        masked[keep] = False
                    flat[i] = torch.where(masked, torch.full((), NEG_INF, dtype=F64), flat[i])
        elif kind == "pm1e4":
            sign = torch.where(r.uniform(*flat.shape, lo=0, hi=1) < 0.5, -1.0, 1.0).to(F64)
            flat.copy_(sign * 1e4 + flat)
        else:
            raise ValueError(kind)
        return flat.reshape(shape)

    return make


EXTREME_NOTES = {
    "below1e4": "every row entirely below −1e4 (−3e4, −1e5, −1.2e4, −3e4 ± 1e3): a running max seeded at −10000 gives 0/0",
    "below1e4_neginf": "rows below −1e4 mixed with −inf (masked) entries; the first row has a single finite entry",
    "pm1e4": "logits ±1e4 + N(0,1): the maximum is near +1e4",
}


def extreme_magnitude_family() -> None:
    for formula in ("softmax", "log_softmax", "logsumexp"):
        fn, oname, alt, aname = {
            "softmax": (lambda a: F.softmax(a["x"], -1), "torch.nn.functional.softmax",
                        lambda a: torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values) / torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1, keepdim=True),
                        "explicit exp(x − max)/Σ"),
            "log_softmax": (lambda a: F.log_softmax(a["x"], -1), "torch.nn.functional.log_softmax",
                            lambda a: (a["x"] - a["x"].max(-1, keepdim=True).values) - torch.log(torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1, keepdim=True)),
                            "explicit (x − max) − log Σ exp(x − max)"),
            "logsumexp": (lambda a: torch.logsumexp(a["x"], -1), "torch.logsumexp",
                          lambda a: a["x"].max(-1).values + torch.log(torch.exp(a["x"] - a["x"].max(-1, keepdim=True).values).sum(-1)),
                          "explicit max + log Σ exp(x − max)"),
        }[formula]
        for kind in ("below1e4", "below1e4_neginf"):
            shape = (4, 8)
            spec(formula=formula, slug=f"{kind}_n4_m8", dims={"n": 4, "m": 8}, config={},
                 make=lambda r, shape=shape, kind=kind: {"x": extreme_rows(shape, kind)(r)},
                 oracle=fn, oracle_name=oname, K=(8, "m = 8"), alt=alt, alt_name=aname, notes=EXTREME_NOTES[kind], f32_ulp=True)

    def ce_make(lead: tuple[int, ...], V: int, kind: str) -> Callable[[Draw], Args]:
        def make(r: Draw) -> Args:
            z = extreme_rows((*lead, V), kind)(r)
            if kind == "pm1e4":
                # the target is the row's smallest logit, ~2e4 below the maximum: loss ≈ 2e4
                t = z.argmin(-1)
            else:
                # a finite target: the largest finite entry of a masked row, else a random one
                t = r.tokens(V, *lead)
                finite = torch.isfinite(z)
                t = torch.where(finite.gather(-1, t[..., None])[..., 0], t, z.argmax(-1))
            return {"logits": z, "targets": t}

        return make

    for kind in ("below1e4", "below1e4_neginf", "pm1e4"):
        lead, V = (4,), 10
        spec(formula="cross_entropy", slug=f"{kind}_n4_V10", dims={"n": 4, "V": V}, config={}, make=ce_make(lead, V, kind),
             oracle=lambda a: {"loss": cross_entropy(a["logits"], a["targets"])},
             oracle_name="torch.nn.functional.cross_entropy (mean)", K=(V + 4, f"V + positions averaged = {V} + 4"),
             alt=lambda a: {"loss": cross_entropy_explicit(a["logits"], a["targets"])}, alt_name="explicit logsumexp − picked logit",
             f32_ulp=True, notes=EXTREME_NOTES[kind] + ("; each target is the row's smallest logit (loss ≈ 2e4)" if kind == "pm1e4" else "; targets are finite entries"))

    # attention: scores q·k/√d_k = −3e4 (or −1e5) + O(1) on every row, from q ≈ c_q·1, k ≈ −c_k·1
    for slug, n, m, d_k, causal, score in [
        ("below1e4_n5_dk4_causal", 5, 5, 4, True, 3e4),
        ("below1e4_n4_m6_dk4_noncausal", 4, 6, 4, False, 1e5),
        ("below1e4_n3_m5_dk4_causal_kvcache", 3, 5, 4, True, 3e4),
    ]:
        def make(r: Draw, n=n, m=m, d_k=d_k, score=score) -> Args:
            cq = 100.0
            ck = score * math.sqrt(d_k) / (d_k * cq)  # Σ_c cq·ck / √d_k = score
            return {"Q": cq + 0.01 * r.normal(n, d_k), "K": -ck + 0.01 * r.normal(m, d_k), "V": r.normal(m, d_k)}

        spec(formula="attention", slug=slug, dims={"n": n, "m": m, "d_k": d_k, "d_v": d_k}, config={"causal": causal}, make=make,
             oracle=lambda a, c=causal: attention(a["Q"], a["K"], a["V"], c),
             oracle_name="explicit softmax(Q Kᵀ/√d_k + M) V in torch ops (torch.where zeroes fully masked rows)",
             K=(d_k + m, f"d_k + m = {d_k} + {m}"),
             alt=lambda a, c=causal: attention_via_mha(a["Q"], a["K"], a["V"], c),
             alt_name="nn.MultiheadAttention, H = 1, identity projections",
             f32_ulp=True, notes=f"every score is −{score:.0e} + O(1)" + (" and masked entries are −inf" if causal else "") + ": a running max seeded at −10000 gives 0/0")

    # LayerNorm: rows 1e4 + 1e-6·N(0,1): x − mean cancels 10 digits; a one-pass variance E[x²] − mean² loses them all
    def ln_make(r: Draw) -> Args:
        return {"x": r.normal(3, 8, scale=1e-6, shift=1e4), "gamma": r.normal(8, scale=0.1, shift=1.0), "beta": r.normal(8, scale=0.1)}

    spec(formula="layer_norm", slug="offset1e4_spread1e-6_n3_d8", dims={"n": 3, "d": 8}, config={"eps": 1e-5}, make=ln_make,
         oracle=lambda a: F.layer_norm(a["x"], (a["x"].shape[-1],), a["gamma"], a["beta"], 1e-5),
         oracle_name="torch.nn.functional.layer_norm", K=(8, "d = 8"), params=("gamma", "beta"), rows=3,
         alt=lambda a: layer_norm_explicit(a["x"], a["gamma"], a["beta"], 1e-5), alt_name="explicit biased variance", f32_ulp=True,
         notes="rows 1e4 + 1e-6·N(0,1) (variance 1e-12 ≪ eps): float64 keeps ~6 digits of x − mean; in float32 the spread is below "
               "the spacing at 1e4 (9.8e-4), so the rows are the constant 1e4 and y must be beta")


# ---------------------------------------------------------------------------- blocks


def block_family() -> None:
    fixed = [  # (formula, slug, lead, n, d, H, d_ff, overrides)
        ("n7_d12_h3", (), 7, 12, 3, 20, {}),
        ("b2_n5_d8_h2", (2,), 5, 8, 2, 16, {}),
        ("n1_d8_h2", (), 1, 8, 2, 16, {}),
        ("n6_d12_h4_noncausal", (), 6, 12, 4, 24, {"causal": False}),
        ("relu_n5_d12_h3", (), 5, 12, 3, 20, {"activation": "relu"}),
        ("gelu_tanh_n5_d12_h3", (), 5, 12, 3, 20, {"activation": "gelu_tanh"}),
    ]
    general = [
        ("post_n7_d12_h3", (), 7, 12, 3, 20, {"placement": "post"}),
        ("pre_b2_n5_d8_h2", (2,), 5, 8, 2, 16, {"placement": "pre"}),
        ("llama_n7_d16_h4_kv2", (), 7, 16, 4, 28, {"H_kv": 2, "norm": "rms_norm", "activation": "swiglu", "positions": "rope", "bias": False, "eps": 1e-6}),
        ("alibi_n6_d12_h3", (), 6, 12, 3, 20, {"positions": "alibi"}),
        ("mqa_n5_d16_h4_kv1", (), 5, 16, 4, 24, {"H_kv": 1}),
        ("gqa_b2_n6_d12_h6_kv2", (2,), 6, 12, 6, 20, {"H_kv": 2}),
        ("gqa_post_n5_d16_h4_kv2", (), 5, 16, 4, 24, {"H_kv": 2, "placement": "post"}),
        ("sandwich_n5_d8_h2", (), 5, 8, 2, 16, {"placement": "sandwich"}),
        ("sandwich_rms_swiglu_n5_d8_h2", (), 5, 8, 2, 12, {"placement": "sandwich", "norm": "rms_norm", "activation": "swiglu"}),
        ("parallel_n6_d12_h3", (), 6, 12, 3, 20, {"parallel": True}),
        ("rope_interleaved_n5_d12_h2", (), 5, 12, 2, 20, {"positions": "rope_interleaved"}),
        ("rope_post_n5_d12_h2_base500", (), 5, 12, 2, 20, {"positions": "rope", "placement": "post", "rope_base": 500}),
        ("nobias_relu_n5_d8_h2", (), 5, 8, 2, 16, {"bias": False, "activation": "relu"}),
        ("n1_rope_d8_h2", (), 1, 8, 2, 16, {"positions": "rope"}),
    ]
    rows = [(f, *r) for f in ("block_post_ln", "block_pre_ln") for r in fixed] + [("block", *r) for r in general]
    for formula, slug, lead, n, d, H, d_ff, over in rows:
        placement = {"block_post_ln": "post", "block_pre_ln": "pre"}.get(formula)
        cfg = block_config(H, **({"placement": placement} if placement else {}), **over)
        shapes = block_param_shapes(cfg, d, d_ff)

        def make(r: Draw, lead=lead, n=n, d=d, shapes=shapes) -> Args:
            return {"x": r.normal(*lead, n, d), **r.params(shapes)}

        d_k = d // H
        K, why = block_K(cfg, d, d_k, n, d_ff)
        uses_module = formula != "block"
        hand = lambda a, cfg=cfg: block(a["x"], a, cfg)  # noqa: E731
        mod = lambda a, cfg=cfg: block_module(a["x"], a, cfg)  # noqa: E731
        norm_first = "True" if cfg["placement"] == "pre" else "False"
        spec(formula=formula, slug=slug,
             dims={**lead_dims(lead, "B"), "n": n, "d_model": d, "H": H, "H_kv": cfg["H_kv"], "d_k": d_k, "d_ff": d_ff},
             config=cfg, make=make,
             oracle=mod if uses_module else hand,
             oracle_name=(f"torch.nn.TransformerEncoderLayer(norm_first={norm_first}, dropout=0, batch_first, eval) with mapped weights"
                          if uses_module else "explicit torch ops (HF GPT-2 / LLaMA conventions), cross-checked with nn.TransformerEncoderLayer where it applies"),
             K=(K, why), params=tuple(shapes), rows=math.prod(lead) * n,
             alt=(hand if uses_module else ((lambda a, cfg=cfg: block_alt(a["x"], a, cfg)) if composed_supports(cfg) else None)),
             alt_name="hand-written block" if uses_module else (alt_name_for(cfg) if composed_supports(cfg) else ""),
             notes=("alibi inside attention uses the relative form s_h·(j − i); under a causal mask the absolute form gives the same softmax" if cfg["positions"] == "alibi" else None))


# ---------------------------------------------------------------------------- gpt


GPTS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    # slug: (config, tokens shape)
    "seed_post_ln_V50_d16_h2_L2_n8": (gpt_config(V=50, n_ctx=16, d_model=16, L=2, d_ff=64, H=2, placement="post", positions="sinusoidal", activation="gelu"), (8,)),
    "gpt2_pre_ln_V64_d16_h4_L2_n8": (gpt_config(V=64, n_ctx=16, d_model=16, L=2, d_ff=64, H=4, activation="gelu_tanh"), (8,)),
    "gpt2_pre_ln_b2_V64_d16_h4_L2_n8": (gpt_config(V=64, n_ctx=16, d_model=16, L=2, d_ff=64, H=4, activation="gelu_tanh"), (2, 8)),
    "gpt2_pre_ln_V64_d16_h4_L2_n1": (gpt_config(V=64, n_ctx=16, d_model=16, L=2, d_ff=64, H=4, activation="gelu_tanh"), (1,)),
    "llama_V72_d16_h4_L2_n8": (gpt_config(V=72, n_ctx=16, d_model=16, L=2, d_ff=44, H=4, norm="rms_norm", activation="swiglu", positions="rope", bias=False, tied=False, eps=1e-6), (8,)),
    "alibi_V60_d18_h3_L2_n7": (gpt_config(V=60, n_ctx=16, d_model=18, L=2, d_ff=40, H=3, positions="alibi"), (7,)),
    "gqa_V64_d16_h4_kv2_L2_n8": (gpt_config(V=64, n_ctx=16, d_model=16, L=2, d_ff=48, H=4, H_kv=2), (8,)),
    "sandwich_V50_d16_h2_L2_n8": (gpt_config(V=50, n_ctx=16, d_model=16, L=2, d_ff=48, H=2, placement="sandwich"), (8,)),
    "parallel_V50_d16_h4_L2_n8": (gpt_config(V=50, n_ctx=16, d_model=16, L=2, d_ff=48, H=4, parallel=True), (8,)),
    # Gemma 2's final logit soft cap, at c = 1 so that tanh bends the logits of these weights
    "final_softcap1_V50_d16_h4_L2_n8": (gpt_config(V=50, n_ctx=16, d_model=16, L=2, d_ff=48, H=4, final_softcap=1.0), (8,)),
}


def gpt_dims(cfg: dict[str, Any], lead: tuple[int, ...]) -> dict[str, int]:
    return {**lead_dims(lead[:-1], "B"), "n": lead[-1], "V": cfg["V"], "n_ctx": cfg["n_ctx"], "d_model": cfg["d_model"], "L": cfg["L"],
            "H": cfg["H"], "H_kv": cfg["H_kv"], "d_k": cfg["d_model"] // cfg["H"], "d_ff": cfg["d_ff"]}


def gpt_family() -> None:
    for slug, (cfg, lead) in GPTS.items():
        shapes = gpt_param_shapes(cfg)

        def make(r: Draw, cfg=cfg, lead=lead, shapes=shapes) -> Args:
            return {"tokens": r.tokens(cfg["V"], *lead), "targets": r.tokens(cfg["V"], *lead), **r.params(shapes)}

        bcfg = gpt_block_config(cfg)
        mod_ok = composed_supports(bcfg)
        spec(formula="gpt", slug=slug, dims=gpt_dims(cfg, lead), config=cfg, make=make,
             oracle=lambda a, cfg=cfg: gpt_forward(a, cfg),
             oracle_name="explicit torch ops (F.embedding, hand-written blocks, F.layer_norm, F.cross_entropy), HF GPT-2 / LLaMA conventions",
             K=gpt_K(cfg, lead[-1], math.prod(lead)), params=tuple(shapes), rows=math.prod(lead),
             alt=(lambda a, cfg=cfg: gpt_forward(a, cfg, use_module=True)) if mod_ok else None,
             alt_name=f"blocks as {alt_name_for(bcfg)}, logits via F.linear" if mod_ok else "")
    cfg, _ = GPTS["gpt2_pre_ln_V64_d16_h4_L2_n8"]
    for slug, n0 in [("gpt2_pre_ln_V64_d16_h4_L2_prompt4", 4), ("gpt2_pre_ln_V64_d16_h4_L2_prompt1", 1)]:
        steps = 10
        shapes = gpt_param_shapes(cfg)

        def make(r: Draw, n0=n0, shapes=shapes) -> Args:
            return {"tokens": r.tokens(cfg["V"], n0), **r.params(shapes)}

        gcfg = dict(cfg, steps=steps)
        spec(formula="gpt_generate", slug=slug, dims={**gpt_dims(cfg, (n0,)), "steps": steps}, config=gcfg, make=make,
             oracle=lambda a, steps=steps: dict(zip(("tokens", "step_logits"), greedy(a, a["tokens"], cfg, steps))),
             oracle_name="greedy decoding: full forward of the explicit GPT on the growing sequence, argmax of the last logits",
             K=gpt_K(cfg, n0 + steps, 1, with_loss=False), params=(), generate_steps=steps, gen_cfg=cfg,
             alt_name="teacher-forced single forward with blocks as nn.TransformerEncoderLayer")


def all_specs() -> list[Spec]:
    if not SPECS:
        softmax_family()
        cross_entropy_family()
        cross_entropy_conventions_family()
        cross_entropy_options_family()
        softmax_axis_family()
        norm_options_family()
        linear_options_family()
        matmul_family()
        causal_mask_family()
        attention_family()
        attention_conventions_family()
        mha_family()
        norm_family()
        activation_family()
        linear_family()
        embedding_family()
        rope_family()
        attention_mask_broadcast_family()
        rope_conventions_family()
        dropout_family()
        block_family()
        gpt_family()
        extreme_magnitude_family()
    return SPECS


# ============================================================================ computing a case


@dataclass
class Computed:
    path: str  # relative to the output folder
    write: dict[str, Any]  # keyword arguments of specformer_golden.write_case
    widened: list[tuple[str, float, float]]  # (tensor, K-based atol, observed difference)
    seconds: float
    extra_files: dict[str, bytes] = field(default_factory=dict)


def _cast(a: Args, dtype: torch.dtype) -> Args:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in a.items()}


def _with_dtype(fn: Callable[[Args], Any], dtype: torch.dtype) -> Callable[[Args], Any]:
    """Formulas without float arguments (masks, positions) learn the dtype from __dtype__."""
    def run(a: Args) -> Any:
        return fn({**a, "__dtype__": dtype})  # type: ignore[dict-item]

    return run


def _perturb(a: Args, seed: int) -> Args:
    """Every finite float argument moved by one ulp up or down (random direction)."""
    r = torch.Generator().manual_seed(seed)
    out: Args = {}
    for k in sorted(a):
        v = a[k]
        if not v.is_floating_point():
            out[k] = v
            continue
        up = torch.rand(v.shape, generator=r, dtype=F64) < 0.5
        target = torch.where(up, torch.full((), math.inf, dtype=v.dtype), torch.full((), -math.inf, dtype=v.dtype))
        out[k] = torch.where(torch.isfinite(v), torch.nextafter(v, target), v)
    return out


CROSS_CHECK = 1e-7
"""Module vs explicit computations must agree to 1e-7·s in float64, or the generator stops:
a semantic mismatch is O(1e-3) or more, while rounding (even ill-conditioned) stays far below."""


def _cross_check(name: str, ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor], what: str) -> None:
    for k, v in ref.items():
        d = sg.max_abs_diff(f"{name} {k}", v, other[k])
        s = sg.scale_of(k, v)
        if not d <= CROSS_CHECK * s:
            raise AssertionError(f"{name}: {k} from the oracle and from {what} differ by {d:.3g} (> {CROSS_CHECK}·s = {CROSS_CHECK * s:.3g})")


def _numpy(t: torch.Tensor, dtype: str) -> np.ndarray:
    a = t.detach().numpy()
    if a.dtype.kind == "f":
        return a.astype("<f8" if dtype == "f64" else "<f4")
    return a.astype("<i4")


def _widen_f32_by_ulp(name: str, s: Spec, args: Args, cots64: Args, ref: dict[str, torch.Tensor], tolerance: dict[str, dict[str, Any]]) -> None:
    """Extreme-magnitude float32 cases: torch's float32 kernels are far more accurate here than
    the float32 rule's 1e-5·s assumes of an implementation. An entry of magnitude 1e5 is itself
    only known to one float32 ulp (0.0078), and a correct float32 kernel that rounds an
    intermediate of that magnitude (logsumexp − z_t, exp(x − logsumexp)) makes an error of that
    size. So the tolerance also admits 4× the change of the float64 oracle when every float
    input moves by one float32 ulp (the float64 rule's widening factor): d = max|f64(x ± ulp) −
    f64(x)|, atol = max(atol, 4·d)."""
    moved = sg.case_from_module(_with_dtype(s.oracle, F64), _cast(_perturb(args, stable_seed(name + "/ulp32")), F64), cotangents=cots64)
    pert = {**{f"out.{k}": v for k, v in moved[0].items()}, **{f"grad.{k}": v for k, v in moved[2].items()}}
    for k, t in tolerance.items():
        d = sg.max_abs_diff(f"{name} {k} (one float32 ulp)", ref[k], pert[k])
        if 4 * d > t["atol"]:
            t["reason"] += f"; WIDENED for the magnitude: one float32 ulp of every input moves the float64 result by {d:.3g}, so atol = 4·{d:.3g} = {4 * d:.3g}"
            t["atol"] = 4 * d


def compute_case(s: Spec, dtype: str) -> Computed:
    t0 = time.perf_counter()
    name = s.name(dtype)
    seed = stable_seed(name)
    torch.manual_seed(seed)
    args64 = s.make(Draw(seed))
    tdtype = F64 if dtype == "f64" else torch.float32
    args = _cast(args64, tdtype)  # float32 cases: drawn in float64, rounded to float32
    hi = _cast(args, F64)  # the same (rounded) inputs, exactly, in float64
    if s.generate_steps:
        return _compute_generate(s, dtype, name, seed, args, hi, t0)
    oracle = _with_dtype(s.oracle, tdtype)
    outs, cots, grads = sg.case_from_module(oracle, args, cot_seed=stable_seed(name + "/cot"))
    cots64 = {k: v.to(F64) for k, v in cots.items()}
    ref64 = sg.case_from_module(_with_dtype(s.oracle, F64), hi, cotangents=cots64) if dtype == "f32" else (outs, cots, grads)
    ref = {**{f"out.{k}": v for k, v in ref64[0].items()}, **{f"grad.{k}": v for k, v in ref64[2].items()}}
    seconds: dict[str, dict[str, torch.Tensor]] = {}
    if s.alt is not None:
        o2, _, g2 = sg.case_from_module(_with_dtype(s.alt, F64), hi, cotangents=cots64)
        alt = {**{f"out.{k}": v for k, v in o2.items()}, **{f"grad.{k}": v for k, v in g2.items()}}
        _cross_check(name, ref, alt, s.alt_name)
        seconds[s.alt_name] = alt
    tolerance: dict[str, dict[str, Any]] = {}
    widened: list[tuple[str, float, float]] = []
    stored = {**{f"out.{k}": v for k, v in outs.items()}, **{f"grad.{k}": v for k, v in grads.items()}}
    if dtype == "f32":
        for k, v in stored.items():
            if v.is_floating_point():
                tolerance[k] = sg.tolerance_f32(k, v, ref[k])
        if s.f32_ulp:
            _widen_f32_by_ulp(name, s, args, cots64, ref, tolerance)
    else:
        if any(v.is_floating_point() for v in hi.values()):
            o3, _, g3 = sg.case_from_module(oracle, _perturb(hi, stable_seed(name + "/ulp")), cotangents=cots64)
            seconds["inputs perturbed by one ulp"] = {**{f"out.{k}": v for k, v in o3.items()}, **{f"grad.{k}": v for k, v in g3.items()}}
        for k, v in stored.items():
            if not v.is_floating_point():
                continue
            K, why = s.K
            arg = k[5:] if k.startswith("grad.") else None
            if arg in s.params and s.rows > 1:
                K, why = K + s.rows, f"{why}, + {s.rows} rows summed into this parameter gradient"
            t = sg.tolerance_f64(k, v, K, why, {desc: sec[k] for desc, sec in seconds.items()})
            tolerance[k] = t.entry
            if t.widened:
                widened.append((k, t.bound, t.observed))
    write = dict(
        case=name,
        formula=s.formula,
        config=s.config,
        dims=s.dims,
        dtype=dtype,
        seed=seed,
        inputs={k: _numpy(v, dtype) for k, v in args.items()},
        outputs={k: _numpy(v, dtype) for k, v in outs.items()},
        cotangents={k: _numpy(v, dtype) for k, v in cots.items()},
        grads={k: _numpy(v, dtype) for k, v in grads.items()},
        tolerance=tolerance,
        oracle=s.oracle_name,
        notes=s.notes,
        generator=GENERATOR,
        torch_version=str(torch.__version__),
    )
    return Computed(f"cases/{name}.safetensors", write, widened, time.perf_counter() - t0)


def greedy(p: Args, prompt: torch.Tensor, cfg: dict[str, Any], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding without a cache: each step runs the whole sequence and takes the
    argmax of the last position's logits. Returns (prompt + steps tokens, [steps, V] logits)."""
    toks = prompt.long()
    chosen = []
    for _ in range(steps):
        last = gpt_logits(toks, p, cfg)[-1]
        chosen.append(last)
        toks = torch.cat([toks, last.argmax().reshape(1)])
    return toks, torch.stack(chosen)


def teacher_forced(p: Args, toks: torch.Tensor, n0: int, cfg: dict[str, Any], use_module: bool) -> torch.Tensor:
    """The step logits again from one forward over the final sequence (causality makes
    position n0 − 1 + t see exactly the prefix that step t saw)."""
    return gpt_logits(toks[:-1].long(), p, cfg, use_module)[n0 - 1 :]


def _margin_check(name: str, step_logits: torch.Tensor, tol: dict[str, Any], n0: int) -> tuple[float, list[dict[str, Any]]]:
    """Each chosen token must win by more than 4 tolerances, so any implementation within
    tolerance picks the same tokens. Returns the smallest margin in tolerance units and the
    per-step record (position whose logits chose, token, runner-up, margin)."""
    top2 = step_logits.double().topk(2, dim=-1)
    gap = top2.values[:, 0] - top2.values[:, 1]
    allowed = tol["atol"] + tol["rtol"] * top2.values[:, 0].abs()
    ratio = float((gap / allowed).min())
    if ratio <= 4:
        raise AssertionError(f"{name}: a greedy step wins by only {ratio:.2f} tolerances; choose another seed or prompt")
    record = [
        {"step": t, "position": n0 - 1 + t, "token": int(top2.indices[t, 0]), "runner_up": int(top2.indices[t, 1]), "margin": float(gap[t])}
        for t in range(step_logits.shape[0])
    ]
    return ratio, record


def _compute_generate(s: Spec, dtype: str, name: str, seed: int, args: Args, hi: Args, t0: float) -> Computed:
    cfg, steps = s.gen_cfg, s.generate_steps
    n0 = args["tokens"].shape[-1]
    with torch.no_grad():
        res = s.oracle(args)
        toks, step_logits = res["tokens"], res["step_logits"]
        widened: list[tuple[str, float, float]] = []
        if dtype == "f32":
            exact = teacher_forced(hi, toks, n0, cfg, False)
            if not torch.equal(exact.argmax(-1), toks[n0:]):
                raise AssertionError(f"{name}: float64 logits from the same inputs choose different tokens")
            tol = sg.tolerance_f32("out.step_logits", step_logits, exact)
        else:
            tf = teacher_forced(args, toks, n0, cfg, False)
            _cross_check(name, {"out.step_logits": step_logits}, {"out.step_logits": tf}, "teacher forcing")
            alt = teacher_forced(hi, toks, n0, cfg, True)
            _cross_check(name, {"out.step_logits": step_logits}, {"out.step_logits": alt}, s.alt_name)
            pert = teacher_forced(_perturb(hi, stable_seed(name + "/ulp")), toks, n0, cfg, False)
            t = sg.tolerance_f64("out.step_logits", step_logits, *s.K, {s.alt_name: alt, "inputs perturbed by one ulp": pert})
            tol = t.entry
            if t.widened:
                widened.append(("out.step_logits", t.bound, t.observed))
        ratio, record = _margin_check(name, step_logits, tol, n0)
    write = dict(
        case=name, formula=s.formula, config=s.config, dims=s.dims, dtype=dtype, seed=seed,
        inputs={k: _numpy(v, dtype) for k, v in args.items()},
        outputs={"tokens": _numpy(toks, dtype), "step_logits": _numpy(step_logits, dtype)},
        tolerance={"out.step_logits": tol}, oracle=s.oracle_name,
        notes=f"greedy: every chosen token beats the runner-up by at least {ratio:.3g} tolerances (atol + rtol·|logit|)",
        extra_meta={"steps": record}, generator=GENERATOR, torch_version=str(torch.__version__),
    )
    return Computed(f"cases/{name}.safetensors", write, widened, time.perf_counter() - t0)


# ============================================================================ HF GPT-2 checkpoint

TINY_GPT2 = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.0,
    "bos_token_id": 79,
    "embd_pdrop": 0.0,
    "eos_token_id": 79,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 32,
    "n_embd": 16,
    "n_head": 4,
    "n_inner": None,
    "n_layer": 2,
    "n_positions": 32,
    "resid_pdrop": 0.0,
    "scale_attn_weights": True,
    "summary_activation": None,
    "summary_first_dropout": 0.0,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 80,
}
TINY_PROMPT = [3, 14, 15, 9, 26, 53, 58, 79, 32]  # tokens = first 8, targets = last 8


def gpt_config_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our gpt hyperparameters for a Hugging Face GPT2Config."""
    act = {"gelu_new": "gelu_tanh", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_tanh"}.get(hf.get("activation_function", "gelu_new"))
    if act is None:
        raise ValueError(f"config.json: activation_function {hf.get('activation_function')!r} has no specformer equivalent")
    d = hf["n_embd"]
    return gpt_config(V=hf["vocab_size"], n_ctx=hf["n_positions"], d_model=d, L=hf["n_layer"], d_ff=hf.get("n_inner") or 4 * d,
                      H=hf["n_head"], eps=hf.get("layer_norm_epsilon", 1e-5), activation=act, placement="pre", positions="learned", tied=True)


def make_tiny_gpt2() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A random GPT-2 in the HF checkpoint layout (Conv1D weights (in, out), attn.bias buffers)."""
    hf = TINY_GPT2
    cfg = gpt_config_from_hf(hf)
    p = Draw(stable_seed("checkpoints/tiny-gpt2")).params(gpt_param_shapes(cfg))
    tensors = {k: v.to(torch.float32).numpy() for k, v in p.items()}
    n_pos = hf["n_positions"]
    tril = np.tril(np.ones((n_pos, n_pos), np.float32)).reshape(1, 1, n_pos, n_pos)
    for l in range(hf["n_layer"]):
        tensors[f"h.{l}.attn.bias"] = tril
    return tensors, hf


def load_hf_gpt2(folder: str) -> tuple[Args, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read config.json + model.safetensors of a HF GPT-2; returns (params in our names,
    our config, the HF config, the raw checkpoint tensors)."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        hf = json.load(f)
    tensors, _ = sg.read_safetensors(os.path.join(folder, "model.safetensors"))
    cfg = gpt_config_from_hf(hf)
    want = gpt_param_shapes(cfg)
    p: Args = {}
    for k, v in tensors.items():
        k = k.removeprefix("transformer.")
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers, not parameters
        if k == "lm_head.weight":
            continue  # tied to wte in GPT-2
        if k not in want:
            raise ValueError(f"{folder}: unexpected tensor {k!r} for a GPT-2 checkpoint")
        if tuple(v.shape) != want[k][0]:
            raise ValueError(f"{folder}: {k} has shape {list(v.shape)}, config.json implies {list(want[k][0])}")
        p[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    missing = sorted(set(want) - set(p))
    if missing:
        raise ValueError(f"{folder}: checkpoint lacks {missing}")
    return p, cfg, hf, tensors


def hf_gpt2_logits(raw: dict[str, np.ndarray], hf: dict[str, Any], tokens: list[int]) -> torch.Tensor:
    """GPT2LMHeadModel's forward transcribed literally from Hugging Face's modeling_gpt2.py,
    float64, straight from the checkpoint tensors: Conv1D as addmm(bias, x, weight), the
    causal mask sliced from the stored h.{l}.attn.bias buffer with finfo.min fill, gelu_new."""
    t = {k.removeprefix("transformer."): torch.from_numpy(np.asarray(v, np.float64)) for k, v in raw.items()}
    nx, n_head, eps = hf["n_embd"], hf["n_head"], hf.get("layer_norm_epsilon", 1e-5)
    head_dim = nx // n_head
    ids = torch.tensor(tokens)
    q_len = len(tokens)

    def conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.addmm(b, x.view(-1, x.size(-1)), w).view(*x.shape[:-1], w.shape[1])

    def heads(x: torch.Tensor) -> torch.Tensor:  # (seq, n_embd) -> (n_head, seq, head_dim)
        return x.view(q_len, n_head, head_dim).permute(1, 0, 2)

    def gelu_new(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    h = t["wte.weight"][ids] + t["wpe.weight"][torch.arange(q_len)]
    for l in range(hf["n_layer"]):
        pre = f"h.{l}."
        residual = h
        x = F.layer_norm(h, (nx,), t[pre + "ln_1.weight"], t[pre + "ln_1.bias"], eps)
        query, key, value = conv1d(x, t[pre + "attn.c_attn.weight"], t[pre + "attn.c_attn.bias"]).split(nx, dim=-1)
        query, key, value = heads(query), heads(key), heads(value)
        w = torch.matmul(query, key.transpose(-1, -2)) / torch.full([], value.size(-1) ** 0.5, dtype=value.dtype)
        buf = t.get(pre + "attn.bias")
        if buf is None:  # newer checkpoints drop the non-persistent buffer
            buf = torch.tril(torch.ones(hf["n_positions"], hf["n_positions"])).view(1, 1, hf["n_positions"], hf["n_positions"])
        causal = buf[:, :, 0:q_len, :q_len].bool()[0]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        a = torch.matmul(F.softmax(w, dim=-1), value).permute(1, 0, 2).contiguous().view(q_len, nx)
        h = conv1d(a, t[pre + "attn.c_proj.weight"], t[pre + "attn.c_proj.bias"]) + residual
        residual = h
        x = F.layer_norm(h, (nx,), t[pre + "ln_2.weight"], t[pre + "ln_2.bias"], eps)
        x = conv1d(gelu_new(conv1d(x, t[pre + "mlp.c_fc.weight"], t[pre + "mlp.c_fc.bias"])), t[pre + "mlp.c_proj.weight"], t[pre + "mlp.c_proj.bias"])
        h = residual + x
    h = F.layer_norm(h, (nx,), t["ln_f.weight"], t["ln_f.bias"], eps)
    return h @ t["wte.weight"].T


def checkpoint_case(folder_name: str, p: Args, cfg: dict[str, Any], tokens: list[int], targets: list[int], grads: bool,
                    raw: dict[str, np.ndarray] | None = None, hf: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """A gpt/f32 case from checkpoint weights: logits and loss (and gradients if asked)."""
    name = f"gpt/f32/checkpoint-{folder_name}"
    seed = stable_seed(name)
    args: Args = {"tokens": torch.tensor(tokens), "targets": torch.tensor(targets), **p}
    hi = _cast(args, F64)
    fn = lambda a: gpt_forward(a, cfg)  # noqa: E731
    if grads:
        outs, cots, g = sg.case_from_module(fn, args, cot_seed=stable_seed(name + "/cot"))
        o64, _, g64 = sg.case_from_module(fn, hi, cotangents={k: v.double() for k, v in cots.items()})
    else:
        with torch.no_grad():
            outs, o64 = fn(args), fn(hi)
        cots, g, g64 = {}, {}, {}
    alt = sg.case_from_module(lambda a: gpt_forward(a, cfg, use_module=True), hi, cotangents={k: v.double() for k, v in cots.items()} if grads else None, cot_seed=0)
    _cross_check(name, {f"out.{k}": v for k, v in o64.items()}, {f"out.{k}": v for k, v in alt[0].items()}, "nn.TransformerEncoderLayer blocks")
    if raw is not None and hf is not None:
        _cross_check(name, {"out.logits": o64["logits"]}, {"out.logits": hf_gpt2_logits(raw, hf, tokens)}, "a literal transcription of HF GPT2LMHeadModel")
    tol = {f"out.{k}": sg.tolerance_f32(f"out.{k}", v, o64[k]) for k, v in outs.items()}
    tol.update({f"grad.{k}": sg.tolerance_f32(f"grad.{k}", v, g64[k]) for k, v in g.items()})
    write = dict(
        case=name, formula="gpt", config=cfg, dims=gpt_dims(cfg, (len(tokens),)), dtype="f32", seed=seed,
        inputs={k: _numpy(v, "f32") for k, v in args.items()}, outputs={k: _numpy(v, "f32") for k, v in outs.items()},
        cotangents={k: _numpy(v, "f32") for k, v in cots.items()}, grads={k: _numpy(v, "f32") for k, v in g.items()},
        tolerance=tol, oracle="explicit torch ops on a Hugging Face GPT-2 checkpoint (model.safetensors), cross-checked with nn.TransformerEncoderLayer and a literal HF GPT2LMHeadModel transcription",
        notes=f"weights from checkpoints/{folder_name}/model.safetensors; tokens are a fixed prompt, targets the prompt shifted by one",
        extra_meta={"checkpoint": f"checkpoints/{folder_name}"}, generator=GENERATOR, torch_version=str(torch.__version__),
    )
    return write, name


def compute_checkpoint_case() -> Computed:
    t0 = time.perf_counter()
    tensors, hf = make_tiny_gpt2()
    st = sg.encode_safetensors(tensors, {"format": "pt"})
    cfg_bytes = (json.dumps(hf, indent=2, sort_keys=True) + "\n").encode("utf-8")
    # read the checkpoint back through the same path a real HF GPT-2 would take
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "model.safetensors"), "wb") as f:
            f.write(st)
        with open(os.path.join(tmp, "config.json"), "wb") as f:
            f.write(cfg_bytes)
        p, cfg, hf2, raw = load_hf_gpt2(tmp)
    write, name = checkpoint_case("tiny-gpt2", p, cfg, TINY_PROMPT[:-1], TINY_PROMPT[1:], grads=True, raw=raw, hf=hf2)
    return Computed(f"cases/{name}.safetensors", write, [], time.perf_counter() - t0,
                    {"checkpoints/tiny-gpt2/model.safetensors": st, "checkpoints/tiny-gpt2/config.json": cfg_bytes})


CHECKPOINT_CASE = "gpt/f32/checkpoint-tiny-gpt2"


# ============================================================================ self checks


def self_check() -> None:
    """Cross-checks of the hand-written parts against torch modules and known values, in
    float64, before any case is computed. Any failure stops the generator."""
    r = Draw(stable_seed("self-check"))

    def close(what: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> None:
        d = sg.max_abs_diff(what, a, b)
        if not d <= tol * sg.scale_of(what, b):
            raise AssertionError(f"self-check {what}: differs by {d:.3g}")

    # hand-written GPT block vs nn.TransformerEncoderLayer: post and pre, GELU erf, LayerNorm, causal
    for placement in ("post", "pre"):
        for lead, n in (((2,), 5), ((), 1), ((), 7)):
            cfg = block_config(3, placement=placement)
            p = r.params(block_param_shapes(cfg, 12, 20))
            x = r.normal(*lead, n, 12)
            close(f"block {placement} {lead} n={n}", block(x, p, cfg), block_module(x, p, cfg))
    # GQA: repeat_kv in the block equals nn.MultiheadAttention with KV columns repeated
    cfg = block_config(4, H_kv=2, placement="pre")
    p = r.params(block_param_shapes(cfg, 16, 24))
    x = r.normal(2, 6, 16)
    close("gqa block", block(x, p, cfg), block_module(x, p, cfg))
    # the module-composed block agrees with nn.TransformerEncoderLayer where both apply
    for placement in ("post", "pre"):
        cfg = block_config(4, H_kv=2, placement=placement)
        p = r.params(block_param_shapes(cfg, 16, 24))
        close(f"composed {placement}", block_composed(x, p, cfg), block_module(x, p, cfg))
    # attention formula vs nn.MultiheadAttention with H = 1, identity projections
    for n, m, causal in ((5, 5, True), (3, 8, True), (6, 6, False), (4, 9, False)):
        Q, K, V = r.normal(2, n, 4), r.normal(2, m, 4), r.normal(2, m, 4)
        close(f"attention n={n} m={m} causal={causal}", attention(Q, K, V, causal), attention_via_mha(Q, K, V, causal))
    # mha explicit vs module
    a = {"x": r.normal(2, 5, 12), **{k: r.normal(12, 12) for k in ("W_Q", "W_K", "W_V", "W_O")}, **{k: r.normal(12) for k in ("b_Q", "b_K", "b_V", "b_O")}}
    close("mha", mha_explicit(a, 3, True), mha_module(a, 3, True))
    # fully masked rows: zero output, zero gradient, no NaN
    Q = r.normal(6, 4).requires_grad_(True)
    y = attention(Q, r.normal(3, 4), r.normal(3, 4), True)
    (g,) = torch.autograd.grad(y.sum(), Q)
    assert torch.all(y[:3] == 0) and torch.all(g[:3] == 0) and torch.isfinite(g).all(), "fully masked rows must be 0 without NaN"
    # RoPE: the two conventions are one rotation up to a column permutation; both are rotations
    x = r.normal(3, 5, 8)
    close("rope half vs interleaved", rope_half(x, 10000, 3), rope_half_via_interleaved(x, 10000, 3))
    close("rope norm preserved", rope_half(x, 10000, 3).norm(dim=-1), x.norm(dim=-1))
    inv = 1.0 / 10000 ** (torch.arange(0, 8, 2, dtype=F64) / 8)
    close("rope pair (0, 4) at p = 5", rope_half(x, 10000, 3)[..., 2, 0],
          x[..., 2, 0] * torch.cos(5 * inv[0]) - x[..., 2, 4] * torch.sin(5 * inv[0]))
    # ALiBi slopes: powers of two from the paper for these H
    known = {1: [2**-8], 2: [2**-4, 2**-8], 3: [2**-4, 2**-8, 2**-2], 4: [2**-2, 2**-4, 2**-6, 2**-8],
             6: [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3], 8: [2.0**-k for k in range(1, 9)]}
    for H, s in known.items():
        assert get_slopes(H) == s == slopes_closed_form(H), f"ALiBi slopes for H = {H}: {get_slopes(H)}"
    assert max(abs(a - b) for a, b in zip(get_slopes(12), slopes_closed_form(12))) < 1e-15
    # sinusoid against numpy, odd d_model
    pn = np.array([[math.sin(i / 10000 ** (2 * (c // 2) / 7)) if c % 2 == 0 else math.cos(i / 10000 ** (2 * (c // 2) / 7)) for c in range(7)] for i in range(5)])
    close("sinusoid", sinusoidal(5, 7, 0, F64), torch.from_numpy(pn))
    # causal mask forms agree, including n > m
    for n, m in ((4, 4), (3, 7), (6, 3)):
        assert torch.equal(causal_mask_triu(n, m, F64), causal_mask_where(n, m, F64)), f"causal mask n={n} m={m}"
    # RMSNorm against numpy
    x = r.normal(3, 6)
    gn = r.normal(6)
    xn = x.numpy()
    close("rms_norm", rms_norm(x, gn, 1e-6), torch.from_numpy(xn / np.sqrt((xn**2).mean(-1, keepdims=True) + 1e-6) * gn.numpy()))


# ============================================================================ driver


def select(names: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return names
    glob = any(c in pattern for c in "*?[")
    return [n for n in names if (fnmatch.fnmatchcase(n, pattern) if glob else pattern in n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate specformer golden cases with PyTorch.")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output folder (default: golden/)")
    ap.add_argument("--only", help="case names to generate: a glob (gpt/f32/*) or a substring (layer_norm)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--hf-gpt2", metavar="DIR", help="make a gpt/f32 case from a Hugging Face GPT-2 folder (config.json + model.safetensors)")
    ap.add_argument("--tokens", help="with --hf-gpt2: comma-separated token ids (tokens = all but the last, targets = all but the first)")
    ap.add_argument("--grads", action="store_true", help="with --hf-gpt2: also store cotangents and gradients")
    opt = ap.parse_args(argv)

    if not UNPINNED:
        torch.set_num_threads(1)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.use_deterministic_algorithms(True)

    if opt.hf_gpt2:
        if not opt.tokens:
            ap.error("--hf-gpt2 needs --tokens")
        ids = [int(t) for t in opt.tokens.split(",")]
        if len(ids) < 2:
            ap.error("--tokens needs at least two ids")
        p, cfg, hf, raw = load_hf_gpt2(opt.hf_gpt2)
        write, name = checkpoint_case(os.path.basename(os.path.normpath(opt.hf_gpt2)), p, cfg, ids[:-1], ids[1:], opt.grads, raw, hf)
        path = os.path.join(opt.out, "cases", f"{name}.safetensors")
        sg.write_case(path, **write)
        print(f"wrote {path}")
        return 0

    specs = all_specs()
    jobs: dict[str, Callable[[], Computed]] = {}
    for s in specs:
        for dt in s.dtypes:
            n = s.name(dt)
            if n in jobs:
                raise AssertionError(f"duplicate case name {n}")
            jobs[n] = functools.partial(compute_case, s, dt)
    jobs[CHECKPOINT_CASE] = compute_checkpoint_case
    names = select(sorted(jobs), opt.only)
    if opt.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no case matches {opt.only!r}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    self_check()
    print(f"self-check passed ({time.perf_counter() - t0:.1f} s)")
    computed = []
    for n in names:
        c = jobs[n]()
        computed.append(c)
    # everything computed and cross-checked: now write
    written = set()
    for c in computed:
        path = os.path.join(opt.out, c.path)
        sg.write_case(path, **c.write)
        written.add(os.path.normpath(path))
        for rel, data in c.extra_files.items():
            fp = os.path.join(opt.out, rel)
            os.makedirs(os.path.dirname(fp), exist_ok=True)
            with open(fp, "wb") as f:
                f.write(data)
    if not opt.only:  # a full run owns cases/: drop files of cases that no longer exist
        for dirpath, _, files in os.walk(os.path.join(opt.out, "cases"), topdown=False):
            for fn in files:
                fp = os.path.normpath(os.path.join(dirpath, fn))
                if fn.endswith(".safetensors") and fp not in written:
                    os.remove(fp)
                    print(f"removed stale {fp}")
            if not os.listdir(dirpath):
                os.rmdir(dirpath)
    manifest = sg.write_manifest(opt.out)
    elapsed = time.perf_counter() - t0

    counts: dict[tuple[str, str], int] = {}
    for c in computed:
        key = (c.write["formula"], c.write["dtype"])
        counts[key] = counts.get(key, 0) + 1
    print(f"{'formula':24s} f64  f32")
    for f in sorted({k[0] for k in counts}):
        print(f"{f:24s} {counts.get((f, 'f64'), 0):3d}  {counts.get((f, 'f32'), 0):3d}")
    total = sum(e["bytes"] for e in manifest["cases"])
    ck = sum(os.path.getsize(os.path.join(opt.out, rel)) for c in computed for rel in c.extra_files)
    print(f"{len(computed)} cases written ({len(manifest['cases'])} in manifest), {total / 1e6:.2f} MB of cases + {ck / 1e6:.2f} MB checkpoint, {elapsed:.1f} s")
    wid = [(c.write["case"], k, b, o) for c in computed for k, b, o in c.widened]
    print(f"{len(wid)} float64 tolerances widened by measurement:")
    for case, k, b, o in wid:
        print(f"  {case} {k}: K-based atol {b:.3g}, observed {o:.3g} -> atol {4 * o:.3g} ({4 * o / b:.3g}x)")
    slow = sorted(computed, key=lambda c: -c.seconds)[:3]
    print("slowest: " + ", ".join(f"{c.write['case']} {c.seconds:.2f} s" for c in slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
