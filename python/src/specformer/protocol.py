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
stderr), and exits at end of input or on ``shutdown``. When specformer offers binary tensors in
``hello`` and the streams are byte streams (the default ``sys.stdin``/``sys.stdout``), tensors
travel as raw little-endian frames after each line instead of JSON numbers (docs/PROTOCOL.md,
"Binary tensors"): same arrays, bit for bit, about a hundred times faster for large ones.

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

import io
import json
import math
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, IO, Iterable, List, Mapping, Optional, Sequence, Union

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
_LE = {"f64": np.dtype("<f8"), "f32": np.dtype("<f4"), "i32": np.dtype("<i4")}


def decode_frame(obj: Any, frames: Sequence[Any], where: str) -> np.ndarray:
    """A binary tensor ``{"dtype", "shape", "frame": k}`` as an array over frame ``k``'s bytes
    (little-endian, row-major); the bits are kept as sent, NaN payloads included.

    >>> decode_frame({"dtype": "f32", "shape": [2], "frame": 0}, [bytearray(b"\\x00\\x00\\xc0\\x7f\\x00\\x00\\x80\\xff")], "input x")
    array([ nan, -inf], dtype=float32)
    >>> decode_frame({"dtype": "f64", "shape": [3, 4], "frame": 0}, [bytearray(80)], "input x")
    Traceback (most recent call last):
    ...
    specformer.protocol.FormulaError: input x: frame 0 has 80 bytes but f64 shape [3, 4] needs 96 (12 × 8)
    """
    if not isinstance(obj, dict) or not {"dtype", "shape", "frame"} <= obj.keys() or "data" in obj:
        raise FormulaError(f"{where}: a binary tensor must be an object with dtype, shape and frame (and no data)")
    dtype, shape, k = obj["dtype"], obj["shape"], obj["frame"]
    if dtype not in DTYPES:
        raise FormulaError(f"{where}: dtype {dtype!r} is not one of f64, f32, i32")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FormulaError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(frames):
        raise FormulaError(f"{where}: frame {k!r} is not the index of a frame that follows the line ({len(frames)} frames)")
    size = math.prod(shape)
    le = _LE[dtype]
    frame = frames[k]
    if len(frame) != size * le.itemsize:
        raise FormulaError(f"{where}: frame {k} has {len(frame)} bytes but {dtype} shape {shape} needs {size * le.itemsize} ({size} × {le.itemsize})")
    return np.frombuffer(frame, dtype=le).reshape(shape).astype(DTYPES[dtype], copy=False)


def frame_of(a: np.ndarray) -> memoryview:
    """The bytes of an array as a frame: little-endian, row-major (a view when it already is)."""
    le = _LE[_NAMES[a.dtype]]
    return memoryview(np.ascontiguousarray(a, dtype=le)).cast("B")


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


def _encode_frame_tensor(a: Any, where: str, frames: List[memoryview]) -> str:
    a = np.asarray(a)
    name = _NAMES.get(a.dtype)
    if name is None:
        raise FormulaError(f"{where}: arrays of dtype {a.dtype} cannot be sent (send float64, float32 or int32)")
    frames.append(frame_of(a))
    return '{"dtype":"%s","shape":%s,"frame":%d}' % (name, json.dumps(list(a.shape), separators=(",", ":")), len(frames) - 1)


def _encode_named(tensors: Mapping[str, Any], what: str, frames: Optional[List[memoryview]] = None) -> str:
    if frames is not None:
        return "{" + ",".join(f"{json.dumps(k)}:{_encode_frame_tensor(v, f'{what} {k}', frames)}" for k, v in tensors.items()) + "}"
    return "{" + ",".join(f"{json.dumps(k)}:{encode_tensor(v, f'{what} {k}')}" for k, v in tensors.items()) + "}"


