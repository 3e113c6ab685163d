"""The benchmark code (bench/): its cost arithmetic, parsing and table, on tiny inputs, so that
`make bench` cannot rot unnoticed while it is not part of `make test`."""

import sys
from pathlib import Path

import pytest

from bench import cold_start, idle, metering, prices, report


def test_lambda_cost_rounds_each_invocation_up_to_a_millisecond():
    # Given two invocations of a 256 MB function: 0.4 ms (billed 1 ms) and 1.0001 s (billed 1001 ms)
    cost = prices.lambda_cost({256: [0.0004, 1.0001]})

    # Then requests and GB-seconds follow Lambda's rules
    assert cost["requests"] == 2
    assert cost["gb_seconds"] == pytest.approx(0.25 * 1.002)
    assert cost["dollars"] == pytest.approx(2 * 0.20 / 1e6 + 0.25 * 1.002 * 0.0000166667)


def test_estimate_adds_up_every_service():
    cost = prices.estimate(
        transitions=1000, durations_by_memory={1024: [1.0]}, custom_events=1_000_000, write_units=2_000_000
    )

    assert cost["by_service"]["step_functions"] == pytest.approx(0.025)
    assert cost["by_service"]["eventbridge"] == pytest.approx(1.0)
    assert cost["by_service"]["dynamodb"] == pytest.approx(1.25)
    assert cost["by_service"]["lambda"] == pytest.approx(0.2 / 1e6 + 0.0000166667)
    assert cost["total"] == pytest.approx(sum(cost["by_service"].values()))


def test_write_units_by_item_size_and_transaction():
    small = {"pk": "IMPAIRMENT#x", "sk": "RECORD"}
    large = {"pk": "x", "blob": "a" * 2500}  # about 2.5 KB -> 3 units

    assert prices.write_units("PutItem", {"Item": small}) == 1
    assert prices.write_units("PutItem", {"Item": large}) == 3
    assert prices.write_units("UpdateItem", {"Key": small}) == 1
    assert prices.write_units("TransactWriteItems", {"TransactItems": [{"Put": {"Item": small}}, {"Delete": {}}]}) == 4
    assert prices.write_units("GetItem", {"Key": small}) == 0
    # A typed attribute value counts by its content, not its type marker
    assert prices.write_units("PutItem", {"Item": {"blob": {"S": "a" * 2500}}}) == 3


def test_meter_counts_calls_events_and_writes_of_a_handler():
    meter = metering.Meter()

    meter.record("Detector", "eventbridge", "PutEvents", {"Entries": [{}, {}]})
    meter.record("Admit", "dynamodb", "TransactWriteItems", {"TransactItems": [{"Put": {"Item": {"pk": "a"}}}]})
    meter.record("Admit", "dynamodb", "GetItem", {"ConsistentRead": True})

    snapshot = meter.snapshot()
    assert snapshot["api_calls"] == 3
    assert snapshot["api_calls_by_function"] == {"Admit": 2, "Detector": 1}
    assert snapshot["api_calls_by_operation"]["dynamodb:GetItem"] == 1
    assert snapshot["eventbridge_custom_events"] == 2
    assert snapshot["dynamodb_writes"] == 1
    assert snapshot["dynamodb_write_units"] == 2
    assert snapshot["dynamodb_read_units"] == 1


def test_meter_does_not_count_a_presigned_url_as_a_call():
    # The EKS token is a presigned GetCallerIdentity URL, signed locally and never sent
    import boto3

    meter = metering.Meter()
    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    sts.meta.events.register("provide-client-params.*.*", meter._count)
    meter._local.function = "ReplaceEksNodeApply"
    sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60)
    assert meter.snapshot()["api_calls"] == 0
    # ...while a call made counts (its parameters are provided before it would be sent)
    sts.meta.events.emit(
        "provide-client-params.sts.GetCallerIdentity",
        params={},
        model=sts.meta.service_model.operation_model("GetCallerIdentity"),
        context={},
    )
    assert meter.snapshot()["api_calls"] == 1


