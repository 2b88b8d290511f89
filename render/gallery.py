"""Static offline HTML gallery: one page per rendered run and an overview of all of them.

python -m render.gallery ROOT writes <ROOT>/<layer>/<run>/index.html next to each metadata.json
and <ROOT>/index.html. The pages need no server and nothing from the network: each run page
embeds its records as JSON and a small inline script builds, sorts and enlarges the tiles.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import math
import os
import re
from importlib import resources
from urllib.parse import quote

from PIL import Image

from render.errors import UserError, run_tool
from render.files import read_json, write_atomic
from render.runs import EXAMPLES, layer_order, read_metadata
from render.runs import find_runs as runs_below

EXAMPLE_KEYS = ("png", "activation", "file", "box")  # what the large view shows of each
INDEX = "index.html"
NOT_METRICS = {"filter", "seed"}  # numeric fields that are identities, not measurements
THUMBNAILS = 6
DEFAULT_SIZE = (128, 128)


def find_runs(root: str) -> list[tuple[str, str]]:
    """(layer, run) of every run below root, the layer being the path between them (e.g.
    "block5_conv2" or "vgg19/block5_conv4"), in network order."""
    runs = [
        (os.path.relpath(os.path.dirname(folder), root), os.path.basename(folder))
        for folder in runs_below(root)
    ]
    keys: dict[str, tuple] = {}
    for layer, run in runs:  # a layer's place: the smallest key of its runs
        meta = read_metadata(os.path.join(root, layer, run), warn=False)
        key = layer_order(layer, meta)
        keys[layer] = min(keys.get(layer, key), key)
    return sorted(runs, key=lambda r: (keys[r[0]], r[1]))


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_safe(value):
    """JSON has no NaN or infinity (non-finite filters may carry them): write them as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    return value


def load_run(folder: str) -> dict | None:
    """The run's records in filter order, its numeric metrics and tile size; None if unreadable."""
    meta = read_metadata(folder, warn=False)
    if meta is None:
        return None
    records, found = [], set()
    for record in meta["filters"].values():
        if not isinstance(record, dict) or not is_number(record.get("filter")):
            continue
        found |= {key for key, value in record.items() if is_number(value)}
        record = {key: json_safe(value) for key, value in record.items()}
        file = record.get("file")
        if record.get("status") == "ok" and not (
            isinstance(file, str) and os.path.isfile(os.path.join(folder, file))
        ):
            record |= {"status": "missing", "file": None}  # a broken image would log an error
        records.append(record)
    records.sort(key=lambda r: r["filter"])
    extra = sorted(found - NOT_METRICS - {"loss_end", "loss_start"})
    metrics = [m for m in ("loss_end", "loss_start") if m in found] + extra
    return {
        "meta": meta,
        "records": records,
        "metrics": metrics,
        "size": tile_size(folder, records),
        "examples": load_examples(folder, meta, {r["filter"] for r in records}),
    }


def load_examples(folder: str, meta: dict, filters: set) -> dict:
    """{filter: {"photos": [...], "patches": [...]}} from the run's examples.json, keeping
    entries whose PNG exists; {} when there is none or it belongs to another layer."""
    examples = read_json(os.path.join(folder, EXAMPLES))
    if not isinstance(examples, dict) or not isinstance(examples.get("filters"), dict):
        return {}
    layer = examples.get("layer")
    if isinstance(layer, str) and isinstance(meta.get("layer"), str) and layer != meta["layer"]:
        return {}
    shown = {}
    for key, record in examples["filters"].items():
        if not isinstance(record, dict) or not key.isdigit() or int(key) not in filters:
            continue
        kinds = {}
        for kind in ("photos", "patches"):
            entries = [
                {k: json_safe(entry[k]) for k in EXAMPLE_KEYS if k in entry}
                for entry in record.get(kind) or []
                if isinstance(entry, dict)
                and isinstance(entry.get("png"), str)
                and os.path.isfile(os.path.join(folder, entry["png"]))
            ]
            if entries:
                kinds[kind] = entries
        if kinds:
            shown[key] = kinds
    return shown


def tile_size(folder: str, records: list[dict]) -> tuple[int, int]:
    """Width and height of the run's images (all alike), read from the first PNG's header."""
    for record in records:
        if record.get("file"):
            try:
                with Image.open(os.path.join(folder, record["file"])) as img:
                    return img.size
            except OSError:
                continue
    return DEFAULT_SIZE


