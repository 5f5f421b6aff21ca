#!/usr/bin/python3
"""Compare freshly regenerated golden cases with the committed ones.

    /usr/bin/python3 golden/generate.py --out /tmp/g
    /usr/bin/python3 golden/check_drift.py --committed golden --fresh /tmp/g

Rules (numpy only):

- every case present on one side must be present on the other, with the same tensors,
  shapes and dtypes, and the same case/formula/dtype/config/dims/seed metadata;
- inputs and cotangents (``in.*``, ``cot.*``), which are seeded draws, must be identical in
  both dtypes, and so must integer tensors and the positions and values of non-finite entries;
- float outputs and gradients, float64 and float32 alike, must agree with the committed
  tensor within the committed case's own tolerance: |fresh − committed| <= atol + rtol·|committed|.
  The tolerance is read from the committed file and never recomputed: a fresh case whose
  generator measured another tolerance on this machine is noted, not judged by it;
- each manifest.json must list exactly its folder's case files with matching sha256, and
  checkpoint files (seeded draws, no arithmetic) must be byte-identical.

Float results depend on the CPU's vector width, the BLAS and the thread count, so bit-exact
reproduction is information, not a rule: the distance in ULP of every float64 tensor is
reported beside its share of the tolerance. Prints the largest drift of every case and the
worst overall; exits 1 on any violation, 0 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

sys.dont_write_bytecode = True  # keep golden/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import specformer_golden as sg  # noqa: E402

IDENTITY_KEYS = ("format", "case", "formula", "dtype", "config", "dims", "seed")


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise distance in units in the last place between two float64 arrays: the number
    of representable doubles between them (0 for equal values, +0 and −0 included).

    >>> ulp_distance(np.array([1.0, -0.0, 1.0]), np.array([np.nextafter(1.0, 2.0), 0.0, 1.0 + 4 * 2.0**-52])).tolist()
    [1, 0, 4]
    >>> int(ulp_distance(np.array([-5e-324]), np.array([5e-324]))[0])
    2
    """
    ia = np.ascontiguousarray(a, dtype="<f8").view("<i8")
    ib = np.ascontiguousarray(b, dtype="<f8").view("<i8")
    lo = np.int64(-(2**63))
    # map the sign-magnitude bit patterns onto a monotone integer line (−0 and +0 both 0)
    oa = np.where(ia < 0, lo - ia, ia)
    ob = np.where(ib < 0, lo - ib, ib)
    same = (oa >= 0) == (ob >= 0)
    d = np.zeros(oa.shape, dtype=np.uint64)
    d[same] = np.abs(oa[same] - ob[same]).astype(np.uint64)
    d[~same] = np.abs(oa[~same]).astype(np.uint64) + np.abs(ob[~same]).astype(np.uint64)
    return d


@dataclass
class CaseReport:
    case: str
    dtype: str = ""
    worst: float = 0.0  # largest |fresh − committed| as a share of the committed tolerance
    worst_at: str = ""
    max_ulp: int = 0  # float64 only: largest distance in ULP (information, not a rule)
    max_ulp_at: str = ""
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _index(root: str) -> tuple[dict[str, str], list[str]]:
    """case name -> file path for every case under root/cases; plus problems found."""
    out: dict[str, str] = {}
    problems: list[str] = []
    base = os.path.join(root, "cases")
    if not os.path.isdir(base):
        return out, [f"{root}: no cases/ folder"]
    for dirpath, _, files in os.walk(base):
        for fn in sorted(files):
            if not fn.endswith(".safetensors"):
                continue
            p = os.path.join(dirpath, fn)
            try:
                c = sg.read_case(p)
            except sg.GoldenFormatError as e:
                problems.append(str(e))
                continue
            name = c.meta["case"]
            if name in out:
                problems.append(f"{root}: case {name} appears twice ({out[name]}, {p})")
            out[name] = p
    return out, problems


