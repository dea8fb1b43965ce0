"""Adapters that run other libraries' samplers through our ``init`` / ``step`` interface.

They are an optional extra: each library's adapters are registered only when the library is
installed (``pip install -e ".[pyro]"`` for Pyro), so the sampler registry, ``python -m
benchmark list`` and the registry-parametrised contract tests only ever see samplers that can
run. Whether a library is installed is decided with :func:`importlib.util.find_spec`, which
imports nothing: the adapters import the library on first use, so importing :mod:`samplers`
stays as fast without the extra as with it.
"""

from __future__ import annotations

import importlib.util

from samplers.base import Sampler

#: How to install the Pyro adapters; quoted in every "pyro is missing" message.
PYRO_INSTALL_HINT = 'pip install -e ".[pyro]"'


def pyro_available() -> bool:
    """Whether ``pyro`` (the ``pyro-ppl`` distribution) can be imported, without importing it."""
    try:
        return importlib.util.find_spec("pyro") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out ``pyro`` entry in sys.modules
        return False


def external_samplers() -> dict[str, type[Sampler]]:
    """Registry entries of the external adapters whose library is installed (maybe none)."""
    if not pyro_available():
        return {}
    from samplers.external.pyro import PyroNUTS, PyroSVGD

    return {cls.name: cls for cls in (PyroSVGD, PyroNUTS)}


__all__ = ["PYRO_INSTALL_HINT", "external_samplers", "pyro_available"]
