"""Figures for papers (render.figures) and the whole-network overview (render.overview)."""

import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from render.errors import UserError
from render.figures import (
    compose_figure,
    label_height,
    name_column_width,
    save_figure,
    tile_labels,
    title_height,
    upscale,
    write_atlases,
)
from render.overview import main as overview_main
from render.tiles import stitch

MARGIN_COLOR = (0, 0, 80)
EMPTY = (1, 2, 3)
INK = (255, 255, 0)


def solid(color, shape=(4, 6)):
    return np.full((*shape, 3), color, np.uint8)


def five_tiles():
    """Five 4x6 tiles of distinct colours and one empty cell, for a 2x3 grid."""
    return [solid((10 * (i + 1), 200, 100)) for i in range(5)] + [None]


def tile_boxes(figure_top, left, margin, tile_h, tile_w, strip, rows, cols):
    """(y, x) of each cell's top-left corner, row-major."""
    return [
        (figure_top + margin + r * (tile_h + strip + margin), left + margin + c * (tile_w + margin))
        for r in range(rows)
        for c in range(cols)
    ]


def test_plain_figure_equals_stitch():
    tiles = five_tiles()
    np.testing.assert_array_equal(
        compose_figure(tiles, cols=3, margin=2, background=EMPTY),
        stitch(tiles, cols=3, margin=2, background=EMPTY),
    )


@pytest.mark.parametrize("scale", [1, 3])
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("title", [None, "T"])  # narrower than the grid
def test_figure_geometry(scale, labels, title):
    fs, m = 14, 2
    text = [str(i) for i in range(6)] if labels else None
    fig = compose_figure(
        five_tiles(), text, cols=3, margin=m, title=title, scale=scale, font_size=fs
    )
    strip = label_height(fs) if labels else 0
    top = title_height(fs) + m if title else 0
    assert strip == 0 or strip >= fs
    assert fig.shape == (top + 2 * (4 * scale + strip) + 3 * m, 3 * 6 * scale + 4 * m, 3)


def test_row_names_widen_the_figure_and_keep_tiles_in_place():
    fs, m = 12, 2
    names = ["block1_conv1", "b2"]
    fig = compose_figure(five_tiles(), cols=3, margin=m, font_size=fs, row_names=names)
    left = name_column_width(names, fs, m)
    assert left > m
    assert fig.shape == (2 * 4 + 3 * m, left + 3 * 6 + 4 * m, 3)
    np.testing.assert_array_equal(fig[:, left:], stitch(five_tiles(), 3, m, (0, 0, 0)))
    assert (fig[:, :left] > 0).any()  # the names are drawn


def test_long_title_widens_the_figure_and_centres_the_grid():
    fs, m = 12, 2
    fig = compose_figure(five_tiles(), cols=3, margin=m, font_size=fs, title="a rather long title")
    grid_w = 3 * 6 + 4 * m
    assert fig.shape[1] > grid_w
    x0 = (fig.shape[1] - grid_w) // 2
    grid = fig[title_height(fs) + m :, x0 : x0 + grid_w]
    np.testing.assert_array_equal(grid, stitch(five_tiles(), 3, m, (0, 0, 0)))


def test_labels_draw_in_the_strip_under_each_tile_only_when_on():
    fs, m = 12, 3
    tiles = [solid((10 * (i + 1), 200, 100), (20, 20)) for i in range(5)] + [None]
    kw = dict(cols=3, margin=m, background=EMPTY, margin_color=MARGIN_COLOR, font_size=fs)
    strip = label_height(fs)
    labeled = compose_figure(tiles, [str(i) for i in range(6)], label_color=INK, **kw)
    for i, (y, x) in enumerate(tile_boxes(0, 0, m, 20, 20, strip, 2, 3)):
        cell = labeled[y + 20 : y + 20 + strip, x : x + 20]
        assert (cell != MARGIN_COLOR).any(axis=-1).sum() > 3, f"no label under tile {i}"
        assert (labeled[y + 20 : y + 20 + strip, x + 20 : x + 20 + m] == MARGIN_COLOR).all()
        expected = EMPTY if tiles[i] is None else tiles[i]
        assert (labeled[y : y + 20, x : x + 20] == expected).all()  # text never covers a tile
    plain = compose_figure(tiles, None, **kw)
    assert plain.shape[0] == labeled.shape[0] - 2 * strip
    inside = np.zeros(plain.shape[:2], bool)
    for y, x in tile_boxes(0, 0, m, 20, 20, 0, 2, 3):
        inside[y : y + 20, x : x + 20] = True
    assert (plain[~inside] == MARGIN_COLOR).all()  # no text anywhere outside the tiles


