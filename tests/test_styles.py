"""Parameterizations, transforms and styles, each alone, then each style end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from render.ascent import compile_ascent, gaussian_blur, image_keys
from render.cli import CONF_DIR
from render.models.vgg import VGGNetwork, redirected_relu
from render.objectives import channel_mean
from render.parameterizations import FourierColor, Pixels
from render.styles import build_style, check_style
from render.transforms import RandomAffine

KEYS = image_keys(0, 1, jnp.arange(4))


def style_config(name, **changes):
    cfg = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/style/{name}.yaml"))
    return cfg["style"] | changes, cfg["step_size"]


def test_fourier_parameterization_round_trips():
    par = FourierColor()
    images = par.to_input(par.init(KEYS, 24) * 40)  # a spread of colours and frequencies
    assert images.shape == (4, 24, 24, 3)
    np.testing.assert_allclose(par.to_input(par.from_input(images)), images, atol=2e-3)


def test_fourier_images_are_valid_pixels_with_decaying_spectrum():
    par = FourierColor()
    rgb = np.asarray(par.to_rgb01(par.init(KEYS, 32) * 100))
    assert rgb.min() >= 0 and rgb.max() <= 1
    power = np.abs(np.fft.rfft2(rgb[0, ..., 0] - rgb[0, ..., 0].mean())) ** 2
    assert power[1:4, 1:4].mean() > 10 * power[12:16, 12:16].mean()  # 1/f prior


def test_pixels_start_is_2016_gray_plus_noise():
    images = Pixels().init(KEYS, 8)
    rgb = np.asarray(images)[..., ::-1] + np.array([123.68, 116.779, 103.939])
    assert rgb.min() >= 128 and rgb.max() < 148
    np.testing.assert_array_equal(Pixels().from_input(images), images)  # caffe: pixel units


def test_affine_identity_and_output_size():
    images = jnp.asarray(np.random.default_rng(0).normal(0, 30, (2, 20, 20, 3)), jnp.float32)
    identity = RandomAffine(pad=0, jitter=0, scale=0.0, rotate=0.0)
    np.testing.assert_allclose(identity(images, KEYS[:2]), images, atol=1e-4)
    assert RandomAffine(pad=12, jitter=8).output_size(20) == 36


def test_affine_is_drawn_per_image():
    image = jnp.asarray(np.random.default_rng(1).normal(0, 30, (1, 24, 24, 3)), jnp.float32)
    views = RandomAffine()(jnp.repeat(image, 4, axis=0), KEYS)
    different = [float(jnp.abs(views[i] - views[0]).mean()) for i in range(1, 4)]
    assert min(different) > 1.0


def test_affine_border_reads_mid_gray():
    black = jnp.full((1, 16, 16, 3), -120.0)
    view = RandomAffine(pad=8, jitter=0, scale=0.0, rotate=0.0)(black, KEYS[:1])
    corner = np.asarray(view[0, 0, 0])[::-1] + np.array([123.68, 116.779, 103.939])
    np.testing.assert_allclose(corner, 127.5, atol=1e-3)


def test_blur_keeps_constant_and_smooths_noise():
    flat = jnp.full((1, 8, 8, 3), 5.0)
    np.testing.assert_allclose(gaussian_blur(flat, 1.0), flat, rtol=1e-6)
    noise = jnp.asarray(np.random.default_rng(2).normal(size=(1, 16, 16, 3)), jnp.float32)
    assert float(gaussian_blur(noise, 1.0).std()) < 0.6 * float(noise.std())


def test_redirected_relu_revives_a_silent_unit_only_when_on():
    x = jnp.array([[-1.0, -2.0], [1.0, -1.0]])
    for on, revived in ((1.0, True), (0.0, False)):
        grad = jax.grad(lambda x, on=on: -redirected_relu(x, jnp.float32(on)).sum())(x)
        assert bool((grad[0] != 0).any()) is revived  # image 0 is silent everywhere
        np.testing.assert_array_equal(grad[1], [-1.0, 0.0])  # image 1 fires: plain ReLU


@pytest.fixture(scope="module")
def setup(params):
    model = VGGNetwork(width_divisor=16)
    return {"params": params}, channel_mean(model, "block3_conv1")


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("chollet2016", {}),
        ("olah2017", {}),
        ("chollet2016", {"octaves": 2, "blur_every": 3, "tv_weight": 1.0, "l2_weight": 1.0}),
        ("olah2017", {"octaves": 2, "transforms": None}),
        ("olah2017_256", {}),
        ("fel2023", {"crops": 2}),
        ("fel2023", {"crops": 1, "transparency": False}),
    ],
)
def test_each_style_improves_its_objective(setup, name, changes):
    params, objective = setup
    cfg, step_size = style_config(name, **changes)
    style = build_style(cfg, step_size)
    targets = jnp.arange(4, dtype=jnp.int32)
    keys = image_keys(0, 4, targets)
    ascent = compile_ascent(objective, style, 32, 24, "python", params, targets, keys)
    images, start, end, *alpha = ascent.run(params, targets, keys)
    assert images.shape == (4, 32, 32, 3)
    assert len(alpha) == int(style.transparency)
    assert np.mean(np.asarray(end) > np.asarray(start)) >= 0.75


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"parameterization": "wavelet"},
            "style.parameterization=wavelet is invalid: use pixels, fourier or maco",
        ),
        (
            {"optimizer": "lbfgs"},
            "style.optimizer=lbfgs is invalid: use normalized_sgd, normalized_by_mean_abs, adam or nadam",
        ),
        (
            {"lr_schedule": "step"},
            "style.lr_schedule=step is invalid: use constant, cosine or linear",
        ),
        ({"octaves": 0}, "style.octaves=0 is invalid: use a number from 1 to 8"),
        ({"transforms": {"scale": 2.0}}, "style.transforms.scale=2.0 is invalid"),
        ({"octaves": 4, "octave_scale": 2.0}, "the smallest octave (16 px) leaves no spatial map"),
    ],
)
def test_style_errors(changes, message):
    cfg, _ = style_config("olah2017", **changes)
    assert check_style(cfg, 128, 32).startswith(message)
