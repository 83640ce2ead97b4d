"""Source exec-ed INSIDE the sandbox (as the child's first code): an npdl import hook and the
trampoline that rebuilds trusted callables/objects shipped by `autograder.trusted.shipping`.

It runs in the student's namespace under dunder names. The student can overwrite it, but that
only changes what the sandbox computes, which the trusted side never believes anyway.
"""

SOURCE = r'''
def __npdl_trusted_setup__():
    import builtins, functools, importlib, importlib.abc, importlib.util, marshal, sys, types

    class _NpdlFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """Serves exactly the npdl modules the grader sent (earlier chapters' handout)."""
        sources = {}

        def find_spec(self, name, path=None, target=None):
            if name == "npdl" or name in self.sources:
                return importlib.util.spec_from_loader(name, self, is_package=(name == "npdl"))
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            if module.__name__ == "npdl":
                module.__path__ = []
                return
            module.__file__ = "/tmp/npdl/" + module.__name__.rsplit(".", 1)[-1] + ".py"
            exec(compile(self.sources[module.__name__], module.__file__, "exec"), module.__dict__)

    finder = _NpdlFinder()
    sys.meta_path.insert(0, finder)

    def add_sources(sources):
        finder.sources.update(sources)

    def add_fake_sklearn_digits(data, target):
        bunch = types.SimpleNamespace(data=data, target=target)
        datasets = types.ModuleType("sklearn.datasets")
        datasets.load_digits = lambda *a, **k: types.SimpleNamespace(data=bunch.data.copy(),
                                                                    target=bunch.target.copy())
        sklearn = types.ModuleType("sklearn")
        sklearn.datasets = datasets
        sys.modules["sklearn"], sys.modules["sklearn.datasets"] = sklearn, datasets

    def rebuild(value, memo):
        if isinstance(value, list):
            return [rebuild(v, memo) for v in value]
        if isinstance(value, tuple):
            return tuple(rebuild(v, memo) for v in value)
        if type(value) is not dict:
            return value
        if "__trusted_ref__" in value:
            return memo[value["__trusted_ref__"]]
        if "__trusted_fn__" in value:
            scope = {"__builtins__": builtins, "__name__": "__trusted__"}
            for name, module in value["modules"].items():
                scope[name] = importlib.import_module(module)
            code = marshal.loads(bytes(value["__trusted_fn__"]))
            closure = value["closure"]
            cells = None if closure is None else tuple(types.CellType() for _ in closure)
            fn = types.FunctionType(code, scope, value["name"], None, cells)
            memo[value["oid"]] = fn
            scope.update({k: rebuild(v, memo) for k, v in value["globals"].items()})
            if cells is not None:
                for cell, item in zip(cells, closure):
                    cell.cell_contents = rebuild(item, memo)
            fn.__defaults__ = rebuild(value["defaults"], memo)
            fn.__kwdefaults__ = rebuild(value["kwdefaults"], memo)
            return fn
        if "__trusted_partial__" in value:
            return functools.partial(rebuild(value["__trusted_partial__"], memo),
                                     *rebuild(value["args"], memo), **rebuild(value["kw"], memo))
        if "__trusted_cls__" in value:
            where = value["__trusted_cls__"]
            if where is not None:
                module, _, qualname = where.partition(":")
                obj = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                memo[value["oid"]] = obj
                return obj
            bases = tuple(rebuild(b, memo) for b in value["bases"]) or (object,)
            cls = type(value["name"], bases, {})
            memo[value["oid"]] = cls
            for k, v in value["attrs"].items():
                setattr(cls, k, rebuild(v, memo))
            return cls
        if "__trusted_obj__" in value:
            cls = rebuild(value["__trusted_obj__"], memo)
            obj = cls.__new__(cls)
            memo[value["oid"]] = obj
            obj.__dict__.update(rebuild(value["state"], memo))
            return obj
        return {k: rebuild(v, memo) for k, v in value.items()}

    import numpy as np

    identity, linked = {}, {}

    def tagged(value):
        """[value, ids of its arrays in encoding order]; tagged arrays are kept alive so that an
        id is never reused within the session."""
        ids = []

        def walk(item, depth=0):
            if depth > 30:
                return
            if type(item) is np.ndarray:
                identity[id(item)] = item
                ids.append(id(item))
            elif type(item) in (list, tuple):
                for v in item:
                    walk(v, depth + 1)
            elif type(item) is dict:
                for v in item.values():
                    walk(v, depth + 1)
        walk(value)
        return [value, ids]

    def tagged_call(target, attr):
        return tagged(getattr(target, attr)())

    def tagged_getattr(target, attr):
        value = getattr(target, attr)
        if callable(value) and not isinstance(value, np.ndarray):
            return ["callable", None, []]
        return ["value"] + tagged(value)

    def assign_id(child_id, value):
        identity[child_id][...] = value

    def linked_states():
        return {link: gen.bit_generator.state for link, gen in linked.items()}

    def trusted_call(target, attr, args, kwargs, adopt=(), generator_paths=(), links=()):
        """Call with rebuilt arguments; also return the shipped objects the grader adopts
        (as handles) and the final state of the Generators it passed."""
        memo = {}
        args, kwargs = rebuild(args, memo), rebuild(kwargs, memo)
        before = {oid: tagged(dict(vars(memo[oid])))[1] for oid in adopt if oid in memo}
        fn = getattr(target, attr) if attr else target
        result = fn(*args, **kwargs)
        states = []
        for path in generator_paths:
            item = [args, kwargs]
            for key in path:
                item = item[key]
            states.append(item.bit_generator.state)
        for link, path in zip(links, generator_paths):
            item = [args, kwargs]
            for key in path:
                item = item[key]
            linked[link] = item
        return [result, {oid: memo[oid] for oid in adopt if oid in memo}, states, before]

    saved = {}

    def swap(name, value):
        namespace = globals()
        if name not in saved:
            saved[name] = namespace.get(name)
        namespace[name] = value

    def restore(name):
        if name in saved:
            globals()[name] = saved.pop(name)

    def names():
        return sorted(k for k in globals() if type(k) is str)

    return (add_sources, add_fake_sklearn_digits, trusted_call, swap, restore, names, tagged_call,
            tagged_getattr, linked_states, assign_id)


(__npdl_add_sources__, __npdl_fake_digits__, __npdl_trusted_call__, __npdl_swap__,
 __npdl_restore__, __npdl_names__, __npdl_tagged_call__, __npdl_tagged_getattr__,
 __npdl_linked_states__, __npdl_assign_id__) = __npdl_trusted_setup__()
del __npdl_trusted_setup__
'''
