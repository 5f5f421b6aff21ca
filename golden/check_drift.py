#!/usr/bin/python3
"""Compare freshly regenerated golden cases with the committed ones.

    /usr/bin/python3 golden/generate.py --out /tmp/g
    /usr/bin/python3 golden/check_drift.py --committed golden --fresh /tmp/g

Rules (numpy only):

- every case present on one side must be present on the other, with the same tensors,
  shapes and dtypes, and the same case/formula/dtype/config/dims/seed metadata;
- float64 tensors must agree within 4 ULP elementwise;
- float32 outputs and gradients must agree within the committed case's tolerance
  (|fresh − committed| <= atol + rtol·|committed|); float32 inputs and cotangents, which are
  seeded draws, must be identical;
- integer tensors and non-finite entries must be identical;
- each manifest.json must list exactly its folder's case files with matching sha256, and
  checkpoint files must be byte-identical.

Prints the largest drift of every case (ULP for float64, share of the tolerance for
float32) and the worst overall; exits 1 on any violation, 0 otherwise, 2 on bad usage.
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

MAX_ULP_F64 = 4
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
    unit: str  # "ulp" or "tol"
    worst: float = 0.0
    worst_at: str = ""
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
    dtype = old.meta["dtype"]
    rep = CaseReport(name, "ulp" if dtype == "f64" else "tol")
    for k in IDENTITY_KEYS:
        if old.meta.get(k) != new.meta.get(k):
            rep.violations.append(f"metadata {k!r} changed: {old.meta.get(k)!r} -> {new.meta.get(k)!r}")
    for k in sorted(set(old.meta) | set(new.meta)):
        if k not in IDENTITY_KEYS and old.meta.get(k) != new.meta.get(k):
            rep.notes.append(f"metadata {k!r} differs")
    a_names, b_names = set(old.tensors), set(new.tensors)
    for t in sorted(a_names - b_names):
        rep.violations.append(f"{t} missing from the fresh case")
    for t in sorted(b_names - a_names):
        rep.violations.append(f"{t} is new in the fresh case")
    for t in sorted(a_names & b_names):
        a, b = old.tensors[t], new.tensors[t]
        if a.shape != b.shape or a.dtype != b.dtype:
            rep.violations.append(f"{t}: {a.dtype}{list(a.shape)} became {b.dtype}{list(b.shape)}")
            continue
        if a.size == 0:
            continue
        if a.dtype.kind != "f" or (dtype == "f32" and t.split(".")[0] in ("in", "cot")):
            bad = np.argwhere(a != b)
            if len(bad):
                i = tuple(int(j) for j in bad[0])
                rep.violations.append(f"{t}: must be identical, differs at {list(i)}: {a[i]!r} -> {b[i]!r}")
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        nonfinite = np.argwhere((fa != fb) | (~fa & (a != b)))
        if len(nonfinite):
            i = tuple(int(j) for j in nonfinite[0])
            rep.violations.append(f"{t}: non-finite entries differ at {list(i)}: {a[i]!r} -> {b[i]!r}")
            continue
        if dtype == "f64":
            d = ulp_distance(np.where(fa, a, 0.0), np.where(fb, b, 0.0))
            j = int(np.argmax(d))
            worst = float(d.flat[j])
            if worst > MAX_ULP_F64:
                i = np.unravel_index(j, a.shape)
                tol = old.meta["tolerance"].get(t)
                share = ""
                if tol is not None:  # context for a reader: ULP drift near zero can be harmless
                    allowed = tol["atol"] + tol["rtol"] * np.abs(a[fa])
                    share = f" (largest drift is {float(np.max(np.abs(a[fa] - b[fa]) / allowed)):.3g} of the case tolerance)"
                rep.violations.append(f"{t}: {worst:.0f} ULP > {MAX_ULP_F64} at {[int(x) for x in i]}: {a[i]!r} -> {b[i]!r}{share}")
        else:
            tol = old.meta["tolerance"].get(t)
            if tol is None:
                rep.violations.append(f"{t}: the committed case has no tolerance for it")
                continue
            allowed = tol["atol"] + tol["rtol"] * np.abs(a[fa].astype(np.float64))
            diff = np.abs(a[fa].astype(np.float64) - b[fa].astype(np.float64))
            share = diff / allowed if np.all(allowed > 0) else np.where(diff > 0, np.inf, 0.0)
            j = int(np.argmax(share)) if share.size else 0
            worst = float(share[j]) if share.size else 0.0
            if worst > 1:
                rep.violations.append(f"{t}: drift {diff[j]:.3g} is {worst:.3g}x its tolerance (atol {tol['atol']:.3g}, rtol {tol['rtol']:.3g})")
        if worst > rep.worst or not rep.worst_at:
            rep.worst, rep.worst_at = worst, t
    return rep


def _fmt(rep: CaseReport) -> str:
    if rep.unit == "ulp":
        return f"{rep.worst:.0f} ulp" + (f" ({rep.worst_at})" if rep.worst else "")
    return f"{rep.worst:.3g} of tolerance" + (f" ({rep.worst_at})" if rep.worst else "")


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
    n_viol = 0
    for name in sorted(set(old) & set(new)):
        rep = compare_case(name, old[name], new[name])
        status = "FAIL" if rep.violations else "ok"
        if not opt.quiet or rep.violations or rep.worst:
            print(f"{status:4s} {name}: {_fmt(rep)}" + (f"  [{'; '.join(rep.notes)}]" if rep.notes else ""))
        for v in rep.violations:
            print(f"     {v}")
        n_viol += len(rep.violations)
        if rep.unit not in worst or rep.worst > worst[rep.unit].worst:
            worst[rep.unit] = rep
    for p in problems:
        print(f"FAIL {p}")
    same_manifest = False
    mo, mn = os.path.join(opt.committed, "manifest.json"), os.path.join(opt.fresh, "manifest.json")
    if os.path.exists(mo) and os.path.exists(mn):
        with open(mo, "rb") as f1, open(mn, "rb") as f2:
            same_manifest = f1.read() == f2.read()
    print(f"{len(set(old) & set(new))} cases compared; manifest.json {'byte-identical' if same_manifest else 'differs'}")
    for unit, rep in sorted(worst.items()):
        label = "float64" if unit == "ulp" else "float32"
        print(f"worst {label} drift: {_fmt(rep)} in {rep.case}")
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

    def build(root: str, y64: np.ndarray, y32: np.ndarray, extra: bool = False) -> None:
        x = np.array([[0.5, -1.0, 2.0]])
        tol64 = {"out.y": {"rtol": 1e-13, "atol": 1e-13, "reason": "test"}}
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
    scenarios = [  # (description, fresh y64, fresh y32, extra case, expected exit, expected text)
        ("identical", y, y.astype(np.float32), False, 0, "0 violation(s)"),
        ("4 ulp", y.copy() + np.array([[4 * 2.0**-53, 0, 0]]), y.astype(np.float32), False, 0, "4 ulp"),
        ("5 ulp", np.array([[0.5 + 5 * 2.0**-53, 0, 2.0]]), y.astype(np.float32), False, 1, "5 ULP > 4"),
        ("f32 within", y, (y + 9e-4).astype(np.float32), False, 0, "of tolerance"),
        ("f32 beyond", y, (y + 2e-3).astype(np.float32), False, 1, "its tolerance"),
        ("extra case", y, y.astype(np.float32), True, 1, "regenerated but not committed"),
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        committed = os.path.join(tmp, "committed")
        build(committed, y, y.astype(np.float32))
        for desc, y64, y32, extra, code, text in scenarios:
            fresh = os.path.join(tmp, desc.replace(" ", "_"))
            build(fresh, y64, y32, extra)
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
