"""Recognition and policy backbones: TSN temporal-pooled ResNets and MobileNetV2."""
