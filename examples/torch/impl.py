#!/usr/bin/python3
"""PyTorch as an implementation under test: every registry formula from torch.nn modules,
torch.nn.functional and autograd, speaking specformer's process protocol.

specformer runs it as ``/usr/bin/python3 examples/torch/impl.py`` (see docs/PROTOCOL.md and
examples/torch/README.md). It is the *control* of the laws: PyTorch is what users port from, so
every law must pass on it in float64 and float32; a law that fails here has a wrong tolerance.

Forward passes use torch's own modules where they exist (``nn.LayerNorm``, ``nn.Linear``,
``nn.Embedding``, ``nn.MultiheadAttention``, ``F.softmax``, ``F.log_softmax``, ``F.gelu``,
``F.cross_entropy``, ...), called through ``functional_call`` with the request's tensors as
their parameters; what torch 1.13 lacks (RMSNorm, RoPE, ALiBi, SwiGLU, the KV cache, blocks in
all placements, the GPT) is written in explicit torch ops. Backward passes are
``torch.autograd.grad`` of Σ output ⊙ cotangent, never hand-written.

Layout as in docs/NAMES.md: tokens are rows, weights multiply from the right (``x W + b``), head
``h`` is columns ``h·d_k … (h+1)·d_k − 1``, leading batch axes everywhere.

Environment: ``SPECFORMER_TORCH_PLANT=running_max_minus_10000`` plants a known kernel bug (the
softmax running maximum starts at −10000 instead of −∞, as in some hand-written C kernels), used
to prove that the extreme-magnitude goldens and laws catch it.
"""
from __future__ import annotations

import json
import math
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.stateless import functional_call  # noqa: E402

torch.set_num_threads(1)

PROTOCOL = 1
PLANT = os.environ.get("SPECFORMER_TORCH_PLANT", "")
PLANTS = ("", "running_max_minus_10000")
NEG_INF = float("-inf")
T = torch.Tensor
Args = Dict[str, T]


try:  # Config (typed getters over a request's hyperparameters) and FormulaError (an error answer)
    from specformer import Config, FormulaError, decode_tensor as decode_array, encode_tensor as encode_array
except ImportError:  # a checkout without `pip install ./python`: the package's sources
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python", "src"))
    from specformer import Config, FormulaError, decode_tensor as decode_array, encode_tensor as encode_array  # noqa: E402


# ============================================================================ requests


def need(a: Args, name: str) -> T:
    if name not in a:
        raise FormulaError(f"missing argument {name} (given: {', '.join(sorted(a)) or 'none'})")
    return a[name]


def check_ids(ids: T, V: int, what: str) -> None:
    if ids.numel() == 0:
        return
    bad = ((ids < 0) | (ids >= V)).nonzero()
    if len(bad) > 0:
        at = [int(i) for i in bad[0]]
        raise FormulaError(f"{what}[{', '.join(map(str, at))}] = {int(ids[tuple(at)])} is not a token id in [0, {V})")


_modules: Dict[Tuple[Any, ...], nn.Module] = {}


def module(key: Tuple[Any, ...], make: Callable[[], nn.Module]) -> nn.Module:
    """One module instance per configuration; its parameters are replaced on every call by
    functional_call, so the instance only carries the hyperparameters."""
    if key not in _modules:
        _modules[key] = make().train()  # dropout is 0; training mode keeps torch 1.13 off its inference fast path (which refuses bias=False)
    return _modules[key]


# ============================================================================ softmax family


def softmax(x: T) -> T:
    if PLANT == "running_max_minus_10000":
        # the planted kernel: m = max(−10000, max_j x_j), so rows below −10000 underflow to 0/0
        m = torch.clamp(x.max(-1, keepdim=True).values, min=-10000.0).detach()
        e = torch.exp(x - m)
        return e / e.sum(-1, keepdim=True)
    return F.softmax(x, dim=-1)


def softmax_axis(x: T, cfg: Config) -> int:
    """The axis hyperparameter (negative, counted from the end) checked against x's rank."""
    axis = cfg.int("axis", -1)
    if axis >= 0 or -axis > x.dim():
        raise FormulaError(f"axis = {axis} must be negative and name one of the {x.dim()} axes of x {list(x.shape)}")
    return axis


def f_softmax(a: Args, cfg: Config) -> Args:
    x = need(a, "x")
    axis = softmax_axis(x, cfg)
    return {"y": softmax(x) if axis == -1 else softmax(x.movedim(axis, -1)).movedim(-1, axis)}


def f_log_softmax(a: Args, cfg: Config) -> Args:
    x = need(a, "x")
    return {"y": F.log_softmax(x, dim=softmax_axis(x, cfg))}


def f_logsumexp(a: Args, cfg: Config) -> Args:
    return {"y": torch.logsumexp(need(a, "x"), dim=-1)}


def f_cross_entropy(a: Args, cfg: Config) -> Args:
    z, t = need(a, "logits"), need(a, "targets")
    if tuple(t.shape) != tuple(z.shape[:-1]):
        raise FormulaError(f"targets have shape {list(t.shape)} but logits {list(z.shape)} need {list(z.shape[:-1])}")
    ignore = cfg.int("ignore_index", -100)
    eps = cfg.num("label_smoothing", 0.0)
    reduction = cfg.choice("reduction", ("mean", "sum", "none"), "mean")
    V = z.shape[-1]
    check_ids(torch.where(t == ignore, torch.zeros_like(t), t), V, "targets")
    w = need(a, "weight") if cfg.bool("weight", False) else None
    if w is not None and tuple(w.shape) != (V,):
        raise FormulaError(f"weight has shape {list(w.shape)} but logits need [{V}]")
    # nn.CrossEntropyLoss on [positions, V]: mean over the positions whose target is not ignore_index
    # (weighted: divided by Σ weight[target]), their sum, or one loss per position
    ce = module(("ce", ignore, eps, reduction, w is not None), lambda: nn.CrossEntropyLoss(weight=None if w is None else torch.ones(V), ignore_index=ignore, label_smoothing=eps, reduction=reduction))
    loss = functional_call(ce, {} if w is None else {"weight": w.detach()}, (z.reshape(-1, V), t.reshape(-1).long()))
    if reduction == "none":
        loss = loss.reshape(t.shape)
    if w is not None and w.requires_grad:
        # nll_loss does not differentiate the weight: add its gradient (and exactly 0 in value) from
        # the weighted sums written out, l_i = w[t_i]((1 − ε) nll_i) + (ε/V) Σ_c w_c (−log p_ic)
        logp = F.log_softmax(z.detach(), dim=-1)
        keep = t != ignore
        ids = torch.where(keep, t, torch.zeros_like(t)).long()
        per = torch.where(keep, (1 - eps) * w[ids] * -logp.gather(-1, ids[..., None])[..., 0] + (eps / V) * -(logp * w).sum(-1), torch.zeros_like(logp[..., 0]))
        e = per if reduction == "none" else per.sum() if reduction == "sum" else per.sum() / (w[ids] * keep).sum()
        loss = loss + (e - e.detach())
    return {"loss": loss}


