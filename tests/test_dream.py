"""Deep dream on photos: sizes, the objective going up, octaves, filters and file errors; the
run folder (metadata, resume, atlas, gallery, overview)."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures import fixture_params
from PIL import Image

import render.dream
from render.dream import (
    DreamSettings,
    dream,
    dream_objective,
    expand_inputs,
    minimum_side,
    output_names,
    read_photo,
)
from render.errors import UserError
from render.files import read_png
from render.gallery import write_gallery
from render.models.preprocess import caffe_preprocess
from render.models.vgg import VGG16, VGGNetwork
from render.overview import build, parse_args
from render.run import render_dreams
from render.settings import DreamJob
from render.styles import OPTIMIZERS
from render.transforms import RandomRoll

MODEL = VGG16(width_divisor=16)
NETWORK = VGGNetwork(width_divisor=16)
LAYERS = {"block5_conv1": 1.0, "conv4_3": 0.5}  # a Keras name and a 2016 alias
FAST = {"steps": 4, "step_size": 0.02}


@pytest.fixture(scope="module")
def params():
    return {"params": fixture_params(top=False)}


def make_photo(height=48, width=40, seed=0) -> np.ndarray:
    """Smooth colour gradients plus noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    smooth = np.stack([200 * y + 30, 180 * x + 40, 120 * (x + y) + 20], axis=-1)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def reference_objective(params, photo, layers=None, filters=None) -> float:
    """The dream loss computed independently: one network pass per layer via `upto`."""
    x = caffe_preprocess(jnp.asarray(photo, jnp.float32))[None]
    total = 0.0
    names = {"conv4_3": "block4_conv3"}
    for layer, weight in (layers or {}).items():
        a = MODEL.apply(params, x, upto=names.get(layer, layer))
        total += weight * float(jnp.mean(jnp.square(a)))
    for layer, chosen in (filters or {}).items():
        a = MODEL.apply(params, x, upto=layer)[..., np.asarray(chosen)]
        total += float(jnp.mean(jnp.square(a)))
    return total


def save(path, image: np.ndarray) -> str:
    Image.fromarray(image).save(path)
    return str(path)


@pytest.mark.parametrize("octaves", [3, 1])
def test_dream_keeps_size_and_raises_objective(params, octaves):
    photo = make_photo(48, 40)
    settings = DreamSettings(LAYERS, octaves=octaves, **FAST)
    out, losses = dream(params, NETWORK, photo, settings)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - photo).mean() > 1.0
    before = reference_objective(params, photo, LAYERS)
    assert dream_objective(params, NETWORK, photo, settings) == pytest.approx(before, rel=1e-4)
    assert reference_objective(params, out, LAYERS) > 2 * before
    assert len(losses["start"]) == len(losses["end"]) == octaves
    assert losses["shape"][-1] == (48, 40)
    assert [h for h, _ in losses["shape"]] == sorted(h for h, _ in losses["shape"])
    assert all(end > start for start, end in zip(losses["start"], losses["end"], strict=True))
    assert losses["steps"] == [4] * octaves


def test_dream_takes_float_photos_and_stops_at_the_loss_ceiling(params):
    photo = make_photo(48, 40)
    settings = DreamSettings(LAYERS, octaves=1, max_loss=0.0, **FAST)
    out, losses = dream(params, NETWORK, photo.astype(np.float32), settings)
    assert losses["steps"] == [0]  # the very first loss is above the ceiling
    np.testing.assert_array_equal(out, photo)


def test_filters_mode_with_jitter(params):
    photo = make_photo(40, 56, seed=1)
    filters = {"block4_conv1": [1, 5]}
    settings = DreamSettings({}, filters=filters, octaves=1, jitter=3, **FAST)
    out, losses = dream(params, NETWORK, photo, settings)
    assert out.shape == photo.shape
    before = reference_objective(params, photo, filters=filters)
    assert dream_objective(params, NETWORK, photo, settings) == pytest.approx(before, rel=1e-4)
    assert reference_objective(params, out, filters=filters) > 2 * before


