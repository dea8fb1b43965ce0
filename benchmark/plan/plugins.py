"""Which code a matrix may name, and how it is imported: the import-path policy.

A matrix names targets and samplers by registry name (``"donut"``, ``"mala"``) or by import path
``package.module:Class``. Importing runs a module's top-level code, so an import path is code
execution, and a matrix file is code: run only matrices you trust (README, "Trust"). Within that,
the policy keeps a matrix from reaching further than its author meant:

* an import path is resolved only (a) from a ``.py`` module or package in the matrix file's own
  folder (wherever the working directory is), or (b) from a top-level package of an *installed*
  distribution (``importlib.metadata.packages_distributions``). A ``.py`` file that happens to
  sit in the working directory, the standard library (``os:system``) and anything else are
  refused *before* any import;
* the object must be a class derived from :class:`targets.base.Target` (targets) or
  :class:`samplers.base.Sampler` (samplers); functions such as ``torch.hub:load`` are refused
  before they could be called;
* rows of a results store are resolved with no folder, i.e. registry names and installed
  packages only, so a crafted store cannot import a file from anywhere.

Validation (``run --dry-run`` included) imports an allowed plugin to read its ``Params``; nothing
else of it runs until cells do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

#: ``package.module:Object`` with Python identifiers only (no paths, no relative imports).
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class PluginError(ValueError):
    """A name that is neither a registry entry nor an import path the policy allows."""


@cache
def installed_top_level_modules() -> frozenset[str]:
    """Top-level module names provided by installed distributions (this project included)."""
    return frozenset(importlib.metadata.packages_distributions())


def _folder_provides(folder: Path, module: str) -> bool:
    return (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file()


def locate(name: str, search_dirs: Sequence[str | Path] = ()) -> str | None:
    """Where an import path may be imported from: a folder of ``search_dirs``, or ``None`` for
    an installed package.

    Raises:
        PluginError: a malformed import path, or a module neither installed nor in a folder of
            ``search_dirs``.
    """
    if not IMPORT_PATH.match(name):
        raise PluginError(f"'{name}' is not an import path of the form package.module:Class")
    top = name.split(":")[0].split(".")[0]
    for folder in search_dirs:
        if _folder_provides(Path(folder), top):
            return str(Path(folder).resolve())
    if top in installed_top_level_modules():
        return None
    where = " or in the matrix file's folder" if search_dirs else ""
    raise PluginError(f"module '{top}' of '{name}' is not an installed package{where}; "
                      "only installed packages and modules beside the matrix file may be named")


def resolve(kind: str, name: str, registry: Mapping[str, type], base: type,
            search_dirs: Sequence[str | Path] = ()) -> tuple[type, str | None]:
    """The class a matrix or store names, and the folder it was imported from (or ``None``).

    Args:
        kind: ``"target"`` or ``"sampler"`` (for messages).
        name: a key of ``registry`` or an import path ``package.module:Class``.
        registry: the plain-dict registry of ``kind``.
        base: the class every resolved object must derive from.
        search_dirs: folders whose modules may be imported (a matrix file's folder); empty for
            names read from a results store.

    Raises:
        PluginError: an unknown name, a refused import path, a failed import, or an object
            that is not a ``base`` subclass; the message is one line with the valid choices.
    """
    if name in registry:
        return registry[name], None
    if ":" not in name:
        raise PluginError(f"unknown {kind} '{name}'; valid choices: {', '.join(sorted(registry))}"
                          f" (or an import path package.module:Class)")
    folder = locate(name, search_dirs)
    module_name, _, attribute = name.partition(":")
    if folder is not None and folder not in sys.path:
        # Worker processes resolve the same spec and so put the same folder on their path.
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attribute)
    except Exception as error:  # noqa: BLE001 - any failure of user code is one clean line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PluginError(f"cannot import {kind} '{name}': {message}") from None
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{kind} '{name}' is not a subclass of {base.__module__}."
                          f"{base.__qualname__}")
    return obj, folder


def search_dirs_of(folder: str | None) -> tuple[str, ...]:
    """The ``search_dirs`` argument for a spec resolved from ``folder`` (``None``: none)."""
    return () if folder is None else (folder,)


def describe(value: Any) -> str:
    """A short repr for error messages (long values cut, one line)."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."