# ============================================================================ masks, positions


def causal_allowed(n: int, m: int) -> T:
    """bool [n, m]: query i sees key j iff j ≤ i + (m − n) (bottom-right aligned)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    return j <= i + (m - n)


def f_causal_mask(a: Args, cfg: Config, dtype: torch.dtype) -> Args:
    n = cfg.int("n")
    m = cfg.int("m", n)
    align = cfg.choice("causal_align", ("bottom_right", "top_left"), "bottom_right")
    window = cfg.int("window", 0)
    if n == m and window == 0:
        return {"y": nn.Transformer.generate_square_subsequent_mask(n).to(dtype)}  # torch's own mask
    shift = 0 if align == "top_left" else m - n
    y = torch.triu(torch.full((n, m), NEG_INF, dtype=dtype), diagonal=shift + 1)
    if window > 0:  # keys older than the window: j ≤ i + shift − w
        y = y + torch.tril(torch.full((n, m), NEG_INF, dtype=dtype), diagonal=shift - window)
    return {"y": y}


def alibi_slopes(H: int) -> List[float]:
    """ALiBi head slopes, as in Press et al. (ofirpress/attention_with_linear_biases)."""

    def power_of_2(k: int) -> List[float]:
        start = 2 ** (-(2 ** -(math.log2(k) - 3)))
        return [start * start**i for i in range(k)]

    if math.log2(H).is_integer():
        return power_of_2(H)
    c = 2 ** math.floor(math.log2(H))
    return power_of_2(c) + alibi_slopes(2 * c)[0::2][: H - c]


def alibi_bias(H: int, n: int, m: int, form: str, dtype: torch.dtype) -> T:
    """[H, n, m]: relative s_h·(j − i − (m − n)); absolute s_h·j."""
    if H < 1:
        raise FormulaError(f"H = {H} must be at least 1")
    s = torch.tensor(alibi_slopes(H), dtype=dtype)[:, None, None]
    i = torch.arange(n)[:, None]
    j = torch.arange(m)[None, :]
    dist = (j - i - (m - n)) if form == "relative" else j.expand(n, m)
    return s * dist.to(dtype)[None]


def f_alibi_bias(a: Args, cfg: Config, dtype: torch.dtype) -> Args:
    n = cfg.int("n")
    return {"y": alibi_bias(cfg.int("H"), n, cfg.int("m", n), cfg.choice("form", ("relative", "absolute"), "relative"), dtype)}


def sinusoidal(n: int, d_model: int, offset: int, dtype: torch.dtype) -> T:
    """p[i, 2k] = sin(i / 10000^(2k/d_model)), p[i, 2k+1] = cos(same); i = offset … offset+n−1."""
    pos = torch.arange(offset, offset + n, dtype=dtype)[:, None]
    two_k = torch.arange(0, d_model, 2, dtype=dtype)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=dtype), two_k / d_model)
    y = torch.zeros(n, d_model, dtype=dtype)
    y[:, 0::2] = torch.sin(angle)
    y[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return y


def f_positional_sinusoidal(a: Args, cfg: Config, dtype: torch.dtype) -> Args:
    return {"y": sinusoidal(cfg.int("n"), cfg.int("d_model"), cfg.int("offset", 0), dtype)}


def f_positional_learned(a: Args, cfg: Config) -> Args:
    P = need(a, "P")
    n, offset = cfg.int("n"), cfg.int("offset", 0)
    if offset < 0 or offset + n > P.shape[0]:
        raise FormulaError(f"rows {offset} … {offset + n - 1} are outside P with n_ctx = {P.shape[0]}")
    return {"y": P[offset : offset + n]}


def rope(x: T, base: float, offset: int, convention: str, rotary_dims: Optional[int] = None, position_ids: Optional[T] = None) -> T:
    """Rotate pairs of the first r = rotary_dims dims (default all) by p·base^(−2i/r): ``half``
    pairs (i, i + r/2) as HF LLaMA's rotate_half, ``interleaved`` pairs (2i, 2i+1) as complex
    numbers (Meta LLaMA, RoFormer); dims r … d_k − 1 pass through (HF GPT-NeoX partial rotary).
    Positions are position_ids [..., n] (shared by x's axes between their batch and the rows),
    else offset … offset + n − 1."""
    n, d_k = x.shape[-2], x.shape[-1]
    r = d_k if rotary_dims is None else rotary_dims
    if r % 2 or r < 0 or r > d_k:
        raise FormulaError(f"rope rotates an even number of dims r ≤ d_k = {d_k}, got {r}")
    if r == 0:
        return x * 1
    inv_freq = 1.0 / (base ** (torch.arange(0, r, 2, dtype=x.dtype) / r))
    if position_ids is None:
        t = torch.arange(offset, offset + n, dtype=x.dtype)
    else:
        if position_ids.shape[-1] != n or position_ids.dim() > x.dim() - 1:
            raise FormulaError(f"position_ids has shape {list(position_ids.shape)} but x has {n} rows and shape {list(x.shape)}")
        t = position_ids.to(x.dtype)
        t = t.reshape(*t.shape[:-1], *([1] * (x.dim() - 1 - t.dim())), n)  # [..., 1 (heads), n]
    freqs = t[..., None] * inv_freq  # [..., n, r/2]
    xr, xp = x[..., :r], x[..., r:]
    if convention == "half":
        emb = torch.cat((freqs, freqs), dim=-1)
        x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]
        y = xr * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()
    else:
        xc = torch.view_as_complex(xr.contiguous().reshape(*xr.shape[:-1], r // 2, 2))
        y = torch.view_as_real(xc * torch.polar(torch.ones_like(freqs), freqs)).flatten(-2)
    return torch.cat((y, xp), dim=-1) if r < d_k else y


def f_rope(a: Args, cfg: Config) -> Args:
    conv = cfg.choice("convention", ("half", "interleaved"), "half")
    ids = need(a, "position_ids") if cfg.bool("position_ids", False) else None
    r = cfg.int("rotary_dims") if "rotary_dims" in cfg else None
    return {"y": rope(need(a, "x"), cfg.num("base", 10000), cfg.int("offset", 0), conv, r, ids)}


def f_dropout(a: Args, cfg: Config) -> Args:
    """y = x·m/(1 − p) in explicit ops with the given keep mask (F.dropout draws its own); p = 1 gives zeros."""
    x, keep = need(a, "x"), need(a, "keep_mask")
    p = cfg.num("p", 0.5)
    if not 0 <= p <= 1:
        raise FormulaError(f"dropout: p must lie in [0, 1], got {p}")
    if tuple(keep.shape) != tuple(x.shape):
        raise FormulaError(f"keep_mask has shape {list(keep.shape)} but x has {list(x.shape)}")
    if p == 1:
        return {"y": x * 0}
    return {"y": torch.where(keep != 0, x / (1 - p), torch.zeros((), dtype=x.dtype))}


# ============================================================================ attention


def attention(Q: T, K: T, V: T, causal: bool, bias: Optional[T] = None, *, align: str = "bottom_right", window: int = 0,
              scale: Optional[float] = None, softcap: float = 0.0, mask_kind: str = "none", mask: Optional[T] = None) -> T:
    """softmax(cap(s·Q Kᵀ) + bias + mask + M) V in explicit ops (torch 1.13 has no
    scaled_dot_product_attention): s = scale (default 1/√d_k), cap the soft cap c·tanh(·/c),
    a boolean mask (nonzero = attend) or an additive one, M the causal mask aligned top-left
    (SDPA is_causal) or bottom-right (FlashAttention ≥ 2.1), optionally a sliding window of w keys;
    a query that sees no key gets zero weights and gradients."""
    n, m, d_k = Q.shape[-2], K.shape[-2], Q.shape[-1]
    if K.shape[-1] != d_k:
        raise FormulaError(f"Q has d_k = {d_k} but K has {K.shape[-1]} columns")
    if V.shape[-2] != m:
        raise FormulaError(f"K has m = {m} rows but V has {V.shape[-2]}")
    qk = Q @ K.transpose(-1, -2)
    scores = qk / math.sqrt(d_k) if scale is None else qk * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias
    allowed = torch.ones(scores.shape, dtype=torch.bool)
    if mask_kind != "none":
        if mask is None:
            raise FormulaError(f"mask = {mask_kind} needs a mask argument")
        # a mask of another shape broadcasts against the scores by NumPy rules (SDPA's attn_mask)
        if mask.dim() > scores.dim() or tuple(torch.broadcast_shapes(mask.shape, scores.shape)) != tuple(scores.shape):
            raise FormulaError(f"mask has shape {list(mask.shape)}, which does not broadcast to the scores' {list(scores.shape)}")
        if mask_kind == "boolean":
            allowed = allowed & (mask != 0)
        else:
            scores = scores + mask
    if causal:
        i = torch.arange(n)[:, None] + (0 if align == "top_left" else m - n)
        j = torch.arange(m)[None, :]
        band = j <= i
        if window > 0:
            band = band & (j > i - window)
        allowed = allowed & band
    elif window > 0:
        raise FormulaError("window needs causal = true")
    if bool(allowed.all()) and mask_kind != "additive":
        return softmax(scores) @ V
    scores = scores.masked_fill(~allowed, NEG_INF)
    empty = (scores == NEG_INF).all(dim=-1, keepdim=True)
    if bool(empty.any()):
        zero = torch.zeros((), dtype=scores.dtype)
        # finite scores in empty rows keep softmax and its backward free of NaN; the rows are then zero
        return torch.where(empty, zero, softmax(torch.where(empty, zero, scores))) @ V
    return softmax(scores) @ V


MASK_SHAPES = ("scores", "m", "n,m", "1,m", "1,n,m", "H,n,m", "1,1,m", "H,1,m", "...,1,m", "...,1,n,m", "...,1,1,m", "...,H,1,m")


def f_attention(a: Args, cfg: Config) -> Args:
    Q, K, V = need(a, "Q"), need(a, "K"), need(a, "V")
    if "H_kv" in cfg:
        H, H_kv = cfg.int("H", Q.shape[-3] if Q.dim() >= 3 else 1), cfg.int("H_kv")
        if Q.dim() < 3 or K.dim() < 3 or Q.shape[-3] != H or K.shape[-3] != H_kv or H_kv <= 0 or H % H_kv != 0:
            raise FormulaError(f"grouped heads need Q [..., H={H}, n, d_k] and K, V [..., H_kv={H_kv}, m, ·] with H a multiple of H_kv")
        # HF repeat_kv: query head h uses K/V head h // (H / H_kv)
        K, V = K.repeat_interleave(H // H_kv, dim=-3), V.repeat_interleave(H // H_kv, dim=-3)
    bias = None
    if cfg.bool("alibi", False):
        if Q.dim() < 3:
            raise FormulaError("attention with alibi needs Q shaped [..., H, n, d_k]")
        bias = alibi_bias(cfg.int("H", Q.shape[-3]), Q.shape[-2], K.shape[-2], "relative", Q.dtype)
    scale = cfg.num("scale") if "scale" in cfg else None
    cfg.choice("mask_shape", MASK_SHAPES, "scores")
    y = attention(Q, K, V, cfg.bool("causal", True), bias, align=cfg.choice("causal_align", ("bottom_right", "top_left"), "bottom_right"),
                  window=cfg.int("window", 0), scale=scale, softcap=cfg.num("softcap", 0.0),
                  mask_kind=cfg.choice("mask", ("none", "boolean", "additive"), "none"), mask=a.get("mask"))
    return {"y": y}


def split_heads(t: T, heads: int) -> T:
    """[..., n, heads·d_k] → [..., heads, n, d_k]."""
    if heads < 1 or t.shape[-1] % heads:
        raise FormulaError(f"{t.shape[-1]} columns do not split into H = {heads} heads")
    return t.reshape(*t.shape[:-1], heads, t.shape[-1] // heads).transpose(-2, -3)


def merge_heads(t: T) -> T:
    """[..., H, n, d_k] → [..., n, H·d_k]."""
    t = t.transpose(-2, -3)
    return t.reshape(*t.shape[:-2], -1)


def f_split_heads(a: Args, cfg: Config) -> Args:
    return {"y": split_heads(need(a, "x"), cfg.int("H"))}


def f_merge_heads(a: Args, cfg: Config) -> Args:
    return {"y": merge_heads(need(a, "x"))}


class Attn:
    """Multi-head attention with right-multiplied weights: ``W_Q``, ``W_K``, ``W_V`` ``[d_model, ·]``
    (K and V with H_kv·d_k columns), optional biases, causal mask, positions, KV cache."""

    def __init__(self, cfg: Config, d_model: int):
        self.H = cfg.int("H")
        self.H_kv = cfg.int("H_kv", self.H)
        if self.H < 1 or d_model % self.H:
            raise FormulaError(f"d_model = {d_model} is not divisible by H = {self.H}")
        if self.H_kv < 1 or self.H % self.H_kv:
            raise FormulaError(f"H = {self.H} is not divisible by H_kv = {self.H_kv}")
        self.d_model, self.d_k = d_model, d_model // self.H
        self.causal = cfg.bool("causal", True)
        self.positions = cfg.choice("positions", ("none", "rope", "rope_interleaved", "alibi"), "none")
        self.rope_base = cfg.num("rope_base", 10000)
        self.offset = cfg.int("offset", 0)

    def __call__(self, x: T, W_Q: T, W_K: T, W_V: T, W_O: T, b: Optional[Tuple[T, T, T, T]], past: Optional[Tuple[T, T]]) -> Tuple[T, Optional[T], Optional[T]]:
        d_kv = self.H_kv * self.d_k
        for name, W, cols in (("W_Q", W_Q, self.d_model), ("W_K", W_K, d_kv), ("W_V", W_V, d_kv), ("W_O", W_O, self.d_model)):
            if tuple(W.shape) != (self.d_model, cols):
                raise FormulaError(f"{name} has shape {list(W.shape)}, expected [{self.d_model}, {cols}]")
        if past is None and self.positions in ("none", "alibi"):
            return self.module_path(x, W_Q, W_K, W_V, W_O, b), None, None
        return self.explicit_path(x, W_Q, W_K, W_V, W_O, b, past)

    def kv_index(self) -> T:
        """Columns of [Q | K | V] that give every query head its KV head ⌊h/(H/H_kv)⌋ (HF repeat_kv)."""
        g, H, d_k, d_kv = self.H // self.H_kv, self.H, self.d_k, self.H_kv * self.d_k
        kv = [H * d_k + (h // g) * d_k + c for h in range(H) for c in range(d_k)]
        return torch.tensor(list(range(H * d_k)) + kv + [c + d_kv for c in kv])

    def module_path(self, x: T, W_Q: T, W_K: T, W_V: T, W_O: T, b: Optional[Tuple[T, T, T, T]]) -> T:
        """nn.MultiheadAttention (batch_first, self-attention) with the weights mapped onto it:
        GQA by repeating each KV head's columns for its group (autograd sums them back), ALiBi and
        the causal mask as one additive per-head attn_mask [B·H, n, n]."""
        n, d = x.shape[-2], self.d_model
        W = torch.cat([W_Q, W_K, W_V], 1)
        bias = None if b is None else torch.cat([b[0], b[1], b[2]])
        if self.H_kv != self.H:
            idx = self.kv_index()
            W = W.index_select(1, idx)
            bias = None if bias is None else bias.index_select(0, idx)
        mod = module(("mha", d, self.H, b is not None, x.dtype), lambda: nn.MultiheadAttention(d, self.H, bias=b is not None, batch_first=True, dtype=x.dtype))
        params = {"in_proj_weight": W.T, "out_proj.weight": W_O.T}
        if b is not None:
            params.update({"in_proj_bias": bias, "out_proj.bias": b[3]})
        xb = x.reshape(-1, n, d)
        mask: Optional[T]
        if self.positions == "alibi":
            am = alibi_bias(self.H, n, n, "relative", x.dtype)
            if self.causal:
                am = am.masked_fill(~causal_allowed(n, n), NEG_INF)
            mask = am[None].expand(xb.shape[0], self.H, n, n).reshape(-1, n, n)  # index b·H + h
        else:
            mask = ~causal_allowed(n, n) if self.causal else None
        y, _ = functional_call(mod, params, (xb, xb, xb), {"attn_mask": mask, "need_weights": False})
        return y.reshape(x.shape)

    def explicit_path(self, x: T, W_Q: T, W_K: T, W_V: T, W_O: T, b: Optional[Tuple[T, T, T, T]], past: Optional[Tuple[T, T]]) -> Tuple[T, Optional[T], Optional[T]]:
        """Projections with F.linear, RoPE, the cache concatenated, explicit attention."""
        lin = lambda W, i: F.linear(x, W.T, None if b is None else b[i])  # noqa: E731
        q, k, v = split_heads(lin(W_Q, 0), self.H), split_heads(lin(W_K, 1), self.H_kv), split_heads(lin(W_V, 2), self.H_kv)
        p = 0 if past is None else past[0].shape[-2]
        offset = p if past is not None and self.offset == 0 else self.offset
        if self.positions in ("rope", "rope_interleaved"):
            conv = "half" if self.positions == "rope" else "interleaved"
            q, k = rope(q, self.rope_base, offset, conv), rope(k, self.rope_base, offset, conv)
        if past is not None:
            pk, pv = past
            if tuple(pk.shape) != tuple(k.shape[:-2]) + (p, self.d_k) or tuple(pv.shape) != tuple(pk.shape):
                raise FormulaError(f"past_k {list(pk.shape)} / past_v {list(pv.shape)} do not match keys {list(k.shape)}")
            k, v = torch.cat([pk, k], -2), torch.cat([pv, v], -2)
        g = self.H // self.H_kv
        kr, vr = (k.repeat_interleave(g, dim=-3), v.repeat_interleave(g, dim=-3)) if g > 1 else (k, v)
        n, m = q.shape[-2], k.shape[-2]
        bias = alibi_bias(self.H, n, m, "relative", x.dtype) if self.positions == "alibi" else None
        y = F.linear(merge_heads(attention(q, kr, vr, self.causal, bias)), W_O.T, None if b is None else b[3])
        return y, (k if past is not None else None), (v if past is not None else None)


def f_mha(a: Args, cfg: Config) -> Args:
    x = need(a, "x")
    att = Attn(cfg, x.shape[-1])
    b = (need(a, "b_Q"), need(a, "b_K"), need(a, "b_V"), need(a, "b_O")) if cfg.bool("bias", True) else None
    past = (need(a, "past_k"), need(a, "past_v")) if cfg.bool("kv_cache", False) else None
    y, k, v = att(x, need(a, "W_Q"), need(a, "W_K"), need(a, "W_V"), need(a, "W_O"), b, past)
    return {"y": y} if past is None else {"y": y, "k": k, "v": v}


# ============================================================================ norms, linear, FFN


def layer_norm(x: T, gamma: T, beta: Optional[T], eps: float, k: int = 1) -> T:
    """nn.LayerNorm over the last k axes (biased variance, ε inside the square root); without β,
    F.layer_norm with bias=None (torch 1.13's nn.LayerNorm has no bias=False)."""
    ns = tuple(x.shape[-k:]) if 1 <= k <= x.dim() else None
    if ns is None:
        raise FormulaError(f"normalized_axes = {k} must be from 1 to the rank of x {list(x.shape)}")
    if tuple(gamma.shape) != ns or (beta is not None and tuple(beta.shape) != ns):
        raise FormulaError(f"gamma {list(gamma.shape)}{'' if beta is None else f' and beta {list(beta.shape)}'} must have shape {list(ns)}")
    if beta is None:
        return F.layer_norm(x, ns, gamma, None, eps)
    mod = module(("ln", ns, eps, x.dtype), lambda: nn.LayerNorm(ns, eps=eps, dtype=x.dtype))
    return functional_call(mod, {"weight": gamma, "bias": beta}, (x,))


def rms_norm(x: T, gamma: T, eps: float) -> T:
    """HF LlamaRMSNorm: γ · x · rsqrt(mean(x²) + ε) (torch 1.13 has no nn.RMSNorm)."""
    return gamma * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def f_layer_norm(a: Args, cfg: Config) -> Args:
    beta = need(a, "beta") if cfg.bool("bias", True) else None
    return {"y": layer_norm(need(a, "x"), need(a, "gamma"), beta, cfg.num("eps", 1e-5), cfg.int("normalized_axes", 1))}


def f_rms_norm(a: Args, cfg: Config) -> Args:
    return {"y": rms_norm(need(a, "x"), need(a, "gamma"), cfg.num("eps", 1e-6))}


ACT: Dict[str, Callable[[T], T]] = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def unary(fn: Callable[[T], T]) -> Callable[[Args, Config], Args]:
    return lambda a, cfg: {"y": fn(need(a, "x"))}


def linear(x: T, W: T, b: Optional[T]) -> T:
    """nn.Linear with weight Wᵀ (our W is [d_in, d_out], torch's weight [d_out, d_in])."""
    if x.shape[-1] != W.shape[0]:
        raise FormulaError(f"x has {x.shape[-1]} features but W has {W.shape[0]} rows ({list(W.shape)})")
    mod = module(("linear", W.shape[0], W.shape[1], b is not None, x.dtype), lambda: nn.Linear(W.shape[0], W.shape[1], bias=b is not None, dtype=x.dtype))
    params = {"weight": W.T} if b is None else {"weight": W.T, "bias": b}
    return functional_call(mod, params, (x,))


def f_linear(a: Args, cfg: Config) -> Args:
    return {"y": linear(need(a, "x"), need(a, "W"), need(a, "b") if cfg.bool("bias", True) else None)}


def batch_axes(cfg: Config, key: str) -> Optional[List[str]]:
    """A matmul batch hyperparameter as a list of dims ("B,1" → ["B", "1"]); None for "..." (any)."""
    v = cfg.get(key, "...")
    items = [] if str(v).strip() in ("", "none") else [p for p in str(v).replace(",", " ").split()]
    return None if items == ["..."] else items


def f_matmul(a: Args, cfg: Config) -> Args:
    """torch.matmul: batch axes broadcast, a 1-D operand a row (a) or column (b) vector."""
    x, y = need(a, "a"), need(a, "b")
    vec = cfg.choice("vector", ("none", "a", "b", "both"), "none")
    for name, t, is_vec, key in (("a", x, vec in ("a", "both"), "a_batch"), ("b", y, vec in ("b", "both"), "b_batch")):
        want = batch_axes(cfg, key)
        if is_vec and t.dim() != 1:
            raise FormulaError(f"vector = {vec}: {name} must be 1-D, got {list(t.shape)}")
        if not is_vec and (t.dim() < 2 or (want is not None and t.dim() != len(want) + 2)):
            raise FormulaError(f"{name} has shape {list(t.shape)} but {key} = {cfg.get(key, '...')!r} needs {'at least 2' if want is None else len(want) + 2} axes")
    return {"y": torch.matmul(x, y)}


def ffn(x: T, W_1: T, b_1: Optional[T], W_2: T, b_2: Optional[T], activation: str) -> T:
    return linear(ACT[activation](linear(x, W_1, b_1)), W_2, b_2)


def swiglu(x: T, W_gate: T, W_up: T, W_down: T) -> T:
    """(silu(x W_gate) ⊙ x W_up) W_down, as HF LlamaMLP."""
    return linear(F.silu(linear(x, W_gate, None)) * linear(x, W_up, None), W_down, None)


def f_ffn(a: Args, cfg: Config) -> Args:
    act = cfg.choice("activation", tuple(ACT), "gelu")
    return {"y": ffn(need(a, "x"), need(a, "W_1"), a.get("b_1"), need(a, "W_2"), a.get("b_2"), act)}


def f_swiglu(a: Args, cfg: Config) -> Args:
    return {"y": swiglu(need(a, "x"), need(a, "W_gate"), need(a, "W_up"), need(a, "W_down"))}


def embedding(tokens: T, E: T) -> T:
    """nn.Embedding with weight E."""
    check_ids(tokens, E.shape[0], "tokens")
    mod = module(("emb", E.shape[0], E.shape[1], E.dtype), lambda: nn.Embedding(E.shape[0], E.shape[1], dtype=E.dtype))
    return functional_call(mod, {"weight": E}, (tokens.long(),))


def f_embedding(a: Args, cfg: Config) -> Args:
    return {"y": embedding(need(a, "tokens"), need(a, "E"))}


def soft_cap(z: T, cfg: Config) -> T:
    """Gemma 2's final_logit_softcapping: c·tanh(z/c); 0 = none."""
    c = cfg.num("final_softcap", 0.0)
    if c < 0:
        raise FormulaError(f"final_softcap must be >= 0 (0 = no cap), got {c}")
    return z if c == 0 else c * torch.tanh(z / c)


def f_logits(a: Args, cfg: Config) -> Args:
    x, W = need(a, "x"), need(a, "W_vocab")
    if x.shape[-1] != W.shape[-1]:
        raise FormulaError(f"x has {x.shape[-1]} features but W_vocab has {W.shape[-1]} columns")
    return {"y": soft_cap(F.linear(x, W), cfg)}  # x W_vocabᵀ: the tied lm_head of HF GPT-2


# ============================================================================ blocks


class Block:
    """One transformer block, Hugging Face GPT-2 parameter names (``p`` without ``h.{l}.``)."""

    def __init__(self, p: Args, cfg: Config, placement: Optional[str], prefix: str = ""):
        self.p, self.prefix = p, prefix
        self.cfg = cfg
        self.eps = cfg.num("eps", 1e-5)
        self.norm = cfg.choice("norm", ("layer_norm", "rms_norm"), "layer_norm") if placement is None else "layer_norm"
        self.placement = placement or cfg.choice("placement", ("post", "pre", "sandwich"), "post")
        self.activation = cfg.choice("activation", ("gelu", "gelu_tanh", "relu", "swiglu"), "gelu")
        self.bias = cfg.bool("bias", True)
        self.parallel = cfg.bool("parallel", False) if placement is None else False
        if self.parallel and self.placement != "pre":
            raise FormulaError("parallel blocks are pre-norm (x + attn(ln_1 x) + mlp(ln_1 x)); placement must be pre")

    def param(self, name: str) -> T:
        if name not in self.p:
            raise FormulaError(f"missing parameter {self.prefix}{name}")
        return self.p[name]

    def opt(self, name: str) -> Optional[T]:
        return self.param(name) if self.bias else None

    def N(self, name: str, x: T) -> T:
        if self.norm == "layer_norm":
            return layer_norm(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), self.eps)
        return rms_norm(x, self.param(f"{name}.weight"), self.eps)

    def A(self, x: T, past: Optional[Tuple[T, T]]) -> Tuple[T, Optional[T], Optional[T]]:
        d = x.shape[-1]
        att = Attn(self.cfg, d)
        d_kv = att.H_kv * att.d_k
        W = self.param("attn.c_attn.weight")
        if tuple(W.shape) != (d, d + 2 * d_kv):
            raise FormulaError(f"attn.c_attn.weight has shape {list(W.shape)}; H = {att.H}, H_kv = {att.H_kv}, d_model = {d} need [{d}, {d + 2 * d_kv}]")
        Wq, Wk, Wv = W[:, :d], W[:, d : d + d_kv], W[:, d + d_kv :]
        b = None
        if self.bias:
            bb = self.param("attn.c_attn.bias")
            b = (bb[:d], bb[d : d + d_kv], bb[d + d_kv :], self.param("attn.c_proj.bias"))
        return att(x, Wq, Wk, Wv, self.param("attn.c_proj.weight"), b, past)

    def M(self, x: T) -> T:
        if self.activation == "swiglu":
            return swiglu(x, self.param("mlp.gate_proj.weight"), self.param("mlp.up_proj.weight"), self.param("mlp.down_proj.weight"))
        return ffn(x, self.param("mlp.c_fc.weight"), self.opt("mlp.c_fc.bias"), self.param("mlp.c_proj.weight"), self.opt("mlp.c_proj.bias"), self.activation)

    def __call__(self, x: T, past: Optional[Tuple[T, T]] = None) -> Tuple[T, Optional[T], Optional[T]]:
        if self.parallel:  # GPT-J: x + attn(ln_1 x) + mlp(ln_1 x)
            h = self.N("ln_1", x)
            a, k, v = self.A(h, past)
            return x + a + self.M(h), k, v
        if self.placement == "post":  # x' = LN_1(x + MHA(x)), y = LN_2(x' + FFN(x'))
            a, k, v = self.A(x, past)
            x1 = self.N("ln_1", x + a)
            return self.N("ln_2", x1 + self.M(x1)), k, v
        if self.placement == "pre":  # x' = x + MHA(LN_1 x), y = x' + FFN(LN_2 x')
            a, k, v = self.A(self.N("ln_1", x), past)
            x1 = x + a
            return x1 + self.M(self.N("ln_2", x1)), k, v
        a, k, v = self.A(self.N("ln_1", x), past)  # sandwich
        x1 = x + self.N("ln_3", a)
        return x1 + self.N("ln_4", self.M(self.N("ln_2", x1))), k, v


def block_formula(placement: Optional[str]) -> Callable[[Args, Config], Args]:
    def f(a: Args, cfg: Config) -> Args:
        past = (need(a, "past_k"), need(a, "past_v")) if cfg.bool("kv_cache", False) else None
        y, k, v = Block(a, cfg, placement)(need(a, "x"), past)
        return {"y": y} if past is None else {"y": y, "k": k, "v": v}

    return f


BLOCK_KEYS = ("H", "H_kv", "eps", "causal", "norm", "placement", "activation", "rope_base", "bias", "parallel")


def f_gpt(a: Args, cfg: Config) -> Args:
    """Embedding (+ positions) → L blocks → (ln_f) → logits = x W_vocabᵀ → cross-entropy; with a
    KV cache: the decoding step (past.{l}.k/v in, present.{l}.k/v out, no loss)."""
    L, n_ctx, d_model = cfg.int("L"), cfg.int("n_ctx"), cfg.int("d_model")
    placement = cfg.choice("placement", ("post", "pre", "sandwich"), "post")
    positions = cfg.choice("positions", ("learned", "sinusoidal", "rope", "rope_interleaved", "alibi", "none"), "learned")
    norm = cfg.choice("norm", ("layer_norm", "rms_norm"), "layer_norm")
    cache = cfg.bool("kv_cache", False)
    tokens = need(a, "tokens")
    if tokens.dim() == 0:
        raise FormulaError("tokens must have at least one axis ([..., n])")
    n = tokens.shape[-1]
    p = need(a, "past.0.k").shape[-2] if cache else 0
    if p + n > n_ctx:
        raise FormulaError(f"positions {p} … {p + n - 1} exceed n_ctx = {n_ctx}")
    wte = need(a, "wte.weight")
    if wte.shape[-1] != d_model:
        raise FormulaError(f"wte.weight has {wte.shape[-1]} columns but d_model = {d_model}")
    x = embedding(tokens, wte)
    if positions == "learned":
        x = x + need(a, "wpe.weight")[p : p + n]
    elif positions == "sinusoidal":
        x = x + sinusoidal(n, d_model, p, wte.dtype)
    raw = {k: cfg[k] for k in BLOCK_KEYS if k in cfg}
    raw["positions"] = positions if positions in ("rope", "rope_interleaved", "alibi") else "none"
    bcfg = Config(raw)
    out: Args = {}
    for l in range(L):
        prefix = f"h.{l}."
        params = {k[len(prefix) :]: v for k, v in a.items() if k.startswith(prefix)}
        past = (need(a, f"past.{l}.k"), need(a, f"past.{l}.v")) if cache else None
        x, k, v = Block(params, bcfg, None, prefix)(x, past)
        if cache:
            out[f"present.{l}.k"], out[f"present.{l}.v"] = k, v
    if placement in ("pre", "sandwich"):
        g = need(a, "ln_f.weight")
        x = layer_norm(x, g, need(a, "ln_f.bias"), cfg.num("eps", 1e-5)) if norm == "layer_norm" else rms_norm(x, g, cfg.num("eps", 1e-5))
    W_vocab = wte if cfg.bool("tied", True) else need(a, "lm_head.weight")
    logits = soft_cap(F.linear(x, W_vocab), cfg)
    res: Args = {"logits": logits}
    if not cache:
        res.update(f_cross_entropy({"logits": logits, "targets": need(a, "targets")}, cfg))
    res.update(out)
    return res


def f_gpt_generate(a: Args, cfg: Config) -> Args:
    """Greedy decoding without a cache: each step runs the whole sequence through ``gpt`` and
    appends the argmax of the last position's logits. Returns the prompt plus ``steps`` tokens
    and the [steps, V] logits that chose them (forward only)."""
    steps = cfg.int("steps")
    raw = {k: v for k, v in cfg.items() if k not in ("steps", "kv_cache", "dtype")}
    toks = need(a, "tokens").long()
    if toks.dim() != 1:
        raise FormulaError(f"gpt_generate takes one prompt [n], got tokens {list(toks.shape)}")
    chosen = []
    for _ in range(steps):
        args = dict(a, tokens=toks, targets=torch.zeros_like(toks))
        last = f_gpt(args, Config(raw))["logits"][-1]
        chosen.append(last)
        toks = torch.cat([toks, last.argmax().reshape(1)])
    V = need(a, "wte.weight").shape[0]
    logits = torch.stack(chosen) if chosen else torch.zeros(0, V, dtype=need(a, "wte.weight").dtype)
    return {"tokens": toks.to(torch.int32), "step_logits": logits}


# The formulas without float arguments take config.dtype.
NO_FLOAT_ARGS: Dict[str, Callable[[Args, Config, torch.dtype], Args]] = {
    "causal_mask": f_causal_mask,
    "alibi_bias": f_alibi_bias,
    "positional_sinusoidal": f_positional_sinusoidal,
}

FORMULAS: Dict[str, Callable[[Args, Config], Args]] = {
    "softmax": f_softmax,
    "logsumexp": f_logsumexp,
    "log_softmax": f_log_softmax,
    "attention": f_attention,
    "split_heads": f_split_heads,
    "merge_heads": f_merge_heads,
    "mha": f_mha,
    "layer_norm": f_layer_norm,
    "rms_norm": f_rms_norm,
    "gelu": unary(ACT["gelu"]),
    "gelu_tanh": unary(ACT["gelu_tanh"]),
    "relu": unary(ACT["relu"]),
    "silu": unary(ACT["silu"]),
    "linear": f_linear,
    "matmul": f_matmul,
    "ffn": f_ffn,
    "swiglu": f_swiglu,
    "embedding": f_embedding,
    "positional_learned": f_positional_learned,
    "rope": f_rope,
    "dropout": f_dropout,
    "logits": f_logits,
    "cross_entropy": f_cross_entropy,
    "block": block_formula(None),
    "block_post_ln": block_formula("post"),
    "block_pre_ln": block_formula("pre"),
    "gpt": f_gpt,
}

# Forward only: the choice of a token is not differentiable.
FORWARD_ONLY: Dict[str, Callable[[Args, Config], Args]] = {"gpt_generate": f_gpt_generate}

# ============================================================================ the wire


DTYPES = {"f64": torch.float64, "f32": torch.float32}
NAMES_OF = {torch.float64: "f64", torch.float32: "f32", torch.int32: "i32", torch.int64: "i32"}


def decode_tensor(obj: Any, where: str) -> T:
    """A wire tensor {"dtype", "shape", "data"} as a torch tensor (decoded by the helper package)."""
    return torch.from_numpy(decode_array(obj, where))


def encode_tensor(t: T, name: str) -> str:
    """JSON text of a tensor (the helper package's encoding); token ids go out as i32."""
    a = t.detach().numpy()
    return encode_array(a.astype(np.int32) if name == "i32" and a.dtype != np.int32 else a)


def encode_named(tensors: Args) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{encode_tensor(v, NAMES_OF[v.dtype])}" for k, v in tensors.items()) + "}"


