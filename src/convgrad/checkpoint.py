"""Checkpoints: one ``.npz`` file that is safe to open from strangers and never half-written.

Contents: ``meta`` (JSON: the model's architecture, the optimizer's hyperparameters and scalar
state, the training progress), ``model/<state_dict key>`` arrays, ``optim/<param index>/<name>``
arrays, and ``checksum`` (SHA-256 over everything else). It is read with ``allow_pickle=False``, so
loading it runs no code; it is written to a temporary file in the same directory and renamed over
the target, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
import zipfile
from dataclasses import dataclass

import numpy as np

FORMAT = "convgrad-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, corrupted, or made for another model."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _encode_optimizer(state_dict: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Optimizer state_dict -> (JSON part, arrays part)."""
    arrays, scalars = {}, {}
    for index, state in state_dict["state"].items():
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                arrays[f"optim/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}, arrays


def _decode_optimizer(meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    state: dict[int, dict] = {}
    for key, value in arrays.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(path, model, optimizer=None, scheduler=None, training: dict | None = None) -> pathlib.Path:
    """Write model (architecture and weights), optimizer, scheduler and training progress to ``path``."""
    path = pathlib.Path(path)
    meta = {"format": FORMAT, "version": VERSION, "architecture": model.spec(), "training": training or {}}
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        meta["optimizer"], optim_arrays = _encode_optimizer(optimizer.state_dict())
        meta["optimizer"]["type"] = type(optimizer).__name__
        arrays.update(optim_arrays)
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, **scheduler.state_dict()}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["checksum"] = np.array(_digest(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        pathlib.Path(handle.name).unlink(missing_ok=True)
        raise
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint: its metadata and arrays, ready to restore a model and an optimizer."""

    path: pathlib.Path
    meta: dict
    model_state: dict[str, np.ndarray]
    optim_arrays: dict[str, np.ndarray]

    @property
    def training(self) -> dict:
        return self.meta.get("training", {})

    def build_model(self):
        """The model, rebuilt from the stored architecture, with the stored weights."""
        from .nn import from_spec

        try:
            model = from_spec(self.meta["architecture"])
        except (TypeError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint {self.path}: cannot rebuild its architecture: {error}") from None
        self.restore_model(model)
        return model

    def restore_model(self, model) -> None:
        """Load the weights into ``model``; CheckpointError naming every key or shape that does not match."""
        if model.spec() != self.meta["architecture"]:
            raise CheckpointError(f"checkpoint {self.path} was made for another architecture than this model")
        try:
            model.load_state_dict(self.model_state)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {self.path} does not match the model: {error}") from None

    def restore_optimizer(self, optimizer) -> None:
        saved = self.meta.get("optimizer")
        if saved is None:
            raise CheckpointError(f"checkpoint {self.path} holds no optimizer state")
        if saved["type"] != type(optimizer).__name__:
            raise CheckpointError(f"checkpoint {self.path} holds {saved['type']} state, not {type(optimizer).__name__}")
        try:
            optimizer.load_state_dict(_decode_optimizer(saved, self.optim_arrays))
        except (ValueError, IndexError, KeyError) as error:
            raise CheckpointError(f"checkpoint {self.path}: optimizer state does not match: {error}") from None


def load(path) -> Checkpoint:
    """Read and verify a checkpoint; CheckpointError if it is missing, unreadable, corrupted or foreign."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupted: {error}") from None
    if "meta" not in arrays or "checksum" not in arrays:
        raise CheckpointError(f"checkpoint {path} is not a convgrad checkpoint (no meta or checksum)")
    checksum = str(arrays.pop("checksum"))
    if _digest(arrays) != checksum:
        raise CheckpointError(f"checkpoint {path} is corrupted: its checksum does not match its contents")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: unreadable metadata: {error}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} is not a convgrad checkpoint of version {VERSION}")
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_arrays = {k: v for k, v in arrays.items() if k.startswith("optim/")}
    return Checkpoint(path, meta, model_state, optim_arrays)
