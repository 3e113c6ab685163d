"""A resource's tags, read the way its service answers them, and the one rule every action keeps
before it changes anything: the resource opted in (it carries the managed tag)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core import aws
from core.errors import ActionRefused


def as_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """An AWS tag list -> {key: value}: [{"Key": k, "Value": v}] (most services) or
    [{"key": k, "value": v}] (ECS)."""
    found: dict[str, str] = {}
    for tag in tags or ():
        key = tag.get("Key", tag.get("key"))
        if key is not None:
            found[str(key)] = str(tag.get("Value", tag.get("value", "")))
    return found


def of_load_balancing(client: Any, arn: str) -> dict[str, str]:
    """The tags of a load balancer, target group, listener or listener rule (DescribeTags)."""
    for description in aws.call(client, "describe_tags", ResourceArns=[arn]).get("TagDescriptions", []):
        if description.get("ResourceArn") == arn:
            return as_dict(description.get("Tags"))
    return {}


def of_ecs(client: Any, arn: str) -> dict[str, str]:
    """The tags of an ECS resource (ListTagsForResource)."""
    return as_dict(aws.call(client, "list_tags_for_resource", resourceArn=arn).get("tags"))


def of_rds(client: Any, arn: str) -> dict[str, str]:
    """The tags of a DB instance or cluster (ListTagsForResource)."""
    return as_dict(aws.call(client, "list_tags_for_resource", ResourceName=arn).get("TagList"))


def of_hosted_zone(client: Any, zone: str) -> dict[str, str]:
    """The tags of a Route 53 hosted zone (ListTagsForResource)."""
    found = aws.call(client, "list_tags_for_resource", ResourceType="hostedzone", ResourceId=zone)
    return as_dict(found.get("ResourceTagSet", {}).get("Tags"))


def is_managed(tags: Mapping[str, str], managed_tag: tuple[str, str]) -> bool:
    """Whether the tags carry the managed tag (key and value both)."""
    key, value = managed_tag
    return tags.get(key) == value


def require_managed(
    tags: Mapping[str, str] | Iterable[Mapping[str, Any]] | None,
    managed_tag: tuple[str, str],
    what: str,
    name: str,
    **details: Any,
) -> None:
    """Only resources that opted in (the managed tag) may be changed: ActionRefused otherwise.
    `tags` as a dict, or as the tag list a describe call answers (a group's, an instance's);
    `what` and `name` say which resource in the message ("target group arn:..."); `details` name it
    in the error's details (default: resource=name)."""
    found = tags if isinstance(tags, Mapping) else as_dict(tags)
    if not is_managed(found, managed_tag):
        key, value = managed_tag
        raise ActionRefused(
            f"{what} {name} is not managed: tag {key}={value} is missing", **(details or {"resource": name})
        )
