"""ImageNet-1k classes in the Keras/Caffe order, looked up by index, wnid or name.

The table ships as `render/data/imagenet_classes.tsv` (see `render/data/README.md`).
`parse_classes` reads the same index sets as `render.ranges.parse_indices` (`65`, `0-999`,
`65,18,100-102`, `all`, a Hydra list) and also class names (`sea snake`, `sea_snake`,
`Sea Snake`) and WordNet ids (`n01751748`), mixed freely.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from dataclasses import dataclass
from importlib import resources

from render.errors import UserError
from render.ranges import parse_indices

NUM_CLASSES = 1000
_WHAT = "classes"
_WNID = re.compile(r"^n\d{8}$", re.IGNORECASE)
_LETTER = re.compile(r"[A-Za-z]")
_MAX_LISTED = 8


@dataclass(frozen=True)
class ClassInfo:
    """One ImageNet-1k class: its output index, WordNet id and Keras name (spaces, not `_`)."""

    index: int
    wnid: str
    name: str


@functools.cache
def _table() -> tuple[ClassInfo, ...]:
    text = resources.files("render").joinpath("data", "imagenet_classes.tsv").read_text("utf-8")
    lines = text.splitlines()
    if lines[0].split("\t") != ["index", "wnid", "name"]:
        raise RuntimeError(f"imagenet_classes.tsv: unexpected header {lines[0]!r}")
    table = []
    for line in lines[1:]:
        index, wnid, name = line.split("\t")
        table.append(ClassInfo(int(index), wnid, name))
    if [c.index for c in table] != list(range(NUM_CLASSES)):
        raise RuntimeError("imagenet_classes.tsv: rows must be indices 0-999 in order")
    return tuple(table)


def load_classes() -> list[ClassInfo]:
    """All 1000 classes, in index order (the table is read once and cached)."""
    return list(_table())


def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in output order."""
    return tuple(c.name for c in _table())


def class_name(index: int, labels: tuple[str, ...] | None = ()) -> str:
    """The human-readable name of class `index` of a head: `labels[index]`, its index when the
    head has no names (labels=None), or ImageNet's name (`class_name(65) == "sea snake"`)."""
    if labels is None:
        return str(index)
    if labels:
        return labels[index]
    i = operator.index(index)
    if not 0 <= i < NUM_CLASSES:
        raise UserError(
            f"{_WHAT}: index {i} is out of range: valid {_WHAT} are 0-{NUM_CLASSES - 1}"
        )
    return _table()[i].name


