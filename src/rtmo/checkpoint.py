"""Loading MMPose RTMO checkpoints unchanged (local paths, zoo names and URLs: ``rtmo.zoo``), or seeded random weights.

Steps (timm's ``checkpoint_filter_fn`` style): safe load → unwrap ``state_dict`` (or ``ema_state_dict``) → strip
wrapper prefixes → infer size, keypoints and input size from tensor shapes → ``load_state_dict(strict=True)``.

Safe load: ``torch.load`` with a restricted unpickler (``pickle_module``). Globals on ``weights_only``'s allow-list
(tensor rebuild functions, OrderedDict, dtypes, ...) plus the NumPy types MMPose stores in ``meta`` are rebuilt as
``weights_only`` rebuilds them; every other global (MMEngine's ``HistoryBuffer``, ``ConfigDict``, ``TorchVersion``,
a malicious ``os.system``) becomes a ``Placeholder`` that records its name, arguments and state and is never
imported, constructed or called. Placeholders may sit anywhere except in the weights served.
"""

from __future__ import annotations

import _compat_pickle
import functools
import logging
import os
import pickle
import types
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch

from rtmo.config import CSPConfig, RTMOConfig
from rtmo.errors import CheckpointError, CheckpointIntegrityError
from rtmo.model import RTMO
from rtmo.zoo import PRETRAINED_BACKBONES, checkpoint_sha256, download, resolve_checkpoint

__all__ = [
    "RANDOM_PREFIX",
    "WEIGHT_SECTIONS",
    "Placeholder",
    "infer_config",
    "load_checkpoint",
    "load_pretrained_backbone",
    "read_state_dict",
]

LOGGER = logging.getLogger(__name__)
RANDOM_PREFIX = "random:"  # random:<size>[:<keypoints>], seeded random weights (tests, offline pipelines)

_STEM_CHANNELS_TO_SIZE = {24: "tiny", 32: "small", 48: "medium", 64: "large"}

# MMEngine's EMAHook.before_save_checkpoint swaps the EMA-averaged weights into ``state_dict`` and the source
# model's into ``ema_state_dict`` (keys ``module.<name>`` plus the ``steps`` counter), so ``state_dict`` is
# what MMPose deploys.
WEIGHT_SECTIONS = ("state_dict", "ema_state_dict")
WeightSection = Literal["state_dict", "ema_state_dict"]


def _numpy_safe_globals() -> list[Any]:
    """Exactly the NumPy objects pickled in MMPose checkpoint ``meta`` (dataset_meta arrays, numpy scalars)."""
    core = np.core.multiarray  # NumPy 1.x module path; NumPy 2 pickles name ``numpy._core.multiarray``
    entries: list[Any] = [
        np.ndarray,
        np.dtype,
        (core._reconstruct, "numpy.core.multiarray._reconstruct"),
        (core.scalar, "numpy.core.multiarray.scalar"),
        (core._reconstruct, "numpy._core.multiarray._reconstruct"),
        (core.scalar, "numpy._core.multiarray.scalar"),
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt8DType", "BoolDType", "ObjectDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            entries.append(dtype_class)
    return entries


class Placeholder:
    """Inert stand-in for a pickled object whose class or function is not on the allow-list.

    Holds what the pickle said (``global_name``, ``args``, ``state``, ``items``, ``listitems``); nothing of the
    named global is imported or run. Calling it (pickle's REDUCE) gives another placeholder.
    """

    def __init__(self, global_name: str, args: tuple[Any, ...] = ()) -> None:
        self.global_name = global_name
        self.args = args
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.listitems: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return Placeholder(self.global_name, args)

    def __repr__(self) -> str:
        return f"<placeholder {self.global_name}{self.args!r}>"


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    # Exactly weights_only's allow-list (torch 2.x keeps it private) plus MMPose's NumPy meta types.
    from torch._weights_only_unpickler import _get_allowed_globals  # private module, imported where it is used

    allowed = dict(_get_allowed_globals())
    for entry in _numpy_safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, f"{entry.__module__}.{entry.__qualname__}")
        allowed[name] = obj
    return allowed


