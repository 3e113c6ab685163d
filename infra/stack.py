"""The stack: composes one construct per capability; no logic of its own."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from actions.plans import rollback_seconds, time_box_seconds
from core import runtime_config
from detectors.registry import ALARM
from infra import constants
from infra.config import ConfigError, RecoveryConfig, Workload
from infra.constructs.accounts import CentralAccounts, in_central_account, member_environment
from infra.constructs.bus import RecoveryBus
from infra.constructs.detection import Detection
from infra.constructs.escalation import Escalation
from infra.constructs.functions import FunctionFactory
from infra.constructs.operations import Operations
from infra.constructs.paging import Paging
from infra.constructs.storage import RecoveryTable
from infra.constructs.workflow import RecoveryWorkflow
from infra.constructs.workloads import ProtectedWorkload
from infra.eks_access import grant_cluster_access
from infra.encryption import DataKey
from infra.nag import apply_nag
from infra.permissions import hosted_zones, plan_grants
from infra.readiness import grant_simulation
from infra.route53_alarms import alarm_arns, forwarded


class RecoveryStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: RecoveryConfig, **kwargs) -> None:
        super().__init__(
            scope, construct_id, description="Detects workload impairment and recovers it (REL07-BP02)", **kwargs
        )
        plans = config.parsed_plans()
        managed_tag = (config.managed_tag_key, config.managed_tag_value)
        region = self._deployment_region(config)
        # The regions this region's stack probes: those of the workloads it stands by for.
        probes = config.region_probes(region)
        bus = RecoveryBus(self, "Events", archive_retention_days=config.archive_retention_days)
        self.data_key = self._data_key(config)
        storage = self._storage(config, region)
        escalation = Escalation(
            self,
            "Escalation",
            emails=config.escalation_emails,
            key=self.data_key,
            subscribed=config.paging.reaches_someone,
        )
        functions = FunctionFactory(
            self,
            "Functions",
            log_retention_days=config.log_retention_days,
            environment={
                "TABLE_NAME": storage.table.table_name,
                "EVENT_BUS_NAME": bus.bus.event_bus_name,
                "ESCALATION_TOPIC_ARN": escalation.topic.topic_arn,
                "MANAGED_TAG_KEY": managed_tag[0],
                "MANAGED_TAG_VALUE": managed_tag[1],
                "LOCK_TTL_SECONDS": str(config.lock_ttl_seconds),
                "CORRELATION_WINDOW_SECONDS": str(config.correlation_window_seconds),
                "STORM_WINDOW_SECONDS": str(config.storm_window_seconds),
                "AUDIT_RETENTION_DAYS": str(config.audit_retention_days),
                "DRY_RUN": "true" if config.dry_run else "false",
                # Plans, guardrails and maintenance windows: a file in the code asset (the
                # environment holds 4 KB in all).
                runtime_config.ENV: runtime_config.FILE_NAME,
                # With member accounts: the role to assume in them, and which accounts are members.
                **member_environment(config.accounts),
            },
            extra_files={runtime_config.FILE_NAME: config.runtime_config(region).to_json()},
        )
        # A workload's alarms live in its own region's stack (all of them in a single-region deployment).
        local_workloads = config.workloads_in(region)
        workloads = [
            ProtectedWorkload(self, f"Workload-{w.name}", workload=w, managed_tag=managed_tag)
            for w in local_workloads
            if in_central_account(w, config.accounts)  # a member's alarms are in its member stack
        ]
        self.detection = Detection(
            self,
            "Detection",
            functions=functions,
            bus=bus.bus,
            dead_letters=escalation.dead_letters,
            workload_names=[w.name for w in local_workloads],
            workload_groups={w.auto_scaling_group: w.name for w in local_workloads if w.auto_scaling_group},
            workload_resources={w.name: w.declared_resources for w in local_workloads},
            sweep_interval_minutes=config.sweep_interval_minutes,
            region_probes=len(probes),
            readiness_interval_minutes=config.readiness_interval_minutes,
            # The EKS check reads the node groups of this account's workloads (docs/eks.md).
            eks_nodegroups=[
                {"workload": w.name, "cluster": w.eks.cluster, "nodegroup": w.eks.nodegroup}
                for w in local_workloads
                if w.eks and in_central_account(w, config.accounts)
            ],
            table=storage.table,
        )
        self._read_forwarded_alarms(config, [w for w in local_workloads if in_central_account(w, config.accounts)])
        # Only the detectors may put events on the recovery bus: an "Impairment Detected" from
        # anyone else in the account would start a recovery.
        bus.admit_only([function.role for function in self.detection.detectors if function.role is not None])
        slack = 600 + config.storm_window_seconds
        self.workflow = RecoveryWorkflow(
            self,
            "Recovery",
            functions=functions,
            table=storage.table,
            topic=escalation.topic,
            bus=bus.bus,
            dead_letters=escalation.dead_letters,
            managed_tag=managed_tag,
            # The backstop time-box: the longest plan's, approval, rollback and capacity return
            # included, and the wait of a storm's first escalation for its summary.
            # The wait while blocked too (each plan's blocking, else the deployment's).
            timeout_seconds=max(
                (time_box_seconds(p, (p.blocking or config.guardrails.blocking).max_wait_seconds) for p in plans),
                default=3600,
            )
            + slack,
            cleanup_timeout_seconds=max((rollback_seconds(p) for p in plans), default=3600) + slack,
            hosted_zones=hosted_zones(config.workloads, config.parsed_plans()),
            plan_grants=plan_grants(config.parsed_plans()),
        )
        grant_simulation(self.detection, self.workflow, plans)
        paging = Paging(
            self,
            "Paging",
            config=config.paging,
            topic=escalation.topic,
            functions=functions,
            name=config.stack_name_in(region) if region else config.stack_name,
        )
        functions.reserve(
            detectors=self.detection.detectors,
            start_recovery=self.workflow.functions["StartRecovery"],
            setting=config.reserved_concurrency,
        )
        self.workloads = workloads
        # EKS access for the roles that call the Kubernetes API, for the clusters declared here.
        clusters = [w.eks.cluster for w in local_workloads if w.eks and in_central_account(w, config.accounts)]
        checks = {d.declaration.name: d.function for d in self.detection.built}
        grant_cluster_access(self, clusters, {**self.workflow.functions, **checks})
        if config.accounts:
            self.accounts = CentralAccounts(
                self, "Accounts", accounts=config.accounts, detection=self.detection, workflow=self.workflow
            )
        self.operations = Operations.for_stack(
            self,
            "Operations",
            detection=self.detection,
            workflow=self.workflow,
            escalation=escalation,
            paging=paging,
            bus=bus.bus,
            workloads=workloads,
            practice_drills=[d for d in config.practice_drills if d.workload in {w.name for w in local_workloads}],
            readiness_plans=[p.name for p in plans],
            readiness_interval_minutes=config.readiness_interval_minutes,
        )
        # What the CLI and the emulator find the deployment by.
        CfnOutput(self, constants.OUTPUT_BUS, value=bus.bus.event_bus_name)
        CfnOutput(self, constants.OUTPUT_TABLE, value=storage.table.table_name)
        CfnOutput(self, constants.OUTPUT_STATE_MACHINE, value=self.workflow.state_machine.state_machine_arn)
        CfnOutput(self, constants.OUTPUT_TOPIC, value=escalation.topic.topic_arn)
        self.template_options.metadata = {
            "ImpairmentRecovery": {
                # region only when set: a single-region template stays as it was
                "workloads": [
                    w.model_dump(mode="json", exclude={k for k in ("region", "account_id") if getattr(w, k) is None})
                    for w in local_workloads
                ],
                "plans": [p.model_dump(mode="json") for p in plans],
                # as JSON text: template metadata takes no fractional numbers (cfn-lint E4002)
                "guardrails": config.guardrails.model_dump_json(),
                # only in a stack that probes other regions (the emulator writes them into the
                # functions' runtime configuration, as the code asset carries them)
                **({"probes": [p.model_dump(mode="json", exclude_none=True) for p in probes]} if probes else {}),
            }
        }
        apply_nag(self)

    def _read_forwarded_alarms(self, config: RecoveryConfig, workloads: list[Workload]) -> None:
        """The alarm detector reads the tags of this region's workloads' health check alarms in
        us-east-1, whose state changes are forwarded here (infra/route53_alarms.py)."""
        here = [w for w in forwarded(config) if w in workloads]
        detector = next((d.function for d in self.detection.built if d.declaration is ALARM), None)
        if here and detector is not None:
            detector.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:ListTagsForResource"], resources=alarm_arns(self.partition, self.account, here)
                )
            )

    def _deployment_region(self, config: RecoveryConfig) -> str | None:
        """This stack's region in a multi-region deployment (it must be decided at synthesis), or None."""
        if config.regions is None:
            return None
        if Token.is_unresolved(self.region) or self.region not in config.regions.all:
            raise ConfigError(
                f"stack {self.stack_name}: with `regions` configured, each stack is deployed to one of them "
                f"({', '.join(config.regions.all)}), given as env=Environment(region=...); got {self.region}"
            )
        return self.region

    def _data_key(self, config: RecoveryConfig) -> kms.IKey | None:
        """The customer managed key of encryption.customer_managed_key (infra/encryption.py), or None."""
        if not config.encryption.customer_managed_key:
            return None
        if config.regions is not None:
            raise ConfigError(
                "encryption.customer_managed_key: not available with `regions` (the global table needs a key in "
                "each replica region when it is created); remove one of the two"
            )
        return DataKey(self, "DataKey").key

    def _storage(self, config: RecoveryConfig, region: str | None) -> RecoveryTable | _ReplicaStorage:
        """The primary region creates the table (a global table when there are standby regions); a
        standby region uses its replica, by name, with no reference to the primary's stack."""
        if config.regions is None or region == config.regions.primary:
            standby = config.regions.standby if config.regions else []
            return RecoveryTable(
                self, "Storage", table_name=config.table_name, replica_regions=standby, key=self.data_key
            )
        assert config.table_name is not None  # always set with regions
        return _ReplicaStorage(RecoveryTable.replica(self, "StorageReplica", table_name=config.table_name))


class _ReplicaStorage:
    """What the stack uses of its storage, when the table is the local replica of a global table."""

    def __init__(self, table: dynamodb.ITableV2) -> None:
        self.table = table
