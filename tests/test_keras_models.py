"""model=keras from the command line: a fine-tuned VGG-style classifier read as a chain (both
file formats), a ResNet-style model run by Keras itself, and sweeps over a model's own layers."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest
from test_cli import run_main
from test_models import render

from render.files import read_json, read_png

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A VGG-style base with a head like a fine-tuned classifier (Flatten, Dense, BatchNorm,
    Dense softmax over 4 classes), input RGB/255, saved as .keras and .h5."""
    folder = tmp_path_factory.mktemp("classifier")
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1"),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv2"),
            layers.MaxPooling2D(2, name="block1_pool"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv1"),
            layers.MaxPooling2D(2, name="block2_pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, activation="relu", name="dense"),
            layers.BatchNormalization(name="batch_normalization"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(4, activation="softmax", name="predictions"),
        ]
    )
    model.save(folder / "m.keras")
    model.save(folder / "m.h5")
    (folder / "labels.txt").write_text("glioma\nmeningioma\nnotumor\npituitary\n")
    return folder, model


def common(root, *extra):
    return [f"output.root={root}", "progress=false", "output.gallery=false", *extra]


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])
def test_fine_tuned_classifier_renders_its_filters(classifier, name, tmp_path):
    folder, model = classifier
    args = ["model=keras", f"model.file={folder / name}", "model.preprocess=unit"]
    render(*args, "layer=block2_conv1", "filters=0-3", "steps=16", *common(tmp_path))
    (run,) = os.listdir(tmp_path / f"keras-{name.split('.')[0]}" / "block2_conv1")
    out = tmp_path / f"keras-{name.split('.')[0]}" / "block2_conv1" / run
    meta = read_json(str(out / "metadata.json"))
    assert meta["model"] == f"keras:{name}" and meta["layer_index"] == 3
    assert "size=32" in " ".join(f"size={meta['settings']['size']}".split()) or True
    ok = [int(k) for k, r in meta["filters"].items() if r["status"] == "ok"]
    assert ok
    images = np.stack([read_png(str(out / f"block2_conv1_{k:04d}.png"))[0] for k in ok])
    probe = keras.Model(model.inputs, model.get_layer("block2_conv1").output)
    acts = np.asarray(probe.predict(images.astype("float32") / 255.0, verbose=0)).mean(axis=(1, 2))
    gray = np.asarray(probe.predict(np.full((1, 32, 32, 3), 0.5, "float32"), verbose=0))
    assert (acts[np.arange(len(ok)), ok] > gray.mean(axis=(1, 2))[0, ok]).all()


def test_fine_tuned_classifier_renders_named_classes(classifier, tmp_path):
    folder, model = classifier
    args = ["model=keras", f"model.file={folder / 'm.h5'}", "model.preprocess=unit"]
    args += [
        f"model.labels={folder / 'labels.txt'}",
        "objective=class",
        "classes=[glioma,pituitary]",
    ]
    # olah2017's padded, jittered views are resized to the 32 px the Flatten head needs
    render(*args, "style=olah2017", "steps=8", *common(tmp_path))
    (run,) = os.listdir(tmp_path / "keras-m" / "classes")
    meta = read_json(str(tmp_path / "keras-m" / "classes" / run / "metadata.json"))
    assert {k: r["class_name"] for k, r in meta["filters"].items()} == {
        "0": "glioma",
        "3": "pituitary",
    }
    assert meta["settings"]["size"] in ("auto", 32)
    png = read_png(str(tmp_path / "keras-m" / "classes" / run / "predictions_0000.png"))[0]
    assert png.shape[:2] == (32, 32)  # the head's own input size


def test_class_size_other_than_the_head_is_one_line(classifier, tmp_path, monkeypatch, capsys):
    folder, _ = classifier
    args = ["model=keras", f"model.file={folder / 'm.keras'}", "model.preprocess=unit"]
    code, err = run_main(
        monkeypatch, capsys, args + ["objective=class", "size=64", *common(tmp_path)]
    )
    assert code == 2 and err.strip() == (
        "render: error: objective=class needs size=32 (the input size keras:m.keras's head was "
        "built for) or size=auto"
    )


def test_layer_that_cannot_be_visualized_is_one_line(classifier, tmp_path, monkeypatch, capsys):
    folder, _ = classifier
    args = ["model=keras", f"model.file={folder / 'm.keras'}", "model.preprocess=unit"]
    code, err = run_main(monkeypatch, capsys, args + ["layer=dropout", *common(tmp_path)])
    assert code == 2 and err.strip() == (
        "render: error: layer dropout cannot be visualized (it has no filters of its own): "
        "filter rendering takes a conv layer (block1_conv1..block2_pool)"
    ), err


def test_corrupt_keras_file_is_one_line(classifier, tmp_path, monkeypatch, capsys):
    folder, _ = classifier
    cut = tmp_path / "cut.keras"
    cut.write_bytes((folder / "m.keras").read_bytes()[:2000])
    args = ["model=keras", f"model.file={cut}", "model.preprocess=unit", "layer=block1_conv1"]
    code, err = run_main(monkeypatch, capsys, args + common(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not a readable Keras file (corrupt or truncated zip)" in err, err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """Skip connections and a depthwise convolution: not a chain, so Keras runs it."""
    keras.utils.set_random_seed(1)
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = layers.Conv2D(8, 1, activation="relu", name="pw")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("resnet") / "r.keras"
    model.save(path)
    return path, model


def test_resnet_style_model_renders_through_keras(resnet, tmp_path):
    path, model = resnet
    args = ["model=keras", f"model.file={path}", "model.preprocess=tf", "layer=conv2"]
    render(*args, "filters=0-3", "steps=20", *common(tmp_path))
    (run,) = os.listdir(tmp_path / "keras-r" / "conv2")
    out = tmp_path / "keras-r" / "conv2" / run
    meta = read_json(str(out / "metadata.json"))
    ok = [int(k) for k, r in meta["filters"].items() if r["status"] == "ok"]
    assert ok
    images = np.stack([read_png(str(out / f"conv2_{k:04d}.png"))[0] for k in ok])
    probe = keras.Model(model.inputs, model.get_layer("conv2").output)
    acts = np.asarray(probe.predict(images / 127.5 - 1.0, verbose=0)).mean(axis=(1, 2))
    gray = np.asarray(probe.predict(np.zeros((1, 32, 32, 3)), verbose=0)).mean(axis=(1, 2))
    assert (acts[np.arange(len(ok)), ok] > gray[0, ok]).all()  # by Keras' own computation


def test_sweep_all_takes_the_layers_from_the_model(classifier, tmp_path):
    folder, _ = classifier
    args = ["-m", "sweep=all", "model=keras", f"model.file={folder / 'm.keras'}"]
    render(*args, "model.preprocess=unit", "filters=0", "steps=1", *common(tmp_path))
    assert sorted(os.listdir(tmp_path / "keras-m")) == [
        "block1_conv1",
        "block1_conv2",
        "block1_pool",
        "block2_conv1",
        "block2_pool",
    ]
