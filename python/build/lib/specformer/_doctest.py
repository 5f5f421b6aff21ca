"""Run a module's doctests; examples that need torch are skipped, and counted, without it."""
from __future__ import annotations

import doctest
import importlib.util
from types import ModuleType


def has_torch() -> bool:
    """Whether PyTorch can be imported (it is optional)."""
    return importlib.util.find_spec("torch") is not None


def run_doctests(module: ModuleType, verbose: bool = False) -> int:
    """Run ``module``'s doctests, print ``N examples, F failures, S skipped`` and return 1 on failure.

    A docstring whose examples import torch is skipped as a whole when torch is missing.
    """
    torch = has_torch()
    runner = doctest.DocTestRunner(verbose=verbose, optionflags=doctest.ELLIPSIS)
    skipped = 0
    for test in doctest.DocTestFinder().find(module):
        if not torch and any("import torch" in ex.source for ex in test.examples):
            skipped += len(test.examples)
            continue
        runner.run(test)
    failures, tried = runner.summarize(verbose=False)
    print(f"{module.__name__}: {tried} examples, {failures} failures, {skipped} skipped (torch {'present' if torch else 'absent'})")
    return 1 if failures or tried == 0 else 0
