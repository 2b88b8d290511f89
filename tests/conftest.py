import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fixtures import fixture_params, write_keras, write_theano


@pytest.fixture(scope="session")
def params():
    return fixture_params()


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory, params):
    """Paths of the same tiny weights in both layouts, with and without the top."""
    folder = tmp_path_factory.mktemp("weights")
    notop = {k: dict(v) for k, v in params.items() if k.startswith("block")}
    dead_bias = notop["block2_conv1"]["bias"].copy()
    dead_bias[2] = -1e4  # filter 2 of block2_conv1 can never fire: a dead filter by construction
    notop["block2_conv1"]["bias"] = dead_bias
    paths = {
        "keras": folder / "vgg16_keras.h5",
        "keras_notop": folder / "vgg16_keras_notop.h5",
        "theano": folder / "vgg16_weights.h5",
    }
    write_keras(paths["keras"], params)
    write_keras(paths["keras_notop"], notop)
    write_theano(paths["theano"], params)
    return {k: str(v) for k, v in paths.items()}
