"""Checkpoints: the original release's network pickles (read safely) and the project's own format.

Original pickles embed Python source that the official loader executes. Here a restricted unpickler
resolves only an explicit allow-list of globals (EG3D ref §3.3); persistent objects and the original's
`training.*` / `torch.nn.modules.*` classes become inert stubs that merely hold their `__dict__`, from
which the state_dict is flattened in the original key order and loaded into our own modules. Nothing
from the file is executed or compiled.

Our own format is one `torch.save` dict (loadable with `torch.load(weights_only=True)`), written
atomically, holding the constructor kwargs, rendering kwargs, weights and a sha256 digest of the tensors.

Both formats are read by the same restricted unpickler (the pure-Python one, so that every opcode that
builds a container or applies state can be checked): numpy values are rebuilt from a fixed set of dtype
names and their bytes, state (BUILD) is applied only to our inert stubs, containers are bounded, and every
tensor view is checked against the storage behind it before anything is materialised. A file from the
internet can neither run code nor crash, exhaust or hang the process; anything wrong is one CheckpointError.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import stat
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch
from torch import nn

from core.errors import CheckpointError, one_line
from core.fileio import atomic_path
from core.triplane import TriPlaneGenerator

FORMAT = "triplane-studio"
VERSION = 1
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pt", ".pth")

MAX_ITEMS = 10_000
"""Items in one dict, list, tuple or set (the largest in a real EG3D snapshot has a few dozen)."""
MAX_TENSORS = 20_000
"""Tensors in one file (a full EG3D training snapshot holds about 1,500)."""
MAX_DEPTH = 32
"""Nesting of kwargs and module trees (a real snapshot nests about 8 deep)."""
MAX_DIMS = 8
MAX_STUB_CLASSES = 1_000
MAX_NODES = 1_000_000
"""Nodes visited by any walk over loaded data: shared references (a DAG) must not make a walk exponential."""
MAX_SET_ITEMS = 1_000_000
"""Items copied by set()/frozenset() calls in one file (each call copies its argument)."""
MAX_OPS = 500_000
"""Pickle opcodes in one file (the fixture snapshot, with the released architecture, has 41,000; a training
snapshot of ours about 30,000): bounds the objects a file can create and the time it can take."""


class _Budget:
    """A count of nodes a walk may still visit."""

    def __init__(self, n: int = MAX_NODES):
        self.left = n

    def spend(self, what: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise CheckpointError(f"{what} too large (or referencing itself many times)")


# ---- inert stand-ins ------------------------------------------------------------------------------------
class _Stub:
    """Inert stand-in for a class of the original code base: keeps the pickled state, runs nothing.

    Persistent objects are plain _Stub instances with their class name; classes pickled by reference get
    one subclass per name (at most MAX_STUB_CLASSES per file)."""

    class_name = "?"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<stub {self.class_name}>"


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:
        pass


def _stub_class(module: str, name: str) -> type:
    return type(name, (_Stub,), {"class_name": f"{module}.{name}", "__module__": "core.checkpoint.stubs"})


def _reconstruct_persistent(meta: Any) -> _Stub:
    """Replacement for torch_utils.persistence._reconstruct_persistent_obj: never reads module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CheckpointError("persistent object with an unexpected layout")
    if meta.get("version") != 6:
        raise CheckpointError(f"persistent object version {meta.get('version')!r} (expected 6)")
    name = meta.get("class_name")
    if not isinstance(name, str) or not name.isidentifier():
        raise CheckpointError("persistent object with a malformed class name")
    stub = _Stub()
    stub.__dict__["class_name"] = f"persistent.{name}"
    stub.__setstate__(meta["state"])
    return stub


# numpy values (the original stores gains as np.float64) are rebuilt from a dtype name and raw bytes;
# numpy's own dtype/scalar machinery never sees data from the file.
_NUMPY_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


class _NumpyDType:
    """A dtype named in the file: only a plain numeric name from a fixed set, little-endian."""

    def __init__(self, name: str):
        self.name = name

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byte order, subarray, names, fields, elsize, alignment, flags)
        if (not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", "|", "=")
                or any(s is not None for s in state[2:5])):
            raise CheckpointError("numpy dtype with an unsupported layout")


