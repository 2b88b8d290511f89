"""Whole-network overview: each layer's best filters, one row per layer, from finished runs.

    python -m render.overview outputs --per-layer 8 --labels --out outputs/overview.pdf

Reads ROOT/<layer>/<run>/metadata.json and the PNG tiles beside it; renders nothing. Rows
follow network order (block1_conv1 ... block5_conv3); each row holds the layer's filters with
the highest final loss, highest first (status ok only). When a layer has several runs the
newest one (by metadata.json modification time) is used; --match SUBSTRING picks runs by name.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from render.errors import UserError, run_tool
from render.figures import FORMATS, compose_figure, save_figure, tile_labels
from render.files import read_png
from render.runs import METADATA, layer_order, read_metadata
from render.runs import find_runs as runs_below
from render.tiles import best_order


@dataclass(frozen=True)
class Row:
    layer: str
    run_dir: str
    indices: list[int]  # filters shown, highest final loss first
    losses: dict[int, float]
    tiles: list[np.ndarray]


def find_runs(root: str, match: str | None = None) -> dict[str, list[str]]:
    """{layer: [run folders]} below root in network order (the layer being the path between,
    e.g. vgg19/block5_conv4), run names containing `match`."""
    if not os.path.isdir(root):
        raise UserError(f"no folder {root}: pass the output root of render runs (e.g. outputs)")
    runs: dict[str, list[str]] = {}
    for folder in runs_below(root):
        if not match or match in os.path.basename(folder):
            runs.setdefault(os.path.relpath(os.path.dirname(folder), root), []).append(folder)
    if not runs:
        which = f" whose name contains {match!r}" if match else ""
        raise UserError(f"no runs{which} in {root}: expected {root}/<layer>/<run>/{METADATA}")
    order = {
        layer: min(layer_order(layer, read_metadata(folder, warn=False)) for folder in folders)
        for layer, folders in runs.items()
    }
    return {layer: runs[layer] for layer in sorted(runs, key=order.__getitem__)}


def newest(run_dirs: list[str]) -> str:
    """The run whose metadata.json was modified last."""
    return max(run_dirs, key=lambda d: (os.path.getmtime(os.path.join(d, METADATA)), d))


def ranked_filters(meta) -> tuple[list[int], dict[int, float]]:
    """Ok filters with an image, highest final loss first (dead ones never), and their losses."""
    records = meta.get("filters") if isinstance(meta, dict) else None
    losses = {
        int(k): float(r["loss_end"])
        for k, r in (records if isinstance(records, dict) else {}).items()
        if isinstance(r, dict) and r.get("status") == "ok" and r.get("file") and r.get("loss_end")
    }
    return best_order(losses, len(losses)), losses


def load_row(layer: str, run_dir: str, count: int) -> Row | None:
    """The layer's best tiles read from disk; None when the run has no usable tile."""
    meta = read_metadata(run_dir, warn=False)
    ranked, losses = ranked_filters(meta)
    indices, tiles = [], []
    for k in ranked:
        png = read_png(os.path.join(run_dir, meta["filters"][str(k)]["file"]))
        if png is not None:  # a missing or damaged file: the next best takes its place
            indices.append(k)
            tiles.append(png[0])
        if len(tiles) == count:
            break
    return Row(layer, run_dir, indices, losses, tiles) if tiles else None


def common_size(tiles: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Tiles resized to (height, width) where they differ (runs of different image sizes)."""
    h, w = size
    return [
        t if t.shape[:2] == size else np.asarray(Image.fromarray(t).resize((w, h), Image.LANCZOS))
        for t in tiles
    ]


def overview_figure(
    rows: list[Row],
    labels: str | None = None,
    scale: int = 1,
    margin: int = 5,
    background: tuple[int, int, int] = (0, 0, 0),
    title: str | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """One grid row per layer, the layer name on the left; short rows end in empty cells."""
    size = rows[0].tiles[0].shape[:2]
    cols = max(len(row.tiles) for row in rows)
    tiles: list[np.ndarray | None] = []
    texts: list[str] = []
    for row in rows:
        pad = cols - len(row.tiles)
        tiles += common_size(row.tiles, size) + [None] * pad
        texts += tile_labels(row.indices, row.losses, labels or "index") + [""] * pad
    return compose_figure(
        tiles,
        texts if labels else None,
        cols,
        margin,
        background,
        title=title,
        scale=scale,
        label_color=(255, 255, 255) if sum(background) < 384 else (0, 0, 0),
        font_size=font_size or max(10, size[0] * scale // 8),
        row_names=[row.layer for row in rows],
    )


def build(args: argparse.Namespace) -> str:
    """Collect the rows, write the figure; returns the one-line summary."""
    if min(args.per_layer, args.scale, args.dpi, args.font_size or 1) < 1 or args.margin < 0:
        raise UserError(
            "--per-layer, --scale, --dpi and --font-size must be at least 1, --margin at least 0"
        )
    runs = find_runs(args.root, args.match)
    out = args.out or os.path.join(args.root, "overview.png")
    if os.path.splitext(out)[1].lower() not in FORMATS:
        raise UserError(f"--out {out}: end the name with .png or .pdf")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise UserError(f"--out {out}: its folder does not exist")
    rows = []
    for layer, run_dirs in runs.items():
        run_dir = newest(run_dirs)
        if len(run_dirs) > 1:
            print(
                f"{layer}: {len(run_dirs)} runs, using the newest, {os.path.basename(run_dir)} "
                "(--match SUBSTRING chooses)"
            )
        row = load_row(layer, run_dir, args.per_layer)
        if row is None:
            print(f"{layer}: no rendered filter in {run_dir}; row left out")
        else:
            rows.append(row)
    if not rows:
        raise UserError(f"no rendered filter images in any run below {args.root}")
    figure = overview_figure(
        rows, args.labels, args.scale, args.margin, title=args.title, font_size=args.font_size
    )
    save_figure(out, figure, args.dpi)
    height, width = figure.shape[:2]
    return f"wrote {out}: {len(rows)} layers, {width}x{height} px" + (
        f" at {args.dpi} dpi" if args.dpi else ""
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="render.overview",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", help="output root of render runs (output.root, e.g. outputs)")
    parser.add_argument("--per-layer", type=int, default=8, help="filters per layer (default 8)")
    parser.add_argument("--out", help="figure file, .png or .pdf (default ROOT/overview.png)")
    parser.add_argument("--dpi", type=int, default=300, help="print resolution (default 300)")
    parser.add_argument("--scale", type=int, default=1, help="integer tile enlargement, no blur")
    parser.add_argument(
        "--labels",
        nargs="?",
        const="index",
        choices=["index", "loss", "both"],
        help="text under each tile: the filter index (default), its final loss, or both",
    )
    parser.add_argument("--match", help="use only runs whose folder name contains this")
    parser.add_argument("--title", help="title above the figure")
    parser.add_argument("--margin", type=int, default=5, help="pixels between tiles")
    parser.add_argument("--font-size", type=int, help="label size in pixels (default: tile/8)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_tool("render.overview", lambda: print(build(args)))


if __name__ == "__main__":
    main()
