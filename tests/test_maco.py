"""style=fel2023 (MACO): the fixed magnitude, the spectrum estimator, the crop schedule, the
transparency map, and the engine's progress and input-gradient accumulation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from render.ascent import compile_ascent, image_keys, make_step
from render.cli import CONF_DIR
from render.models.vgg import VGGNetwork
from render.objectives import channel_mean
from render.parameterizations import Maco
from render.spectrum import estimate, fixed_magnitude, load, resample
from render.styles import build_style, check_style, transparency_map
from render.transforms import RandomCrops

KEYS = image_keys(0, 1, jnp.arange(2))


def maco_style(**changes):
    cfg = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/style/fel2023.yaml"))
    return cfg["style"] | changes, cfg["step_size"]


@pytest.fixture(scope="module")
def setup(params):
    return {"params": params}, channel_mean(VGGNetwork(width_divisor=16), "block3_conv1")


def radial_slope(magnitude: np.ndarray) -> float:
    size = magnitude.shape[0]
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None])
    keep = (f > 2 / size) & (f < 0.35)
    return float(np.polyfit(np.log(f[keep]), np.log(magnitude[keep]), 1)[0])


@pytest.mark.parametrize("power", [1.0, 1.5])
def test_spectrum_estimator_recovers_a_one_over_f_slope(power):
    rng = np.random.default_rng(0)
    size = 64
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None])
    amplitude = 1 / np.maximum(f, 1 / size) ** power
    gray = [
        np.fft.irfft2(np.fft.rfft2(rng.normal(size=(size, size))) * amplitude, s=(size, size))
        for _ in range(24)
    ]
    images = np.stack([np.repeat((g / g.std() * 30 + 128)[..., None], 3, -1) for g in gray])
    spectrum = estimate(images)
    assert spectrum.shape == (64, 33, 3)
    assert radial_slope(spectrum[..., 0]) == pytest.approx(-power, abs=0.1)
    resampled = resample(spectrum, 96)  # the same curve in cycles per pixel at another size
    assert resampled.shape == (96, 49, 3)
    assert radial_slope(resampled[..., 0]) == pytest.approx(-power, abs=0.15)


def test_shipped_spectrum_is_natural():
    spectrum = load()
    assert spectrum.shape == (128, 65, 3) and spectrum.dtype == np.float32
    assert -2.0 < radial_slope(spectrum[..., 0]) < -0.8  # natural photos: about 1/f
    fixed = fixed_magnitude(spectrum, 40)
    assert fixed.shape == (40, 21, 3) and fixed[0, 0].tolist() == [0, 0, 0]


def test_magnitude_is_the_fixed_spectrum_at_every_step(setup):
    """Only the phase moves: |rfft2| of the image's decorrelated signal is the fixed magnitude
    before, during and after an ascent, and the image changes."""
    params, objective = setup
    cfg, step_size = maco_style(crops=2)
    style = build_style(cfg, step_size)
    par = style.parameterization
    targets = jnp.arange(2, dtype=jnp.int32)
    step = jax.jit(make_step(objective, style, steps=6))
    param = par.init(KEYS, 32)
    state = (param, style.optimizer.init(param), jnp.zeros((2, 32, 32)))
    fixed = np.asarray(par.magnitude(32))
    first = np.asarray(par.to_input(param))
    for i in range(6):
        signal = np.asarray(par.signal(state[0]), np.float64)
        magnitude = np.abs(np.fft.rfft2(signal, axes=(1, 2)))
        np.testing.assert_allclose(magnitude, np.broadcast_to(fixed, magnitude.shape), atol=2e-4)
        assert signal.std() == pytest.approx(1.0, rel=1e-3)
        state, _ = step(params, state, targets, KEYS, i)
    assert np.abs(np.asarray(par.to_input(state[0])) - first).mean() > 1.0


def test_maco_round_trip_keeps_phase():
    par = Maco()
    param = par.init(KEYS, 24)
    images = par.to_input(param)
    again = par.to_input(par.from_input(images))  # a projection: same magnitude, same phase
    assert float(jnp.abs(again - images).mean()) < 1.0  # pixel levels (the start's phases)


def test_crop_schedule_shrinks_from_max_to_min():
    crops = RandomCrops(crops=3, crop_max=0.9, crop_min=0.3, noise=0.0)
    assert float(crops.crop_size(0.0)) == pytest.approx(0.9)
    assert float(crops.crop_size(1.0)) == pytest.approx(0.3)
    assert float(crops.crop_size(0.5)) == pytest.approx(0.6)
    images = jnp.asarray(np.random.default_rng(0).normal(0, 30, (2, 16, 16, 3)), jnp.float32)
    views = crops(images, KEYS, 1.0)
    assert views.shape == (6, 16, 16, 3)  # image-major: 3 crops of image 0, then of image 1
    whole = RandomCrops(1, 1.0, 1.0, noise=0.0, centre_std=0.0, size_std=0.0)
    np.testing.assert_allclose(whole(images, KEYS, 0.0), images, atol=1e-3)  # the whole image


def test_engine_gives_transforms_the_run_progress(setup):
    """The step passes i / (steps - 1): 0 at the first step, 1 at the last."""
    params, objective = setup
    seen = []

    class Spy:
        def __call__(self, images, keys, fraction):
            jax.debug.callback(lambda f: seen.append(float(f)), fraction)
            return images

    cfg, step_size = maco_style(crops=0)
    style = build_style(cfg, step_size)
    style = type(style)(**{**style.__dict__, "transform": Spy(), "transparency": False})
    targets = jnp.arange(2, dtype=jnp.int32)
    ascent = compile_ascent(objective, style, 16, 5, "python", params, targets, KEYS)
    ascent.run(params, targets, KEYS)
    jax.effects_barrier()
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_transparency_map_shape_and_range(setup):
    params, objective = setup
    cfg, step_size = maco_style(crops=2)
    style = build_style(cfg, step_size)
    targets = jnp.arange(2, dtype=jnp.int32)
    ascent = compile_ascent(objective, style, 32, 4, "python", params, targets, KEYS)
    images, start, end, accumulated = ascent.run(params, targets, KEYS)
    assert images.shape == (2, 32, 32, 3) and accumulated.shape == (2, 32, 32)
    assert float(accumulated.min()) >= 0 and float(accumulated.max()) > 0
    alpha = transparency_map(np.asarray(accumulated[0]))
    assert alpha.shape == (32, 32) and alpha.dtype == np.uint8
    assert alpha.min() == 0 and alpha.max() == 255
    assert transparency_map(np.ones((4, 4))).max() == 0  # a flat map: no division by zero


def test_observe_reads_the_runs_intermediate_images(setup):
    params, objective = setup
    cfg, step_size = maco_style(crops=1, transparency=False)
    style = build_style(cfg, step_size)
    targets = jnp.arange(2, dtype=jnp.int32)
    ascent = compile_ascent(objective, style, 16, 5, "python", params, targets, KEYS)
    seen = {}
    images, *_ = ascent.run(params, targets, KEYS, observe=seen.__setitem__, every=2)
    assert sorted(seen) == [2, 4, 5]
    np.testing.assert_array_equal(seen[5], images)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"octaves": 2}, "parameterization maco keeps its magnitude fixed"),
        ({"crop_min": 0.9, "crop_max": 0.5}, "style.crop_min is larger than style.crop_max"),
        ({"spectrum": "/nowhere/x.txt"}, "style.spectrum=/nowhere/x.txt is invalid"),
        (
            {"optimizer": "sgd"},
            "style.optimizer=sgd is invalid: use normalized_sgd, normalized_by_mean_abs, adam or nadam",
        ),
        ({"transforms": {"pad": 1}}, "style.crops and style.transforms are two kinds of views"),
    ],
)
def test_maco_style_errors(changes, message):
    cfg, _ = maco_style(**changes)
    assert check_style(cfg, 128, 32).startswith(message)


def test_spectrum_from_a_folder_of_photos(tmp_path, setup):
    from PIL import Image

    photo = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert check_style(maco_style(spectrum=str(tmp_path))[0], 64, 8) is None
    spectrum = load(str(tmp_path))
    assert spectrum.shape == (128, 65, 3)
    params, objective = setup
    cfg, step_size = maco_style(spectrum=str(tmp_path), crops=1)
    style = build_style(cfg, step_size)
    assert style.parameterization.magnitude(16).shape == (16, 9, 3)


def test_compare_trace_records_time_to_quality(weight_files, tmp_path, capsys):
    from render.compare import main

    table = tmp_path / "table.json"
    main(
        [
            "--layers",
            "block2_conv1",
            "--filters",
            "0-2",
            "--styles",
            "fel2023 steps=5 style.crops=1;olah2017 steps=6",
            "--trace",
            "--every",
            "2",
            "--ratio",
            "0.5",
            "--trace-dir",
            str(tmp_path / "traces"),
            "--json",
            str(table),
            "--",
            f"weights={weight_files['keras_notop']}",
            "size=32",
            f"output.root={tmp_path / 'out'}",
        ]
    )
    out = capsys.readouterr().out
    assert "steps to beat" in out and "robustness" in out
    import json

    rows = json.loads(table.read_text())
    assert [(r["style"], r["steps"]) for r in rows] == [
        ("fel2023 steps=5 style.crops=1", 5),
        ("olah2017 steps=6", 6),
    ]
    for row in rows:
        trace = row["trace"]
        assert trace["2"]["status"] == "dead"  # the fixture's dead filter
        steps = [s for s, _ in trace["0"]["trajectory"]]
        assert steps == ([2, 4, 5] if row["steps"] == 5 else [2, 4, 6])
        assert row["seconds_per_filter"] > 0 and 0 <= row["reached_beat"] <= 1
        final = trace["0"]["trajectory"][-1][1]
        assert final == pytest.approx(trace["0"]["ratio_to_natural"], rel=1e-4)
        assert (tmp_path / "traces" / "block2_conv1").is_dir()
    assert not (tmp_path / "out").exists()  # a trace writes nothing into run folders


def test_fel2023_saves_its_transparency_beside_each_image(weight_files, tmp_path):
    from PIL import Image
    from test_render import job_for

    from render.networks import load_params
    from render.run import render_layer

    job = job_for(
        weight_files, tmp_path, "style=fel2023", "steps=4", "filters=0-2", "output.alpha=true"
    )
    meta = render_layer(job, load_params(weight_files["keras_notop"]), {})
    assert meta["filters"]["2"]["status"] == "dead"  # no image, no map
    for k in (0, 1):
        name = meta["filters"][str(k)]["file"][:-4]
        with Image.open(os.path.join(job.out_dir, f"{name}_alpha.png")) as alpha:
            assert alpha.mode == "L" and alpha.size == (32, 32)
            assert alpha.getextrema() == (0, 255)
        with Image.open(os.path.join(job.out_dir, f"{name}_rgba.png")) as rgba:
            assert rgba.mode == "RGBA" and rgba.size == (32, 32)
        assert "robustness" in meta["filters"][str(k)]
    assert not os.path.exists(os.path.join(job.out_dir, "block2_conv1_0002_alpha.png"))
