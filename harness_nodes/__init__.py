"""Robot harness ROS 2 nodes and their pure cores."""
