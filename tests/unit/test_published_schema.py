"""The JSON Schema published in schemas/ is the contract's own (regenerate: make schema)."""

import json
from pathlib import Path

from core.contract import SCHEMA_VERSION, json_schema

PUBLISHED = Path(__file__).resolve().parents[2] / "schemas" / f"impairment-event.v{SCHEMA_VERSION.split('.')[0]}.json"


def test_published_schema_is_current():
    assert json.loads(PUBLISHED.read_text()) == json_schema(), "run `make schema` and commit schemas/"
