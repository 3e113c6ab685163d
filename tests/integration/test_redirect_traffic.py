"""redirect_traffic: impaired targets deregistered and registered again, ALB weights shifted and
restored under moto; ARC zonal shifts started and cancelled against botocore's Stubber (moto has
no ARC zonal shift), with the load balancer, its tags and the zones in moto."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import boto3
import pytest
from botocore.stub import ANY, Stubber

from actions import redirect_shift_weights
from core import aws
from core.contract import ImpairmentType
from core.errors import ActionRefused, InvalidInput, PermanentError, TransientError
from tests.builders import MANAGED_TAG, REGION, Workload, action_event, build_workload, impairment, run_step

MANAGED = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}]
ZONE_A, ZONE_B = ("us-east-1a", "use1-az6"), ("us-east-1b", "use1-az1")  # moto's zone ids


@dataclass(frozen=True)
class Balanced:
    """A workload behind an ALB in two zones: its group's 3 instances in zone a and 2 more
    instances in zone b registered with its target group ("blue"); a listener forwarding 80/20
    to blue and a second target group ("green")."""

    workload: Workload
    load_balancer_arn: str
    listener_arn: str
    green_arn: str
    zone_b_instances: list[str]

    @property
    def blue_arn(self) -> str:
        return self.workload.target_group_arn

    def registered(self) -> list[str]:
        health = elbv2().describe_target_health(TargetGroupArn=self.blue_arn)["TargetHealthDescriptions"]
        return sorted(d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] != "draining")

    def weights(self, rule_arn: str | None = None) -> dict[str, int]:
        actions = (
            elbv2().describe_rules(RuleArns=[rule_arn])["Rules"][0]["Actions"]
            if rule_arn
            else elbv2().describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]["DefaultActions"]
        )
        return {g["TargetGroupArn"]: g["Weight"] for g in actions[0]["ForwardConfig"]["TargetGroups"]}

    def impairment_of(self, *instance_ids: str, **scope: str):
        resources = [("ec2:instance", i) for i in instance_ids] or [("elasticloadbalancing:targetgroup", self.blue_arn)]
        return impairment(
            impairment_type=ImpairmentType.NETWORK_ISSUE if instance_ids else ImpairmentType.AZ_IMPAIRMENT,
            resources=resources,
            scope={"target_group_arn": self.blue_arn, **scope},
        )


def elbv2():
    return boto3.client("elbv2", region_name=REGION)


def forward(weights: dict[str, int]) -> dict:
    return {
        "Type": "forward",
        "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": arn, "Weight": w} for arn, w in weights.items()]},
    }


def build_balanced(*, managed: bool = True) -> Balanced:
    workload = build_workload(min_size=1, desired=3, max_size=6)
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet_a = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [workload.vpc_id]}])["Subnets"][0]
    subnet_b = ec2.create_subnet(VpcId=workload.vpc_id, CidrBlock="10.0.2.0/24", AvailabilityZone=ZONE_B[0])["Subnet"]
    tags = MANAGED if managed else []
    balancer = elbv2().create_load_balancer(
        Name="web-api", Subnets=[subnet_a["SubnetId"], subnet_b["SubnetId"]], Tags=tags or [{"Key": "a", "Value": "b"}]
    )["LoadBalancers"][0]["LoadBalancerArn"]
    if managed:
        elbv2().add_tags(ResourceArns=[workload.target_group_arn], Tags=MANAGED)
    green = elbv2().create_target_group(Name="web-api-green", Protocol="HTTP", Port=80, VpcId=workload.vpc_id)[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    listener = elbv2().create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[forward({workload.target_group_arn: 80, green: 20})],
        **({"Tags": MANAGED} if managed else {}),
    )["Listeners"][0]["ListenerArn"]
    zone_b = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="t3.micro", SubnetId=subnet_b["SubnetId"]
        )["Instances"]
    ]
    elbv2().register_targets(TargetGroupArn=workload.target_group_arn, Targets=[{"Id": i, "Port": 80} for i in zone_b])
    return Balanced(workload, balancer, listener, green, sorted(zone_b))


def run(phase, model, context, dry_run=False, applied=None, **params):
    event = action_event(model, "redirect_traffic", params=params, applied=applied)
    if dry_run:
        event["dry_run"] = True
    return run_step(phase, event, context)


# --- deregister_targets ---------------------------------------------------------------------


def test_deregisters_the_impaired_instance_and_rollback_registers_it_again(store, lambda_context):
    # Given 5 healthy targets, one of them impaired
    balanced = build_balanced()
    impaired = balanced.workload.instance_ids()[0]
    model = balanced.impairment_of(impaired)

    # When redirect_traffic deregisters it
    applied = run("apply", model, lambda_context, kind="deregister_targets")

    # Then only that target is out of the group, and its registration is recorded
    assert applied["result"] == "changed"
    assert impaired not in balanced.registered()
    assert len(balanced.registered()) == 4
    assert applied["before"]["targets"] == [{"id": impaired, "port": 80, "zone": ZONE_A[0], "health": "healthy"}]
    assert applied["before"]["healthy_targets"] == 5

    # And the rollback registers exactly it again, once
    result = run("rollback", model, lambda_context, applied=applied, kind="deregister_targets")
    assert result["result"] == "changed"
    assert len(balanced.registered()) == 5
    assert impaired in balanced.registered()


@pytest.mark.parametrize("zone", [ZONE_B[0], ZONE_B[1]], ids=["zone-name", "zone-id"])
def test_deregisters_every_target_in_the_impaired_zone(store, lambda_context, zone):
    # Given a zonal impairment of zone b, named by zone name or by zone id
    balanced = build_balanced()
    model = balanced.impairment_of(availability_zone=zone)

    result = run("apply", model, lambda_context, kind="deregister_targets")

    # Then exactly the zone's two targets are deregistered
    assert result["before"]["selected_by"] == "availability_zone"
    assert result["before"]["availability_zone"] == {"name": ZONE_B[0], "id": ZONE_B[1]}
    assert sorted(result["targets"]) == balanced.zone_b_instances
    assert balanced.registered() == balanced.workload.instance_ids()


def test_refused_when_too_few_healthy_targets_would_remain(store, lambda_context):
    balanced = build_balanced()
    model = balanced.impairment_of(availability_zone=ZONE_B[0])

    with pytest.raises(ActionRefused, match="3 healthy targets, below the minimum of 4"):
        run("apply", model, lambda_context, kind="deregister_targets", min_healthy_targets=4)

    assert len(balanced.registered()) == 5


def test_deregistering_twice_deregisters_once(store, lambda_context):
    # Given the step deregistered the target, and its Lambda died before recording "done"
    balanced = build_balanced()
    impaired = balanced.workload.instance_ids()[0]
    model = balanced.impairment_of(impaired)
    first = run("apply", model, lambda_context, kind="deregister_targets")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})

    # When retried
    again = run("apply", model, lambda_context, kind="deregister_targets")

    # Then nothing more is deregistered
    assert again["result"] == "unchanged"
    assert again["before"] == first["before"]
    assert len(balanced.registered()) == 4


def test_rollback_twice_registers_once(store, lambda_context):
    balanced = build_balanced()
    impaired = balanced.workload.instance_ids()[0]
    model = balanced.impairment_of(impaired)
    applied = run("apply", model, lambda_context, kind="deregister_targets")
    first = run("rollback", model, lambda_context, applied=applied, kind="deregister_targets")
    store.put_action(model.impairment_id, 0, "rollback", {"status": "started", "before": None})

    again = run("rollback", model, lambda_context, applied=applied, kind="deregister_targets")

    assert first["result"] == "changed"
    assert again["result"] == "unchanged"
    assert len(balanced.registered()) == 5


def test_rollback_reports_a_target_that_is_gone(store, lambda_context):
    # Given the impaired instance was deregistered and then terminated
    balanced = build_balanced()
    impaired = balanced.zone_b_instances[0]
    model = balanced.impairment_of(impaired)
    applied = run("apply", model, lambda_context, kind="deregister_targets")
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[impaired])

    result = run("rollback", model, lambda_context, applied=applied, kind="deregister_targets")

    assert result["result"] == "irreversible"
    assert impaired in result["message"]
    assert impaired not in balanced.registered()


def test_deregister_dry_run_changes_nothing(store, lambda_context):
    balanced = build_balanced()
    model = balanced.impairment_of(balanced.zone_b_instances[0])

    result = run("apply", model, lambda_context, dry_run=True, kind="deregister_targets")

    assert result["result"] == "would_change"
    assert result["after"]["deregistered"] == []
    assert len(balanced.registered()) == 5


def test_deregister_refused_for_a_target_group_that_did_not_opt_in(store, lambda_context):
    balanced = build_balanced(managed=False)

    with pytest.raises(ActionRefused, match=r"target group .* is not managed"):
        run("apply", balanced.impairment_of(balanced.zone_b_instances[0]), lambda_context, kind="deregister_targets")

    assert len(balanced.registered()) == 5


def test_deregister_without_a_target_group_is_a_permanent_error(store, lambda_context):
    with pytest.raises(PermanentError, match="needs a target group"):
        run("apply", impairment(), lambda_context, kind="deregister_targets")


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("Throttling", 400, TransientError), ("InvalidTarget", 400, PermanentError)],
)
def test_deregister_errors_are_classified(store, lambda_context, code, status, error):
    balanced = build_balanced()
    impaired = balanced.zone_b_instances[0]
    model = balanced.impairment_of(impaired)
    client = aws.client("elbv2", max_attempts=1)
    tags = client.describe_tags(ResourceArns=[balanced.blue_arn])
    health = client.describe_target_health(TargetGroupArn=balanced.blue_arn)
    for response in (tags, health):
        response.pop("ResponseMetadata")
    with Stubber(client) as stubber:
        stubber.add_response("describe_tags", tags)
        stubber.add_response("describe_target_health", health)
        stubber.add_response("describe_target_health", health)
        stubber.add_client_error("deregister_targets", service_error_code=code, http_status_code=status)

        with pytest.raises(error) as caught:
            run("apply", model, lambda_context, kind="deregister_targets")

    assert type(caught.value) is error
    assert caught.value.details == {"operation": "elasticloadbalancing:DeregisterTargets", "code": code}
    assert len(balanced.registered()) == 5


# --- shift_weights --------------------------------------------------------------------------


def test_shifts_all_weight_away_and_rollback_restores_the_forward_config(store, lambda_context):
    # Given a listener forwarding 80/20 to the impaired blue group and to green
    balanced = build_balanced()
    model = balanced.impairment_of(listener_arn=balanced.listener_arn)
    original = elbv2().describe_listeners(ListenerArns=[balanced.listener_arn])["Listeners"][0]["DefaultActions"]

    # When the weights are shifted
    applied = run("apply", model, lambda_context, kind="shift_weights")

    # Then blue gets no traffic, green all of it, and the forward config before is recorded
    assert applied["result"] == "changed"
    assert balanced.weights() == {balanced.blue_arn: 0, balanced.green_arn: 100}
    assert applied["before"]["actions"] == original
    assert applied["before"]["weights"] == {balanced.blue_arn: 80, balanced.green_arn: 20}

    # And the rollback restores the recorded configuration exactly
    result = run("rollback", model, lambda_context, applied=applied, kind="shift_weights")
    assert result["result"] == "changed"
    assert (
        elbv2().describe_listeners(ListenerArns=[balanced.listener_arn])["Listeners"][0]["DefaultActions"] == original
    )


def test_shifts_part_of_the_weight_of_a_listener_rule(store, lambda_context):
    # Given a managed listener rule forwarding 80/20
    balanced = build_balanced()
    rule = elbv2().create_rule(
        ListenerArn=balanced.listener_arn,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[forward({balanced.blue_arn: 80, balanced.green_arn: 20})],
        Tags=MANAGED,
    )["Rules"][0]["RuleArn"]
    model = balanced.impairment_of()

    # When half of blue's weight is shifted
    result = run("apply", model, lambda_context, kind="shift_weights", rule_arn=rule, shift_percent=50)

    # Then the rule forwards 40/60, and the listener's default action is untouched
    assert result["result"] == "changed"
    assert balanced.weights(rule) == {balanced.blue_arn: 40, balanced.green_arn: 60}
    assert balanced.weights() == {balanced.blue_arn: 80, balanced.green_arn: 20}


@pytest.mark.parametrize(
    ("weights", "params", "expected"),
    [
        ((60, 30, 10), {}, (0, 75, 25)),
        ((60, 20, 20), {"to": True}, (0, 20, 80)),
        ((1, 1, 0), {}, (0, 100, 0)),
        ((60, 0, 0), {}, (0, 30, 30)),
        ((3, 1, 1), {"shift_percent": 50}, (30, 35, 35)),
    ],
    ids=["by-weight", "to-one-group", "small-weights", "equal-split", "half"],
)
def test_moved_weight_is_shared_by_the_other_groups(store, lambda_context, weights, params, expected):
    balanced = build_balanced()
    third = elbv2().create_target_group(Name="web-api-gray", Protocol="HTTP", Port=80, VpcId=balanced.workload.vpc_id)[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    groups = [balanced.blue_arn, balanced.green_arn, third]
    elbv2().modify_listener(
        ListenerArn=balanced.listener_arn, DefaultActions=[forward(dict(zip(groups, weights, strict=True)))]
    )
    extra = {"to_target_group_arn": third} if params.pop("to", False) else {}

    run(
        "apply",
        balanced.impairment_of(listener_arn=balanced.listener_arn),
        lambda_context,
        kind="shift_weights",
        **extra,
        **params,
    )

    assert balanced.weights() == dict(zip(groups, expected, strict=True))


def test_shift_weights_applied_twice_shifts_once_and_rollback_leaves_later_changes(store, lambda_context):
    balanced = build_balanced()
    model = balanced.impairment_of(listener_arn=balanced.listener_arn)
    first = run("apply", model, lambda_context, kind="shift_weights", shift_percent=50)
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})

    again = run("apply", model, lambda_context, kind="shift_weights", shift_percent=50)
    # shifted once, and the retry reports the first attempt's shift as its own (it is put back later)
    assert again["result"] == "changed"
    assert balanced.weights() == {balanced.blue_arn: 40, balanced.green_arn: 60}

    # And when an operator changed the weights since, the rollback leaves them
    elbv2().modify_listener(
        ListenerArn=balanced.listener_arn, DefaultActions=[forward({balanced.blue_arn: 10, balanced.green_arn: 90})]
    )
    result = run("rollback", model, lambda_context, applied=first, kind="shift_weights", shift_percent=50)
    assert result["result"] == "unchanged"
    assert "someone else" in result["message"]
    assert balanced.weights() == {balanced.blue_arn: 10, balanced.green_arn: 90}


def test_shift_weights_refused_with_nowhere_to_shift(store, lambda_context):
    balanced = build_balanced()
    elbv2().modify_listener(ListenerArn=balanced.listener_arn, DefaultActions=[forward({balanced.blue_arn: 1})])

    model = balanced.impairment_of(listener_arn=balanced.listener_arn)

    with pytest.raises(ActionRefused, match="no other target group"):
        run("apply", model, lambda_context, kind="shift_weights")

    # Refused before anything was recorded: there is nothing for a rollback to undo
    assert store.get_action(model.impairment_id, 0, "apply")["before"] is None


def test_shift_weights_refused_for_a_listener_that_did_not_opt_in(store, lambda_context):
    balanced = build_balanced(managed=False)

    with pytest.raises(ActionRefused, match=r"listener .* is not managed"):
        run("apply", balanced.impairment_of(listener_arn=balanced.listener_arn), lambda_context, kind="shift_weights")

    assert balanced.weights() == {balanced.blue_arn: 80, balanced.green_arn: 20}


def test_shift_weights_dry_run_changes_nothing(store, lambda_context):
    balanced = build_balanced()

    result = run(
        "apply",
        balanced.impairment_of(listener_arn=balanced.listener_arn),
        lambda_context,
        dry_run=True,
        kind="shift_weights",
    )

    assert result["result"] == "would_change"
    assert balanced.weights() == {balanced.blue_arn: 80, balanced.green_arn: 20}


def test_shift_weights_of_a_group_the_listener_does_not_forward_to_is_permanent(store, lambda_context):
    balanced = build_balanced()
    model = balanced.impairment_of(listener_arn=balanced.listener_arn)

    # A target group's ARN, of a group the listener does not forward to (its ID differs)
    elsewhere = balanced.green_arn[:-1] + ("0" if balanced.green_arn[-1] != "0" else "1")
    with pytest.raises(PermanentError, match="does not forward to"):
        run("apply", model, lambda_context, kind="shift_weights", from_target_group_arn=elsewhere)


# --- zonal_shift (ARC through botocore's Stubber) -------------------------------------------

EXPIRY = datetime.datetime(2026, 11, 20, 10, 14, 36, tzinfo=datetime.UTC)
STARTED = datetime.datetime(2026, 11, 20, 9, 14, 36, tzinfo=datetime.UTC)
SHIFT_ID = "0f5bd5a6-7f5c-4a5e-9a3f-8c51e0e3b1aa"


def shift(balancer: str, away_from: str, comment: str, shift_id: str = SHIFT_ID) -> dict:
    """A ZonalShiftSummary / ZonalShift as ARC returns it."""
    return {
        "zonalShiftId": shift_id,
        "resourceIdentifier": balancer,
        "awayFrom": away_from,
        "expiryTime": EXPIRY,
        "startTime": STARTED,
        "status": "ACTIVE",
        "comment": comment,
    }


def managed_resource(balancer: str, **weights: float) -> dict:
    return {
        "arn": balancer,
        "name": "web-api",
        "appliedWeights": weights or {ZONE_A[1]: 1.0, ZONE_B[1]: 1.0},
        "zonalShifts": [],
    }


def comment_of(model) -> str:
    return f"impairment-recovery {model.impairment_id} step 0"


@pytest.fixture
def arc():
    with Stubber(aws.client("arc-zonal-shift", max_attempts=1)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def listing(balancer: str, *items: dict, token: str | None = None, next_token: str | None = None):
    expected = {"resourceIdentifier": balancer, "status": "ACTIVE"}
    if token:
        expected["nextToken"] = token
    response = {"items": list(items)}
    if next_token:
        response["nextToken"] = next_token
    return "list_zonal_shifts", response, expected


def test_zonal_shift_starts_a_time_boxed_shift_away_from_the_zone_id(store, lambda_context, arc):
    # Given an impairment of zone b (by name) of a managed load balancer registered with ARC
    balanced = build_balanced()
    model = balanced.impairment_of(load_balancer_arn=balanced.load_balancer_arn, availability_zone=ZONE_B[0])
    lb = balanced.load_balancer_arn
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb))
    arc.add_response(
        "start_zonal_shift",
        shift(lb, ZONE_B[1], comment_of(model)),
        {"resourceIdentifier": lb, "awayFrom": ZONE_B[1], "expiresIn": "2h", "comment": comment_of(model)},
    )

    # When a zonal shift is applied with a 2 hour expiry
    result = run("apply", model, lambda_context, kind="zonal_shift", expires_in="2h")

    # Then ARC shifts the load balancer away from the zone's id, and the shift is recorded
    assert result["result"] == "changed"
    assert result["after"] == {
        "load_balancer_arn": lb,
        "away_from": ZONE_B[1],
        "zonal_shift_id": SHIFT_ID,
        "status": "ACTIVE",
        "expiry_time": EXPIRY.isoformat(),
        "owned": True,
    }
    assert result["before"]["availability_zone"] == ZONE_B[0]
    assert result["before"]["active_zonal_shifts"] == []


def test_zonal_shift_finds_the_load_balancer_of_the_target_group(store, lambda_context, arc):
    balanced = build_balanced()
    model = balanced.impairment_of(availability_zone=ZONE_B[1])
    lb = balanced.load_balancer_arn
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb))
    arc.add_response(
        "start_zonal_shift",
        shift(lb, ZONE_B[1], comment_of(model)),
        {"resourceIdentifier": lb, "awayFrom": ZONE_B[1], "expiresIn": "1h", "comment": ANY},
    )

    result = run("apply", model, lambda_context, kind="zonal_shift")

    assert result["targets"] == [lb]


def test_zonal_shift_reuses_its_own_active_shift_across_pages(store, lambda_context, arc):
    # Given this step's shift is already active (a retry after a crash), on the second page
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb, next_token="page-2"))
    arc.add_response(*listing(lb, shift(lb, ZONE_B[1], comment_of(model)), token="page-2"))

    # When applied, no StartZonalShift is stubbed: calling it would fail the test
    result = run("apply", model, lambda_context, kind="zonal_shift")

    # Then the active shift is reused as this step's own
    assert result["result"] == "unchanged"
    assert result["after"]["zonal_shift_id"] == SHIFT_ID
    assert result["after"]["owned"] is True


def test_zonal_shift_started_by_someone_else_is_used_and_never_cancelled(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    theirs = shift(lb, ZONE_B[1], "operator: AZ issue")
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb, theirs))
    arc.add_response(*listing(lb, theirs))

    applied = run("apply", model, lambda_context, kind="zonal_shift")
    result = run("rollback", model, lambda_context, applied=applied, kind="zonal_shift")

    assert applied["result"] == "unchanged"
    assert applied["after"]["owned"] is False
    assert "left to its owner" in applied["message"]
    assert result["result"] == "unchanged"  # no CancelZonalShift stubbed


def test_zonal_shift_refused_while_another_zone_is_shifted_away(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb, shift(lb, ZONE_A[1], "operator")))

    with pytest.raises(ActionRefused, match="already has an active zonal shift away from use1-az6"):
        run("apply", model, lambda_context, kind="zonal_shift")


def test_zonal_shift_refused_when_no_zone_would_be_left(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    weights = {ZONE_A[1]: 0.0, ZONE_B[1]: 1.0}
    arc.add_response("get_managed_resource", managed_resource(lb, **weights), {"resourceIdentifier": lb})

    with pytest.raises(ActionRefused, match="no zone to serve from"):
        run("apply", model, lambda_context, kind="zonal_shift")


def test_zonal_shift_refused_for_a_load_balancer_that_did_not_opt_in(store, lambda_context, arc):
    balanced = build_balanced(managed=False)
    model = balanced.impairment_of(load_balancer_arn=balanced.load_balancer_arn, availability_zone=ZONE_B[0])

    # No ARC response is stubbed: the refusal comes before any ARC call
    with pytest.raises(ActionRefused, match=r"load balancer .* is not managed"):
        run("apply", model, lambda_context, kind="zonal_shift")


def test_zonal_shift_dry_run_starts_nothing(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb))

    result = run("apply", model, lambda_context, dry_run=True, kind="zonal_shift")

    assert result["result"] == "would_change"
    assert result["after"]["zonal_shift_id"] is None


@pytest.mark.parametrize(
    ("operation", "code", "status", "error"),
    [
        ("start_zonal_shift", "ThrottlingException", 429, TransientError),
        ("start_zonal_shift", "InternalServerException", 500, TransientError),
        ("start_zonal_shift", "ConflictException", 409, PermanentError),
        ("get_managed_resource", "ResourceNotFoundException", 404, PermanentError),
        ("get_managed_resource", "AccessDeniedException", 403, PermanentError),
    ],
)
def test_zonal_shift_errors_are_classified(store, lambda_context, arc, operation, code, status, error):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    if operation == "start_zonal_shift":
        arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
        arc.add_response(*listing(lb))
    arc.add_client_error(operation, service_error_code=code, http_status_code=status)

    with pytest.raises(error) as caught:
        run("apply", model, lambda_context, kind="zonal_shift")

    assert type(caught.value) is error
    api = {"start_zonal_shift": "StartZonalShift", "get_managed_resource": "GetManagedResource"}[operation]
    assert caught.value.details == {"operation": f"arc-zonal-shift:{api}", "code": code}


def test_zonal_shift_rollback_cancels_the_shift_it_started_once(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    ours = shift(lb, ZONE_B[1], comment_of(model))
    arc.add_response("get_managed_resource", managed_resource(lb), {"resourceIdentifier": lb})
    arc.add_response(*listing(lb))
    arc.add_response("start_zonal_shift", ours, ANY_START)
    applied = run("apply", model, lambda_context, kind="zonal_shift")
    arc.add_response(*listing(lb, ours))
    arc.add_response("cancel_zonal_shift", {**ours, "status": "CANCELED"}, {"zonalShiftId": SHIFT_ID})

    result = run("rollback", model, lambda_context, applied=applied, kind="zonal_shift")
    # a repeated delivery of the finished rollback step returns its record without calling ARC
    again = run("rollback", model, lambda_context, applied=applied, kind="zonal_shift")

    assert result["result"] == "changed"
    assert result["after"]["cancelled"] == [SHIFT_ID]
    assert again == result


def test_zonal_shift_rollback_of_an_expired_shift_is_unchanged(store, lambda_context, arc):
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    ours = shift(lb, ZONE_B[1], comment_of(model))
    applied = {"before": _zonal_before(lb, model), "after": {"zonal_shift_id": SHIFT_ID, "owned": True}}
    # Listed as active, then expired before the cancel reached ARC
    arc.add_response(*listing(lb, ours))
    arc.add_client_error("cancel_zonal_shift", service_error_code="ConflictException", http_status_code=409)

    result = run("rollback", model, lambda_context, applied=applied, kind="zonal_shift")

    assert result["result"] == "unchanged"
    assert result["after"]["cancelled"] == []


def test_zonal_shift_rollback_finds_a_shift_apply_did_not_get_to_record(store, lambda_context, arc):
    # Given apply started the shift, then died: the audit trail has the state before only
    balanced = build_balanced()
    lb = balanced.load_balancer_arn
    model = balanced.impairment_of(load_balancer_arn=lb, availability_zone=ZONE_B[0])
    applied = {"before": _zonal_before(lb, model), "after": {}}
    arc.add_response(*listing(lb, shift(lb, ZONE_B[1], comment_of(model))))
    arc.add_response("cancel_zonal_shift", shift(lb, ZONE_B[1], comment_of(model)), {"zonalShiftId": SHIFT_ID})

    result = run("rollback", model, lambda_context, applied=applied, kind="zonal_shift")

    assert result["after"]["cancelled"] == [SHIFT_ID]


@pytest.mark.parametrize("expires_in", ["73h", "4321m", "0h", "2d", "90"])
def test_zonal_shift_expiry_is_bounded_by_72_hours(store, lambda_context, expires_in):
    balanced = build_balanced()
    model = balanced.impairment_of(availability_zone=ZONE_B[0])

    with pytest.raises(InvalidInput, match="expires_in"):
        run("apply", model, lambda_context, kind="zonal_shift", expires_in=expires_in)


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "zonal_shift", "min_healthy_targets": 2},
        {"kind": "deregister_targets", "expires_in": "1h"},
        {"kind": "shift_weights", "availability_zone": "us-east-1a"},
        {"kind": "shift_weights", "listener_arn": "a", "rule_arn": "b"},
        {"kind": "teleport"},
    ],
)
def test_parameters_that_do_not_fit_the_kind_are_invalid(store, lambda_context, params):
    with pytest.raises(InvalidInput):
        run("apply", impairment(), lambda_context, **params)


ANY_START = {"resourceIdentifier": ANY, "awayFrom": ANY, "expiresIn": ANY, "comment": ANY}


def _zonal_before(balancer: str, model) -> dict:
    return {
        "kind": "zonal_shift",
        "load_balancer_arn": balancer,
        "away_from": ZONE_B[1],
        "availability_zone": ZONE_B[0],
        "expires_in": "1h",
        "comment": comment_of(model),
        "active_zonal_shifts": [],
    }


def test_shifted_weights_are_time_boxed_and_put_back_when_their_time_is_over(store, lambda_context, monkeypatch):
    # Given a recovery that shifted the weights away from blue for 30 minutes, and verified
    from orchestration import finalize, return_capacity

    monkeypatch.setenv("MANAGED_TAG_KEY", MANAGED[0]["Key"])
    monkeypatch.setenv("MANAGED_TAG_VALUE", MANAGED[0]["Value"])
    balanced = build_balanced()
    model = balanced.impairment_of(listener_arn=balanced.listener_arn)
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    params = {"kind": "shift_weights", "expires_in": "30m"}
    applied = run("apply", model, lambda_context, **params)
    assert balanced.weights() == {balanced.blue_arn: 0, balanced.green_arn: 100}
    state = {
        "impairment": model.model_dump(mode="json"),
        # as Admit gives the plan: the alias resolved to its kind's action
        "plan": {
            "name": "shift",
            "steps": [{"index": 0, "action": "redirect_shift_weights", "params": {"expires_in": "30m"}}],
        },
        "actions": [applied],
    }

    # When it is finalized: the workflow is told to wait for the time-box
    resolution = finalize.handler(state, lambda_context, store=store)
    assert resolution["return_capacity_after_seconds"] == 30 * 60

    # Then at the end of the wait the weights are back as they were
    out = return_capacity.handler({**state, "resolution": resolution}, lambda_context, store=store)
    assert [r["result"] for r in out["weights_restored"]] == ["changed"]
    assert balanced.weights() == {balanced.blue_arn: 80, balanced.green_arn: 20}


def test_a_weights_shift_may_not_last_more_than_72_hours():
    with pytest.raises(ValueError, match="72h"):
        redirect_shift_weights.Params.model_validate({"kind": "shift_weights", "expires_in": "73h"})


# --- zonal_shift of an EKS cluster (ARC and EKS's DescribeCluster through Stubber) -----------

EKS_ARN = "arn:aws:eks:us-east-1:123456789012:cluster/prod"


def eks_cluster(enabled: bool = True, managed: bool = True) -> dict:
    """DescribeCluster's answer: the cluster's tags and its zonal shift configuration."""
    return {
        "cluster": {
            "name": "prod",
            "arn": EKS_ARN,
            "status": "ACTIVE",
            "tags": {MANAGED_TAG[0]: MANAGED_TAG[1]} if managed else {},
            "zonalShiftConfig": {"enabled": enabled},
        }
    }


@pytest.fixture
def eks_api():
    with Stubber(aws.client("eks", max_attempts=1)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def eks_zone_impairment():
    scope = {"availability_zone": ZONE_B[0], "eks_cluster_arn": EKS_ARN}
    return impairment(impairment_type=ImpairmentType.AZ_IMPAIRMENT, resources=[("eks:cluster", EKS_ARN)], scope=scope)


def test_zonal_shift_of_an_eks_cluster_shifts_the_cluster_arn_and_rolls_back(store, lambda_context, arc, eks_api):
    # Given a zonal impairment of a workload whose managed EKS cluster has zonal shift enabled
    model = eks_zone_impairment()
    eks_api.add_response("describe_cluster", eks_cluster(), {"name": "prod"})
    arc.add_response("get_managed_resource", managed_resource(EKS_ARN), {"resourceIdentifier": EKS_ARN})
    arc.add_response(*listing(EKS_ARN))
    arc.add_response(
        "start_zonal_shift",
        shift(EKS_ARN, ZONE_B[1], comment_of(model)),
        {"resourceIdentifier": EKS_ARN, "awayFrom": ZONE_B[1], "expiresIn": "2h", "comment": comment_of(model)},
    )

    # When the step shifts the cluster (resource eks_cluster)
    result = run("apply", model, lambda_context, kind="zonal_shift", resource="eks_cluster", expires_in="2h")

    # Then ARC shifts the cluster's ARN away from the zone id; the rollback cancels that shift
    assert result["result"] == "changed"
    assert result["after"]["zonal_shift_id"] == SHIFT_ID and result["targets"] == [EKS_ARN]
    arc.add_response(*listing(EKS_ARN, shift(EKS_ARN, ZONE_B[1], comment_of(model))))
    arc.add_response("cancel_zonal_shift", shift(EKS_ARN, ZONE_B[1], comment_of(model)), {"zonalShiftId": SHIFT_ID})
    undone = run("rollback", model, lambda_context, applied=result, kind="zonal_shift", resource="eks_cluster")
    assert undone["result"] == "changed" and undone["after"]["cancelled"] == [SHIFT_ID]


@pytest.mark.parametrize(
    ("cluster", "error"),
    [(eks_cluster(enabled=False), "zonal shift is not enabled"), (eks_cluster(managed=False), "managed")],
)
def test_an_eks_cluster_without_zonal_shift_or_the_tag_is_refused(store, lambda_context, arc, eks_api, cluster, error):
    eks_api.add_response("describe_cluster", cluster, {"name": "prod"})

    with pytest.raises(ActionRefused, match=error):
        run("apply", eks_zone_impairment(), lambda_context, kind="zonal_shift", resource="eks_cluster")