def test_importtime_output_is_summed_by_top_level_package():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   botocore.utils\n"
        "import time:       300 |        400 | botocore\n"
        "import time:      2000 |       2000 |     aws_xray_sdk.core\n"
        "import time:        50 |       2450 | actions.scale_out\n"
    )

    rows = cold_start.parse_importtime(stderr)
    heaviest = cold_start.heaviest_packages(rows, top=2)

    assert rows[0] == ("botocore.utils", 100, 100)
    assert heaviest == [{"package": "aws_xray_sdk", "ms": 2.0}, {"package": "botocore", "ms": 0.4}]


def test_handler_modules_come_from_the_template():
    template = {
        "Resources": {
            "A": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "actions.x.apply_handler"}},
            "B": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "actions.x.rollback_handler"}},
            "C": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }

    assert cold_start.handler_modules(template) == {
        "actions.x": ["actions.x.apply_handler", "actions.x.rollback_handler"]
    }


def test_ratio_is_the_median_over_the_baseline_median():
    summary = cold_start.ratio_summary({"boto3": [0.2, 0.1, 0.3], "m": [0.25, 0.9, 0.2]})

    assert summary["m"] == {"median_ms": 250.0, "ratio_to_boto3": 1.25}


@pytest.mark.parametrize(
    ("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200)]
)
def test_schedule_periods(expression, seconds):
    assert idle.period_seconds(expression) == seconds


def test_a_cron_schedule_is_refused_clearly():
    with pytest.raises(idle.ScheduleError, match="only rate"):
        idle.period_seconds("cron(0 12 * * ? *)")


def test_idle_assessment_flags_calls_growing_with_instances():
    def config(groups, per_group, calls):
        return {
            "groups": groups,
            "instances_per_group": per_group,
            "api_calls_per_hour": calls,
            "api_calls_per_group_hour": calls / groups,
            "only_sweeps": True,
            "executions_started": 0,
            "impairments_detected": 0,
            "calls_per_tick_constant": True,
        }

    flat = idle.assess([config(10, 1, 660), config(10, 100, 660), config(100, 10, 6060)])
    growing = idle.assess([config(10, 1, 660), config(10, 100, 6000)])

    assert flat["meets_target"] is True
    assert growing["flat_in_instances_per_group"] is False
    assert growing["meets_target"] is False


def test_table_states_each_target_and_whether_it_is_met():
    results = {
        "per_recovery": {
            "targets": {"max_transitions_single_action": 15, "max_api_calls_single_action": 12},
            "scenarios": [
                {
                    "scenario": "instance-failure",
                    "outcome": "recovered",
                    "actions_applied": 1,
                    "single_action_recovery": True,
                    "meets_target": {"transitions": True, "api_calls": False},
                    "transitions": 11,
                    "api_calls": 27,
                    "lambda_invocations": 7,
                    "eventbridge_custom_events": 1,
                    "dynamodb_writes": 12,
                    "dollars": 0.00029,
                }
            ],
        }
    }

    table = report.markdown(results)

    assert "| figure | measured | target | met |" in table
    assert "11 transitions, 27 API calls" in table
    assert "transitions yes, API calls **no**" in table


def test_idle_table_has_an_events_only_row_that_misses_its_target_when_anything_ran():
    def configuration(calls: float, invocations: float) -> dict:
        return {
            "groups": 10,
            "instances_per_group": 100,
            "instances": 1000,
            "api_calls_per_hour": calls,
            "api_calls_per_group_hour": calls / 10,
            "lambda_invocations_per_hour": invocations,
            "dollars_per_hour": 0.0,
            "only_sweeps": True,
            "executions_started": 0,
        }

    idle_results = {
        "configurations": [configuration(660, 60)],
        "flat_in_instances_per_group": True,
        "at_most_linear_in_groups": True,
        "meets_target": True,
    }
    quiet = report.markdown({"idle": {**idle_results, "events_only": configuration(0, 0)}})
    noisy = report.markdown({"idle": {**idle_results, "events_only": configuration(0, 60)}})

    assert "| idle, events only (`sweep_interval_minutes: 0`): 10 groups x 100 instances | 0 API calls/h," in quiet
    assert "| 0 calls/h | yes |" in quiet
    assert "| 0 calls/h | **no** |" in noisy, "an invocation on a schedule is not events only"
    assert "events only" not in report.markdown({"idle": idle_results}), "results from before it: no row"


def _storm_size(**changes: object) -> dict:
    size = {
        "groups": 10,
        "instances_per_group": 30,
        "impaired_instances": 100,
        "executions_started": 100,
        "executions_within_target": True,
        "lost_impairments": 0,
        "max_share_acted_on": 0.1667,
        "blast_radius_cap": 0.33,
        "cap_exceeded": False,
        "pages": 2,
        "groups_affected": 10,
        "pages_within_target": True,
        "actions_taken": 20,
        "api_calls": 4240,
        "wall_seconds": 40.0,
        "seconds_per_impaired": 0.4,
    }
    return {**size, **changes}


def test_storm_rows_put_each_goal_beside_its_figure():
    results = {
        "storm": {
            "sizes": [
                _storm_size(),
                _storm_size(impaired_instances=500, pages=12, groups_affected=10, pages_within_target=False),
            ],
            "not_run": [],
        }
    }

    table = report.markdown(results)

    assert "100 executions for 100 impaired, 0 lost, max share acted on 17% (cap 33%), 2 pages for 10 groups" in table
    assert "pages <= groups affected | yes |" in table
    assert "12 pages for 10 groups affected" in table
    assert table.count("| **no** |") == 1, "more pages than groups affected misses the target"


def test_a_storm_row_says_its_cpu_seconds_and_the_load_around_it():
    results = {
        "storm": {
            "sizes": [
                _storm_size(cpu_seconds=35.4, load_average=[1.52, 3.04]),
                _storm_size(impaired_instances=500, cpu_seconds=200.0, load_average=[None, 2.0]),
                _storm_size(impaired_instances=1000),  # measured before CPU seconds were kept
            ],
            "not_run": [],
        }
    }

    table = report.markdown(results)

    assert "(0.4 s per impaired), 35 CPU s, load 1.5 to 3.0 |" in table
    assert "(0.4 s per impaired), 200 CPU s, load 2.0 |" in table
    assert table.count("CPU s") == 2, "an older result has no CPU seconds to show"


def test_a_storms_machine_figures_are_its_cpu_seconds_and_the_load_before_and_after(monkeypatch):
    import os

    from bench import storm

    monkeypatch.setattr(os, "getloadavg", lambda: (2.345, 1.0, 0.5))
    assert storm._machine(12.345, 0.5) == {"cpu_seconds": 12.3, "load_average": [0.5, 2.35]}

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert storm._machine(1.0, None)["load_average"] == [None, None]


def test_a_storm_that_started_a_second_execution_for_an_instance_misses_its_target():
    from bench import storm

    assert storm.meets_target(_storm_size())
    assert not storm.meets_target(_storm_size(executions_started=101, executions_within_target=False))
    assert not storm.meets_target(_storm_size(lost_impairments=1))
    assert not storm.meets_target(_storm_size(cap_exceeded=True))
    assert storm.meets_target(_storm_size(blast_radius_cap=None, cap_exceeded=None)), "no cap configured: n/a"


def _transactions_on_a_table() -> list[dict]:
    """A table of ten items, a transaction that succeeds, one whose condition fails half way
    (a put, an update, then a failed check: rolled back) and the table's items after each."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    seen = []
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(10):
            ddb.put_item(TableName="t", Item={"pk": {"S": f"p{i % 3}"}, "sk": {"S": f"s{i}"}, "v": {"N": "0"}})

        def items() -> list:
            return sorted((i["pk"]["S"], i["sk"]["S"], i["v"]["N"]) for i in ddb.scan(TableName="t")["Items"])

        def update(pk: str, sk: str) -> dict:
            return {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                    "UpdateExpression": "SET v = v + :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            }

        new = {"Put": {"TableName": "t", "Item": {"pk": {"S": "p1"}, "sk": {"S": "new"}, "v": {"N": "7"}}}}
        ddb.transact_write_items(TransactItems=[update("p0", "s0"), new])
        seen.append(items())
        failing = {
            "ConditionCheck": {
                "TableName": "t",
                "Key": {"pk": {"S": "p2"}, "sk": {"S": "s2"}},
                "ConditionExpression": "v = :nine",
                "ExpressionAttributeValues": {":nine": {"N": "9"}},
            }
        }
        another = {"Put": {"TableName": "t", "Item": {"pk": {"S": "p9"}, "sk": {"S": "x"}, "v": {"N": "1"}}}}
        with pytest.raises(ClientError, match="TransactionCanceled"):
            ddb.transact_write_items(TransactItems=[update("p0", "s0"), another, failing])
        seen.append(items())
    return seen


def test_the_faster_transaction_backup_rolls_back_as_moto_does():
    from bench.speedups import faster_moto

    # moto's own (a deep copy of the table), and the speed-up's (the written items only)
    reference = _transactions_on_a_table()
    with faster_moto():
        faster = _transactions_on_a_table()

    assert faster == reference
    applied, rolled_back = faster
    assert ("p0", "s0", "1") in applied and ("p1", "new", "7") in applied
    assert rolled_back == applied, "the failed transaction changed nothing"


# A definition with per-execution state in its components: a Map over the input, a Choice, a Pass
# with parameters, a retried Fail caught.
_DEFINITION = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Double",
                "States": {"Double": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, $.n)"}, "End": True}},
            },
            "ResultPath": "$.doubled",
            "Next": "Big?",
        },
        "Big?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.big", "BooleanEquals": True, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": True},
        "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "End": True},
    },
}


def _executions_of_one_definition() -> list:
    """Three executions of one state machine, run by moto's Step Functions: their outputs and the
    types of their history events (sorted: the Map's iterations run in threads of their own)."""
    import json
    import time

    import boto3
    from moto import mock_aws

    seen = []
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="m", definition=json.dumps(_DEFINITION), roleArn="arn:aws:iam::123456789012:role/r"
        )["stateMachineArn"]
        runs = [
            sfn.start_execution(
                stateMachineArn=arn, name=f"run-{n}", input=json.dumps({"items": [{"n": n}, {"n": 1}], "big": n > 5})
            )["executionArn"]
            for n in (3, 8, 2)
        ]
        for run in runs:
            for _ in range(200):
                described = sfn.describe_execution(executionArn=run)
                if described["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            events = sfn.get_execution_history(executionArn=run)["events"]
            seen.append(
                (described["status"], json.loads(described.get("output", "null")), sorted(e["type"] for e in events))
            )
    return seen


def test_the_cached_definition_parse_runs_executions_as_moto_does():
    from bench.speedups import faster_moto

    reference = _executions_of_one_definition()
    with faster_moto():
        faster = _executions_of_one_definition()

    assert faster == reference
    assert [run[1]["size"] for run in faster] == ["small", "big", "small"]
    assert [[d["n"] for d in run[1]["doubled"]] for run in faster] == [[6, 2], [16, 2], [4, 2]]


def test_the_cached_definition_parse_builds_fresh_components_and_still_rejects_bad_definitions():
    import json

    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    from bench.speedups import faster_moto

    text = json.dumps(_DEFINITION)
    with faster_moto():
        first, tree = AmazonStateLanguageParser.parse(text)
        second, again = AmazonStateLanguageParser.parse(text)
        for _ in range(2):  # rejected every time, not cached
            with pytest.raises(ASLParserException):
                AmazonStateLanguageParser.parse('{"StartAt": "Nowhere", "States": {')

    assert again is tree, "the tree is parsed once per definition"
    assert second is not first, "each execution gets components of its own"
    assert type(second) is type(first)
    # unpatched again once the speed-ups end
    assert AmazonStateLanguageParser.parse(text)[1] is not tree


def _instance_lookups() -> list:
    """Instances found by id among several reservations: all of them, a filtered few, a stopped
    one (DescribeInstanceStatus leaves it out), and an unknown id (the error)."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    seen: list = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ids = [
            i["InstanceId"]
            for _ in range(3)
            for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]
        ]
        ec2.stop_instances(InstanceIds=[ids[1]])
        wanted = [ids[4], ids[0], ids[1]]
        seen.append(
            [ids.index(s["InstanceId"]) for s in ec2.describe_instance_status(InstanceIds=wanted)["InstanceStatuses"]]
        )
        seen.append(
            [
                ids.index(i["InstanceId"])
                for r in ec2.describe_instances(
                    InstanceIds=wanted, Filters=[{"Name": "instance-state-name", "Values": ["running"]}]
                )["Reservations"]
                for i in r["Instances"]
            ]
        )
        with pytest.raises(ClientError) as missing:
            ec2.describe_instance_status(InstanceIds=[ids[0], "i-0123456789abcdef0"])
        error = missing.value.response["Error"]
        seen.append((error["Code"], error["Message"].replace(ids[0], "known")))
    return seen


def test_the_faster_instance_lookup_by_ids_answers_as_moto_does():
    from bench.speedups import faster_moto

    reference = _instance_lookups()
    with faster_moto():
        faster = _instance_lookups()

    assert faster == reference
    assert faster[0] == [4, 0] and faster[1] == [0, 4], "the stopped instance is left out"
    assert faster[2][0] == "InvalidInstanceID.NotFound"


def _possible_keys_of_responses() -> list:
    """The names moto's response serializer looks a member up under, for every member of three
    responses' shapes, on a dict, on an object of a class named like the shape, and on one with
    Meta aliases, each asked twice (as every item of a list is)."""
    from moto.core.serialize import AttributePickerContext, XFormedAttributePicker
    from moto.core.utils import get_service_model

    class Instance:  # a model named like the EC2 and Auto Scaling shapes
        pass

    class Aliased:
        class Meta:
            serialization_aliases = {"InstanceId": "id"}

    picker = XFormedAttributePicker()
    seen = []
    for service, operation in (
        ("autoscaling", "DescribeAutoScalingGroups"),
        ("ec2", "DescribeInstances"),
        ("elbv2", "DescribeTargetHealth"),
    ):
        pending = [get_service_model(service).operation_model(operation).output_shape]
        done: set[int] = set()
        while pending:
            shape = pending.pop()
            if id(shape) in done:
                continue
            done.add(id(shape))
            if shape.type_name == "list":
                pending.append(shape.member)
            for name, member in getattr(shape, "members", {}).items():
                member.parent = shape  # as the serializer sets it
                pending.append(member)
                for obj in ({}, Instance(), Aliased()):
                    for _ in range(2):
                        context = AttributePickerContext(obj=obj, key=name, shape=member)
                        seen.append((shape.name, name, type(obj).__name__, list(picker.get_possible_keys(context))))
    return seen


def test_the_remembered_member_names_are_the_ones_moto_looks_up():
    from bench.speedups import faster_moto

    reference = _possible_keys_of_responses()
    with faster_moto():
        faster = _possible_keys_of_responses()

    assert faster == reference
    assert len(faster) > 300
    assert ("Instance", "InstanceId", "Aliased", ["id", "id", "InstanceId", "instance_id", "Id", "id"]) in faster
    # the class named like the shape adds its own prefix alias
    assert ("Instance", "InstanceId", "Instance", ["InstanceId", "instance_id", "Id", "id", "Id", "id"]) in faster
    assert ("Instance", "InstanceId", "dict", ["InstanceId", "instance_id", "Id", "id"]) in faster


def test_remembered_xml_names_still_refuse_a_bad_name_every_time():
    import xmltodict

    from bench.speedups import faster_moto

    document = {"Response": {"Group": [{"Name": "a"}, {"Name": "b"}], "@version": "1"}}
    reference = xmltodict.unparse(document)
    with faster_moto():
        assert xmltodict.unparse(document) == reference
        assert xmltodict.unparse(document) == reference
        for _ in range(2):
            with pytest.raises(ValueError, match="whitespace not allowed"):
                xmltodict.unparse({"Response": {"Bad name": "x"}})
        with pytest.raises(ValueError, match="whitespace not allowed"):
            xmltodict.unparse({"Response": {"@bad attr": "x"}})


def _instances_found_by_id() -> list:
    """moto's own look-up of one instance, by the load balancer's target health: before and after
    more instances are launched, after one is terminated, and for an id that does not exist."""
    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    seen: list = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        backend = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]

        def launch(count: int) -> list[str]:
            return [
                i["InstanceId"]
                for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count)["Instances"]
            ]

        first = launch(3)
        seen.append([backend.get_instance_by_id(i).id == i for i in first])
        later = launch(2)  # a new reservation after the look-ups above
        ec2.terminate_instances(InstanceIds=[first[0]])
        seen.append([getattr(backend.get_instance_by_id(i), "state", None) for i in [*first, *later]])
        seen.append(backend.get_instance_by_id("i-0123456789abcdef0"))
        # moto's own look-up (attach a volume, ...): the instance, or its error for an unknown id
        seen.append([backend.get_instance(i).id == i for i in [*later, *first]])
        try:
            backend.get_instance("i-0123456789abcdef0")
        except Exception as exc:
            seen.append((type(exc).__name__, str(exc)))
        volume = ec2.create_volume(Size=1, AvailabilityZone="us-east-1a")["VolumeId"]
        ec2.attach_volume(VolumeId=volume, InstanceId=later[1], Device="/dev/sdf")
        seen.append(
            [
                m["DeviceName"]
                for m in ec2.describe_instances(InstanceIds=[later[1]])["Reservations"][0]["Instances"][0][
                    "BlockDeviceMappings"
                ]
            ]
        )
    return seen


def test_the_indexed_instance_lookup_finds_what_moto_finds():
    from bench.speedups import faster_moto

    reference = _instances_found_by_id()
    with faster_moto():
        faster = _instances_found_by_id()

    assert faster == reference
    assert faster[1] == ["terminated", "running", "running", "running", "running"]
    assert faster[2] is None
    assert faster[4][0] == "InvalidInstanceIdError" and "/dev/sdf" in faster[5]


def test_cold_start_runs_in_a_lambda_like_environment_and_times_the_first_use_after_the_import():
    from bench import cold_start

    env = cold_start._env(cold_start.venv_runtime())
    # libraries decide at import whether they run in Lambda: the variables Lambda sets are there
    assert env["LAMBDA_TASK_ROOT"] and env["AWS_LAMBDA_FUNCTION_NAME"] and env["_X_AMZN_TRACE_ID"]
    imported, first_use = cold_start.time_import("core.clock")
    # the first use (models built, a late import boto3) comes on top of the import, never instead
    assert 0 < imported <= first_use


def test_cold_start_times_the_stacks_floor_like_a_handler_and_reports_each_handler_against_it():
    from bench import cold_start, report

    imported, first_use = cold_start.time_import(cold_start.FLOOR)
    assert 0 < imported <= first_use
    results = {
        "cold_start": {
            "boto3_median_ms": 100.0,
            "target_max_ratio": 1.3,
            "floor": {"what": "the floor", "median_ms": 150.0, "ratio_to_boto3": 1.5, "meets_target": False},
            "handlers": [
                {
                    "module": "orchestration.start",
                    "median_ms": 180.0,
                    "ratio_to_boto3": 1.8,
                    "ratio_to_floor": 1.2,
                    "meets_target": False,
                    "heaviest_imports": [],
                }
            ],
        }
    }
    rows = {row[0]: row for row in report.rows(results)}
    assert rows["cold start: the stack's floor (the floor)"][1:] == ("150.0 ms = 1.5x boto3", "<= 1.3x", "**no**")
    assert rows["cold start: `orchestration.start` ()"][1] == "180.0 ms = 1.8x boto3 = 1.2x the floor"


def test_cold_start_runs_as_deployed_when_this_machine_has_lambdas_python_and_says_so(tmp_path, monkeypatch):
    from bench import cold_start
    from infra import bytecode, layer

    built = layer.path()  # this machine's, whichever Python compiled it
    monkeypatch.setattr(bytecode, "runtime_python", lambda: None)
    assert cold_start.deployed_runtime(tmp_path) is None  # then the venv's, named in the results
    assert "venv" in cold_start.venv_runtime().what
    monkeypatch.setattr(bytecode, "runtime_python", lambda: sys.executable)
    monkeypatch.setattr(layer, "path", lambda: built)
    runtime = cold_start.deployed_runtime(tmp_path)
    code, _, layer = runtime.path
    assert (layer / "boto3" / "__init__.py").is_file() and (code / "orchestration" / "start.py").is_file()
    assert "as deployed" in runtime.what
    # the code as shipped: compiled, by the Python it is timed with
    assert (code / "orchestration" / "__pycache__" / f"start.{sys.implementation.cache_tag}.pyc").is_file()


def test_item_writes_count_each_item_of_a_call_per_emulated_second_and_checks_apart():
    from bench.hot_items import ItemWrites

    now = [0.0]
    items = ItemWrites(clock=lambda: now[0])
    slot = {"pk": {"S": "BUDGET#concurrency"}, "sk": {"S": "BUDGET"}}
    switches = {"pk": {"S": "CONTROL"}, "sk": {"S": "SWITCHES"}}
    for _ in range(3):
        items.record("UpdateItem", {"Key": slot})
    items.record(
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"Item": {**slot, "v": {"N": "1"}}}}, {"ConditionCheck": {"Key": switches}}]},
    )
    now[0] = 1.5
    items.record("DeleteItem", {"Key": slot})
    items.record("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": {"pk": "A", "sk": "B"}}}]}})
    items.record("GetItem", {"Key": slot})  # a read: not counted

    summary = items.summary(recoveries=2)

    assert summary["dynamodb_max_item_writes"] == 5
    assert summary["dynamodb_max_item_writes_per_second"] == 4, "4 in second 0, 1 in second 1"
    assert summary["dynamodb_hot_items"][0] == {
        "item": "BUDGET#concurrency / BUDGET",
        "writes": 5,
        "max_per_second": 4,
        "per_recovery": 2.5,
    }
    assert summary["dynamodb_items_written"] == 2
    assert summary["dynamodb_most_checked_item"] == {"item": "CONTROL / SWITCHES", "checks": 1}


def test_a_storm_row_names_its_hottest_item_when_measured():
    hot = {"item": "BUDGET#concurrency / BUDGET", "writes": 135, "max_per_second": 115, "per_recovery": 1.35}
    measured = _storm_size(dynamodb_hot_items=[hot], dynamodb_max_item_writes_per_second=115)

    assert "hottest item BUDGET#concurrency / BUDGET: 135 writes (1.35 per recovery)" in report.markdown(
        {"storm": {"sizes": [measured], "not_run": []}}
    )
    assert "hottest" not in report.markdown({"storm": {"sizes": [_storm_size()], "not_run": []}})


def test_make_bench_writes_its_goals_into_the_performance_page_between_the_markers(tmp_path):
    from bench import goals

    page = tmp_path / "performance.md"
    page.write_text(f"# Title\n\nprose\n\n{goals.GOALS_START}\nold\n{goals.GOALS_END}\n\nmore prose\n")
    results = {
        "meta": {"measured_at": "now", "commit": "abc", "machine": "m", "wall_seconds": 10},
        "idle": {
            "configurations": [{"groups": 1, "instances_per_group": 10, "api_calls_per_hour": 120.0}],
            "meets_target": True,
            "events_only": {"api_calls_per_hour": 0.0, "lambda_invocations_per_hour": 0.0},
        },
    }
    goals.write_into(page, results)
    goals.write_into(page, results)  # again: replaced, not appended
    text = page.read_text()
    assert text.count(goals.GOALS_START) == 1 and "old" not in text
    assert text.startswith("# Title\n\nprose") and text.rstrip().endswith("more prose")
    assert "| 6. Idle O(groups): calls/h by groups x instances | 1x10: 120/h | met |" in text
    assert (
        "| 6. Events only (`sweep_interval_minutes: 0`): 0 calls an hour | 0 calls/h, 0 invocations/h | met |" in text
    )


class _FakeLargest:
    """bench.storm.Largest with another process in place of the storm's."""

    @staticmethod
    def make(script: str, size: tuple[int, int], budget: float):
        import sys

        from bench import storm

        class Fake(storm.Largest):
            def command(self, template_path, out):
                return [sys.executable, "-c", script, str(out)]

        return Fake(Path("template.json"), size, budget, ["per_recovery", "idle"])


def test_the_largest_storm_runs_in_a_process_of_its_own_and_its_row_joins_the_others(monkeypatch):
    import json

    from bench import storm

    row = _storm_size(groups=10, instances_per_group=300, impaired_instances=1000, executions_started=1000)
    script = f"import sys; open(sys.argv[1], 'w').write({json.dumps(row)!r})"
    largest = _FakeLargest.make(script, (10, 300), 60)
    ran: list[tuple[int, int]] = []
    monkeypatch.setattr(storm, "run_size", lambda _t, g, p: ran.append((g, p)) or _storm_size())

    result = storm.run(Path("template.json"), sizes=[(10, 30), (10, 300)], budget_seconds=60, largest=largest)

    assert ran == [(10, 30)], "the largest size is not run a second time in this process"
    assert [s["impaired_instances"] for s in result["sizes"]] == [100, 1000]
    assert result["sizes"][1]["ran_beside"] == ["per_recovery", "idle"]
    assert result["meets_target"] and result["largest_impaired_run"] == 1000
    assert "run beside per_recovery and idle" in report.markdown({"storm": result})


def test_a_largest_storm_past_the_budget_is_stopped_and_reported_as_not_finished(monkeypatch):
    import time

    from bench import goals, storm

    largest = _FakeLargest.make("import time; time.sleep(60)", (10, 300), 1.0)
    monkeypatch.setattr(storm, "run_size", lambda _t, g, p: _storm_size())
    began = time.perf_counter()

    result = storm.run(Path("template.json"), sizes=[(10, 30), (10, 300)], budget_seconds=1.0, largest=largest)

    assert time.perf_counter() - began < 30, "stopped at the budget, not waited for"
    assert not result["meets_target"]
    assert [s["impaired_instances"] for s in result["sizes"]] == [100]
    (missing,) = result["not_run"]
    assert missing["impaired_instances"] == 1000
    line = storm.not_run_line(missing)
    assert line.startswith("not finished: stopped at the bench's time budget of 1 s (ran ")
    assert any(line in cell for row in goals.rows({"storm": result}) for cell in row)


def test_a_sweep_fired_by_the_drills_tick_is_the_recoverys_only_when_it_published():
    from bench.per_recovery import not_the_recovery

    # Given a drill whose tick ran the readiness check, the sweep (found nothing) and the EKS check
    usage = {
        "api_calls_by_function": {"X-Readiness1": 12, "X-HealthSweep2": 1, "X-EksCheck3": 3},
        "api_calls_by_function_operation": {
            "X-Readiness1": {"route-53:GetHealthCheck": 12},
            "X-HealthSweep2": {"auto-scaling:DescribeAutoScalingGroups": 1},
            "X-EksCheck3": {"eks:DescribeNodegroup": 1, "eks:DescribeCluster": 1, "eventbridge:PutEvents": 1},
        },
    }
    others, why = not_the_recovery(usage)
    assert others == {"X-Readiness1": 12, "X-HealthSweep2": 1} and "published nothing" in why["X-HealthSweep2"]

    # A sweep that detected (put its impairment on the bus) is the recovery's signal: counted
    usage["api_calls_by_function_operation"]["X-HealthSweep2"]["eventbridge:PutEvents"] = 1
    assert not_the_recovery(usage)[0] == {"X-Readiness1": 12}
