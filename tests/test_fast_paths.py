"""Every fast path against the plain one: channel selection, bf16, several devices."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import run_cli

from render.models.vgg import VGG16

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def inputs(params):
    images = jnp.asarray(np.random.default_rng(3).normal(0, 30, (4, 32, 32, 3)), jnp.float32)
    return {"params": params}, images


def per_image_objective(model, layer, select):
    """Mean of channel targets[b] of image b: selected inside the layer, or taken afterwards."""

    def loss(params, images, targets):
        if select:
            act = model.apply(params, images, upto=layer, channels=targets)
        else:
            full = model.apply(params, images, upto=layer)
            act = jnp.take_along_axis(full, targets[:, None, None, None], axis=-1)[..., 0]
        return act.mean(axis=(1, 2))

    return loss


@pytest.mark.parametrize(
    ("layer", "targets"),
    [
        ("block3_conv2", [0, 5, 9, 15]),  # fewer images than channels: computed channels only
        ("block1_conv1", [3, 0, 1, 2]),  # as many images as channels: whole layer, then taken
        ("block2_conv2", [7, 7, 7, 7]),  # the padding case: one filter repeated
    ],
)
def test_channel_selection_equals_whole_layer(inputs, layer, targets):
    params, images = inputs
    targets = jnp.asarray(targets, jnp.int32)
    model = VGG16(width_divisor=16)
    results = []
    for select in (True, False):
        loss = per_image_objective(model, layer, select)
        value, grad = jax.value_and_grad(lambda x, f=loss: f(params, x, targets).sum())(images)
        results.append((loss(params, images, targets), grad))
    (sel_loss, sel_grad), (full_loss, full_grad) = results
    np.testing.assert_allclose(sel_loss, full_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sel_grad, full_grad, rtol=1e-4, atol=1e-5 * np.abs(full_grad).max())


def test_bf16_matches_fp32_within_tolerance(inputs):
    """bf16 operands with fp32 accumulation: activations within 2% of the layer's scale."""
    params, images = inputs
    fp32 = VGG16(width_divisor=16, precision="fp32").apply(params, images, upto="block3_conv3")
    bf16 = VGG16(width_divisor=16, precision="bf16").apply(params, images, upto="block3_conv3")
    assert bf16.dtype == jnp.float32
    error = np.abs(np.asarray(bf16) - np.asarray(fp32)).max() / np.abs(np.asarray(fp32)).max()
    assert 0 < error < 0.02


def test_four_devices_give_the_images_of_one(weight_files, tmp_path):
    """The filter axis sharded over 4 host devices renders byte-identical files."""
    outputs = {}
    for devices in (1, 4):
        root = tmp_path / f"dev{devices}"
        result = run_cli(
            f"weights={weight_files['keras_notop']}",
            "layer=conv3_1",
            "filters=0-7",
            "size=32",
            "batch_size=8",
            "steps=10",
            f"output.root={root}",
            "progress=false",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        )
        assert result.returncode == 0, result.stderr
        assert f"batch 8 on {devices} device(s)" in result.stdout
        outputs[devices] = {
            str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.png")
        }
    assert len(outputs[1]) == 10 and outputs[1] == outputs[4]


def test_bf16_model_uses_the_matmul_path_on_wide_layers():
    """At full width block3_conv2 has 256 input channels: the model's bf16 output stays close."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (1, 16, 16, 3)) * 50
    model32, model16 = VGG16(precision="fp32"), VGG16(precision="bf16")
    params = model32.init(key, x, upto="block3_conv2")
    jaxpr = str(jax.make_jaxpr(lambda x: model16.apply(params, x, upto="block3_conv2"))(x))
    assert "custom_vjp_call" in jaxpr
    a = model32.apply(params, x, upto="block3_conv2")
    b = model16.apply(params, x, upto="block3_conv2")
    assert float(jnp.abs(a - b).max() / jnp.abs(a).max()) < 0.03


def test_bf16_convolutions_are_bf16_throughout_forward_and_backward():
    """A bf16 x bf16 -> fp32 convolution would be upcast to fp32 by XLA (fp32/tf32 speed on a
    GPU); every lax.conv of the bf16 model, input gradient included, must be bf16 -> bf16."""
    import re

    x = jnp.ones((2, 16, 16, 3))
    model = VGG16(precision="bf16", width_divisor=16)
    params = model.init(jax.random.key(0), x, upto="block2_conv1")
    targets = jnp.asarray([0, 3], jnp.int32)

    def loss(x):
        return model.apply(params, x, upto="block2_conv1", channels=targets).sum()

    text = jax.jit(jax.grad(loss)).lower(x).as_text()
    convolutions = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    signatures = [re.search(r": \((.*)\) -> (tensor<.*>)", line).groups() for line in convolutions]
    assert len(signatures) == 6  # 3 forward, 3 input gradients
    for operands, result in signatures:
        assert operands.count("xbf16>") == 2 and result.endswith("xbf16>"), (operands, result)