def _numpy_dtype(name: Any, align: Any = False, copy: Any = False) -> _NumpyDType:
    if not isinstance(name, str) or name not in _NUMPY_DTYPES:
        raise CheckpointError(f"numpy dtype {str(name)[:20]!r} is not a plain number type")
    return _NumpyDType(name)


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | bool:
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise CheckpointError("malformed numpy scalar")
    np_dtype = np.dtype("<" + dtype.name)
    if len(data) != np_dtype.itemsize:
        raise CheckpointError("malformed numpy scalar")
    return np.frombuffer(data, dtype=np_dtype, count=1)[0].item()


# ---- tensors and storages -------------------------------------------------------------------------------
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """What `torch.FloatStorage` etc. resolve to: just the dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage:
    """A storage read from the file: a flat tensor of its dtype."""

    def __init__(self, flat: torch.Tensor):
        self.flat = flat


def _flat_from_bytes(raw: bytes | bytearray, dtype: torch.dtype, numel: int) -> _Storage:
    if numel == 0:
        return _Storage(torch.empty(0, dtype=dtype))
    return _Storage(torch.frombuffer(bytearray(raw), dtype=dtype, count=numel))


def _int(value: Any, what: str, lo: int = 0, hi: int = 1 << 62) -> int:
    if type(value) is not int or not lo <= value <= hi:
        shown = value if type(value) is int and abs(value) < 1 << 64 else type(value).__name__
        raise CheckpointError(f"malformed tensor: {what} {shown}")
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """A tensor view, checked against its storage first: no stride-0 or oversized views of a small storage."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("tensor built from something that is not a storage")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)) or len(size) != len(stride) \
            or len(size) > MAX_DIMS:
        raise CheckpointError("malformed tensor: size and stride do not match")
    offset = _int(offset, "offset")
    size = tuple(_int(s, "size") for s in size)
    stride = tuple(_int(s, "stride") for s in stride)
    numel = math.prod(size)
    available = storage.flat.numel()
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if numel > available or last >= available:
            raise CheckpointError(f"malformed tensor: a {list(size)} view of a storage of {available} elements")
        return storage.flat.as_strided(size, stride, offset)
    return torch.empty(size, dtype=storage.flat.dtype)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("parameter built from something that is not a tensor")
    return data


def _legacy_storage(blob: Any) -> _Storage:
    """A storage saved by the legacy torch.save layout (EG3D ref §3.3), parsed by hand.

    Five pickles (magic, protocol, sys info, the storage as a persistent id, its key list), then the
    element count and the raw little-endian bytes; the count must match the bytes that are there.
    """
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError("tensor storage is not a byte string")
    f = io.BytesIO(blob)
    refs: list[tuple] = []

    def load() -> Any:
        u = _SafeUnpickler(f, _STORAGE_GLOBALS, lambda pid: refs.append(pid) or len(refs) - 1)
        return u.load()
    try:
        magic, protocol, info = load(), load(), load()
        if magic != 0x1950a86a20f9469cfc6c or protocol != 1001 or not isinstance(info, dict):
            raise CheckpointError("tensor storage has an unknown layout")
        if info.get("little_endian") is not True:
            raise CheckpointError("tensor storage is big-endian")
        root, keys = load(), load()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  (any failure on hostile bytes is one clear error)
        raise CheckpointError(f"unreadable tensor storage ({one_line(e)})") from None
    if root != 0 or len(refs) != 1 or not isinstance(refs[0], tuple) or len(refs[0]) < 5:
        raise CheckpointError("tensor storage has an unknown layout")
    kind, stype, key, _location, numel = refs[0][:5]
    if kind != "storage" or not isinstance(stype, _StorageType) or keys != [key]:
        raise CheckpointError("tensor storage has an unknown layout")
    numel = _int(numel, "storage size")
    head = f.read(8)
    raw = f.read()
    itemsize = torch.empty(0, dtype=stype.dtype).element_size()
    if len(head) != 8 or struct.unpack("<q", head)[0] != numel or len(raw) != numel * itemsize:
        raise CheckpointError("tensor storage is truncated or has the wrong size")
    return _flat_from_bytes(raw, stype.dtype, numel)


