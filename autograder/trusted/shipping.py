"""Send trusted callables and objects INTO the sandbox (the protocol itself only carries data).

Checks pass trusted things to student code: ``numerical_gradient(lambda: ..., x)``, an
``npdl.initializers.XavierUniform()`` as ``weight_init``, npdl layers into the student's
``Sequential``, a tiny optimizer into a schedule. `to_spec` turns such values into plain data
(marshalled code, closure and global values, an object's ``__dict__``) that the child's trampoline
(`child_support.SOURCE`) rebuilds. Shipping is one-way: the rebuilt copies live in the sandbox, and
whatever they compute there is as untrusted as the student's own code. Nothing is ever
unmarshalled or unpickled on the trusted side.
"""

from __future__ import annotations

import functools
import marshal
import re
import sys
import types

import numpy as np

from ..sandbox import RemoteObject

# Modules a shipped function may name as a global: imported by name inside the sandbox.
_IMPORTABLE = re.compile(
    r"^(numpy|scipy|math|cmath|functools|itertools|operator|collections|"
    r"random|statistics|warnings|npdl)(\.|$)"
)


class NotShippable(TypeError):
    """A trusted value that cannot be rebuilt inside the sandbox."""


class ForbiddenModule(NotShippable):
    """An npdl module the assignment asks the student to write: never importable in the sandbox."""


class Adopted:
    """Mixin of a trusted object that was shipped and now lives in the sandbox: attribute access
    and method calls go to the sandbox copy (``_sb_handle``), so a check that built npdl layers
    for the student's ``Sequential`` sees what the student's code did to them."""

    def __getattribute__(self, name):
        if name == "_sb_handle" or (name.startswith("__") and name.endswith("__")):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "__dict__")["_sb_handle"], name)

    def __setattr__(self, name, value):
        setattr(object.__getattribute__(self, "__dict__")["_sb_handle"], name, value)


_ADOPTED: dict[type, type] = {}


