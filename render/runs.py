"""The run folder contract: what a run's metadata.json holds (a versioned schema), how its PNGs
are named, and how runs are found below an output root. Every module reads runs through here.

    <root>/[<model>/]<layer>/<style>-<size>px-seed<seed>-<key>/
        metadata.json   {"schema": 2, "key", "layer", "model", "layer_index", "settings",
                         "versions", "timing", "filters": {"<k>": record}}
        <layer>_<k:04d>.png, atlas.png, best.png, index.html, examples.json, examples/

A record: {"filter", "seed", "loss_start", "loss_end", "file", "status" (ok | dead |
nonfinite), metrics...}. Schema 1 (before models could be chosen) had no "schema", "model" or
"layer_index": such files are VGG16 runs and read as schema 2. Imports no JAX (the gallery
and the figures read runs without a network).
"""

from __future__ import annotations

import logging
import os
import re

from render.files import read_json, write_json

log = logging.getLogger("render")
METADATA = "metadata.json"
EXAMPLES = "examples.json"
SCHEMA_VERSION = 2
_VGG16_BLOCKS = (2, 2, 3, 3, 3)  # convolutions per block: schema 1's layer_index


def png_name(layer: str, index: int) -> str:
    """The PNG of filter (or class, or objective) `index` of a run of `layer`."""
    return f"{layer}_{index:04d}.png"


def _vgg16_index(layer: str) -> int | None:
    if layer == "predictions":
        return 15
    match = re.fullmatch(r"block(\d)_conv(\d)", layer)
    if not match:
        return None
    block, conv = int(match[1]), int(match[2])
    return sum(_VGG16_BLOCKS[: block - 1]) + conv - 1


def upgrade(meta: dict) -> dict:
    """A metadata dict of any known schema as the current one."""
    if meta.get("schema", 1) == 1:
        meta = meta | {"schema": SCHEMA_VERSION, "model": meta.get("model", "vgg16")}
        meta.setdefault("layer_index", _vgg16_index(str(meta.get("layer"))))
    return meta


def read_metadata(folder: str, warn: bool = True) -> dict | None:
    """The run's metadata (upgraded to the current schema); None when there is none. A file
    that exists but cannot be read is said in the log (the run then starts its records anew)."""
    path = os.path.join(folder, METADATA)
    if not os.path.exists(path):
        return None
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("filters"), dict):
        if warn:
            log.warning("%s is unreadable (damaged or not written by render): ignored", path)
        return None
    if meta.get("schema", 1) > SCHEMA_VERSION:
        if warn:
            log.warning("%s has schema %s, newer than this render's: ignored", path, meta["schema"])
        return None
    return upgrade(meta)


def write_metadata(folder: str, meta: dict) -> None:
    """Write metadata.json atomically, stamped with the current schema."""
    write_json(os.path.join(folder, METADATA), meta | {"schema": SCHEMA_VERSION})


def layer_order(name: str, meta: dict | None = None) -> tuple:
    """Sort key of a layer folder: by the model and `layer_index` its metadata records; else
    VGG names in network order; else by name, last."""
    index = meta.get("layer_index") if isinstance(meta, dict) else None
    if isinstance(index, int) and not isinstance(index, bool):
        return (0, str(meta.get("model") or ""), index, name)
    vgg16 = _vgg16_index(name.rsplit("/", 1)[-1])
    return (1, "", vgg16, name) if vgg16 is not None else (2, "", 0, name)


def find_runs(root: str) -> list[str]:
    """Every run folder (one holding metadata.json) below `root`, at any depth, sorted."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if METADATA in names and folder != root:
            found.append(folder)
    return sorted(found)
