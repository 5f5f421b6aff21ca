"""Serve formulas over specformer's process protocol (docs/PROTOCOL.md), so that an adapter is its
math and one call::

    import numpy as np
    from specformer import serve

    def softmax(a, cfg):
        e = np.exp(a["x"] - a["x"].max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    serve({"softmax": softmax})

and ``specformer verify --impl "python3 my_adapter.py"`` checks it. :func:`serve` answers
``hello`` from the formulas it is given, decodes and encodes tensors (row-major, NaN and
infinities as strings, float32 kept float32), turns a :class:`FormulaError` or any exception
into an ``error`` answer that names the request (tracebacks of unexpected exceptions go to
stderr), and exits at end of input or on ``shutdown``.

A formula is a function ``forward(inputs, config)`` returning its outputs (a dict by output
name, or one array, which is output ``y``), or a :class:`Formula` with a ``backward(inputs,
cotangents, config)`` too, returning the gradient of each float argument.

>>> import io, json, numpy as np
>>> def double(a, cfg):
...     return 2 * a["x"]
>>> requests = io.StringIO("\\n".join(json.dumps(r) for r in [
...     {"id": 1, "method": "hello", "params": {"protocol": 1}},
...     {"id": 2, "method": "forward", "params": {"formula": "double", "config": {},
...         "inputs": {"x": {"dtype": "f32", "shape": [3], "data": [1.5, "-Infinity", 0.1]}}}},
...     {"id": 3, "method": "backward", "params": {"formula": "double", "config": {}, "inputs": {}}},
...     {"id": 4, "method": "forward", "params": {"formula": "half", "config": {}, "inputs": {}}},
... ]) + "\\n")
>>> answers = io.StringIO()
>>> serve({"double": double}, name="doubler", stdin=requests, stdout=answers)
>>> for line in answers.getvalue().splitlines(): print(line)
{"id":1,"result":{"name": "doubler", "formulas": ["double"], "backward": [], "dtypes": ["f64", "f32"], "protocol": 1, "shutdown": true}}
{"id":2,"result":{"outputs":{"y":{"dtype":"f32","shape":[3],"data":[3.0,"-Infinity",0.2]}}}}
{"id": 3, "error": {"message": "backward double: this formula has no backward pass here"}}
{"id": 4, "error": {"message": "forward half: formula 'half' is not served here (served: double)"}}
"""
from __future__ import annotations

import json
import math
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, TextIO, Union

import numpy as np

PROTOCOL = 1
"""The protocol version this module speaks."""

Arrays = Dict[str, np.ndarray]
Forward = Callable[[Arrays, "Config"], Union[Mapping[str, Any], np.ndarray]]
Backward = Callable[[Arrays, Arrays, "Config"], Mapping[str, Any]]


class FormulaError(Exception):
    """Bad input to a formula (a missing argument, an unsupported configuration): answered as an
    ``error``, which specformer reports as declined, not as a crash."""


@dataclass(frozen=True)
class Formula:
    """A formula's forward function and, optionally, its backward pass (a vector-Jacobian product:
    the gradient of ``sum(output * cotangent)`` with respect to each float argument)."""

    forward: Forward
    backward: Optional[Backward] = None


class Config(dict):
    """A request's hyperparameters (a dict), with typed getters whose errors name the key.

    >>> cfg = Config({"eps": 1e-5, "causal": True})
    >>> cfg.num("eps"), cfg.bool("causal"), cfg.int("H", 1)
    (1e-05, True, 1)
    >>> cfg.int("eps")
    Traceback (most recent call last):
    ...
    specformer.protocol.FormulaError: hyperparameter eps must be an integer, got 1e-05
    """

    def _get(self, key: str, default: Any) -> Any:
        if key in self:
            return self[key]
        if default is None:
            raise FormulaError(f"hyperparameter {key} is required")
        return default

    def int(self, key: str, default: Optional[int] = None) -> int:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise FormulaError(f"hyperparameter {key} must be an integer, got {v!r}")
        return int(v)

    def num(self, key: str, default: Optional[float] = None) -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise FormulaError(f"hyperparameter {key} must be a number, got {v!r}")
        return float(v)

    def bool(self, key: str, default: Optional[bool] = None) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise FormulaError(f"hyperparameter {key} must be true or false, got {v!r}")
        return v

    def choice(self, key: str, choices: Iterable[str], default: Optional[str] = None) -> str:
        v = self._get(key, default)
        choices = tuple(choices)
        if v not in choices:
            raise FormulaError(f"hyperparameter {key} = {v!r} is not supported here (supported: {', '.join(choices)})")
        return v


