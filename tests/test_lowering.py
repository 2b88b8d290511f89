"""Every convolution form equals lax.conv: values and input gradients, fp32 and bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from render.models.lowering import FORMS, conv3x3
from render.models.vgg import VGG16, VGGNetwork

# fp32: re-association only; bf16: operand rounding (8 bits of mantissa), nothing more
TOLERANCE = {jnp.float32: 2e-6, jnp.bfloat16: 2e-2}


def reference(x, kernel):
    return lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape", [(2, 9, 7, 5), (1, 8, 8, 16), (3, 1, 2, 4)])
def test_every_form_equals_lax_conv_with_its_input_gradient(form, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(0, 0.3, (3, 3, shape[-1], 6)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(*shape[:3], 6)), jnp.float32)
    expected, expected_vjp = jax.vjp(lambda x: reference(x, kernel), x)
    precision = lax.Precision.HIGHEST if dtype == jnp.float32 else lax.Precision.DEFAULT
    got, got_vjp = jax.vjp(lambda x: conv3x3(x, kernel, form, dtype, precision), x)
    assert got.dtype == jnp.float32 and got.shape == expected.shape
    for a, b in ((got, expected), (got_vjp(cotangent)[0], expected_vjp(cotangent)[0])):
        error = float(jnp.abs(a - b).max() / jnp.abs(b).max())
        assert error < TOLERANCE[dtype], (form, dtype, error)
        if dtype == jnp.bfloat16:
            assert error > 0  # the operands really were rounded to bf16


def test_the_kernel_gets_no_gradient_from_the_matmul_forms():
    x, kernel = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3))
    grad = jax.grad(lambda k: conv3x3(x, k, "winograd").sum())(kernel)
    assert float(jnp.abs(grad).max()) == 0.0


def test_an_unknown_form_is_named():
    with pytest.raises(ValueError, match="unknown convolution form 'fft': use one of conv, "):
        conv3x3(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3)), "fft")


def test_a_network_with_measured_forms_computes_the_same_features(params):
    network = VGGNetwork(width_divisor=16)
    wrapped = {"params": params}
    images = jax.random.normal(jax.random.key(0), (2, 24, 24, 3)) * 50
    forms = (("block1_conv2", "winograd"), ("block2_conv1", "im2col"), ("block2_conv2", "shifted"))
    tuned = VGGNetwork(width_divisor=16, forms=forms)
    channels = jnp.asarray([1, 5])
    for chosen in (None, channels):
        plain = network.features(wrapped, images, "block2_conv2", channels=chosen)
        other = tuned.features(wrapped, images, "block2_conv2", channels=chosen)
        assert float(jnp.abs(plain - other).max() / jnp.abs(plain).max()) < 1e-5
    assert "custom_vjp_call" in str(
        jax.make_jaxpr(lambda x: tuned.features(wrapped, x, "block2_conv2"))(images)
    )
    assert VGG16(forms=forms).forms == forms


@pytest.mark.parametrize("library", ["default", "xla"])
def test_each_kernel_library_computes_the_same_values_and_input_gradients(params, library):
    from render.autotune import LIBRARIES, available

    if not available(library):
        pytest.skip(f"this jax does not take the {library} library's options")
    network = VGGNetwork(width_divisor=16)
    wrapped = {"params": params}
    images = jax.random.normal(jax.random.key(1), (2, 24, 24, 3)) * 50
    channels = jnp.asarray([1, 5])

    def objective(x):  # the pattern of an ascent: features, a mean per image, its gradient
        y = network.features(wrapped, x, "block2_conv2", channels=channels)
        return y.reshape(len(y), -1).mean(axis=1).sum()

    program = jax.jit(jax.value_and_grad(objective)).lower(images)
    expected = program.compile()(images)
    compiled = program.compile(compiler_options=LIBRARIES[library] or None)
    if library == "xla":
        assert "__ynn_fusion" not in compiled.as_text()
    got = compiled(images)
    for a, b in zip(got, expected, strict=True):
        assert float(jnp.abs(a - b).max() / jnp.abs(b).max()) < 1e-5
