"""specformer's Python side: serve an implementation over the process protocol, and write golden cases.

- :func:`serve` (``specformer.protocol``): an adapter is its math plus ``serve({...})``;
  ``specformer verify --impl "python3 adapter.py"`` then checks it (docs/PROTOCOL.md).
- ``specformer.golden``: write, read and index golden cases (safetensors + manifest,
  golden/FORMAT.md); torch is optional, used only by ``case_from_module``.

Pure Python and NumPy; ``pip install ./python`` from the repository.
"""
from specformer.protocol import Config, Formula, FormulaError, decode_tensor, encode_tensor, serve

__all__ = ["serve", "Formula", "FormulaError", "Config", "decode_tensor", "encode_tensor"]
__version__ = "0.1.0"