def decode_ref(obj: Any, kept: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    """A kept-tensor reference ``{"dtype", "shape", "ref": id}``: the array kept under ``id``,
    whose dtype and shape it must restate (docs/PROTOCOL.md, "Kept tensors").

    >>> kept = {"t1": np.zeros((2, 3), dtype="<f4")}
    >>> decode_ref({"dtype": "f32", "shape": [2, 3], "ref": "t1"}, kept, "input W").shape
    (2, 3)
    >>> decode_ref({"dtype": "f32", "shape": [2, 3], "ref": "t2"}, kept, "input W")
    Traceback (most recent call last):
    ...
    specformer.protocol.FormulaError: input W: no kept tensor 't2' (kept: t1); a reference names a tensor that the previous request kept or referenced
    >>> decode_ref({"dtype": "f32", "shape": [3, 2], "ref": "t1"}, kept, "input W")
    Traceback (most recent call last):
    ...
    specformer.protocol.FormulaError: input W: kept tensor 't1' is f32 [2, 3], not f32 [3, 2]
    """
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "ref"}:
        got = sorted(obj) if isinstance(obj, dict) else obj
        raise FormulaError(f'{where}: a kept-tensor reference is {{"dtype", "shape", "ref"}} and nothing else, got keys {got!r}')
    rid = obj["ref"]
    if not isinstance(rid, str) or rid not in kept:
        held = ", ".join(sorted(kept)) or "none"
        raise FormulaError(
            f"{where}: no kept tensor {rid!r} (kept: {held}); a reference names a tensor that the previous request kept or referenced"
        )
    a = kept[rid]
    have = f"{_NAMES[np.dtype(a.dtype).newbyteorder('=')]} {list(a.shape)}"
    want = f"{obj['dtype']} {obj['shape']}"
    if have != want:
        raise FormulaError(f"{where}: kept tensor {rid!r} is {have}, not {want}")
    return a


def _decode_named(
    obj: Any,
    what: str,
    frames: Optional[Sequence[Any]],
    kept: Optional[Mapping[str, np.ndarray]] = None,
    keeping: Optional[Dict[str, np.ndarray]] = None,
) -> Arrays:
    """Tensors of a request; with ``kept`` (kept tensors negotiated) references are resolved and
    every tensor kept or referenced goes into ``keeping``, read-only (it may be read again)."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise FormulaError(f"{what}s must be an object {{name: tensor}}")
    out: Arrays = {}
    for k, v in obj.items():
        where = f"{what} {k}"
        if isinstance(v, dict) and ("ref" in v or "keep" in v) and (kept is None or keeping is None):
            raise FormulaError(f'{where}: "ref" and "keep" need kept tensors, which were not negotiated in hello')
        if kept is not None and keeping is not None and isinstance(v, dict) and "ref" in v:
            a = decode_ref(v, kept, where)
            keeping[v["ref"]] = a
        elif frames is not None and isinstance(v, dict) and "frame" in v:
            a = decode_frame({f: x for f, x in v.items() if f != "keep"}, frames, where)
            if keeping is not None and "keep" in v:
                if not isinstance(v["keep"], str) or not v["keep"]:
                    raise FormulaError(f'{where}: "keep" must be a non-empty string id, got {v["keep"]!r}')
                a.flags.writeable = False
                keeping[v["keep"]] = a
        else:
            a = decode_tensor(v, where)
        out[k] = a
    return out


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
        # kept tensors (docs/PROTOCOL.md "Kept tensors"): None until negotiated in hello
        self.kept: Optional[Dict[str, np.ndarray]] = None
        self.dtypes = list(dtypes)
        bad = [d for d in self.dtypes if d not in ("f64", "f32")]
        if bad or not self.dtypes:
            raise ValueError(f"serve: dtypes must be a non-empty list of 'f64', 'f32', got {self.dtypes}")
        self.hello = {
            "name": name,
            "formulas": list(self.formulas),
            # true when every formula has a backward pass, else the list of those that do
            "backward": True if self.formulas and all(impl.backward is not None for impl in self.formulas.values()) else [f for f, impl in self.formulas.items() if impl.backward is not None],
            "dtypes": self.dtypes,
            "protocol": PROTOCOL,
            "shutdown": True,
            **extra,
        }

    def result(self, method: Any, params: Dict[str, Any], frames: Optional[Sequence[Any]] = None, out_frames: Optional[List[memoryview]] = None) -> str:
        """The JSON text of a request's result; with ``out_frames`` (binary negotiated) tensors go there."""
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
        keeping: Optional[Dict[str, np.ndarray]] = None if self.kept is None else {}
        inputs = _decode_named(params.get("inputs"), "input", frames, self.kept, keeping)
        cot: Arrays = {}
        if method == "backward":
            cot = _decode_named(params.get("cotangents"), "cotangent", frames, self.kept, keeping)
        if keeping is not None:
            self.kept = keeping  # what this request kept or referenced; the rest is dropped
        dtype = _request_dtype(inputs, cfg)
        if method == "forward":
            out = impl.forward(inputs, cfg)
            outputs = {"y": out} if not isinstance(out, Mapping) else out
            return '{"outputs":' + _encode_named({k: np.asarray(v, dtype=dtype) if np.asarray(v).dtype.kind == "f" else np.asarray(v) for k, v in outputs.items()}, "output", out_frames) + "}"
        if impl.backward is None:
            raise FormulaError("this formula has no backward pass here")
        grads = impl.backward(inputs, cot, cfg)
        floats = {k for k, v in inputs.items() if v.dtype != np.int32}
        missing = sorted(floats - set(grads))
        if missing:
            raise FormulaError(f"the backward pass returned no gradient for {', '.join(missing)}")
        return '{"grads":' + _encode_named({k: np.asarray(g, dtype=dtype) for k, g in grads.items() if k in floats}, "gradient", out_frames) + "}"