def _tensors(value: Any, depth: int = 0, budget: _Budget | None = None):
    """Every tensor in a tree of dicts and lists."""
    budget = budget or _Budget()
    budget.spend("checkpoint")
    if depth > MAX_DEPTH:
        raise CheckpointError("nested too deeply (or cyclic)")
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v, depth + 1, budget)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v, depth + 1, budget)


def _check_amplification(tensors) -> None:
    """Views may share storages, but all of them together may not claim much more than the storages hold:
    loading them into a network (which copies each) must not turn a small file into a huge allocation."""
    storages: dict[int, int] = {}
    claimed = 0
    for t in tensors:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        claimed += t.numel() * t.element_size()
    if claimed > 2 * sum(storages.values()) + (1 << 20):
        raise CheckpointError(f"its tensors claim {claimed:,} bytes from {sum(storages.values()):,} bytes of "
                              "storage (views repeated to inflate memory)")


def _storage_globals() -> dict[tuple[str, str], Any]:
    return {("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()}


_STORAGE_GLOBALS = _storage_globals()

_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _legacy_storage,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "device"): torch.device,
    **_STORAGE_GLOBALS,
    **{("torch", name): getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name), torch.dtype)},
}

_CKPT_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "device"): torch.device,
    **_STORAGE_GLOBALS,
}

_KEY_TYPES = (str, int, float, bool, type(None))


# ---- the restricted unpickler ---------------------------------------------------------------------------
_D = pickle._Unpickler.dispatch  # the pure-Python unpickler's opcode table


