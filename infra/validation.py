"""The whole `recovery` configuration validated at once, every problem reported together.

pydantic stops a model at its first layer: a field error hides every check across fields, and the
plans (validated apart, against the actions) hid everything else. Here each part is validated as
far as it can be: the shape of every field (pydantic), each plan and its steps against its
actions' parameters (actions/plans.py), then the checks across parts, run on what validated, the
broken items left out (a check whose input is broken is skipped rather than misled). Each problem
names its field's path (core/problems.py). `cdk synth` (infra/config.py's validate) and
`recoveryctl config validate` go through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from actions import plans as action_plans
from core.contract import ImpairmentType, Severity
from core.plans import Plan
from core.problems import Problem, named, path, problem_of
from infra.config import NO_SUBSCRIBER, RecoveryConfig

_LISTS = ("workloads", "plans", "practice_drills")  # an item's error leaves the others checked


@dataclass
class Checked:
    """What validated, and every problem (none: `config` is the whole, valid configuration)."""

    config: RecoveryConfig | None
    plans: list[Plan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # The configuration's parts whose own errors make a check across them meaningless.
    broken: set[str] = field(default_factory=set)
    # Where each item of a list that kept its valid items was in the file (for the paths).
    positions: dict[str, list[int]] = field(default_factory=dict)
    # Names of workloads given but invalid: they exist for the checks that look names up.
    invalid_workloads: set[str] = field(default_factory=set)
    raw_plans: list[Any] = field(default_factory=list)

    def at(self, name: str, index: int) -> int:
        """The position in the file of a list's item validated at `index`."""
        return self.positions.get(name, [])[index] if name in self.positions else index


def check(raw: Any) -> Checked:
    """Validate a `recovery` object whole: every problem, with its path."""
    if not isinstance(raw, dict):
        return Checked(None, problems=[Problem("", "the configuration must be a JSON object (the `recovery` object)")])
    if set(raw) == {"recovery"} and isinstance(raw["recovery"], dict):
        message = 'holds the configuration one level down: give the value of "recovery" itself, not an object around it'
        return Checked(None, problems=[Problem("recovery", message)])
    checked = _shape(raw)
    if isinstance(raw.get("plans"), list):
        checked.raw_plans = raw["plans"]
        checked.plans, problems = action_plans.plan_problems(raw["plans"])
        checked.problems += problems
        if problems:
            checked.broken.add("plans")
    if checked.config is not None:
        for across in _ACROSS:
            checked.problems += across(checked.config, checked)
    if checked.problems:
        checked.config = None
    for where, what in (("workloads", "workload"), ("plans", "plan")):
        checked.problems = named(checked.problems, where, raw.get(where), what)
    checked.problems.sort(key=_in_file_order(raw))
    return checked


def _in_file_order(raw: dict[str, Any]) -> Callable[[Problem], tuple[tuple[int, int | str], ...]]:
    """Problems in the order of the file: its keys as given, then by path, an index numerically."""
    keys = {key: position for position, key in enumerate(raw)}

    def key(problem: Problem) -> tuple[tuple[int, int | str], ...]:
        first, *rest = problem.path.split(".")
        return ((keys.get(first, len(keys)), first), *((0, int(p)) if p.isdigit() else (1, p) for p in rest))

    return key


def _shape(raw: dict[str, Any]) -> Checked:
    """Every field's own errors; then the configuration without the broken parts, for the checks
    across them (an item of a list is left out alone, any other field falls back to its default)."""
    try:
        return Checked(RecoveryConfig.model_validate(raw))
    except ValidationError as exc:
        errors = exc.errors()
    checked = Checked(None)
    bad_items: dict[str, set[int]] = {}
    for error in errors:
        loc = error["loc"]
        item = len(loc) > 1 and loc[0] in _LISTS and isinstance(loc[1], int) and isinstance(raw.get(loc[0]), list)
        if item and loc[0] == "plans":
            continue  # a plan that is not an object: action_plans.plan_problems says so
        checked.problems.append(problem_of(error))
        if item:
            bad_items.setdefault(str(loc[0]), set()).add(int(loc[1]))
        elif loc:
            checked.broken.add(str(loc[0]))
    pruned = {key: value for key, value in raw.items() if key not in checked.broken}
    for name, bad in bad_items.items():
        kept = [i for i in range(len(raw[name])) if i not in bad]
        pruned[name] = [raw[name][i] for i in kept]
        checked.positions[name] = kept
    for index in bad_items.get("workloads", ()):
        item = raw["workloads"][index]
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            checked.invalid_workloads.add(item["name"])
    try:
        checked.config = RecoveryConfig.model_validate(pruned)
    except ValidationError:
        checked.config = None  # not expected: every broken part is out; the problems above stand
    return checked