def serve(
    formulas: Mapping[str, Union[Forward, Formula]],
    *,
    name: str = "python adapter",
    dtypes: Iterable[str] = ("f64", "f32"),
    stdin: Optional[IO[Any]] = None,
    stdout: Optional[IO[Any]] = None,
    binary: bool = True,
    **hello: Any,
) -> None:
    """Answer specformer's requests on ``stdin`` with ``formulas`` until end of input or ``shutdown``.

    ``formulas`` maps formula names (docs/NAMES.md) to a forward function or a :class:`Formula`.
    ``name`` and any extra keyword arguments go into the ``hello`` answer (e.g. ``version="1.2"``).
    Binary tensors are accepted when ``hello`` offers them, ``binary`` is true and both streams
    carry bytes (``sys.stdin``/``sys.stdout`` do, through their ``.buffer``; an ``io.StringIO``
    does not, so a text stream keeps to JSON numbers).
    """
    server = _Server(formulas, name, dtypes, hello)
    inp: Any = sys.stdin if stdin is None else stdin
    out: Any = sys.stdout if stdout is None else stdout
    # byte streams: a text stream's .buffer, or a stream that is bytes already (io.BytesIO, a pipe)
    inb = getattr(inp, "buffer", None) if isinstance(inp, io.TextIOBase) else inp
    outb = getattr(out, "buffer", None) if isinstance(out, io.TextIOBase) else out
    can_binary = binary and inb is not None and outb is not None
    if inb is not None and outb is not None:
        if out is sys.stdout or isinstance(out, io.TextIOBase):
            out.flush()  # nothing written as text may follow bytes written below it
        _serve_bytes(server, inb, outb, can_binary)
        return
    _serve_text(server, inp, out)


def _serve_text(server: "_Server", inp: Any, out: Any) -> None:
    np.seterr(all="ignore")  # IEEE semantics: overflow gives inf, 0/0 gives NaN, silently
    for line in inp:
        if not line.strip():
            continue
        req, text = _answer(server, line, None, None)
        out.write(text + "\n")
        out.flush()
        if isinstance(req, dict) and req.get("method") == "shutdown":
            break


