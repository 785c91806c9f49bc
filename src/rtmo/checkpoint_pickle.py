"""Unpickling a PyTorch checkpoint without running any of its code: ``safe_torch_load``.

``torch.load(weights_only=True)`` refuses a whole file as soon as one object in it is not on its allow-list
(``torch.__version__`` in ``meta``, MMEngine's ``HistoryBuffer`` in ``message_hub``). Here ``torch.load`` runs with
a restricted unpickler instead (its ``pickle_module``):

* globals on ``weights_only``'s allow-list (tensor rebuild functions, ``OrderedDict``, dtypes, ...) plus the NumPy
  types MMPose stores in ``meta`` are rebuilt as ``weights_only`` rebuilds them;
* every other global becomes a ``Placeholder`` that records its name, arguments and state; it is never imported,
  constructed or called, whatever its ``__reduce__`` asked for;
* an opcode that would call, build or fill something the allow-list does not cover, or an allow-listed call that
  fails on the arguments the file gives it, leaves a ``Refused`` placeholder where its result would have been, so
  the caller can say where it sits (``meta.foo``) and skip it when it is not needed;
* tensor storages (``persistent_load``) must be described as ``torch.save`` describes them; TorchScript archives
  (which ``torch.load`` would hand to ``torch.jit.load``) and pre-0.4 tar files are refused before unpickling.
"""

from __future__ import annotations

import _compat_pickle
import functools
import pickle
import tarfile
import types
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from rtmo.errors import CheckpointError, CheckpointIntegrityError

__all__ = ["Placeholder", "Refused", "placeholders", "safe_torch_load"]


class Placeholder:
    """Inert stand-in for a pickled object whose class or function is not on the allow-list.

    Holds what the pickle said (``global_name``, ``args``, ``state``, ``items``, ``listitems``); nothing of the
    named global is imported or run. Calling it (pickle's REDUCE/NEWOBJ) gives another placeholder.
    """

    def __init__(self, global_name: str, args: tuple[Any, ...] = ()) -> None:
        self.global_name = global_name
        self.args = args
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.listitems: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return Placeholder(self.global_name, args)

    def describe(self) -> str:
        return f"{self.global_name} (not on the allow-list; an inert placeholder, never constructed)"

    def __repr__(self) -> str:
        return f"<placeholder {self.global_name}>"


