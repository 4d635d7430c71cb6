"""The restricted unpickler behind core.checkpoint: reads a network pickle or a torch.save zip and can
neither run code nor crash, exhaust or hang the process.

It is the pure-Python unpickler with every opcode that builds or mutates objects checked: only an explicit
allow-list of globals, calls only of allowed callables, state (BUILD) only on inert stubs, numpy values
rebuilt from a fixed set of dtype names and their bytes (numpy's own dtype/scalar machinery never sees the
file), bounded containers, opcodes, tensors and walks, and every tensor view checked against the storage
behind it before anything is materialised. Anything wrong is one CheckpointError.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import stat
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch

from core.errors import CheckpointError, one_line

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
MAX_COLLISIONS = 64
"""Keys of one dict or set that may share one hash."""
MAX_SET_ITEMS = 1_000_000
"""Items copied by set()/frozenset() calls in one file (each call copies its argument)."""
MAX_OPS = 500_000
"""Pickle opcodes in one file (the fixture snapshot, with the released architecture, has 41,000; a training
snapshot of ours about 30,000): bounds the objects a file can create and the time it can take."""


class Budget:
    """A count of nodes a walk may still visit."""

    def __init__(self, n: int = MAX_NODES):
        self.left = n

    def spend(self, what: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise CheckpointError(f"{what} too large (or referencing itself many times)")


# ---- inert stand-ins ------------------------------------------------------------------------------------
class Stub:
    """Inert stand-in for a class of the original code base: keeps the pickled state, runs nothing.

    Persistent objects are plain Stub instances with their class name; classes pickled by reference get
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
    return type(name, (Stub,), {"class_name": f"{module}.{name}", "__module__": "core.checkpoint.stubs"})


def _reconstruct_persistent(meta: Any) -> Stub:
    """Replacement for torch_utils.persistence._reconstruct_persistent_obj: never reads module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CheckpointError("persistent object with an unexpected layout")
    if meta.get("version") != 6:
        raise CheckpointError(f"persistent object version {meta.get('version')!r} (expected 6)")
    name = meta.get("class_name")
    if not isinstance(name, str) or not name.isidentifier():
        raise CheckpointError("persistent object with a malformed class name")
    stub = Stub()
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
        u = SafeUnpickler(f, _STORAGE_GLOBALS, lambda pid: refs.append(pid) or len(refs) - 1)
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


def named_tensors(value: Any, name: str = "", depth: int = 0, budget: Budget | None = None
                  ) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a tree of dicts and lists with its path ('/key/0/...'), in a fixed order (dict keys
    sorted)."""
    budget = budget or Budget()
    budget.spend("checkpoint")
    if depth > MAX_DEPTH:
        raise CheckpointError("checkpoint nested too deeply (or cyclic)")
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            yield from named_tensors(value[k], f"{name}/{k}", depth + 1, budget)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from named_tensors(v, f"{name}/{i}", depth + 1, budget)


def check_amplification(tensors: Iterable[torch.Tensor]) -> None:
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


_STORAGE_GLOBALS = {("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()}

PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
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

CKPT_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "device"): torch.device,
    **_STORAGE_GLOBALS,
}

_KEY_TYPES = (str, int, float, bool, type(None))
_DICTS = (dict, collections.OrderedDict, _EasyDict)


# ---- the restricted unpickler ---------------------------------------------------------------------------
_D = pickle._Unpickler.dispatch  # the pure-Python unpickler's opcode table


class SafeUnpickler(pickle._Unpickler):
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
        self._hashes: dict[int, collections.Counter] = {}

    def find_class(self, module: Any, name: Any) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.allowed is PICKLE_GLOBALS and isinstance(module, str) and isinstance(name, str) and (
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
        return id(func) in self._callables or (isinstance(func, type) and issubclass(func, Stub))

    def _refuse(self, what: str) -> None:
        raise CheckpointError(f"the pickle uses {what}, which a network checkpoint never does")

    def _sized(self, n: int) -> None:
        if n > MAX_ITEMS:
            raise CheckpointError(f"a container with more than {MAX_ITEMS:,} items")

    def _target(self, types: tuple[type, ...], what: str, depth: int = 1) -> Any:
        """The container `depth` below the top of the stack, refused unless exactly one of `types`."""
        target = self.stack[-depth]
        if type(target) not in types:
            self._refuse(f"{what} on {type(target).__name__}")
        return target

    def _keys(self, keys, target: Any = None) -> None:
        """Keys are plain values, and few share one hash within one container (`target`, filled by several
        opcodes, or the batch itself): equal hashes make each insertion scan all the others (quadratic time:
        50,000 equal-hash integers in one set took about a minute)."""
        if not all(isinstance(k, _KEY_TYPES) for k in keys):
            raise CheckpointError("a dict key or set member that is not a plain value")
        counts = collections.Counter() if target is None else self._hashes.setdefault(id(target), collections.Counter())
        hashes = [hash(k) for k in keys]
        counts.update(hashes)
        if any(counts[h] > MAX_COLLISIONS for h in hashes):
            raise CheckpointError("dict keys or set members chosen to share one hash")

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
        if not (isinstance(cls, type) and (issubclass(cls, (Stub, _EasyDict)) or cls is collections.OrderedDict)) \
                or args != ():
            self._refuse(f"construction of {type(cls).__name__}")
        del self.stack[-1]
        self.stack[-1] = cls.__new__(cls)
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, (Stub, _NumpyDType)):
            inst.__setstate__(state)
        elif not isinstance(inst, _EasyDict):
            self._refuse(f"state applied to {type(inst).__name__}")
        del self.stack[-1]
    dispatch[pickle.BUILD[0]] = load_build

    def load_setitem(self):
        value, key, target = self.stack[-1], self.stack[-2], self._target(_DICTS, "item assignment", 3)
        self._keys([key], target)
        target[key] = value
        self._sized(len(target))
        del self.stack[-2:]
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(_DICTS, "item assignment")
        self._sized(len(items) // 2 + len(target))
        self._keys(items[0::2], target)
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self):
        value, target = self.stack[-1], self._target((list,), "append", 2)
        target.append(value)
        self._sized(len(target))
        del self.stack[-1]
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self):
        items = self.pop_mark()
        target = self._target((list,), "append")
        target.extend(items)
        self._sized(len(target))
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self):
        items = self.pop_mark()
        target = self._target((set,), "set update")
        self._sized(len(items) + len(target))  # counted before the update: a flood costs nothing
        self._keys(items, target)
        target.update(items)
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


def open_regular(path: str | os.PathLike) -> BinaryIO:
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


def unpickle_pickle(path: str | os.PathLike) -> Any:
    with open_regular(path) as f:
        return SafeUnpickler(_Clamped(f), PICKLE_GLOBALS).load()


def unpickle_torch_zip(f: BinaryIO, size: int) -> Any:
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
    return SafeUnpickler(io.BytesIO(raw), CKPT_GLOBALS, storage).load()
