"""Controller router: validates action chunks, solves IK, time-scales and executes them (node.py);
the pure core (kinematics, validation, trajectory, core) has no ROS dependency."""
