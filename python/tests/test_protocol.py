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
