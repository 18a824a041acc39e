"""The pixels: CIFAR-10 read and checked (cifar10.py), batched for Keras with or without TensorFlow
(batches.py), and augmented (augment.py)."""
