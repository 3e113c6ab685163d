"""EventBridge in the emulator: events put on a stack's buses are matched against its rules and
delivered asynchronously to their targets (functions with retries and dead letters, the state
machine, another account's bus) by the root's workers; scheduled rules fire on the virtual clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recoveryctl.emulator.hooks import outage_exempt

if TYPE_CHECKING:
    from recoveryctl.emulator.runtime import Emulator

_ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries


@dataclass
class Delivery:
    """An event on its way to one of a rule's targets (EventBridge delivers asynchronously)."""

    stack: Emulator
    target: dict[str, Any]
    event: dict[str, Any]


class Routing:
    """A stack's buses, rules and deliveries (a mixin of the runtime, runtime.py)."""

    # --- EventBridge ---
    def _accept(self, entry: dict[str, Any], event_id: str, backend: Any) -> None:
        from core import clock

        bus = (entry.get("EventBusName") or "default").split("/")[-1]
        event = {
            "version": "0",
            "id": event_id,
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": self.account,
            "time": clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": entry.get("Resources", []),
            "detail": json.loads(entry["Detail"]),
        }
        self._publish(bus, event)

    def put_event(self, event: dict[str, Any], bus: str = "default") -> None:
        """Put an event on `bus` exactly as AWS would have (e.g. an alarm state change on the
        default bus): its rules' targets get it when the emulator runs (pump())."""
        self._publish(bus, event)

    def _publish(self, bus: str, event: dict[str, Any]) -> None:
        """The event is on this stack's `bus`: every rule that matches it sends it to its targets
        (asynchronously: a delivery worker takes each; an event bus target gets it at once)."""
        self.events.append({"bus": bus, **event})
        for route in self.routes:
            if route.bus != bus or not route.pattern.matches_event(event):
                continue
            for target in route.targets:
                if ":event-bus/" in target["Arn"]:
                    self._forward(target["Arn"], event)
                else:
                    self._root._enqueue(Delivery(self, target, json.loads(json.dumps(event))))

    def _enqueue(self, delivery: Delivery) -> None:
        with self._delivery_ready:
            self._deliveries.append(delivery)
            self._delivery_ready.notify()

    def _worker(self) -> None:
        """A delivery worker (a fiber): takes the next delivery, performs it; idle, it waits."""
        ready = self._delivery_ready
        while True:
            with ready:
                while not self._deliveries:
                    ready.wait()
                delivery = self._deliveries.popleft()
            try:
                delivery.stack._perform(delivery)
            except Exception as exc:  # noqa: BLE001 - the emulator's own failure: pump() raises it
                self._worker_errors.append(exc)

    def _perform(self, delivery: Delivery) -> None:
        """EventBridge sends the event to the target (its own calls: no region outage or fault)."""
        arn, event = delivery.target["Arn"], delivery.event
        if "QueueUrl" in delivery.target:
            self._deliver_batch(delivery.target, event)
        elif ":function:" in arn:
            self._deliver_to_function(arn.split(":function:")[-1], event, delivery.target)
        elif ":stateMachine:" in arn:
            with outage_exempt():
                self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(event))
        elif ":sqs:" in arn:
            with outage_exempt():
                sqs = self.client("sqs")
                url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
                sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))

    def poll_queues(self) -> None:
        """An idle hook: Lambda's SQS event source mappings. Messages waiting in a mapped queue go to
        its function as one batch (a delivery); those it does not report failed are deleted."""
        sqs = self.client("sqs")
        for queue_arn, function in self.queue_mappings:
            with outage_exempt():
                url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if messages:
                records = [_sqs_record(m, queue_arn, self.region) for m in messages]
                target = {"Arn": f"{queue_arn}->{function}", "Function": function, "QueueUrl": url}
                self._root._enqueue(Delivery(self, target, {"Records": records}))

    def _deliver_batch(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        ok, result = self.invoke(target["Function"], event, source="event")
        if not ok:
            return  # the whole batch is received again after its visibility timeout
        failed = {f.get("itemIdentifier") for f in (result or {}).get("batchItemFailures") or []}
        with outage_exempt():
            sqs = self.client("sqs")
            for record in event["Records"]:
                if record["messageId"] not in failed:
                    sqs.delete_message(QueueUrl=target["QueueUrl"], ReceiptHandle=record["receiptHandle"])

    def pump(self, timeout: float = 120.0) -> None:
        """Run until nothing is left to deliver, no handler or execution can go on, and nothing
        is scheduled: the virtual clock moves from one scheduled instant to the next meanwhile.
        (An execution waiting for a task token without a time-out stays waiting.)"""
        self._root._run(timeout=timeout)

    def _run(self, until: float | None = None, timeout: float | None = 120.0) -> None:
        sched = self.scheduler
        assert sched is not None, "the emulator is not running"
        try:
            sched.run(until=until, timeout=timeout, idle=self._idle)
        except TimeoutError as exc:
            raise TimeoutError(f"the emulator did not settle within {timeout} s: {exc}") from None
        if self._worker_errors:
            raise self._worker_errors.pop(0)

    def _idle(self) -> None:
        for hook in list(self.idle_hooks):
            hook()

    def fire_schedules(self) -> int:
        """Deliver one "Scheduled Event" to the target of every schedule rule (a sweep's tick);
        returns how many rules fired. They run on pump()."""
        from core import clock

        for schedule in self.schedules:
            event = {
                "version": "0",
                "id": self.new_id(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": self.account,
                "time": clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [
                    self.template.arn(k)
                    for k, v in self.template.of_type("AWS::Events::Rule").items()
                    if self.template.names[k] == schedule.rule
                ],
                "detail": {},
            }
            for target in schedule.targets:
                if ":function:" in target["Arn"]:
                    self._root._enqueue(Delivery(self, target, event))
        return len(self.schedules)

    def _forward(self, bus_arn: str, event: dict[str, Any]) -> None:
        """An event bus target (a member forwarding to the central account): the event goes on
        that bus as it is, its source account kept, as EventBridge delivers across accounts."""
        _, _, _, region, account, resource = bus_arn.split(":", 5)
        target = self._stacks.get((account, region))
        if target is None:
            return  # a bus outside the emulator: nothing listens there
        target._publish(resource.split("/", 1)[1], json.loads(json.dumps(event)))

    def _deliver_to_function(self, name: str, event: dict[str, Any], target: dict[str, Any]) -> None:
        """Asynchronous invocation: retried, then sent to the function's dead-letter queue."""
        spec = self.functions[name]
        error = None
        for _ in range(_ASYNC_ATTEMPTS):
            ok, result = self.invoke(name, event, source="event")
            if ok:
                return
            error = result
        dead_letter = spec.dead_letter_arn or (target.get("DeadLetterConfig") or {}).get("Arn")
        if dead_letter:
            with outage_exempt():
                sqs = self.client("sqs")
                url = sqs.get_queue_url(QueueName=dead_letter.rsplit(":", 1)[-1])["QueueUrl"]
                sqs.send_message(
                    QueueUrl=url,
                    MessageBody=json.dumps(event),
                    MessageAttributes={"ErrorMessage": {"DataType": "String", "StringValue": json.dumps(error)[:1000]}},
                )

    def dead_letter_count(self) -> int:
        """Messages waiting in the stack's dead-letter queues (events nothing could process)."""
        sqs = self.client("sqs")
        count = 0
        for url in sqs.list_queues().get("QueueUrls", []):
            if "DeadLetter" in url:
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                count += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        return count


def _sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received message as Lambda's SQS event carries it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
