"""Objectives as an algebra: terms that measure a batch of images, combined with +, - and *.

    objective = channel("block4_conv3", 12) - 0.5 * neuron("block5_conv1", 7) - 1e-3 * tv()

An `Objective` is a weighted sum of terms: `objective(acts, images)` is the value per image (B,)
given the activations `acts` ({layer: (B, H, W, C) or (B, C)}) and the network's input images
(B, H, W, 3); `objective.reads` names the layers it needs, and `evaluate` computes them. Higher
is better: penalties (`tv`, `l2`, `diversity`, `alignment`) are positive, so subtract them.

Stacks: a list of objectives of one structure (the same terms, layers and settings in the same
order, differing only in their numbers: channels, positions, vectors, weights) is one objective
whose numbers carry a leading axis, one entry per objective (`stack`; `group` sorts a mixed list
into such stacks). `channel(layer, ks)` with an array `ks` is such a stack too. Evaluated on a
batch, image b uses entry b, so one compiled program renders as many different objectives as it
has images; `take(indices)` picks entries per image (what `as_loss` does with the engine's
targets). Objectives are pytrees: the numbers are leaves, the structure is the tree.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

Acts = Mapping[str, jax.Array]


def _static(**kwargs) -> Any:
    """A dataclass field that is part of an objective's structure, not one of its numbers."""
    return field(metadata={"static": True}, **kwargs)


def _pytree(cls):
    return jax.tree_util.register_dataclass(dataclass(frozen=True)(cls))


def _per_image(x: jax.Array, index: jax.Array) -> jax.Array:
    """x[b, ..., index[b]] over the last axis: each image's own channel."""
    return jnp.take_along_axis(x, index.reshape((-1,) + (1,) * (x.ndim - 1)), axis=-1)[..., 0]


def _mean_per_image(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1).mean(axis=1)


def _xp(x):
    """numpy for concrete numpy numbers, so building objectives never starts a JAX backend."""
    return np if isinstance(x, np.ndarray | np.generic) else jnp


class Term:
    """One measurement of a batch of images, (B,). Fields marked static are its structure; the
    others are its numbers, each with a leading batch axis when the term is called."""

    kind: ClassVar[str]
    ranks: ClassVar[dict[str, int]] = {}  # number field -> its rank for a single objective

    @property
    def layer_read(self) -> str | None:
        return getattr(self, "layer", None)

    def __call__(self, acts: Acts, images: jax.Array) -> jax.Array:
        raise NotImplementedError

    def describe(self) -> str:
        """e.g. `neuron(block4_conv3, k=12, position=centre)`."""
        parts = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "layer":
                parts.append(value)
            elif item.metadata.get("static") or value is None:
                parts.append(f"{item.name}={value!r}")
            elif np.size(value) <= 4:
                parts.append(f"{item.name}={np.asarray(value).tolist()}")
            else:
                parts.append(f"{item.name} of shape {np.shape(value)}")
        return f"{self.kind}({', '.join(parts)})"


@_pytree
class Channel(Term):
    """Spatial mean of channel k (the 2016 post's filter objective); a dense layer's unit k."""

    kind: ClassVar[str] = "channel"
    ranks: ClassVar[dict[str, int]] = {"k": 0}
    layer: str = _static()
    k: jax.Array

    def reduce(self, selected: jax.Array) -> jax.Array:
        """The value from the selected channel alone, (B,) or (B, H, W)."""
        return _mean_per_image(selected)

    def __call__(self, acts, images):
        return self.reduce(_per_image(acts[self.layer], self.k))


@_pytree
class ChannelL2(Channel):
    """Mean square of channel k (deep dream on single filters)."""

    kind: ClassVar[str] = "channel_l2"

    def reduce(self, selected: jax.Array) -> jax.Array:
        return _mean_per_image(jnp.square(selected))


@_pytree
class ClassLogit(Channel):
    """Logit k of the head: channel k of a dense layer, before the softmax."""

    kind: ClassVar[str] = "class_logit"


@_pytree
class ClassProbability(Term):
    """Softmax probability of class k over the head's logits."""

    kind: ClassVar[str] = "class_probability"
    ranks: ClassVar[dict[str, int]] = {"k": 0}
    layer: str = _static()
    k: jax.Array

    def __call__(self, acts, images):
        return _mean_per_image(_per_image(jax.nn.softmax(acts[self.layer], axis=-1), self.k))


