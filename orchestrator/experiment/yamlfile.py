"""Reading the user's YAML files, and turning validation failures into errors that name the
file, the key path, the bad value and what is allowed."""

from __future__ import annotations

import os
import stat
import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ..errors import ConfigError

# Hostile or broken files are refused before they can cost time or memory.
MAX_FILE_BYTES = 1 << 20  # an experiment or inventory file, and a key or known_hosts file
MAX_EXPANDED_NODES = 100_000  # values in a document with its aliases written out
MAX_ERROR_LINES = 20


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a duplicated `server:` must be an error instead."""

    def construct_mapping(self, node, deep=False):
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML's own check below says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {excerpt(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases expand to more than {MAX_EXPANDED_NODES} values", node.start_mark
            )
        return self.construct_document(node)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the document would hold with every alias written out, counted without
    writing them out: a shared node is counted once per use, from a memo of its size."""
    # Iterative, so a deeply nested document cannot exhaust Python's stack either.
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        if id(current) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        elif isinstance(current, yaml.MappingNode):
            children = [part for pair in current.value for part in pair]
        if children_done:
            sizes[id(current)] = min(1 + sum(sizes[id(c)] for c in children), MAX_EXPANDED_NODES + 1)
            continue
        stack.append((current, True))
        for child in children:
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(node)]


def excerpt(value: object, limit: int = 80) -> str:
    """A bad value as an error message shows it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def read_small_file(path: Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file of at most `limit` bytes, read without ever reading more: /dev/zero, a
    FIFO, a folder or a huge file is refused at once, with the file named."""
    try:
        if Path(path).is_dir():  # open() of a folder fails with a less telling message
            raise ConfigError(f"{path}: not a regular file; the {what} must be a file")
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{path}: not a regular file; the {what} must be a file")
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: the {what} is larger than {limit // 1024} KiB; refused")
    return data


MAX_DEPTH = 64


def _check_depth(text: str) -> None:
    """PyYAML composes nodes recursively: 50,000 nested brackets take seconds before they hit the
    recursion limit. Its event parser is iterative, so the nesting is measured there first and a
    document deeper than any experiment needs is refused after a few events."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_yaml(path: Path) -> dict[str, Any]:
    raw = read_small_file(Path(path), "YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})") from None
    try:
        _check_depth(text)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {_bounded(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
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
        where = _bounded(key_path(location), 200)
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, location[:-1]))
            lines.append(f"{path}: {where}: unknown key; allowed here: {allowed}")
        elif error["type"] == "missing":
            lines.append(f"{path}: {where}: required key is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {where}: {excerpt(error.get('input'))} is not allowed: {_bounded(message)}")
    lines = list(dict.fromkeys(lines))
    if len(lines) > MAX_ERROR_LINES:
        lines = lines[:MAX_ERROR_LINES] + [f"{path}: … and {len(lines) - MAX_ERROR_LINES} more problems"]
    return "\n".join(lines)


def _bounded(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
