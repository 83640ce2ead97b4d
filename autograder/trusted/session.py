"""A `Sandbox` that also accepts trusted callables/objects as arguments, serves the handout's npdl
modules, and a namespace that resolves the student's names to sandbox proxies.

Sandbox API additions (done here, in a subclass, instead of editing ``autograder/sandbox``):
``TrustedSandbox.call`` routes calls whose arguments hold functions or objects through the child
trampoline; ``allow_modules`` serves npdl module sources to the child's import hook.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sys
import time
import types

import numpy as np

from ..handout import ALWAYS, MODULE_CHAPTER, chapter_of, modules_for
from ..sandbox import ProtocolError, RemoteClass, RemoteError, RemoteObject, Sandbox, protocol
from .child_support import SOURCE as CHILD_SOURCE
from .shipping import (
    Adopted,
    ForbiddenModule,
    NotShippable,
    Shipper,
    adopt,
    generator_paths,
    is_layer,
    loaded_module_source,
    needs_shipping,
    npdl_dependencies,
)

_AUTOGRADER = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STAND_INS = "autograder.checks.stand_ins"  # functions the checks may swap into the sandbox


class TrustedSandbox(Sandbox):
    """One student's sandbox for one notebook of ``assignment_id``."""

    def __init__(self, assignment_id: str, **kwargs):
        super().__init__(**kwargs)
        self.assignment_id = assignment_id
        self.served: set[str] = set()
        self._identity: dict[int, np.ndarray] = {}  # child array id -> the one trusted copy
        self._links: dict[int, np.random.Generator] = {}  # Generators shared with the child
        self._id_mirrors: dict[int, tuple] = {}  # child id -> (trusted array, last synced copy)
        self._flushing, self._next_link = False, 0
        self.exec(CHILD_SOURCE, filename="<grader>")
        self.allow_modules(f"npdl.{m}" for m in modules_for(assignment_id) if m != "__init__")

    # ------------------------------------------------------------------ npdl modules
    def allow_modules(self, names) -> None:
        """Serve these npdl modules (and what they import) to ``import`` inside the sandbox."""
        todo, sources = [n for n in names if n not in self.served], {}
        while todo:
            name = todo.pop()
            if name in self.served or name in sources:
                continue
            short = name.split(".", 1)[1]
            # This chapter's and later chapters' modules (and any module the handout does not
            # know) hold answers: they never enter the sandbox.
            chapter = MODULE_CHAPTER.get(short, 0 if short in ALWAYS else 10**6)
            if chapter >= chapter_of(self.assignment_id):
                raise ForbiddenModule(
                    f"{name} belongs to this assignment or a later one: "
                    "it is never available inside the sandbox."
                )
            try:
                sources[name] = loaded_module_source(name)
            except (ImportError, OSError):
                continue  # a module not written yet is simply absent (as in the handout)
            todo += [d for d in npdl_dependencies(sources[name]) if d not in self.served]
        if sources:
            super().call({"$global": "__npdl_add_sources__"}, None, (sources,))
            self.served |= set(sources)
        if "npdl.data" in sources:
            from sklearn.datasets import load_digits  # trusted copy of the digits for npdl.data

            bunch = load_digits()
            super().call(
                {"$global": "__npdl_fake_digits__"},
                None,
                (
                    np.ascontiguousarray(bunch.data, dtype=np.float64),
                    np.ascontiguousarray(bunch.target, dtype=np.int64),
                ),
            )

    def _need_module(self, name: str) -> None:
        if name not in self.served and name != "npdl":
            self.allow_modules([name])

    # ------------------------------------------------------------------ calls
    def _mirror(self, key, path, value):
        """Keep mirroring every copy read through an attribute, not only the latest one:
        ``[layer.params[k] for k in keys]`` reads ``params`` once per key, and a finite-difference
        check then perturbs the FIRST copy in place."""
        older = self._mirrors.get(key, [])
        super()._mirror(key, path, value)
        self._mirrors[key] = (older + self._mirrors.get(key, []))[-64:]

    def call(self, marker, attr, args=(), kwargs=None, timeout=None):
        try:
            return self._call(marker, attr, args, kwargs, timeout)
        finally:
            self._sync_generators()

    def list(self, marker):
        try:
            return super().list(marker)
        finally:
            self._sync_generators()

    def _call(self, marker, attr, args, kwargs, timeout):
        kwargs = dict(kwargs or {})
        generators = generator_paths([list(args), kwargs])
        if not (generators or needs_shipping(args) or needs_shipping(kwargs)):
            if attr in TAGGED_METHODS and not args and not kwargs:
                value, ids = self._checked_pair(
                    super().call(
                        {"$global": "__npdl_tagged_call__"},
                        None,
                        (RemoteObject(self, marker), attr),
                        timeout=timeout,
                    )
                )
                return self._same_arrays(value, ids)
            try:
                return super().call(marker, attr, args, kwargs, timeout)
            except RemoteError as error:  # list(proxy) asks len() first: no __len__ is a TypeError
                if attr == "__len__" and "AttributeError" in error.remote_bases:
                    raise TypeError("object has no len()") from None
                raise
        shipper, original = Shipper(self._need_module), [list(args), kwargs]
        try:
            args, kwargs = shipper.spec(list(args)), shipper.spec(kwargs)
        except ForbiddenModule:
            raise
        except NotShippable as error:
            raise TypeError(
                f"the grader could not pass this argument to the sandboxed code: {error}"
            ) from None
        adopt_ids = [oid for oid, obj in shipper.objects.items() if is_layer(obj)]
        links = list(range(self._next_link, self._next_link + len(generators)))
        self._next_link += len(generators)
        reply = super().call(
            {"$global": "__npdl_trusted_call__"},
            None,
            (RemoteObject(self, marker), attr, args, kwargs, adopt_ids, generators, links),
            timeout=timeout,
        )
        if not (
            type(reply) is list
            and len(reply) == 4
            and type(reply[1]) is dict
            and type(reply[2]) is list
            and type(reply[3]) is dict
        ):
            raise self._broken(ProtocolError("malformed reply of a call with shipped arguments."))
        result, handles, states, array_ids = reply
        for oid, handle in handles.items():
            if oid in adopt_ids and isinstance(handle, RemoteObject):
                obj = shipper.objects[oid]
                ids = array_ids.get(oid)
                if type(ids) is list:  # the arrays it held ARE its arrays in the sandbox
                    for child_id, array in zip(ids, _plain_arrays(dict(vars(obj))), strict=False):
                        if type(child_id) is int:
                            self._identity[child_id] = array
                            self._id_mirrors[child_id] = (array, array.copy())
                adopt(obj, handle)
        for link, path, state in zip(links, generators, states, strict=False):
            _set_generator_state(original, path, state)
            generator = _follow(original, path)
            if type(generator) is np.random.Generator:
                self._links[link] = generator
        return result

    def getattr(self, marker, attr):
        if attr not in TAGGED_ATTRS:
            return super().getattr(marker, attr)
        reply = super().call(
            {"$global": "__npdl_tagged_getattr__"}, None, (RemoteObject(self, marker), attr)
        )
        if not (type(reply) is list and len(reply) == 3 and reply[0] in ("callable", "value")):
            raise self._broken(ProtocolError("malformed tagged getattr reply."))
        if reply[0] == "callable":
            return "callable", None
        return "value", self._same_arrays(*self._checked_pair(reply[1:]))

    def _checked_pair(self, reply):
        if not (
            type(reply) is list
            and len(reply) == 2
            and type(reply[1]) is list
            and all(type(i) is int for i in reply[1])
        ):
            raise self._broken(ProtocolError("malformed tagged reply."))
        return reply[0], reply[1]

    def _same_arrays(self, value, ids):
        """Give an array the child reports again (same id) the SAME trusted ndarray, refreshed
        in place, so that identity checks (``params()[0] is layer.params["W"]``) mean what they
        do in-kernel. The ids are the child's claim: they decide identity only, never values."""
        remaining = iter(ids)

        def walk(item, depth=0):
            if depth > 30:
                return item
            if type(item) is np.ndarray:
                child_id = next(remaining, None)
                cached = self._identity.get(child_id)
                if cached is None or cached.shape != item.shape or cached.dtype != item.dtype:
                    cached = self._identity[child_id] = item
                elif cached is not item and cached.flags.writeable:
                    np.copyto(cached, item)
                self._id_mirrors[child_id] = (cached, cached.copy())
                return cached
            if type(item) is list:
                return [walk(v, depth + 1) for v in item]
            if type(item) is tuple:
                return tuple(walk(v, depth + 1) for v in item)
            if type(item) is dict:
                return {k: walk(v, depth + 1) for k, v in item.items()}
            return item

        return walk(value)

    def _flush_mirrors(self):
        """Also send in-place writes to arrays known by their child id (``params()`` results,
        ``layer.params[...]``, an adopted layer's arrays), like the base class's mirrors."""
        super()._flush_mirrors()
        if self._flushing:
            return
        self._flushing = True
        try:
            for child_id, (array, before) in list(self._id_mirrors.items()):
                if not protocol.same_bytes(array, before):
                    self._id_mirrors[child_id] = (array, array.copy())
                    super().call({"$global": "__npdl_assign_id__"}, None, (child_id, array))
        finally:
            self._flushing = False

    def _sync_generators(self):
        """Generators passed to student code advance as the student's code uses them."""
        if not self._links or not self.alive:
            return
        states = super().call({"$global": "__npdl_linked_states__"}, None)
        if type(states) is dict:
            for link, state in states.items():
                if link in self._links:
                    _set_generator_state([self._links[link]], [0], state)

    def _encode_other(self, value):
        if isinstance(value, Adopted):
            value = object.__getattribute__(value, "__dict__")["_sb_handle"]
        return super()._encode_other(value)

    @contextlib.contextmanager
    def budget(self, seconds: float):
        """Every request in the block must finish within ``seconds`` in total (one test cell
        makes many calls: the per-call timeout alone would not bound it)."""
        saved = self._session_deadline
        self._session_deadline = min(saved, time.monotonic() + seconds)
        try:
            yield
        finally:
            self._session_deadline = saved

    def names(self) -> set[str]:
        """The student's global names (from the sandbox: untrusted, used only as a lookup set)."""
        value = super().call({"$global": "__npdl_names__"}, None)
        if not (isinstance(value, list) and all(type(n) is str for n in value)):
            return set()
        return {n for n in value if n.isidentifier() and not n.startswith("__npdl_")}


