"""The official Keras ImageNet VGG16 and VGG19 files: found locally or downloaded into a cache.

Downloads go through pooch, which streams into a temporary file beside the cache entry,
checks the md5 and only then renames it into place, so a failed or corrupt transfer never
leaves a file that looks finished.
"""

from __future__ import annotations

import os

import pooch
import requests

from render.models.weights import WeightsError

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
KERAS_FILES = {  # (architecture, need_top) -> (file name, md5)
    ("vgg16", False): (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
    ("vgg16", True): (
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
    ),
    ("vgg19", False): (
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    ),
    ("vgg19", True): (
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "cbe5617147190e668d6c5d5026f83318",
    ),
}
KERAS_MODELS_DIR = os.path.join("~", ".keras", "models")


def imagenet_weights(
    need_top: bool, cache_dir: str, base_url: str = BASE_URL, architecture: str = "vgg16"
) -> str:
    """Path of the official file: ~/.keras/models, then the cache, else download into the cache."""
    fname, md5 = KERAS_FILES[architecture, need_top]
    for folder in (KERAS_MODELS_DIR, cache_dir):
        path = os.path.join(os.path.expanduser(folder), fname)
        if os.path.isfile(path):
            return path
    return fetch(base_url.rstrip("/") + "/" + fname, md5, cache_dir, fname)


def fetch(url: str, md5: str, cache_dir: str, fname: str) -> str:
    """Download `url` into `cache_dir/fname`, verified against `md5`, atomically."""
    cache_dir = os.path.expanduser(cache_dir)
    target = os.path.join(cache_dir, fname)
    by_hand = f"download it yourself and place it at {target} (or pass weights=/path/to/{fname})"
    try:
        return pooch.retrieve(
            url, known_hash=f"md5:{md5}", fname=fname, path=cache_dir, progressbar=True
        )
    except ValueError:
        raise WeightsError(f"download of {url} is corrupt (md5 mismatch); {by_hand}") from None
    except requests.exceptions.RequestException as err:
        reason = type(err).__name__
        raise WeightsError(f"cannot download {url} ({reason}); {by_hand}") from None
    except OSError as err:
        raise WeightsError(f"cannot write {target} ({err.strerror}); {by_hand}") from None
