"""The objective algebra: each term against numpy, sums and stacks against their parts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from render import algebra
from render.algebra import (
    alignment,
    as_loss,
    channel,
    class_logit,
    class_probability,
    direction,
    diversity,
    evaluate,
    group,
    l2,
    layer_l2,
    neuron,
    stack,
    tv,
)
from render.models.vgg import VGGNetwork

RNG = np.random.default_rng(0)
ACTS = {
    "conv": np.maximum(RNG.normal(size=(4, 5, 6, 8)), 0).astype(np.float32),
    "head": RNG.normal(size=(4, 10)).astype(np.float32),
}
IMAGES = RNG.normal(0, 30, (4, 7, 9, 3)).astype(np.float32)


def value(objective):
    return np.asarray(objective({k: jnp.asarray(v) for k, v in ACTS.items()}, jnp.asarray(IMAGES)))


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-6)


def test_feature_terms_equal_numpy():
    conv, head = ACTS["conv"], ACTS["head"]
    close(value(channel("conv", 3)), conv[..., 3].mean(axis=(1, 2)))
    close(value(channel("head", 7)), head[:, 7])
    close(value(neuron("conv", 2)), conv[:, 2, 3, 2])  # the centre of a 5x6 map
    close(value(neuron("conv", 2, position=(1, 4))), conv[:, 1, 4, 2])
    close(value(layer_l2("conv")), np.square(conv).mean(axis=(1, 2, 3)))
    close(value(class_logit("head", 4)), head[:, 4])
    softmax = np.exp(head) / np.exp(head).sum(axis=1, keepdims=True)
    close(value(class_probability("head", 4)), softmax[:, 4])


def test_direction_with_and_without_cosine():
    conv, vector = ACTS["conv"], RNG.normal(size=8).astype(np.float32)
    dot = conv @ vector
    close(value(direction("conv", vector)), dot.mean(axis=(1, 2)))
    eps = 1e-4
    norms = np.sqrt(np.square(conv).sum(-1) + eps**2) * np.sqrt(np.square(vector).sum() + eps**2)
    expected = (dot * np.maximum(dot / norms, 0.1) ** 2).mean(axis=(1, 2))
    close(value(direction("conv", vector, cosine_power=2)), expected, rtol=1e-4)


def test_image_penalties_equal_numpy():
    rows = np.abs(np.diff(IMAGES, axis=1)).mean(axis=(1, 2, 3))
    cols = np.abs(np.diff(IMAGES, axis=2)).mean(axis=(1, 2, 3))
    close(value(tv()), rows + cols)
    close(value(l2()), np.square(IMAGES).mean(axis=(1, 2, 3)), rtol=1e-4)
    assert tv().reads == frozenset()


def gram_similarity(acts, copies):
    flat = acts.reshape(len(acts), -1, acts.shape[-1]).astype(np.float64)
    gram = np.einsum("bpc,bpd->bcd", flat, flat).reshape(len(acts), -1) / flat.shape[1]
    gram -= gram.mean(axis=1, keepdims=True)
    gram /= np.linalg.norm(gram, axis=1, keepdims=True)
    out = np.zeros(len(acts))
    for b in range(len(acts)):
        first = b // copies * copies
        others = [o for o in range(first, first + copies) if o != b]
        out[b] = np.mean([gram[b] @ gram[o] for o in others])
    return out


def test_diversity_equals_numpy_and_the_engine():
    from render.ascent import diversity_penalty

    conv = ACTS["conv"]
    close(value(diversity("conv", copies=2)), gram_similarity(conv, 2), rtol=1e-4)
    close(value(diversity("conv")), gram_similarity(conv, 4), rtol=1e-4)  # one group
    close(value(diversity("conv", copies=2)), diversity_penalty(jnp.asarray(conv), 2))


def test_alignment_splits_lucids_pair_sum_over_images():
    conv, decay = ACTS["conv"], 0.5
    per_image, lucid = np.zeros(4), 0.0
    for d in (1, 2, 3):
        for a in range(4 - d):
            distance = np.square(conv[a] - conv[a + d]).mean() * decay**d
            lucid += distance
            per_image[[a, a + d]] += distance / 2
    got = value(alignment("conv", decay))
    close(got, per_image)
    close(got.sum(), lucid)


def test_sums_negation_and_weights():
    a, b = channel("conv", 1), neuron("conv", 5, position=(0, 0))
    va, vb = value(a), value(b)
    close(value(a + b), va + vb)
    close(value(a - b), va - vb)
    close(value(-a), -va)
    close(value(2.0 * a), 2 * va)
    close(value(a * 2.0), 2 * va)
    close(value(a / 2), va / 2)
    close(value(sum([a, b, 3 * b])), va + 4 * vb)
    assert (a + b).reads == frozenset({"conv"})
    assert (a - class_logit("head", 1)).reads == frozenset({"conv", "head"})
    with pytest.raises(TypeError):
        a * b
    with pytest.raises(TypeError):
        a + 1


def test_array_numbers_make_a_stack_and_add_a_shared_penalty():
    ks = np.array([0, 3, 3, 7])
    objective = channel("conv", ks) - 0.1 * tv()
    assert objective.size == 4
    expected = ACTS["conv"][np.arange(4), ..., ks].mean(axis=(1, 2)) - 0.1 * value(tv())
    close(value(objective), expected)
    with pytest.raises(ValueError, match="a stack of 4 objectives on 2 images"):
        objective({k: jnp.asarray(v[:2]) for k, v in ACTS.items()}, jnp.asarray(IMAGES[:2]))
    with pytest.raises(ValueError, match="cannot add a stack of 4 to a stack of 3"):
        objective + channel("conv", [1, 2, 3])


def test_stack_errors_name_the_first_mismatch():
    with pytest.raises(ValueError) as error:
        stack([channel("conv", 1) + neuron("conv", 2), channel("conv", 1) + channel("conv", 2)])
    assert str(error.value) == (
        "cannot stack objectives[1] with objectives[0]: term 1 is channel(conv, k=2) where "
        "objectives[0] has neuron(conv, k=2, position=None)"
    )
    with pytest.raises(ValueError) as error:
        stack([neuron("conv", 1), neuron("conv", 1, position=(2, 3))])
    assert str(error.value) == (
        "cannot stack objectives[1] with objectives[0]: term 0 is neuron(conv, k=1, "
        "position=[2, 3]) where objectives[0] has neuron(conv, k=1, position=None)"
    )
    with pytest.raises(ValueError) as error:
        stack([channel("conv", 1), channel("conv", 1) - tv()])
    assert str(error.value) == (
        "cannot stack objectives[1] with objectives[0]: it has 2 terms where objectives[0] has 1"
    )
    with pytest.raises(ValueError) as error:
        stack([diversity("conv", 2), diversity("conv", 4)])
    assert str(error.value) == (
        "cannot stack objectives[1] with objectives[0]: term 0 is diversity(conv, copies=4) "
        "where objectives[0] has diversity(conv, copies=2)"
    )


def test_group_sorts_a_mixed_list_into_stacks():
    objectives = [channel("conv", 1), neuron("conv", 2), channel("conv", 5), neuron("conv", 0)]
    groups = group(objectives)
    assert [indices for indices, _ in groups] == [[0, 2], [1, 3]]
    for indices, stacked in groups:
        assert stacked.size == len(indices)
        # image b of the first len(indices) images is driven by objectives[indices[b]]
        first = {k: jnp.asarray(v[: len(indices)]) for k, v in ACTS.items()}
        got = stacked(first, jnp.asarray(IMAGES[: len(indices)]))
        close(got, [value(objectives[i])[b] for b, i in enumerate(indices)])


# --- through the fixture VGG16 ------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg(params):
    images = jnp.asarray(np.random.default_rng(3).normal(0, 30, (4, 32, 32, 3)), jnp.float32)
    return VGGNetwork(width_divisor=16), {"params": params}, images


def image_grad(network, params, objective, images):
    return jax.grad(lambda x: evaluate(network, params, objective, x).sum())(images)


def test_gradient_of_a_sum_is_the_sum_of_gradients(vgg):
    network, params, images = vgg
    parts = [channel("block2_conv1", 3), neuron("block3_conv1", 5), -0.5 * layer_l2("block2_conv1")]
    parts.append(-1e-3 * tv())
    whole = image_grad(network, params, sum(parts), images)
    separate = sum(image_grad(network, params, part, images) for part in parts)
    close(whole, separate, rtol=1e-4)
    negated = evaluate(network, params, -parts[1], images)
    close(negated, -evaluate(network, params, parts[1], images))


def test_a_stack_of_four_neuron_sums_equals_each_alone(vgg):
    network, params, images = vgg
    spec = [(0, (1, 2), 3), (5, (3, 3), 0), (9, (4, 4), 7), (15, (0, 7), 7)]
    objectives = [
        neuron("block3_conv1", k, position) + 0.5 * channel("block2_conv2", j) - 1e-3 * tv()
        for k, position, j in spec
    ]
    stacked = stack(objectives)
    values = evaluate(network, params, stacked, images)
    grads = image_grad(network, params, stacked, images)
    for b, objective in enumerate(objectives):
        one = images[b : b + 1]
        close(values[b], evaluate(network, params, objective, one)[0], rtol=1e-4)
        alone = image_grad(network, params, objective, one)[0]
        np.testing.assert_allclose(grads[b], alone, rtol=1e-4, atol=1e-5 * np.abs(alone).max())


def test_as_loss_picks_stack_entries_by_target(vgg):
    network, params, images = vgg
    objectives = [channel("block3_conv2", k) + neuron("block3_conv2", k + 1) for k in (2, 4, 6)]
    loss = jax.jit(as_loss(stack(objectives), network))
    targets = jnp.asarray([2, 0, 2, 1])
    got = loss(params, images, targets)
    for b, t in enumerate([2, 0, 2, 1]):
        close(got[b], evaluate(network, params, objectives[t], images[b : b + 1])[0], rtol=1e-4)
    single = as_loss(channel("block3_conv2", 2), network)  # one objective for every image
    acts = network.features(params, images, "block3_conv2")
    expected = acts[..., 2].mean(axis=(1, 2))
    close(single(params, images, targets), expected, rtol=1e-4)


class Recording:
    """A network that records how it is asked for features."""

    def __init__(self, network, many: bool, many_redirect: bool = True):
        self.network, self.calls = network, []
        if many:
            self.features_many = self.many_with if many_redirect else self.many_without

    def features(self, params, images, layer, channels=None, redirect=None):
        self.calls.append(("features", layer, channels is not None))
        return self.network.features(params, images, layer, channels, redirect)

    def many_with(self, params, images, layers, redirect=None):
        self.calls.append(("many", tuple(layers)))
        return {
            name: self.network.features(params, images, name, None, redirect) for name in layers
        }

    def many_without(self, params, images, layers):
        return self.many_with(params, images, layers)


def test_the_channel_fast_path_equals_the_whole_layer(vgg):
    network, params, images = vgg
    objective = 2.0 * channel("block3_conv2", [0, 5, 9, 15])
    spy = Recording(network, many=False)
    fast = evaluate(spy, params, objective, images)
    assert spy.calls == [("features", "block3_conv2", True)]
    acts = algebra.features(network, params, images, objective.reads)
    close(fast, objective(acts, images), rtol=1e-5)
    full_grad = jax.grad(
        lambda x: objective(algebra.features(network, params, x, objective.reads), x).sum()
    )(images)
    fast_grad = image_grad(network, params, objective, images)
    np.testing.assert_allclose(fast_grad, full_grad, rtol=1e-4, atol=1e-5 * np.abs(full_grad).max())


def test_features_many_is_one_call_for_every_layer(vgg):
    network, params, images = vgg
    objective = neuron("block2_conv1", 1) - layer_l2("block3_conv1") + channel("block2_conv1", 0)
    spy = Recording(network, many=True)
    evaluate(spy, params, objective, images)
    assert spy.calls == [("many", ("block2_conv1", "block3_conv1"))]
    without = Recording(network, many=True, many_redirect=False)
    redirect = jnp.float32(1.0)
    evaluate(without, params, objective, images, redirect=redirect)  # redirect: per layer
    assert [call[0] for call in without.calls] == ["features", "features"]
    plain = Recording(network, many=False)
    close(evaluate(plain, params, objective, images), evaluate(spy, params, objective, images))


def test_stacks_of_one_structure_share_one_compiled_program(vgg):
    network, params, images = vgg
    traces = []

    @jax.jit
    def run(objective, images):
        traces.append(1)
        return evaluate(network, params, objective, images)

    first = stack([neuron("block2_conv1", k) - 0.5 * channel("block2_conv2", k) for k in range(4)])
    second = stack(
        [neuron("block2_conv1", k) - 2 * channel("block2_conv2", 7) for k in (3, 1, 0, 6)]
    )
    for objective in (first, second):
        close(run(objective, images), evaluate(network, params, objective, images), rtol=1e-5)
    assert len(traces) == 1