DTYPES = {"f64": np.float64, "f32": np.float32, "i32": np.int32}
_NAMES = {np.dtype(np.float64): "f64", np.dtype(np.float32): "f32", np.dtype(np.int32): "i32"}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_tensor(obj: Any, where: str) -> np.ndarray:
    """A wire tensor ``{"dtype", "shape", "data"}`` as an array; bad input is a FormulaError naming ``where``.

    >>> decode_tensor({"dtype": "f64", "shape": [2], "data": [1, "NaN"]}, "input x")
    array([ 1., nan])
    >>> decode_tensor({"dtype": "f64", "shape": [3], "data": [1]}, "input x")
    Traceback (most recent call last):
    ...
    specformer.protocol.FormulaError: input x: data has 1 numbers but shape [3] needs 3
    """
    if not isinstance(obj, dict) or not {"dtype", "shape", "data"} <= obj.keys():
        raise FormulaError(f"{where}: a tensor must be an object with dtype, shape and data")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in DTYPES:
        raise FormulaError(f"{where}: dtype {dtype!r} is not one of f64, f32, i32")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FormulaError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    size = math.prod(shape)
    if not isinstance(data, list) or len(data) != size:
        raise FormulaError(f"{where}: data has {len(data) if isinstance(data, list) else 'no'} numbers but shape {shape} needs {size}")
    if any(type(v) is str for v in data):
        if dtype == "i32":
            raise FormulaError(f"{where}: i32 data cannot hold NaN or infinities")
        try:
            data = [_SPECIAL[v] if type(v) is str else v for v in data]
        except KeyError as e:
            raise FormulaError(f'{where}: data entry {e.args[0]!r} is not a number, "NaN", "Infinity" or "-Infinity"') from None
    # float64 first: float32 values arrive with float64 precision and are rounded once
    arr = np.array(data, dtype=np.float64 if dtype != "i32" else np.int64).reshape(shape)
    if dtype == "i32" and arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
        raise FormulaError(f"{where}: i32 data out of range")
    return arr.astype(DTYPES[dtype])


def encode_tensor(a: Any, where: str = "output") -> str:
    """JSON text of a tensor: floats in their shortest round-trip spelling, non-finite as strings.

    >>> encode_tensor(np.array([[0.1, -0.0]], dtype=np.float32))
    '{"dtype":"f32","shape":[1,2],"data":[0.1,-0.0]}'
    """
    a = np.asarray(a)
    name = _NAMES.get(a.dtype)
    if name is None:
        raise FormulaError(f"{where}: arrays of dtype {a.dtype} cannot be sent (send float64, float32 or int32)")
    flat = a.reshape(-1)
    text = flat.astype(str)  # NumPy's shortest repr per dtype: float32 0.1 is "0.1"
    if name != "i32" and not np.isfinite(flat).all():
        text = text.astype("<U16")
        text[np.isnan(flat)] = '"NaN"'
        text[flat == np.inf] = '"Infinity"'
        text[flat == -np.inf] = '"-Infinity"'
    return '{"dtype":"%s","shape":%s,"data":[%s]}' % (name, json.dumps(list(a.shape), separators=(",", ":")), ",".join(text.tolist()))


def _encode_named(tensors: Mapping[str, Any], what: str) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{encode_tensor(v, f'{what} {k}')}" for k, v in tensors.items()) + "}"


def _request_dtype(inputs: Arrays, cfg: Config) -> Any:
    """config.dtype when given, else the float inputs' dtype (float64 when there are none)."""
    floats = {_NAMES[v.dtype] for v in inputs.values() if v.dtype != np.int32}
    if "dtype" in cfg:
        return DTYPES[cfg.choice("dtype", ("f64", "f32"))]
    if len(floats) > 1:
        raise FormulaError(f"float arguments mix dtypes {', '.join(sorted(floats))}; send one dtype per request")
    return DTYPES[floats.pop()] if floats else np.float64


