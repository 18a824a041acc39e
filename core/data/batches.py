"""The host pipeline without TensorFlow: numpy batches through `keras.utils.PyDataset`.

Under `KERAS_BACKEND=jax` (GPU machines with CUDA for JAX but no TensorFlow) there is no tf.data,
so `core.data.cifar10.make_dataset` hands out an `ArrayBatches` instead. It ships what the tf.data
pipeline ships: uint8 images at the source resolution, in a seeded order that changes each
epoch, one-hot labels; the model casts, augments and resizes on the device. The host-side
augment and resize exist only for checkpoints from before that moved into the model. In training
it is, like the tf.data pipeline, a stream of whole epochs whose order is a function of
(seed, epoch) alone, so a resumed run can start in the middle of one.

A batch is one fancy-index of the image array (a copy of 3 KB per CIFAR image), so a single
host core delivers tens of thousands of images a second; no worker processes are needed.
"""

from __future__ import annotations

import keras
import numpy as np

NUM_CLASSES = 10


class ArrayBatches(keras.utils.PyDataset):
    """(images, labels) batches of in-memory arrays, for `fit`, `evaluate` and `predict`.

    Args:
        x, y: uint8 images (N, H, W, 3) and int labels (N,).
        batch_size: Images per batch.
        training: Reshuffle every epoch (seeded) and augment if asked; otherwise keep order.
        image_size: Resize to this side on the host (float32, bilinear); None: images stay as stored.
        augment_flip, crop_padding: Host-side flip and reflect-pad translate (training only).
        seed: Seeds the order and the augmentation; each epoch still differs from the last.
        one_hot: Labels one-hot float32 (B, 10); else int32 (B,).
        drop_remainder: Leave out the last, smaller batch.
        shard: (this process, processes) of a run over several processes: every process walks the
            same order (the same seed) and ships its own contiguous part of each batch, which
            Keras assembles into the global batch; batch_size is the global batch.
        first_epoch, epochs, skip_batches: In training, the stream holds these epochs (0-based),
            less the first `skip_batches` batches of the first (core.data.cifar10.make_dataset).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool,
                 image_size: int | None = None, augment_flip: bool = False, crop_padding: int = 0,
                 seed: int = 0, one_hot: bool = True, drop_remainder: bool = False,
                 shard: tuple[int, int] = (0, 1), first_epoch: int = 0, epochs: int = 1, skip_batches: int = 0):
        super().__init__()
        self.shard = shard
        self.x, self.y = x, y.astype(np.int32)
        self.batch_size, self.training, self.one_hot = batch_size, training, one_hot
        self.image_size = None if image_size in (None, x.shape[1]) else int(image_size)
        self.flip, self.pad = augment_flip and training, crop_padding if training else 0
        self.seed = seed
        self._per_epoch = len(x) // batch_size if drop_remainder else -(-len(x) // batch_size)
        self._first_epoch, self._skip = (first_epoch, skip_batches) if training else (0, 0)
        self._batches = self._per_epoch * (epochs if training else 1) - self._skip
        self._order_of: tuple[int, np.ndarray] | None = None   # (epoch, its order): the one being read

    def _order(self, epoch: int) -> np.ndarray:
        if not self.training:
            return np.arange(len(self.x))
        if self._order_of is None or self._order_of[0] != epoch:
            self._order_of = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.x)))
        return self._order_of[1]

    def __len__(self) -> int:
        return self._batches

    def __getitem__(self, index: int):
        if not 0 <= index < self._batches:
            raise IndexError(f"batch {index} of {self._batches}")
        # The index counts batches of the stream; its epoch and place in it fix the batch.
        epoch, batch = divmod(index + self._skip, self._per_epoch)
        epoch += self._first_epoch
        idx = self._order(epoch)[batch * self.batch_size:(batch + 1) * self.batch_size]
        part, parts = self.shard
        idx = idx[len(idx) * part // parts:len(idx) * (part + 1) // parts]
        images = self._augment(self.x[idx], np.random.default_rng([self.seed, epoch, batch])) \
            if (self.flip or self.pad) else self.x[idx]
        if self.image_size is not None:
            images = keras.ops.convert_to_numpy(keras.ops.image.resize(
                images.astype(np.float32), (self.image_size, self.image_size), interpolation="bilinear"))
        labels = self.y[idx]
        return images, (np.eye(NUM_CLASSES, dtype=np.float32)[labels] if self.one_hot else labels)

    def _augment(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The tf.data pipeline's flip and reflect-pad translate, as one gather per batch."""
        n, height, width = batch.shape[:3]
        u = rng.random((n, 3))
        rows = np.broadcast_to(np.arange(height), (n, height))
        cols = np.broadcast_to(np.arange(width), (n, width))
        if self.pad:
            shift = np.minimum((u[:, 1:] * (2 * self.pad + 1)).astype(int), 2 * self.pad) - self.pad
            rows, cols = _reflect(rows + shift[:, :1], height), _reflect(cols + shift[:, 1:], width)
        if self.flip:
            cols = np.where(u[:, :1] < 0.5, cols[:, ::-1], cols)
        return batch[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """numpy's "reflect" padding as index arithmetic: -1 -> 1, size -> size - 2."""
    last = size - 1
    return last - np.abs(last - np.abs(index))
