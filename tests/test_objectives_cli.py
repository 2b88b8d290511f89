"""Objective expressions on one engine: objectives=, interpolate=, init=, caricature=."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from test_cli import files_below, run_cli, run_main

import render.run as run_module
from render import algebra
from render.ascent import compile_ascent, image_keys
from render.cli import compose_config
from render.files import read_png
from render.models.network import CONVENTIONS
from render.models.vgg import VGGNetwork
from render.networks import load_params
from render.objectives import channel_mean
from render.run import objective_labels, photo_input, render_layer, render_objectives
from render.settings import prepare, register_resolvers
from render.styles import build_style

POINT_1 = [
    "block4_conv3:12",
    "block4_conv3:12 + block4_conv3:30",
    "-block4_conv3:12",
    "0.5*block5_conv1:7@center - block4_conv3:30",
    "block4_conv3",
    "class:65",
    "class:sea snake",
]
# eight different sums of two neurons (units alive at the centre from the fixture's gray start)
PAIRS = [(5, 3, 0.5), (6, 5, 1), (8, 7, 0.25), (9, 12, 2), (12, 14, 0.5), (13, 15, 1)]
PAIRS += [(5, 12, 1.5), (6, 3, 0.75)]
SUMS = [f"block3_conv1:{a}@center + {w}*block3_conv2:{b}@center" for a, b, w in PAIRS]


def as_list(expressions):
    return "[" + ", ".join(f'"{e}"' for e in expressions) + "]"


def job_of(weights, root, *overrides):
    register_resolvers()
    cfg = compose_config(
        [f"weights={weights}", f"output.root={root}", "size=32", "progress=false", *overrides]
    )
    return prepare(cfg)


@pytest.fixture(scope="module")
def loaded(weight_files):
    return load_params(weight_files["keras"], need_top=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    y, x = np.mgrid[0:60, 0:80]
    pixels = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_point_1_command_renders_each_expression_and_resumes(weight_files, tmp_path):
    args = [
        f"objectives={as_list(POINT_1)}",
        f"weights={weight_files['keras']}",
        f"output.root={tmp_path}",
        "steps=2",
        "progress=false",
        "output.labels=true",
        "output.label_kind=objective",
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    (folder,) = (tmp_path / "objectives").iterdir()  # size=auto: 224, the head is read
    assert folder.name.startswith("chollet2016-224px-seed0-")
    names = set(os.listdir(folder))
    pngs = [f"objective_{i:04d}.png" for i in range(len(POINT_1))]
    assert set(pngs) | {"metadata.json", "atlas.png", "index.html", "render.log"} <= names
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["objectives"] == POINT_1 and meta["kind"] == "objectives"
    assert meta["model"] == "vgg16" and meta["layer"] == "predictions"
    assert meta["layer_index"] == VGGNetwork().layers[-1].index
    assert meta["settings"]["objectives"] == POINT_1 and "jax" in meta["versions"]
    for i, expression in enumerate(POINT_1):
        record = meta["filters"][str(i)]
        assert record["objective"] == expression and record["file"] == pngs[i]
        assert record["status"] == "ok"  # no lone channel stayed at zero here
        assert np.isfinite([record["loss_start"], record["loss_end"]]).all()
        image, text = read_png(str(folder / pngs[i]))
        assert image.shape == (224, 224, 3)
        assert text["render:objective"] == expression and text["render:key"] == meta["key"]
    # five structures: two channel stacks share one, the class logits another
    assert first.stdout.count("of one structure to render") == 5
    assert "objectives/" + folder.name in (tmp_path / "index.html").read_text()
    stamps = {name: (folder / name).stat().st_mtime_ns for name in pngs}
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "7 of 7 objectives already rendered" in second.stdout
    assert "to render" not in second.stdout
    assert stamps == {name: (folder / name).stat().st_mtime_ns for name in pngs}


def test_labels_show_the_expressions(weight_files, tmp_path):
    job = job_of(weight_files["keras"], tmp_path, f"objectives={as_list(SUMS[:2])}")
    records = {"0": {"loss_end": 12.5}, "1": {"loss_end": 3.0}}
    assert objective_labels(job, records, "objective") == SUMS[:2]
    assert objective_labels(job, records, "index") == SUMS[:2]
    assert objective_labels(job, records, "loss") == ["12.5", "3"]
    assert objective_labels(job, records, "both") == [f"{SUMS[0]}: 12.5", f"{SUMS[1]}: 3"]


def test_a_heterogeneous_batch_equals_each_objective_alone(weight_files, loaded, tmp_path):
    compiled = []
    real = run_module.compile_ascent

    def counting(*args, **kwargs):
        compiled.append(len(args[6]))  # the batch's targets
        return real(*args, **kwargs)

    together = job_of(
        weight_files["keras"], tmp_path / "batch", f"objectives={as_list(SUMS)}", "batch_size=8"
    )
    run_module.compile_ascent = counting
    try:
        batch = render_objectives(together, loaded, {})
    finally:
        run_module.compile_ascent = real
    assert compiled == [8]  # one compiled program for the eight different sums
    alone = job_of(
        weight_files["keras"], tmp_path / "alone", f"objectives={as_list(SUMS)}", "batch_size=1"
    )
    single = render_objectives(alone, loaded, {})
    for i in range(len(SUMS)):
        a, b = batch["filters"][str(i)], single["filters"][str(i)]
        assert a["status"] == "ok" and a["loss_end"] > a["loss_start"] > 0
        pixels_a = read_png(os.path.join(together.out_dir, a["file"]))[0].astype(int)
        pixels_b = read_png(os.path.join(alone.out_dir, b["file"]))[0].astype(int)
        assert np.abs(pixels_a - pixels_b).max() <= 1, i


def test_interpolation_is_one_batch_from_one_start_with_a_strip(weight_files, loaded, tmp_path):
    seen = []
    real = run_module.compile_ascent

    def watching(*args, **kwargs):
        seen.append(np.asarray(jax.random.key_data(args[7])))  # the batch's keys
        return real(*args, **kwargs)

    job = job_of(
        weight_files["keras"],
        tmp_path,
        'interpolate=["block3_conv1:5", "block3_conv1:9"]',
        "frames=8",
        "steps=10",
    )
    assert job.out_dir.startswith(str(tmp_path / "interpolate"))
    run_module.compile_ascent = watching
    try:
        meta = render_objectives(job, loaded, {})
    finally:
        run_module.compile_ascent = real
    (keys,) = seen  # one batch ...
    assert len(keys) == 8 and (keys == keys[0]).all()  # ... of frames from one shared start
    terms = job.objectives[0].terms
    assert isinstance(terms[-1], algebra.Alignment) and terms[-1].layer == "block3_conv1"
    assert job.alignment == 0.1  # the default weight
    frames = [read_png(os.path.join(job.out_dir, f"frame_{i:04d}.png"))[0] for i in range(8)]
    strip, _ = read_png(os.path.join(job.out_dir, "interpolation.png"))
    np.testing.assert_array_equal(strip, np.concatenate(frames, axis=1))
    assert strip.shape == (32, 8 * 32, 3)
    assert meta["filters"]["0"]["objective"] == "1*(block3_conv1:5) + 0*(block3_conv1:9)"
    assert meta["interpolate"] == ["block3_conv1:5", "block3_conv1:9"]
    frames = np.stack(frames).astype(float)
    neighbours = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(7)]
    assert max(neighbours) < np.abs(frames[-1] - frames[0]).mean()


def test_init_photo_with_a_large_weight_stays_close_to_it(weight_files, loaded, tmp_path, photo):
    rgb = CONVENTIONS["caffe"].to_rgb(photo_input(photo, 32, CONVENTIONS["caffe"]))
    distance, records = {}, {}
    for weight in (0, 1e6):
        job = job_of(
            weight_files["keras"],
            tmp_path / str(weight),
            f"init={photo}",
            f"init_weight={weight}",
            "layer=block3_conv1",
            "filters=5",
            "steps=20",
            "style.display=direct",
            "metrics.measure=false",
        )
        meta = render_layer(job, loaded, {})
        records[weight] = record = meta["filters"]["5"]
        assert meta["init"] == photo and meta["init_weight"] == weight
        image = read_png(os.path.join(job.out_dir, record["file"]))[0]
        distance[weight] = np.abs(image - np.clip(np.round(rgb), 0, 255)).mean()
    assert distance[1e6] < 1 < 5 < distance[0]  # pixel levels
    # both start from the photo itself: the same loss at the start
    assert records[0]["loss_start"] == records[1e6]["loss_start"]
    network = VGGNetwork(width_divisor=16)
    on_photo = channel_mean(network, "block3_conv1")(
        loaded,
        jnp.asarray(photo_input(photo, 32, CONVENTIONS["caffe"]))[None],
        jnp.asarray([5]),
    )
    np.testing.assert_allclose(records[0]["loss_start"], float(on_photo[0]), rtol=1e-5)


def test_init_photo_changes_the_run_key(weight_files, tmp_path, photo):
    plain = job_of(weight_files["keras"], tmp_path, "layer=block3_conv1")
    started = job_of(weight_files["keras"], tmp_path, "layer=block3_conv1", f"init={photo}")
    pulled = job_of(
        weight_files["keras"], tmp_path, "layer=block3_conv1", f"init={photo}", "init_weight=2"
    )
    assert len({plain.out_dir, started.out_dir, pulled.out_dir}) == 3
    assert plain.init is None and started.init == photo


def test_caricature_raises_the_agreement_with_the_photo(weight_files, loaded, tmp_path, photo):
    job = job_of(
        weight_files["keras"],
        tmp_path,
        f"caricature={photo}",
        "layer=block3_conv1",
        "steps=20",
        "style.display=direct",
        "caricature_cosine=1",
    )
    assert job.out_dir.startswith(str(tmp_path / "caricature"))
    meta = render_objectives(job, loaded, {})
    record = meta["filters"]["0"]
    assert meta["caricature"] == photo and record["status"] == "ok"
    assert record["loss_end"] > 2 * record["loss_start"] > 0
    # measured again on the saved PNG against the photo's own activations
    network, convention = VGGNetwork(width_divisor=16), CONVENTIONS["caffe"]
    start = photo_input(photo, 32, convention)
    target = network.features(loaded, jnp.asarray(start)[None], "block3_conv1")[0]
    objective = algebra.match("block3_conv1", np.asarray(target), 1.0)
    saved = read_png(os.path.join(job.out_dir, record["file"]))[0].astype(np.float32)
    images = jnp.asarray(np.stack([start, convention.to_input(saved)]))
    before, after = np.asarray(algebra.evaluate(network, loaded, objective, images))
    assert after > 2 * before > 0


@pytest.mark.parametrize("octaves", [1, 2])
def test_loss_start_is_the_objective_on_the_untransformed_initial_image(loaded, octaves):
    cfg = dict(compose_config(["style=olah2017"]).style)
    cfg.update(octaves=octaves, redirect_steps=0)
    style = build_style(cfg, 0.05)
    network = VGGNetwork(width_divisor=16)
    objective = channel_mean(network, "block3_conv1")
    targets = jnp.arange(3, dtype=jnp.int32)
    keys = image_keys(0, 4, targets)
    ascent = compile_ascent(objective, style, 32, 4, "python", loaded, targets, keys)
    _, start, _ = ascent.run(loaded, targets, keys)[:3]
    first = style.octave_plan(32, 4)[0][0]
    initial = style.parameterization.to_input(style.parameterization.init(keys, first))
    if first != 32:
        initial = jax.image.resize(initial, (3, 32, 32, 3), "linear")
    np.testing.assert_allclose(start, objective(loaded, initial, targets), rtol=1e-5, atol=1e-6)


def test_a_malformed_expression_is_one_line_and_writes_nothing(
    weight_files, tmp_path, monkeypatch, capsys
):
    code, err = run_main(
        monkeypatch,
        capsys,
        [
            'objectives=["block4_conv3:12", "block4_conv3:x"]',
            f"weights={weight_files['keras']}",
            f"output.root={tmp_path}",
        ],
    )
    assert code == 2
    assert err == (
        'render: error: objective "block4_conv3:x" at column 14: expected a channel number '
        "after ':', found 'x'\n"
    )
    assert files_below(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (['objectives=["block4_conv3:40"]'], "channel 40 is out of range: block4_conv3 has"),
        (
            ['objectives=["class:65"]', "size=128"],
            "objectives= reading the fully connected top (class:, fc1, fc2) needs size=224",
        ),
        (['interpolate=["block4_conv3:1"]'], "interpolate= takes two objectives, not 1"),
        (
            ['objectives=["fc1:3@center"]'],
            'objective "fc1:3@center": fc1 is fully connected: a neuron (@) needs',
        ),
        (["init=/nonexistent/photo.jpg"], "init=/nonexistent/photo.jpg: photo not found"),
        (
            ['objectives=["block4_conv3:1"]', "output.label_kind=name"],
            "output.label_kind=name is invalid: use index, loss, both or objective",
        ),
    ],
)
def test_objective_input_errors(weight_files, tmp_path, monkeypatch, capsys, args, message):
    code, err = run_main(
        monkeypatch, capsys, [f"weights={weight_files['keras']}", f"output.root={tmp_path}", *args]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("render: error: ") and message in err, err
    assert files_below(tmp_path) == []
