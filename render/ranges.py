"""Parse index sets such as `0-511`, `0,5,9-12`, `all` or a YAML list into sorted indices."""

from __future__ import annotations

import re

from render.errors import UserError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_indices(spec, count: int, what: str = "filters") -> list[int]:
    """Indices in [0, count) named by `spec`; duplicates are dropped, order is ascending."""
    if isinstance(spec, bool):
        raise UserError(f"{what}={spec} is not a set of indices: use e.g. {what}=0-7 or all")
    if isinstance(spec, int):
        parts = [str(spec)]
    elif isinstance(spec, str):
        if spec.strip() == "all":
            return list(range(count))
        parts = spec.split(",")
    else:  # a list from Hydra, e.g. filters=[0,5,9-12]
        parts = [str(p) for p in spec]
    indices: set[int] = set()
    for part in parts:
        match = _PART.match(part.strip())
        if not match:
            raise UserError(
                f"{what}: cannot read '{part.strip()}' in '{spec}': use indices and ranges "
                f"like 0-511, 0,5,9-12 or all"
            )
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first:
            raise UserError(f"{what}: range '{part.strip()}' runs backwards: write {last}-{first}")
        if last >= count:
            raise UserError(f"{what}: index {last} is out of range: valid {what} are 0-{count - 1}")
        indices.update(range(first, last + 1))
    if not indices:
        raise UserError(f"{what}: '{spec}' names no index: use e.g. {what}=0-7 or all")
    return sorted(indices)
