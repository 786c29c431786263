#!/usr/bin/env bash
# Loads a dataset in the LeRobot v3 layout (written by `harness_nodes.dataset.generate` or
# `harness_nodes.recording.export`) with the `lerobot` package's own LeRobotDataset, in a separate
# virtual environment: lerobot 0.4.x pins an older torch than the project's, so it never goes into
# the project's .venv. Not part of `make test`.
#
#   scripts/check_lerobot_load.sh DATASET_DIR [VENV_DIR]
#
# torch is installed first at an exact version, then torchvision, torchcodec and lerobot without
# their dependencies so none can replace it, then the few packages LeRobotDataset imports, under a
# constraint that keeps torch where it is. lerobot imports torchvision, and no torchvision imports
# beside the project's CPU torch 2.13.0 ("operator torchvision::nms does not exist"), so the default
# is the exact pair this machine keeps on disk with a working torchvision (torch 2.14.1 +
# torchvision 0.29.1, about 5.5 GB); TORCH/TORCHVISION/TORCHCODEC set another exact set. Frames are
# decoded with torchcodec (torchvision 0.29 has no VideoReader for lerobot's pyav backend), which
# needs the system's FFmpeg libraries (Debian 12: apt-get install libavcodec59 libavformat59
# libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8). Exit 0 when the dataset
# loaded and every row with its frames came out of LeRobotDataset.
set -euo pipefail
DATASET=${1:?usage: scripts/check_lerobot_load.sh DATASET_DIR [VENV_DIR]}
VENV=${2:-${TMPDIR:-/tmp}/lerobot-check-venv}
PYTHON=${PYTHON:-python3.11}
TORCH=${TORCH:-2.14.1}
TORCHVISION=${TORCHVISION:-0.29.1}
TORCHCODEC=${TORCHCODEC:-0.17.0}
LEROBOT=${LEROBOT:-0.4.4}
[ -f "$DATASET/meta/info.json" ] || { echo "check_lerobot_load: $DATASET/meta/info.json missing" >&2; exit 2; }
case "$TORCH$TORCHVISION$TORCHCODEC" in *[!0-9.]*|"") echo "TORCH, TORCHVISION and TORCHCODEC must be exact versions" >&2; exit 2;; esac
ldconfig -p | grep -q 'libavutil\.so' || { echo "check_lerobot_load: no FFmpeg libraries (libavutil) for torchcodec; see the comment at the top" >&2; exit 2; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==$TORCH"
pip install --no-deps "torchvision==$TORCHVISION" "torchcodec==$TORCHCODEC" "lerobot==$LEROBOT"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH" > "$constraints"
# what lerobot.datasets imports (lerobot's own pins where it has them)
pip install -c "$constraints" "datasets>=4.0.0,<5.0.0" "huggingface-hub>=0.34.2,<0.36.0" "packaging>=24.2,<26.0" \
  "av>=15.0.0,<16.0.0" "jsonlines>=4.0.0,<5.0.0" "einops>=0.8.0,<0.9.0" "draccus==0.10.0" "deepdiff>=7.0.1,<9.0.0" \
  "termcolor>=2.4.0,<4.0.0" "accelerate>=1.10.0,<2.0.0" pillow
installed=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
[ "$installed" = "$TORCH" ] || { echo "check_lerobot_load: torch became $installed (wanted $TORCH)" >&2; exit 1; }

HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$DATASET" <<'EOF'
import json
import sys
from pathlib import Path

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = Path(sys.argv[1]).resolve()
info = json.loads((root / "meta/info.json").read_text())
ds = LeRobotDataset(repo_id=f"local/{root.name}", root=root, video_backend="torchcodec")
assert len(ds) == info["total_frames"], (len(ds), info["total_frames"])
assert ds.num_episodes == info["total_episodes"]
for index in range(len(ds)):
    item = ds[index]
    for key, feature in info["features"].items():
        assert key in item, f"{key} missing from item {index}"
        if feature["dtype"] == "video":
            h, w, c = feature["shape"]
            assert tuple(item[key].shape) == (c, h, w), (key, tuple(item[key].shape))
            assert item[key].dtype == torch.float32 and 0.0 <= float(item[key].min()) <= float(item[key].max()) <= 1.0
print(json.dumps({"lerobot_loaded": True, "frames": len(ds), "episodes": ds.num_episodes,
                  "features": sorted(info["features"]), "torch": torch.__version__}))
EOF
