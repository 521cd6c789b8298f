"""flowerbed's default Flower app: SqueezeNet-style CNN on 32x32 digits."""
