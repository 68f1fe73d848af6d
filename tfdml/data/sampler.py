"""m-per-class batch sampling driven by one label array.

Each batch holds ``batch_size // m`` classes with ``m`` images each, so every anchor has
positives. An epoch cuts every class's shuffled images into groups of ``m`` (``ceil(count / m)``
groups per class) and deals all the groups into batches: every image appears once, except those in
the fewer than ``batch_size // m`` groups left over for an incomplete last batch, which is dropped.
Classes smaller than ``m`` and the trailing group of a class are padded by drawing again from the
same class. At Stanford Online Products' scale (60k images, 11k classes) an epoch takes well under
a second.

With ``neighbourhood=n`` and a table of each class's nearest classes (``set_neighbours``) a batch
is dealt in neighbourhoods instead: a class drawn as above brings its ``n - 1`` nearest classes that
still have groups this epoch, so look-alike classes (an emoji's male and female versions, one
vendor's moon phases) meet as each other's negatives, which uniform draws of 32 classes out of 860
rarely arrange ("hard class" batches, as in Suh et al., CVPR 2019, and Smart Mining).

Example:
    >>> import numpy as np
    >>> sampler = MPerClassSampler(np.repeat(np.arange(10), 4), m=2, batch_size=8, seed=0)
    >>> batches = sampler.epoch_batches(0)
    >>> batches.shape, len(sampler)
    ((5, 8), 5)
    >>> near = MPerClassSampler(np.repeat(np.arange(10), 4), m=2, batch_size=8, neighbourhood=2)
    >>> near.set_neighbours(np.array([[c ^ 1] for c in range(10)]))  # 0-1, 2-3, ... are look-alikes
    >>> classes = np.repeat(np.arange(10), 4)[near.epoch_batches(0)[0]]
    >>> bool(sorted(set(classes))[0] // 2 == sorted(set(classes))[1] // 2)  # a pair of look-alikes
    True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from tfdml.errors import DataError


class MPerClassSampler:
    """Batches of row indices with ``m`` rows from each of ``batch_size // m`` distinct classes.

    Args:
        labels: class label of each row (any integers; only equality matters).
        m: rows per class in a batch.
        batch_size: rows per batch, a multiple of ``m``.
        seed: epochs are deterministic in ``(seed, epoch)``.
        neighbourhood: classes per neighbourhood (1: every class drawn independently); takes effect
            once ``set_neighbours`` has given the classes' neighbours.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, m: int = 4, batch_size: int = 128, seed: int = 0,
                 neighbourhood: int = 1) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if m < 1 or batch_size < m or batch_size % m:
            raise DataError(f"batch_size={batch_size} must be a positive multiple of m={m} (samples per class)")
        # Rows sorted by class: class c owns rows order[start[c]:start[c] + count[c]].
        self.order = np.argsort(labels, kind="stable")
        _, self.start, self.count = np.unique(labels[self.order], return_index=True, return_counts=True)
        self.labels, self.m, self.batch_size, self.seed = labels, m, batch_size, seed
        self.classes_per_batch = batch_size // m
        if len(self.count) < self.classes_per_batch:
            raise DataError(f"{len(self.count)} classes cannot fill a batch of {self.classes_per_batch} classes x "
                            f"{m} samples; lower batch_size or raise m")
        self.groups_per_class = -(-self.count // m)  # ceil
        self.group_start = np.cumsum(self.groups_per_class) - self.groups_per_class
        self.num_batches = int(self.groups_per_class.sum()) // self.classes_per_batch
        if not 1 <= neighbourhood <= self.classes_per_batch:
            raise DataError(f"neighbourhood={neighbourhood} classes must be between 1 and the batch's "
                            f"{self.classes_per_batch} classes (batch_size // m)")
        self.neighbourhood, self.neighbours = neighbourhood, None

    def set_neighbours(self, neighbours: np.ndarray) -> None:
        """``neighbours[c]``: the classes nearest to class ``c`` (dense indices ``0..C-1``, in the order
        of ``np.unique(labels)``), nearest first; later epochs deal their batches by them."""
        neighbours = np.asarray(neighbours, dtype=np.int64)
        if neighbours.ndim != 2 or len(neighbours) != len(self.count) or neighbours.size and (
                neighbours.min() < 0 or neighbours.max() >= len(self.count)):
            raise DataError(f"neighbours must be [classes={len(self.count)}, k] class indices in "
                            f"[0, {len(self.count)}), got shape {neighbours.shape}")
        self.neighbours = neighbours

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.num_batches

    def _groups(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """All groups of one epoch: rows ``[G, m]`` and class index ``[G]``, vectorised over classes."""
        m, n_classes = self.m, len(self.count)
        cls_of_sorted = np.repeat(np.arange(n_classes), self.count)
        # Shuffle rows within each class: sort by (class, random key).
        perm = np.lexsort((rng.random(len(self.order)), cls_of_sorted))
        rank = np.arange(len(perm)) - self.start[cls_of_sorted]
        group_of_row = self.group_start[cls_of_sorted] + rank // m
        group_class = np.repeat(np.arange(n_classes), self.groups_per_class)
        # Pre-fill every slot with a random row of the group's class, then overwrite the slots
        # that real rows occupy: what stays is the with-replacement padding of short groups.
        slots = self.start[group_class][:, None] + (rng.random((len(group_class), m))
                                                     * self.count[group_class][:, None]).astype(np.int64)
        groups = self.order[slots]
        groups[group_of_row, rank % m] = self.order[perm]
        return groups, group_class

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """Row indices ``[len(self), batch_size]`` int64 for one epoch, deterministic in ``(seed, epoch)``."""
        rng = np.random.default_rng([self.seed, epoch])
        groups, group_class = self._groups(rng)
        # Stratified shuffle: a class's groups sit at evenly spaced random times through the
        # epoch, so same-class groups rarely meet in one batch and the epoch's tail stays mixed.
        rank = np.arange(len(group_class)) - self.group_start[group_class]
        key = (rank + rng.random(len(self.count))[group_class]) / self.groups_per_class[group_class]
        queue = deque(np.argsort(key, kind="stable").tolist())
        if self.neighbours is not None and self.neighbourhood > 1:
            return groups[self._neighbourhood_batches(queue, group_class)].reshape(self.num_batches, self.batch_size)
        cls, k, chosen = group_class.tolist(), self.classes_per_batch, []
        for _ in range(self.num_batches):
            batch, seen, deferred = [], set(), []
            while len(batch) < k and queue:
                g = queue.popleft()
                if cls[g] in seen:
                    deferred.append(g)
                else:
                    batch.append(g)
                    seen.add(cls[g])
            if len(batch) < k:  # too few distinct classes left: a repeated class is unavoidable
                take = k - len(batch)
                batch, deferred = batch + deferred[:take], deferred[take:]
            queue.extendleft(reversed(deferred))  # deferred groups lead the next batch
            chosen.append(batch)
        return groups[np.asarray(chosen, dtype=np.int64)].reshape(self.num_batches, self.batch_size)

    def _neighbourhood_batches(self, queue: deque, group_class: np.ndarray) -> np.ndarray:
        """Group indices ``[num_batches, classes_per_batch]``: each class popped from ``queue`` (the
        stratified order) brings its nearest classes that still have unused groups this epoch."""
        pending: list[list[int]] = [[] for _ in self.count]  # unused groups per class, queue order
        for g in queue:
            pending[group_class[g]].append(g)
        used = np.zeros(len(group_class), dtype=bool)
        cls, k, chosen = group_class.tolist(), self.classes_per_batch, []
        for _ in range(self.num_batches):
            batch: list[int] = []
            seen: set[int] = set()

            def take(c: int, g: int | None = None) -> None:
                g = pending[c].pop(0) if g is None else pending[c].pop(pending[c].index(g))
                used[g] = True
                batch.append(g)
                seen.add(c)

            deferred = []
            while len(batch) < k and queue:
                g = queue.popleft()
                if used[g]:
                    continue
                if cls[g] in seen:
                    deferred.append(g)
                    continue
                take(cls[g], g)
                brought = 1
                for n in self.neighbours[cls[g]].tolist():
                    if brought == self.neighbourhood or len(batch) == k:
                        break
                    if n not in seen and pending[n]:
                        take(n)
                        brought += 1
            queue.extendleft(reversed(deferred))
            while len(batch) < k:  # few classes left: deferred groups, then (unavoidably) a repeated class
                left = [c for c in range(len(pending)) if pending[c]]
                take(next((c for c in left if c not in seen), left[0]))
            chosen.append(batch)
        return np.asarray(chosen, dtype=np.int64)

    def as_dataset(self, start_epoch: int = 0):
        """An endless ``tf.data.Dataset`` of int64 ``[batch_size]`` index batches, epoch after epoch."""
        import tensorflow as tf

        def epoch(e):
            # One Python call per epoch; numpy_function (unlike from_generator) leaves no
            # iterator state to finalise at interpreter exit.
            batches = tf.numpy_function(self.epoch_batches, [e], tf.int64, stateful=False)
            return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(batches, [len(self), self.batch_size]))

        return tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch)
