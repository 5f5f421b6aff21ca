"""The protocol helper end to end, as specformer drives it: hello, forward, backward, errors, shutdown."""
import io
import json
import subprocess
import sys
import unittest

import numpy as np

from specformer import Formula, FormulaError, serve


def exchange(formulas, requests, **kw):
    inp = io.StringIO("".join(json.dumps(r) + "\n" for r in requests))
    out = io.StringIO()
    serve(formulas, stdin=inp, stdout=out, **kw)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def t(dtype, shape, data):
    return {"dtype": dtype, "shape": shape, "data": data}


def square(a, cfg):
    return {"y": a["x"] ** 2}


def square_back(a, cot, cfg):
    return {"x": 2 * a["x"] * cot["y"]}


class ServeTest(unittest.TestCase):
    def test_hello_lists_formulas_backward_and_dtypes(self):
        [r] = exchange({"square": Formula(square, square_back), "id": lambda a, c: a["x"]}, [{"id": 1, "method": "hello", "params": {"protocol": 1}}], name="sq", version="2")
        self.assertEqual(r["result"], {"name": "sq", "formulas": ["square", "id"], "backward": ["square"], "dtypes": ["f64", "f32"], "protocol": 1, "shutdown": True, "version": "2"})

    def test_forward_and_backward_keep_the_request_dtype(self):
        rs = exchange(
            {"square": Formula(square, square_back)},
            [
                {"id": 1, "method": "forward", "params": {"formula": "square", "config": {}, "inputs": {"x": t("f32", [2], [0.1, -3])}}},
                {"id": 2, "method": "backward", "params": {"formula": "square", "config": {}, "inputs": {"x": t("f64", [2], [0.5, "NaN"])}, "cotangents": {"y": t("f64", [2], [1, 1])}}},
            ],
        )
        self.assertEqual(rs[0]["result"]["outputs"]["y"]["dtype"], "f32")
        self.assertEqual(rs[0]["result"]["outputs"]["y"]["data"][1], 9.0)
        self.assertEqual(rs[1]["result"]["grads"]["x"], t("f64", [2], [1.0, "NaN"]))

    def test_errors_name_the_request_and_keep_serving(self):
        def bad(a, cfg):
            raise FormulaError(f"eps {cfg.num('eps')} is too small")

        def crash(a, cfg):
            return 1 / 0

        rs = exchange(
            {"bad": bad, "crash": crash, "square": square},
            [
                {"id": 1, "method": "forward", "params": {"formula": "bad", "config": {"eps": 0}, "inputs": {}}},
                {"id": 2, "method": "forward", "params": {"formula": "crash", "config": {}, "inputs": {}}},
                {"id": 3, "method": "forward", "params": {"formula": "square", "config": {}, "inputs": {"x": t("f64", [2], [1])}}},
                {"id": 4, "method": "backward", "params": {"formula": "square", "config": {}, "inputs": {}}},
                {"id": 5, "method": "forward", "params": {"formula": "square", "config": {}, "inputs": {"x": t("f64", [1], [2])}}},
            ],
        )
        self.assertEqual(rs[0], {"id": 1, "error": {"message": "forward bad: eps 0.0 is too small"}})
        self.assertEqual(rs[1], {"id": 2, "error": {"message": "forward crash: ZeroDivisionError: division by zero"}})
        self.assertEqual(rs[2], {"id": 3, "error": {"message": "forward square: input x: data has 1 numbers but shape [2] needs 2"}})
        self.assertEqual(rs[3], {"id": 4, "error": {"message": "backward square: this formula has no backward pass here"}})
        self.assertEqual(rs[4]["result"]["outputs"]["y"]["data"], [4.0])

    def test_garbage_and_shutdown(self):
        inp = io.StringIO('not json\n{"id": 9, "method": "shutdown", "params": {}}\n{"id": 10, "method": "hello"}\n')
        out = io.StringIO()
        serve({"square": square}, stdin=inp, stdout=out)
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        self.assertEqual(lines[0]["id"], None)
        self.assertIn("JSONDecodeError", lines[0]["error"]["message"])
        self.assertEqual(lines[1], {"id": 9, "result": {}})
        self.assertEqual(len(lines), 2)  # nothing is answered after shutdown

    def test_bad_formulas_argument_is_a_type_error(self):
        with self.assertRaisesRegex(TypeError, "formula 'x' must be a function or a Formula, got int"):
            serve({"x": 3}, stdin=io.StringIO(""), stdout=io.StringIO())
        with self.assertRaisesRegex(ValueError, "dtypes must be a non-empty list"):
            serve({"square": square}, dtypes=["f16"], stdin=io.StringIO(""), stdout=io.StringIO())


def binary_exchange(formulas, messages, **kw):
    """Drive serve() over byte streams: messages are (request, [frame bytes]); answers come back
    as (response, [frame bytes]) read the way specformer reads them."""
    data = b""
    for req, frames in messages:
        if frames:
            req = {**req, "frames": [len(f) for f in frames]}
        data += json.dumps(req).encode() + b"\n" + b"".join(frames)
    out = io.BytesIO()
    serve(formulas, stdin=io.BytesIO(data), stdout=out, **kw)
    raw = io.BytesIO(out.getvalue())
    answers = []
    while True:
        line = raw.readline()
        if not line:
            return answers
        msg = json.loads(line)
        answers.append((msg, [raw.read(n) for n in msg.get("frames", [])]))


HELLO_BINARY = {"id": 1, "method": "hello", "params": {"protocol": 1, "binary": True}}


