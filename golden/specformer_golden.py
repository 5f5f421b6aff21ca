"""The golden writer under its historical name: the module is ``specformer.golden`` of the Python
package in ``python/`` (``pip install ./python``). golden/generate.py and golden/check_drift.py
import it from here, so they run in a checkout without installing anything.

>>> import specformer_golden, specformer.golden
>>> specformer_golden is specformer.golden
True
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "src"))

from specformer import golden as _golden  # noqa: E402

sys.modules[__name__] = _golden

if __name__ == "__main__":  # /usr/bin/python3 golden/specformer_golden.py runs the module's examples
    from specformer._doctest import run_doctests

    sys.exit(run_doctests(_golden))
