"""Loads a filter plugin of plugins/filter as a module, for the unit tests of its pure logic."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FILTERS = Path(__file__).resolve().parents[3] / "plugins/filter"


def load_filter(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FILTERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