class _SafeUnpickler(pickle._Unpickler):
    """Unpickler that resolves only `allowed` globals and checks every opcode that builds or mutates objects.

    Refused outright: INST/OBJ/EXT*/PERSID (not in the formats), REDUCE/NEWOBJ of anything but an allowed
    callable, BUILD on anything but our stubs, containers over MAX_ITEMS, dict keys and set members that
    are not plain values (hashing a deeply nested tuple would overflow the C stack).
    """

    def __init__(self, file: BinaryIO, allowed: dict[tuple[str, str], Any],
                 persistent: Callable[[Any], Any] | None = None):
        super().__init__(file)
        self.allowed = allowed
        self._callables = {id(v) for v in allowed.values() if callable(v)}
        self._persistent = persistent
        self.tensors = 0
        self._stubs: dict[tuple[str, str], type] = {}
        self._storages: dict[int, tuple[Any, _Storage]] = {}
        self._set_items = MAX_SET_ITEMS

    def find_class(self, module: Any, name: Any) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.allowed is _PICKLE_GLOBALS and isinstance(module, str) and isinstance(name, str) and (
                module == "training" or module.startswith(("training.", "torch.nn.modules."))) \
                and name.isidentifier():
            if (module, name) not in self._stubs:  # non-persistent classes of the original code base
                if len(self._stubs) >= MAX_STUB_CLASSES:
                    raise CheckpointError(f"more than {MAX_STUB_CLASSES:,} different classes")
                self._stubs[(module, name)] = _stub_class(module, name)
            return self._stubs[(module, name)]
        raise CheckpointError(f"refusing to load: the file references {str(module)[:80]}.{str(name)[:80]}, "
                              "which is not on the allow-list of a network checkpoint")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CheckpointError("unexpected persistent id in the pickle")
        return self._persistent(pid)

    def _callable(self, func: Any) -> bool:
        return id(func) in self._callables or (isinstance(func, type) and issubclass(func, _Stub))

    def _refuse(self, what: str) -> None:
        raise CheckpointError(f"the pickle uses {what}, which a network checkpoint never does")

    def _sized(self, n: int) -> None:
        if n > MAX_ITEMS:
            raise CheckpointError(f"a container with more than {MAX_ITEMS:,} items")

    def _keys(self, keys) -> None:
        if not all(isinstance(k, _KEY_TYPES) for k in keys):
            raise CheckpointError("a dict key or set member that is not a plain value")

    def load(self) -> Any:
        """pickle._Unpickler.load with an opcode budget (each opcode creates at most one small object)."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read, self.readline = self._unframer.read, self._unframer.readline
        self.readinto = self._unframer.readinto
        self.metastack, self.stack = [], []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        try:
            for _ in range(MAX_OPS):
                key = read(1)
                if not key:
                    raise EOFError("the pickle ends early")
                dispatch[key[0]](self)
        except pickle._Stop as stop:
            return stop.value
        raise CheckpointError(f"more than {MAX_OPS:,} pickle opcodes")

    dispatch: ClassVar[dict] = dict(_D)

    def load_reduce(self):
        args, func = self.stack[-1], self.stack[-2]
        if not self._callable(func) or not isinstance(args, tuple):
            self._refuse(f"a call of {type(func).__name__}")
        if func is _rebuild_tensor:
            self.tensors += 1
            if self.tensors > MAX_TENSORS:
                raise CheckpointError(f"more than {MAX_TENSORS:,} tensors")
        if func in (collections.OrderedDict, _EasyDict) and args:
            self._refuse("a dict built from arguments")
        if func in (set, frozenset) and args:
            if not isinstance(args[0], (list, tuple, str)):
                self._refuse("a set built from a non-sequence")
            self._sized(len(args[0]))
            self._set_items -= len(args[0])
            if self._set_items < 0:
                raise CheckpointError(f"sets with more than {MAX_SET_ITEMS:,} items in total")
            self._keys(args[0])
        if func is _legacy_storage and args:  # one storage per blob, however often the blob is referenced
            key = id(args[0])
            if key not in self._storages:
                if len(self._storages) >= MAX_TENSORS:
                    raise CheckpointError(f"more than {MAX_TENSORS:,} storages")
                self._storages[key] = (args[0], _legacy_storage(*args))
            del self.stack[-1]
            self.stack[-1] = self._storages[key][1]
            return
        del self.stack[-1]
        self.stack[-1] = func(*args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        args, cls = self.stack[-1], self.stack[-2]
        if not (isinstance(cls, type) and (issubclass(cls, (_Stub, _EasyDict)) or cls is collections.OrderedDict)) \
                or args != ():
            self._refuse(f"construction of {type(cls).__name__}")
        del self.stack[-1]
        self.stack[-1] = cls.__new__(cls)
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, (_Stub, _NumpyDType)):
            inst.__setstate__(state)
        elif not isinstance(inst, _EasyDict):
            self._refuse(f"state applied to {type(inst).__name__}")
        del self.stack[-1]
    dispatch[pickle.BUILD[0]] = load_build

    def load_setitem(self):
        value, key, target = self.stack[-1], self.stack[-2], self.stack[-3]
        if type(target) not in (dict, collections.OrderedDict, _EasyDict):
            self._refuse(f"item assignment on {type(target).__name__}")
        self._keys([key])
        target[key] = value
        self._sized(len(target))
        del self.stack[-2:]
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) not in (dict, collections.OrderedDict, _EasyDict):
            self._refuse(f"item assignment on {type(target).__name__}")
        self._sized(len(items) // 2 + len(target))
        self._keys(items[0::2])
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self):
        value, target = self.stack[-1], self.stack[-2]
        if type(target) is not list:
            self._refuse(f"append on {type(target).__name__}")
        target.append(value)
        self._sized(len(target))
        del self.stack[-1]
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not list:
            self._refuse(f"append on {type(target).__name__}")
        target.extend(items)
        self._sized(len(target))
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            self._refuse(f"set update on {type(target).__name__}")
        self._keys(items)
        target.update(items)
        self._sized(len(target))
    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_frozenset(self):
        items = self.pop_mark()
        self._sized(len(items))
        self._keys(items)
        self.append(frozenset(items))
    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def load_tuple(self):
        items = self.pop_mark()
        self._sized(len(items))
        self.append(tuple(items))
    dispatch[pickle.TUPLE[0]] = load_tuple

    def load_list(self):
        items = self.pop_mark()
        self._sized(len(items))
        self.append(items)
    dispatch[pickle.LIST[0]] = load_list

    def load_dict(self):
        items = self.pop_mark()
        self._sized(len(items) // 2)
        self._keys(items[0::2])
        self.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})
    dispatch[pickle.DICT[0]] = load_dict

    def _unsupported(self):
        self._refuse("an opcode outside the network formats")
    for _op in (pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4, pickle.PERSID,
                pickle.NEWOBJ_EX, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER, pickle.BYTEARRAY8):
        dispatch[_op[0]] = _unsupported
    del _op


def _open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading; a FIFO, device or directory is refused before it can block."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except OSError as e:
        raise CheckpointError(f"{path}: {e.strerror}") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after the stat
        f.close()
        raise CheckpointError(f"{path} is not a regular file")
    return f


class _Clamped:
    """A file whose reads never ask for more than is left: a length field of 2**63 costs nothing."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.left = os.fstat(f.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self.f.readline(self.left)
        self.left -= len(line)
        return line


