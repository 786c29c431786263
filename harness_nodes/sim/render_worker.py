"""Camera rendering in a separate process (no ROS).

PyBullet's TinyRenderer holds the GIL for tens of milliseconds per image, which would stall physics
stepping, /clock and /joint_states if it ran in the node's process. The worker keeps its own
DIRECT-mode copy of the world, is sent `SimWorld.snapshot()`s, and sends back rendered images, so
rendering runs on another core and the node never waits for it (frames are skipped while busy).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path


def serve(requests, results, robot: str, width: int, height: int) -> None:
    """Worker loop: recv {"snapshot", "cameras", "stamp"} -> send {"stamp", "images": {cam: ...}}."""
    # The parent stops us (EOF or None), also when Ctrl-C / SIGTERM reach the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from harness_nodes.sim.world import SimWorld

    world = SimWorld(robot, image_width=width, image_height=height).connect()
    results.send({"ready": True})
    try:
        while True:
            try:
                request = requests.recv()
            except (EOFError, OSError):
                break
            if request is None:
                break
            world.apply_snapshot(request["snapshot"])
            images = {}
            for cam in request["cameras"]:
                r = world.render(cam)
                images[cam] = {"rgb": r.rgb, "depth": r.depth, "intrinsics": r.intrinsics,
                               "position": r.position, "quaternion": r.quaternion}
            try:
                results.send({"stamp": request["stamp"], "images": images})
            except (BrokenPipeError, OSError):
                break
    finally:
        world.disconnect()


class RenderWorker:
    """Parent side: `submit()` a render without waiting, `poll()` for a finished one."""

    def __init__(self, robot: str, width: int, height: int, start_timeout: float = 30.0):
        # A plain subprocess (not multiprocessing's spawn, which re-runs the parent's __main__ and
        # would start a second sim node from an unguarded entry-point script).
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness_nodes.sim.render_worker", str(req_r), str(res_w),
             robot, str(width), str(height)],
            pass_fds=(req_r, res_w), env=env, stdin=subprocess.DEVNULL)
        os.close(req_r)
        os.close(res_w)
        self._send = Connection(req_w, readable=False)
        self._recv = Connection(res_r, writable=False)
        self.busy = False
        if not self._recv.poll(start_timeout):
            self.close()
            raise RuntimeError("render worker did not start")
        self._recv.recv()

    def submit(self, snapshot: dict, cameras: list[str], stamp: float) -> bool:
        if self.busy or not cameras:
            return False
        self._send.send({"snapshot": snapshot, "cameras": list(cameras), "stamp": stamp})
        self.busy = True
        return True

    def poll(self) -> dict | None:
        if not self.busy or not self._recv.poll():
            return None
        self.busy = False
        return self._recv.recv()

    def close(self) -> None:
        try:
            self._send.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(2.0)
        for conn in (self._send, self._recv):
            conn.close()


def _main(argv: list[str]) -> int:
    req_fd, res_fd, robot, width, height = argv
    requests = Connection(int(req_fd), writable=False)
    results = Connection(int(res_fd), readable=False)
    serve(requests, results, robot, int(width), int(height))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
