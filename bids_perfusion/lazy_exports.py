"""Public names of a package imported on first use (PEP 562 module ``__getattr__``).

A core package such as :mod:`bids_perfusion.dsc` exports the names of its submodules
(``from bids_perfusion.dsc import DeconvolutionModel``) without importing them all when
the package is imported: ``import bids_perfusion.dsc.relaxivity`` on the command line's
path then loads numpy only, not scipy and scikit-image. The package lists its names once,
as the imports of an ``if TYPE_CHECKING:`` block that static type checkers read, and in
``__all__``; :func:`lazy_exports` reads that block to know where each name lives.
"""

import ast
import importlib
import sys
from pathlib import Path


def _type_checking_imports(path):
    """``{name: module}`` of the ``from module import name`` of ``if TYPE_CHECKING:``."""
    homes = {}
    for node in ast.parse(Path(path).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    homes.update({alias.name: statement.module for alias in statement.names})
    return homes


def lazy_exports(package, init_file, names):
    """``(__getattr__, __dir__)`` of ``package`` whose public ``names`` (its ``__all__``)
    are the imports of the ``if TYPE_CHECKING:`` block of ``init_file``. A name is
    imported on first access and then kept in the package namespace. In ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
    """
    home = _type_checking_imports(init_file)
    if set(home) != set(names):
        raise ImportError(f"{package}: __all__ and the TYPE_CHECKING imports differ in "
                          f"{sorted(set(home) ^ set(names))}")

    def __getattr__(name):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__
