"""Write, read and index specformer golden cases (safetensors files + a JSON manifest).

A golden case is one standard safetensors file (the Hugging Face format): an 8-byte
little-endian header length N, N bytes of UTF-8 JSON header padded with spaces to an 8-byte
boundary, then the raw little-endian C-order tensor bytes. Tensor names:

- ``in.<arg>``   every argument of the formula (inputs and parameters alike),
- ``out.<name>`` every output,
- ``cot.<name>`` the random cotangent given to each differentiable output,
- ``grad.<arg>`` d(sum over outputs of sum(out * cot)) / d arg, for every float argument.

``__metadata__.specformer`` holds a JSON string with provenance: format, case, formula,
config, dims, dtype, seed, torch_version, generator, oracle, tolerance per checked tensor.

The module depends on numpy only; torch tensors are accepted wherever arrays are, and
:func:`case_from_module` (which imports torch lazily) runs a callable and autograd for you.
Import it as ``specformer.golden`` (``pip install ./python``); in the repository,
``golden/specformer_golden.py`` is the same module under its historical name.

Example: write a case for your own formula and read it back.

>>> import tempfile, os, numpy as np
>>> d = tempfile.mkdtemp()
>>> x = np.array([[1.0, 2.0, 3.0]])
>>> y = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
>>> meta = write_case(os.path.join(d, "cases", "softmax", "f64", "n1_m3.safetensors"),
...     case="softmax/f64/n1_m3", formula="softmax", config={}, dims={"n": 1, "m": 3},
...     dtype="f64", seed=0, inputs={"x": x}, outputs={"y": y},
...     tolerance={"out.y": {"rtol": 1e-13, "atol": 1e-13, "reason": "K = m = 3"}},
...     oracle="numpy", torch_version="none")
>>> c = read_case(os.path.join(d, "cases", "softmax", "f64", "n1_m3.safetensors"))
>>> c.meta["case"], sorted(c.tensors), c.outputs["y"].dtype
('softmax/f64/n1_m3', ['in.x', 'out.y'], dtype('float64'))
>>> [e["case"] for e in write_manifest(d)["cases"]]
['softmax/f64/n1_m3']
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

FORMAT = "specformer-golden/1"
"""The value of ``format`` in every case's metadata and in the manifest."""

GENERATOR = "golden/specformer_golden.py 1"

# safetensors dtype tag <-> little-endian numpy dtype
_ST_TO_NP = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NP_TO_ST = {v.newbyteorder("<") if v.itemsize > 1 else v: k for k, v in _ST_TO_NP.items()}

_CASE_DTYPES = {"f64": np.dtype("<f8"), "f32": np.dtype("<f4")}
_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_FORMULA_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_SLUG_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_HEADER = 100_000_000


class GoldenFormatError(ValueError):
    """Raised for a malformed golden file or invalid arguments to the writer; the message
    says which file or tensor and what was wrong."""


# ----------------------------------------------------------------------------- safetensors


