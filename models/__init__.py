"""VGG16: the layer table, the Flax model, the input convention and the weight loaders."""

from render.models.layers import CONV_LAYERS, LAYERS, Layer, get_layer, output_size
from render.models.preprocess import caffe_deprocess, caffe_preprocess
from render.models.vgg import VGG16

__all__ = [
    "CONV_LAYERS",
    "LAYERS",
    "Layer",
    "VGG16",
    "caffe_deprocess",
    "caffe_preprocess",
    "get_layer",
    "output_size",
]
