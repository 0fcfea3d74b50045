"""Walk the keys of a configuration object by type (the range and string checks share it)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any


def keys_of_type(cfg: Any, types: tuple[type, ...], prefix: str = "") -> dict[str, Any]:
    """Every key of a config object (dotted, nested sections included) whose type, or list item
    type, is one of ``types`` -> its value."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(keys_of_type(value, types, f"{prefix}{f.name}."))
            continue
        ann = hints[f.name]
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list else ann
        if item in types:
            out[f"{prefix}{f.name}"] = value
    return out
