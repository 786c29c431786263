"""state_publisher: /robot_description, /tf_static and /tf of the robot and its cameras (robot_state_publisher's job)."""
