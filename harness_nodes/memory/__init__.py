"""Memory-validity tracker (issue #4): facts that know how confident they are, when they were last
verified, which of the robot's own actions may have invalidated them, and how to re-check them.

Pure core (no rclpy): `facts` (types), `table` (columnar store with a spatial grid), `validity`
(geometry and the validity rules' maths), `persistence` (SQLite WAL: facts and latent entries),
`latent` (encoding cache), `core` (MemoryCore: the rules), `grasp` (what the gripper holds, carried
and released), `recheck` (re-check requests: where to look again), `motion` (MeasuredMotion: arm
motion no chunk accounts for), `boundary` (pydantic models of what the node accepts from outside: service requests,
string and array sizes). `node.py` is the ROS 2 node `memory_tracker`.
"""
