"""Dataset examples (render.examples): top-k bookkeeping, receptive fields, collection, command."""

import json
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from render.examples import (
    STATE,
    TopK,
    collect,
    field_square,
    find_layer,
    fit,
    load_state,
    main,
    new_state,
    save_state,
    shipped_photos,
)
from render.models.vgg import VGGNetwork
from render.models.weights import load_weights

SIDE = 32  # block2_conv1 sees an 16x16 map, block3_conv1 an 8x8 map


@pytest.fixture(scope="module")
def network():
    return VGGNetwork(width_divisor=16)


@pytest.fixture(scope="module")
def fixture_weights(weight_files):
    return load_weights(weight_files["keras"], need_top=True)[0]


def random_photos(count, seed=0):
    """Photos of assorted sizes and aspect ratios, so resizing and cropping are exercised."""
    rng = np.random.default_rng(seed)
    shapes = [(40, 52), (32, 32), (64, 48), (36, 90), (50, 50)]
    return [
        (f"photo{i}", rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8))
        for i in range(count)
    ]


class CountingNetwork:
    """The network, counting how often its features are traced."""

    def __init__(self, network):
        self.network, self.calls = network, 0

    def __getattr__(self, name):
        return getattr(self.network, name)

    def features(self, *args, **kwargs):
        self.calls += 1
        return self.network.features(*args, **kwargs)


def test_receptive_field_of_block5_conv3_by_hand():
    layer = find_layer(VGGNetwork(), "block5_conv3")
    # 13 same-padded 3x3 convolutions and 4 2x2 poolings: the field grows by 2 * stride per
    # convolution and by stride per pooling: 1 + 2*2*1 + 1 + 2*2*2 + 2 + 3*2*4 + 4 + 3*2*8 + 8
    # + 3*2*16 = 196, stride 16. Each pooling moves position 0's centre by half its input
    # stride: 0.5 + 1 + 2 + 4 = 7.5.
    assert (layer.stride, layer.field, layer.start) == (16, 196, 7.5)
    # position 7 of the 14x14 map of a 224 px image: centre 7.5 + 7 * 16 = 119.5, +-98
    assert layer.box(7, 7, (224, 224)) == (22, 22, 218, 218)
    # corner (0, 0): centre 7.5, the field [-90, 106) clipped at the border to [0, 106)
    assert layer.box(0, 0, (224, 224)) == (0, 0, 106, 106)
    assert field_square(layer, 0, 0) == (-90, -90, 106, 106)
    # corner (13, 13): centre 215.5, [118, 314) clipped to [118, 224)
    assert layer.box(13, 13, (224, 224)) == (118, 118, 224, 224)


@pytest.mark.parametrize("per_channel_ids", [False, True])
def test_topk_over_batches_equals_a_full_sort_with_ties(per_channel_ids):
    rng = np.random.default_rng(3)
    count, channels, k = 37, 6, 4
    values = rng.integers(0, 4, (count, channels)).astype(np.float32)  # many ties
    ids = np.arange(count)
    if per_channel_ids:  # e.g. photo * positions + position, as for patches
        ids = ids[:, None] * 100 + rng.integers(0, 100, (count, channels))
    top = TopK(channels, k)
    for first in range(0, count, 5):
        top.update(values[first : first + 5], ids[first : first + 5])
    for c in range(channels):
        column = ids[:, c] if per_channel_ids else ids
        order = np.lexsort((column, -values[:, c]))[:k]  # highest first, ties: lower id
        np.testing.assert_array_equal(top.values[c], values[order, c])
        np.testing.assert_array_equal(top.ids[c], column[order])


def test_topk_keeps_empty_slots_when_fewer_items_than_k():
    top = TopK(2, 4)
    top.update(np.array([[1.0, np.nan], [2.0, -5.0]]), np.array([7, 3]))
    np.testing.assert_array_equal(top.ids, [[3, 7, -1, -1], [3, 7, -1, -1]])
    assert top.values[1, 0] == -5.0 and top.values[1, 1] == -np.inf


