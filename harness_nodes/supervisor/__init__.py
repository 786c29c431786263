"""Harness supervisor: runs an ExecuteTask goal through the harness (look, approach, grasp, lift,
move, place, release, verify) with verification, typed failures, capped recovery and escalation.

task.py (goal text -> typed task), planner.py (subgoals -> end-effector chunks from memory's
beliefs), recovery.py (failure types, recoveries, retry budget), runner.py (the task loop over a
`Ports` interface), config.py (parameters) are pure; node.py is the ROS plumbing; operator/ is the
terminal command that lists and answers help requests.
"""
