"""Objective expressions: each example's tree and value, and one-line errors with a column."""

import jax.numpy as jnp
import numpy as np
import pytest

from render.algebra import stack
from render.expressions import ExpressionError, parse, parse_for
from render.models.vgg import VGGNetwork

RNG = np.random.default_rng(0)
ACTS = {
    "block4_conv3": RNG.normal(size=(2, 6, 6, 32)).astype(np.float32),
    "block5_conv1": RNG.normal(size=(2, 4, 4, 32)).astype(np.float32),
    "predictions": RNG.normal(size=(2, 100)).astype(np.float32),
}
IMAGES = jnp.zeros((2, 8, 8, 3))
LAYERS = {
    "block4_conv3": "block4_conv3",
    "conv4_3": "block4_conv3",
    "block5_conv1": "block5_conv1",
    "conv5_1": "block5_conv1",
}
CLASSES = {"sea snake": 65, "jack-o'-lantern": 7}


def resolve(name):
    if name not in LAYERS:
        raise ValueError(f"unknown layer '{name}'")
    return LAYERS[name]


def class_index(key):
    if isinstance(key, int):
        if key >= 100:
            raise ValueError(f"class {key} is out of range 0-99")
        return key
    if key not in CLASSES:
        raise ValueError(f"unknown class '{key}'")
    return CLASSES[key]


def objective(text, head="predictions", width=None):
    return parse(text, resolve, class_index, head, width)


def value(text):
    acts = {k: jnp.asarray(v) for k, v in ACTS.items()}
    return np.asarray(objective(text)(acts, IMAGES))


c4, c5, logits = ACTS["block4_conv3"], ACTS["block5_conv1"], ACTS["predictions"]


def mean4(k):
    return c4[..., k].mean(axis=(1, 2))


EXAMPLES = [
    ("block4_conv3:12", "1 * channel(block4_conv3, k=12)", mean4(12)),
    (
        "block4_conv3:12 + block4_conv3:30",
        "1 * channel(block4_conv3, k=12) + 1 * channel(block4_conv3, k=30)",
        mean4(12) + mean4(30),
    ),
    ("-block4_conv3:12", "-1 * channel(block4_conv3, k=12)", -mean4(12)),
    (
        "0.5*block5_conv1:7@center - block4_conv3:30",
        "0.5 * neuron(block5_conv1, k=7, position=None) - 1 * channel(block4_conv3, k=30)",
        0.5 * c5[:, 2, 2, 7] - mean4(30),
    ),
    ("block4_conv3", "1 * layer_l2(block4_conv3)", np.square(c4).mean(axis=(1, 2, 3))),
    ("class:65", "1 * class_logit(predictions, k=65)", logits[:, 65]),
    ("class:sea snake", "1 * class_logit(predictions, k=65)", logits[:, 65]),
    # x first: column 1, row 4
    ("conv4_3:3@1,4", "1 * neuron(block4_conv3, k=3, position=[4, 1])", c4[:, 4, 1, 3]),
    (
        "-(conv4_3:1 - 2*conv5_1:2@centre) / 4",
        "-0.25 * channel(block4_conv3, k=1) + 0.5 * neuron(block5_conv1, k=2, position=None)",
        -(mean4(1) - 2 * c5[:, 2, 2, 2]) / 4,
    ),
    (
        "class:jack-o'-lantern - block4_conv3:1*3",
        "1 * class_logit(predictions, k=7) - 3 * channel(block4_conv3, k=1)",
        logits[:, 7] - 3 * mean4(1),
    ),
]


@pytest.mark.parametrize(("text", "tree", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_give_their_tree_and_value(text, tree, expected):
    assert repr(objective(text)) == tree
    np.testing.assert_allclose(value(text), expected, rtol=1e-5, atol=1e-6)


ERRORS = [
    ("block4_conv3:x", 14, "expected a channel number after ':', found 'x'"),
    ("block4_conv3:12 +", 18, "expected a term after '+', found the end"),
    ("(block4_conv3:12", 17, "expected ')' to close the '(' at column 1, found the end"),
    ("block4_conv3:12)", 16, "expected an operator (+ - * /) or the end, found ')'"),
    ("2 block4_conv3:12", 3, "expected an operator (+ - * /) or the end, found 'b'"),
    ("blok4_conv3:12", 1, "unknown layer 'blok4_conv3'"),
    ("block4_conv3:1 + class:sea snak", 24, "unknown class 'sea snak'"),
    ("class:100", 7, "class 100 is out of range 0-99"),
    ("class:", 7, "expected a class name or number after 'class:', found the end"),
    ("block4_conv3:12@middle", 17, "expected 'center' or x,y after '@', found 'middle'"),
    ("block4_conv3:12@3", 18, "expected ',' and y after x in '@x,y', found the end"),
    ("block4_conv3:12@3,", 19, "expected y after ',' in '@x,y', found the end"),
    ("0.5", 1, "a number alone is not an objective: weight a term, e.g. 2*LAYER:K"),
    ("block4_conv3:1 + 1", 18, "a number cannot be added to an objective: weight a term with '*'"),
    ("block4_conv3:1 * block4_conv3:2", 18, "cannot multiply two objectives: a weight is a number"),
    ("1 / block4_conv3:2", 5, "can only divide by a number"),
    ("block4_conv3:12 / 0", 19, "division by zero"),
    ("", 1, "expected a term, found the end"),
]


@pytest.mark.parametrize(("text", "column", "problem"), ERRORS, ids=[e[0] for e in ERRORS])
def test_malformed_expressions_are_one_line_with_a_column(text, column, problem):
    with pytest.raises(ExpressionError) as error:
        objective(text)
    assert str(error.value) == f'objective "{text}" at column {column}: {problem}'
    assert (error.value.column, error.value.problem) == (column, problem)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


def test_the_first_message_in_full():
    with pytest.raises(ExpressionError) as error:
        objective("block4_conv3:x")
    assert str(error.value) == (
        "objective \"block4_conv3:x\" at column 14: expected a channel number after ':', found 'x'"
    )


def test_channel_range_and_missing_head():
    with pytest.raises(ExpressionError) as error:
        objective("block4_conv3:32", width=lambda layer: 32)
    assert str(error.value) == (
        'objective "block4_conv3:32" at column 14: channel 32 is out of range: '
        "block4_conv3 has channels 0-31"
    )
    with pytest.raises(ExpressionError) as error:
        objective("block4_conv3:1 - class:65", head=None)
    assert str(error.value) == (
        'objective "block4_conv3:1 - class:65" at column 18: this network has no class head'
    )


def test_parsed_expressions_of_one_shape_stack():
    texts = ["block4_conv3:1@center + class:3", "block4_conv3:7@center + class:9"]
    stacked = stack([objective(text) for text in texts])
    got = stacked({k: jnp.asarray(v) for k, v in ACTS.items()}, IMAGES)
    expected = [value(text)[b] for b, text in enumerate(texts)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_parse_for_a_network_resolves_aliases_and_class_names():
    network = VGGNetwork(labels=())
    parsed = parse_for(network, "conv4_3:12 - 0.5*class:sea snake")
    assert repr(parsed) == "1 * channel(block4_conv3, k=12) - 0.5 * class_logit(predictions, k=65)"
    with pytest.raises(
        ExpressionError, match=r'^objective "conv1_1:64" at column 9: channel 64 is'
    ):
        parse_for(network, "conv1_1:64")
