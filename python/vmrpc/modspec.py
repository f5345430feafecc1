"""Host modules named the ways users name them: instances, classes and strings.

`VM(modules=...)`, `VM.register_hm`, the pytest marker and ``vmrpc run --module`` all
accept the same forms through `resolve_module`:

- a `HostModule` or `NativeModule` instance, used as it is;
- a `HostModule` subclass, instantiated with no arguments;
- a string: ``native:NAME`` (the native module NAME), ``pkg.mod:Class`` or
  ``path/to/file.py:Class`` (imported; the attribute may be a class or an instance).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import TypeAlias

from vmrpc.hostmodule import HostModule, NativeModule

__all__ = ["ModuleLike", "ModuleSpecError", "load_module", "resolve_module"]

ModuleLike: TypeAlias = HostModule | NativeModule | type[HostModule] | str
"""Anything `resolve_module` turns into a host module to register."""


class ModuleSpecError(ValueError):
    """A module specification cannot be turned into a host module."""


def _import_source(spec: str) -> object:
    """Import the Python module named by ``spec``: a dotted name or a ``.py`` path."""
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        path = Path(spec)
        if not path.is_file():
            raise ModuleSpecError(f"no such file: {spec}")
        name = f"_vmrpc_module_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ModuleSpecError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
        return module
    # Like `python -m`, find modules in the current directory too.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except ImportError as error:
        raise ModuleSpecError(f"cannot import {spec}: {error}") from error


def load_module(spec: str) -> HostModule | NativeModule:
    """Turn a string specification into a host module to register.

    ``native:NAME`` is the native module NAME (``native:echo``). ``pkg.mod:Class`` (or
    ``path/to/file.py:Class``) imports the module and calls ``Class()``; if the
    attribute already is a `HostModule` instance, it is used as it is.

    Raises:
        ModuleSpecError: the specification is malformed, the import fails, or the
            attribute is neither a `HostModule` subclass nor an instance.
    """
    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr:
        raise ModuleSpecError(f"a module is named pkg.mod:Class or native:NAME, got {spec!r}")
    if source == "native":
        return NativeModule(attr)
    module = _import_source(source)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ModuleSpecError(f"{source} has no attribute {attr!r}") from None
    if isinstance(obj, HostModule):
        return obj
    if isinstance(obj, type) and issubclass(obj, HostModule):
        return obj()
    raise ModuleSpecError(f"{spec} is not a vmrpc.HostModule subclass or instance")


def resolve_module(module: ModuleLike) -> HostModule | NativeModule:
    """Return the host module instance that ``module`` names (see the module docstring).

    Raises:
        ModuleSpecError: a string specification cannot be resolved.
        TypeError: ``module`` is none of the accepted forms.
    """
    if isinstance(module, HostModule | NativeModule):
        return module
    if isinstance(module, type) and issubclass(module, HostModule):
        return module()
    if isinstance(module, str):
        return load_module(module)
    raise TypeError(
        "a host module is a HostModule or NativeModule instance, a HostModule subclass, "
        f"or a 'pkg.mod:Class' / 'native:NAME' string; got {type(module).__name__}"
    )
