"""render: batched feature visualization of VGG16 filters with JAX."""

__version__ = "0.1.0"
