"""Trusted-side proxies: objects that live in the sandbox, used as if they were local.

Checks written for local classes run unchanged against a `RemoteClass`:
calling it constructs an object in the child, and every attribute access or
method call on the resulting `RemoteObject` is one RPC. Values come back as
plain data (validated ndarrays, numbers, lists, dicts) or as further proxies.

Semantics to know:

* Array arguments are copies in the child, but in-place writes the student's
  code makes to them are copied back into the caller's arrays after the call
  (so ``optimizer.step(params, grads)`` updates ``params`` as it would locally).
* Arrays read through an attribute (``layer.params["W"]``) are copies that are
  *mirrored*: writing into them in place (``layer.params["W"][...] = w``) is
  sent to the child before the next request. Rebinding a key is not.
* Dunder names are never forwarded (no ``__eq__``/``__array__`` tricks); only
  ``__call__``, ``__getitem__``, ``__setitem__``, ``__len__``, ``__iter__`` and
  ``__contains__`` are, explicitly.
"""

from __future__ import annotations


class RemoteObject:
    """A reference to an object in the sandbox's handle table (or a global name)."""

    def __init__(self, session, marker: dict, type_name: str = "object"):
        object.__setattr__(self, "_sb_session", session)
        object.__setattr__(self, "_sb_marker", marker)
        object.__setattr__(self, "_sb_type", type_name)
        object.__setattr__(self, "_sb_methods", set())

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_sb_"):
            raise AttributeError(name)
        if name in self._sb_methods:
            return RemoteMethod(self, name)
        kind, value = self._sb_session.getattr(self._sb_marker, name)
        if kind == "callable":
            self._sb_methods.add(name)
            return RemoteMethod(self, name)
        return value

    def __setattr__(self, name, value):
        self._sb_methods.discard(name)
        self._sb_session.setattr(self._sb_marker, name, value)

    def __call__(self, *args, **kwargs):
        return self._sb_session.call(self._sb_marker, None, args, kwargs)

    def __getitem__(self, key):
        return self._sb_session.call(self._sb_marker, "__getitem__", (key,))

    def __setitem__(self, key, value):
        self._sb_session.call(self._sb_marker, "__setitem__", (key, value))

    def __contains__(self, key):
        return self._sb_session.call(self._sb_marker, "__contains__", (key,)) is True

    def __len__(self):
        return self._sb_session.call(self._sb_marker, "__len__")

    def __iter__(self):
        return iter(self._sb_session.list(self._sb_marker))

    def __repr__(self):
        return f"<sandboxed {self._sb_type} {self._sb_marker}>"


class RemoteClass(RemoteObject):
    """A class (or function) defined by the student's code: ``RemoteClass(box, "ReLU")``.

    Calling it constructs an instance in the child and returns a `RemoteObject`.
    """

    def __init__(self, session, name: str):
        super().__init__(session, {"$global": name}, name)
        object.__setattr__(self, "__name__", name)
        object.__setattr__(self, "__qualname__", name)


class RemoteMethod:
    """A bound method of a `RemoteObject`; calling it is one RPC."""

    def __init__(self, owner: RemoteObject, name: str):
        self.owner, self.__name__ = owner, name

    def __call__(self, *args, **kwargs):
        owner = self.owner
        return owner._sb_session.call(owner._sb_marker, self.__name__, args, kwargs)

    def __repr__(self):
        return f"<sandboxed method {self.owner._sb_type}.{self.__name__}>"
