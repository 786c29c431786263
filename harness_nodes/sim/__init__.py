"""PyBullet simulation: a pure world core (`world.py`, no ROS) and a thin ROS 2 node (`node.py`)."""