def href(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def escape(value) -> str:
    return html.escape(str(value))


def counts_text(records: list[dict]) -> str:
    """'64 filters · 3 dead', plus any other status than ok (nonfinite, missing)."""
    statuses = [r.get("status") for r in records]
    others = sorted({s for s in statuses if s not in ("ok", "dead")}, key=str)
    parts = [f"{len(records)} filters", f"{statuses.count('dead')} dead"]
    return " · ".join(parts + [f"{statuses.count(s)} {s}" for s in others])


def run_nav(layer: str, run: str, runs: list[tuple[str, str]]) -> str:
    """Links to the previous and next layer, every layer, other runs of this layer and the root."""
    layers = list(dict.fromkeys(name for name, _ in runs))

    top = [".."] * (layer.count("/") + 2)  # from this page to the root

    def page(other: str) -> str:  # the same run name in the other layer when there is one
        names = [r for name, r in runs if name == other]
        return href(*top, *other.split("/"), run if run in names else names[0], INDEX)

    at = layers.index(layer)
    prev = layers[at - 1] if at > 0 else None
    next_ = layers[at + 1] if at + 1 < len(layers) else None
    items = [f'<a href="{href(*top, INDEX)}" rel="index">overview</a>']
    if prev:
        items.append(f'<a href="{page(prev)}" rel="prev">← {escape(prev)}</a>')
    for name in layers:
        if name == layer:
            items.append(f'<b aria-current="page">{escape(name)}</b>')
        elif name not in (prev, next_):
            items.append(f'<a href="{page(name)}">{escape(name)}</a>')
    if next_:
        items.append(f'<a href="{page(next_)}" rel="next">{escape(next_)} →</a>')
    siblings = [r for name, r in runs if name == layer and r != run]
    if siblings:
        items.append("other runs:")
        items += [f'<a href="{href("..", r, INDEX)}">{escape(r)}</a>' for r in siblings]
    return "\n".join(items)


def run_page(layer: str, run: str, info: dict, runs: list[tuple[str, str]]) -> str:
    meta = info["meta"]
    data = {
        "metrics": info["metrics"],
        "size": info["size"],
        "filters": info["records"],
        "examples": info["examples"],
    }
    # "<" escaped so that no "</script>" can end the element early; JSON.parse reads it back
    embedded = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    options = "".join(
        f'<option value="{escape(m)}">{escape(m)}</option>' for m in ["index", *info["metrics"]]
    )
    details = json.dumps(
        {k: meta.get(k) for k in ("key", "settings", "versions")}, indent=1, default=str
    )
    replacements = {
        "__TITLE__": escape(f"{layer} · {run}"),
        "__LAYER__": escape(layer),
        "__RUN__": escape(run),
        "__COUNTS__": escape(counts_text(info["records"])),
        "__NAV__": run_nav(layer, run, runs),
        "__OPTIONS__": options,
        "__DETAILS__": escape(details),
        "__DATA__": embedded,
    }
    return fill(template("run.html"), replacements)


@functools.cache
def template(name: str) -> str:
    """A page of render/templates (package data) with the shared stylesheet in place."""
    folder = resources.files("render") / "templates"
    css = (folder / "gallery.css").read_text("utf-8")
    return (folder / name).read_text("utf-8").replace("__STYLE__", css, 1)


def fill(page: str, replacements: dict[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(k) for k in replacements))
    return pattern.sub(lambda m: replacements[m[0]], page)  # one pass: data is never re-read


def thumbnails(layer: str, run: str, info: dict) -> str:
    """The run's best images by loss_end (or its first ones when it has no such metric)."""
    shown = [r for r in info["records"] if r.get("file")]
    if "loss_end" in info["metrics"]:
        shown.sort(key=lambda r: -r["loss_end"] if is_number(r.get("loss_end")) else math.inf)
    width, height = info["size"]
    return "".join(
        f'<img src="{href(layer, run, r["file"])}" width="{width}" height="{height}" '
        f'loading="lazy" decoding="async" alt="filter {r["filter"]}" '
        f'title="filter {r["filter"]}">'
        for r in shown[:THUMBNAILS]
    )


def root_page(runs: list[tuple[str, str]], infos: dict) -> str:
    sections, current = [], None
    for layer, run in runs:
        if layer != current:
            if current is not None:
                sections.append("</section>")
            sections.append(f'<section><h2 id="{escape(layer)}">{escape(layer)}</h2>')
            current = layer
        info = infos[layer, run]
        sections.append(
            f'<a class="run" href="{href(layer, run, INDEX)}"><span class="name">{escape(run)}'
            f'</span><span class="counts">{escape(counts_text(info["records"]))}</span>'
            f'<span class="thumbs">{thumbnails(layer, run, info)}</span></a>'
        )
    if current is None:
        sections.append("<p>No runs found: no &lt;layer&gt;/&lt;run&gt;/metadata.json here.</p>")
    else:
        sections.append("</section>")
    return fill(template("root.html"), {"__BODY__": "\n".join(sections)})


def write_gallery(root: str) -> list[str]:
    """Write index.html in every run folder below `root` and an overview at `root`/index.html.

    Returns the paths written, the overview last.
    """
    if not os.path.isdir(root):
        raise UserError(f"no such folder: {root}: pass the output.root of your renders")
    runs = find_runs(root)
    infos = {}
    for layer, run in runs:
        info = load_run(os.path.join(root, layer, run))
        if info is not None:
            infos[layer, run] = info
    runs = [r for r in runs if r in infos]  # unreadable metadata: neither a page nor a link
    written = []
    for layer, run in runs:
        path = os.path.join(root, layer, run, INDEX)
        write_atomic(path, run_page(layer, run, infos[layer, run], runs).encode())
        written.append(path)
    path = os.path.join(root, INDEX)
    write_atomic(path, root_page(runs, infos).encode())
    return written + [path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="render.gallery", description="Write static HTML pages to browse rendered filters."
    )
    parser.add_argument("root", help="the output.root folder holding <layer>/<run>/ folders")
    args = parser.parse_args(argv)
    run_tool("render.gallery", lambda: print(write_gallery(args.root)[-1]))


if __name__ == "__main__":
    main()
