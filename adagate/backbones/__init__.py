"""Recognition and policy backbones: TSN temporal-pooled ResNets, MobileNetV2, a plain ConvNet."""

from adagate.backbones.convnet import PlainConvNet
from adagate.backbones.mobilenet import MobileNetV2, mobilenet_v2
from adagate.backbones.resnet import TSNResNet, tsn_resnet18, tsn_resnet34, tsn_resnet50
from adagate.backbones.weights import inflate_conv_weight, load_torchvision_weights

__all__ = [
    "MobileNetV2",
    "PlainConvNet",
    "TSNResNet",
    "inflate_conv_weight",
    "load_torchvision_weights",
    "mobilenet_v2",
    "tsn_resnet18",
    "tsn_resnet34",
    "tsn_resnet50",
]