@_pytree
class Neuron(Term):
    """Channel k at one map position (y, x); position None is the centre (H // 2, W // 2).
    Positions beyond the map are clamped to its edge."""

    kind: ClassVar[str] = "neuron"
    ranks: ClassVar[dict[str, int]] = {"k": 0, "position": 1}
    layer: str = _static()
    k: jax.Array
    position: jax.Array | None = None

    def __call__(self, acts, images):
        x = acts[self.layer]
        if x.ndim != 4:
            raise ValueError(f"neuron needs a spatial layer; {self.layer} has no positions")
        if self.position is None:
            row, col = x.shape[1] // 2, x.shape[2] // 2
        else:
            row, col = self.position[:, 0], self.position[:, 1]
        return x[jnp.arange(x.shape[0]), row, col, self.k]


@_pytree
class LayerL2(Term):
    """Mean square of the whole layer (deep dream)."""

    kind: ClassVar[str] = "layer_l2"
    layer: str = _static()

    def __call__(self, acts, images):
        return _mean_per_image(jnp.square(acts[self.layer]))


@_pytree
class Direction(Term):
    """Mean over positions of a . v, times max(0.1, cos(a, v)) ** cosine_power when the power is
    positive, where a is the activation vector at a position, v the direction and
    cos(a, v) = a . v / (sqrt(|a|^2 + eps^2) sqrt(|v|^2 + eps^2)), eps = 1e-4 (the floor keeps
    the gradient alive where the cosine is negative; eps inside the root keeps it finite at a = 0).
    """

    kind: ClassVar[str] = "direction"
    ranks: ClassVar[dict[str, int]] = {"vector": 1}
    layer: str = _static()
    vector: jax.Array
    cosine_power: float = _static(default=0.0)

    def __call__(self, acts, images):
        x = acts[self.layer]
        vector = self.vector.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],))
        dot = jnp.sum(x * vector, axis=-1)
        if self.cosine_power:
            eps = 1e-4
            norms = jnp.sqrt(jnp.sum(x * x, axis=-1) + eps**2)
            norms = norms * jnp.sqrt(jnp.sum(vector * vector, axis=-1) + eps**2)
            dot = dot * jnp.maximum(dot / norms, 0.1) ** self.cosine_power
        return _mean_per_image(dot)


@_pytree
class Match(Term):
    """Lucid's caricature (dot_compare): the mean over positions of a . t, where a and t are the
    activation vectors of the image and of a target (a photo's activations (H, W, C), resized
    to the layer's map when they differ) at the same position, times
    max(0.1, cos(a, t)) ** cosine_power over the whole maps when the power is positive
    (cos = a . t / (sqrt(|a|^2 + eps^2) sqrt(|t|^2 + eps^2)), eps = 1e-4, as in `Direction`)."""

    kind: ClassVar[str] = "match"
    ranks: ClassVar[dict[str, int]] = {"target": 3}
    layer: str = _static()
    target: jax.Array
    cosine_power: float = _static(default=0.0)

    def __call__(self, acts, images):
        x = acts[self.layer]
        if x.ndim != 4:
            raise ValueError(f"match needs a spatial layer; {self.layer} has no positions")
        target = self.target
        if target.shape[1:] != x.shape[1:]:
            target = jax.image.resize(target, (target.shape[0], *x.shape[1:]), "linear")
        value = _mean_per_image(jnp.sum(x * target, axis=-1))
        if self.cosine_power:
            eps = 1e-4
            dot = jnp.sum(x * target, axis=(1, 2, 3))
            norms = jnp.sqrt(jnp.sum(x * x, axis=(1, 2, 3)) + eps**2)
            norms = norms * jnp.sqrt(jnp.sum(target * target, axis=(1, 2, 3)) + eps**2)
            value = value * jnp.maximum(dot / norms, 0.1) ** self.cosine_power
        return value


@_pytree
class TotalVariation(Term):
    """Mean absolute difference of vertical plus of horizontal neighbours, in input units."""

    kind: ClassVar[str] = "tv"

    def __call__(self, acts, images):
        rows = jnp.abs(jnp.diff(images, axis=1))
        cols = jnp.abs(jnp.diff(images, axis=2))
        return _mean_per_image(rows) + _mean_per_image(cols)


