"""Reading the user's YAML files, and turning validation failures into errors that name the
file, the key path, the bad value and what is allowed."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml

from .errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a duplicated `server:` must be an error instead."""

    def construct_mapping(self, node, deep=False):
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def key_path(location: tuple[object, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def validate(model: type[pydantic.BaseModel], data: dict[str, Any], path: Path):
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, model)) from None


def _allowed_keys(model: type[pydantic.BaseModel], location: tuple[object, ...]) -> list[str]:
    for part in location:
        if not isinstance(part, str) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        candidates = typing.get_args(annotation) or (annotation,)
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)


def describe_validation_error(
    path: Path, exc: pydantic.ValidationError, model: type[pydantic.BaseModel]
) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        # Pydantic adds the validator's name to the location of union and function validators.
        location = tuple(p for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        where = key_path(location)
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, location[:-1]))
            lines.append(f"{path}: {where}: unknown key; allowed here: {allowed}")
        elif error["type"] == "missing":
            lines.append(f"{path}: {where}: required key is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {where}: {error.get('input')!r} is not allowed: {message}")
    return "\n".join(dict.fromkeys(lines))
