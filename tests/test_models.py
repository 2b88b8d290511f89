"""Networks other than VGG16 through the one model interface: VGG19, a Flax module of the user's."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures import write_keras
from test_cli import REPO, run_main

from render.files import read_json, read_png
from render.models.network import CONVENTIONS
from render.models.vgg import VGGNetwork
from render.models.weights import random_params


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory):
    """Tiny VGG19 weights (width / 16) in the Keras notop layout."""
    params = {k: dict(v) for k, v in random_params(3, 16, False, "vgg19")["params"].items()}
    path = tmp_path_factory.mktemp("vgg19") / "vgg19_notop.h5"
    vgg16_names = {
        f"block{b}_conv{c}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for c in range(1, n + 1)
    }
    write_keras(
        path,
        {k: v for k, v in params.items() if k in vgg16_names},
        extra_layers={k: v for k, v in params.items() if k not in vgg16_names},
    )
    return str(path), params


def render(*args):
    """python -m render in a fresh process, with tests/ importable (for flax_nets)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    done = subprocess.run(
        [sys.executable, "-m", "render", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def conv_chain(params, blocks, x, upto):
    """VGG by hand with lax.conv: the reference the Flax model is held to."""
    for b, repeats in enumerate(blocks, 1):
        if b > 1:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        for c in range(1, repeats + 1):
            p = params[f"block{b}_conv{c}"]
            x = jax.lax.conv_general_dilated(
                x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            x = jax.nn.relu(x + p["bias"])
            if f"block{b}_conv{c}" == upto:
                return x
    raise AssertionError(upto)


def test_vgg19_layers_and_activations_equal_a_plain_convolution_chain(vgg19_file):
    _, params = vgg19_file
    network = VGGNetwork("vgg19", width_divisor=16)
    names = [layer.name for layer in network.layers]
    assert names[:10] == [
        "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
        "block3_conv2", "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2",
    ]  # fmt: skip
    assert len(names) == 19 and network.layers[15].alias == "conv5_4"
    images = jnp.asarray(np.random.default_rng(0).normal(0, 30, (2, 32, 32, 3)), jnp.float32)
    for layer in ("block3_conv4", "block5_conv4"):
        got = network.features({"params": params}, images, layer)
        want = conv_chain(params, (2, 2, 4, 4, 4), images, layer)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-3)


def test_vgg19_renders_with_its_alias_into_its_own_folder(vgg19_file, tmp_path):
    path, _ = vgg19_file
    args = ["model=vgg19", f"weights={path}", "layer=conv5_4", "filters=0-1", "size=32"]
    render(*args, "steps=3", f"output.root={tmp_path}", "progress=false", "output.gallery=false")
    (run,) = os.listdir(tmp_path / "vgg19" / "block5_conv4")
    meta = read_json(str(tmp_path / "vgg19" / "block5_conv4" / run / "metadata.json"))
    assert meta["model"] == "vgg19" and meta["layer_index"] == 15
    assert sorted(meta["filters"]) == ["0", "1"]


def test_vgg16_weights_given_to_vgg19_is_one_line(weight_files, tmp_path, monkeypatch, capsys):
    args = ["model=vgg19", f"weights={weight_files['keras_notop']}", "layer=block5_conv4"]
    code, err = run_main(monkeypatch, capsys, args + [f"output.root={tmp_path}"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no layer 'block3_conv4': not complete VGG19 weights" in err, err
    assert os.listdir(tmp_path) == []


def flax_args(tmp_path, *extra):
    return [
        "model=flax",
        "model.factory=flax_nets:build",
        "model.input_size=32",
        "steps=24",
        f"output.root={tmp_path}",
        "progress=false",
        "output.gallery=false",
        *extra,
    ]


def test_own_flax_module_renders_images_that_excite_their_filters(tmp_path):
    from flax_nets import build

    render(*flax_args(tmp_path, "layer=conv2", "filters=0-3"))
    folder = tmp_path / "flax-build" / "conv2"
    (run,) = os.listdir(folder)
    meta = read_json(str(folder / run / "metadata.json"))
    ok = [int(k) for k, r in meta["filters"].items() if r["status"] == "ok"]
    assert len(ok) >= 3
    module, params, _ = build()
    images = np.stack([read_png(str(folder / run / f"conv2_{k:04d}.png"))[0] for k in ok])
    x = CONVENTIONS["unit"].to_input(images.astype(np.float32))
    _, state = module.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
    acts = np.asarray(state["intermediates"]["conv2"]["__call__"][0]).mean(axis=(1, 2))[:, ok]
    gray = CONVENTIONS["unit"].to_input(np.full((1, 32, 32, 3), 128.0, np.float32))
    _, state = module.apply(params, gray, capture_intermediates=True, mutable=["intermediates"])
    on_gray = np.asarray(state["intermediates"]["conv2"]["__call__"][0]).mean(axis=(1, 2))[0, ok]
    assert (np.diag(acts) > on_gray).all()  # each image drives its filter above a gray image


def test_own_flax_module_class_names_from_a_labels_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("glioma\nmeningioma\npituitary\n")
    args = flax_args(tmp_path / "out", "objective=class", "classes=[glioma,pituitary]")
    render(*args, f"model.labels={labels}", "steps=2")
    folder = tmp_path / "out" / "flax-build" / "classes"
    (run,) = os.listdir(folder)
    meta = read_json(str(folder / run / "metadata.json"))
    assert {k: r["class_name"] for k, r in meta["filters"].items()} == {
        "0": "glioma",
        "2": "pituitary",
    }


BAD_MODELS = {
    "labels count": (
        ["objective=class", "model.labels={labels2}"],
        "render: error: model.labels={labels2} has 2 names but the model's head (logits) has 3 "
        "classes: give one name per class",
    ),
    "unknown layer": (
        ["layer=conv9"],
        "render: error: unknown layer 'conv9': did you mean conv2 or conv1? valid layers are "
        "conv1..conv2, logits",
    ),
    "not a spatial layer": (
        ["layer=logits"],
        "render: error: layer logits is fully connected: filter rendering takes a conv layer "
        "(conv1..conv2)",
    ),
    "unknown class": (
        ["objective=class", "classes=glioma"],
        "render: error: class 'glioma' needs class names: this model's head has 3 classes and no "
        "labels; give indices 0-2 or model.labels=labels.txt",
    ),
    "factory": (
        ["model.factory=flax_nets:missing"],
        "render: error: model.factory=flax_nets:missing: flax_nets has no function missing",
    ),
    "precision": (
        ["layer=conv2", "precision=bf16"],
        "render: error: precision=bf16 is for model=vgg16 or vgg19: use fp32",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    labels2 = tmp_path / "two.txt"
    labels2.write_text("a\nb\n")
    args, message = BAD_MODELS[case]
    args = [a.format(labels2=labels2) for a in args]
    code, err = run_main(monkeypatch, capsys, flax_args(tmp_path / "out", *args))
    assert code == 2 and err.strip() == message.format(labels2=labels2), err
    assert not (tmp_path / "out").exists()


def test_keras_model_needs_its_input_convention(tmp_path, monkeypatch, capsys):
    args = ["model=keras", "model.file=m.keras", f"output.root={tmp_path}"]
    code, err = run_main(monkeypatch, capsys, args)
    assert code == 2
    assert err.strip() == (
        "render: error: model=keras needs model.preprocess: caffe, tf, torch or unit (RGB/255); "
        "a model file does not record how its training images were scaled"
    )


@pytest.mark.parametrize(
    ("overrides", "folder"),
    [  # folders that render wrote before models could be chosen: VGG16 runs keep them
        ([], "block5_conv2/chollet2016-128px-seed0-59e82029"),
        (["layer=conv3_1", "size=64", "seed=3"], "block3_conv1/chollet2016-64px-seed3-f2b9db9a"),
        (["objective=class", "classes=65"], "classes/chollet2016-224px-seed0-876e8ba3"),
        (
            ["weights=random", "layer=block1_conv2", "style.diversity=3"],
            "block1_conv2/chollet2016-128px-seed0-3a6fd0f8",
        ),
    ],
)
def test_vgg16_runs_keep_their_folders(overrides, folder):
    from render.cli import compose_config
    from render.settings import register_resolvers, run_dir

    register_resolvers()
    assert run_dir(compose_config(overrides)) == folder