def test_empty_label_draws_nothing():
    tiles = [solid((9, 9, 9), (20, 20))] * 2
    fig = compose_figure(tiles, ["", ""], cols=2, margin=2, background=EMPTY, font_size=12)
    assert (fig[22:] == EMPTY).all()


def test_upscale_repeats_pixels_exactly():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    big = upscale(tile, 4)
    np.testing.assert_array_equal(big, np.kron(tile, np.ones((4, 4, 1), np.uint8)))
    assert upscale(tile, 1) is tile
    fig = compose_figure([tile, None], cols=2, margin=3, scale=4)
    np.testing.assert_array_equal(fig[3 : 3 + 20, 3 : 3 + 28], big)
    with pytest.raises(ValueError):
        upscale(tile, 0)


def test_tile_labels():
    losses = {3: 503.0, 7: 1234.56, 9: 0.012345}
    assert tile_labels([7, 3], losses) == ["7", "3"]
    assert tile_labels([7, 3, 9], losses, "loss") == ["1235", "503", "0.0123"]
    assert tile_labels([3, 4], losses, "both") == ["3: 503", "4"]
    with pytest.raises(ValueError):
        tile_labels([3], losses, "name")


def test_png_stores_dpi(tmp_path):
    path = str(tmp_path / "fig.png")
    image = compose_figure(five_tiles(), [str(i) for i in range(6)], cols=3, font_size=10)
    save_figure(path, image, dpi=300)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), image)
    save_figure(path, image)  # no dpi: no pHYs chunk
    with Image.open(path) as img:
        assert "dpi" not in img.info
    assert os.listdir(tmp_path) == ["fig.png"]  # atomic write leaves no temporary file


@pytest.mark.parametrize("dpi", [72, 300])
def test_pdf_page_size_follows_dpi(tmp_path, dpi):
    path = tmp_path / "fig.PDF"
    image = np.zeros((150, 600, 3), np.uint8)
    save_figure(str(path), image, dpi=dpi)
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box, "no MediaBox in the PDF"
    width, height = (float(v) for v in box.groups())
    assert (width, height) == pytest.approx((600 * 72 / dpi, 150 * 72 / dpi), abs=0.01)


def test_save_figure_refuses_other_formats(tmp_path):
    with pytest.raises(UserError, match=r"\.png or \.pdf"):
        save_figure(str(tmp_path / "fig.jpg"), np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path) == []


# --- overview ------------------------------------------------------------------------------

RED, GREEN, BLUE, MAGENTA = (220, 30, 40), (30, 210, 50), (40, 60, 230), (230, 20, 220)
YELLOW, CYAN, ORANGE, OLD = (230, 220, 10), (10, 220, 230), (240, 130, 10), (120, 10, 60)
TILE = 4


def write_run(root, layer, run, filters, mtime=None):
    """filters: {index: (colour or None, loss, status)}; writes the PNGs and metadata.json."""
    folder = root / layer / run
    folder.mkdir(parents=True)
    records = {}
    for k, (color, loss, status) in filters.items():
        name = f"{layer}_{k:04d}.png"
        if color is not None:
            Image.fromarray(solid(color, (TILE, TILE))).save(folder / name)
        ok = status == "ok"
        records[str(k)] = {"filter": k, "file": name if ok else None, "status": status}
        records[str(k)] |= {"loss_end": loss, "loss_start": 0.0, "seed": 0}
    meta = {"layer": layer, "settings": {}, "filters": records}
    (folder / "metadata.json").write_text(json.dumps(meta))
    if mtime is not None:
        os.utime(folder / "metadata.json", (mtime, mtime))
    return folder


@pytest.fixture
def fake_root(tmp_path):
    """Three layers, written out of network order; a dead filter whose PNG exists anyway."""
    root = tmp_path / "outputs"
    write_run(root, "block5_conv2", "r-1", {0: (ORANGE, 4.0, "ok"), 1: (None, 0.0, "dead")})
    write_run(
        root,
        "block1_conv1",
        "r-1",
        {
            0: (RED, 5.0, "ok"),
            1: (GREEN, 9.0, "ok"),
            2: (MAGENTA, 0.0, "dead"),  # stray file of a dead filter: never shown
            3: (BLUE, 7.0, "ok"),
        },
    )
    write_run(root, "block3_conv1", "r-1", {0: (YELLOW, 2.0, "ok"), 1: (CYAN, 3.0, "ok")})
    (root / "notes.txt").write_text("not a layer")
    (root / "block2_conv1").mkdir()  # a layer folder without runs
    return root