def _check_manifest(root: str, files: dict[str, str]) -> list[str]:
    p = os.path.join(root, "manifest.json")
    if not os.path.exists(p):
        return [f"{p}: missing"]
    with open(p, encoding="utf-8") as f:
        m = json.load(f)
    problems = []
    listed = {e["case"]: e for e in m.get("cases", [])}
    for name in sorted(set(files) - set(listed)):
        problems.append(f"{p}: does not list case {name}")
    for name in sorted(set(listed) - set(files)):
        problems.append(f"{p}: lists case {name}, which has no file")
    for name in sorted(set(files) & set(listed)):
        with open(files[name], "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != listed[name]["sha256"]:
            problems.append(f"{p}: sha256 of {name} does not match its file (stale manifest)")
    return problems


def compare_case(name: str, old_path: str, new_path: str) -> CaseReport:
    old = sg.read_case(old_path)
    new = sg.read_case(new_path)
    rep = CaseReport(name, str(old.meta.get("dtype", "")))
    for k in IDENTITY_KEYS:
        if old.meta.get(k) != new.meta.get(k):
            rep.violations.append(f"metadata {k!r} changed: {old.meta.get(k)!r} -> {new.meta.get(k)!r}")
    for k in sorted(set(old.meta) | set(new.meta)):
        if k not in IDENTITY_KEYS and old.meta.get(k) != new.meta.get(k):
            why = " (the committed tolerance is the one applied)" if k == "tolerance" else ""
            rep.notes.append(f"metadata {k!r} differs{why}")
    a_names, b_names = set(old.tensors), set(new.tensors)
    for t in sorted(a_names - b_names):
        rep.violations.append(f"{t} missing from the fresh case")
    for t in sorted(b_names - a_names):
        rep.violations.append(f"{t} is new in the fresh case")
    tolerances = old.meta.get("tolerance") or {}
    for t in sorted(a_names & b_names):
        a, b = old.tensors[t], new.tensors[t]
        if a.shape != b.shape or a.dtype != b.dtype:
            rep.violations.append(f"{t}: {a.dtype}{list(a.shape)} became {b.dtype}{list(b.shape)}")
            continue
        if a.size == 0:
            continue
        if a.dtype.kind != "f" or t.split(".")[0] in ("in", "cot"):
            bad = np.argwhere(a != b)
            if len(bad):
                i = tuple(int(j) for j in bad[0])
                rep.violations.append(f"{t}: must be identical (a seeded draw or integers), differs at {list(i)}: {a[i]!r} -> {b[i]!r}")
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        nonfinite = np.argwhere((fa != fb) | (~fa & (a != b)))
        if len(nonfinite):
            i = tuple(int(j) for j in nonfinite[0])
            rep.violations.append(f"{t}: non-finite entries differ at {list(i)}: {a[i]!r} -> {b[i]!r}")
            continue
        if a.dtype == np.float64:
            d = ulp_distance(np.where(fa, a, 0.0), np.where(fb, b, 0.0))
            ulp = int(d.max())
            if ulp > rep.max_ulp:
                rep.max_ulp, rep.max_ulp_at = ulp, t
        tol = tolerances.get(t)
        if tol is None:
            rep.violations.append(f"{t}: the committed case has no tolerance for it")
            continue
        ca, cb = a[fa].astype(np.float64), b[fa].astype(np.float64)
        allowed = tol["atol"] + tol["rtol"] * np.abs(ca)
        diff = np.abs(ca - cb)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0), np.where(diff > 0, np.inf, 0.0))
        j = int(np.argmax(share)) if share.size else 0
        worst = float(share[j]) if share.size else 0.0
        if worst > 1:
            i = [int(x) for x in np.unravel_index(int(np.flatnonzero(fa.ravel())[j]), a.shape)]
            rep.violations.append(
                f"{t}: drift {diff[j]:.3g} at {i} is {worst:.3g}x the committed tolerance "
                f"(atol {tol['atol']:.3g}, rtol {tol['rtol']:.3g}): {ca[j]!r} -> {cb[j]!r}"
            )
        if worst > rep.worst or not rep.worst_at:
            rep.worst, rep.worst_at = worst, t
    return rep


def _fmt(rep: CaseReport) -> str:
    out = f"{rep.worst:.3g} of tolerance" + (f" ({rep.worst_at})" if rep.worst else "")
    if rep.max_ulp:
        out += f"; {rep.max_ulp} ulp ({rep.max_ulp_at})"
    return out


