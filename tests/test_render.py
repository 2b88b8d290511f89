import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from render.cli import compose_config
from render.files import read_json, read_png
from render.models.preprocess import caffe_preprocess
from render.models.vgg import VGG16
from render.networks import load_params
from render.run import render_layer
from render.settings import make_job, register_resolvers

LAYER = "block2_conv1"  # 8 filters at fixture width
DEAD = 2  # the notop fixture gives this filter a hopeless bias: it can never fire


def job_for(weight_files, root, *overrides):
    register_resolvers()
    cfg = compose_config(
        [
            f"weights={weight_files['keras_notop']}",
            f"output.root={root}",
            f"layer={LAYER}",
            "size=32",
            "progress=false",
            *overrides,
        ]
    )
    return make_job(cfg)


@pytest.fixture(scope="module")
def loaded(weight_files):
    return load_params(weight_files["keras_notop"])


@pytest.fixture(scope="module")
def rendered(weight_files, loaded, tmp_path_factory):
    """All 8 filters of the layer rendered in one batch of 8."""
    job = job_for(weight_files, tmp_path_factory.mktemp("out"), "batch_size=8")
    return job, render_layer(job, loaded, {})


def png_of(job, k):
    return read_png(os.path.join(job.out_dir, f"{job.layer.name}_{k:04d}.png"))


def test_each_image_excites_its_own_filter_most(rendered, loaded):
    """Selectivity, measured on the saved uint8 PNGs read back from disk."""
    job, meta = rendered
    alive = [k for k in range(8) if meta["filters"][str(k)]["status"] == "ok"]
    assert len(alive) >= 6
    images = np.stack([png_of(job, k)[0] for k in alive]).astype(np.float32)
    model = VGG16(width_divisor=16)
    acts = np.asarray(model.apply(loaded, caffe_preprocess(jnp.asarray(images)), upto=LAYER))
    acts = acts.mean(axis=(1, 2))[:, alive]  # (image, filter)
    own = np.diag(acts)
    others = np.where(np.eye(len(alive), dtype=bool), -np.inf, acts).max(axis=0)
    start = np.array([meta["filters"][str(k)]["loss_start"] for k in alive])
    assert (own > start).all()
    assert np.mean(own > others) >= 0.75
    # the metrics stored in the metadata were measured on these same PNGs
    measured = [meta["filters"][str(k)]["activation"] for k in alive]
    np.testing.assert_allclose(measured, own, rtol=1e-4)
    best = [meta["filters"][str(k)]["best_stimulus"] for k in alive]
    assert best == [bool(v) for v in (own >= acts.max(axis=0))]


def test_metadata_records_losses_dead_filter_and_files(rendered):
    job, meta = rendered
    assert meta["key"] == job.key and meta["layer"] == LAYER
    assert "jax" in meta["versions"]
    for k in range(8):
        record = meta["filters"][str(k)]
        assert record["seed"] == 0 and record["filter"] == k
        if k == DEAD:
            assert record["status"] == "dead" and record["file"] is None
            assert record["loss_end"] == 0
            assert not os.path.exists(os.path.join(job.out_dir, f"{LAYER}_{k:04d}.png"))
        else:
            assert record["status"] == "ok" and record["file"] == f"{LAYER}_{k:04d}.png"
            assert record["loss_end"] > record["loss_start"] >= 0
            text = png_of(job, k)[1]
            assert text["render:key"] == job.key and text["render:filter"] == str(k)
    assert read_json(os.path.join(job.out_dir, "metadata.json")) == meta


def test_atlas_and_best_geometry(rendered):
    job, meta = rendered
    atlas, _ = read_png(os.path.join(job.out_dir, "atlas.png"))
    assert atlas.shape == (3 * 32 + 4 * 5, 3 * 32 + 4 * 5, 3)  # 8 tiles: 3x3 grid, margin 5
    r, c = divmod(DEAD, 3)
    y, x = 5 + r * 37, 5 + c * 37
    assert (atlas[y : y + 32, x : x + 32] == 0).all()  # the dead filter's cell is empty
    np.testing.assert_array_equal(atlas[5:37, 5:37], png_of(job, 0)[0])
    best, _ = read_png(os.path.join(job.out_dir, "best.png"))
    assert best.shape == (5 + 37, 7 * 37 + 5, 3)  # 7 live filters in one row of up to 8
    order = sorted(
        (k for k in range(8) if k != DEAD), key=lambda k: -meta["filters"][str(k)]["loss_end"]
    )
    np.testing.assert_array_equal(best[5:37, 5:37], png_of(job, order[0])[0])
    np.testing.assert_array_equal(best[5:37, 42:74], png_of(job, order[1])[0])