def run_overview(root, *args):
    out = str(root / "ov.png")
    with pytest.raises(SystemExit) as exit_info:
        overview_main([str(root), "--out", out, "--margin", "1", "--font-size", "10", *args])
    assert exit_info.value.code == 0
    with Image.open(out) as img:
        return np.asarray(img.convert("RGB")), img.info


def cell(figure, left, r, c, strip=0):
    y, x = tile_boxes(0, left, 1, TILE, TILE, strip, 3, 2)[r * 2 + c]
    return figure[y : y + TILE, x : x + TILE]


LAYERS = ["block1_conv1", "block3_conv1", "block5_conv2"]


def test_overview_rows_in_network_order_best_first(fake_root, capsys):
    before = sorted((p, p.stat().st_mtime_ns) for p in fake_root.rglob("*"))
    figure, info = run_overview(fake_root, "--per-layer", "2")
    left = name_column_width(LAYERS, 10, 1)
    assert figure.shape == (3 * TILE + 4, left + 2 * TILE + 3, 3)
    expected = [[GREEN, BLUE], [CYAN, YELLOW], [ORANGE, None]]
    for r, row in enumerate(expected):
        for c, color in enumerate(row):
            assert (cell(figure, left, r, c) == (color or (0, 0, 0))).all(), (r, c)
    colors = {tuple(p) for p in figure.reshape(-1, 3)}
    assert MAGENTA not in colors and RED not in colors  # dead, and below the best two
    assert (figure[:, :left] > 0).any()  # layer names on the left
    assert info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert "wrote" in capsys.readouterr().out
    after = sorted((p, p.stat().st_mtime_ns) for p in fake_root.rglob("*") if p.name != "ov.png")
    assert after == before  # rebuilt from the files alone: nothing rendered or rewritten


def test_overview_labels_and_scale(fake_root):
    figure, _ = run_overview(fake_root, "--per-layer", "3", "--labels", "--scale", "2")
    left = name_column_width(LAYERS, 10, 1)
    strip = label_height(10)
    assert figure.shape == (3 * (2 * TILE + strip) + 4, left + 3 * 2 * TILE + 4, 3)
    y = 1 + 2 * TILE
    under_first = figure[y : y + strip, left + 1 : left + 1 + 2 * TILE]
    assert (under_first > 0).any()  # "1" under GREEN
    assert (figure[1 : 1 + 2 * TILE, left + 1 : left + 1 + 2 * TILE] == GREEN).all()


