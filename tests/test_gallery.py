"""The static gallery: pages written from metadata.json, then the same pages in headless Chromium."""

import json
import math
import os
import re
import time
from urllib.parse import unquote

import pytest
from PIL import Image

from render.gallery import find_runs, main, write_gallery
from render.runs import layer_order

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RUN = "chollet2016-8px-seed0-1a2b3c4d"
# block1_conv1: filter 3 is dead; ascending loss_end gives 3, 1, 4, 0, 2
LOSSES_1 = [3.0, 1.0, 5.0, 0.0, 2.0]


def fake_run(root, layer, losses, dead=(), nonfinite=(), extra=None, size=8, top=None):
    """A run folder as render.run writes it: one PNG per live filter and metadata.json (with
    `top` added at its top level)."""
    folder = root / layer / RUN
    folder.mkdir(parents=True)
    filters = {}
    for k, loss in enumerate(losses):
        record = {"filter": k, "seed": 0, "loss_start": 0.5, "loss_end": loss, "file": None}
        if k in dead or k in nonfinite:
            record["status"] = "dead" if k in dead else "nonfinite"
        else:
            name = f"{layer.split('/')[-1]}_{k:04d}.png"
            Image.new("RGB", (size, size), (40 * k % 256, 90, 160)).save(folder / name)
            record |= {"file": name, "status": "ok"}
        filters[str(k)] = record | (extra or {}).get(k, {})
    meta = {"key": "1a2b3c4d", "layer": layer.split("/")[-1], "settings": {}, "versions": {}}
    meta |= {"filters": filters} | (top or {})
    (folder / "metadata.json").write_text(json.dumps(meta))  # NaN written as render.run does
    return folder


def fake_examples(folder, layer, filter_, photos=2, patches=2):
    """examples.json and its PNGs, as render.examples writes them, for one filter."""
    (folder / "examples").mkdir(exist_ok=True)
    record = {"photos": [], "patches": []}
    for kind, count, side in (("photo", photos, 96), ("patch", patches, 64)):
        for rank in range(count):
            png = f"examples/{layer}_{filter_:04d}_{kind}{rank}.png"
            Image.new("RGB", (side, side), (200, 30 * rank, 60)).save(folder / png)
            entry = {"file": f"photos/{kind}{rank}.jpg", "activation": 9.5 - rank, "png": png}
            if kind == "patch":
                entry |= {"box": [0, 2, 5, 7], "position": [0, 1]}
            record[f"{kind}es" if kind == "patch" else f"{kind}s"].append(entry)
    examples = {"layer": layer, "model": "vgg16", "size": 224, "photos_seen": 50}
    examples |= {"unreadable": [], "filters": {str(filter_): record}}
    (folder / "examples.json").write_text(json.dumps(examples))
    return record


@pytest.fixture
def root(tmp_path):
    fake_run(tmp_path, "block1_conv1", LOSSES_1, dead={3})
    selectivity = {0: {"selectivity": 0.9}, 1: {"selectivity": 0.2}}  # none for the non-finite
    fake_run(tmp_path, "block2_conv1", [4.0, 6.0, math.nan], nonfinite={2}, extra=selectivity)
    return tmp_path


def page_path(root, layer):
    return root / layer / RUN / "index.html"


def embedded(path):
    text = path.read_text()
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(match[1])


def links(path):
    """(href, target path) of every link and image on the page."""
    text = path.read_text()
    found = re.findall(r'(?:href|src)="([^"]+)"', text)
    return [(h, os.path.normpath(os.path.join(path.parent, unquote(h)))) for h in found]


def test_writes_a_page_per_run_and_the_overview_last(root):
    written = write_gallery(str(root))
    assert written == [
        str(page_path(root, "block1_conv1")),
        str(page_path(root, "block2_conv1")),
        str(root / "index.html"),
    ]
    assert all(os.path.isfile(p) for p in written)
    assert not [n for n in os.listdir(page_path(root, "block1_conv1").parent) if n.endswith(".tmp")]


def test_embedded_json_holds_the_records(root):
    write_gallery(str(root))
    data = embedded(page_path(root, "block1_conv1"))
    assert data["size"] == [8, 8]
    assert data["metrics"] == ["loss_end", "loss_start"]
    assert [r["filter"] for r in data["filters"]] == [0, 1, 2, 3, 4]
    assert [r["loss_end"] for r in data["filters"]] == LOSSES_1
    assert data["filters"][3] == {
        "filter": 3,
        "seed": 0,
        "loss_start": 0.5,
        "loss_end": 0.0,
        "file": None,
        "status": "dead",
    }
    assert data["filters"][4]["file"] == "block1_conv1_0004.png"
    data = embedded(page_path(root, "block2_conv1"))
    assert data["metrics"] == ["loss_end", "loss_start", "selectivity"]  # extra metrics sortable
    assert data["filters"][2]["status"] == "nonfinite"
    assert data["filters"][2]["loss_end"] == "NaN"  # JSON has no NaN: shown as text, sorted last


