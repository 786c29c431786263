"""Bringup: the stack description (config/stack.yaml) and a launcher for machines without ros2 launch."""
