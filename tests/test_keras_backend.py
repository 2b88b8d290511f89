"""Keras 3 models run through Keras itself: features match Keras, trace under jit/grad, and
gradient ascent raises a channel as Keras measures it."""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax
import jax.numpy as jnp
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from render.models.keras_backend import KerasMissingError, keras_network  # noqa: E402
from render.models.network import CONVENTIONS  # noqa: E402

SIZE = 16


def resnet_style() -> "keras.Model":
    """Conv-BN-ReLU, a depthwise branch added back by a skip connection, a strided conv, global
    pooling and a softmax head; BN statistics are random so they must be read correctly."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = layers.BatchNormalization(name="bn2")(y)
    y = layers.Conv2D(8, 1, name="pw")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.ReLU(name="relu2")(x)
    x = layers.Conv2D(12, 3, strides=2, padding="same", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape))
        bn.beta.assign(rng.uniform(0.0, 0.2, bn.beta.shape))  # ReLUs alive at gray
        bn.moving_mean.assign(rng.normal(0, 0.1, bn.moving_mean.shape))
        bn.moving_variance.assign(rng.uniform(0.5, 1.5, bn.moving_variance.shape))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "tiny_resnet.keras"
    model = resnet_style()
    model.save(path)
    return str(path), model


@pytest.fixture(scope="module")
def loaded(saved):
    path, _ = saved
    return keras_network(path, "tf")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")


def keras_output(model, name, images):
    """What Keras itself computes for a layer's output."""
    sub = keras.Model(model.inputs, model.get_layer(name).output)
    return np.asarray(sub.predict(images, verbose=0))


def test_layer_table(loaded):
    network, params = loaded
    assert network.name == "keras:tiny_resnet.keras"
    assert network.convention == CONVENTIONS["tf"]
    assert network.input_size == SIZE and not network.fixed_size
    assert network.head == "predictions"
    names = [layer.name for layer in network.layers]
    assert names[0].startswith("input") and names[-1] == "predictions"
    assert not network.layers[0].visualizable
    by_name = {layer.name: layer for layer in network.layers}
    assert (by_name["conv1"].stride, by_name["conv1"].field) == (1, 3)
    assert (by_name["dw"].field, by_name["pw"].field, by_name["add"].field) == (5, 5, 5)
    assert (by_name["conv2"].stride, by_name["conv2"].field, by_name["conv2"].kind) == (
        2,
        7,
        "conv",
    )
    assert (by_name["gap"].kind, by_name["gap"].stride, by_name["gap"].channels) == ("dense", 0, 12)
    assert by_name["dw"].in_channels == 8
    assert len(params["trainable"]) == len(network._model.trainable_variables)
    assert len(params["non_trainable"]) == 4


@pytest.mark.parametrize("name", ["bn1", "dw", "add", "relu2", "conv2", "gap"])
def test_features_match_keras(saved, loaded, images, name):
    _, model = saved
    network, params = loaded
    ours = network.features(params, jnp.asarray(images), name)
    np.testing.assert_allclose(ours, keras_output(model, name, images), rtol=1e-4, atol=1e-5)


def test_head_is_pre_softmax_logits(saved, loaded, images):
    _, model = saved
    network, params = loaded
    logits = network.features(params, jnp.asarray(images), "predictions")
    probabilities = np.asarray(model.predict(images, verbose=0))
    np.testing.assert_allclose(jax.nn.softmax(logits), probabilities, rtol=1e-4, atol=1e-6)
    pooled = keras_output(model, "gap", images)
    dense = model.get_layer("predictions")
    expected = pooled @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_channels_jit_and_grad(loaded, images):
    network, params = loaded
    x = jnp.asarray(images)
    channels = jnp.array([0, 7, 3])
    full = network.features(params, x, "relu2")
    picked = jax.jit(lambda p, x, c: network.features(p, x, "relu2", c))(params, x, channels)
    np.testing.assert_allclose(picked, full[jnp.arange(3), ..., channels], rtol=1e-5, atol=1e-6)

    def loss(x, p):
        return network.features(p, x, "conv2", channels).mean()

    grad = jax.jit(jax.grad(loss))(x, params)
    assert grad.shape == x.shape and float(jnp.abs(grad).sum()) > 0
    head = network.features(params, x, "predictions", jnp.array([4, 0, 2]))
    assert head.shape == (3,)


def test_gradient_ascent_raises_channel_as_keras_sees_it(saved, loaded):
    _, model = saved
    network, params = loaded
    layer, channel = "conv2", 5
    gray = CONVENTIONS["tf"].to_input(np.full((1, SIZE, SIZE, 3), 128.0, "float32"))

    def objective(x):
        return network.features(params, x, layer, jnp.array([channel])).mean()

    @jax.jit
    def step(x):
        grad = jax.grad(objective)(x)
        return x + grad / (jnp.sqrt(jnp.mean(grad**2)) + 1e-5) * 0.05

    x = jnp.asarray(gray)
    for _ in range(30):
        x = step(x)
    before = keras_output(model, layer, gray)[..., channel].mean()
    after = keras_output(model, layer, np.asarray(x))[..., channel].mean()
    assert after > before + 0.5


def test_nested_application_base(tmp_path, images):
    """Layers inside a nested model (as with a Keras application base) are in the table and
    their features match Keras."""
    layers = keras.layers
    base_in = keras.Input((SIZE, SIZE, 3))
    y = layers.Conv2D(4, 3, strides=2, padding="same", name="inner_conv")(base_in)
    base = keras.Model(base_in, layers.ReLU(name="inner_relu")(y), name="base")
    inputs = keras.Input((SIZE, SIZE, 3))
    x = base(layers.Rescaling(0.5, name="rescale")(inputs))
    x = layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(x))
    path = tmp_path / "nested.keras"
    model.save(path)
    network, params = keras_network(str(path), "unit", labels=["a", "b", "c"])
    assert network.fixed_size and network.head == "logits" and network.labels == ("a", "b", "c")
    by_name = {layer.name: layer for layer in network.layers}
    inner = by_name["inner_relu"]
    assert (inner.stride, inner.field, inner.visualizable) == (2, 3, True)
    assert not by_name["flat"].visualizable
    ours = network.features(params, jnp.asarray(images), "inner_relu")
    sub = keras.Model(base.inputs, base.get_layer("inner_relu").output)
    expected = sub.predict(images * 0.5, verbose=0)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    logits = network.features(params, jnp.asarray(images), "logits")
    np.testing.assert_allclose(logits, model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)


def test_missing_keras_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(KerasMissingError) as error:
        keras_network("nets/resnet.keras", "caffe")
    assert str(error.value) == (
        "nets/resnet.keras needs Keras 3 to run (its graph is not a plain chain of layers): "
        "pip install -e '.[keras]'"
    )