def test_links_point_to_existing_files(root):
    write_gallery(str(root))
    first, second, overview = (
        page_path(root, "block1_conv1"),
        page_path(root, "block2_conv1"),
        root / "index.html",
    )
    for page in (first, second, overview):
        for link, target in links(page):
            assert os.path.isfile(target), f"{page}: {link}"
    text = first.read_text()
    assert f'href="../../block2_conv1/{RUN}/index.html" rel="next"' in text
    assert 'href="../../index.html" rel="index"' in text
    assert 'rel="prev"' not in text
    assert f'href="../../block1_conv1/{RUN}/index.html" rel="prev"' in second.read_text()
    text = overview.read_text()
    assert text.index(">block1_conv1</h2>") < text.index(">block2_conv1</h2>")
    assert "5 filters · 1 dead" in text and "3 filters · 0 dead · 1 nonfinite" in text
    thumbs = re.findall(r'<img src="block1_conv1/[^"]+_(\d+)\.png" width="8" height="8" '
                        r'loading="lazy" decoding="async"', text)  # fmt: skip
    assert thumbs == ["0002", "0000", "0004", "0001"]  # live filters, best loss first


def test_unreadable_runs_and_missing_images_and_script_in_the_data(root):
    os.remove(root / "block1_conv1" / RUN / "block1_conv1_0001.png")
    (root / "block3_conv1" / RUN).mkdir(parents=True)
    (root / "block3_conv1" / RUN / "metadata.json").write_text("{not json")
    extra = {0: {"note": "</script><script>alert(1)</script>"}}
    fake_run(root, "block4_conv1", [1.0], extra=extra)
    written = write_gallery(str(root))
    assert not (root / "block3_conv1" / RUN / "index.html").exists()
    assert "block3_conv1" not in (root / "index.html").read_text()
    record = embedded(page_path(root, "block1_conv1"))["filters"][1]
    assert (record["status"], record["file"]) == ("missing", None)  # a labeled tile, no 404
    page = page_path(root, "block4_conv1")
    assert str(page) in written
    assert embedded(page)["filters"][0]["note"] == extra[0]["note"]
    assert page.read_text().count("</script>") == 2  # the data element and the inline script


def test_layers_sort_in_network_order():
    names = ["fc1", "block5_conv3", "block1_conv2", "block3_conv1", "block1_conv1", "block2_conv2"]
    assert sorted(names, key=layer_order) == [
        "block1_conv1",
        "block1_conv2",
        "block2_conv2",
        "block3_conv1",
        "block5_conv3",
        "fc1",
    ]


def test_layers_follow_the_recorded_layer_index_then_their_names(tmp_path):
    fake_run(tmp_path, "mixed_5b", [1.0], top={"model": "inception", "layer_index": 7})
    fake_run(tmp_path, "conv1", [1.0], top={"model": "inception", "layer_index": 0})
    fake_run(tmp_path, "block1_conv2", [1.0], top={"model": "vgg16", "layer_index": 1})
    fake_run(tmp_path, "vgg19/block4_conv4", [1.0], top={"model": "vgg19", "layer_index": 11})
    fake_run(tmp_path, "vgg19/block1_conv1", [1.0], top={"model": "vgg19", "layer_index": 0})
    fake_run(tmp_path, "block2_conv1", [1.0])  # schema 1: VGG16 runs, read as such
    fake_run(tmp_path, "block1_conv1", [1.0])
    fake_run(tmp_path, "zeta", [1.0])
    assert [layer for layer, _ in find_runs(str(tmp_path))] == [
        "conv1",
        "mixed_5b",
        "block1_conv1",
        "block1_conv2",
        "block2_conv1",
        "vgg19/block1_conv1",
        "vgg19/block4_conv4",
        "zeta",
    ]
    write_gallery(str(tmp_path))
    nested = page_path(tmp_path, "vgg19/block1_conv1")
    for link, target in links(nested):  # one folder deeper: the links still resolve
        assert os.path.isfile(target), f"{nested}: {link}"
    text = nested.read_text()
    assert 'href="../../../index.html" rel="index"' in text
    assert f'href="../../../vgg19/block4_conv4/{RUN}/index.html" rel="next"' in text
    assert f'href="../../../block2_conv1/{RUN}/index.html" rel="prev"' in text
    assert f'href="vgg19/block1_conv1/{RUN}/index.html"' in (tmp_path / "index.html").read_text()


def test_examples_are_embedded_when_their_pngs_exist(root):
    folder = root / "block1_conv1" / RUN
    record = fake_examples(folder, "block1_conv1", 4)
    os.remove(folder / record["patches"][1]["png"])
    data = json.loads((folder / "examples.json").read_text())
    data["filters"]["9"] = record  # no such filter in the run: dropped
    (folder / "examples.json").write_text(json.dumps(data))
    fake_examples(root / "block2_conv1" / RUN, "block5_conv3", 0)  # another layer's: ignored
    write_gallery(str(root))
    shown = embedded(page_path(root, "block1_conv1"))["examples"]
    assert list(shown) == ["4"]
    assert shown["4"]["photos"] == [
        {k: e[k] for k in ("png", "activation", "file")} for e in record["photos"]
    ]
    assert shown["4"]["patches"] == [
        {k: e[k] for k in ("png", "activation", "file", "box")} for e in record["patches"][:1]
    ]
    assert embedded(page_path(root, "block2_conv1"))["examples"] == {}


