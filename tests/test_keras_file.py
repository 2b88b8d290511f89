"""Keras model files read without Keras and run as JAX chains, checked against Keras itself."""

import io
import os
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras")
layers = keras.layers
# Keras' numpy conversions of its own variables trip numpy 2's __array__(copy=) deprecation
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from render.models.keras_file import (  # noqa: E402
    KerasFileError,
    NotAChainError,
    load_keras_file,
    read_keras_file,
)


def _randomize_batch_norms(model, rng):
    for layer in _flat(model):
        if isinstance(layer, layers.BatchNormalization):
            values = []
            for weight in layer.weights:
                shape = weight.shape
                if "variance" in weight.name:
                    values.append(rng.uniform(0.5, 2.0, shape))
                elif "gamma" in weight.name:
                    values.append(rng.uniform(-1.5, 1.5, shape))
                else:
                    values.append(rng.normal(0, 0.5, shape))
            layer.set_weights([v.astype("float32") for v in values])


def _flat(model):
    """The model's layers in order, nested models flattened, input layers left out."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat(layer)
        elif not isinstance(layer, layers.InputLayer):
            yield layer


def _keras_outputs(model, images):
    """Every layer's output as Keras computes it (inference mode), and the logits of a final
    softmax Dense."""
    outputs, x = {}, images
    for layer in _flat(model):
        before, x = x, layer(x, training=False)
        outputs[layer.name] = np.asarray(x)
        if isinstance(layer, layers.Dense) and layer.activation.__name__ == "softmax":
            kernel, bias = layer.get_weights()
            outputs[layer.name] = np.asarray(before) @ kernel + bias
    return outputs


def _classifier():
    """A small fine-tuned-VGG-like classifier: convolutions, folded and standalone batch norms,
    pooling, padding, a flatten and a dense head with dropout and a softmax."""
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling"),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1"),
            layers.Conv2D(8, 3, padding="same", name="block1_conv2"),
            layers.BatchNormalization(name="block1_bn"),
            layers.Activation("relu", name="block1_relu"),
            layers.MaxPooling2D(name="block1_pool"),
            layers.Conv2D(6, 3, strides=2, activation="elu", name="block2_conv1"),
            layers.BatchNormalization(scale=False, name="block2_bn"),
            layers.AveragePooling2D(3, strides=1, padding="same", name="block2_avg"),
            layers.ZeroPadding2D(1, name="pad"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, name="fc1"),
            layers.BatchNormalization(center=False, name="fc1_bn"),
            layers.ReLU(name="fc1_relu"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(12, activation="relu", name="fc2"),
            layers.Dense(5, activation="softmax", name="predictions"),
        ]
    )


def _nested():
    """A Sequential around a Functional conv base, as a model fine-tuned from VGG16 would be."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="block1_pool")(x)
    x = layers.Conv2D(6, 3, name="block2_conv1")(x)
    base = keras.Model(inputs, x, name="base")
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            base,
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(3, name="logits"),
        ]
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_models")
    rng = np.random.default_rng(0)
    built = {"classifier": _classifier(), "nested": _nested()}
    built["base"] = built["nested"].layers[0]
    _randomize_batch_norms(built["classifier"], rng)
    for name, model in built.items():
        model.save(folder / f"{name}.keras")
        model.save(folder / f"{name}.h5")
    return folder, built