def test_minimum_size_is_exact(params, tmp_path):
    settings = DreamSettings({"block5_conv1": 1.0}, octaves=2, steps=1)
    assert minimum_side(settings, NETWORK) == 23  # 23 / 1.4 -> 16 px: one block5 pixel; 22 -> 15
    out, losses = dream(params, NETWORK, make_photo(23, 24), settings)
    assert out.shape == (23, 24, 3) and losses["shape"][0] == (16, 17)
    assert minimum_side(DreamSettings({"block5_conv1": 1.0}, octaves=3), NETWORK) == 32
    assert minimum_side(DreamSettings({"conv3_1": 1.0}, octaves=1), NETWORK) == 4
    path = save(tmp_path / "small.png", make_photo(22, 60))
    with pytest.raises(UserError) as err:
        read_photo(path, settings, network=NETWORK)
    message = str(err.value)
    assert path in message and "at least 23 px" in message and "60x22" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="at least 23 px"):
        dream(params, NETWORK, make_photo(22, 60), settings)


def test_read_photo_errors(tmp_path):
    with pytest.raises(UserError) as err:
        read_photo(str(tmp_path / "nope.jpg"))
    assert str(err.value) == f"photo not found: {tmp_path / 'nope.jpg'}: check the path"
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n")
    with pytest.raises(UserError) as err:
        read_photo(str(text))
    assert str(err.value) == f"{text} is not an image: pass a JPEG, PNG, BMP or WebP photo"
    truncated = tmp_path / "cut.png"
    whole = save(tmp_path / "whole.png", make_photo())
    truncated.write_bytes(Path(whole).read_bytes()[:200])
    with pytest.raises(UserError, match="cut.png") as err:
        read_photo(str(truncated))
    assert "\n" not in str(err.value)


def test_read_photo_formats(tmp_path):
    photo = make_photo(30, 20)
    np.testing.assert_array_equal(read_photo(save(tmp_path / "a.png", photo)), photo)
    jpeg = read_photo(save(tmp_path / "a.jpg", photo))
    assert jpeg.shape == (30, 20, 3) and np.abs(jpeg.astype(int) - photo).mean() < 12
    rgba = np.concatenate([photo, np.full((30, 20, 1), 128, np.uint8)], axis=-1)
    np.testing.assert_array_equal(read_photo(save(tmp_path / "rgba.png", rgba)), photo)
    gray = read_photo(save(tmp_path / "gray.png", photo[..., 0]))
    assert gray.shape == (30, 20, 3)
    assert read_photo(str(tmp_path / "a.png"), max_side=10).shape == (10, 7, 3)


def test_bad_settings_are_user_errors(params):
    photo = make_photo()
    cases = {
        "unknown layer 'block4_conv9'": DreamSettings({"block4_conv9": 1.0}),
        "layer fc1 is fully connected: deep dream takes a conv layer": DreamSettings({"fc1": 1.0}),
        "filter 32 is out of range for block4_conv3: it has filters 0..31": DreamSettings(
            {}, filters={"conv4_3": [0, 32]}
        ),
        "no layer to dream with": DreamSettings({}),
        "octaves must be": DreamSettings(LAYERS, octaves=0),
    }
    for expected, settings in cases.items():
        with pytest.raises(UserError, match=expected):
            dream(params, NETWORK, photo, settings)


