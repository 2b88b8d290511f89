"""render: batched feature visualization of CNN filters with JAX.

From Python (see render.api):

    import render
    images = render.visualize(layer="block3_conv1", filters=[0, 1, 2, 3])
    render.atlas(images, labels=[0, 1, 2, 3])

Importing the package is cheap: JAX and Hydra load on the first call.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "atlas", "load_model", "visualize"]


def __getattr__(name: str):
    if name in ("visualize", "load_model", "atlas"):
        from render import api

        return getattr(api, name)
    raise AttributeError(f"module 'render' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