# --- the checks across parts: each returns its problems, with their paths --------------------


def _unique_workloads(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for index, workload in enumerate(config.workloads):
        if workload.name in seen:
            at = path("workloads", checked.at("workloads", index), "name")
            problems.append(Problem(at, f"another workload is already named {workload.name!r}: names must be unique"))
        seen.add(workload.name)
    return problems


def _workload_regions(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    if "regions" in checked.broken:
        return []
    problems = []
    for index, w in enumerate(config.workloads):
        at = path("workloads", checked.at("workloads", index))
        if w.region is not None:
            if config.regions is None:
                problems.append(Problem(f"{at}.region", f"names region {w.region} but no `regions` are configured"))
            elif w.region not in config.regions.all:
                problems.append(
                    Problem(
                        f"{at}.region",
                        f"{w.region} is not one of the configured regions ({', '.join(config.regions.all)})",
                    )
                )
        if w.standby is not None:
            problems += _standby_region(config, w, f"{at}.standby.region")
    return problems


def _standby_region(config: RecoveryConfig, w: Any, at: str) -> list[Problem]:
    region = w.standby.region
    if config.regions is None:
        return [Problem(at, f"names region {region} but no `regions` are configured")]
    if region not in config.regions.all:
        return [
            Problem(
                at,
                f"{region} is not one of the configured regions ({', '.join(config.regions.all)}): the stack there "
                "watches the workload's region",
            )
        ]
    if region == config.region_of(w):
        return [Problem(at, f"{region} is the workload's own region; the standby must be in another region")]
    return []


def _workload_accounts(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    if "accounts" in checked.broken:
        return []
    members = config.accounts.member_ids if config.accounts else []
    central = config.accounts.central_account_id if config.accounts else None
    return [
        Problem(
            path("workloads", checked.at("workloads", index), "account_id"),
            f"{w.account_id} is not a member account (accounts.members: {', '.join(members) or 'none'})",
        )
        for index, w in enumerate(config.workloads)
        if w.account_id is not None and w.account_id != central and w.account_id not in members
    ]


def _someone_is_paged(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    if (
        config.require_escalation_subscriber
        and not config.escalation_emails
        and not config.paging.reaches_someone
        and "escalation_emails" not in checked.broken
    ):
        return [Problem("require_escalation_subscriber", f"{NO_SUBSCRIBER}; list your on-call in escalation_emails")]
    return []


def _paging_secret(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    """The notifier reads the routing key's secret in its own region and account: an ARN must be
    there (a secret of another region or account is not readable by name from there)."""
    secret = config.paging.pagerduty.routing_key_secret if config.paging.pagerduty else ""
    if not secret.startswith("arn:") or "paging" in checked.broken:
        return []
    at, (_, _, _, region, account) = "paging.pagerduty.routing_key_secret", secret.split(":")[:5]
    if config.regions is not None:
        return [
            Problem(
                at,
                f"an ARN names one region ({region}), and every region's stack pages: give the secret's name, "
                f"replicated to {', '.join(config.regions.all)}",
            )
        ]
    central = config.accounts.central_account_id if config.accounts else None
    if central and account != central:
        return [Problem(at, f"the secret must be in the central account {central}, not {account}")]
    return []


def _workload_names(config: RecoveryConfig, checked: Checked) -> tuple[set[str], str]:
    names = {w.name for w in config.workloads} | checked.invalid_workloads
    return names, ", ".join(sorted(names)) or "none"


def _drill_workloads(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    if "workloads" in checked.broken:
        return []
    names, listed = _workload_names(config, checked)
    return [
        Problem(
            path("practice_drills", checked.at("practice_drills", index), "workload"),
            f"no workload is named {drill.workload!r} (workloads: {listed})",
        )
        for index, drill in enumerate(config.practice_drills)
        if drill.workload not in names
    ]


def _plan_workloads(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    """A plan matching a workload that is not configured would never run: a typo, most likely."""
    if "workloads" in checked.broken:
        return []
    names, listed = _workload_names(config, checked)
    problems = []
    for index, item in enumerate(checked.raw_plans):
        match = item.get("match") if isinstance(item, dict) else None
        workloads = match.get("workloads") if isinstance(match, dict) else None
        for position, name in enumerate(workloads if isinstance(workloads, list) else []):
            if isinstance(name, str) and name not in names:
                problems.append(
                    Problem(
                        path("plans", index, "match", "workloads", position),
                        f"no workload is named {name!r}, so the plan would never match it (workloads: {listed})",
                    )
                )
    return problems


def _standby_failover_target(config: RecoveryConfig, checked: Checked) -> list[Problem]:
    """A regional failover must know where to move the traffic. The plan a workload's
    region_impairment runs (the first that covers it) fails over with kind dns, taking the
    records from the impairment's scope, which only the workload's `dns` fills; or with kind
    routing_control (or dns naming its records), which needs no `dns`. Refused here rather than
    half way through a failover, with the standby group already scaled up."""
    if "plans" in checked.broken:
        return []  # which plan runs depends on every plan: judged once they validate
    problems = []
    for index, w in enumerate(config.workloads):
        if w.standby is None or w.dns is not None:
            continue
        at = path("workloads", checked.at("workloads", index))
        plan = _region_failover_plan(checked.plans, w.name)
        dns = f"{at}.dns (the Route 53 failover records the failover changes)"
        if plan is None:
            problem = "no plan matches its region_impairment"
            fix = f"Add {dns} and a plan for region_impairment (the shipped 'fail-over-to-standby-region'), or add"
        else:
            reason = _needs_workload_dns(plan)
            if reason is None:
                continue
            problem = f"the plan its region_impairment runs, {plan.name!r}, {reason}"
            fix = f"Add {dns}, or list before {plan.name!r}"
        problems.append(
            Problem(
                f"{at}.standby",
                f"the workload has a standby but no `dns`, and {problem}. {fix} a plan that matches "
                'region_impairment for it whose failover step has kind "routing_control" (docs/regions.md, '
                '"Route 53 or ARC routing controls")',
            )
        )
    return problems


def _region_failover_plan(plans: list[Plan], workload: str) -> Plan | None:
    """The plan a workload's region_impairment (critical, from the region probe) runs: the first
    that covers it, as select_plan chooses."""
    for plan in plans:
        match = plan.match
        if (
            ImpairmentType.REGION_IMPAIRMENT in match.impairment_types
            and match.min_severity <= Severity.CRITICAL <= match.max_severity
            and (match.workloads is None or workload in match.workloads)
        ):
            return plan
    return None


def _needs_workload_dns(plan: Plan) -> str | None:
    """Why the plan cannot fail a workload without `dns` over (None: it can). Its failover steps
    (the plan parsed: an alias's resolved to its kind's action) must all name where the traffic
    goes (failover_routing_control, or failover_dns naming its zone and record): a failover_dns
    step without them takes the records from the impairment's scope."""
    dns = [step.params for step in plan.steps if step.action == "failover_dns"]
    if any(not (p.get("hosted_zone_id") and p.get("record_name")) for p in dns):
        return 'fails over with kind "dns", which takes the records from the workload\'s `dns`'
    if not dns and not any(step.action == "failover_routing_control" for step in plan.steps):
        return "has no failover step to move the traffic"
    return None


_ACROSS: tuple[Callable[[RecoveryConfig, Checked], list[Problem]], ...] = (
    _unique_workloads,
    _workload_regions,
    _workload_accounts,
    _someone_is_paged,
    _paging_secret,
    _drill_workloads,
    _plan_workloads,
    _standby_failover_target,
)


def summary(config: RecoveryConfig) -> dict[str, Any]:
    """What a valid configuration deploys, in brief (`recoveryctl config validate`)."""
    return {
        "stack_name": config.stack_name,
        "workloads": [w.name for w in config.workloads],
        "plans": [p.name for p in config.parsed_plans()],
        "regions": config.regions.all if config.regions else [],
        "member_accounts": [f"{m.name} ({m.account_id})" for m in config.accounts.members] if config.accounts else [],
        "escalation_emails": len(config.escalation_emails),
        "paging": [name for name in ("pagerduty", "chatbot") if getattr(config.paging, name)]
        + (["ops_items"] if config.paging.ops_items else []),
        "warnings": [] if config.escalation_emails or config.paging.reaches_someone else [NO_SUBSCRIBER],
    }
