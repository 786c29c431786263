"""What a recorded episode holds and how the policy sees it: control rate, image size, cameras,
action and state names, phases, object names. No simulator here: the latent policy's node and
cores import this, never the simulation (data generation in sim_episodes.py matches these)."""
from __future__ import annotations

CONTROL_RATE = 5.0            # Hz: one action (and one recorded frame) every 0.2 s
IMAGE_SIZE = 64
CAMERA_KEYS = ("scene", "wrist")
ACTION_NAMES = ("dx", "dy", "dz", "dyaw", "grip")
STATE_NAMES = ("x", "y", "z", "yaw", "gripper_width")
MAX_STEP = 0.03               # m of tool travel per control step
MAX_YAW_STEP = 0.15           # rad per control step
PHASES = ("pre_grasp", "descend", "lift", "transport", "lower", "retreat", "done")
SCENE_FOV_DEG = 45.0          # narrower than the sim node's 60 deg: cubes span a few pixels at 64x64
CUBE_IDS = ("red_cube", "green_cube", "blue_cube")   # the objects a goal may name (the sim's cubes)
