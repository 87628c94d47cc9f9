"""Spec files as YAML, strictly: a key written twice in one mapping is an error (plain YAML
keeps the last silently), and malformed YAML is one `ConfigError` line naming the file."""

from __future__ import annotations

from typing import Any

import yaml

from dqt.core.config import ConfigError


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last).

    Keys brought in by a ``<<: *anchor`` merge may be overridden, as YAML intends; only keys
    written out in the same mapping count."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise _DuplicateKey(key, line, first)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, shown: str) -> Any:
    """Parse spec text; malformed YAML or a duplicate key is one `ConfigError` line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(f"{shown}: line {dup.line}: duplicate key '{dup.key}' (first given on line "
                          f"{dup.first}; give each key once)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not valid YAML ({' '.join(str(exc).split())})") from None