def _answer(server: "_Server", line: Any, frames: Optional[Sequence[Any]], out_frames: Optional[List[memoryview]], parsed: Any = None) -> Any:
    """The parsed request (or None) and the text of its answer line (``parsed``: the line already parsed)."""
    req: Any = None
    req_id: Any = None
    try:
        req = json.loads(line) if parsed is None else parsed
        if not isinstance(req, dict):
            raise FormulaError("a request must be a JSON object")
        req_id = req.get("id")
        result = server.result(req.get("method"), req.get("params") or {}, frames, out_frames)
        declared = ',"frames":%s' % json.dumps([f.nbytes for f in out_frames]) if out_frames else ""
        text = '{"id":%s%s,"result":%s}' % (json.dumps(req_id), declared, result)
    except FormulaError as e:
        text = json.dumps({"id": req_id, "error": {"message": f"{_what(req)}: {e}"}})
    except Exception as e:  # a bug in the adapter: answer, and leave the traceback on stderr
        traceback.print_exc(file=sys.stderr)
        text = json.dumps({"id": req_id, "error": {"message": f"{_what(req)}: {type(e).__name__}: {e}"}})
    else:
        return req, text
    if out_frames is not None:
        out_frames.clear()  # an error answer carries no frames
    return req, text


def _declared_frames(req: Any) -> Optional[List[int]]:
    """The byte counts a request declares in its top-level "frames" (None: it declares none)."""
    if not isinstance(req, dict) or "frames" not in req:
        return None
    fr = req["frames"]
    if not isinstance(fr, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in fr):
        raise FormulaError(f'"frames" must be a list of byte counts, got {fr!r}; the stream cannot be read further')
    return fr


def _read_frame(inb: Any, n: int) -> bytearray:
    """Exactly ``n`` bytes from ``inb`` into a writable buffer (so arrays over it are writable)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = inb.readinto(view[got:])
        if not k:
            raise EOFError(f"input ended inside a binary frame: {got} of {n} bytes arrived")
        got += k
    return buf


def _serve_bytes(server: "_Server", inb: Any, outb: Any, can_binary: bool) -> None:
    np.seterr(all="ignore")  # IEEE semantics: overflow gives inf, 0/0 gives NaN, silently
    negotiated = False
    while True:
        line = inb.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            parsed: Any = json.loads(line)
        except ValueError:
            parsed = None  # _answer parses it again and answers with the error
        frames: Optional[List[bytearray]] = None
        try:
            declared = _declared_frames(parsed)
            if declared is not None:
                # read them even when not negotiated: the stream stays in step, and the tensors
                # that name them are refused (decode_tensor wants "data")
                frames = [_read_frame(inb, n) for n in declared]
        except EOFError as e:
            print(f"specformer.serve: {e}; stopping", file=sys.stderr)
            return
        except FormulaError as e:
            outb.write((json.dumps({"id": parsed.get("id"), "error": {"message": f"{_what(parsed)}: {e}"}}) + "\n").encode())
            outb.flush()
            print(f"specformer.serve: {e}; stopping", file=sys.stderr)
            return
        is_hello = isinstance(parsed, dict) and parsed.get("method") == "hello"
        if is_hello:
            params = parsed.get("params")
            negotiated = can_binary and isinstance(params, dict) and params.get("binary") is True
            server.hello = {k: v for k, v in server.hello.items() if k not in ("binary", "keep")}
            server.kept = None
            if negotiated:
                server.hello["binary"] = True  # from the next request on, tensors travel as frames both ways
                if params.get("keep") is True:
                    server.hello["keep"] = True  # and a request may keep tensors for the next one
                    server.kept = {}
        out_frames: Optional[List[memoryview]] = [] if negotiated and not is_hello else None
        req, text = _answer(server, line, frames if negotiated else None, out_frames, parsed)
        outb.write(text.encode("utf-8") + b"\n")
        for f in out_frames or ():
            outb.write(f)
        outb.flush()
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