def _unpickle_pickle(path: str | os.PathLike) -> Any:
    with _open_regular(path) as f:
        return _SafeUnpickler(_Clamped(f), _PICKLE_GLOBALS).load()


def _plain(value: Any, depth: int = 0, budget: _Budget | None = None) -> Any:
    """EasyDicts and other containers -> plain dicts/lists (so kwargs are JSON- and torch.load-safe)."""
    budget = budget or _Budget(100_000)
    budget.spend("kwargs")
    if depth > MAX_DEPTH:
        raise CheckpointError("kwargs nested too deeply (or cyclic)")
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, depth + 1, budget) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, depth + 1, budget) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flatten(stub: Any, prefix: str = "", depth: int = 0, budget: _Budget | None = None) -> dict[str, torch.Tensor]:
    """A stub module tree -> state_dict in the original order: parameters, buffers, then children."""
    budget = budget or _Budget(100_000)
    budget.spend("module tree")
    if depth > MAX_DEPTH:
        raise CheckpointError("module tree nested too deeply (or cyclic)")
    state = stub.state if isinstance(stub, _Stub) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{prefix or 'module'} has no module state")
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(skip, (set, frozenset)):
        raise CheckpointError(f"{prefix or 'module'} has a malformed buffer set")
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"{prefix or 'module'}: {group} is not a dict")
        for name, t in entries.items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = t
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"{prefix or 'module'}: _modules is not a dict")
    for name, child in children.items():
        if child is not None:
            out.update(_flatten(child, f"{prefix}{name}.", depth + 1, budget))
            if len(out) > MAX_TENSORS:
                raise CheckpointError(f"more than {MAX_TENSORS:,} weights")
    return out


def read_network_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an original network pickle safely -> {'G_ema': {...}, 'G': ..., 'D': ..., 'training_set_kwargs'}.

    Each network entry is a dict with class_name, init_kwargs, state_dict and the generator's
    rendering_kwargs / neural_rendering_resolution where present. Any damage is one CheckpointError.
    """
    try:
        data = _unpickle_pickle(path)
        return _network_entries(path, data)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the network pickle") from None
    except Exception as e:  # noqa: BLE001  any failure on hostile bytes: struct.error, EOFError, RecursionError...
        raise CheckpointError(f"{path} is not a readable network pickle "
                              f"(truncated or corrupt: {type(e).__name__}: {one_line(e, 120)})") from None


def _network_entries(path: str | os.PathLike, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict with G_ema, found {type(data).__name__}")
    out: dict[str, Any] = {"training_set_kwargs": _plain(data.get("training_set_kwargs"))}
    for key in ("G_ema", "G", "D"):
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, _Stub) or not isinstance(obj.state, dict):
            raise CheckpointError(f"{path}: {key} is not a network object")
        st = obj.state
        out[key] = {
            "class_name": obj.class_name.split(".")[-1],
            "init_args": _plain(st.get("_init_args", ())),
            "init_kwargs": _plain(st.get("_init_kwargs", {})),
            "state_dict": _flatten(obj),
            "rendering_kwargs": _plain(st.get("rendering_kwargs")),
            "neural_rendering_resolution": st.get("neural_rendering_resolution"),
        }
    if "G_ema" not in out:
        keys = sorted(str(k)[:40] for k in list(data)[:20])
        raise CheckpointError(f"{path}: no G_ema network in the pickle (keys: {keys})")
    _check_amplification(t for key in ("G_ema", "G", "D") if key in out for t in out[key]["state_dict"].values())
    return out


# ---- our own format -----------------------------------------------------------------------------------
def tensor_digest(data: Any) -> str:
    """sha256 over every tensor's name (its path in the dict), dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    budget = _Budget()

    def walk(name: str, value: Any, depth: int) -> None:
        budget.spend("checkpoint")
        if depth > MAX_DEPTH:
            raise CheckpointError("checkpoint nested too deeply (or cyclic)")
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                walk(f"{name}/{k}", value[k], depth + 1)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{name}/{i}", v, depth + 1)
    walk("", {k: v for k, v in data.items() if k != "digest"}, 0)
    return "sha256:" + h.hexdigest()


