"""The package as installed: the extension module poscache._poscache inside the package poscache,
its types named poscache.X, and the type stubs (__init__.pyi, with py.typed) held to the module:
every public name, class, base, method, argument name and default, Position's attributes, and
the keys of the dicts stats() and changes() return. Nothing else checks the stubs (mypy is not
among the suite's packages), so a binding change that leaves them behind fails here."""
import ast
import os
from decimal import Decimal

import poscache

PACKAGE = os.path.dirname(poscache.__file__)


class _NoDefault:
    def __repr__(self):
        return "(no default)"


NO_DEFAULT = _NoDefault()


def _stub():
    with open(os.path.join(PACKAGE, "__init__.pyi"), encoding="utf-8") as f:
        return ast.parse(f.read())


def _classes():
    return {n.name: n for n in _stub().body if isinstance(n, ast.ClassDef)}


def _type_check_only(cls):
    return any(isinstance(d, ast.Name) and d.id == "type_check_only" for d in cls.decorator_list)


def _is_property(f):
    return any(isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list)


def _stub_methods(cls):
    """name -> [(argument, default or NO_DEFAULT)], self left out."""
    out = {}
    for f in cls.body:
        if isinstance(f, ast.FunctionDef) and not _is_property(f):
            args = [a.arg for a in f.args.args[1:]]
            defaults = [ast.literal_eval(d) for d in f.args.defaults]
            padded = [NO_DEFAULT] * (len(args) - len(defaults)) + defaults
            out[f.name] = list(zip(args, padded))
    return out


def _split_top(text):
    """Splits at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def _runtime_arguments(function):
    """[(argument, default or NO_DEFAULT)] from the signature line the binding documents:
    pybind11's `name(self: T, a: int, b: Optional[str] = None) -> R`, or get()'s own
    `get(ns, account, instrument): ...`."""
    line = function.__doc__.splitlines()[0]
    start = line.index("(")
    depth = 0
    for end in range(start, len(line)):
        depth += {"(": 1, ")": -1}.get(line[end], 0)
        if depth == 0:
            break
    args = []
    for part in _split_top(line[start + 1 : end]):
        name, _, default = part.partition("=")
        name = name.split(":")[0].strip()
        if name != "self":
            args.append((name, ast.literal_eval(default.strip()) if default else NO_DEFAULT))
    return args


def test_the_extension_is_inside_the_package_with_its_stubs_beside_it():
    assert os.path.basename(poscache.__file__) == "__init__.py"
    assert poscache._poscache.__name__ == "poscache._poscache"
    assert os.path.dirname(poscache._poscache.__file__) == PACKAGE
    for f in ("__init__.pyi", "py.typed"):
        assert os.path.isfile(os.path.join(PACKAGE, f)), f"no {f} beside the module in {PACKAGE}"


def test_the_types_are_named_for_the_package():
    for name in poscache.__all__:
        value = getattr(poscache, name)
        if isinstance(value, type):
            assert value.__module__ == "poscache", f"{name}.__module__ is {value.__module__}"
    assert "poscache.Producer" in poscache.Producer.fill.__doc__.splitlines()[0]


def test_the_stubs_name_what_the_module_exports_and_nothing_else():
    stub = _stub()
    exported = next(
        ast.literal_eval(n.value)
        for n in stub.body
        if isinstance(n, ast.Assign) and n.targets[0].id == "__all__"
    )
    assert sorted(exported) == sorted(poscache.__all__)
    runtime = {n for n in vars(poscache._poscache) if not n.startswith("_")} | {"__version__"}
    assert set(poscache.__all__) == runtime
    defined = {n for n, c in _classes().items() if not _type_check_only(c)} | {"__version__"}
    assert defined == runtime, f"the stubs define {sorted(defined)}, the module {sorted(runtime)}"
    for name, c in _classes().items():
        if _type_check_only(c):
            assert not hasattr(poscache, name), f"{name} exists at run time: drop type_check_only"


def test_the_stubs_give_every_exception_its_base():
    for name, c in _classes().items():
        runtime = getattr(poscache, name, None)
        if isinstance(runtime, type) and issubclass(runtime, BaseException):
            assert [b.id for b in c.bases] == [b.__name__ for b in runtime.__bases__], name


def test_the_stubs_give_every_method_its_arguments_and_defaults():
    classes = _classes()
    for name in ("Reader", "Producer"):
        cls = getattr(poscache, name)
        stub = _stub_methods(classes[name])
        public = {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}
        public |= {n for n in ("__enter__", "__exit__") if n in vars(cls)}  # context managers
        assert set(stub) - {"__init__"} == public, f"{name}: {sorted(stub)} vs {sorted(public)}"
        for method, arguments in stub.items():
            runtime = _runtime_arguments(getattr(cls, method))
            assert arguments == runtime, f"{name}.{method}: stubs {arguments}, module {runtime}"


def test_the_stubs_give_every_attribute_of_a_position():
    c = _classes()["Position"]
    properties = {f.name for f in c.body if isinstance(f, ast.FunctionDef) and _is_property(f)}
    runtime = {n for n in vars(poscache.Position) if not n.startswith("_")}
    assert properties == runtime
    for dunder in ("__getitem__", "__contains__"):
        assert dunder in _stub_methods(c) and hasattr(poscache.Position, dunder)


def _keys(name):
    c = _classes()[name]
    required, every, types = set(), set(), {}
    for a in c.body:
        if isinstance(a, ast.AnnAssign):
            key = a.target.id
            every.add(key)
            t = a.annotation
            if not (isinstance(t, ast.Subscript) and t.value.id == "NotRequired"):
                required.add(key)
            if isinstance(t, ast.Name):
                types[key] = t.id
    return required, every, types


def _check_dict(name, d):
    required, every, types = _keys(name)
    assert required <= set(d) <= every, f"{name}: stubs {sorted(every)}, module {sorted(d)}"
    for key, t in types.items():
        if key in d:
            found = type(d[key]).__name__
            assert found == t, f"{name}[{key!r}] is a {found}; the stubs say {t}"


def test_the_dicts_have_the_keys_and_types_the_stubs_give(writer):
    r = poscache.Reader(writer)
    p = poscache.Producer(writer, "py-stubs")
    at = r.change_position()
    seq = p.fill("spot", "w1", "SOL", "buy", Decimal("1"), "100", trade_id="S1")
    assert p.wait_applied(seq, timeout=10)
    status, _, changes = r.changes(at)
    assert status == "ok" and changes
    _check_dict("ReaderStats", r.stats())
    _check_dict("ProducerStats", p.stats())
    for change in changes:
        _check_dict("Change", change)
