"""Static offline HTML gallery: one page per rendered run and an overview of all of them.

python -m render.gallery ROOT writes <ROOT>/<layer>/<run>/index.html next to each metadata.json
and <ROOT>/index.html. The pages need no server and nothing from the network: each run page
embeds its records as JSON and a small inline script builds, sorts and enlarges the tiles.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
from urllib.parse import quote

from PIL import Image

from render.errors import UserError
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
    return fill(RUN_PAGE, replacements)


def fill(template: str, replacements: dict[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(k) for k in replacements))
    return pattern.sub(lambda m: replacements[m[0]], template)  # one pass: data is never re-read


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
    return fill(ROOT_PAGE, {"__BODY__": "\n".join(sections)})


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
    try:
        written = write_gallery(args.root)
    except UserError as err:
        print(f"render.gallery: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(written[-1])


STYLE = """
:root { color-scheme: dark; --tile: 128px; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #111; color: #ddd; }
header { padding: 8px 16px; background: #1b1b1b; position: sticky; top: 0; z-index: 1; }
header h1 { font-size: 18px; margin: 0 0 4px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 4px 0; }
a { color: #8cf; }
main { padding: 12px 16px; }
.dim { color: #999; }
"""

RUN_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>"""
    + STYLE
    + """
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
#grid { display: grid; gap: 6px;
  grid-template-columns: repeat(auto-fill, minmax(var(--tile), 1fr)); }
.tile { all: unset; cursor: pointer; display: flex; flex-direction: column; background: #1e1e1e;
  content-visibility: auto;
  contain-intrinsic-size: auto var(--tile) auto calc(var(--tile) + 20px); }
.tile:focus-visible { outline: 2px solid #8cf; }
.tile img, .tile .empty { width: 100%; height: auto; aspect-ratio: var(--aspect); display: block; }
.tile .empty { display: grid; place-items: center; color: #e77; text-transform: uppercase;
  background: repeating-linear-gradient(45deg, #222 0 8px, #1a1a1a 8px 16px); }
.tile span { padding: 1px 4px; font-size: 12px; display: flex; justify-content: space-between; }
#view { position: fixed; inset: 0; background: rgb(0 0 0 / 0.88); display: grid;
  place-items: center; z-index: 2; cursor: zoom-out; }
#view[hidden] { display: none; }
#view figure { margin: 0; display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap;
  justify-content: center; }
#view img, #view .empty { width: min(80vh, 90vw); height: auto; aspect-ratio: var(--aspect);
  image-rendering: pixelated; }
#view .empty { display: grid; place-items: center; background: #222; color: #e77; font-size: 32px; }
#view.with-examples #view-image img, #view.with-examples #view-image .empty {
  width: min(60vh, 45vw); }
#view table { border-collapse: collapse; }
#view-examples { max-width: min(45vw, 760px); }
#view .examples h3 { font-size: 13px; font-weight: normal; color: #999; margin: 10px 0 4px; }
#view .examples div { display: flex; flex-wrap: wrap; gap: 4px; }
#view .examples figure { margin: 0; gap: 0; flex-direction: column; align-items: center;
  font-size: 11px; }
#view .examples img { width: 72px; height: 72px; aspect-ratio: auto; image-rendering: auto; }
#view td { padding: 2px 8px; }
</style>
</head>
<body>
<header>
<h1>__LAYER__ <span class="dim">__RUN__</span></h1>
<nav>__NAV__</nav>
<div class="controls">
<span class="dim">__COUNTS__</span>
<label>sort by <select id="sort-key">__OPTIONS__</select></label>
<button id="sort-dir" type="button" data-dir="asc">ascending</button>
<label>size <input id="zoom" type="range" min="48" max="384" step="16" value="128"></label>
</div>
</header>
<main>
<div id="grid"></div>
<details><summary>key, settings and versions</summary><pre>__DETAILS__</pre></details>
</main>
<div id="view" hidden><figure><div id="view-image"></div><figcaption><table id="view-meta">
</table><div id="view-examples"></div></figcaption></figure></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("data").textContent);
  const grid = document.getElementById("grid");
  const key = document.getElementById("sort-key");
  const dir = document.getElementById("sort-dir");
  const view = document.getElementById("view");
  const [width, height] = data.size;
  document.documentElement.style.setProperty("--aspect", width + " / " + height);
  const records = new Map(data.filters.map((r) => [r.filter, r]));
  const tiles = new Map();
  let order = data.filters.slice();
  let shown = null;

  const format = (v) =>
    typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v);
  const value = (r, k) => k === "index" ? r.filter : r[k];

  function picture(r) {
    if (!r.file) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = r.status;
      return empty;
    }
    const img = document.createElement("img");
    Object.assign(img, { width, height, loading: "lazy", decoding: "async" });
    img.alt = "filter " + r.filter;
    img.src = encodeURIComponent(r.file);
    return img;
  }

  function exampleRow(title, entries) {
    const row = document.createElement("section");
    row.className = "examples";
    const heading = document.createElement("h3");
    heading.textContent = title;
    const strip = document.createElement("div");
    for (const e of entries) {
      const cell = document.createElement("figure");
      const img = document.createElement("img");
      Object.assign(img, { width: 72, height: 72, decoding: "async" });
      img.src = e.png.split("/").map(encodeURIComponent).join("/");
      img.alt = title + ": " + e.file;
      img.title = e.file + (e.box ? " box " + e.box.join(", ") : "");
      const text = document.createElement("figcaption");
      text.textContent = format(e.activation);
      cell.append(img, text);
      strip.append(cell);
    }
    row.append(heading, strip);
    return row;
  }

  function exampleRows(r) {
    const found = (data.examples || {})[r.filter] || {};
    const rows = [];
    if (found.photos) rows.push(exampleRow("top photos (mean activation)", found.photos));
    if (found.patches) rows.push(exampleRow("top patches (strongest position)", found.patches));
    return rows;
  }

  function caption(r) {
    const k = key.value === "index" ? "loss_end" : key.value;
    return [String(r.filter), r[k] === undefined ? "" : format(r[k])];
  }

  const fragment = document.createDocumentFragment();
  for (const r of data.filters) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile " + r.status;
    tile.dataset.filter = r.filter;
    tile.title = Object.entries(r).map(([k, v]) => k + ": " + format(v)).join("\\n");
    const label = document.createElement("span");
    label.append(document.createElement("b"), document.createElement("i"));
    tile.append(picture(r), label);
    tiles.set(r.filter, tile);
    fragment.append(tile);
  }
  grid.append(fragment);

  function sort() {
    const k = key.value;
    const sign = dir.dataset.dir === "asc" ? 1 : -1;
    order = data.filters.slice().sort((a, b) => {
      const x = value(a, k), y = value(b, k);
      const xn = typeof x === "number", yn = typeof y === "number";
      if (xn !== yn) return xn ? -1 : 1;  // missing or non-finite values always last
      return (xn && x !== y ? sign * (x - y) : 0) || a.filter - b.filter;
    });
    for (const r of order) {
      const [index, metric] = caption(r);
      const label = tiles.get(r.filter).lastChild;
      label.firstChild.textContent = index;
      label.lastChild.textContent = metric;
    }
    grid.replaceChildren(...order.map((r) => tiles.get(r.filter)));
  }

  function open(r) {
    shown = r;
    view.querySelector("#view-image").replaceChildren(picture(r));
    const rows = Object.entries(r).map(([k, v]) => {
      const row = document.createElement("tr");
      row.append(document.createElement("td"), document.createElement("td"));
      row.firstChild.textContent = k;
      row.lastChild.textContent = format(v);
      return row;
    });
    view.querySelector("#view-meta").replaceChildren(...rows);
    const examples = exampleRows(r);
    view.querySelector("#view-examples").replaceChildren(...examples);
    view.classList.toggle("with-examples", examples.length > 0);
    view.hidden = false;
  }

  function close() {
    if (shown === null) return;
    view.hidden = true;
    tiles.get(shown.filter).focus();
    shown = null;
  }

  grid.addEventListener("click", (event) => {
    const tile = event.target.closest(".tile");
    if (tile) open(records.get(Number(tile.dataset.filter)));
  });
  view.addEventListener("click", close);
  document.addEventListener("keydown", (event) => {
    if (shown === null) return;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (event.key === "Escape") close();
    else if (step) open(order[(order.indexOf(shown) + step + order.length) % order.length]);
  });
  key.addEventListener("change", sort);
  dir.addEventListener("click", () => {
    const asc = dir.dataset.dir !== "asc";
    dir.dataset.dir = asc ? "asc" : "desc";
    dir.textContent = asc ? "ascending" : "descending";
    sort();
  });
  document.getElementById("zoom").addEventListener("input", (event) => {
    document.documentElement.style.setProperty("--tile", event.target.value + "px");
  });
  sort();
})();
</script>
</body>
</html>
"""
)

ROOT_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>render gallery</title>
<style>"""
    + STYLE
    + """
h2 { font-size: 16px; margin: 16px 0 6px; }
.run { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: center; padding: 6px;
  background: #1b1b1b; margin-bottom: 6px; text-decoration: none; }
.run:hover { background: #252525; }
.name { min-width: 18em; }
.counts { color: #999; min-width: 14em; }
.thumbs { display: flex; gap: 4px; }
.thumbs img { width: 64px; height: auto; }
</style>
</head>
<body>
<header><h1>render gallery</h1></header>
<main>
__BODY__
</main>
</body>
</html>
"""
)


if __name__ == "__main__":
    main()