def _images(size, count=3, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _close(ours, theirs):
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("model", ["classifier", "nested", "base"])
@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_features_match_keras(models, model, suffix):
    folder, built = models
    network, params = load_keras_file(folder / f"{model}.{suffix}", "unit")
    size = network.input_size
    images = _images(size)
    expected = _keras_outputs(built[model], images)
    assert [layer.name for layer in network.layers] == list(expected)
    for layer in network.layers:
        _close(network.features(params, jnp.asarray(images), layer.name), expected[layer.name])


def test_layer_table(models):
    folder, _ = models
    network, _ = load_keras_file(folder / "classifier.keras", "caffe", labels=list("abcde"))
    table = {layer.name: layer for layer in network.layers}
    assert network.name == "keras:classifier.keras"
    assert (network.input_size, network.fixed_size, network.head) == (32, True, "predictions")
    assert network.convention.name == "caffe" and network.labels == tuple("abcde")
    hidden = {name for name, layer in table.items() if not layer.visualizable}
    assert hidden == {"rescaling", "block1_bn", "flatten", "fc1_bn", "dropout"}
    assert table["block1_conv2"].alias == "conv1_2" and table["fc1"].alias is None
    assert [table[n].kind for n in ("block1_pool", "flatten", "fc1")] == [
        "conv",
        "flatten",
        "dense",
    ]
    assert (table["block1_pool"].channels, table["flatten"].channels) == (8, 9 * 9 * 6)
    assert (table["block1_pool"].stride, table["block1_pool"].field) == (2, 6)
    assert (table["block2_conv1"].stride, table["block2_conv1"].field) == (4, 10)
    # zero padding moves position 0 one position (4 px) before the unpadded map's first centre
    assert table["pad"].start == table["block2_avg"].start - 4
    assert (table["fc1"].stride, table["fc1"].field, table["fc1"].in_channels) == (0, 0, 486)
    hash(network)  # usable as a static argument of jax.jit

    nested, _ = load_keras_file(folder / "nested.h5", "unit")
    assert [layer.name for layer in nested.layers] == [
        "block1_conv1",
        "block1_pool",
        "block2_conv1",
        "gap",
        "logits",
    ]
    assert (nested.input_size, nested.fixed_size, nested.head) == (16, False, "logits")
    assert nested.layers[3].kind == "dense" and nested.layers[0].alias == "conv1_1"


@pytest.mark.parametrize(
    "layer", ["block1_conv1", "block1_bn", "block2_bn", "block1_pool", "fc1_bn", "predictions"]
)
def test_channels_are_the_full_output_indexed(models, layer):
    folder, _ = models
    network, params = load_keras_file(folder / "classifier.keras", "unit")
    for count in (3, 6):  # fewer and more images than the head's 5 classes
        images = jnp.asarray(_images(32, count))
        channels = jnp.asarray([4, 0, 2, 1, 3, 4][:count])
        full = np.asarray(network.features(params, images, layer))
        picked = network.features(params, images, layer, channels=channels)
        _close(picked, full[np.arange(count), ..., np.asarray(channels)])


@pytest.mark.parametrize("redirect", [None, 1.0])
@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("classifier", ("block1_conv2", "block1_bn", "block2_avg", "fc1_relu", "predictions")),
        ("nested", ("block1_pool", "gap", "logits")),
    ],
)
def test_gradients_reach_the_images(models, model, names, redirect):
    folder, _ = models
    network, params = load_keras_file(folder / f"{model}.keras", "unit")
    images = jnp.asarray(_images(network.input_size))
    switch = None if redirect is None else jnp.asarray(redirect)

    def loss(x, layer, channels):  # minimized, as render does
        return -network.features(params, x, layer, channels, switch).mean()

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    for layer in names:
        full = network.features(params, images, layer)
        strongest = full.reshape(full.shape[0], -1, full.shape[-1]).mean(axis=1).argmax(axis=-1)
        values = np.asarray(grad(images, layer, strongest))
        assert np.isfinite(values).all() and np.abs(values).max() > 0, layer


def test_features_many_is_one_pass_of_features(models):
    folder, _ = models
    network, params = load_keras_file(folder / "classifier.h5", "unit")
    images = jnp.asarray(_images(32))
    names = ["conv1_2", "block1_bn", "predictions", "fc2"]
    many = network.features_many(params, images, names)
    assert list(many) == ["conv1_2", "block1_bn", "fc2", "predictions"]
    for name in names:
        _close(many[name], network.features(params, images, name))


def test_truncated_zip_is_one_line(models, tmp_path):
    folder, _ = models
    path = tmp_path / "m.keras"
    path.write_bytes((folder / "classifier.keras").read_bytes()[:3000])
    with pytest.raises(KerasFileError) as error:
        read_keras_file(path)
    assert str(error.value) == (
        f"{path} is not a readable Keras file (corrupt or truncated zip): save it again with "
        "model.save('m.keras')"
    )


def test_other_files_are_one_line_errors(models, tmp_path):
    folder, built = models
    missing = tmp_path / "none.keras"
    with pytest.raises(KerasFileError, match="does not exist"):
        read_keras_file(missing)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(KerasFileError, match="not a Keras model file"):
        read_keras_file(text)
    weights_only = tmp_path / "w.weights.h5"
    built["nested"].save_weights(weights_only)
    with pytest.raises(KerasFileError, match="weights only") as error:
        read_keras_file(weights_only)
    assert "\n" not in str(error.value)


def test_add_is_not_a_chain(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    outputs = layers.Add(name="skip")([inputs, x])
    path = tmp_path / "residual.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(NotAChainError, match="'skip' is a Add"):
        load_keras_file(path, "unit")


def test_weights_found_without_layer_names(models, tmp_path):
    """Files whose weight groups do not record layer names are matched by Keras' paths."""
    folder, _ = models
    with zipfile.ZipFile(folder / "nested.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "a") as h5:
        named = []
        h5.visititems(lambda _, item: named.append(item) if "name" in item.attrs else None)
        for item in named:
            del item.attrs["name"]
    members["model.weights.h5"] = buffer.getvalue()
    path = tmp_path / "anonymous.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _, weights = read_keras_file(path)
    _, expected = read_keras_file(folder / "nested.keras")
    assert weights.keys() == expected.keys() == {"block1_conv1", "block2_conv1", "logits"}
    for name, arrays in expected.items():
        for ours, theirs in zip(weights[name], arrays, strict=True):
            np.testing.assert_array_equal(ours, theirs)
