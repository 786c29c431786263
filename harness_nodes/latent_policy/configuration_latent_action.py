"""Configuration of the latent-action models (sizes, codebook, frame interval), stored beside the
weights in their metadata so a checkpoint always rebuilds the network it was trained as."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness_nodes.dataset.features import ACTION_NAMES, CAMERA_KEYS, CUBE_IDS, IMAGE_SIZE, STATE_NAMES


class LatentActionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(IMAGE_SIZE, ge=16, le=256)
    cameras: tuple[str, ...] = CAMERA_KEYS
    frame_interval: int = Field(2, ge=1, le=10, description="k: control steps between o_t and o_t+k "
                                "(= the action chunk length: one latent action spans one chunk)")
    codebook_size: int = Field(8, ge=2, le=64)
    num_tokens: int = Field(3, ge=1, le=8)
    code_dim: int = Field(16, ge=2, le=128)
    feature_dim: int = Field(128, ge=16, le=1024)
    width: int = Field(16, ge=4, le=256, description="channels of the first conv layer")
    prediction_size: int = Field(32, ge=8, le=256, description="side of the predicted later frame")
    commitment: float = Field(0.25, ge=0.0)
    label_dim: int = Field(4, ge=1, le=8, description="dx, dy, dz, dyaw: what the labelled share teaches the code")
    label_weight: float = Field(0.3, ge=0.0, description="weight of the labelled read-out loss (0: frames only)")
    dead_code_window: int = Field(50, ge=1, description="training steps between dead-code restarts")
    dead_code_min_fraction: float = Field(0.02, ge=0.0, le=1.0,
                                          description="usage below this fraction of uniform counts as dead")

    @property
    def in_channels(self) -> int:
        return 3 * len(self.cameras)

    @property
    def latent_dim(self) -> int:
        return self.num_tokens * self.code_dim


class DecoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    embodiment: str = "panda"
    latent_dim: int = 48
    state_dim: int = len(STATE_NAMES)
    action_dim: int = len(ACTION_NAMES)
    chunk: int = Field(2, ge=1, le=32)
    hidden: int = Field(128, ge=8, le=1024)


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = IMAGE_SIZE
    in_channels: int = 6
    width: int = 16
    feature_dim: int = 128
    state_dim: int = len(STATE_NAMES)
    objects: tuple[str, ...] = CUBE_IDS
    hidden: int = 256
    codebook_size: int = 8
    num_tokens: int = 3
