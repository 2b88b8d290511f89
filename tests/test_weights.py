import h5py
import jax
import numpy as np
import pytest
from fixtures import fixture_params, to_theano, write_keras
from reference import keras_forward, theano_forward

import render.models.weights as weights_module
from render.models.layers import LAYER_NAMES
from render.models.vgg import VGG16
from render.models.weights import WeightsError, load_weights

TOP_LAYERS = ("block1_conv1", "block3_conv2", "block5_conv3", "fc1", "fc2", "predictions")


@pytest.fixture(scope="module")
def image224():
    return np.random.default_rng(0).normal(0, 40, (224, 224, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def forward():
    model = VGG16(width_divisor=16)
    fn = jax.jit(lambda p, x, upto: model.apply(p, x[None], upto=upto)[0], static_argnums=2)
    return lambda params, x, upto: np.asarray(fn(params, x, upto), dtype=np.float64)


def rel_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_both_layouts_give_identical_activations_at_every_layer(weight_files, image224, forward):
    keras, info_k = load_weights(weight_files["keras"], need_top=True)
    theano, info_t = load_weights(weight_files["theano"], need_top=True)
    assert (info_k.layout, info_t.layout) == ("keras", "theano2016")
    assert info_k.width_divisor == info_t.width_divisor == 16
    for name in LAYER_NAMES:
        np.testing.assert_array_equal(
            forward(keras, image224, name), forward(theano, image224, name)
        )


@pytest.mark.parametrize("upto", TOP_LAYERS)
def test_flax_model_matches_numpy_reference(weight_files, params, image224, forward, upto):
    loaded, _ = load_weights(weight_files["keras"], need_top=True)
    expected = keras_forward(params, image224, upto)
    assert rel_error(forward(loaded, image224, upto), expected) < 1e-5


@pytest.mark.parametrize("upto", ("block1_conv1", "block2_conv2", "fc1", "predictions"))
def test_2016_file_matches_theano_semantics(weight_files, params, image224, forward, upto):
    loaded, _ = load_weights(weight_files["theano"], need_top=True)
    expected = theano_forward(to_theano(params), image224, upto)
    assert rel_error(forward(loaded, image224, upto), expected) < 1e-5


def test_flip_is_needed(weight_files, params, image224, forward, monkeypatch):
    """Without the spatial flip the 2016 kernels compute a different network."""
    monkeypatch.setattr(
        weights_module,
        "theano_conv_to_hwio",
        lambda k: np.ascontiguousarray(k.transpose(2, 3, 1, 0)),
    )
    loaded, _ = load_weights(weight_files["theano"])
    expected = theano_forward(to_theano(params), image224, "block1_conv1")
    assert rel_error(forward(loaded, image224, "block1_conv1"), expected) > 0.1


def test_fc1_row_permutation_is_needed(weight_files, params, image224, forward, monkeypatch):
    monkeypatch.setattr(weights_module, "chw_rows_to_hwc", lambda k, channels: k)
    loaded, _ = load_weights(weight_files["theano"], need_top=True)
    expected = theano_forward(to_theano(params), image224, "fc1")
    np.testing.assert_allclose(
        forward(loaded, image224, "block5_conv3"),
        theano_forward(to_theano(params), image224, "block5_conv3"),
        rtol=1e-5,
        atol=1e-4,
    )
    assert rel_error(forward(loaded, image224, "fc1"), expected) > 0.1


def test_keras_slash_weight_names(tmp_path, params):
    path = tmp_path / "slash.h5"
    write_keras(path, params, slash_names=True)
    loaded, info = load_weights(str(path), need_top=True)
    np.testing.assert_array_equal(loaded["params"]["fc2"]["kernel"], params["fc2"]["kernel"])
    np.testing.assert_array_equal(
        loaded["params"]["block4_conv2"]["bias"], params["block4_conv2"]["bias"]
    )


def test_full_width_shapes_are_checked(tmp_path):
    """A full-width notop file loads with width divisor 1 (shapes only, no data read)."""
    path = tmp_path / "full.h5"
    write_keras(path, fixture_params(width_divisor=1, top=False))
    params, info = load_weights(str(path), read=False)
    assert params is None and info.width_divisor == 1 and not info.has_top


def _vgg19(path, params):
    write_keras(path, params, extra_layers={"block5_conv4": params["block5_conv3"]})


def _resnet(path, params):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv", b"conv1_bn"]
        group = f.create_group("conv1_conv")
        group.attrs["weight_names"] = [b"conv1_conv/kernel:0"]
        group.create_dataset("conv1_conv/kernel:0", data=np.zeros((7, 7, 3, 64), np.float32))
        f.create_group("conv1_bn").attrs["weight_names"] = []


def _shape_mismatch(path, params):
    bad = dict(params)
    bad["block3_conv2"] = {
        "kernel": params["block3_conv2"]["kernel"][:, :, :8],
        "bias": params["block3_conv2"]["bias"],
    }
    write_keras(path, bad)


def _missing_layer(path, params):
    write_keras(path, {k: v for k, v in params.items() if k != "block2_conv1"})


def _truncated(path, params):
    write_keras(path, params)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_hdf5(path, params):
    path.write_text("this is not HDF5\n")


BAD_FILES = {
    "vgg19": (
        _vgg19,
        "has layer 'block5_conv4', which VGG16 does not: VGG19 weights? use model=vgg19",
    ),
    "resnet": (_resnet, "has layer 'conv1_conv', which VGG16 does not"),
    "shape": (
        _shape_mismatch,
        "layer block3_conv2 has kernel shape (3, 3, 8, 16), VGG16 needs (3, 3, 16, 16): is it another network?",
    ),
    "missing": (_missing_layer, "has no layer 'block2_conv1': not complete VGG16 weights"),
    "truncated": (_truncated, "truncated or damaged"),
    "not_hdf5": (_not_hdf5, "is not an HDF5 file: expected Keras VGG16 weights (.h5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_weight_files_name_file_and_problem(tmp_path, params, case):
    make, message = BAD_FILES[case]
    path = tmp_path / f"{case}.h5"
    make(path, params)
    with pytest.raises(WeightsError) as err:
        load_weights(str(path), need_top=True)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(
        WeightsError, match="weights file not found: .*nope.h5 \\(pass weights=imagenet"
    ):
        load_weights(str(tmp_path / "nope.h5"))


def test_notop_file_where_top_is_needed(weight_files):
    with pytest.raises(
        WeightsError,
        match="has no fully connected top \\(a notop file\\); this objective needs the full file vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    ):
        load_weights(weight_files["keras_notop"], need_top=True)