@_pytree
class L2(Term):
    """Mean square of the image, in input units."""

    kind: ClassVar[str] = "l2"

    def __call__(self, acts, images):
        return _mean_per_image(jnp.square(images))


@_pytree
class Diversity(Term):
    """Mean cosine similarity of an image's centred Gram matrix of `layer` to those of the other
    images of its group (runs of `copies` images; None: the whole batch is one group)."""

    kind: ClassVar[str] = "diversity"
    layer: str = _static()
    copies: int | None = _static(default=None)

    def __call__(self, acts, images):
        x = acts[self.layer]
        copies = self.copies or x.shape[0]
        if copies == 1:
            return jnp.zeros(x.shape[0])
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        gram = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(x.shape[0], -1) / flat.shape[1]
        gram = gram - gram.mean(axis=1, keepdims=True)  # post-ReLU Grams share a large mean
        gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
        groups = gram.reshape(-1, copies, gram.shape[-1])
        similarity = jnp.einsum("gic,gjc->gij", groups, groups)
        others = similarity.sum(axis=2) - jnp.einsum("gii->gi", similarity)
        return (others / (copies - 1)).reshape(-1)


@_pytree
class Alignment(Term):
    """For interpolations: per image, the mean square difference of its activations to those of
    the images up to `reach` places away in the batch, weighted by decay ** distance; half of
    each pair goes to either image, so the batch sum counts every pair once."""

    kind: ClassVar[str] = "alignment"
    layer: str = _static()
    decay: float = _static(default=0.5)
    reach: int = _static(default=4)

    def __call__(self, acts, images):
        x = acts[self.layer]
        total = jnp.zeros(x.shape[0])
        for d in range(1, min(self.reach, x.shape[0] - 1) + 1):
            pair = _mean_per_image(jnp.square(x[d:] - x[:-d])) * (self.decay**d / 2)
            total = total.at[d:].add(pair).at[:-d].add(pair)
        return total


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) or (hasattr(x, "ndim") and x.ndim == 0)


@_pytree
class Objective:
    """A weighted sum of terms; `size` is None for one objective, N for a stack of N."""

    terms: tuple[Term, ...]
    weights: tuple[jax.Array, ...]
    size: int | None = _static(default=None)

    @property
    def reads(self) -> frozenset[str]:
        """The layers the terms read."""
        return frozenset(t.layer_read for t in self.terms if t.layer_read is not None)

    def __call__(self, acts: Acts, images: jax.Array) -> jax.Array:
        """The value per image (B,); a stack must have one entry per image."""
        chosen = self.per_image(images.shape[0])
        return sum(w * t(acts, images) for t, w in zip(chosen.terms, chosen.weights, strict=True))

    def per_image(self, batch: int) -> Objective:
        """This objective with numbers for each of `batch` images: a single objective is
        repeated, a stack must have `batch` entries."""
        if self.size is None:
            return _broadcast(self, batch)
        if self.size != batch:
            raise ValueError(
                f"a stack of {self.size} objectives on {batch} images: take(indices) picks one "
                "entry per image"
            )
        return self

    def take(self, indices: jax.Array) -> Objective:
        """A stack whose entry i is entry indices[i] of this one (a single objective for all)."""
        indices = jnp.asarray(indices)
        if self.size is None:
            return _broadcast(self, indices.shape[0])
        picked = jax.tree.map(lambda x: jnp.take(x, indices, axis=0), self)
        return dataclasses.replace(picked, size=indices.shape[0])

    def __add__(self, other):
        if isinstance(other, numbers.Real) and other == 0:  # sum() starts from 0
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        a, b = self, other
        if a.size != b.size:
            if a.size is not None and b.size is not None:
                raise ValueError(f"cannot add a stack of {a.size} to a stack of {b.size}")
            a, b = (_broadcast(a, b.size), b) if a.size is None else (a, _broadcast(b, a.size))
        return Objective(a.terms + b.terms, a.weights + b.weights, a.size)

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other):
        return self + (-other) if isinstance(other, Objective) else self.__add__(other)

    def __rsub__(self, other):
        return (-self).__add__(other)

    def __mul__(self, other):
        if not _is_number(other):
            return NotImplemented
        return Objective(self.terms, tuple(w * other for w in self.weights), self.size)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self * (1.0 / other) if _is_number(other) else NotImplemented

    def __repr__(self) -> str:
        if self.size is not None:
            return f"stack of {self.size}: {' + '.join(t.describe() for t in self.terms)}"
        parts = []
        for weight, term in zip(map(float, self.weights), self.terms, strict=True):
            sign = ("- " if weight < 0 else "+ ") if parts else ("-" if weight < 0 else "")
            parts.append(f"{sign}{abs(weight):g} * {term.describe()}")
        return " ".join(parts)