class _Server:
    def __init__(self, formulas: Mapping[str, Union[Forward, Formula]], name: str, dtypes: Iterable[str], extra: Mapping[str, Any]):
        self.formulas: Dict[str, Formula] = {}
        for f, impl in formulas.items():
            if isinstance(impl, Formula):
                self.formulas[f] = impl
            elif callable(impl):
                self.formulas[f] = Formula(impl)
            else:
                raise TypeError(f"serve: formula {f!r} must be a function or a Formula, got {type(impl).__name__}")
        self.dtypes = list(dtypes)
        bad = [d for d in self.dtypes if d not in ("f64", "f32")]
        if bad or not self.dtypes:
            raise ValueError(f"serve: dtypes must be a non-empty list of 'f64', 'f32', got {self.dtypes}")
        self.hello = {
            "name": name,
            "formulas": list(self.formulas),
            "backward": [f for f, impl in self.formulas.items() if impl.backward is not None],
            "dtypes": self.dtypes,
            "protocol": PROTOCOL,
            "shutdown": True,
            **extra,
        }

    def result(self, method: Any, params: Dict[str, Any]) -> str:
        if method == "hello":
            return json.dumps(self.hello)
        if method == "shutdown":
            return "{}"
        if method not in ("forward", "backward"):
            raise FormulaError(f"unknown method {method!r}")
        formula = params.get("formula")
        impl = self.formulas.get(formula)  # type: ignore[arg-type]
        if impl is None:
            raise FormulaError(f"formula {formula!r} is not served here (served: {', '.join(self.formulas)})")
        cfg = Config(params.get("config") or {})
        inputs = {k: decode_tensor(v, f"input {k}") for k, v in (params.get("inputs") or {}).items()}
        dtype = _request_dtype(inputs, cfg)
        if method == "forward":
            out = impl.forward(inputs, cfg)
            outputs = {"y": out} if not isinstance(out, Mapping) else out
            return '{"outputs":' + _encode_named({k: np.asarray(v, dtype=dtype) if np.asarray(v).dtype.kind == "f" else np.asarray(v) for k, v in outputs.items()}, "output") + "}"
        if impl.backward is None:
            raise FormulaError("this formula has no backward pass here")
        cot = {k: decode_tensor(v, f"cotangent {k}") for k, v in (params.get("cotangents") or {}).items()}
        grads = impl.backward(inputs, cot, cfg)
        floats = {k for k, v in inputs.items() if v.dtype != np.int32}
        missing = sorted(floats - set(grads))
        if missing:
            raise FormulaError(f"the backward pass returned no gradient for {', '.join(missing)}")
        return '{"grads":' + _encode_named({k: np.asarray(g, dtype=dtype) for k, g in grads.items() if k in floats}, "gradient") + "}"


def serve(
    formulas: Mapping[str, Union[Forward, Formula]],
    *,
    name: str = "python adapter",
    dtypes: Iterable[str] = ("f64", "f32"),
    stdin: Optional[TextIO] = None,
    stdout: Optional[TextIO] = None,
    **hello: Any,
) -> None:
    """Answer specformer's requests on ``stdin`` with ``formulas`` until end of input or ``shutdown``.

    ``formulas`` maps formula names (docs/NAMES.md) to a forward function or a :class:`Formula`.
    ``name`` and any extra keyword arguments go into the ``hello`` answer (e.g. ``version="1.2"``).
    """
    server = _Server(formulas, name, dtypes, hello)
    inp = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    np.seterr(all="ignore")  # IEEE semantics: overflow gives inf, 0/0 gives NaN, silently
    for line in inp:
        if not line.strip():
            continue
        req: Any = None
        req_id: Any = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise FormulaError("a request must be a JSON object")
            req_id = req.get("id")
            text = '{"id":%s,"result":%s}' % (json.dumps(req_id), server.result(req.get("method"), req.get("params") or {}))
        except FormulaError as e:
            text = json.dumps({"id": req_id, "error": {"message": f"{_what(req)}: {e}"}})
        except Exception as e:  # a bug in the adapter: answer, and leave the traceback on stderr
            traceback.print_exc(file=sys.stderr)
            text = json.dumps({"id": req_id, "error": {"message": f"{_what(req)}: {type(e).__name__}: {e}"}})
        out.write(text + "\n")
        out.flush()
        if isinstance(req, dict) and req.get("method") == "shutdown":
            break


def _what(req: Any) -> str:
    """``forward softmax``: what a request asked, for error messages."""
    if not isinstance(req, dict):
        return "request"
    params = req.get("params") if isinstance(req.get("params"), dict) else {}
    return f"{req.get('method')} {params.get('formula', '')}".strip()


if __name__ == "__main__":  # python3 -m specformer.protocol runs the examples above
    from specformer._doctest import run_doctests

    import specformer.protocol  # the importable name, as users see it in tracebacks

    sys.exit(run_doctests(specformer.protocol))
