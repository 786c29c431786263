"""Weights on disk: safetensors (tensors only, loading never unpickles) plus one metadata JSON per
model directory naming the data, seed, command, metrics, configurations and SHA-256 of each file.

A missing or corrupt file raises `WeightsError` naming the file and the command that makes it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

METADATA_FILE = "metadata.json"
TRAIN_COMMAND = "python -m harness_nodes.latent_policy.train"


class WeightsError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_models(directory: Path, models: dict[str, torch.nn.Module], metadata: dict) -> Path:
    """Write `<name>.safetensors` per model and metadata.json (with configs and checksums)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, model in models.items():
        path = directory / f"{name}.safetensors"
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(path))
        files[name] = {"file": path.name, "sha256": sha256(path),
                       "config": model.config.model_dump(mode="json")}
    meta = dict(metadata, files=files)
    (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def read_metadata(directory: Path) -> dict:
    path = directory / METADATA_FILE
    if not path.is_file():
        raise WeightsError(f"weights metadata {path} is missing; make the weights with `{TRAIN_COMMAND} --out {directory}`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"weights metadata {path} is corrupt ({exc}); remake it with "
                           f"`{TRAIN_COMMAND} --out {directory}`") from None


def load_model(directory: Path, name: str, factory) -> torch.nn.Module:
    """Build `factory(config_dict)` and load `<name>.safetensors` into it after checking its checksum."""
    meta = read_metadata(directory)
    entry = meta.get("files", {}).get(name)
    hint = f"make it with `{meta.get('command') or TRAIN_COMMAND}`"
    path = directory / f"{name}.safetensors"
    if entry is None:
        raise WeightsError(f"{directory / METADATA_FILE} lists no model '{name}' ({path}); {hint}")
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing; {hint}")
    if sha256(path) != entry["sha256"]:
        raise WeightsError(f"weights file {path} is corrupt (checksum differs from {METADATA_FILE}); {hint}")
    try:
        state = load_file(str(path))
    except Exception as exc:   # noqa: BLE001 - safetensors raises several types on bad headers
        raise WeightsError(f"weights file {path} is unreadable ({exc}); {hint}") from None
    model = factory(entry["config"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"weights file {path} does not fit its configuration (missing {missing}, "
                           f"unexpected {unexpected}); {hint}")
    model.eval()
    return model