def adopt(obj, handle: RemoteObject) -> None:
    """Turn the trusted ``obj`` into a view of its sandbox copy ``handle`` (in place)."""
    cls = type(obj)
    if cls not in _ADOPTED:
        _ADOPTED[cls] = type(
            cls.__name__,
            (Adopted, cls),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
    state = object.__getattribute__(obj, "__dict__")
    state.clear()
    state["_sb_handle"] = handle
    obj.__class__ = _ADOPTED[cls]


def is_layer(obj) -> bool:
    """npdl layers are adopted after shipping: student code mutates them (grads, modes, stats)."""
    return any(c.__name__ == "Layer" and c.__module__ == "npdl.core" for c in type(obj).__mro__)


def generator_paths(value, path=(), _depth=0) -> list[list]:
    """Where np.random.Generators sit in nested lists/tuples/dicts (not inside objects)."""
    if _depth > 30:
        return []
    if type(value) is np.random.Generator:
        return [list(path)]
    if type(value) in (list, tuple):
        return [p for i, v in enumerate(value) for p in generator_paths(v, (*path, i), _depth + 1)]
    if type(value) is dict:
        return [
            p
            for k, v in value.items()
            if type(k) in (str, int)
            for p in generator_paths(v, (*path, k), _depth + 1)
        ]
    return []


def needs_shipping(value, _depth=0) -> bool:
    """True if ``value`` (args of a call) holds something the plain protocol cannot carry."""
    if _depth > 30:
        return False
    if isinstance(value, (list, tuple)):
        return any(needs_shipping(v, _depth + 1) for v in value)
    if type(value) is dict:
        return any(needs_shipping(v, _depth + 1) for v in value.values())
    return isinstance(value, (types.FunctionType, functools.partial, type)) or (
        hasattr(value, "__dict__")
        and not isinstance(
            value, (RemoteObject, Adopted, np.ndarray, np.random.Generator, types.ModuleType)
        )
    )


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class Shipper:
    """Converts values to specs; ``on_module(name)`` is called for every npdl module needed."""

    def __init__(self, on_module):
        self.on_module = on_module
        self.seen: set[int] = set()
        self.keep: list = []  # ids are only unique while the objects live
        self.objects: dict[int, object] = {}  # oid -> shipped instance

    def spec(self, value, depth=0):
        if depth > 30:
            raise NotShippable("values nested too deeply to send to the sandbox.")
        if isinstance(value, Adopted):
            return object.__getattribute__(value, "__dict__")["_sb_handle"]
        if (
            isinstance(value, RemoteObject)
            or value is None
            or isinstance(
                value,
                (bool, int, float, str, np.ndarray, np.generic, np.dtype, np.random.Generator),
            )
        ):
            return value
        if type(value) in (list, tuple):
            items = [self.spec(v, depth + 1) for v in value]
            return items if type(value) is list else tuple(items)
        if type(value) is dict:
            return {k: self.spec(v, depth + 1) for k, v in value.items()}
        if isinstance(value, type) and issubclass(value, np.generic):
            return value
        oid = id(value)
        if oid in self.seen:
            return {"__trusted_ref__": oid}
        self.seen.add(oid)
        self.keep.append(value)
        if isinstance(value, functools.partial):
            self.seen.discard(oid)
            return {
                "__trusted_partial__": self.spec(value.func, depth + 1),
                "args": self.spec(list(value.args), depth + 1),
                "kw": self.spec(dict(value.keywords), depth + 1),
            }
        if isinstance(value, types.FunctionType):
            return self._function(value, oid, depth)
        if isinstance(value, type):
            return self._class(value, oid, depth)
        if isinstance(value, types.ModuleType) or not hasattr(value, "__dict__"):
            raise NotShippable(f"cannot send a {type(value).__name__} to the sandbox.")
        self.objects[oid] = value
        return {
            "__trusted_obj__": self.spec(type(value), depth + 1),
            "oid": oid,
            "state": self.spec(dict(vars(value)), depth + 1),
        }

    def _function(self, fn, oid, depth):
        scope, modules, shipped = fn.__globals__, {}, {}
        for name in sorted(_code_names(fn.__code__)):
            try:
                found = name in scope
                value = scope[name] if found else None
            except Exception:  # noqa: BLE001 - e.g. a namespace lookup that fails
                continue
            if not found:
                continue
            if isinstance(value, types.ModuleType):
                if _IMPORTABLE.match(value.__name__):
                    if value.__name__.startswith("npdl."):
                        try:
                            self.on_module(value.__name__)
                        except ForbiddenModule:
                            continue
                    modules[name] = value.__name__
                continue
            try:
                shipped[name] = self.spec(value, depth + 1)
            except NotShippable:
                continue  # the function fails with NameError inside if it really needs it
        closure = None
        if fn.__closure__ is not None:
            closure = [self.spec(cell.cell_contents, depth + 1) for cell in fn.__closure__]
        code = np.frombuffer(marshal.dumps(fn.__code__), dtype=np.uint8).copy()
        return {
            "__trusted_fn__": code,
            "oid": oid,
            "name": fn.__name__,
            "globals": shipped,
            "modules": modules,
            "closure": closure,
            "defaults": self.spec(fn.__defaults__, depth + 1),
            "kwdefaults": self.spec(fn.__kwdefaults__, depth + 1),
        }

    def _class(self, cls, oid, depth):
        module = getattr(cls, "__module__", "")
        if module == "builtins":
            raise NotShippable(f"cannot send the built-in type {cls.__name__}.")
        if module.startswith("npdl.") or module == "npdl":
            try:
                self.on_module(module)
                return {"__trusted_cls__": f"{module}:{cls.__qualname__}", "oid": oid}
            except ForbiddenModule:
                pass  # this chapter's reference class: send the class itself, never its module
        bases = [self.spec(b, depth + 1) for b in cls.__bases__ if b is not object]
        attrs = {}
        for name, value in vars(cls).items():
            if name in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
                continue
            try:
                attrs[name] = self.spec(value, depth + 1)
            except NotShippable:
                continue
        return {
            "__trusted_cls__": None,
            "oid": oid,
            "name": cls.__name__,
            "bases": bases,
            "attrs": attrs,
        }


def npdl_dependencies(source: str) -> set[str]:
    """npdl modules a module's source imports (``from npdl.core import ...``)."""
    return {f"npdl.{m}" for m in re.findall(r"^\s*(?:from|import)\s+npdl\.(\w+)", source, re.M)}


def loaded_module_source(name: str) -> str:
    module = sys.modules.get(name) or __import__(name, fromlist=["_"])
    with open(module.__file__, encoding="utf-8") as handle:
        return handle.read()
