"""The benchmark suite: scenarios x ablations x seeds of harness episodes, their statistics and
report (pure: no rclpy; the episodes themselves come from harness_nodes.episodes)."""