def _broadcast(objective: Objective, size: int) -> Objective:
    """A single objective as a stack of `size` equal entries."""
    stacked = jax.tree.map(lambda x: _xp(x).broadcast_to(x, (size, *np.shape(x))), objective)
    return dataclasses.replace(stacked, size=size)


def _leaf(term: Term) -> Objective:
    """An objective of one term; numbers with an extra leading axis make it a stack."""
    sizes = set()
    for name, rank in term.ranks.items():
        value = getattr(term, name)
        if value is not None and np.ndim(value) == rank + 1:
            sizes.add(np.shape(value)[0])
        elif value is not None and np.ndim(value) != rank:
            raise ValueError(f"{term.kind}: {name} must have {rank} or {rank + 1} dimensions")
    if len(sizes) > 1:
        raise ValueError(f"{term.kind}: stacked numbers of different lengths {sorted(sizes)}")
    if not sizes:
        return Objective((term,), (np.float32(1.0),))
    size = sizes.pop()
    fields = {
        name: np.broadcast_to(v, (size, *np.shape(v))) if np.ndim(v) == rank else v
        for name, rank in term.ranks.items()
        if (v := getattr(term, name)) is not None
    }
    return Objective((dataclasses.replace(term, **fields),), (np.ones(size, np.float32),), size)


def _int(x) -> np.ndarray:
    return np.asarray(x, np.int32)


def channel(layer: str, k) -> Objective:
    """Spatial mean of channel k of `layer`; k an int, or an int array (N,): a stack."""
    return _leaf(Channel(layer, _int(k)))


def neuron(layer: str, k, position=None) -> Objective:
    """Channel k at map position (y, x) of `layer`; None: the centre (H // 2, W // 2)."""
    return _leaf(Neuron(layer, _int(k), None if position is None else _int(position)))


def layer_l2(layer: str) -> Objective:
    """Mean square of the whole layer: deep dream."""
    return _leaf(LayerL2(layer))


def channel_l2(layer: str, k) -> Objective:
    """Mean square of channel k of `layer` (deep dream on one filter); k an int or an int
    array (N,): a stack."""
    return _leaf(ChannelL2(layer, _int(k)))


def class_logit(layer: str, k) -> Objective:
    """Logit k of the head layer `layer` (channel k of a dense layer)."""
    return _leaf(ClassLogit(layer, _int(k)))


def class_probability(layer: str, k) -> Objective:
    """Softmax probability of class k over the head layer's logits."""
    return _leaf(ClassProbability(layer, _int(k)))


def direction(layer: str, vector, cosine_power: float = 0.0) -> Objective:
    """Mean over positions of activation . vector, optionally times a power of their cosine
    (see `Direction` for the formula); vector (C,), or (N, C): a stack."""
    return _leaf(Direction(layer, np.asarray(vector, np.float32), float(cosine_power)))


def match(layer: str, target, cosine_power: float = 0.0) -> Objective:
    """Caricature: how much the layer's activations agree, position by position, with a target
    map (H, W, C), e.g. a photo's own activations (see `Match`); (N, H, W, C): a stack."""
    return _leaf(Match(layer, np.asarray(target, np.float32), float(cosine_power)))


def tv() -> Objective:
    """Total variation of the images (a penalty: subtract it)."""
    return _leaf(TotalVariation())


def l2() -> Objective:
    """Mean square of the images (a penalty: subtract it)."""
    return _leaf(L2())


def diversity(layer: str, copies: int | None = None) -> Objective:
    """Similarity of Gram matrices within groups of `copies` images (a penalty: subtract it)."""
    if copies is not None and copies < 2:
        raise ValueError(f"diversity needs groups of at least 2 images, not {copies}")
    return _leaf(Diversity(layer, copies))


