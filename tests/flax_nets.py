"""A user's own Flax module, as `model.factory=flax_nets:build` finds it (tests only)."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvReLU(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(self.features, (3, 3))(x))


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = ConvReLU(8, name="conv1")(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = ConvReLU(8, name="conv2")(x)
        return nn.Dense(3, name="logits")(x.mean(axis=(1, 2)))


def build():
    """(module, params, layer names): what render needs of a Flax network."""
    module = TinyNet()
    params = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return module, params, ["conv1", "conv2", "logits"]
