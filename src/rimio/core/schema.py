"""Declarative checks of configuration documents (parsed YAML).

A configuration section is a table of `Option`s: name, kind (type and
bounds), whether it is required, and a help line. One generic walker,
`Section.check`, compares a parsed document with such a table and raises
`ConfigError` with a single line naming the dotted key of the first defect
(`storage.io_threads: 0 is outside 1..256`): unknown keys, missing required
keys, wrong types and out-of-range values all come out the same way.

Defaults are not repeated here: a checked section holds only the keys the
document gave, and the caller builds its dataclass from them, whose field
defaults fill in the rest.

Kinds that need more than the value (file paths relative to the config file,
network addresses) subclass `Kind` next to the configuration they serve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rimio.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Context:
    """What checks may need besides the value itself."""

    # Relative paths in the document are relative to this directory.
    base_dir: Path


class Kind:
    """The type and bounds of one value; `check` returns the value to keep."""

    __slots__ = ()

    def check(self, value: Any, where: str, context: Context) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def child_key(where: str, name: str) -> str:
    """The dotted key of `name` inside the section at `where` ("" is the document)."""
    return f"{where}.{name}" if where else name


@dataclass(frozen=True, slots=True)
class Integer(Kind):
    low: int
    high: int

    def check(self, value: Any, where: str, context: Context) -> int:
        # YAML booleans are Python bools, which are ints: refuse them.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if not self.low <= value <= self.high:
            raise ConfigError(f"{where}: {value} is outside {self.low}..{self.high}")
        return value

    def describe(self) -> str:
        return f"integer {self.low}..{self.high}"


@dataclass(frozen=True, slots=True)
class Number(Kind):
    low: float
    high: float

    def check(self, value: Any, where: str, context: Context) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not self.low <= value <= self.high:
            raise ConfigError(f"{where}: {value} is outside {self.low}..{self.high}")
        return float(value)

    def describe(self) -> str:
        return f"number {self.low:g}..{self.high:g}"


@dataclass(frozen=True, slots=True)
class Boolean(Kind):
    def check(self, value: Any, where: str, context: Context) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A non-empty string, optionally matching `pattern` (`rule` says how, for humans)."""

    pattern: re.Pattern[str] | None = None
    rule: str = ""

    def check(self, value: Any, where: str, context: Context) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
        if self.pattern is not None and not self.pattern.match(value):
            raise ConfigError(f"{where}: {self.rule}")
        return value

    def describe(self) -> str:
        return f"string ({self.rule})" if self.rule else "string"


@dataclass(frozen=True, slots=True)
class ListOf(Kind):
    """A non-empty list; items are checked as `item` and kept in order."""

    item: Kind

    def check(self, value: Any, where: str, context: Context) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list")
        return [self.item.check(v, f"{where}[{i}]", context) for i, v in enumerate(value)]

    def describe(self) -> str:
        return f"list of {self.item.describe()}"


@dataclass(frozen=True, slots=True)
class Option:
    """One row of a section table."""

    name: str
    kind: Kind
    help: str
    required: bool = False
    # A null value means "not given" (a seed's state may carry explicit nulls).
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Section(Kind):
    """A mapping whose keys are exactly the table's options."""

    options: tuple[Option, ...]

    def check(self, value: Any, where: str, context: Context) -> dict[str, Any]:
        """The given keys, checked, in table order; raises on the first defect."""
        label = where or "config"
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: expected a mapping")
        given: Mapping[Any, Any] = value
        names = {o.name for o in self.options}
        unknown = sorted(str(k) for k in given if k not in names)
        if unknown:
            raise ConfigError(f"{label}: unknown key {unknown[0]!r}")
        missing = sorted(o.name for o in self.options if o.required and o.name not in given)
        if missing:
            raise ConfigError(f"{label}: missing required key {missing[0]!r}")
        checked: dict[str, Any] = {}
        for option in self.options:
            if option.name not in given or (option.nullable and given[option.name] is None):
                continue
            key = child_key(where, option.name)
            checked[option.name] = option.kind.check(given[option.name], key, context)
        return checked

    def describe(self) -> str:
        return "mapping"

    def help_lines(self, where: str = "") -> list[str]:
        """`key: kind — help` for every option, nested sections expanded."""
        lines: list[str] = []
        for option in self.options:
            key = child_key(where, option.name)
            required = ", required" if option.required else ""
            lines.append(f"{key}: {option.kind.describe()}{required} — {option.help}")
            inner = option.kind.item if isinstance(option.kind, ListOf) else option.kind
            if isinstance(inner, Section):
                suffix = "[]" if inner is not option.kind else ""
                lines.extend(inner.help_lines(key + suffix))
        return lines
