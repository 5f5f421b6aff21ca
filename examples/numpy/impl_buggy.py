#!/usr/bin/env python3
"""impl.py with one planted bug: the causal mask is off by one, so query i also sees key i + 1
(a future token). Everything else is identical. Checked against the golden cases, it fails every
causal attention, mha, causal_mask, block and gpt case in which some query has a later key it
must not see, and passes the rest (n = 1 cases, non-causal cases, softmax, layer_norm, ...): that
is how a report localises the bug. Equivalent to running impl.py with
SPECFORMER_PLANT=mask_off_by_one.
"""
import os
import sys

os.environ["SPECFORMER_PLANT"] = "mask_off_by_one"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import impl  # noqa: E402  (reads SPECFORMER_PLANT on import)

if __name__ == "__main__":
    impl.main()