def save_checkpoint(path: str | os.PathLike, G_ema: TriPlaneGenerator, *, G: nn.Module | None = None,
                    D: nn.Module | None = None, training: dict | None = None) -> None:
    """Write the project's checkpoint atomically (temp file, fsync, rename), with a digest of its tensors.

    `training` (optimizer states, progress, RNG, options) must hold only tensors, numbers, strings,
    lists and dicts so that the file stays loadable with weights_only=True.
    """
    def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    data: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "G_kwargs": _plain(G_ema.init_kwargs),
        "rendering_kwargs": _plain(G_ema.rendering_kwargs),
        "neural_rendering_resolution": int(G_ema.neural_rendering_resolution),
        "G_ema": cpu(G_ema),
    }
    if G is not None:
        data["G"] = cpu(G)
    if D is not None:
        data["D_kwargs"] = _plain(getattr(D, "init_kwargs", {}))
        data["D"] = cpu(D)
    if training is not None:
        data["training"] = training
    data["digest"] = tensor_digest(data)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def _unpickle_torch_zip(f: BinaryIO, size: int) -> Any:
    """The dict in a torch.save zip, read with the restricted unpickler; storages come from the zip records."""
    zf = zipfile.ZipFile(f)
    infos = zf.infolist()
    if len(infos) > MAX_TENSORS + 16:
        raise CheckpointError(f"more than {MAX_TENSORS:,} records")
    pkls = [i for i in infos if i.filename.endswith("data.pkl") and i.filename.count("/") == 1]
    if len(pkls) != 1:
        raise CheckpointError("not a torch.save archive (no single data.pkl)")
    prefix = pkls[0].filename[: -len("data.pkl")]
    records = {i.filename: i for i in infos}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise CheckpointError(f"record {info.filename[:80]} is compressed or larger than the file")
    order = records.get(prefix + "byteorder")
    if order is not None and zf.read(order) != b"little":
        raise CheckpointError("big-endian tensors are not supported")
    loaded: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage" \
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str):
            raise CheckpointError("unexpected persistent id in the archive")
        _, stype, key, _location, numel = pid
        numel = _int(numel, "storage size")
        if key not in loaded:
            info = records.get(f"{prefix}data/{key}")
            itemsize = torch.empty(0, dtype=stype.dtype).element_size()
            if info is None or info.file_size != numel * itemsize:
                raise CheckpointError(f"storage {key[:20]} is missing or has the wrong size")
            loaded[key] = _flat_from_bytes(zf.read(info), stype.dtype, numel)
        elif loaded[key].flat.dtype != stype.dtype or loaded[key].flat.numel() != numel:
            raise CheckpointError(f"storage {key[:20]} is declared twice differently")
        return loaded[key]
    raw = zf.read(pkls[0])
    return _SafeUnpickler(io.BytesIO(raw), _CKPT_GLOBALS, storage).load()


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Our own checkpoint -> its raw dict (format, version, G_kwargs, G_ema, and G/D/training if saved).

    Read with the restricted unpickler (what torch.load(weights_only=True) allows, with bounds); the
    tensor digest is verified when the file has one (files written before digests existed have none).
    """
    try:
        with _open_regular(path) as f:
            data = _unpickle_torch_zip(f, os.fstat(f.fileno()).st_size)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the checkpoint") from None
    except Exception as e:  # noqa: BLE001  damaged zips and pickles: BadZipFile, EOFError, struct.error...
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"(truncated or corrupt: {type(e).__name__}: {one_line(e, 120)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a {FORMAT} checkpoint")
    version = data.get("version", 0)
    if type(version) is not int:
        raise CheckpointError(f"{path}: malformed format version")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {version} > {VERSION})")
    for key in ("G_kwargs", "G_ema"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    try:
        _check_amplification(_tensors(data))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if "digest" in data:
        try:
            actual = tensor_digest(data)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        if data["digest"] != actual:
            raise CheckpointError(f"{path}: the weights do not match the digest recorded when the file was "
                                  "written (the file is damaged)")
    return data


# ---- loading a generator from either ------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A file, or a training run directory (-> its newest snapshot by name)."""
    p = Path(path)
    if p.is_dir():
        snaps = sorted(f for f in p.iterdir() if f.suffix in CHECKPOINT_SUFFIXES and f.name.startswith(
            ("network-snapshot", "snapshot")))
        if not snaps:
            raise CheckpointError(f"{p} is a directory without network-snapshot-*.ckpt/.pkl files")
        return snaps[-1]
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if not p.is_file():
        raise CheckpointError(f"{p} is not a regular file")
    return p