def test_collect_ranks_by_directly_recomputed_activations(network, fixture_weights):
    photos = random_photos(10)
    filters, k = [0, 3, 5], 3
    counting = CountingNetwork(network)
    result = collect(counting, fixture_weights, photos, "block3_conv1", filters, k, 4, SIDE)
    assert counting.calls == 2  # one shape probe, one compilation for all three batches

    pixels = np.stack([fit(rgb, SIDE) for _, rgb in photos]).astype(np.float32)
    maps = np.asarray(
        network.features(fixture_weights, network.convention.to_input(pixels), "block3_conv1")
    )[..., filters]
    means, maxima = maps.mean(axis=(1, 2)), maps.max(axis=(1, 2))
    layer = find_layer(network, "block3_conv1")
    assert result["layer"] == "block3_conv1" and result["photos_seen"] == 10
    assert result["size"] == SIDE and result["unreadable"] == []
    for column, f in enumerate(filters):
        record = result["filters"][str(f)]
        best = int(np.argmax(means[:, column]))
        assert record["photos"][0]["file"] == f"photo{best}"
        expected = np.sort(means[:, column])[::-1][:k]
        got = [entry["activation"] for entry in record["photos"]]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

        patch = record["patches"][0]
        strongest = int(np.argmax(maxima[:, column]))
        assert patch["file"] == f"photo{strongest}"
        np.testing.assert_allclose(patch["activation"], maxima[strongest, column], rtol=1e-4)
        y, x = np.unravel_index(np.argmax(maps[strongest, ..., column]), maps.shape[1:3])
        assert patch["position"] == [y, x]
        assert patch["box"] == list(layer.box(y, x, (SIDE, SIDE)))
        assert record["photos"][0]["png"] == f"examples/block3_conv1_{f:04d}_photo0.png"
        assert patch["png"] == f"examples/block3_conv1_{f:04d}_patch0.png"


def test_dense_head_ranks_photos_by_logit_only(network, fixture_weights):
    photos = random_photos(3, seed=1)
    result = collect(network, fixture_weights, photos, "predictions", [1, 65], k=2, batch=2)
    pixels = np.stack([fit(rgb, 224) for _, rgb in photos]).astype(np.float32)
    logits = np.asarray(
        network.features(fixture_weights, network.convention.to_input(pixels), "predictions")
    )
    assert result["size"] == 224
    for f in (1, 65):
        record = result["filters"][str(f)]
        assert "patches" not in record
        assert record["photos"][0]["file"] == f"photo{int(np.argmax(logits[:, f]))}"
        np.testing.assert_allclose(record["photos"][0]["activation"], logits[:, f].max(), 1e-4)


def test_an_interrupted_collection_resumes_where_it_stopped(network, fixture_weights, tmp_path):
    photos = random_photos(9, seed=2) + [("broken", None)]
    args = ("block2_conv1", [0, 1, 2], 3, 2, SIDE)
    whole = collect(network, fixture_weights, photos, *args)
    assert whole["unreadable"] == ["broken"] and whole["photos_seen"] == 9

    path, state = str(tmp_path / STATE), new_state(find_layer(network, args[0]), 3, 3, "key")

    def stopping(items, after):
        for i, item in enumerate(items):
            if i == after:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        collect(
            network,
            fixture_weights,
            stopping(photos, 7),
            *args,
            state=state,
            checkpoint=lambda s: save_state(path, s),
            every=1,
        )
    saved = load_state(path, "key")
    assert saved.seen == 4  # two batches merged and saved; the third was still in flight
    assert load_state(path, "other photos") is None
    read = []
    rest = ((read.append(name), (name, rgb))[1] for name, rgb in photos[saved.seen :])
    resumed = collect(network, fixture_weights, rest, *args, state=saved)
    assert read == [name for name, _ in photos[4:]]  # nothing read twice
    assert resumed == whole


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def fake_networks(monkeypatch, network, fixture_weights):
    """render.networks.load_network answering with the fixture network."""

    def load_network(cfg, need_top=False, read=True):
        return types.SimpleNamespace(network=network, params=fixture_weights if read else None)

    try:
        import render.networks as module
    except ImportError:  # not written yet
        module = types.ModuleType("render.networks")
        monkeypatch.setitem(sys.modules, "render.networks", module)
    monkeypatch.setattr(module, "load_network", load_network, raising=False)


