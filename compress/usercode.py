"""Load the user's model factory, weights and data function, and check what they give.

Specs are ``path/to/file.py:NAME`` or ``package.module:NAME``. Every failure is a
``UserCodeError`` with one line that names the spec and says what was expected.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import UserCodeError
from edge_agent.errors import first_line

DATA_KEYS = ("train", "calibration", "validation")
OPTIONAL_DATA_KEYS = ("test", "metric", "labels", "preprocessing", "task")


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def _load_module(source: str) -> Any:
    path = Path(source)
    if source.endswith(".py"):
        if not path.is_file():
            raise UserCodeError(f"{source} does not exist")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        name = f"edgekit_user_{path.stem}_{digest}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            raise UserCodeError(f"importing {source} failed: {_one_line(exc)}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        sys.modules[name] = module
        return module
    try:
        return importlib.import_module(source)
    except Exception as exc:
        raise UserCodeError(f"importing module {source} failed: {_one_line(exc)}") from exc


def load_object(spec: str, what: str) -> Callable[..., Any]:
    """The callable named by ``FILE.py:NAME`` or ``package.module:NAME``."""
    source, sep, name = spec.rpartition(":")
    if not sep or not source or not name:
        raise UserCodeError(f"{what} {spec!r} must look like FILE.py:NAME or package.module:NAME")
    module = _load_module(source)
    obj = getattr(module, name, None)
    if obj is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise UserCodeError(f"{source} has no {name!r} for {what}; it defines: "
                            f"{', '.join(public)}")
    if not callable(obj):
        raise UserCodeError(f"{what} {spec} is not callable")
    return obj


def build_model(spec: str, weights: Path | None = None) -> Any:
    """Call the factory, check it returns a torch module, load ``weights`` (a state_dict)."""
    import torch

    factory = load_object(spec, "--model")
    try:
        model = factory()
    except Exception as exc:
        raise UserCodeError(f"model factory {spec} raised {_one_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise UserCodeError(f"model factory {spec} returned {type(model).__name__}, "
                            "not a torch.nn.Module")
    if weights is not None:
        load_weights(model, Path(weights), spec)
    return model.eval()


def load_weights(model: Any, path: Path, spec: str) -> None:
    """Load a state_dict with ``weights_only=True``; mismatches are named, not dumped."""
    import torch

    if not path.is_file():
        raise UserCodeError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserCodeError(f"weights {path} cannot be read as a state_dict (only plain "
                            f"tensors are loaded, never pickled objects): {_one_line(exc)}"
                            ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserCodeError(f"weights {path} is not a state_dict (a dict of name -> tensor); "
                            "save it with torch.save(model.state_dict(), path)")
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise UserCodeError(f"weights {path} do not fit {spec}: {problem}")
    model.load_state_dict(state, strict=True)


def state_dict_mismatch(expected: dict[str, Any], given: dict[str, Any]) -> str | None:
    """A short description of missing/unexpected keys and shape mismatches, or None."""
    def listing(names: list[str]) -> str:
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} is {list(given[k].shape)}, the model wants {list(v.shape)}"
              for k, v in expected.items() if k in given and given[k].shape != v.shape]
    parts = ([f"missing keys {listing(missing)}"] if missing else []) + \
            ([f"unexpected keys {listing(unexpected)}"] if unexpected else []) + shapes[:2]
    return "; ".join(parts) or None


@dataclass
class UserData:
    """What the data function returned, checked."""

    train: Any
    calibration: Any
    validation: Any
    test: Any = None  # optional: the honest gate's data (else half of validation gates)
    metric: Callable[[Any, Any], float] | None = None
    labels: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    spec: str = ""
    task: Any = None  # edge_agent.contracts.task.Task (classification when not given)


def load_data(spec: str) -> UserData:
    """Call the data function and check its dict of DataLoaders (and optional extras)."""
    function = load_object(spec, "--data")
    try:
        doc = function()
    except Exception as exc:
        raise UserCodeError(f"data function {spec} raised {_one_line(exc)}") from exc
    if not isinstance(doc, dict):
        raise UserCodeError(f"data function {spec} returned {type(doc).__name__}; expected a "
                            f"dict with {', '.join(DATA_KEYS)} DataLoaders")
    return _check_data(doc, spec)


def _check_data(doc: dict[str, Any], spec: str) -> UserData:
    from torch.utils.data import DataLoader

    missing = [k for k in DATA_KEYS if k not in doc]
    unknown = [k for k in doc if k not in DATA_KEYS + OPTIONAL_DATA_KEYS]
    if missing or unknown:
        what = f"missing {', '.join(missing)}" if missing else f"unknown key {unknown[0]!r}"
        raise UserCodeError(f"data function {spec} returned a dict with {what}; expected "
                            f"{', '.join(DATA_KEYS)} (+ optional {', '.join(OPTIONAL_DATA_KEYS)})")
    loaders = DATA_KEYS + (("test",) if doc.get("test") is not None else ())
    for key in loaders:
        if not isinstance(doc[key], DataLoader):
            raise UserCodeError(f"data function {spec}: '{key}' is {type(doc[key]).__name__}, "
                                "not a torch.utils.data.DataLoader")
    metric = doc.get("metric")
    if metric is not None and not callable(metric):
        raise UserCodeError(f"data function {spec}: 'metric' must be a callable "
                            "(outputs, labels) -> float")
    data = UserData(train=doc["train"], calibration=doc["calibration"],
                    validation=doc["validation"], test=doc.get("test"), metric=metric,
                    labels=[str(x) for x in doc.get("labels") or []],
                    preprocessing=dict(doc.get("preprocessing") or {}), spec=spec,
                    task=_task(doc.get("task"), spec))
    shapes = {key: first_batch_shape(getattr(data, key), key, spec) for key in loaders}
    if len({s[1:] for s in shapes.values()}) != 1:
        listed = ", ".join(f"{k} {list(s)}" for k, s in shapes.items())
        raise UserCodeError(f"data function {spec}: input shapes differ between loaders: "
                            f"{listed}")
    return data


def _task(value: Any, spec: str) -> Any:
    from compress.tasks import parse_task

    return parse_task(value, f"data function {spec}: 'task'")


def first_batch_shape(loader: Any, key: str, spec: str) -> tuple[int, ...]:
    """The input shape of the loader's first batch, after checking it is (inputs, labels)."""
    import torch

    from compress.labels import batch_labels

    try:
        batch = next(iter(loader))
    except StopIteration:
        raise UserCodeError(f"data function {spec}: '{key}' loader is empty") from None
    except Exception as exc:
        raise UserCodeError(f"data function {spec}: '{key}' loader failed: "
                            f"{_one_line(exc)}") from exc
    if not (isinstance(batch, tuple | list) and len(batch) == 2
            and isinstance(batch[0], torch.Tensor)
            and isinstance(batch[1], torch.Tensor | list | tuple)):
        raise UserCodeError(f"data function {spec}: '{key}' must yield (inputs, labels) "
                            "pairs: an input tensor and labels (a tensor, or per-image "
                            "detection labels as a list)")
    inputs, labels = batch[0], batch_labels(batch[1])
    if not inputs.is_floating_point() or inputs.ndim < 2 or len(labels) != len(inputs):
        raise UserCodeError(f"data function {spec}: '{key}' inputs must be a float tensor "
                            f"[batch, ...] with one label each; got {inputs.dtype} "
                            f"{list(inputs.shape)} and {len(labels)} labels")
    return tuple(inputs.shape)
