#!/usr/bin/env bash
# Runs a command inside the project's ROS 2 environment: the .venv ament prefix, Fast DDS,
# discovery limited to this machine, and the source tree first on PYTHONPATH.
# Usage: scripts/env.sh <command> [args...]
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.venv
export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export PATH=$VENV/bin:$PATH
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
export PYTHONUNBUFFERED=1
exec "$@"