TAGGED_METHODS = ("params", "grads", "state_dict")  # Sequential methods returning its arrays
TAGGED_ATTRS = ("params", "grads", "buffers")  # Layer.params/grads/buffers dicts


def _plain_arrays(value, depth=0) -> list:
    """The ndarrays in nested lists/tuples/dicts, in the order the child's ``tagged`` walks them."""
    if depth > 30:
        return []
    if type(value) is np.ndarray:
        return [value]
    if type(value) in (list, tuple):
        return [a for v in value for a in _plain_arrays(v, depth + 1)]
    if type(value) is dict:
        return [a for v in value.values() for a in _plain_arrays(v, depth + 1)]
    return []


def _follow(root, path):
    try:
        for key in path:
            root = root[key]
        return root
    except (KeyError, IndexError, TypeError):
        return None


def _set_generator_state(root, path, state) -> None:
    """Copy a Generator's final state back from the sandbox (as if the student's code had used
    the caller's Generator itself). Only a valid PCG64 state is accepted."""
    item = root
    try:
        for key in path:
            item = item[key]
        if type(item) is np.random.Generator and type(state) is dict:
            item.bit_generator.state = state
    except (KeyError, IndexError, TypeError, ValueError, OverflowError):
        pass


def _trusted_value(value) -> bool:
    """Keep a locked cell's binding trusted-side: modules, functions and plain data.

    Classes and other objects resolve to the sandbox instead, so that objects built for the
    student's code live where that code runs (e.g. ``Dense`` for the student's ``Sequential``).
    """
    if isinstance(
        value,
        (
            types.ModuleType,
            types.FunctionType,
            types.BuiltinFunctionType,
            np.ufunc,
            np.ndarray,
            np.generic,
            np.random.Generator,
            bool,
            int,
            float,
            complex,
            str,
            bytes,
            type(None),
        ),
    ):
        return True
    if type(value) in (list, tuple, dict):
        items = value.values() if type(value) is dict else value
        return all(_trusted_value(v) for v in items)
    return False


