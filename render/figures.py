"""Figures for papers: a tile grid with labels, row names and a title, saved as PNG or PDF.

Layout of `compose_figure` (all in output pixels, `t` = tile side times `scale`):

    title strip   title_height(font_size) + margin     only with a title
    grid          rows * (t_h + strip) + (rows + 1) * margin
                  strip = label_height(font_size) under each tile, only with labels
    left column   name_width + margin before the grid, only with row names

Without labels, row names and title, and with scale 1, the result equals `atlas.stitch`.
`write_atlases` makes a run's atlas.png and best.png (and PDFs) from its saved PNGs; with
output.examples it puts a row of each filter's top dataset patches (render.examples) under its
tile.
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from render.errors import UserError
from render.files import png_bytes, read_json, read_png, write_atomic
from render.runs import EXAMPLES
from render.tiles import best_order, grid_shape

log = logging.getLogger("render")
Color = tuple[int, int, int]
FORMATS = {".png": "PNG", ".pdf": "PDF"}
EXAMPLES_PER_ROW = 4  # patches under a square tile; a strip of n images gets n times as many
EXAMPLE_GAP = 2  # pixels between a tile and its row of patches


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font (no font file needed)."""
    return ImageFont.load_default(size=size)


def label_height(font_size: int) -> int:
    """Height of one line of text: the font's ascent plus descent."""
    ascent, descent = font(font_size).getmetrics()
    return ascent + descent


def title_size(font_size: int) -> int:
    """Titles are set half again as large as labels."""
    return font_size * 3 // 2


def title_height(font_size: int) -> int:
    return label_height(title_size(font_size))


def text_width(text: str, font_size: int) -> int:
    return int(np.ceil(font(font_size).getlength(text))) if text else 0


def name_column_width(names: list[str] | None, font_size: int, margin: int) -> int:
    """Width of the row-name column left of the grid: the widest name plus a margin."""
    return max(text_width(n, font_size) for n in names) + margin if names else 0


