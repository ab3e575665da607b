"""Loading a script of benchmarks/ as a module, for the tests that keep those scripts runnable."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(stem: str, module_name: str | None = None) -> ModuleType:
    """benchmarks/STEM.py as module ``module_name`` (default STEM), registered in sys.modules first: dataclasses and
    Lightning callbacks look their module up by name while the script runs."""
    name = module_name or stem
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
