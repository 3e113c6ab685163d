"""failover under moto: Route 53 records switched to the standby and restored exactly; RDS DB
clusters and Multi-AZ DB instances failed over and failed back.

What moto lacks is said where it is stood in for: it always reports Route 53 health checks
healthy (an unhealthy standby, simulated by replacing its GetHealthCheckStatus response, is waited for), and
RebootDBInstance accepts ForceFailover but moves nothing (the instance tests replace moto's reboot
with one that moves the instance to its standby's zone, and record that ForceFailover was asked
for); the exact call shapes are checked with botocore's Stubber.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core import aws
from core.errors import ActionRefused, CapacityNotReady, InvalidInput, PermanentError, TransientError
from tests.builders import MANAGED_TAG, REGION, action_event, impairment, run_step

RECORD = "app.example.com"
PRIMARY, SECONDARY = "primary", "secondary"


# --- builders -------------------------------------------------------------------------------


def _route53():
    return boto3.client("route53", region_name=REGION)


def _rds():
    return boto3.client("rds", region_name=REGION)


@dataclass(frozen=True)
class Dns:
    """A hosted zone with a primary and a standby record set of RECORD, each with a health check."""

    zone_id: str
    primary_check: str
    secondary_check: str

    def record_sets(self) -> dict[str, dict[str, Any]]:
        listed = _route53().list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return {r["SetIdentifier"]: r for r in listed if r["Name"] == f"{RECORD}." and "SetIdentifier" in r}

    def scope(self) -> dict[str, str]:
        return {
            "dns_hosted_zone_id": self.zone_id,
            "dns_record_name": RECORD,
            "dns_record_type": "A",
            "dns_primary_set": PRIMARY,
            "dns_secondary_set": SECONDARY,
        }

    def impairment(self, scope: dict[str, str] | None = None):
        return impairment(
            resources=[("route53:healthcheck", self.primary_check)],
            scope=self.scope() if scope is None else scope,
        )


def build_dns(*, routing: str = "failover", managed: bool = True, filler: int = 0) -> Dns:
    """A managed zone (unless managed=False) with RECORD as a failover pair or a weighted pair
    (primary weight 100, standby 0), and `filler` other records around it."""
    r53 = _route53()
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="zone")["HostedZone"]["Id"]
    zone_id = zone_id.removeprefix("/hostedzone/")
    if managed:
        r53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}]
        )
    checks = [
        r53.create_health_check(
            CallerReference=name,
            HealthCheckConfig={"Type": "HTTPS", "FullyQualifiedDomainName": f"{name}.example.com", "Port": 443},
        )["HealthCheck"]["Id"]
        for name in (PRIMARY, SECONDARY)
    ]

    def record(set_id: str, address: str, check: str, **routing_fields: Any) -> dict[str, Any]:
        return {
            "Name": RECORD,
            "Type": "A",
            "SetIdentifier": set_id,
            "TTL": 60,
            "ResourceRecords": [{"Value": address}],
            "HealthCheckId": check,
            **routing_fields,
        }

    if routing == "failover":
        pair = [record(PRIMARY, "192.0.2.10", checks[0], Failover="PRIMARY")]
        pair.append(record(SECONDARY, "198.51.100.10", checks[1], Failover="SECONDARY"))
    else:
        pair = [record(PRIMARY, "192.0.2.10", checks[0], Weight=100)]
        pair.append(record(SECONDARY, "198.51.100.10", checks[1], Weight=0))
    others = [
        {"Name": f"host{n:03d}.example.com", "Type": "A", "TTL": 300, "ResourceRecords": [{"Value": "192.0.2.99"}]}
        for n in range(filler)
    ]
    # UPSERT rather than CREATE: moto refuses a later CREATE of a record set equal to one created
    # before while any record set of that name exists, even when the same batch deletes it first
    # (Route 53 itself applies the batch as a whole), and the rollback re-creates these.
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in pair + others]},
    )
    return Dns(zone_id=zone_id, primary_check=checks[0], secondary_check=checks[1])


def build_cluster(*, managed: bool = True, members: int = 2) -> str:
    rds = _rds()
    tags = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}] if managed else []
    rds.create_db_cluster(
        DBClusterIdentifier="orders",
        Engine="aurora-postgresql",
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password",
        Tags=tags,
    )
    for n in range(members):
        rds.create_db_instance(
            DBInstanceIdentifier=f"orders-{n + 1}",
            DBClusterIdentifier="orders",
            DBInstanceClass="db.r6g.large",
            Engine="aurora-postgresql",
        )
    return "orders"


def writer(cluster: str) -> str:
    members = _rds().describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]["DBClusterMembers"]
    return next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"])


def build_instance(*, managed: bool = True, multi_az: bool = True) -> str:
    tags = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}] if managed else []
    _rds().create_db_instance(
        DBInstanceIdentifier="billing",
        DBInstanceClass="db.m6g.large",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password",
        MultiAZ=multi_az,
        AvailabilityZone=f"{REGION}a",
        Tags=tags,
    )
    return "billing"


def zone_of(instance: str) -> str:
    return _rds().describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]["AvailabilityZone"]


@pytest.fixture
def forced_failovers(monkeypatch) -> list[str]:
    """moto accepts RebootDBInstance(ForceFailover=True) but moves nothing: stand in for RDS by
    moving the instance to the other zone of its pair (a <-> b) and remember each forced failover."""
    from moto.rds.responses import RDSResponse

    original = RDSResponse.reboot_db_instance
    forced: list[str] = []

    def reboot(self):
        identifier = self.params.get("DBInstanceIdentifier")
        if self.params.get("ForceFailover"):
            forced.append(identifier)
            db = self.backend.describe_db_instances(identifier)[0]
            db.availability_zone = f"{REGION}b" if db.availability_zone.endswith("a") else f"{REGION}a"
        return original(self)

    monkeypatch.setattr(RDSResponse, "reboot_db_instance", reboot)
    return forced


def apply(model, context, **params):
    return run_step("apply", action_event(model, "failover", params=params), context)


def rollback(model, context, applied, **params):
    return run_step("rollback", action_event(model, "failover", params=params, applied=applied), context)


# --- DNS: failover records ------------------------------------------------------------------


def test_dns_failover_makes_the_standby_primary_and_rollback_restores_the_records_exactly(store, lambda_context):
    # Given a managed zone with a failover pair: primary 192.0.2.10, standby 198.51.100.10
    dns = build_dns()
    original = dns.record_sets()
    model = dns.impairment()

    # When failover is applied
    applied = apply(model, lambda_context, kind="dns")

    # Then the standby is the PRIMARY record and the old primary the SECONDARY, nothing else changed
    now = dns.record_sets()
    assert applied["result"] == "changed"
    assert now[SECONDARY] == {**original[SECONDARY], "Failover": "PRIMARY"}
    assert now[PRIMARY] == {**original[PRIMARY], "Failover": "SECONDARY"}
    # and the record sets before are in the result and the audit trail
    assert applied["before"]["primary"] == original[PRIMARY]
    assert applied["before"]["secondary"] == original[SECONDARY]
    assert applied["before"]["routing"] == "failover"
    assert store.get_action(model.impairment_id, 0, "apply")["before"] == applied["before"]

    # When it is rolled back
    result = rollback(model, lambda_context, applied, kind="dns")

    # Then the record sets are exactly as they were
    assert result["result"] == "changed"
    assert dns.record_sets() == original


def test_dns_targets_may_come_from_the_params_instead_of_the_scope(store, lambda_context):
    dns = build_dns()
    model = dns.impairment(scope={})

    applied = apply(
        model,
        lambda_context,
        kind="dns",
        hosted_zone_id=dns.zone_id,
        record_name=RECORD,
        record_type="A",
    )

    # Without set identifiers, the pair is found by its Failover roles
    assert applied["result"] == "changed"
    assert dns.record_sets()[SECONDARY]["Failover"] == "PRIMARY"


def test_dns_failover_finds_its_records_across_pages(store, lambda_context):
    # Given Route 53 returns RECORD's two record sets on two pages, the second starting at the
    # standby's set identifier (moto does not implement StartRecordIdentifier: real API shapes
    # through Stubber)
    dns = build_dns()
    records = dns.record_sets()
    r53 = aws.client("route53", max_attempts=1)
    tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=dns.zone_id)
    status = r53.get_health_check_status(HealthCheckId=dns.secondary_check)
    for response in (tags, status):
        response.pop("ResponseMetadata")
    first_page = {
        "ResourceRecordSets": [records[PRIMARY]],
        "IsTruncated": True,
        "NextRecordName": f"{RECORD}.",
        "NextRecordType": "A",
        "NextRecordIdentifier": SECONDARY,
        "MaxItems": "1",
    }
    last_page = {"ResourceRecordSets": [records[SECONDARY]], "IsTruncated": False, "MaxItems": "1"}
    start = {"HostedZoneId": dns.zone_id, "StartRecordName": RECORD, "StartRecordType": "A"}
    with Stubber(r53) as stubber:
        stubber.add_response("list_tags_for_resource", tags)
        stubber.add_response("list_resource_record_sets", first_page, start)
        stubber.add_response(
            "list_resource_record_sets",
            last_page,
            {**start, "StartRecordName": f"{RECORD}.", "StartRecordIdentifier": SECONDARY},
        )
        stubber.add_response("get_health_check_status", status)
        event = action_event(dns.impairment(), "failover", params={"kind": "dns"})
        event["dry_run"] = True

        # When failover is applied (as a dry run)
        result = run_step("apply", event, lambda_context)
        stubber.assert_no_pending_responses()

    # Then both record sets were found
    assert result["result"] == "would_change"
    assert result["before"]["secondary"] == records[SECONDARY]


def test_dns_apply_twice_fails_over_once(store, lambda_context):
    # Given failover has been applied for this step
    dns = build_dns()
    model = dns.impairment()
    first = apply(model, lambda_context, kind="dns")
    switched = dns.record_sets()

    # When the same step is delivered again, and again after a crash before "done" was recorded
    second = apply(model, lambda_context, kind="dns")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    retried = apply(model, lambda_context, kind="dns")

    # Then the records were swapped once, not swapped back
    assert second == first
    assert retried["result"] == "changed"
    assert retried["before"] == first["before"]
    assert dns.record_sets() == switched


def test_dns_rollback_twice_restores_once(store, lambda_context):
    dns = build_dns()
    model = dns.impairment()
    original = dns.record_sets()
    applied = apply(model, lambda_context, kind="dns")
    first = rollback(model, lambda_context, applied, kind="dns")

    again = rollback(model, lambda_context, applied, kind="dns")

    assert again == first
    assert dns.record_sets() == original


def test_dns_rollback_leaves_records_someone_else_changed_since(store, lambda_context):
    # Given failover was applied, then an operator repointed the standby record
    dns = build_dns()
    model = dns.impairment()
    applied = apply(model, lambda_context, kind="dns")
    operator = {**dns.record_sets()[SECONDARY], "ResourceRecords": [{"Value": "203.0.113.7"}]}
    _route53().change_resource_record_sets(
        HostedZoneId=dns.zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": operator}]}
    )

    # When the failover is rolled back
    result = rollback(model, lambda_context, applied, kind="dns")

    # Then the operator's change stands
    assert result["result"] == "unchanged"
    assert "someone else" in result["message"]
    assert dns.record_sets()[SECONDARY] == operator


def test_dns_dry_run_reports_the_switch_and_changes_nothing(store, lambda_context):
    dns = build_dns()
    original = dns.record_sets()
    event = action_event(dns.impairment(), "failover", params={"kind": "dns"})
    event["dry_run"] = True

    result = run_step("apply", event, lambda_context)

    assert result["result"] == "would_change"
    assert "standby secondary" in result["message"]
    assert dns.record_sets() == original


def test_dns_refused_for_a_zone_that_did_not_opt_in(store, lambda_context):
    dns = build_dns(managed=False)
    original = dns.record_sets()

    with pytest.raises(ActionRefused, match="not managed"):
        apply(dns.impairment(), lambda_context, kind="dns")

    assert dns.record_sets() == original


def test_dns_waits_for_an_unhealthy_standby_before_failing_over_to_it(store, lambda_context, monkeypatch):
    # Given the standby's health check fails at every Route 53 checker (moto always reports
    # success: its GetHealthCheckStatus response is replaced for the standby's check)
    dns = build_dns()
    original = dns.record_sets()
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    real = Route53.get_health_check_status

    def status(self):
        if self._get_param("HealthCheckId") != dns.secondary_check:
            return real(self)
        failing = {"Status": "Failure: Connection timed out.", "CheckedTime": "2026-11-20T09:14:00Z"}
        observations = [
            {"Region": r, "IPAddress": "15.177.0.1", "StatusReport": failing} for r in ("us-east-1", "eu-west-1")
        ]
        return ActionResult({"HealthCheckObservations": observations})

    monkeypatch.setattr(Route53, "get_health_check_status", status)

    # When failover is applied, it waits for the standby (the state machine asks again, slowly)
    with pytest.raises(CapacityNotReady, match="standby secondary is unhealthy"):
        apply(dns.impairment(), lambda_context, kind="dns")

    # Then traffic stays where it is meanwhile
    assert dns.record_sets() == original

    # And once the standby's check passes, the retry fails over
    monkeypatch.setattr(Route53, "get_health_check_status", real)
    assert apply(dns.impairment(), lambda_context, kind="dns")["result"] == "changed"
    assert dns.record_sets() != original


def test_dns_failover_may_skip_the_standby_health_check_when_the_plan_says_so(store, lambda_context, monkeypatch):
    dns = build_dns()
    r53 = aws.client("route53", max_attempts=1)

    def unreadable(**kwargs):
        raise AssertionError("the standby's health check was read although the plan does not require it")

    monkeypatch.setattr(r53, "get_health_check_status", unreadable)

    applied = apply(dns.impairment(), lambda_context, kind="dns", require_healthy_standby=False)

    assert applied["result"] == "changed"


def test_dns_without_a_target_is_a_permanent_error_naming_what_is_missing(store, lambda_context):
    dns = build_dns()

    with pytest.raises(PermanentError, match="needs a hosted zone and a record name"):
        apply(dns.impairment(scope={}), lambda_context, kind="dns")


def test_dns_names_an_unknown_set_identifier(store, lambda_context):
    dns = build_dns()
    scope = {**dns.scope(), "dns_secondary_set": "elsewhere"}

    with pytest.raises(PermanentError, match="elsewhere"):
        apply(dns.impairment(scope=scope), lambda_context, kind="dns")


def test_dns_throttling_is_transient_and_the_retry_completes_the_same_switch(store, lambda_context):
    # Given Route 53 throttles the record change (every read is answered as moto would)
    dns = build_dns()
    model = dns.impairment()
    original = dns.record_sets()
    r53 = aws.client("route53", max_attempts=1)
    listing = r53.list_resource_record_sets(HostedZoneId=dns.zone_id, StartRecordName=RECORD, StartRecordType="A")
    tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=dns.zone_id)
    status = r53.get_health_check_status(HealthCheckId=dns.secondary_check)
    for response in (listing, tags, status):
        response.pop("ResponseMetadata")
    with Stubber(r53) as stubber:
        stubber.add_response("list_tags_for_resource", tags)
        stubber.add_response("list_resource_record_sets", listing)
        stubber.add_response("get_health_check_status", status)
        stubber.add_client_error("change_resource_record_sets", "Throttling", "Rate exceeded", 400)

        # When failover is applied
        with pytest.raises(TransientError) as caught:
            apply(model, lambda_context, kind="dns")

    # Then the state machine gets a retryable error, nothing changed, and the state before waits
    # in the audit trail for the retry
    assert caught.value.details == {"operation": "route53:ChangeResourceRecordSets", "code": "Throttling"}
    assert dns.record_sets() == original
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "started"
    assert record["before"]["primary"] == original[PRIMARY]

    retried = apply(model, lambda_context, kind="dns")
    assert retried["result"] == "changed"
    assert dns.record_sets()[SECONDARY]["Failover"] == "PRIMARY"


def test_dns_change_is_one_atomic_batch_that_deletes_the_records_exactly_as_read(store, lambda_context):
    # Given the records as Route 53 lists them (shapes checked by Stubber against the real API)
    dns = build_dns()
    original = dns.record_sets()
    r53 = aws.client("route53", max_attempts=1)
    listing = r53.list_resource_record_sets(HostedZoneId=dns.zone_id, StartRecordName=RECORD, StartRecordType="A")
    tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=dns.zone_id)
    status = r53.get_health_check_status(HealthCheckId=dns.secondary_check)
    for response in (listing, tags, status):
        response.pop("ResponseMetadata")
    change_info = {"Id": "/change/C2682N5HXP0BZ4", "Status": "PENDING", "SubmittedAt": "2026-11-20T09:15:00Z"}
    with Stubber(r53) as stubber:
        stubber.add_response("list_tags_for_resource", tags)
        stubber.add_response("list_resource_record_sets", listing)
        stubber.add_response("get_health_check_status", status)
        stubber.add_response(
            "change_resource_record_sets",
            {"ChangeInfo": change_info},
            {
                "HostedZoneId": dns.zone_id,
                "ChangeBatch": {
                    "Comment": f"failover {dns.impairment().impairment_id}",
                    "Changes": [
                        {"Action": "DELETE", "ResourceRecordSet": original[PRIMARY]},
                        {"Action": "DELETE", "ResourceRecordSet": original[SECONDARY]},
                        {"Action": "CREATE", "ResourceRecordSet": {**original[PRIMARY], "Failover": "SECONDARY"}},
                        {"Action": "CREATE", "ResourceRecordSet": {**original[SECONDARY], "Failover": "PRIMARY"}},
                    ],
                },
            },
        )

        applied = apply(dns.impairment(), lambda_context, kind="dns")
        stubber.assert_no_pending_responses()

    assert applied["after"]["change_id"] == "/change/C2682N5HXP0BZ4"


def test_dns_a_batch_route53_rejects_is_a_permanent_error(store, lambda_context, monkeypatch):
    dns = build_dns()
    r53 = aws.client("route53", max_attempts=1)
    from botocore.exceptions import ClientError

    def rejected(**kwargs):
        raise ClientError(
            {"Error": {"Code": "InvalidChangeBatch", "Message": "values provided do not match the current values"}},
            "ChangeResourceRecordSets",
        )

    monkeypatch.setattr(r53, "change_resource_record_sets", rejected)

    with pytest.raises(PermanentError, match="InvalidChangeBatch") as caught:
        apply(dns.impairment(), lambda_context, kind="dns")

    assert not isinstance(caught.value, TransientError)


# --- DNS: weighted records ------------------------------------------------------------------


def test_weighted_failover_moves_the_weight_to_the_standby_and_rollback_restores_it(store, lambda_context):
    # Given weighted records: primary weight 100, standby 0
    dns = build_dns(routing="weighted")
    original = dns.record_sets()
    model = dns.impairment()

    # When failover is applied
    applied = apply(model, lambda_context, kind="dns")

    # Then all the weight is on the standby
    now = dns.record_sets()
    assert applied["result"] == "changed"
    assert now[PRIMARY] == {**original[PRIMARY], "Weight": 0}
    assert now[SECONDARY] == {**original[SECONDARY], "Weight": 255}

    # And the rollback puts the weights back
    rollback(model, lambda_context, applied, kind="dns")
    assert dns.record_sets() == original


def test_weighted_failover_uses_the_plans_standby_weight(store, lambda_context):
    dns = build_dns(routing="weighted")

    apply(dns.impairment(), lambda_context, kind="dns", standby_weight=10)

    assert dns.record_sets()[SECONDARY]["Weight"] == 10
    assert dns.record_sets()[PRIMARY]["Weight"] == 0


# --- databases: DB clusters -----------------------------------------------------------------


def test_cluster_failover_promotes_a_reader_and_rollback_fails_back(store, lambda_context):
    # Given a managed Aurora cluster whose writer is orders-1
    cluster = build_cluster()
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})
    assert writer(cluster) == "orders-1"

    # When failover is applied
    applied = apply(model, lambda_context, kind="database")

    # Then a reader is the writer, and the writer before is recorded
    assert applied["result"] == "changed"
    assert writer(cluster) == "orders-2"
    assert applied["before"]["writer"] == "orders-1"
    assert applied["after"]["writer"] == "orders-2"

    # When it is rolled back
    result = rollback(model, lambda_context, applied, kind="database")

    # Then the previous writer is the writer again
    assert result["result"] == "changed"
    assert writer(cluster) == "orders-1"


def test_cluster_failover_to_the_reader_the_plan_names(store, lambda_context):
    cluster = build_cluster(members=3)
    model = impairment(resources=[("rds:cluster", cluster)])

    applied = apply(
        model, lambda_context, kind="database", db_cluster_identifier=cluster, target_db_instance_identifier="orders-3"
    )

    assert writer(cluster) == "orders-3"
    assert applied["after"]["writer"] == "orders-3"


def test_cluster_apply_twice_fails_over_once(store, lambda_context):
    # Given the cluster failed over for this step
    cluster = build_cluster()
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})
    first = apply(model, lambda_context, kind="database")

    # When the step is delivered again, and retried after a crash before "done" was recorded
    second = apply(model, lambda_context, kind="database")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    retried = apply(model, lambda_context, kind="database")

    # Then it failed over once: the writer did not go back to orders-1
    assert second == first
    assert retried["result"] == "changed"
    assert "already" in retried["message"]
    assert writer(cluster) == "orders-2"


def test_cluster_rollback_twice_fails_back_once(store, lambda_context):
    cluster = build_cluster()
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})
    applied = apply(model, lambda_context, kind="database")
    first = rollback(model, lambda_context, applied, kind="database")

    again = rollback(model, lambda_context, applied, kind="database")

    assert again == first
    assert writer(cluster) == "orders-1"


def test_cluster_dry_run_changes_nothing(store, lambda_context):
    cluster = build_cluster()
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})
    event = action_event(model, "failover", params={"kind": "database"})
    event["dry_run"] = True

    result = run_step("apply", event, lambda_context)

    assert result["result"] == "would_change"
    assert writer(cluster) == "orders-1"


def test_cluster_refused_when_it_did_not_opt_in(store, lambda_context):
    cluster = build_cluster(managed=False)
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})

    with pytest.raises(ActionRefused, match="not managed"):
        apply(model, lambda_context, kind="database")

    assert writer(cluster) == "orders-1"


def test_cluster_without_a_reader_is_refused(store, lambda_context):
    cluster = build_cluster(members=1)
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})

    with pytest.raises(ActionRefused, match="no reader"):
        apply(model, lambda_context, kind="database")


def test_cluster_throttling_is_transient_and_changes_nothing(store, lambda_context, monkeypatch):
    cluster = build_cluster()
    model = impairment(resources=[("rds:cluster", cluster)], scope={"db_cluster": cluster})
    rds = aws.client("rds", max_attempts=1)
    from botocore.exceptions import ClientError

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "FailoverDBCluster")

    monkeypatch.setattr(rds, "failover_db_cluster", throttled)

    with pytest.raises(TransientError) as caught:
        apply(model, lambda_context, kind="database")

    assert caught.value.details == {"operation": "rds:FailoverDBCluster", "code": "Throttling"}
    assert writer(cluster) == "orders-1"
    assert store.get_action(model.impairment_id, 0, "apply")["before"]["writer"] == "orders-1"


# --- databases: Multi-AZ DB instances -------------------------------------------------------


def test_instance_failover_reboots_with_failover_and_rollback_fails_back(store, lambda_context, forced_failovers):
    # Given a managed Multi-AZ DB instance in us-east-1a
    instance = build_instance()
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})

    # When failover is applied
    applied = apply(model, lambda_context, kind="database")

    # Then RDS was asked for a reboot with failover, and the zone before is recorded
    assert forced_failovers == [instance]
    assert applied["result"] == "changed"
    assert applied["before"]["availability_zone"] == f"{REGION}a"
    assert zone_of(instance) == f"{REGION}b"

    # When it is rolled back: another forced failover, back to the recorded zone
    result = rollback(model, lambda_context, applied, kind="database")

    assert result["result"] == "changed"
    assert forced_failovers == [instance, instance]
    assert zone_of(instance) == f"{REGION}a"


def test_instance_apply_twice_and_a_retry_after_a_crash_fail_over_once(store, lambda_context, forced_failovers):
    instance = build_instance()
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})
    first = apply(model, lambda_context, kind="database")

    second = apply(model, lambda_context, kind="database")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    retried = apply(model, lambda_context, kind="database")

    assert second == first
    assert retried["result"] == "changed"
    assert forced_failovers == [instance]
    assert zone_of(instance) == f"{REGION}b"


def test_instance_rollback_is_a_no_op_when_it_is_back_in_its_zone(store, lambda_context, forced_failovers):
    # Given the instance failed over, and then back (RDS or an operator), before the rollback ran
    instance = build_instance()
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})
    applied = apply(model, lambda_context, kind="database")
    _rds().reboot_db_instance(DBInstanceIdentifier=instance, ForceFailover=True)
    assert zone_of(instance) == f"{REGION}a"

    result = rollback(model, lambda_context, applied, kind="database")

    assert result["result"] == "unchanged"
    assert len(forced_failovers) == 2  # the apply's and the operator's, none from the rollback


def test_instance_that_is_not_multi_az_is_refused(store, lambda_context, forced_failovers):
    instance = build_instance(multi_az=False)
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})

    with pytest.raises(ActionRefused, match="not Multi-AZ"):
        apply(model, lambda_context, kind="database")

    assert forced_failovers == []


def test_instance_refused_when_it_did_not_opt_in(store, lambda_context, forced_failovers):
    instance = build_instance(managed=False)
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})

    with pytest.raises(ActionRefused, match="not managed"):
        apply(model, lambda_context, kind="database")

    assert forced_failovers == []


def test_instance_dry_run_reboots_nothing(store, lambda_context, forced_failovers):
    instance = build_instance()
    model = impairment(resources=[("rds:db", instance)], scope={"db_instance": instance})
    event = action_event(model, "failover", params={"kind": "database"})
    event["dry_run"] = True

    result = run_step("apply", event, lambda_context)

    assert result["result"] == "would_change"
    assert forced_failovers == []


def _instance_description(status: str, zone: str = f"{REGION}a") -> dict[str, Any]:
    return {
        "DBInstances": [
            {
                "DBInstanceIdentifier": "billing",
                "DBInstanceArn": f"arn:aws:rds:{REGION}:123456789012:db:billing",
                "DBInstanceStatus": status,
                "MultiAZ": True,
                "AvailabilityZone": zone,
                "SecondaryAvailabilityZone": f"{REGION}b",
            }
        ]
    }


def test_instance_failover_call_shape_and_a_busy_instance_waits(store, lambda_context):
    # Real RDS shapes through Stubber: a Multi-AZ instance reports its standby's zone, and
    # "rebooting" right after the reboot was accepted
    model = impairment(resources=[("rds:db", "billing")], scope={"db_instance": "billing"})
    rds = aws.client("rds", max_attempts=1)
    arn = f"arn:aws:rds:{REGION}:123456789012:db:billing"
    tags = {"TagList": [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}]}
    with Stubber(rds) as stubber:
        # a first attempt finds the instance backing up: retry later, record nothing
        stubber.add_response("describe_db_instances", _instance_description("backing-up"))
        stubber.add_response("list_tags_for_resource", tags, {"ResourceName": arn})
        with pytest.raises(TransientError, match="backing-up"):
            apply(model, lambda_context, kind="database")
        assert store.get_action(model.impairment_id, 0, "apply") is None

        # the retry finds it available and reboots it with failover
        stubber.add_response("describe_db_instances", _instance_description("available"))
        stubber.add_response("list_tags_for_resource", tags, {"ResourceName": arn})
        stubber.add_response(
            "reboot_db_instance",
            {"DBInstance": _instance_description("rebooting")["DBInstances"][0]},
            {"DBInstanceIdentifier": "billing", "ForceFailover": True},
        )
        stubber.add_response("describe_db_instances", _instance_description("rebooting"))
        applied = apply(model, lambda_context, kind="database")
        stubber.assert_no_pending_responses()

    assert applied["before"]["secondary_availability_zone"] == f"{REGION}b"
    assert applied["after"]["status"] == "rebooting"


def test_database_without_a_target_is_a_permanent_error(store, lambda_context):
    with pytest.raises(PermanentError, match="needs a DB cluster or DB instance"):
        apply(impairment(), lambda_context, kind="database")


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "dns", "db_cluster_identifier": "orders"},
        {"kind": "database", "record_name": RECORD},
        {"kind": "database", "db_instance_identifier": "billing", "db_cluster_identifier": "orders"},
        {"kind": "region"},
        {"kind": "dns", "standby_weight": 0},
    ],
    ids=["db-param-for-dns", "dns-param-for-database", "instance-and-cluster", "unknown-kind", "zero-weight"],
)
def test_params_that_do_not_fit_the_kind_are_invalid(store, lambda_context, params):
    with pytest.raises(InvalidInput):
        run_step("apply", action_event(impairment(), "failover", params=params), lambda_context)
