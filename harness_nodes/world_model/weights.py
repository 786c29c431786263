"""Saving and loading the ensemble: weights as safetensors plus a metadata JSON beside them (data,
seed, command, metrics, calibrated veto threshold, checksum). A missing, corrupted or mismatched
file is a clear error naming the command that makes it. Pure: no ROS.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness_nodes.world_model.modeling_ensemble import EnsembleShape, WorldModelEnsemble

TRAIN_COMMAND = "scripts/env.sh python -m harness_nodes.world_model.training"
WEIGHTS_NAME = "ensemble.safetensors"
METADATA_NAME = "ensemble.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "world_model"


class WeightsError(RuntimeError):
    """The world model's weights cannot be used as they are."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_model(model: WorldModelEnsemble, folder: Path, metadata: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_NAME
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    meta = dict(metadata, shape=model.shape.to_dict(), checksum_sha256=sha256(weights),
                weights=WEIGHTS_NAME)
    (folder / METADATA_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return weights


def load_model(folder: Path | str | None = None, expect: dict | None = None) -> tuple[WorldModelEnsemble, dict]:
    """The ensemble in `folder` (default models/world_model/). `expect` lists metadata values
    that must match (e.g. robot, subjects, step_time)."""
    folder = Path(folder) if folder else DEFAULT_MODEL_DIR
    weights, meta_path = folder / WEIGHTS_NAME, folder / METADATA_NAME
    hint = f"make it with: {TRAIN_COMMAND} --out {folder}"
    if not weights.is_file() or not meta_path.is_file():
        raise WeightsError(f"world-model weights missing in {folder} ({WEIGHTS_NAME} + {METADATA_NAME}); {hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise WeightsError(f"{meta_path} is not valid JSON ({exc}); {hint}") from None
    if meta.get("checksum_sha256") != sha256(weights):
        raise WeightsError(f"{weights} does not match the checksum in {meta_path} (corrupted or replaced); {hint}")
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise WeightsError(f"world-model weights in {folder} were trained for {key}={meta.get(key)!r}, "
                               f"this configuration has {value!r}; {hint}")
    try:
        model = WorldModelEnsemble(EnsembleShape(**meta["shape"]))
        model.load_state_dict(load_file(str(weights)))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{weights} does not fit its metadata ({exc}); {hint}") from None
    model.eval()
    return model, meta