@functools.cache
def _allowed_ids() -> frozenset[int]:
    return frozenset(id(v) for v in _allowed_globals().values())


def _is_allowed(obj: Any) -> bool:
    return id(obj) in _allowed_ids()


_DICT_TYPES = (dict, OrderedDict, Counter)


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The stdlib's pure-Python unpickler with weights_only's limits on the opcodes that call or mutate.

    ``find_class`` never imports: allow-listed globals come from the allow-list, others become placeholders.
    REDUCE/NEWOBJ call only allow-listed globals, BUILD sets state only on allow-listed types, SETITEM(S) and
    APPEND(S) touch only dicts and lists; placeholders absorb all of them.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle.Unpickler maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full_name = f"{module}.{name}"
        allowed = _allowed_globals()
        return allowed[full_name] if full_name in allowed else Placeholder(full_name)

    def _call(self, func: Any, args: tuple[Any, ...]) -> Any:
        if isinstance(func, Placeholder):
            return func(*args)
        if not _is_allowed(func):
            raise pickle.UnpicklingError(f"refused to call {func!r}: not an allow-listed global")
        return func(*args)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if isinstance(cls, Placeholder):
            self.append(cls(*args))
        elif _is_allowed(cls) and isinstance(cls, type):
            self.append(cls.__new__(cls, *args))
        else:
            raise pickle.UnpicklingError(f"refused to create {cls!r}: not an allow-listed class")

    def _load_newobj_ex(self) -> None:
        self.stack.pop()  # kwargs: allow-listed classes take none; placeholders ignore them
        self._load_newobj()

    def _load_inst_obj(self) -> None:
        raise pickle.UnpicklingError("refused protocol 0/1 INST/OBJ opcodes (torch.save never writes them)")

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Placeholder):
            inst.state = state
        elif isinstance(inst, torch.Tensor) or type(inst) is OrderedDict or _is_allowed(type(inst)):
            self.stack.append(state)
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        else:
            raise pickle.UnpicklingError(f"refused to set the state of a {type(inst).__qualname__}")

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._setitems_checked(dict(zip(items[::2], items[1::2])))

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems_checked({key: value})

    def _setitems_checked(self, pairs: dict[Any, Any]) -> None:
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.items.update(pairs)
        elif type(target) in _DICT_TYPES:
            target.update(pairs)
        else:
            raise pickle.UnpicklingError(f"refused SETITEM on a {type(target).__qualname__}")

    def _extend_checked(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.listitems.extend(items)
        elif type(target) is list:
            target.extend(items)
        else:
            raise pickle.UnpicklingError(f"refused APPEND on a {type(target).__qualname__}")

    def _load_append(self) -> None:
        self._extend_checked([self.stack.pop()])

    def _load_appends(self) -> None:
        self._extend_checked(self.pop_mark())

    def _load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.listitems.extend(items)
        elif type(target) is set:
            target.update(items)
        else:
            raise pickle.UnpicklingError(f"refused ADDITEMS on a {type(target).__qualname__}")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.INST[0]] = _load_inst_obj
    dispatch[pickle.OBJ[0]] = _load_inst_obj
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    dispatch[pickle.ADDITEMS[0]] = _load_additems


def _restricted_load(file: BinaryIO, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load needs of a pickle_module: Unpickler (subclassed for storages) and load (legacy headers).
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="rtmo_restricted_pickle", Unpickler=_RestrictedUnpickler, load=_restricted_load
)


def _placeholders(obj: Any, where: str = "") -> Iterator[tuple[str, Placeholder]]:
    """(dotted path, placeholder) for every placeholder in the loaded containers, outermost first."""
    if isinstance(obj, Placeholder):
        yield where or "<top>", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _placeholders(value, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, (list, tuple, set)):
        for index, value in enumerate(obj):
            yield from _placeholders(value, f"{where}[{index}]")