def test_command_prints_the_overview_and_fails_in_one_line_on_a_missing_root(
    root, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main([str(root)])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"{root / 'index.html'}\n"
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("render.gallery: error: no such folder: ") and err.count("\n") == 1


# --- in a real browser -------------------------------------------------------------------------


def browser_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(f"browser tests need Chromium and Playwright: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh tab; the test fails if the page logs any error or throws."""
    tab = browser.new_page(viewport={"width": 1280, "height": 800})
    tab.set_default_timeout(10_000)
    errors = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    tab.close()
    assert errors == []


def tile_order(page):
    return [
        int(f) for f in page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.filter)")
    ]


def test_run_page_shows_sorts_enlarges_and_links(root, page):
    write_gallery(str(root))
    page.goto(page_path(root, "block1_conv1").as_uri())
    assert tile_order(page) == [0, 1, 2, 3, 4]
    dead = page.locator('.tile[data-filter="3"]')
    assert dead.locator("img").count() == 0 and dead.text_content().startswith("dead")

    page.select_option("#sort-key", "loss_end")
    assert tile_order(page) == [3, 1, 4, 0, 2]
    page.click("#sort-dir")
    assert tile_order(page) == [2, 0, 4, 1, 3]

    page.click('.tile[data-filter="4"]')
    view = page.locator("#view")
    assert view.is_visible()
    assert view.locator("img").get_attribute("src") == "block1_conv1_0004.png"
    assert "loss_end\t2" in view.inner_text()
    page.keyboard.press("Escape")
    assert view.is_hidden()
    page.click('.tile[data-filter="3"]')
    assert view.is_visible() and "dead" in view.text_content()
    view.click()
    assert view.is_hidden()

    page.click('a[rel="next"]')
    page.wait_for_url("**/block2_conv1/**")
    assert tile_order(page) == [0, 1, 2]
    page.select_option("#sort-key", "selectivity")
    assert tile_order(page) == [1, 0, 2]
    page.click("#sort-dir")
    assert tile_order(page) == [0, 1, 2]  # the filter without the metric stays last either way
    page.click('a[rel="index"]')
    page.wait_for_url("**/index.html")
    assert page.locator("a.run").count() == 2


def test_a_page_of_512_filters_renders_quickly(tmp_path, page):
    losses = [1.0 + k % 37 for k in range(512)]
    losses[7] = 0.0
    fake_run(tmp_path, "block5_conv3", losses, dead={7}, size=32)
    write_gallery(str(tmp_path))
    begin = time.perf_counter()
    page.goto(page_path(tmp_path, "block5_conv3").as_uri())
    assert page.locator(".tile").count() == 512
    page.select_option("#sort-key", "loss_end")
    seconds = time.perf_counter() - begin
    assert seconds < 5, f"512 tiles took {seconds:.1f} s to load and sort"
    order = tile_order(page)
    assert sorted(order) == list(range(512)) and order[:3] == [7, 0, 37]


def test_large_view_shows_the_filters_top_photos_and_patches(root, page):
    fake_examples(root / "block1_conv1" / RUN, "block1_conv1", 4, photos=3, patches=2)
    write_gallery(str(root))
    page.goto(page_path(root, "block1_conv1").as_uri())
    page.click('.tile[data-filter="4"]')
    rows = page.locator("#view .examples")
    assert rows.count() == 2
    assert rows.nth(0).locator("h3").text_content().startswith("top photos")
    assert rows.nth(1).locator("h3").text_content().startswith("top patches")
    photos, patches = rows.nth(0).locator("img"), rows.nth(1).locator("img")
    assert photos.count() == 3 and patches.count() == 2
    assert photos.first.get_attribute("src") == "examples/block1_conv1_0004_photo0.png"
    assert photos.first.get_attribute("title") == "photos/photo0.jpg"
    assert patches.first.get_attribute("title") == "photos/patch0.jpg box 0, 2, 5, 7"
    assert rows.nth(0).locator("figcaption").all_text_contents() == ["9.500", "8.500", "7.500"]
    widths = page.eval_on_selector_all(
        "#view .examples img",
        "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth)))",
    )
    assert widths == [96, 96, 96, 64, 64]  # every PNG found and decoded
    last = patches.last.bounding_box()
    assert last["width"] == 72 and last["y"] + last["height"] <= 800  # on screen beside the image
    page.keyboard.press("ArrowRight")  # filter 0 has no examples
    assert rows.count() == 0 and page.locator("#view.with-examples").count() == 0
