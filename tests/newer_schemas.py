"""A catalog as a newer Continuum release would have it: ``ChatTurn`` with an added field (with a
default), and one with an incompatible change, for the rolling-upgrade tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from schemas.catalog import SCHEMA_DIR, SchemaCatalog

ADDED = {"name": "sentiment", "type": ["null", "double"], "default": None, "doc": "added later"}


def newer_catalog(tmp: Path, *, incompatible: bool = False) -> SchemaCatalog:
    """The current schemas with ChatTurn changed: a new optional field, or (``incompatible``)
    ``model_version`` turned from a string into an int, which no reader can resolve."""
    d = tmp / ("incompatible" if incompatible else "newer")
    shutil.copytree(SCHEMA_DIR, d, dirs_exist_ok=True)
    path = d / "ChatTurn.avsc"
    raw = json.loads(path.read_text())
    if incompatible:
        for f in raw["fields"]:
            if f["name"] == "model_version":
                f["type"] = "int"
    else:
        raw["fields"].append(ADDED)
    path.write_text(json.dumps(raw))
    return SchemaCatalog(d)
