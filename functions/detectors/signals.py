"""What the detectors' rules let through, shared by the declarations (detectors/registry.py, read at
synthesis) and the detectors that judge each event: constants only, so that a detector imports
them without the declarations (whose classes would be built at every cold start)."""

# The instance states that can be an impairment (detectors/ec2_state.py decides whether one is).
EC2_IMPAIRING_STATES = ("stopping", "stopped", "shutting-down", "terminated")
# The RDS event categories that can be an impairment (detectors/rds.py decides which events are).
RDS_IMPAIRING_CATEGORIES = ("failure", "failover", "low storage", "availability", "recovery")
# The stop codes of a task that may have failed (detectors/ecs.py decides whether it did):
# UserInitiated, SpotInterruption and TerminationNotice never are.
ECS_FAILURE_STOP_CODES = ("EssentialContainerExited", "TaskFailedToStart", "ServiceSchedulerInitiated")