def sniff_format(path: str | os.PathLike) -> str:
    """'studio' (torch zip), 'pickle' (original network pickle) or raise CheckpointError."""
    with _open_regular(path) as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "studio"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path} is neither a network pickle nor a {FORMAT} checkpoint"
                          + (" (empty file)" if not head else ""))


# Ranges of the constructor and rendering settings, wherever they appear in the kwargs tree: generous
# bounds around every released and CPU-sized model, tight enough that a hostile value cannot make the
# network (or a later render) exhaust memory or time.
_INT_RANGES = {
    "z_dim": (1, 4096), "w_dim": (1, 4096), "c_dim": (0, 4096), "img_resolution": (4, 4096),
    "img_channels": (1, 16), "sr_num_fp16_res": (0, 16), "num_fp16_res": (0, 16), "channel_base": (1, 1 << 20),
    "channel_max": (1, 4096), "plane_resolution": (4, 2048), "num_layers": (0, 32), "num_ws": (1, 64),
    "depth_resolution": (1, 1024), "depth_resolution_importance": (0, 1024), "image_resolution": (4, 4096),
    "channels": (1, 4096), "sr_widths": (1, 4096),
}
_POSITIVE = ("box_warp", "avg_camera_radius", "avg_camera_fov")


def _check_settings(value: Any, where: str, key: str = "", depth: int = 0, budget: _Budget | None = None) -> None:
    """Types and ranges of constructor/rendering kwargs: plain values, finite numbers, known ranges."""
    budget = budget or _Budget(10_000)
    budget.spend(where)
    if depth > 6:
        raise CheckpointError(f"{where} are nested too deeply")
    if isinstance(value, dict):
        if len(value) > 256:
            raise CheckpointError(f"{where} have too many entries")
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: a key that is not a string")
            _check_settings(v, where, k, depth + 1, budget)
        return
    if isinstance(value, (list, tuple)):
        if len(value) > 64:
            raise CheckpointError(f"{where}: {key} is too long")
        for v in value:
            _check_settings(v, where, key, depth + 1, budget)
        return
    if isinstance(value, str):
        if len(value) > 1000:
            raise CheckpointError(f"{where}: {key} is too long")
        return
    if value is None or isinstance(value, bool):
        return
    if not isinstance(value, (int, float)):
        raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, expected a plain value")
    if not math.isfinite(value) or abs(value) > 1 << 30:
        raise CheckpointError(f"{where}: {key} = {value!r:.40} is not a usable number")
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not isinstance(value, int) or not lo <= value <= hi:
            raise CheckpointError(f"{where}: {key} = {value!r:.40} (expected an integer in {lo}..{hi})")
    if key in _POSITIVE and value <= 0:
        raise CheckpointError(f"{where}: {key} = {value!r:.40} must be positive")


def _check_kwargs(kwargs: Any, rendering_kwargs: Any, neural_rendering_resolution: Any, source: str) -> None:
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the generator's constructor kwargs are not a dict")
    _check_settings(kwargs, f"{source}: generator kwargs")
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if name not in kwargs:
            raise CheckpointError(f"{source}: generator kwargs lack {name}")
    for name in ("mapping_kwargs", "sr_kwargs", "rendering_kwargs"):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], dict):
            raise CheckpointError(f"{source}: generator kwargs: {name} is not a dict")
    if rendering_kwargs is not None:
        if not isinstance(rendering_kwargs, dict):
            raise CheckpointError(f"{source}: rendering_kwargs is not a dict")
        _check_settings(rendering_kwargs, f"{source}: rendering_kwargs")
    if neural_rendering_resolution is not None and (
            type(neural_rendering_resolution) is not int or not 4 <= neural_rendering_resolution <= 2048):
        raise CheckpointError(f"{source}: neural_rendering_resolution {neural_rendering_resolution!r:.40} "
                              "(expected an integer in 4..2048)")


