"""Episode recording: the recorder node (rosbag2 + MCAP), replay and export to the LeRobot v3 layout."""