def upscale(tile: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor: every pixel becomes a scale² block."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return tile if scale == 1 else tile.repeat(scale, axis=0).repeat(scale, axis=1)


def loss_label(loss: float) -> str:
    """Short text for a final loss: 3 significant digits below 1000, whole numbers above."""
    return f"{loss:.0f}" if abs(loss) >= 1000 else f"{loss:.3g}"


def tile_labels(indices: list[int], losses: dict[int, float], kind: str = "index") -> list[str]:
    """Labels for tiles: the filter index ("index"), the final loss ("loss") or both ("both")."""
    if kind == "index":
        return [str(k) for k in indices]
    if kind == "loss":
        return [loss_label(losses[k]) if k in losses else "" for k in indices]
    if kind == "both":
        return [f"{k}: {loss_label(losses[k])}" if k in losses else str(k) for k in indices]
    raise ValueError(f"label kind must be index, loss or both, got {kind!r}")


def compose_figure(
    tiles: list[np.ndarray | None],
    labels: list[str] | None = None,
    cols: int | None = None,
    margin: int = 5,
    background: Color = (0, 0, 0),
    margin_color: Color | None = None,
    title: str | None = None,
    scale: int = 1,
    label_color: Color = (255, 255, 255),
    font_size: int = 12,
    row_names: list[str] | None = None,
) -> np.ndarray:
    """Tiles (H, W, 3) uint8 in row-major order on a grid; None leaves a `background` cell.

    labels: one short string under each tile (same length as tiles). row_names: one string
    left of each grid row. margin_color fills the gaps, label strips and title (default:
    background). A title wider than the grid widens the figure and centres the grid.
    """
    if labels is not None and len(labels) != len(tiles):
        raise ValueError(f"{len(labels)} labels for {len(tiles)} tiles")
    margin_color = background if margin_color is None else margin_color
    height, width = next(t.shape[:2] for t in tiles if t is not None)
    tile_h, tile_w = height * scale, width * scale
    rows, cols = grid_shape(len(tiles), cols)
    strip = label_height(font_size) if labels is not None else 0
    left = name_column_width(row_names, font_size, margin)
    grid_w = left + cols * tile_w + (cols + 1) * margin
    top = title_height(font_size) + margin if title else 0
    fig_w = max(grid_w, text_width(title, title_size(font_size)) + 2 * margin if title else 0)
    x0 = left + (fig_w - grid_w) // 2
    fig_h = top + rows * (tile_h + strip) + (rows + 1) * margin
    canvas = Image.new("RGB", (fig_w, fig_h), margin_color)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((fig_w // 2, margin), title, label_color, font(title_size(font_size)), "ma")
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = top + margin + r * (tile_h + strip + margin), x0 + margin + c * (tile_w + margin)
        if tile is None:
            canvas.paste(background, (x, y, x + tile_w, y + tile_h))
        else:
            canvas.paste(Image.fromarray(upscale(tile, scale)), (x, y))
        if labels is not None and labels[i]:
            _draw_clipped(canvas, labels[i], (x, y + tile_h, tile_w, strip), label_color, font_size)
    for r, name in enumerate((row_names or [])[:rows]):
        y = top + margin + r * (tile_h + strip + margin) + tile_h // 2
        draw.text((x0, y), name, label_color, font(font_size), "rm")
    return np.asarray(canvas)


def _draw_clipped(
    canvas: Image.Image, text: str, box: tuple[int, int, int, int], color: Color, font_size: int
) -> None:
    """Centre `text` in box (x, y, w, h) of `canvas`, cut at the box edges."""
    x, y, w, h = box
    cell = canvas.crop((x, y, x + w, y + h))
    ImageDraw.Draw(cell).text((w // 2, 0), text, color, font(font_size), "ma")
    canvas.paste(cell, (x, y))


def figure_bytes(image: np.ndarray, fmt: str, dpi: int | None = None) -> bytes:
    """Encode an (H, W, 3) uint8 image as "PNG" (pHYs when dpi is set) or one-page "PDF"."""
    if fmt == "PNG":
        return png_bytes(image, dpi=dpi)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PDF", resolution=float(dpi or 72))
    return buffer.getvalue()


def save_figure(path: str, image: np.ndarray, dpi: int | None = None) -> None:
    """Write the image atomically as PNG or PDF, chosen by the suffix of `path`."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot save a figure as {path}: end the name with .png or .pdf")
    write_atomic(path, figure_bytes(image, FORMATS[suffix], dpi))


def example_images(folder: str, layer: str) -> dict[int, list[np.ndarray]]:
    """Per filter, its top patches from the run's examples.json (its top photos for a layer
    without patches), best first; {} without a readable file for this layer."""
    examples = read_json(os.path.join(folder, EXAMPLES))
    if not isinstance(examples, dict) or examples.get("layer") != layer:
        return {}
    found = {}
    for key, record in (examples.get("filters") or {}).items():
        entries = record.get("patches") or record.get("photos") or []
        pngs = [read_png(os.path.join(folder, entry["png"])) for entry in entries]
        images = [png[0] for png in pngs if png]
        if images and key.isdigit():
            found[int(key)] = images
    return found


def with_examples(
    tile: np.ndarray | None,
    images: list[np.ndarray],
    shape: tuple[int, int],
    background: Color,
) -> np.ndarray | None:
    """The tile (`shape` (H, W); None: an empty cell) above a row of its example images; every
    result has the same size, with background where a tile or images are missing."""
    if tile is None and not images:
        return None
    height, width = shape
    count = min(width, EXAMPLES_PER_ROW * max(1, width // height))
    side = width // count
    cell = np.empty((height + EXAMPLE_GAP + side, width, 3), np.uint8)
    cell[:] = background
    if tile is not None:
        cell[:height] = tile
    for i, image in enumerate(images[:count]):
        small = Image.fromarray(image).resize((side, side), Image.LANCZOS)
        cell[height + EXAMPLE_GAP :, i * side : (i + 1) * side] = np.asarray(small)
    return cell


def output_figure(tiles: list, labels, cols: int, out: dict, size: int) -> np.ndarray:
    """A figure of tiles laid out as the `output` settings say (margins, colours, title,
    scale, labels); `size` is the image side the default label size follows."""
    return compose_figure(
        tiles,
        labels,
        cols,
        out["margin"],
        tuple(out["background"]),
        tuple(out["margin_color"]) if out["margin_color"] else None,
        out["title"],
        out["scale"],
        tuple(out["label_color"]),
        out["font_size"] or max(10, size * out["scale"] // 8),
    )


def write_atlases(job, records: dict) -> None:
    """atlas.png (every filter in index order) and best.png (highest final loss first)."""
    indices = sorted(int(k) for k in records)
    tiles = {}
    for k in indices:
        record = records[str(k)]
        png = read_png(os.path.join(job.out_dir, record["file"])) if record["file"] else None
        tiles[k] = png[0] if png else None
    if not any(tile is not None for tile in tiles.values()):
        log.warning("no filter produced an image: every one is dead; no atlas written")
        return
    out = job.output
    losses = {k: records[str(k)]["loss_end"] for k in indices if tiles[k] is not None}
    examples = example_images(job.out_dir, job.layer.name) if out.get("examples") else {}
    if examples:
        shape = next(t.shape[:2] for t in tiles.values() if t is not None)
        background = tuple(out["background"])
        tiles = {
            k: with_examples(t, examples.get(k, []), shape, background) for k, t in tiles.items()
        }
    rank = {k: records[str(k)].get(out["best_by"]) or 0.0 for k in losses}
    best = best_order(rank, out["best_n"])
    for name, order, cols in (
        ("atlas", indices, out["cols"]),
        ("best", best, min(out["best_cols"], len(best))),
    ):
        labels = tile_labels(order, losses, out["label_kind"]) if out["labels"] else None
        if labels and job.objective == "class":
            labels = [
                f"{label} {records[str(k)]['class_name']}"
                for label, k in zip(labels, order, strict=True)
            ]
        figure = output_figure([tiles[k] for k in order], labels, cols, out, job.size)
        save_figure(os.path.join(job.out_dir, f"{name}.png"), figure, out["dpi"])
        if out["pdf"]:
            save_figure(os.path.join(job.out_dir, f"{name}.pdf"), figure, out["dpi"])