def _restricted_torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to unpickle: {exc}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError) as exc:
        raise CheckpointIntegrityError(f"{path}: truncated or corrupt checkpoint file ({exc})") from exc


def read_state_dict(
    path: Path, *, weights: WeightSection = "state_dict"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely unpickle a checkpoint; return (the chosen weights with wrapper prefixes stripped, meta).

    Objects outside the allow-list are placeholders wherever they sit (``meta``, ``message_hub``,
    ``optimizer``, ``param_schedulers``, ...) and are logged at debug level; only the weights must be tensors.

    Args:
        path: the checkpoint file (zip or legacy format).
        weights: ``"state_dict"`` (what MMPose deploys; the EMA-averaged weights when MMEngine's EMAHook saved
            the file) or ``"ema_state_dict"`` (the EMAHook's other copy: the un-averaged training weights).

    Raises:
        CheckpointIntegrityError: the file is truncated or corrupt.
        CheckpointError: the file holds something other than an MMPose checkpoint, the chosen section is absent,
            or it holds non-tensors (named with where they sit).
    """
    if weights not in WEIGHT_SECTIONS:
        raise CheckpointError(f"weights={weights!r}: accepted {', '.join(WEIGHT_SECTIONS)}")
    obj = _restricted_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    for where, placeholder in _placeholders(obj):
        LOGGER.debug("%s: %s: skipped %s (not constructed)", path, where, placeholder.global_name)
    if weights == "ema_state_dict" and weights not in obj:
        raise CheckpointError(
            f"{path}: weights='ema_state_dict' chosen but the checkpoint has no ema_state_dict "
            f"(sections: {sorted(map(str, obj))[:10]}); it was not saved by MMEngine's EMAHook"
        )
    state = obj.get(weights, obj if weights == "state_dict" else None)
    if isinstance(state, Mapping):
        refused = [
            f"{weights}.{where}: refused {p.global_name}"
            for where, p in _placeholders({str(k): v for k, v in state.items()})
        ]
        if refused:
            raise CheckpointError(f"{path}: the weights hold non-tensor objects: {'; '.join(refused[:5])}")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no tensor state_dict found (keys: {sorted(map(str, obj))[:10]})")
    if weights == "ema_state_dict":
        state = {k: v for k, v in state.items() if k != "steps"}  # the averaging counter, not a weight
    if "ema_state_dict" in obj:
        other = "ema_state_dict" if weights == "state_dict" else "state_dict"
        LOGGER.info(
            "%s: serving %s (%s; %s holds the %s)",
            path,
            weights,
            "EMA-averaged weights, as MMEngine's EMAHook saves them"
            if weights == "state_dict"
            else "un-averaged weights",
            other,
            "un-averaged weights" if weights == "state_dict" else "EMA-averaged weights",
        )
    else:
        LOGGER.info("%s: serving %s", path, weights)
    meta = obj.get("meta", {})
    return {_strip_prefix(k): v for k, v in state.items()}, dict(meta) if isinstance(meta, Mapping) else {}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def infer_config(state: Mapping[str, torch.Tensor]) -> RTMOConfig:
    """Size, keypoint count, class count and input size of the model that produced ``state``.

    Raises:
        CheckpointError: the tensors are not those of an RTMO model.
    """
    try:
        stem = state["backbone.stem.conv.conv.weight"]
        vis = state["head.head_module.out_kpt_vis.0.weight"]
        cls = state["head.head_module.out_cls.0.weight"]
    except KeyError as exc:
        raise CheckpointError(f"not an RTMO checkpoint: missing {exc.args[0]!r} (found {len(state)} tensors)") from exc
    size = _STEM_CHANNELS_TO_SIZE.get(int(stem.shape[0]))
    if size is None:
        raise CheckpointError(
            f"not an RTMO checkpoint: stem has {stem.shape[0]} channels, expected one of "
            f"{sorted(_STEM_CHANNELS_TO_SIZE)}"
        )
    return RTMOConfig(
        backbone_config=CSPConfig(size=size), num_classes=int(cls.shape[0]), num_keypoints=int(vis.shape[0])
    )


def load_checkpoint(
    source: str | os.PathLike[str],
    *,
    input_size: int | None = None,
    seed: int = 0,
    weights: WeightSection = "state_dict",
) -> RTMO:
    """Build an ``RTMO`` from an MMPose RTMO checkpoint, or with seeded random weights.

    Args:
        source: a local ``.pth`` path, a zoo name such as ``"rtmo-s_body7"`` (see ``rtmo.zoo.ZOO``), a URL, or
            ``random:<size>[:<keypoints>]`` (e.g. ``random:small``, ``random:tiny:14``).
        input_size: override the size's default input (416 tiny, 640 otherwise).
        seed: torch seed of random weights.
        weights: which section of an MMEngine runner checkpoint to serve: ``"state_dict"`` (default; what MMPose
            deploys, the EMA-averaged weights when RTMO's EMA hook was on) or ``"ema_state_dict"`` (the hook's
            other copy, the un-averaged training weights). Logged at INFO.

    Returns:
        The model in eval mode; ``model.checkpoint_sha256`` (``"random"`` for random weights) and
        ``model.checkpoint_name`` say where it came from.

    Raises:
        CheckpointError: not an RTMO checkpoint, keys do not match (missing/unexpected keys listed), the chosen
            weights section is absent, or it holds non-tensor objects (named with where they sit).
        CheckpointIntegrityError: truncated file or hash mismatch.
        CheckpointUnavailableError: a zoo name or URL could not be downloaded.
    """
    text = os.fspath(source)
    if text.startswith(RANDOM_PREFIX):
        return _random_model(text, input_size=input_size, seed=seed)
    path = resolve_checkpoint(source)
    state, _meta = read_state_dict(path, weights=weights)
    config = infer_config(state)
    if input_size is not None:
        config = RTMOConfig(
            backbone_config=config.backbone_config,
            num_classes=config.num_classes,
            num_keypoints=config.num_keypoints,
            input_size=input_size,
        )
    model = RTMO(config)
    _load_strict(model, state, origin=str(path))
    model.checkpoint_sha256 = checkpoint_sha256(path)  # type: ignore[assignment]
    model.checkpoint_name = os.fspath(source)  # type: ignore[assignment]
    return model.eval()


def _random_model(source: str, *, input_size: int | None, seed: int) -> RTMO:
    parts = source.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
        raise CheckpointError(
            f"checkpoint {source!r}: accepted random:<size> or random:<size>:<keypoints>, "
            "e.g. random:small or random:tiny:14"
        )
    keypoints = int(parts[2]) if len(parts) == 3 else 17
    torch.manual_seed(seed)
    model = RTMO(RTMOConfig(backbone_config=CSPConfig(size=parts[1]), num_keypoints=keypoints, input_size=input_size))
    model.checkpoint_sha256 = "random"  # type: ignore[assignment]
    model.checkpoint_name = source  # type: ignore[assignment]
    return model.eval()


def _load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, origin: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{origin}: does not match the RTMO architecture.\n"
            f"  missing keys ({len(missing)}): {missing}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched}"
        )
    module.load_state_dict(state, strict=True)


def load_pretrained_backbone(model: RTMO) -> None:
    """Load the YOLOX backbone weights MMPose's RTMO configs start from (prefix ``backbone.``)."""
    entry = PRETRAINED_BACKBONES[model.config.backbone_config.size]
    state, _ = read_state_dict(download(entry))
    backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    _load_strict(model.backbone, backbone_state, origin=entry.url)