def test_expand_inputs(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()
    assert expand_inputs(str(folder)) == [str(folder / n) for n in ("a.JPG", "b.png", "c.webp")]
    assert expand_inputs(str(folder / "notes.txt")) == [str(folder / "notes.txt")]
    assert expand_inputs(str(folder / "*.png")) == [str(folder / "b.png")]
    with pytest.raises(UserError, match="no file matches"):
        expand_inputs(str(folder / "*.gif"))
    with pytest.raises(UserError, match="no such file or folder"):
        expand_inputs(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no photos"):
        expand_inputs(str(tmp_path / "empty"))


def test_output_names_never_collide():
    paths = ["x/cat.png", "y/cat.jpg", "dog.png", "cat.bmp"]
    assert output_names(paths) == [
        "cat_dream.png",
        "cat_2_dream.png",
        "dog_dream.png",
        "cat_3_dream.png",
    ]


def dream_job(settings, photos, out_dir, key="key-1") -> DreamJob:
    return DreamJob(
        settings,
        [str(p) for p in photos],
        NETWORK,
        "fp32",
        None,
        str(out_dir),
        key=key,
        progress=False,
    )


def test_a_bad_photo_is_reported_and_the_rest_written_with_metadata(params, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save(folder / "one.png", make_photo(48, 40, seed=2))
    save(folder / "two.jpg", make_photo(40, 56, seed=3))
    (folder / "broken.jpg").write_text("this is text\n")
    settings = DreamSettings(LAYERS, octaves=2, **FAST)
    out_dir = tmp_path / "out"
    job = dream_job(settings, expand_inputs(str(folder)), out_dir)
    results = render_dreams(job, params, {"objective": "dream"})
    assert [os.path.basename(p) for p, _ in results] == ["broken.jpg", "one.png", "two.jpg"]
    errors = dict(results)
    assert errors[str(folder / "broken.jpg")] == (
        f"{folder / 'broken.jpg'} is not an image: pass a JPEG, PNG, BMP or WebP photo"
    )
    assert errors[str(folder / "one.png")] is None and errors[str(folder / "two.jpg")] is None
    names = sorted(os.listdir(out_dir))
    assert names == [".lock", "atlas.png", "metadata.json", "one_dream.png", "two_dream.png"]
    image, text = read_png(str(out_dir / "one_dream.png"))
    assert image.shape == (48, 40, 3) and read_png(str(out_dir / "two_dream.png"))[0].shape == (
        40,
        56,
        3,
    )
    assert text["render:source"] == str(folder / "one.png") and text["render:key"] == "key-1"
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["key"] == "key-1" and meta["kind"] == "dream" and meta["schema"] == 2
    assert meta["dream"]["layers"] == LAYERS and meta["dream"]["octaves"] == 2
    records = {r["source"]: r for r in meta["filters"].values()}
    broken = records[str(folder / "broken.jpg")]
    assert (
        broken["status"] == "error" and broken["file"] is None and "not an image" in broken["error"]
    )
    one = records[str(folder / "one.png")]
    assert one["status"] == "ok" and one["file"] == "one_dream.png" and one["size"] == [48, 40]
    assert [o["shape"] for o in one["octaves"]] == [[34, 28], [48, 40]]
    assert all(o["loss_end"] > o["loss_start"] and o["steps"] == 4 for o in one["octaves"])
    assert one["loss_start"] == one["octaves"][0]["loss_start"]
    assert one["loss_end"] == one["octaves"][-1]["loss_end"]
    assert sorted(r["filter"] for r in records.values()) == [0, 1, 2]


def test_the_same_dream_again_does_nothing_and_a_changed_photo_is_dreamed_again(
    params, tmp_path, monkeypatch
):
    photos = [save(tmp_path / "a.png", make_photo(40, 40)), save(tmp_path / "b.png", make_photo())]
    settings = DreamSettings(LAYERS, octaves=1, **FAST)
    out_dir = tmp_path / "out"
    assert render_dreams(dream_job(settings, photos, out_dir), params, {}) == [
        (p, None) for p in photos
    ]
    before = {n: os.stat(out_dir / n).st_mtime_ns for n in ("a_dream.png", "b_dream.png")}
    metadata = (out_dir / "metadata.json").read_text()

    def no_dreaming(*args, **kwargs):
        raise AssertionError("dreamed again")

    monkeypatch.setattr(render.dream, "dream", no_dreaming)
    assert render_dreams(dream_job(settings, photos, out_dir), params, {}) == [
        (p, None) for p in photos
    ]
    after = {n: os.stat(out_dir / n).st_mtime_ns for n in ("a_dream.png", "b_dream.png")}
    assert after == before
    assert (
        json.loads((out_dir / "metadata.json").read_text())["filters"]
        == json.loads(metadata)["filters"]
    )
    monkeypatch.undo()
    # a changed photo is dreamed again; another photo joins the folder with the next number
    save(tmp_path / "a.png", make_photo(40, 40, seed=5))
    os.utime(tmp_path / "a.png", ns=(1, 1))
    (tmp_path / "sub").mkdir()
    moved = save(tmp_path / "sub" / "a.png", make_photo(40, 40))
    render_dreams(dream_job(settings, [photos[0], moved], out_dir), params, {})
    meta = json.loads((out_dir / "metadata.json").read_text())
    files = {r["source"]: (r["filter"], r["file"]) for r in meta["filters"].values()}
    assert files == {
        photos[0]: (0, "a_dream.png"),
        photos[1]: (1, "b_dream.png"),
        moved: (2, "a_2_dream.png"),
    }
    assert os.stat(out_dir / "a_dream.png").st_mtime_ns != before["a_dream.png"]
    assert os.stat(out_dir / "b_dream.png").st_mtime_ns == before["b_dream.png"]
    # other settings (another run key): the records start anew
    render_dreams(dream_job(settings, photos[1:], out_dir, key="key-2"), params, {})
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["key"] == "key-2" and list(meta["filters"]) == ["0"]


def test_gallery_and_overview_show_a_dream_run(params, tmp_path):
    root = tmp_path / "outputs"
    photos = [
        save(tmp_path / "wide.png", make_photo(32, 56)),
        save(tmp_path / "tall.png", make_photo()),
    ]
    settings = DreamSettings(LAYERS, octaves=1, steps=2, step_size=0.02)
    job = dream_job(settings, photos, root / "dream" / "run-1")
    job = DreamJob(**{**job.__dict__, "output": {"labels": True, "label_kind": "both"}})
    render_dreams(job, params, {})
    atlas = np.asarray(Image.open(root / "dream" / "run-1" / "atlas.png"))
    assert atlas.shape[0] > 48 and atlas.shape[1] > 2 * 56  # two cells as large as the largest
    written = write_gallery(str(root))
    page = (root / "dream" / "run-1" / "index.html").read_text()
    assert str(root / "dream" / "run-1" / "index.html") in written
    assert "wide_dream.png" in page and "tall_dream.png" in page
    assert "run-1" in (root / "index.html").read_text()
    assert "1 layers" in build(parse_args([str(root)]))
    assert (root / "overview.png").exists()


def test_normalized_by_mean_abs_is_the_keras_step():
    g = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4, 3)), jnp.float32)
    g = g.at[1].multiply(100.0)
    optimizer = OPTIMIZERS["normalized_by_mean_abs"](0.5)
    updates, _ = optimizer.update(g, optimizer.init(g), g)
    expected = -0.5 * g / jnp.mean(jnp.abs(g), axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(updates, expected, rtol=1e-6)


def test_roll_jitter_rolls_each_image_and_its_gradient_back():
    images = jnp.arange(2 * 6 * 5 * 3, dtype=jnp.float32).reshape(2, 6, 5, 3)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=images.shape), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    roll = RandomRoll(2)
    rolled = roll(images, keys)
    grad = jax.grad(lambda x: jnp.sum(roll(x, keys) * weights))(images)
    for b in range(2):  # each image is a whole roll of itself, at most 2 pixels each way
        (shift,) = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(rolled[b], jnp.roll(images[b], (dy, dx), axis=(0, 1)))
        ]
        back = jnp.roll(weights[b], (-shift[0], -shift[1]), axis=(0, 1))
        np.testing.assert_array_equal(grad[b], back)  # in the image's own frame


def test_max_loss_stops_an_octave_midway(params):
    photo = make_photo(48, 40)
    free = DreamSettings(LAYERS, octaves=1, steps=6, step_size=0.02)
    _, losses = dream(params, NETWORK, photo, free)
    ceiling = (losses["start"][0] + losses["end"][0]) / 2
    capped = DreamSettings(LAYERS, octaves=1, steps=6, step_size=0.02, max_loss=ceiling)
    _, capped_losses = dream(params, NETWORK, photo, capped)
    assert 0 < capped_losses["steps"][0] < 6
    assert capped_losses["start"] == losses["start"]
    assert ceiling < capped_losses["end"][0] < losses["end"][0]
