"""Names that the stack, the emulator and the CLI share."""

from core.contract import CLEARED, DETECTED, EVENT_SOURCE  # noqa: F401 - one definition, re-exported

SCHEMA_REGISTRY = "impairment-recovery"
SCHEMA_NAME = "recovery.detection@ImpairmentEvent"
TAG_PREFIX = "recovery:"
METRICS_NAMESPACE = "ImpairmentRecovery"

# Errors the state machine retries (TransientError is ours; the rest are Lambda's own).
RETRYABLE_ERRORS = [
    "TransientError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]

OUTPUT_BUS = "RecoveryBusName"
OUTPUT_TABLE = "RecoveryTableName"
OUTPUT_STATE_MACHINE = "RecoveryStateMachineArn"
OUTPUT_TOPIC = "EscalationTopicArn"
