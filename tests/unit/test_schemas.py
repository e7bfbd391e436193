"""The published JSON schemas: in sync with the message models, with examples of both outcomes."""

from __future__ import annotations

from shared import schemas

EXAMPLES = sorted((schemas.SCHEMAS_DIR / "examples").glob("**/*.json"))


def test_schema_files_are_in_sync_with_the_models():
    assert schemas.stale() == [], "run `stancestream schemas` to regenerate schemas/*.json"


def test_examples_exist_for_both_outcomes():
    names = [p.name for p in EXAMPLES]
    assert any(n.startswith("valid_") for n in names) and any(n.startswith("invalid_") for n in names)