def _check_weights(state_dict: Any, source: str) -> None:
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise CheckpointError(f"{source}: the weights are not a dict of named tensors")
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: weight {k[:80]} is not a tensor")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{source}: weight {k[:80]} contains NaN or infinity (a damaged or diverged "
                                  "network)")


def build_generator(kwargs: dict, state_dict: dict[str, torch.Tensor], rendering_kwargs: dict | None = None,
                    neural_rendering_resolution: int | None = None, source: str = "checkpoint"
                    ) -> TriPlaneGenerator:
    """Construct a TriPlaneGenerator from constructor kwargs and load weights with clear key errors.

    The kwargs are checked first, and the network is first built on the meta device (no memory) so that
    its weight names and shapes are compared with the file's before any real allocation.
    """
    _check_kwargs(kwargs, rendering_kwargs, neural_rendering_resolution, source)
    _check_weights(state_dict, source)
    kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
    try:
        with torch.device("meta"):
            own = TriPlaneGenerator(**kwargs).state_dict()
    except Exception as e:  # noqa: BLE001  TypeError, ValueError, ZeroDivisionError, RuntimeError from odd combinations
        raise CheckpointError(f"{source}: cannot build the generator from its kwargs ({one_line(e, 160)})") from None
    label_std = state_dict.get("dataset_label_std")  # registered by the original trainer (ref §1.1)
    if label_std is not None:
        if label_std.dim() != 1 or label_std.numel() > 4096:
            raise CheckpointError(f"{source}: dataset_label_std has shape {tuple(label_std.shape)}, "
                                  "expected one number per label dimension")
        own["dataset_label_std"] = label_std
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weights (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(k[:60] for k in unexpected[:3])})")
        raise CheckpointError(f"{source}: weights do not match the generator: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape) or state_dict[k].dtype.is_floating_point != \
                v.dtype.is_floating_point:
            raise CheckpointError(f"{source}: weight {k} has shape {tuple(state_dict[k].shape)} "
                                  f"({state_dict[k].dtype}), expected {tuple(v.shape)} ({v.dtype})")
    try:
        G = TriPlaneGenerator(**kwargs)
        if label_std is not None:
            G.register_buffer("dataset_label_std", label_std.clone())
        G.load_state_dict(state_dict)
        if rendering_kwargs:
            G.rendering_kwargs = rendering_kwargs
        if neural_rendering_resolution:
            G.neural_rendering_resolution = int(neural_rendering_resolution)
    except MemoryError:
        raise CheckpointError(f"{source}: not enough memory to build the generator") from None
    except Exception as e:  # noqa: BLE001  (checked kwargs, but one line whatever torch raises)
        raise CheckpointError(f"{source}: cannot build the generator ({one_line(e, 160)})") from None
    return G.eval().requires_grad_(False)


def load_generator(path: str | os.PathLike, device: torch.device | str | None = None) -> TriPlaneGenerator:
    """The EMA generator in eval mode from an original network pickle, our .ckpt, or a run directory."""
    path = resolve_checkpoint(path)
    if sniff_format(path) == "pickle":
        g = read_network_pickle(path)["G_ema"]
        if g["class_name"] != "TriPlaneGenerator":
            raise CheckpointError(f"{path}: G_ema is a {g['class_name']}, not an EG3D TriPlaneGenerator")
        G = build_generator(g["init_kwargs"], g["state_dict"], g["rendering_kwargs"],
                            g["neural_rendering_resolution"], source=str(path))
    else:
        d = load_checkpoint(path)
        G = build_generator(d["G_kwargs"], d["G_ema"], d.get("rendering_kwargs"),
                            d.get("neural_rendering_resolution"), source=str(path))
    return G.to(device) if device is not None else G