def _normalize(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


@functools.cache
def _by_wnid() -> dict[str, int]:
    return {c.wnid: c.index for c in _table()}


@functools.cache
def _normalized_names() -> tuple[str, ...]:
    return tuple(_normalize(c.name) for c in _table())


def _resolve(text: str) -> int | None:
    """The index named by a wnid or a class name, None if `text` is neither, raising if vague."""
    query = text.strip()
    if _WNID.match(query):
        index = _by_wnid().get(query.lower())
        if index is None:
            raise UserError(f"unknown class '{query}': no ImageNet-1k class has this wnid")
        return index
    wanted = _normalize(query)
    names = _normalized_names()
    exact = [i for i, n in enumerate(names) if n == wanted]
    if len(exact) > 1:  # e.g. 'Cardigan' (the corgi) and 'cardigan' (the sweater)
        cased = query.replace("_", " ")
        exact = [i for i in exact if _table()[i].name == cased] or exact
    if len(exact) == 1:
        return exact[0]
    found = exact or [i for i, n in enumerate(names) if wanted in n]
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(f"{_table()[i].name} ({i})" for i in found[:_MAX_LISTED])
        more = ", ..." if len(found) > _MAX_LISTED else ""
        raise UserError(
            f"class '{query}' matches {len(found)} classes: {listed}{more}; "
            "give the full name or the index"
        )
    return None


def _unknown(text: str) -> UserError:
    query = text.strip()
    originals = {}
    for c in _table():
        originals.setdefault(_normalize(c.name), c.name)
    close = difflib.get_close_matches(_normalize(query), list(originals), n=3)
    if close:
        hint = "did you mean " + ", ".join(originals[n] for n in close) + "?"
    else:
        hint = f"give a class name, a wnid such as n01440764, or indices like 0-{NUM_CLASSES - 1}"
    return UserError(f"unknown class '{query}': {hint}")


def _name_or_wnid(text: str) -> int:
    index = _resolve(text)
    if index is None:
        raise _unknown(text)
    return index


def parse_classes(
    spec: int | str | list[int | str], labels: tuple[str, ...] | None = (), count: int = 0
) -> list[int]:
    """Class indices named by `spec`, ascending and without duplicates.

    `labels` are the head's class names (ImageNet's when empty, wnids accepted too); with
    labels=None the head's `count` classes have no names and only indices are accepted.

    `spec` is an int, a string (`"65"`, `"0-999"`, `"65,18,100-102"`, `"all"`, `"sea snake"`,
    `"n01751748"`, `"sea snake,18"`) or a list of such items (e.g. from Hydra). Parts that
    contain a letter are class names or wnids; the rest go to `parse_indices`. A string that is
    exactly one class name is that class even if it contains a comma.
    """
    if labels is None or (labels and labels != imagenet_names()):
        return _parse_own(spec, labels, count or len(labels or ()))
    if isinstance(spec, bool | int):
        return parse_indices(spec, NUM_CLASSES, _WHAT)
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return list(range(NUM_CLASSES))
        if _LETTER.search(spec):
            whole = _resolve(spec)
            if whole is not None:
                return [whole]
        parts = spec.split(",")
    else:  # a list or a Hydra ListConfig
        parts = []
        for item in spec:
            if isinstance(item, bool):
                raise UserError(f"{_WHAT}: {item} in {list(spec)} is not a class: use e.g. 65")
            parts.append(str(item))
    if not any(_LETTER.search(p) for p in parts):
        return parse_indices(spec, NUM_CLASSES, _WHAT)
    indices: set[int] = set()
    for part in parts:
        if part.strip().lower() == "all":
            return list(range(NUM_CLASSES))
        if _LETTER.search(part):
            indices.add(_name_or_wnid(part))
        else:
            indices.update(parse_indices(part, NUM_CLASSES, _WHAT))
    return sorted(indices)


def _parse_own(spec, labels: tuple[str, ...] | None, count: int) -> list[int]:
    """parse_classes for a head of the user's own: names from its labels file, or indices."""
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return list(range(count))
    parts = [spec] if isinstance(spec, bool | int) else None
    if parts is None:
        parts = spec.split(",") if isinstance(spec, str) else [str(item) for item in spec]
        if isinstance(spec, str) and labels and _normalize(spec) in map(_normalize, labels):
            parts = [spec]
    named = [p for p in parts if isinstance(p, str) and _LETTER.search(p)]
    if not named:
        return parse_indices(spec, count, _WHAT)
    if labels is None:
        raise UserError(
            f"class '{named[0].strip()}' needs class names: this model's head has {count} "
            f"classes and no labels; give indices 0-{count - 1} or model.labels=labels.txt"
        )
    normalized = [_normalize(name) for name in labels]
    indices: set[int] = set()
    for part in parts:
        if isinstance(part, str) and part.strip().lower() == "all":
            return list(range(count))
        if not (isinstance(part, str) and _LETTER.search(part)):
            indices.update(parse_indices(part, count, _WHAT))
            continue
        wanted = _normalize(part)
        if wanted not in normalized:
            close = difflib.get_close_matches(wanted, normalized, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UserError(
                f"unknown class '{part.strip()}': {hint}this model's classes are "
                f"{', '.join(labels[:_MAX_LISTED])}{', ...' if len(labels) > _MAX_LISTED else ''}"
            )
        indices.add(normalized.index(wanted))
    return sorted(indices)