class Refused(Placeholder):
    """What is left where the pickle asked for something the restricted unpickler does not do (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__("<refused>")
        self.reason = reason

    def describe(self) -> str:
        return f"refused: {self.reason}"

    def __repr__(self) -> str:
        return f"<refused: {self.reason}>"


def _numpy_globals() -> dict[str, Any]:
    """The NumPy objects pickled in MMPose checkpoint ``meta`` (dataset_meta arrays, NumPy scalars)."""
    core: Any = np.core.multiarray  # NumPy 1.x path; NumPy 2 pickles name numpy._core.multiarray
    found = {
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
        "numpy.core.multiarray._reconstruct": core._reconstruct,
        "numpy.core.multiarray.scalar": core.scalar,
        "numpy._core.multiarray._reconstruct": core._reconstruct,
        "numpy._core.multiarray.scalar": core.scalar,
    }
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles dtypes by class (numpy.dtypes.Float32DType)
    for name in dir(dtypes) if dtypes is not None else ():
        if name.endswith("DType"):
            found[f"numpy.dtypes.{name}"] = getattr(dtypes, name)
    return found


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    # Exactly weights_only's allow-list (torch 2.x keeps it private) plus MMPose's NumPy meta types.
    from torch._weights_only_unpickler import _get_allowed_globals  # private module, imported where it is used

    return {**_get_allowed_globals(), **_numpy_globals()}


@functools.cache
def _allowed_names() -> dict[int, str]:
    return {id(obj): name for name, obj in _allowed_globals().items()}


def _allowed_name(obj: Any) -> str | None:
    return _allowed_names().get(id(obj))


# Types whose state BUILD may set: what torch.save and NumPy's own pickling set state on.
_BUILDABLE = (torch.Tensor, torch.nn.Parameter, OrderedDict, np.ndarray)
_DICT_TYPES = (dict, OrderedDict, Counter)


# The pure-Python unpickler: its opcodes are methods in a dispatch table we can replace (the C one's are not).
_PurePythonUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]


class _RestrictedUnpickler(_PurePythonUnpickler):
    """The stdlib's pure-Python unpickler with every opcode that imports, calls or mutates restricted.

    ``find_class`` never imports. REDUCE/NEWOBJ call only allow-listed globals, BUILD sets state only on
    ``_BUILDABLE`` types, SETITEM(S)/APPEND(S)/ADDITEMS fill only dicts, lists and sets; placeholders absorb all
    of them, and anything else leaves a ``Refused`` placeholder.
    """

    dispatch = dict(_PurePythonUnpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle.Unpickler maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full_name = f"{module}.{name}"
        return _allowed_globals().get(full_name, Placeholder(full_name))

    # torch.load assigns its storage loader here; it only ever sees storage descriptions torch.save writes.
    @property
    def persistent_load(self) -> Callable[[Any], Any]:
        return self._checked_persistent_load

    @persistent_load.setter
    def persistent_load(self, torch_persistent_load: Callable[[Any], Any]) -> None:
        self._torch_persistent_load = torch_persistent_load

    _torch_persistent_load: Callable[[Any], Any] | None = None

    def _checked_persistent_load(self, saved_id: Any) -> Any:
        problem = "no storages here" if self._torch_persistent_load is None else _storage_id_problem(saved_id)
        if problem is not None or self._torch_persistent_load is None:
            return Refused(f"persistent id {saved_id!r:.200}: {problem}")
        return self._torch_persistent_load(saved_id)

    def _call(self, func: Any, args: Any) -> Any:
        if isinstance(func, Placeholder):
            return func(*args) if isinstance(args, tuple) else func()
        name = _allowed_name(func)
        if name is None:
            return Refused(f"call of {func!r:.100}, not an allow-listed global")
        if not isinstance(args, tuple):
            return Refused(f"call of {name} with {type(args).__name__} arguments")
        try:
            return func(*args)
        except Exception as exc:  # an allow-listed function given arguments it cannot use
            return Refused(f"{name}(...) failed: {type(exc).__name__}: {exc}")

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def _new(self, cls: Any, args: Any) -> Any:
        if isinstance(cls, Placeholder):
            return cls(*args) if isinstance(args, tuple) else cls()
        name = _allowed_name(cls)
        if name is None or not isinstance(cls, type) or not isinstance(args, tuple):
            return Refused(f"creation of {cls!r:.100}, not an allow-listed class")
        try:
            return cls.__new__(cls, *args)
        except Exception as exc:
            return Refused(f"{name}.__new__(...) failed: {type(exc).__name__}: {exc}")

    def _load_newobj_ex(self) -> None:
        self.stack.pop()  # kwargs: allow-listed classes take none; placeholders ignore them
        self._load_newobj()

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # INST and OBJ (protocols 0 and 1)
        self.append(klass(*args) if isinstance(klass, Placeholder) else Refused(f"INST/OBJ of {klass!r:.100}"))

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Placeholder):
            if not isinstance(inst, Refused):
                inst.state = state
            return
        if type(inst) not in _BUILDABLE and not isinstance(inst, np.dtype):
            self.stack[-1] = Refused(f"setting the state of a {type(inst).__qualname__}")
            return
        self.stack.append(state)
        try:
            _PurePythonUnpickler.load_build(self)
        except Exception as exc:
            self.stack[-1] = Refused(f"setting the state of a {type(inst).__qualname__}: {type(exc).__name__}: {exc}")

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(list(zip(items[::2], items[1::2])))

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items([(key, value)])

    def _set_items(self, pairs: list[tuple[Any, Any]]) -> None:
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.items.update(_hashable_pairs(pairs))
        elif type(target) in _DICT_TYPES:
            try:
                for key, value in pairs:
                    target[key] = value  # the type's own __setitem__ (OrderedDict keeps its order)
            except TypeError as exc:  # an unhashable key
                self.stack[-1] = Refused(f"a {type(target).__qualname__} key: {exc}")
        else:
            self.stack[-1] = Refused(f"SETITEM on a {type(target).__qualname__}")

    def _extend(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.listitems.extend(items)
        elif type(target) is list:
            target.extend(items)
        else:
            self.stack[-1] = Refused(f"APPEND on a {type(target).__qualname__}")

    def _load_append(self) -> None:
        self._extend([self.stack.pop()])

    def _load_appends(self) -> None:
        self._extend(self.pop_mark())

    def _load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.listitems.extend(items)
        elif type(target) is set:
            try:
                target.update(items)
            except TypeError as exc:
                self.stack[-1] = Refused(f"a set item: {exc}")
        else:
            self.stack[-1] = Refused(f"ADDITEMS on a {type(target).__qualname__}")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    dispatch[pickle.ADDITEMS[0]] = _load_additems


def _hashable_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = {}
    for key, value in pairs:
        try:
            out[key] = value
        except TypeError:
            out[repr(key)] = value
    return out


def _storage_id_problem(saved_id: Any) -> str | None:
    """Why ``saved_id`` is not a storage description as ``torch.save`` writes it (zip or legacy), or None."""
    if not isinstance(saved_id, tuple) or not saved_id:
        return "not a tuple"
    typename = saved_id[0].decode("ascii", "replace") if isinstance(saved_id[0], bytes) else saved_id[0]
    if typename != "storage":
        return f"kind {typename!r}, expected 'storage'"  # legacy 'module' ids name pickled modules' source
    if len(saved_id) == 5:  # zip: (storage, type, key, location, numel)
        storage_type, key, location, numel = saved_id[1:]
        view = None
    elif len(saved_id) == 6:  # legacy: (storage, type, root_key, location, numel, view_metadata)
        storage_type, key, location, numel, view = saved_id[1:]
    else:
        return f"{len(saved_id)} fields, expected 5 (zip) or 6 (legacy)"
    from torch.serialization import StorageType  # what torch.load's own find_class returns for *Storage names

    if not isinstance(storage_type, StorageType) and storage_type is not torch.UntypedStorage:
        return f"storage type {storage_type!r:.100}"
    if not isinstance(key, str) or not isinstance(location, (str, bytes)) or type(numel) is not int or numel < 0:
        return "key, location or size of the wrong type"
    if view is not None and not (
        isinstance(view, tuple)
        and len(view) == 3
        and isinstance(view[0], str)
        and all(type(v) is int for v in view[1:])
    ):
        return "malformed view metadata"
    return None


def _restricted_load(file: BinaryIO, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load needs of a pickle_module: Unpickler (it subclasses it) and load (legacy headers, storage keys).
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="rtmo_restricted_pickle", Unpickler=_RestrictedUnpickler, load=_restricted_load
)


def _refuse_code_archives(file: BinaryIO, path: Path) -> None:
    is_zip = file.read(4) == b"PK\x03\x04"  # torch.load's own test; tensor bytes may look like a zip's end record
    file.seek(0)
    if is_zip:
        try:
            names = zipfile.ZipFile(file).namelist()
        except (zipfile.BadZipFile, ValueError) as exc:
            raise CheckpointIntegrityError(f"{path}: truncated or corrupt checkpoint file ({exc})") from exc
        if any(name.split("/", 1)[-1] == "constants.pkl" for name in names):  # torch.load → torch.jit.load
            raise CheckpointError(
                f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint; loading it would run its "
                "code. Accepted: torch.save'd MMPose checkpoints (zip or legacy format)"
            )
    elif tarfile.is_tarfile(file):  # torch.load would extract it to disk first
        raise CheckpointError(
            f"{path}: a tar archive (PyTorch < 0.4 torch.save), not supported. Accepted: torch.save'd MMPose "
            "checkpoints (zip or legacy format); re-save it with a current PyTorch"
        )
    file.seek(0)


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` of ``path`` on the CPU, with placeholders for everything outside the allow-list.

    Raises:
        CheckpointError: a TorchScript or tar archive.
        CheckpointIntegrityError: the file is truncated or not a PyTorch file at all.
    """
    with open(path, "rb") as file:  # one open file for the checks and the load
        _refuse_code_archives(file, path)
        try:
            return torch.load(file, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
        except Exception as exc:  # whatever a damaged file makes torch or pickle raise
            raise CheckpointIntegrityError(
                f"{path}: truncated or corrupt checkpoint file ({type(exc).__name__}: {exc})"
            ) from exc


def placeholders(obj: Any, where: str = "") -> Iterator[tuple[str, Placeholder]]:
    """``(dotted path, placeholder)`` for every placeholder in the loaded containers, outermost first.

    A container met again (a pickle can make one hold itself) is not walked twice.
    """
    seen: set[int] = set()
    pending = [(where, obj)]
    while pending:
        where, obj = pending.pop()
        if isinstance(obj, Placeholder):
            yield where or "<top>", obj
        elif isinstance(obj, (Mapping, list, tuple, set, frozenset)) and id(obj) not in seen:
            seen.add(id(obj))
            if isinstance(obj, Mapping):
                children = [(f"{where}.{key}" if where else str(key), value) for key, value in obj.items()]
            else:
                children = [(f"{where}[{index}]", value) for index, value in enumerate(obj)]
            pending.extend(reversed(children))
