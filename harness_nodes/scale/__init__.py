"""Scale-out of independent jobs (episodes, data generation): parallel child processes on this
machine or tasks on a Ray cluster, each job on a ROS domain of its own. Pure: no rclpy."""
from harness_nodes.scale.domains import DEFAULT_DOMAINS, DomainPool, DomainPoolError, parse_domain_range  # noqa: F401
from harness_nodes.scale.jobs import BACKENDS, JobResult, RunSettings, ScaleOutError, run_jobs, summary  # noqa: F401
