"""One factory for every Lambda function: shared code asset, the dependency layer built from
requirements.txt (infra/layer.py), own role, tracing, structured logging, a log group with retention."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import FUNCTIONS_DIR, bytecode, layer
from infra.config import ReservedConcurrency

# The dependency layer is built for this runtime and architecture (layer.PYTHON_VERSION, layer.PLATFORM).
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.X86_64
# STS through the function's own region's endpoint, never the global one (sts.amazonaws.com, in
# us-east-1): a standby region must assume member roles while us-east-1 is impaired (static stability,
# docs/regions.md). boto3 defaults to it since 1.40 (the layer's is newer); kept explicit, so that
# it does not depend on the SDK's version. Set last, so that no function's own environment overrides it.
STATIC_ENVIRONMENT = {"AWS_STS_REGIONAL_ENDPOINTS": "regional"}
# Said at synth while the detectors or StartRecovery have no reserved concurrency (cdk acknowledge).
NO_RESERVED_CONCURRENCY_WARNING = "impairment-recovery:no-reserved-concurrency"


class FunctionFactory(Construct):
    """Builds the functions of the stack from one code asset (functions/, no bundling) and one layer
    holding every runtime dependency at the version requirements.txt pins, boto3 included (it comes
    before the runtime's own on sys.path), with `extra_files` (the recovery configuration) added to
    the code. Every function gets STATIC_ENVIRONMENT."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention_days: int,
        environment: dict[str, str],
        extra_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.code = lambda_.Code.from_asset(str(stage_code(extra_files or {})))
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(layer.path())),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=_layer_description(),
        )
        self.retention = _retention(log_retention_days)
        self.environment = environment

    def create(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        timeout_seconds: int = 30,
        memory_mb: int = 256,
        environment: dict[str, str] | None = None,
        **kwargs,
    ) -> lambda_.Function:
        scope = Stack.of(self)
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{construct_id}: only what its code declares",
        )
        log_group = logs.LogGroup(
            scope, f"{construct_id}Logs", retention=self.retention, removal_policy=RemovalPolicy.DESTROY
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            scope,
            construct_id,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self.code,
            handler=handler,
            description=description,
            role=role,
            layers=[self.layer],
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "POWERTOOLS_SERVICE_NAME": "impairment-recovery",
                "POWERTOOLS_METRICS_NAMESPACE": "ImpairmentRecovery",
                **self.environment,
                **(environment or {}),
                **STATIC_ENVIRONMENT,
            },
            **kwargs,
        )
        return function

    def reserve(
        self, *, detectors: list[lambda_.Function], start_recovery: lambda_.Function, setting: ReservedConcurrency
    ) -> None:
        """Reserves concurrency for detection and the start of recoveries, so that a storm elsewhere in
        the account cannot starve them; warns at synth about those left without (docs/operations.md)."""
        reserved = [(f, setting.detectors) for f in detectors] + [(start_recovery, setting.start_recovery)]
        for function, count in reserved:
            if count is not None:
                cfn = function.node.default_child
                assert isinstance(cfn, lambda_.CfnFunction)
                cfn.reserved_concurrent_executions = count
        unset = [name for name, count in setting if count is None]
        if unset:
            fields = " and ".join(f"reserved_concurrency.{name}" for name in unset)
            who = " and ".join({"detectors": "the detectors", "start_recovery": "StartRecovery"}[n] for n in unset)
            Annotations.of(self).add_warning_v2(
                NO_RESERVED_CONCURRENCY_WARNING,
                f"DETECTION CAN BE STARVED: without {fields}, the account's unreserved concurrency, shared with "
                f"every other function in this account and region, is all {who} can use: a storm of invocations "
                "there can throttle them when an impairment needs them. Set it (the account must keep at least 100 "
                "executions unreserved; see docs/operations.md, Reserved concurrency).",
            )
        total = sum(count for _, count in reserved if count is not None)
        if total:
            Annotations.of(self).add_info(
                f"reserved concurrency: {total} executions in all ({len(detectors)} detectors, StartRecovery); "
                f"Lambda refuses it unless the account's concurrency quota, less its other reservations, is at "
                f"least {total + 100}"
            )


def _layer_description() -> str:
    """What the layer holds, readable in the console: requirements.txt's pins (256 characters at most)."""
    pins = " ".join(f"{name}=={version}" for name, version in sorted(layer.pins().items()))
    return f"requirements.txt: {pins}"[:256]


_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def stage_code(extra_files: dict[str, str]) -> Path:
    """functions/ plus the extra files and their bytecode (infra/bytecode.py), in a directory named
    by a hash of their content (so synthesizing again reuses it, and the asset changes exactly when
    the code, the files or the bytecode's Python do)."""
    digest = hashlib.sha256()
    for path in sorted(FUNCTIONS_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(FUNCTIONS_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name, content in sorted(extra_files.items()):
        digest.update(name.encode() + b"\0" + content.encode() + b"\0")
    digest.update(bytecode.tag().encode())
    staged = Path(tempfile.gettempdir()) / f"impairment-recovery-code-{digest.hexdigest()[:20]}"
    if staged.is_dir() and not bytecode.compiled(staged):
        # made by an older build, or bytecode of another Python: never shipped as the runtime's
        shutil.rmtree(staged, ignore_errors=True)
    if not staged.is_dir():
        building = Path(tempfile.mkdtemp(prefix="impairment-recovery-code-"))
        shutil.copytree(FUNCTIONS_DIR, building / "code", ignore=_IGNORED)
        for name, content in extra_files.items():
            (building / "code" / name).write_text(content)
        # Lambda cannot write bytecode in /var/task: made here, or compiled at every cold start.
        bytecode.compile_tree(building / "code", bytecode.CODE_ROOT)
        try:
            (building / "code").rename(staged)
        except OSError:  # another synthesis staged the same content first
            shutil.rmtree(building / "code", ignore_errors=True)
        shutil.rmtree(building, ignore_errors=True)
    return staged


_RETENTION_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def _retention(days: int) -> logs.RetentionDays:
    """The shortest retention CloudWatch Logs offers that keeps logs at least `days` days."""
    allowed = next((d for d in sorted(_RETENTION_DAYS) if d >= days), 3653)
    return getattr(logs.RetentionDays, _RETENTION_DAYS[allowed])