def test_overview_pdf_by_suffix(fake_root):
    out = fake_root / "ov.pdf"
    with pytest.raises(SystemExit) as exit_info:
        overview_main([str(fake_root), "--out", str(out), "--dpi", "150"])
    assert exit_info.value.code == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_overview_uses_newest_run_and_match(fake_root, capsys):
    write_run(fake_root, "block3_conv1", "old-run", {0: (OLD, 50.0, "ok")}, mtime=1_000_000)
    figure, _ = run_overview(fake_root, "--per-layer", "2")
    left = name_column_width(LAYERS, 10, 1)
    assert (cell(figure, left, 1, 0) == CYAN).all()
    out = capsys.readouterr().out
    assert "block3_conv1: 2 runs, using the newest, r-1 (--match SUBSTRING chooses)" in out
    figure, _ = run_overview(fake_root, "--per-layer", "2", "--match", "old")
    assert figure.shape[0] == TILE + 2  # only block3_conv1 has a run named *old*
    assert (cell(figure, name_column_width(["block3_conv1"], 10, 1), 0, 0) == OLD).all()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", [], "no folder {root}: pass the output root of render runs (e.g. outputs)"),
        ("empty", [], "no runs in {root}: expected {root}/<layer>/<run>/metadata.json"),
        ("fake", ["--match", "zzz"], "no runs whose name contains 'zzz' in {root}"),
        ("fake", ["--out", "{root}/x.jpg"], "--out {root}/x.jpg: end the name with .png or .pdf"),
        ("fake", ["--out", "{root}/no/x.png"], "--out {root}/no/x.png: its folder does not exist"),
        ("fake", ["--per-layer", "0"], "--per-layer, --scale, --dpi and --font-size must be"),
        ("dead", [], "no rendered filter images in any run below {root}"),
    ],
)
def test_overview_errors(tmp_path, fake_root, capsys, setup, args, message):
    root = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "fake": fake_root}.get(
        setup, tmp_path / "dead"
    )
    if setup == "empty":
        root.mkdir()
    if setup == "dead":
        write_run(root, "block1_conv1", "r", {0: (None, 0.0, "dead")})
    args = [a.format(root=root) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        overview_main([str(root), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("render.overview: error: " + message.format(root=root))
    assert err.count("\n") == 1


def test_overview_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "render.overview", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"render.overview: error: no folder {tmp_path / 'nope'}: "
        "pass the output root of render runs (e.g. outputs)\n"
    )


# --- dataset examples under the atlas tiles ---------------------------------------------------


def atlas_job(folder, **output):
    """What write_atlases reads of a job: the output settings as conf/ composes them."""
    defaults = OmegaConf.load(
        os.path.join(os.path.dirname(__file__), "..", "conf", "output", "default.yaml")
    )
    settings = OmegaConf.to_container(defaults) | {"margin": 1, "cols": 3} | output
    layer = types.SimpleNamespace(name="block1_conv1")
    return types.SimpleNamespace(
        out_dir=str(folder), layer=layer, objective="filters", size=8, output=settings
    )


def write_examples_json(folder, layer, patches):
    """examples.json with one solid 64 px patch PNG per colour: {filter: [colour, ...]}."""
    (folder / "examples").mkdir()
    filters = {}
    for k, colors in patches.items():
        entries = []
        for rank, color in enumerate(colors):
            png = f"examples/{layer}_{k:04d}_patch{rank}.png"
            Image.fromarray(solid(color, (64, 64))).save(folder / png)
            entries.append({"file": "p.jpg", "box": [0, 0, 9, 9], "activation": 1.0, "png": png})
        filters[str(k)] = {"photos": [], "patches": entries}
    (folder / "examples.json").write_text(json.dumps({"layer": layer, "filters": filters}))


@pytest.fixture
def examples_run(tmp_path):
    """block1_conv1 with 8 px tiles; filter 1 has no examples, filter 2 is dead but has some."""
    folder = tmp_path / "run"
    folder.mkdir()
    records = {}
    for k, color in enumerate([RED, GREEN, None]):
        name = f"block1_conv1_{k:04d}.png" if color else None
        if color:
            Image.fromarray(solid(color, (8, 8))).save(folder / name)
        records[str(k)] = {"file": name, "loss_end": 1.0 + k if color else 0.0}
    write_examples_json(folder, "block1_conv1", {0: [BLUE, YELLOW, CYAN, ORANGE, OLD], 2: [CYAN]})
    return folder, records


def read_atlas(folder):
    with Image.open(folder / "atlas.png") as img:
        return np.asarray(img.convert("RGB"))


def test_atlas_puts_each_filters_top_patches_under_its_tile(examples_run):
    folder, records = examples_run
    write_atlases(atlas_job(folder, examples=True), records)
    atlas = read_atlas(folder)
    side = 8 // 4  # four patches under a square tile
    assert atlas.shape == (1 + 8 + 2 + side + 1, 1 + 3 * (8 + 1), 3)
    row = 1 + 8 + 2  # below the tile and a 2 px gap
    for c, (tile, patches) in enumerate(
        [(RED, [BLUE, YELLOW, CYAN, ORANGE]), (GREEN, []), (None, [CYAN])]
    ):
        x = 1 + c * 9
        assert (atlas[1:9, x : x + 8] == (tile or (0, 0, 0))).all()
        assert (atlas[9:row, x : x + 8] == 0).all()
        for i in range(4):
            color = patches[i] if i < len(patches) else (0, 0, 0)  # the fifth patch: no room
            assert (atlas[row : row + side, x + i * side : x + (i + 1) * side] == color).all()
    with Image.open(folder / "best.png") as img:
        assert img.size == (1 + 2 * 9, 1 + 8 + 2 + side + 1)  # the live filters, rows too


def test_atlas_has_no_patch_rows_when_off_or_for_another_layer(examples_run):
    folder, records = examples_run
    write_atlases(atlas_job(folder), records)
    assert read_atlas(folder).shape == (10, 28, 3)
    (folder / "examples.json").write_text(json.dumps({"layer": "block2_conv1", "filters": {}}))
    write_atlases(atlas_job(folder, examples=True), records)
    assert read_atlas(folder).shape == (10, 28, 3)