def _compare_tree(old_root: str, new_root: str, sub: str) -> list[str]:
    """Byte-identical files under sub/ (checkpoints hold seeded draws, no arithmetic drift)."""
    problems: list[str] = []
    files: dict[str, set[str]] = {}
    for root in (old_root, new_root):
        acc: set[str] = set()
        base = os.path.join(root, sub)
        for dirpath, _, fns in os.walk(base):
            for fn in fns:
                acc.add(os.path.relpath(os.path.join(dirpath, fn), root))
        files[root] = acc
    for rel in sorted(files[old_root] ^ files[new_root]):
        side = "committed" if rel in files[old_root] else "fresh"
        problems.append(f"{rel}: only in the {side} folder")
    for rel in sorted(files[old_root] & files[new_root]):
        with open(os.path.join(old_root, rel), "rb") as f1, open(os.path.join(new_root, rel), "rb") as f2:
            if f1.read() != f2.read():
                problems.append(f"{rel}: differs (checkpoint files must be byte-identical)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare regenerated golden cases with the committed ones.")
    ap.add_argument("--committed", required=True, help="the committed golden folder (e.g. golden)")
    ap.add_argument("--fresh", required=True, help="the folder generate.py --out wrote")
    ap.add_argument("--quiet", action="store_true", help="print only cases with drift or violations")
    opt = ap.parse_args(argv)
    for d in (opt.committed, opt.fresh):
        if not os.path.isdir(d):
            print(f"check_drift: {d} is not a folder", file=sys.stderr)
            return 2

    old, p1 = _index(opt.committed)
    new, p2 = _index(opt.fresh)
    problems = p1 + p2
    problems += _check_manifest(opt.committed, old) + _check_manifest(opt.fresh, new)
    for name in sorted(set(old) - set(new)):
        problems.append(f"{name}: committed but not regenerated (missing case)")
    for name in sorted(set(new) - set(old)):
        problems.append(f"{name}: regenerated but not committed (extra case)")
    problems += _compare_tree(opt.committed, opt.fresh, "checkpoints")

    worst: dict[str, CaseReport] = {}
    most_ulp: CaseReport | None = None
    n_viol = 0
    for name in sorted(set(old) & set(new)):
        rep = compare_case(name, old[name], new[name])
        status = "FAIL" if rep.violations else "ok"
        if not opt.quiet or rep.violations or rep.worst:
            print(f"{status:4s} {name}: {_fmt(rep)}" + (f"  [{'; '.join(rep.notes)}]" if rep.notes else ""))
        for v in rep.violations:
            print(f"     {v}")
        n_viol += len(rep.violations)
        label = {"f32": "float32", "f64": "float64"}.get(rep.dtype, rep.dtype)
        if label not in worst or rep.worst > worst[label].worst:
            worst[label] = rep
        if rep.max_ulp and (most_ulp is None or rep.max_ulp > most_ulp.max_ulp):
            most_ulp = rep
    for p in problems:
        print(f"FAIL {p}")
    same_manifest = False
    mo, mn = os.path.join(opt.committed, "manifest.json"), os.path.join(opt.fresh, "manifest.json")
    if os.path.exists(mo) and os.path.exists(mn):
        with open(mo, "rb") as f1, open(mn, "rb") as f2:
            same_manifest = f1.read() == f2.read()
    print(f"{len(set(old) & set(new))} cases compared; manifest.json {'byte-identical' if same_manifest else 'differs'}")
    for label, rep in sorted(worst.items()):
        print(f"worst {label} drift: {rep.worst:.3g} of its tolerance ({rep.worst_at or '-'}) in {rep.case}")
    if most_ulp is not None:
        print(f"largest float64 distance (information only): {most_ulp.max_ulp} ulp ({most_ulp.max_ulp_at}) in {most_ulp.case}")
    else:
        print("float64 tensors bit-identical")
    total = n_viol + len(problems)
    print(f"{total} violation(s)")
    return 1 if total else 0


