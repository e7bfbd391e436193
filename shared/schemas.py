"""JSON Schema of every topic's message, generated from the pydantic models into ``schemas/<topic>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from shared.messages import TOPIC_MODELS, Label, Tweet

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


def generate() -> dict[str, str]:
    out = {}
    for topic, model in TOPIC_MODELS.items():
        # What a producer may send is the input (validation) shape; what we emit is the serialized shape.
        mode = "validation" if model in (Tweet, Label) else "serialization"
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"stancestream/{topic}"}
        schema |= model.model_json_schema(mode=mode)
        out[f"{topic}.json"] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return out


def write(directory: Path = SCHEMAS_DIR) -> list[str]:
    written = []
    for name, text in generate().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    return written


def stale(directory: Path = SCHEMAS_DIR) -> list[str]:
    return [name for name, text in generate().items()
            if not (directory / name).exists() or (directory / name).read_text() != text]