def test_filter_alone_equals_filter_in_batch(rendered, weight_files, loaded, tmp_path):
    job, _ = rendered
    alone = job_for(weight_files, tmp_path, "filters=5", "batch_size=1")
    render_layer(alone, loaded, {})
    assert os.path.relpath(alone.out_dir, tmp_path) == os.path.relpath(
        job.out_dir, job.output["root"]
    )
    difference = np.abs(png_of(alone, 5)[0].astype(int) - png_of(job, 5)[0].astype(int))
    assert difference.max() <= 1


def test_same_command_gives_identical_bytes(rendered, weight_files, loaded, tmp_path):
    job, _ = rendered
    again = job_for(weight_files, tmp_path, "batch_size=8")
    render_layer(again, loaded, {})
    for k in range(8):
        if k != DEAD:
            name = f"{LAYER}_{k:04d}.png"
            assert (Path(job.out_dir) / name).read_bytes() == (
                Path(again.out_dir) / name
            ).read_bytes()


def test_python_and_device_loops_agree(rendered, weight_files, loaded, tmp_path):
    job, _ = rendered
    device = job_for(weight_files, tmp_path, "batch_size=8", "loop=device")
    render_layer(device, loaded, {})
    for k in (0, 1, 5):
        difference = np.abs(png_of(device, k)[0].astype(int) - png_of(job, k)[0].astype(int))
        assert difference.max() <= 2


def test_resume_renders_only_what_is_missing(weight_files, loaded, tmp_path):
    first = job_for(weight_files, tmp_path, "filters=0-3", "batch_size=4")
    render_layer(first, loaded, {})
    stamps = {
        k: os.stat(os.path.join(first.out_dir, f"{LAYER}_{k:04d}.png")).st_mtime_ns
        for k in (0, 1, 3)
    }
    corrupt = os.path.join(first.out_dir, f"{LAYER}_0001.png")
    with open(corrupt, "r+b") as f:
        f.truncate(100)
    second = job_for(weight_files, tmp_path, "filters=0-7", "batch_size=4")
    assert second.out_dir == first.out_dir
    meta = render_layer(second, loaded, {})
    assert sorted(int(k) for k in meta["filters"]) == list(range(8))
    for k in (0, 3):  # valid: kept as they were
        assert os.stat(os.path.join(first.out_dir, f"{LAYER}_{k:04d}.png")).st_mtime_ns == stamps[k]
    assert read_png(corrupt) is not None  # damaged: rendered again


def test_different_setting_gets_its_own_folder(weight_files, tmp_path):
    a = job_for(weight_files, tmp_path)
    assert job_for(weight_files, tmp_path, "layer=conv2_1").out_dir == a.out_dir  # alias
    assert job_for(weight_files, tmp_path, "batch_size=3").out_dir == a.out_dir
    for change in ("steps=21", "step_size=0.5", "seed=1", "size=40", "style.noise=10"):
        assert job_for(weight_files, tmp_path, change).out_dir != a.out_dir, change


def diverse_run(weight_files, loaded, root, weight):
    job = job_for(
        weight_files,
        root,
        "layer=conv3_1",
        "filters=0-1",
        "batch_size=2",
        "style.diversity=3",
        f"style.diversity_weight={weight}",
        "steps=30",
        "metrics.measure=false",
    )
    meta = render_layer(job, loaded, {})
    return job, meta


def test_diversity_pushes_a_filters_images_apart(weight_files, loaded, tmp_path):
    """Three images per filter, side by side in its PNG; the penalty makes them less alike."""
    from render.ascent import diversity_penalty

    model = VGG16(width_divisor=16)
    similarity = {}
    for weight in (0.0, 50.0):
        job, meta = diverse_run(weight_files, loaded, tmp_path / str(weight), weight)
        strips = [png_of(job, k)[0] for k in (0, 1)]
        assert strips[0].shape == (32, 3 * 32, 3)
        assert len(meta["filters"]["0"]["losses_end"]) == 3
        images = np.concatenate([s.reshape(32, 3, 32, 3).transpose(1, 0, 2, 3) for s in strips])
        features = model.apply(
            loaded, caffe_preprocess(jnp.asarray(images, jnp.float32)), upto="block2_conv2"
        )
        similarity[weight] = float(diversity_penalty(features, 3).mean())
    assert similarity[50.0] < similarity[0.0] - 0.05