def encode_safetensors(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize ``{name: array}`` (+ string metadata) to safetensors bytes.

    Tensors are laid out in sorted name order without holes; the header is compact JSON
    padded with spaces to a multiple of 8 bytes, so equal inputs give equal bytes.

    >>> b = encode_safetensors({"b": np.zeros(2, "<f4"), "a": np.arange(3, dtype="<i4")})
    >>> n = struct.unpack("<Q", b[:8])[0]; n % 8, json.loads(b[8:8 + n])["b"]
    (0, {'dtype': 'F32', 'shape': [2], 'data_offsets': [12, 20]})
    >>> encode_safetensors({"x": np.zeros(2, dtype=complex)})
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: tensor 'x': dtype complex128 cannot be stored in safetensors (supported: F64, F32, F16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)
    """
    header: dict[str, Any] = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise GoldenFormatError(f"__metadata__ entry {k!r}: keys and values must be strings, got {type(v).__name__}")
        header["__metadata__"] = dict(sorted(metadata.items()))
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise GoldenFormatError(f"invalid tensor name {name!r}")
        arr = _as_numpy(tensors[name], name)
        key = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        tag = _NP_TO_ST.get(key)
        if tag is None:
            raise GoldenFormatError(
                f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors (supported: {', '.join(_ST_TO_NP)})"
            )
        raw = np.ascontiguousarray(arr, dtype=_ST_TO_NP[tag]).tobytes(order="C")
        header[name] = {"dtype": tag, "shape": [int(s) for s in arr.shape], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    hbytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    return struct.pack("<Q", len(hbytes)) + hbytes + b"".join(chunks)


def decode_safetensors(data: bytes, where: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes strictly: returns ``(tensors, metadata)``.

    Checks the header length, the JSON, every entry's dtype/shape/offsets, that offsets
    match the shape, and that the tensors tile the buffer with no holes or overlaps.

    >>> decode_safetensors(b"\\x10\\x00\\x00\\x00\\x00\\x00\\x00\\x00{}", "t.safetensors")
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: t.safetensors: header length 16 exceeds the 2 bytes after the 8-byte prefix
    """
    if len(data) < 8:
        raise GoldenFormatError(f"{where}: file is {len(data)} bytes, shorter than the 8-byte header length prefix")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > _MAX_HEADER:
        raise GoldenFormatError(f"{where}: header length {n} exceeds the {len(data) - 8} bytes after the 8-byte prefix")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GoldenFormatError(f"{where}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise GoldenFormatError(f"{where}: header must be a JSON object, got {type(header).__name__}")
    buf = memoryview(data)[8 + n :]
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise GoldenFormatError(f"{where}: __metadata__ must be an object of strings")
    tensors: dict[str, np.ndarray] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise GoldenFormatError(f"{where}: tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        tag, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if tag not in _ST_TO_NP:
            raise GoldenFormatError(f"{where}: tensor {name!r}: unsupported dtype {tag!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise GoldenFormatError(f"{where}: tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= len(buf)
        ):
            raise GoldenFormatError(f"{where}: tensor {name!r}: data_offsets {offs!r} outside the {len(buf)}-byte buffer")
        dt = _ST_TO_NP[tag]
        expect = math.prod(shape) * dt.itemsize
        if offs[1] - offs[0] != expect:
            raise GoldenFormatError(
                f"{where}: tensor {name!r}: data_offsets span {offs[1] - offs[0]} bytes but {tag}{shape} needs {expect}"
            )
        tensors[name] = np.frombuffer(buf[offs[0] : offs[1]], dtype=dt).reshape(shape).copy()
        spans.append((offs[0], offs[1], name))
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            kind = "hole" if b > pos else "overlap"
            raise GoldenFormatError(f"{where}: tensor {name!r} starts at byte {b}, expected {pos} ({kind} in the buffer)")
        pos = e
    if pos != len(buf):
        raise GoldenFormatError(f"{where}: buffer has {len(buf) - pos} trailing bytes not covered by any tensor")
    return tensors, meta


def write_safetensors(path: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """Write a safetensors file (creating parent folders); returns the bytes written."""
    data = encode_safetensors(tensors, metadata)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(tensors as numpy arrays, __metadata__)``."""
    with open(path, "rb") as f:
        return decode_safetensors(f.read(), path)


# ----------------------------------------------------------------------------- cases


@dataclass
class GoldenCase:
    """One case read back: ``meta`` (the parsed ``specformer`` metadata) and its tensors,
    also split by role (``inputs["x"]`` is the tensor ``in.x``)."""

    path: str
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    cotangents: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)


def _as_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    raise GoldenFormatError(f"tensor {name!r}: expected a numpy array or torch tensor, got {type(value).__name__}")


def _prepare(name: str, value: Any, dtype: str) -> np.ndarray:
    """Check one tensor against the case dtype; integers become int32 (token ids)."""
    arr = _as_numpy(value, name)
    if arr.dtype.kind == "f":
        if arr.dtype != _CASE_DTYPES[dtype]:
            raise GoldenFormatError(
                f"tensor {name!r} has dtype {arr.dtype} but the case dtype is {dtype}; convert it explicitly"
            )
        nan = np.argwhere(np.isnan(arr))
        if len(nan):
            raise GoldenFormatError(f"tensor {name!r} contains NaN (first at index {tuple(int(i) for i in nan[0])})")
        return np.array(arr, dtype=arr.dtype.newbyteorder("<"), order="C")  # keeps 0-d scalars 0-d (ascontiguousarray would make them 1-d)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
            raise GoldenFormatError(f"tensor {name!r}: integer values outside the int32 range cannot be stored as I32")
        return np.array(arr, dtype="<i4", order="C")
    raise GoldenFormatError(f"tensor {name!r}: dtype {arr.dtype} is neither float ({dtype}) nor integer (stored as i32)")


def _check_tolerance(tolerance: Mapping[str, Any], checked: list[str], path: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in tolerance:
        if key not in checked:
            raise GoldenFormatError(
                f"{path}: tolerance given for {key!r}, which is not a float output or gradient of the case ({', '.join(checked) or 'none'})"
            )
    for key in checked:
        t = tolerance.get(key)
        if t is None:
            raise GoldenFormatError(f"{path}: no tolerance for {key!r}; every float out.* and grad.* tensor needs one")
        if not isinstance(t, Mapping) or set(t) != {"rtol", "atol", "reason"}:
            raise GoldenFormatError(f"{path}: tolerance for {key!r} must have exactly rtol, atol, reason")
        for k in ("rtol", "atol"):
            v = t[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise GoldenFormatError(f"{path}: tolerance {key!r}.{k} must be a finite number >= 0, got {v!r}")
        if not isinstance(t["reason"], str) or not t["reason"].strip():
            raise GoldenFormatError(f"{path}: tolerance for {key!r} needs a non-empty reason")
        out[key] = {"rtol": float(t["rtol"]), "atol": float(t["atol"]), "reason": t["reason"]}
    return out


def write_case(
    path: str,
    *,
    case: str,
    formula: str,
    config: Mapping[str, Any],
    dims: Mapping[str, int],
    dtype: str,
    seed: int,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    cotangents: Mapping[str, Any] | None = None,
    grads: Mapping[str, Any] | None = None,
    tolerance: Mapping[str, Mapping[str, Any]] | None = None,
    oracle: str,
    notes: str | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    generator: str = GENERATOR,
    torch_version: str | None = None,
) -> dict[str, Any]:
    """Validate and write one golden case; returns the metadata object written.

    ``inputs``/``outputs``/``cotangents``/``grads`` map bare names (``"x"``,
    ``"h.0.attn.c_attn.weight"``) to numpy arrays or torch tensors; the file prefixes them
    with ``in.``/``out.``/``cot.``/``grad.``. Float tensors must already have the case
    ``dtype`` (no silent casting); integer tensors (token ids) are stored as i32.
    ``tolerance`` maps every float ``out.*``/``grad.*`` name to ``{rtol, atol, reason}``;
    integer outputs get an exact-match entry automatically. The bytes depend only on the
    arguments (sorted names, no timestamps), so regenerating reproduces the file.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.safetensors")
    >>> x = np.ones((2, 3), np.float32)
    >>> write_case(p, case="relu/f32/n2_d3", formula="relu", config={}, dims={"n": 2},
    ...     dtype="f32", seed=1, inputs={"x": x}, outputs={"y": x.astype(np.float64)},
    ...     oracle="numpy", torch_version="none")
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: tensor 'out.y' has dtype float64 but the case dtype is f32; convert it explicitly
    >>> write_case(p, case="relu/f32/n2_d3", formula="relu", config={}, dims={"n": 2},
    ...     dtype="f32", seed=1, inputs={"x": x}, outputs={"y": x}, grads={"W": x},
    ...     oracle="numpy", torch_version="none")
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: relu/f32/n2_d3: grad.W has no matching argument in.W
    >>> write_case(p, case="relu/f32/n2_d3", formula="relu", config={}, dims={"n": 2},
    ...     dtype="f32", seed=1, inputs={"x": x}, outputs={"y": x},
    ...     oracle="numpy", torch_version="none")
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: relu/f32/n2_d3: no tolerance for 'out.y'; every float out.* and grad.* tensor needs one
    """
    if dtype not in _CASE_DTYPES:
        raise GoldenFormatError(f"{case}: dtype must be 'f64' or 'f32', got {dtype!r}")
    if not isinstance(formula, str) or not _FORMULA_RE.match(formula):
        raise GoldenFormatError(f"{case}: formula {formula!r} is not a formula name (lowercase letters, digits, _)")
    parts = case.split("/") if isinstance(case, str) else []
    if len(parts) != 3 or parts[0] != formula or parts[1] != dtype or not _SLUG_RE.match(parts[2]):
        raise GoldenFormatError(f"case name {case!r} must be '<formula>/<dtype>/<slug>' = '{formula}/{dtype}/<slug>'")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GoldenFormatError(f"{case}: seed must be an integer, got {seed!r}")
    for k, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise GoldenFormatError(f"{case}: dims[{k!r}] must be a non-negative integer, got {v!r}")
    if torch_version is None:
        import torch

        torch_version = str(torch.__version__)

    tensors: dict[str, np.ndarray] = {}
    float_inputs: set[str] = set()
    for role, group in (("in", inputs), ("out", outputs), ("cot", cotangents or {}), ("grad", grads or {})):
        for name, value in group.items():
            if not isinstance(name, str) or not _ARG_RE.match(name):
                raise GoldenFormatError(f"{case}: {role}.{name} is not a valid argument/output name")
            full = f"{role}.{name}"
            arr = _prepare(full, value, dtype)
            tensors[full] = arr
            if role == "in" and arr.dtype.kind == "f":
                float_inputs.add(name)
    if not outputs:
        raise GoldenFormatError(f"{case}: a case needs at least one output")
    for name, arr in (cotangents or {}).items():
        o = tensors.get(f"out.{name}")
        if o is None:
            raise GoldenFormatError(f"{case}: cot.{name} has no matching output out.{name}")
        if o.dtype.kind != "f":
            raise GoldenFormatError(f"{case}: cot.{name} given for the integer output out.{name}")
        if tensors[f"cot.{name}"].shape != o.shape:
            raise GoldenFormatError(f"{case}: cot.{name} has shape {list(tensors[f'cot.{name}'].shape)} but out.{name} has {list(o.shape)}")
    for name in grads or {}:
        i = tensors.get(f"in.{name}")
        if i is None:
            raise GoldenFormatError(f"{case}: grad.{name} has no matching argument in.{name}")
        if name not in float_inputs:
            raise GoldenFormatError(f"{case}: grad.{name} given for the integer argument in.{name} (token ids have no gradient)")
        if tensors[f"grad.{name}"].shape != i.shape:
            raise GoldenFormatError(f"{case}: grad.{name} has shape {list(tensors[f'grad.{name}'].shape)} but in.{name} has {list(i.shape)}")
    if grads and not cotangents:
        raise GoldenFormatError(f"{case}: gradients need the cotangents that produced them")

    checked = sorted(k for k, a in tensors.items() if k.split(".")[0] in ("out", "grad") and a.dtype.kind == "f")
    tol = dict(tolerance or {})
    for k, a in tensors.items():
        if k.startswith("out.") and a.dtype.kind != "f" and k not in tol:
            tol[k] = {"rtol": 0.0, "atol": 0.0, "reason": "integer tensor: must match exactly"}
    exact = sorted(k for k, a in tensors.items() if k.startswith("out.") and a.dtype.kind != "f")
    tol_checked = _check_tolerance(tol, checked + exact, case)

    meta: dict[str, Any] = {
        "format": FORMAT,
        "case": case,
        "formula": formula,
        "config": dict(config),
        "dims": {k: int(v) for k, v in dims.items()},
        "dtype": dtype,
        "seed": int(seed),
        "torch_version": torch_version,
        "generator": generator,
        "oracle": oracle,
        "tolerance": tol_checked,
    }
    if notes:
        meta["notes"] = notes
    for k, v in (extra_meta or {}).items():
        if k in meta:
            raise GoldenFormatError(f"{case}: extra_meta key {k!r} would overwrite a standard metadata field")
        meta[k] = v
    try:
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise GoldenFormatError(f"{case}: metadata is not JSON-serializable ({e})") from None
    write_safetensors(path, tensors, {"specformer": text})
    return meta


def parse_case(tensors: dict[str, np.ndarray], meta_strings: dict[str, str], path: str) -> GoldenCase:
    """Interpret decoded safetensors as a golden case, checking the case-level rules."""
    if "specformer" not in meta_strings:
        raise GoldenFormatError(f"{path}: __metadata__ has no 'specformer' entry (not a specformer golden case)")
    try:
        meta = json.loads(meta_strings["specformer"])
    except json.JSONDecodeError as e:
        raise GoldenFormatError(f"{path}: __metadata__.specformer is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise GoldenFormatError(f"{path}: __metadata__.specformer must hold a JSON object")
    for key in ("format", "case", "formula", "config", "dims", "dtype", "seed", "torch_version", "generator", "oracle", "tolerance"):
        if key not in meta:
            raise GoldenFormatError(f"{path}: metadata lacks the required field {key!r}")
    if meta["format"] != FORMAT:
        raise GoldenFormatError(f"{path}: format is {meta['format']!r}, expected {FORMAT!r}")
    if meta["dtype"] not in _CASE_DTYPES:
        raise GoldenFormatError(f"{path}: dtype must be 'f64' or 'f32', got {meta['dtype']!r}")
    c = GoldenCase(path=path, meta=meta, tensors=tensors)
    roles = {"in": c.inputs, "out": c.outputs, "cot": c.cotangents, "grad": c.grads}
    for name, arr in tensors.items():
        role, _, rest = name.partition(".")
        if role not in roles or not rest:
            raise GoldenFormatError(f"{path}: tensor {name!r} is not named in.*, out.*, cot.* or grad.*")
        if arr.dtype.kind == "f" and arr.dtype != _CASE_DTYPES[meta["dtype"]]:
            raise GoldenFormatError(f"{path}: tensor {name!r} is {arr.dtype} in a {meta['dtype']} case")
        roles[role][rest] = arr
    _check_tolerance(
        meta["tolerance"],
        sorted(k for k, a in tensors.items() if k.split(".")[0] in ("out", "grad") and a.dtype.kind == "f")
        + sorted(k for k, a in tensors.items() if k.startswith("out.") and a.dtype.kind != "f"),
        path,
    )
    return c


def read_case(path: str) -> GoldenCase:
    """Read and validate one golden case file (numpy arrays).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> _ = write_safetensors(p, {"out.y": np.zeros(1)}, {"format": "pt"})
    >>> read_case(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    specformer.golden.GoldenFormatError: ...x.safetensors: __metadata__ has no 'specformer' entry (not a specformer golden case)
    """
    tensors, meta = read_safetensors(path)
    return parse_case(tensors, meta, path)


def write_manifest(golden_dir: str) -> dict[str, Any]:
    """Index every ``cases/**/*.safetensors`` under ``golden_dir`` into ``manifest.json``.

    Entries are sorted by case name and hold no timestamps, so regenerating identical
    files reproduces the manifest byte for byte. Returns the manifest object.
    """
    root = os.path.join(golden_dir, "cases")
    entries = []
    versions: dict[str, str] = {}
    seen: dict[str, str] = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if not fn.endswith(".safetensors"):
                continue
            full = os.path.join(dirpath, fn)
            with open(full, "rb") as f:
                data = f.read()
            c = parse_case(*decode_safetensors(data, full), full)
            rel = os.path.relpath(full, golden_dir).replace(os.sep, "/")
            name = c.meta["case"]
            if name in seen:
                raise GoldenFormatError(f"case {name!r} appears twice: {seen[name]} and {rel}")
            seen[name] = rel
            versions[rel] = c.meta["torch_version"]
            entries.append(
                {
                    "case": name,
                    "file": rel,
                    "formula": c.meta["formula"],
                    "dtype": c.meta["dtype"],
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    entries.sort(key=lambda e: e["case"])
    distinct = sorted(set(versions.values()))
    if len(distinct) > 1:
        raise GoldenFormatError(
            f"{golden_dir}: cases come from different torch versions {distinct}; regenerate them with one version"
        )
    manifest = {"format": FORMAT, "torch_version": distinct[0] if distinct else None, "cases": entries}
    with open(os.path.join(golden_dir, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


# ----------------------------------------------------------------------------- torch helpers


def case_from_module(
    fn: Callable[[dict[str, Any]], Any],
    args: Mapping[str, Any],
    *,
    cot_seed: int | None = None,
    cotangents: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run ``fn(args)`` and autograd; returns ``(outputs, cotangents, grads)`` (torch tensors).

    ``fn`` takes a dict of torch tensors by argument name and returns a dict of outputs (or
    one tensor, named ``y``). Every float output that depends on a float argument gets a
    cotangent: standard normal drawn in float64 from ``torch.Generator().manual_seed(cot_seed)``
    in sorted output order and rounded to the output dtype, unless ``cotangents`` are given.
    ``grads[a] = d(sum_o sum(out_o * cot_o)) / d a`` for every float argument ``a``
    (zeros where the output does not depend on it).

    >>> import torch
    >>> W = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    >>> x = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    >>> out, cot, g = case_from_module(lambda a: a["x"] @ a["W"], {"x": x, "W": W},
    ...                                cotangents={"y": torch.ones(1, 2, dtype=torch.float64)})
    >>> out["y"].tolist(), g["x"].tolist(), g["W"].tolist()
    ([[-2.0, -2.0]], [[3.0, 7.0]], [[1.0, 1.0], [-1.0, -1.0]])
    """
    import torch

    leaves: dict[str, Any] = {}
    for k, v in args.items():
        t = torch.as_tensor(v)
        leaves[k] = t.detach().clone().requires_grad_(True) if t.is_floating_point() else t.detach().clone()
    with torch.enable_grad():
        res = fn(leaves)
    outputs = {"y": res} if isinstance(res, torch.Tensor) else dict(res)
    diff = sorted(k for k, o in outputs.items() if o.is_floating_point() and o.requires_grad)
    if cotangents is None:
        if cot_seed is None:
            raise ValueError("case_from_module: pass cot_seed (to draw cotangents) or cotangents")
        g = torch.Generator().manual_seed(int(cot_seed))
        cots = {k: torch.randn(outputs[k].shape, generator=g, dtype=torch.float64).to(outputs[k].dtype) for k in diff}
    else:
        missing = [k for k in diff if k not in cotangents]
        if missing:
            raise ValueError(f"case_from_module: no cotangent for differentiable output(s) {missing}")
        cots = {k: torch.as_tensor(cotangents[k]).to(outputs[k].dtype) for k in diff}
    float_args = sorted(k for k, t in leaves.items() if t.is_floating_point())
    grads: dict[str, Any] = {}
    if diff and float_args:
        total = sum((outputs[k] * cots[k]).sum() for k in diff)
        gs = torch.autograd.grad(total, [leaves[k] for k in float_args], allow_unused=True)
        for k, gk in zip(float_args, gs):
            grads[k] = torch.zeros_like(leaves[k]) if gk is None else gk.detach()
    return {k: o.detach() for k, o in outputs.items()}, cots, grads


# ----------------------------------------------------------------------------- tolerance rule

F32_RTOL = 1.3e-6
"""torch.testing's default float32 rtol."""
U64 = 2.0**-53
"""Unit roundoff of float64."""


def _finite_pair(name: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries where both are finite; non-finite entries must agree exactly."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise GoldenFormatError(f"{name}: shapes differ {list(a.shape)} vs {list(b.shape)}")
    fa, fb = np.isfinite(a), np.isfinite(b)
    bad = np.argwhere((fa != fb) | (~fa & ~fb & (a != b)))
    if len(bad):
        i = tuple(int(j) for j in bad[0])
        raise GoldenFormatError(f"{name}: non-finite entries differ at {i}: {a[i]!r} vs {b[i]!r}")
    return a[fa], b[fa]


def max_abs_diff(name: str, a: Any, b: Any) -> float:
    """max |a - b| over finite entries (non-finite entries must be equal)."""
    x, y = _finite_pair(name, _as_numpy(a, name), _as_numpy(b, name))
    return float(np.max(np.abs(x - y))) if x.size else 0.0


def scale_of(name: str, exact: Any) -> float:
    """s = max(1, max |exact|) over finite entries."""
    e = np.asarray(_as_numpy(exact, name), np.float64)
    e = e[np.isfinite(e)]
    return max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def tolerance_f32(name: str, ours32: Any, exact64: Any) -> dict[str, Any]:
    """The float32 rule: ``atol = max(1e-5 s, 8 e)``, ``rtol = 1.3e-6`` where
    ``e = max|ours32 - exact64|`` (same float32 inputs, oracle rerun in float64) and
    ``s = max(1, max|exact64|)``.

    >>> tolerance_f32("out.y", np.float32([1.0]), np.float64([1.0 + 2**-10]))["atol"] == 8 * 2**-10
    True
    """
    e = max_abs_diff(name, ours32, exact64)
    s = scale_of(name, exact64)
    atol = max(1e-5 * s, 8 * e)
    which = "1e-5·s" if 1e-5 * s >= 8 * e else "8·e"
    return {
        "rtol": F32_RTOL,
        "atol": atol,
        "reason": (
            f"float32 rule: e = max|torch f32 − torch f64 on the same f32 inputs| = {_fmt(e)}, s = {_fmt(s)}; "
            f"atol = max(1e-5·s, 8·e) = {_fmt(atol)} ({which}), rtol = 1.3e-6 (torch.testing float32)"
        ),
    }


@dataclass
class F64Tolerance:
    """Result of the float64 rule: the tolerance entry and whether measuring widened it."""

    entry: dict[str, Any]
    bound: float
    observed: float
    widened: bool


def tolerance_f64(name: str, exact64: Any, K: int, K_why: str, seconds: Mapping[str, Any]) -> F64Tolerance:
    """The float64 rule: ``rtol = max(1e-13, 64 K u)`` (u = 2^-53, K the longest
    accumulation chain), ``atol = rtol s``; then compare with each second computation in
    ``seconds`` ({description: array}); if the largest observed difference exceeds half of
    ``atol``, widen ``atol`` to 4x that difference and set ``rtol = atol / s``.

    >>> t = tolerance_f64("out.y", np.float64([1.0]), 12, "d", {"explicit": np.float64([1.0 + 2**-30])})
    >>> t.widened, t.entry["atol"] == 4 * 2**-30, t.bound
    (True, True, 1e-13)
    """
    s = scale_of(name, exact64)
    rtol = max(1e-13, 64 * K * U64)
    atol = rtol * s
    diffs = {desc: max_abs_diff(f"{name} ({desc})", exact64, other) for desc, other in seconds.items()}
    obs, who = max(((d, desc) for desc, d in diffs.items()), default=(0.0, "none"))
    base = f"float64 rule: K = {K} ({K_why}), rtol = max(1e-13, 64·K·2^-53) = {_fmt(rtol)}, s = {_fmt(s)}, atol = rtol·s = {_fmt(atol)}"
    measured = "; ".join(f"{desc}: {_fmt(d)}" for desc, d in diffs.items()) or "no second computation"
    if obs > atol / 2:
        new_atol = 4 * obs
        reason = f"{base}; measured max differences ({measured}); WIDENED: {_fmt(obs)} ({who}) > atol/2, so atol = 4·{_fmt(obs)} = {_fmt(new_atol)}, rtol = atol/s"
        return F64Tolerance({"rtol": new_atol / s, "atol": new_atol, "reason": reason}, atol, obs, True)
    reason = f"{base}; measured max differences ({measured}) within atol/2"
    return F64Tolerance({"rtol": rtol, "atol": atol, "reason": reason}, atol, obs, False)


if __name__ == "__main__":  # python3 -m specformer.golden runs the examples above
    import sys

    from specformer._doctest import run_doctests

    import specformer.golden  # the importable name, as users see it in tracebacks

    sys.exit(run_doctests(specformer.golden))
