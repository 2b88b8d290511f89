"""Class-logit maximization with the fully connected top (random-top fixture weights)."""

import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import run_main
from test_render import job_for

from render.ascent import image_keys
from render.files import read_png
from render.metrics import channel_means
from render.models.vgg import VGG16, VGGNetwork
from render.networks import load_params
from render.parameterizations import Pixels
from render.run import render_layer


@pytest.fixture(scope="module")
def rendered(weight_files, tmp_path_factory):
    params = load_params(weight_files["keras"], need_top=True)
    job = job_for(
        {"keras_notop": weight_files["keras"]},
        tmp_path_factory.mktemp("cls"),
        "objective=class",
        "classes=[65, magpie, 7]",
        "size=auto",
        "steps=10",
        "batch_size=3",
    )
    return job, params, render_layer(job, params, {})


def test_class_job_uses_the_top_at_224(rendered):
    job, _, meta = rendered
    assert job.size == 224 and job.layer.name == "predictions" and job.filters == [7, 18, 65]
    assert "/classes/" in job.out_dir
    assert meta["filters"]["65"]["class_name"] == "sea snake"
    assert meta["filters"]["18"]["class_name"] == "magpie"


def test_chosen_logit_rises_more_than_the_others(rendered):
    job, params, meta = rendered
    model = VGG16(width_divisor=16)
    classes = np.array([7, 18, 65])
    start = Pixels().init(image_keys(job.seed, job.layer.index, jnp.asarray(classes)), 224)
    before = np.asarray(model.apply(params, start, upto="predictions"))
    files = [f"{job.out_dir}/{meta['filters'][str(k)]['file']}" for k in classes]
    images = np.stack([read_png(f)[0] for f in files])
    after = channel_means(
        params, VGGNetwork(width_divisor=16), "predictions", images
    )  # measured on the saved PNGs
    rise = after - before
    for row, k in enumerate(classes):
        record = meta["filters"][str(k)]
        assert record["loss_end"] > record["loss_start"] + 5
        assert rise[row, k] > np.percentile(np.delete(rise[row], k), 99)  # far above the others
    assert sum(meta["filters"][str(k)]["top_class"] == k for k in classes) >= 2


def test_softmax_output_option(weight_files, tmp_path):
    params = load_params(weight_files["keras"], need_top=True)
    job = job_for(
        {"keras_notop": weight_files["keras"]},
        tmp_path,
        "objective=class",
        "classes=65",
        "size=auto",
        "steps=5",
        "class_output=softmax",
    )
    meta = render_layer(job, params, {})
    record = meta["filters"]["65"]
    assert 0 <= record["loss_start"] < record["loss_end"] <= 1  # probabilities


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["objective=class", "classes=sea snek"],
            "unknown class 'sea snek': did you mean sea snake",
        ),
        (
            ["objective=class", "classes=1000"],
            "classes: index 1000 is out of range: valid classes are 0-999",
        ),
        (
            ["objective=class", "size=128"],
            "objective=class needs size=224 (the fully connected top's input) or size=auto",
        ),
        (
            ["objective=class", "class_output=prob"],
            "class_output=prob is invalid: use logit or softmax",
        ),
    ],
)
def test_class_input_errors(weight_files, tmp_path, monkeypatch, capsys, args, message):
    code, err = run_main(
        monkeypatch, capsys, [f"weights={weight_files['keras']}", f"output.root={tmp_path}", *args]
    )
    assert code == 2 and err.startswith("render: error: " + message), err
    assert list(tmp_path.iterdir()) == []


def test_notop_weights_for_a_class_objective(weight_files, tmp_path, monkeypatch, capsys):
    code, err = run_main(
        monkeypatch,
        capsys,
        [f"weights={weight_files['keras_notop']}", f"output.root={tmp_path}", "objective=class"],
    )
    assert code == 2
    assert "has no fully connected top (a notop file); this objective needs the full file" in err
