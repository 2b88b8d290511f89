"""Deep dream on photos: sizes, the objective going up, octaves, filters and file errors."""

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from fixtures import fixture_params
from PIL import Image

from render.dream import (
    DreamSettings,
    dream,
    dream_files,
    dream_objective,
    expand_inputs,
    minimum_side,
    output_names,
    read_photo,
)
from render.errors import UserError
from render.files import read_png
from render.models.preprocess import caffe_preprocess
from render.models.vgg import VGG16, VGGNetwork

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


def test_dream_files_reports_the_bad_one_and_writes_the_rest(params, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save(folder / "one.png", make_photo(48, 40, seed=2))
    save(folder / "two.jpg", make_photo(48, 40, seed=3))
    (folder / "broken.jpg").write_text("this is text\n")
    settings = DreamSettings(LAYERS, octaves=1, **FAST)
    out_dir = tmp_path / "out"
    results = dream_files(params, NETWORK, expand_inputs(str(folder)), settings, str(out_dir))
    assert [os.path.basename(p) for p, _ in results] == ["broken.jpg", "one.png", "two.jpg"]
    errors = dict(results)
    assert errors[str(folder / "broken.jpg")] == (
        f"{folder / 'broken.jpg'} is not an image: pass a JPEG, PNG, BMP or WebP photo"
    )
    assert errors[str(folder / "one.png")] is None and errors[str(folder / "two.jpg")] is None
    assert sorted(os.listdir(out_dir)) == ["one_dream.png", "two_dream.png"]  # no temporaries
    image, text = read_png(str(out_dir / "one_dream.png"))
    assert image.shape == (48, 40, 3)
    assert text["source"] == str(folder / "one.png")
    assert text["layers"] == '{"block5_conv1": 1.0, "conv4_3": 0.5}' and text["octaves"] == "1"