def photo_folder(root):
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, (name, rgb) in enumerate(random_photos(5, seed=4)):
        suffix = ".png" if i % 2 else ".jpg"
        Image.fromarray(rgb).save(folder / ("sub" if i == 4 else "") / f"{name}{suffix}")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    (folder / "notes.txt").write_text("not a photo either")
    return folder


def command(tmp_path, weight_files, *extra):
    return [
        "layer=block2_conv1",
        "filters=0-2",
        "examples.k=2",
        "examples.size=32",
        "examples.batch=2",
        f"output.root={tmp_path / 'out'}",
        f"weights={weight_files['keras_notop']}",
        "progress=false",
        *extra,
    ]


def test_command_writes_examples_and_resumes(tmp_path, weight_files, fake_networks, capsys):
    folder = photo_folder(tmp_path)
    main([str(folder), *command(tmp_path, weight_files)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("6 new photos (0 done before, 1 unreadable) in ")
    path = out[-1]
    assert path.endswith("/examples.json") and path.startswith(
        str(tmp_path / "out" / "block2_conv1")
    )
    run = os.path.dirname(path)
    with open(path) as f:
        examples = json.load(f)
    assert examples["layer"] == "block2_conv1" and examples["model"] == "vgg16"
    assert examples["photos_seen"] == 5
    assert examples["unreadable"] == [str(folder / "broken.jpg")]
    assert sorted(examples["filters"]) == ["0", "1", "2"]
    for record in examples["filters"].values():
        assert len(record["photos"]) == 2 and len(record["patches"]) == 2
        for entry in record["photos"] + record["patches"]:
            assert os.path.isfile(entry["file"]) and entry["file"].startswith(str(folder))
            with Image.open(os.path.join(run, entry["png"])) as img:
                assert img.size == ((64, 64) if "box" in entry else (96, 96))
        x0, y0, x1, y1 = record["patches"][0]["box"]
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        activations = [e["activation"] for e in record["photos"]]
        assert activations == sorted(activations, reverse=True)
    assert os.path.isfile(os.path.join(run, STATE))
    png = os.path.join(run, examples["filters"]["0"]["patches"][0]["png"])
    written = os.stat(png).st_mtime_ns

    main([str(folder), *command(tmp_path, weight_files)])
    assert capsys.readouterr().out.splitlines()[0].startswith("0 new photos (6 done before, ")
    with open(path) as f:
        assert json.load(f) == examples
    assert os.stat(png).st_mtime_ns == written  # unchanged examples are not written again


def test_command_defaults_to_the_shipped_photos(tmp_path, weight_files, fake_networks, capsys):
    names, read = shipped_photos()
    assert len(names) == 35 and read(names[-1]).shape == (128, 128, 3)
    main(command(tmp_path, weight_files, "filters=1"))
    with open(capsys.readouterr().out.splitlines()[-1]) as f:
        examples = json.load(f)
    assert examples["photos_seen"] == 35
    assert examples["filters"]["1"]["photos"][0]["file"].startswith("reference_crops.jpg#")


@pytest.mark.parametrize(
    ("folder", "message"),
    [("missing", "no such folder: "), ("empty", "no photos (.jpg, ")],
)
def test_command_bad_folder_is_one_line(
    tmp_path, weight_files, fake_networks, capsys, folder, message
):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / folder), *command(tmp_path, weight_files)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"render: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_command_with_the_real_network_loader(tmp_path, weight_files, capsys):
    pytest.importorskip("render.networks", reason="render.networks is not written yet")
    main([*command(tmp_path, weight_files), "filters=0"])
    with open(capsys.readouterr().out.splitlines()[-1]) as f:
        assert json.load(f)["photos_seen"] == 35
