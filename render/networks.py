"""The `model` and `weights` settings to a Network and its params.

model=vgg16 / vgg19: Keras' ImageNet weights (downloaded), seeded random ones or a local file, in
either weight layout. model=keras: a Keras 3 file, read as a chain of layers into compiled JAX
when it is one, else run by Keras itself. model=flax: a module from the user's factory.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, is_dataclass, replace

import jax
from omegaconf import DictConfig, OmegaConf

from render.classes import imagenet_names
from render.errors import UserError
from render.models.download import imagenet_weights
from render.models.layers import NUM_CLASSES
from render.models.network import CONVENTIONS, Network
from render.models.vgg import ARCHITECTURES, VGGNetwork
from render.models.weights import WeightsError, load_weights, random_params

log = logging.getLogger("render")
MODELS = (*ARCHITECTURES, "keras", "flax")


@dataclass(frozen=True)
class Loaded:
    network: Network
    params: object  # None until read (see load)
    weights_path: str | None  # VGG weights file; None for random or other models


def _preprocess(model: DictConfig) -> str:
    preprocess = model.get("preprocess")
    if preprocess is None:
        raise UserError(
            f"model={model.name} needs model.preprocess: caffe, tf, torch or unit (RGB/255); a "
            "model file does not record how its training images were scaled"
        )
    if preprocess not in CONVENTIONS:
        raise UserError(
            f"model.preprocess={preprocess} is invalid: use caffe, tf, torch or unit (RGB/255)"
        )
    return preprocess


def read_labels(path: str | None) -> tuple[str, ...] | None:
    """Class names from a file, one per line (blank lines ignored)."""
    if path is None:
        return None
    try:
        with open(os.path.expanduser(str(path)), encoding="utf-8") as handle:
            names = tuple(line.strip() for line in handle if line.strip())
    except OSError as err:
        raise UserError(f"model.labels={path}: cannot read it ({err.strerror})") from None
    if not names:
        raise UserError(f"model.labels={path} is empty: give one class name per line")
    return names


def _with_labels(network: Network, labels: tuple[str, ...] | None, path) -> Network:
    """The network with its head's class names: the labels file, ImageNet's for 1000 classes,
    or none; a labels file whose count differs from the head is an error."""
    head = next((layer for layer in network.layers if layer.name == network.head), None)
    if labels is not None and head is not None and len(labels) != head.channels:
        raise UserError(
            f"model.labels={path} has {len(labels)} names but the model's head "
            f"({head.name}) has {head.channels} classes: give one name per class"
        )
    if labels is None and head is not None and head.channels == NUM_CLASSES:
        labels = imagenet_names()
    if is_dataclass(network):
        return replace(network, labels=labels)
    network.labels = labels  # a network object of its own (Keras' is one)
    return network


def weights_file(cfg: DictConfig, need_top: bool = False) -> str | None:
    """The VGG weights file to load (downloading the official one if needed); None for random."""
    spec = str(cfg.weights)
    try:
        if spec == "random":
            return None
        if spec == "imagenet":
            return imagenet_weights(need_top, cfg.cache_dir, cfg.weights_url, cfg.model.name)
    except WeightsError as err:
        raise UserError(str(err)) from None
    return os.path.abspath(os.path.expanduser(spec))


def _vgg(cfg: DictConfig, need_top: bool, read: bool) -> Loaded:
    architecture = cfg.model.name
    labels = read_labels(cfg.model.labels)
    convention = CONVENTIONS[_preprocess(cfg.model)]
    path = weights_file(cfg, need_top)
    params, divisor = None, 1
    if path is None:
        if read:
            log.warning("weights=random: seeded random weights, a smoke test, not a result")
            params = random_params(seed=0, top=need_top, architecture=architecture)
    else:
        try:
            params, info = load_weights(path, need_top, read, architecture)
        except WeightsError as err:
            raise UserError(str(err)) from None
        divisor = info.width_divisor
        if read:
            log.info("weights: %s (%s layout)", path, info.layout)
    network = VGGNetwork(architecture, divisor, cfg.precision, convention=convention)
    return Loaded(_with_labels(network, labels, cfg.model.labels), params, path)


def _keras(cfg: DictConfig) -> Loaded:
    from render.models.keras_file import KerasFileError, NotAChainError, load_keras_file

    model = cfg.model
    if model.file is None:
        raise UserError("model=keras needs model.file=path/to/model.keras (or .h5)")
    path = os.path.abspath(os.path.expanduser(str(model.file)))
    preprocess, labels = _preprocess(model), read_labels(model.labels)
    if model.backend not in ("auto", "chain", "keras"):
        raise UserError(f"model.backend={model.backend} is invalid: use auto, chain or keras")
    try:
        if model.backend != "keras":
            try:
                network, params = load_keras_file(path, preprocess)
            except NotAChainError as err:
                if model.backend == "chain":
                    raise
                log.info("%s: %s; running it through Keras", path, err)
                network, params = _keras_backend(path, preprocess)
        else:
            network, params = _keras_backend(path, preprocess)
    except KerasFileError as err:
        raise UserError(str(err)) from None
    return Loaded(_with_labels(network, labels, model.labels), jax.device_put(params), None)


def _keras_backend(path: str, preprocess: str):
    from render.models.keras_backend import KerasMissingError, keras_network

    try:
        return keras_network(path, preprocess)
    except KerasMissingError as err:
        raise UserError(str(err)) from None


def _flax(cfg: DictConfig) -> Loaded:
    from render.models.flax_module import FactoryError, flax_network

    model = cfg.model
    if model.factory is None:
        raise UserError("model=flax needs model.factory=pkg.module:function")
    labels = read_labels(model.labels)
    convention = CONVENTIONS[_preprocess(model)]
    try:
        network, params = flax_network(str(model.factory), convention, int(model.input_size))
    except FactoryError as err:
        raise UserError(str(err)) from None
    return Loaded(_with_labels(network, labels, model.labels), jax.device_put(params), None)


def load_network(cfg: DictConfig, need_top: bool = False, read: bool = True) -> Loaded:
    """The configured network and (with read) its params on the default device. VGG weights
    are only shape-checked without read; other models are always built whole."""
    name = cfg.model.name
    if name not in MODELS:
        raise UserError(f"model={name} is invalid: use {', '.join(MODELS)}")
    if name in ARCHITECTURES:
        loaded = _vgg(cfg, need_top, read)
        if loaded.params is not None:
            loaded = replace(loaded, params=jax.device_put(loaded.params))
        return loaded
    if cfg.precision != "fp32":
        raise UserError(f"precision={cfg.precision} is for model=vgg16 or vgg19: use fp32")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    key = json.dumps([model, file_identity(str(model.get("file")))], sort_keys=True)
    if key not in _BUILT:  # checking a command and running it build the model once
        _BUILT[key] = _keras(cfg) if name == "keras" else _flax(cfg)
    return _BUILT[key]


_BUILT: dict[str, Loaded] = {}


def model_identity(cfg: DictConfig) -> dict | None:
    """What identifies a model other than the default VGG16 in run keys (None for vgg16, so
    its runs keep the folders they had before models could be chosen)."""
    model = cfg.model
    if model.name == "vgg16" and model.preprocess == "caffe":
        return None
    identity = {"name": model.name, "preprocess": model.get("preprocess")}
    if model.name == "keras":
        identity["file"] = file_identity(str(model.file))
    if model.name == "flax":
        identity |= {"factory": model.factory, "input_size": model.input_size}
    return identity


def model_folder(cfg: DictConfig) -> str | None:
    """The folder level naming a non-default model, e.g. vgg19 or keras-m (None for vgg16)."""
    model = cfg.model
    if model_identity(cfg) is None:
        return None
    if model.name == "keras" and model.file:
        stem = os.path.splitext(os.path.basename(str(model.file)))[0]
        return f"keras-{stem}"
    if model.name == "flax" and model.factory:
        return "flax-" + str(model.factory).replace(":", ".").rsplit(".", 1)[-1]
    return str(model.name)


def file_identity(spec: str) -> str:
    """A file in a run key: its path, size and date (so a changed file renders anew)."""
    path = os.path.abspath(os.path.expanduser(spec))
    try:
        stat = os.stat(path)
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return path


def load_params(
    weights_path: str | None, need_top: bool = False, architecture: str = "vgg16"
) -> dict:
    """VGG params from a weights file on the default device; seeded random ones for None."""
    if weights_path is None:
        return jax.device_put(random_params(seed=0, top=need_top, architecture=architecture))
    try:
        params, _ = load_weights(weights_path, need_top=need_top, architecture=architecture)
    except WeightsError as err:
        raise UserError(str(err)) from None
    return jax.device_put(params)