def request_dtype(inputs: Args, cfg: Config) -> torch.dtype:
    floats = {NAMES_OF[v.dtype] for v in inputs.values() if v.is_floating_point()}
    if "dtype" in cfg:
        d = cfg.choice("dtype", ("f64", "f32"))
        if floats and floats != {d}:
            raise FormulaError(f"config dtype is {d} but float arguments are {', '.join(sorted(floats))}")
        return DTYPES[d]
    if len(floats) > 1:
        raise FormulaError(f"float arguments mix dtypes {', '.join(sorted(floats))}; send one dtype per request")
    return DTYPES[floats.pop()] if floats else torch.float64


def handle(method: str, params: Dict[str, Any]) -> str:
    """The JSON text of a request's result."""
    if method == "hello":
        return json.dumps(
            {
                "name": "pytorch" + (f" (planted bug: {PLANT})" if PLANT else ""),
                "formulas": list(NO_FLOAT_ARGS) + list(FORMULAS) + list(FORWARD_ONLY),
                "backward": list(FORMULAS),
                "dtypes": ["f64", "f32"],
                "protocol": PROTOCOL,
                "shutdown": True,
                "torch": torch.__version__,
            }
        )
    if method == "shutdown":
        return "{}"
    if method not in ("forward", "backward"):
        raise FormulaError(f"unknown method {method!r}")
    formula = params.get("formula")
    raw = params.get("config", {})
    if not isinstance(raw, dict):
        raise FormulaError(f"config must be an object, got {type(raw).__name__}")
    cfg = Config(raw)
    if formula not in ("attention", "causal_mask") and (cfg.get("window") or cfg.get("softcap")):
        raise FormulaError(f"{formula}: this adapter implements window and softcap only in attention and causal_mask")
    if formula != "rope" and (cfg.get("rotary_dims") is not None or cfg.get("position_ids")):
        raise FormulaError(f"{formula}: this adapter implements rotary_dims and position_ids only in rope")
    if formula != "dropout" and cfg.get("dropout"):
        raise FormulaError(f"{formula}: this adapter implements dropout only as the dropout formula")
    inputs = {k: decode_tensor(v, f"input {k}") for k, v in params.get("inputs", {}).items()}
    dtype = request_dtype(inputs, cfg)
    if formula in NO_FLOAT_ARGS:
        if method == "backward":
            raise FormulaError(f"{formula} has no float argument to differentiate")
        with torch.no_grad():
            return '{"outputs":' + encode_named(NO_FLOAT_ARGS[formula](inputs, cfg, dtype)) + "}"
    if formula in FORWARD_ONLY:
        if method == "backward":
            raise FormulaError(f"{formula} has no backward pass (choosing a token is not differentiable)")
        with torch.no_grad():
            return '{"outputs":' + encode_named(FORWARD_ONLY[formula](inputs, cfg)) + "}"
    if formula not in FORMULAS:
        raise FormulaError(f"formula {formula!r} is not implemented here")
    if method == "forward":
        with torch.no_grad():
            return '{"outputs":' + encode_named(FORMULAS[formula](inputs, cfg)) + "}"
    float_args = [k for k, v in inputs.items() if v.is_floating_point()]
    for k in float_args:
        inputs[k].requires_grad_(True)
    outputs = FORMULAS[formula](inputs, cfg)
    cot = {k: decode_tensor(v, f"cotangent {k}") for k, v in params.get("cotangents", {}).items()}
    ys, gs = [], []
    for k, c in cot.items():
        if k not in outputs:
            raise FormulaError(f"cotangent {k} names no output of {formula} (outputs: {', '.join(outputs)})")
        if tuple(c.shape) != tuple(outputs[k].shape):
            raise FormulaError(f"cotangent {k} has shape {list(c.shape)} but output {k} has {list(outputs[k].shape)}")
        if outputs[k].requires_grad:
            ys.append(outputs[k])
            gs.append(c.to(outputs[k].dtype))
    xs = [inputs[k] for k in float_args]
    grads = torch.autograd.grad(ys, xs, gs, allow_unused=True) if ys and xs else [None] * len(xs)
    # an argument the outputs do not depend on (or no cotangent at all) has a zero gradient
    named = {k: (torch.zeros_like(inputs[k]) if g is None else g).detach() for k, g in zip(float_args, grads)}
    return '{"grads":' + encode_named(named) + "}"


def main() -> None:
    if PLANT not in PLANTS:
        sys.stderr.write(f"SPECFORMER_TORCH_PLANT={PLANT!r} is not one of {PLANTS[1:]}\n")
        sys.exit(2)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        req: Any = None
        req_id: Any = None
        try:
            req = json.loads(line)
            req_id = req.get("id")
            text = '{"id":%s,"result":%s}' % (json.dumps(req_id), handle(req.get("method"), req.get("params") or {}))
        except FormulaError as e:
            what = f"{req.get('method')} {req.get('params', {}).get('formula', '')}".strip() if isinstance(req, dict) else "request"
            text = json.dumps({"id": req_id, "error": {"message": f"{what}: {e}"}})
        except Exception as e:  # torch refused the request (a shape it cannot broadcast, ...): say so
            traceback.print_exc(file=sys.stderr)
            what = f"{req.get('method')} {req.get('params', {}).get('formula', '')}".strip() if isinstance(req, dict) else "request"
            text = json.dumps({"id": req_id, "error": {"message": f"{what}: {type(e).__name__}: {e}"}})
        out.write(text + "\n")
        out.flush()
        if isinstance(req, dict) and req.get("method") == "shutdown":
            break


if __name__ == "__main__":
    main()