def ft(dtype, shape, frame):
    return {"dtype": dtype, "shape": shape, "frame": frame}


class BinaryTest(unittest.TestCase):
    def test_hello_accepts_binary_only_when_offered(self):
        [(r, _)] = binary_exchange({"id": lambda a, c: a["x"]}, [(HELLO_BINARY, [])])
        self.assertIs(r["result"]["binary"], True)
        [(r, _)] = binary_exchange({"id": lambda a, c: a["x"]}, [({"id": 1, "method": "hello", "params": {"protocol": 1}}, [])])
        self.assertNotIn("binary", r["result"])
        [(r, _)] = binary_exchange({"id": lambda a, c: a["x"]}, [(HELLO_BINARY, [])], binary=False)
        self.assertNotIn("binary", r["result"])
        # a text stream cannot carry frames: JSON numbers only
        [r] = exchange({"id": lambda a, c: a["x"]}, [HELLO_BINARY])
        self.assertNotIn("binary", r["result"])

    def test_frames_both_ways_keep_every_bit(self):
        # quiet NaN with payload 1, negative NaN, -0, +inf, the smallest subnormal
        bits = np.array([0x7FF8000000000001, 0xFFF8000000000000, 0x8000000000000000, 0x7FF0000000000000, 1], dtype="<u8")
        x = bits.tobytes()
        x32 = np.array([0.1, -2.5, np.inf], dtype="<f4").tobytes()
        rs = binary_exchange(
            {"id": Formula(lambda a, c: a["x"], lambda a, cot, c: {"x": cot["y"]})},
            [
                (HELLO_BINARY, []),
                ({"id": 2, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f64", [5], 0)}}}, [x]),
                ({"id": 3, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f32", [1, 3], 0)}}}, [x32]),
                ({"id": 4, "method": "backward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f32", [1, 3], 0)}, "cotangents": {"y": ft("f32", [1, 3], 1)}}}, [x32, x32[::-1]]),
                # JSON numbers are still accepted after binary was negotiated
                ({"id": 5, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": t("f64", [2], [1.5, "NaN"])}}}, []),
            ],
        )
        (r2, f2), (r3, f3), (r4, f4), (r5, f5) = rs[1:]
        self.assertEqual(r2, {"id": 2, "frames": [40], "result": {"outputs": {"y": ft("f64", [5], 0)}}})
        self.assertEqual(f2, [x])
        self.assertEqual(r3["result"]["outputs"]["y"], ft("f32", [1, 3], 0))
        self.assertEqual(f3, [x32])
        self.assertEqual(r4["result"]["grads"]["x"], ft("f32", [1, 3], 0))
        self.assertEqual(f4, [x32[::-1]])
        self.assertEqual(r5["frames"], [16])
        self.assertEqual(np.frombuffer(f5[0], "<f8")[0], 1.5)

    def test_bad_binary_tensors_are_errors_naming_them(self):
        rs = binary_exchange(
            {"id": lambda a, c: a["x"]},
            [
                (HELLO_BINARY, []),
                ({"id": 2, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f64", [3, 4], 0)}}}, [bytes(80)]),
                ({"id": 3, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f16", [3], 0)}}}, [bytes(6)]),
                ({"id": 4, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f64", [1], 3)}}}, [bytes(8)]),
                ({"id": 5, "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f64", [1], 0)}}}, [bytes(8)]),
            ],
        )
        self.assertEqual(rs[1][0], {"id": 2, "error": {"message": "forward id: input x: frame 0 has 80 bytes but f64 shape [3, 4] needs 96 (12 × 8)"}})
        self.assertEqual(rs[2][0], {"id": 3, "error": {"message": "forward id: input x: dtype 'f16' is not one of f64, f32, i32"}})
        self.assertEqual(rs[3][0], {"id": 4, "error": {"message": "forward id: input x: frame 3 is not the index of a frame that follows the line (1 frames)"}})
        self.assertEqual(rs[4][0]["frames"], [8])  # the stream stayed in step

    def test_truncated_frame_stops_serving_with_a_message(self):
        data = json.dumps(HELLO_BINARY).encode() + b"\n"
        data += json.dumps({"id": 2, "frames": [80], "method": "forward", "params": {"formula": "id", "config": {}, "inputs": {"x": ft("f64", [10], 0)}}}).encode() + b"\n" + bytes(40)
        out, err = io.BytesIO(), io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            serve({"id": lambda a, c: a["x"]}, stdin=io.BytesIO(data), stdout=out)
        finally:
            sys.stderr = old
        self.assertEqual(len(out.getvalue().splitlines()), 1)  # hello only
        self.assertIn("input ended inside a binary frame: 40 of 80 bytes arrived", err.getvalue())


class DoctestTest(unittest.TestCase):
    def test_doctests_pass_with_or_without_torch(self):
        import specformer.golden
        import specformer.protocol
        from specformer._doctest import run_doctests

        for m in (specformer.protocol, specformer.golden):
            self.assertEqual(run_doctests(m), 0, m.__name__)

    def test_doctests_pass_without_torch(self):
        # torch made unimportable: its examples are skipped (and counted), the rest pass
        code = "import sys; sys.modules['torch'] = None; import specformer.golden as g; from specformer._doctest import run_doctests; sys.exit(run_doctests(g))"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"specformer.golden: [1-9]\d* examples, 0 failures, [1-9]\d* skipped \(torch absent\)")


if __name__ == "__main__":
    unittest.main()