def _self_test() -> int:
    """Build a tiny golden folder, mutate copies of it, and check every rule fires."""
    import contextlib
    import doctest
    import io
    import shutil
    import tempfile

    failures, tests = doctest.testmod()

    def build(root: str, y64: np.ndarray, y32: np.ndarray, extra: bool = False, x64: np.ndarray | None = None,
              atol64: float = 1e-13) -> None:
        x = np.array([[0.5, -1.0, 2.0]]) if x64 is None else x64
        tol64 = {"out.y": {"rtol": 1e-13, "atol": atol64, "reason": "test"}}
        sg.write_case(os.path.join(root, "cases/relu/f64/a.safetensors"), case="relu/f64/a", formula="relu", config={}, dims={"n": 1},
                      dtype="f64", seed=1, inputs={"x": x}, outputs={"y": y64}, tolerance=tol64, oracle="t", torch_version="t")
        tol32 = {"out.y": {"rtol": 0.0, "atol": 1e-3, "reason": "test"}}
        sg.write_case(os.path.join(root, "cases/relu/f32/a.safetensors"), case="relu/f32/a", formula="relu", config={}, dims={"n": 1},
                      dtype="f32", seed=2, inputs={"x": x.astype(np.float32)}, outputs={"y": y32}, tolerance=tol32, oracle="t", torch_version="t")
        if extra:
            sg.write_case(os.path.join(root, "cases/relu/f64/b.safetensors"), case="relu/f64/b", formula="relu", config={}, dims={"n": 1},
                          dtype="f64", seed=3, inputs={"x": x}, outputs={"y": y64}, tolerance=tol64, oracle="t", torch_version="t")
        sg.write_manifest(root)

    y = np.array([[0.5, 0.0, 2.0]])
    y32 = y.astype(np.float32)
    x_other = np.array([[0.5, -1.0, np.nextafter(2.0, 3.0)]])
    # (description, fresh y64, fresh y32, extra case, fresh x64, fresh atol64, expected exit, expected text)
    scenarios = [
        ("identical", y, y32, False, None, 1e-13, 0, "float64 tensors bit-identical"),
        ("4 ulp", y + np.array([[4 * 2.0**-53, 0, 0]]), y32, False, None, 1e-13, 0, "4 ulp"),
        ("many ulp within tolerance", y + np.array([[5e-14, 0, 0]]), y32, False, None, 1e-13, 0, "0 violation(s)"),
        ("across zero within tolerance", y + np.array([[0, -3e-17, 0]]), y32, False, None, 1e-13, 0, "0 violation(s)"),
        ("f64 beyond", y + np.array([[0, 0, 1e-12]]), y32, False, None, 1e-13, 1, "the committed tolerance"),
        ("recomputed tolerance ignored", y + np.array([[0, 0, 1e-12]]), y32, False, None, 1e-9, 1, "committed tolerance is the one applied"),
        ("input redrawn", y, y32, False, x_other, 1e-13, 1, "in.x: must be identical"),
        ("f32 within", y, (y + 9e-4).astype(np.float32), False, None, 1e-13, 0, "of its tolerance"),
        ("f32 beyond", y, (y + 2e-3).astype(np.float32), False, None, 1e-13, 1, "the committed tolerance"),
        ("extra case", y, y32, True, None, 1e-13, 1, "regenerated but not committed"),
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        committed = os.path.join(tmp, "committed")
        build(committed, y, y.astype(np.float32))
        for desc, y64, y32f, extra, x64, atol64, code, text in scenarios:
            fresh = os.path.join(tmp, desc.replace(" ", "_"))
            build(fresh, y64, y32f, extra, x64, atol64)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                got = main(["--committed", committed, "--fresh", fresh])
            if got != code or text not in buf.getvalue():
                ok = False
                print(f"scenario {desc!r}: exit {got} (expected {code}), output lacks {text!r}:\n{buf.getvalue()}")
        # a case deleted from the fresh folder, and a stale manifest
        fresh = os.path.join(tmp, "missing")
        shutil.copytree(committed, fresh)
        os.remove(os.path.join(fresh, "cases/relu/f32/a.safetensors"))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            got = main(["--committed", committed, "--fresh", fresh])
        for text in ("committed but not regenerated", "lists case relu/f32/a, which has no file"):
            if got != 1 or text not in buf.getvalue():
                ok = False
                print(f"scenario 'missing': exit {got}, output lacks {text!r}:\n{buf.getvalue()}")
    print(f"{tests} examples, {failures} failures; drift scenarios {'passed' if ok else 'FAILED'}")
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(_self_test())
    sys.exit(main())
