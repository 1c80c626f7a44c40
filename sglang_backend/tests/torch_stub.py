"""Stand-ins for modules SGLang imports that cannot be installed here: torch, triton, torchvision.

Why not the real ones: PyPI's default index has no CPU build of torch for Linux x86_64; its
CUDA build (~900 MB) does not even import without several GB of NVIDIA libraries, and triton
(~1 GB) and torchvision are built against it. Debian's python3-torch is 1.13, too old for SGLang.

SGLang's Mooncake backend needs these only at import time (type hints, decorators, class bases,
feature probes); the test's host pool is numpy-backed and never calls them. install(names) puts a
meta-path finder in front that serves `name` and every `name.sub` as a permissive stub module:
  - a CamelCase attribute is a class (usable with isinstance, as a base class, and for its own
    attributes); an ALL_CAPS one is a value;
  - any other attribute is a callable, falsy stub; called with a single function it returns the
    function unchanged, so `@torch.compile`, `@triton.jit` and `@torch.no_grad()` keep the code.
"""

import abc
import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
import types

VERSIONS = {"torch": "2.9.1", "triton": "3.5.1", "torchvision": "0.24.1"}

# Attributes that must be absent, because SGLang probes them with hasattr() to detect accelerators
# (a real CPU build of torch has none of them).
ABSENT = {
    "torch": {"npu", "hpu", "musa", "mlu"},
}


class _StubMeta(abc.ABCMeta):
    """Metaclass of stub classes: unknown class attributes are stubs too."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _make(f"{cls.__qualname__}.{name}", name)
        setattr(cls, name, value)
        return value

    def __or__(cls, other):
        return cls

    def __ror__(cls, other):
        return cls

    def __getitem__(cls, item):
        return cls


class Stub:
    """A permissive stand-in value."""

    def __init__(self, name):
        object.__setattr__(self, "_stub_name", name)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _make(f"{self._stub_name}.{name}", name)
        object.__setattr__(self, name, value)
        return value

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], Stub):
            return args[0]  # used as a decorator
        return Stub(f"{self._stub_name}()")

    def __mro_entries__(self, bases):
        return (object,)

    def __repr__(self):
        return f"<stub {self._stub_name}>"

    def __bool__(self):
        return False

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    # Numbers read at import time (finfo(...).max, ReduceOp values) become 1, which keeps
    # module-level arithmetic such as log2(max) or 1 / eps well defined.
    def __int__(self):
        return 1

    def __index__(self):
        return 1

    def __float__(self):
        return 1.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getitem__(self, item):
        return Stub(f"{self._stub_name}[]")

    def __contains__(self, item):
        return False

    def _binary(self, other):
        return Stub(f"{self._stub_name}(op)")

    def _unary(self):
        return Stub(f"{self._stub_name}(op)")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _binary
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __pow__ = _binary
    __or__ = __ror__ = __and__ = __rand__ = __matmul__ = _binary
    __neg__ = __pos__ = __abs__ = __invert__ = _unary

    def __lt__(self, other):
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


def _instance_init(self, *args, **kwargs):
    pass


def _instance_getattr(self, name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    return Stub(f"{type(self).__qualname__}().{name}")


# Values a CPU-only build has (SGLang tests them against None to pick a platform).
PRESET = {
    "torch.version": {"cuda": None, "hip": None, "xpu": None, "git_version": "stub",
                      "debug": False},
}

# torch's classes with lower-case names (used in type hints that pydantic turns into isinstance).
LOWER_CASE_CLASSES = {"dtype", "device", "layout", "memory_format", "finfo", "iinfo", "qscheme"}


def _make(qualname, name):
    # CamelCase: a class; CONSTANT: a value; lower_case: a callable value.
    if (name[:1].isupper() and not name.isupper()) or name in LOWER_CASE_CLASSES:
        return _StubMeta(name, (), {"__qualname__": qualname, "__module__": "stub",
                                    "__init__": _instance_init,
                                    "__getattr__": _instance_getattr})
    return Stub(qualname)


# torch.float16, torch.float8_e4m3fn, torch.bool, ...: instances of torch.dtype.
DTYPE_NAME = re.compile(r"^(float|bfloat|int|uint|complex|bool|half|double|long|short|cfloat|"
                        r"cdouble|quint|qint|chalf)\w*$")


class StubModule(types.ModuleType):
    """A module whose unknown attributes are stubs."""

    def __getattr__(self, name):
        if (name.startswith("__") and name.endswith("__")) or name in ABSENT.get(self.__name__,
                                                                                 ()):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if full in PRESET:  # a submodule with preset values, reached as an attribute
            value = importlib.import_module(full)
        elif self.__name__ == "torch" and DTYPE_NAME.match(name):
            value = self.dtype()
            value.name = name
        else:
            value = _make(f"{self.__name__}.{name}", name)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = StubModule(spec.name)
        module.__path__ = []
        module.__file__ = f"<stub {spec.name}>"
        if spec.name in VERSIONS:
            module.__version__ = VERSIONS[spec.name]
        for attr, value in PRESET.get(spec.name, {}).items():
            setattr(module, attr, value)
        return module

    def exec_module(self, module):
        pass


def _declare_distributions(names):
    """Makes importlib.metadata report the stubbed packages as installed (libraries such as
    transformers decide from the version whether torch is usable)."""
    root = tempfile.mkdtemp(prefix="mooncake-stub-dists-")
    for name in names:
        info = os.path.join(root, f"{name}-{VERSIONS.get(name, '0.0')}.dist-info")
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {VERSIONS.get(name, '0.0')}\n")
    sys.path.insert(0, root)


def install(names):
    """Serves `names` (and their submodules) as stubs from now on in this interpreter."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
    sys.meta_path.insert(0, _Finder(names))
    _declare_distributions(names)