class TrustedNamespace(dict):
    """Globals of trusted test code: own keys first, then builtins, then the student's names
    as sandbox proxies (`RemoteClass`)."""

    def __init__(self, box: TrustedSandbox):
        super().__init__({"__builtins__": builtins, "__name__": "__main__"})
        self.box = box
        self.remote_names: set[str] = set()

    def refresh(self) -> None:
        self.remote_names = self.box.names() if self.box.alive else set()

    def _remote(self, name):
        if name in self.remote_names and not hasattr(builtins, name):
            return RemoteClass(self.box, name)
        raise KeyError(name)

    def __missing__(self, name):
        return self._remote(name)

    def __contains__(self, name):
        return dict.__contains__(self, name) or (
            name in self.remote_names and not hasattr(builtins, name)
        )

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def __setitem__(self, name, value):
        # A check swaps a stand-in in for a student's helper while it runs (no cascade): only
        # functions of autograder.checks.stand_ins, never npdl code, may enter the sandbox so.
        if (
            name in self.remote_names
            and not dict.__contains__(self, name)
            and sys._getframe(1).f_code.co_filename.startswith(_AUTOGRADER)
        ):
            if isinstance(value, RemoteClass) and value._sb_marker == {"$global": name}:
                self.box.call({"$global": "__npdl_restore__"}, None, (name,))
                return
            if isinstance(value, types.FunctionType) and value.__module__ == _STAND_INS:
                self.box.call({"$global": "__npdl_swap__"}, None, (name, value))
                return
        dict.__setitem__(self, name, value)

    def keep_trusted(self, before: dict) -> None:
        """After a locked cell ran here: drop the names it bound to classes/objects."""
        for name, value in list(dict.items(self)):
            if name.startswith("__"):
                continue
            if (name not in before or before[name] is not value) and not _trusted_value(value):
                dict.__delitem__(self, name)