def alignment(layer: str, decay: float = 0.5, reach: int = 4) -> Objective:
    """Distance between neighbouring images' activations (a penalty: subtract it); Lucid's
    decay_ratio r is decay = 1 / r."""
    return _leaf(Alignment(layer, float(decay), int(reach)))


def _structure(term: Term) -> tuple:
    return jax.tree.structure(term), tuple(np.shape(x) for x in jax.tree.leaves(term))


def _mismatch(first: Objective, other: Objective) -> str | None:
    """How `other` differs in structure from `first`, or None."""
    if len(first.terms) != len(other.terms):
        return f"it has {len(other.terms)} terms where objectives[0] has {len(first.terms)}"
    for i, (a, b) in enumerate(zip(first.terms, other.terms, strict=True)):
        if _structure(a) != _structure(b):
            return f"term {i} is {b.describe()} where objectives[0] has {a.describe()}"
    return None


def stack(objectives: Sequence[Objective]) -> Objective:
    """One objective whose entry i is objectives[i]; all must have one structure."""
    if not objectives:
        raise ValueError("stack needs at least one objective")
    for i, objective in enumerate(objectives):
        if objective.size is not None:
            raise ValueError(f"objectives[{i}] is already a stack of {objective.size}")
        problem = _mismatch(objectives[0], objective)
        if problem:
            raise ValueError(f"cannot stack objectives[{i}] with objectives[0]: {problem}")
    stacked = jax.tree.map(lambda *xs: _xp(xs[0]).stack(xs), *objectives)
    return dataclasses.replace(stacked, size=len(objectives))


def group(objectives: Sequence[Objective]) -> list[tuple[list[int], Objective]]:
    """Objectives of different structures as stacks of equal ones: (indices, stack) in the
    order each structure first appears."""
    groups: dict[tuple, list[int]] = {}
    for i, objective in enumerate(objectives):
        if objective.size is not None:
            raise ValueError(f"objectives[{i}] is already a stack of {objective.size}")
        groups.setdefault(tuple(map(_structure, objective.terms)), []).append(i)
    return [(indices, stack([objectives[i] for i in indices])) for indices in groups.values()]


def _takes_redirect(method) -> bool:
    try:
        return "redirect" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def features(network, params, images: jax.Array, layers, redirect=None) -> dict[str, jax.Array]:
    """Activations of `layers` for images: one pass through the network's optional
    `features_many(params, images, layers, redirect=None) -> {layer: activations}` where it has
    one (and, when redirecting, one that takes `redirect`), else one `network.features` call per
    layer, each of which recomputes the layers below."""
    layers = sorted(layers)
    many = getattr(network, "features_many", None)
    if not layers:
        return {}
    if many is not None and redirect is None:
        return dict(many(params, images, layers))
    if many is not None and _takes_redirect(many):
        return dict(many(params, images, layers, redirect=redirect))
    return {name: network.features(params, images, name, redirect=redirect) for name in layers}


def evaluate(network, params, objective: Objective, images: jax.Array, redirect=None) -> jax.Array:
    """The objective's value per image (B,) on `network`'s activations for `images`.

    A single channel or class-logit term asks the network for each image's own channel alone
    (`features(..., channels=ks)`: only the requested channels are computed) instead of the
    whole layer.
    """
    if len(objective.terms) == 1 and isinstance(objective.terms[0], Channel):
        chosen = objective.per_image(images.shape[0])
        term, weight = chosen.terms[0], chosen.weights[0]
        selected = network.features(params, images, term.layer, channels=term.k, redirect=redirect)
        return weight * term.reduce(selected)
    acts = features(network, params, images, objective.reads, redirect)
    return objective(acts, images)


def as_loss(objective: Objective, network) -> Callable[..., jax.Array]:
    """The objective as the engine's loss `(params, images, targets, redirect=None) -> (B,)`.

    A stack's entry targets[b] drives image b, so the engine's targets are indices into the
    stack: arange(N) renders each entry once, repeat(arange(N), copies) renders `copies` images
    of each, and padding by repeating the last index stays in range. A single objective ignores
    targets and drives every image.
    """

    def loss(params, images, targets=None, redirect=None):
        chosen = objective
        if objective.size is not None and targets is not None:
            chosen = objective.take(targets)
        return evaluate(network, params, chosen, images, redirect)

    return loss
