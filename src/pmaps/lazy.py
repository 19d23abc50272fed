"""Package names imported on their first use (PEP 562): the one mechanism of `pmaps`, `pmaps.collector`
and `pmaps.model`, whose modules would otherwise load numpy when the package is imported (`import
pmaps` costs nothing; a command parses its arguments and starts its first read before numpy is
imported: docs/architecture.md, "Start-up")."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_names(package: str, homes: dict[str, tuple[str, str]]
               ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: `homes` maps each name to (its module, relative to the
    package, and the attribute there). A name is imported when first read, then kept in the
    package's namespace (later reads are a dict lookup); dir() lists the package's __all__."""
    def getattr_(name: str) -> object:
        try:
            mod, attr = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(mod, package), attr)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(getattr(sys.modules[package], "__all__", homes))

    return getattr_, dir_
