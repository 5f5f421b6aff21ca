"""A minimal adapter: softmax and layer_norm in NumPy, served with the specformer Python package.

    pip install ./python        # once (see python/README.md)
    npx specformer verify --impl "python3 examples/numpy/minimal.py"
"""
import numpy as np
from specformer import Formula, serve


def softmax(a, cfg):
    cfg.choice("axis", [-1], -1)  # the last axis only: another is declined
    e = np.exp(a["x"] - a["x"].max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def softmax_backward(a, cot, cfg):  # dx = y ⊙ (dy − Σ dy ⊙ y)
    y = softmax(a, cfg)
    return {"x": y * (cot["y"] - (cot["y"] * y).sum(-1, keepdims=True))}


def layer_norm(a, cfg):  # biased variance, eps inside the square root (PyTorch)
    cfg.choice("bias", [True], True), cfg.choice("normalized_axes", [1], 1)  # others are declined
    x = a["x"]
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + x.dtype.type(cfg.num("eps", 1e-5))) * a["gamma"] + a["beta"]


serve({"softmax": Formula(softmax, softmax_backward), "layer_norm": layer_norm}, name="minimal numpy")
