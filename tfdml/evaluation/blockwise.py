"""The "blockwise" backend of `tfdml.evaluation.neighbours`: exact top-k by inner product over float32
matmul tiles, so the memory peak is one tile, never ``N x N``.

Why the blockwise top-k costs little beyond the matmul: an ``argpartition`` of
every tile row costs about 4 ns an entry on 2 cores, 70% of the 512-d
matmul's 5.8 ns, so each query keeps its running top-k and a tile
only contributes the entries at or above the query's current k-th similarity,
a lower bound of its final one. Column maxima over short row segments screen a
tile in one fast reduction, shared by its row and column updates; only the few
segments that pass are read entry by entry, and a query's first tile is the
only one partitioned. The running top-k is kept as int64 keys that pack the
similarity and the index, so one integer sort merges candidates exactly, ties
broken by smaller index.
"""

from __future__ import annotations

import math

import numpy as np

from tfdml.evaluation.progress import Verbose, with_progress

# Similarities per blockwise tile (16 MiB of float32, 2048 x 2048). The matmul
# runs at full speed from about 1536 x 1536 on, and a tile that fits in a
# 32 MiB L3 is still cached when the filter passes read it back
# (benchmarks/evaluation.py, --block-sizes, measures the choice).
TILE_ELEMENTS = 2048 * 2048


def block_edges(n: int, block_size: int | None, max_block: int) -> list[int]:
    """Start of every block of ``n`` rows, then ``n``.

    An explicit ``block_size`` makes equal blocks and a partial last one;
    None splits ``n`` into the fewest blocks of at most ``max_block`` rows,
    of equal size, so that no tiny last block wastes a matmul.

    Example:
        >>> block_edges(10, 4, 0), block_edges(10, None, 4)
        ([0, 4, 8, 10], [0, 3, 6, 10])
    """
    if block_size is not None:
        return [*range(0, n, block_size), n]
    n_blocks = math.ceil(n / max(1, max_block))
    return [i * n // n_blocks for i in range(n_blocks + 1)]


def blockwise_search(
    queries: np.ndarray,
    references: np.ndarray | None,
    k: int,
    *,
    block_size: int | None = None,
    symmetric: bool = True,
    verbose: Verbose = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over float32 matmul tiles (rows already unit).

    This is the "blockwise" backend without the checks and normalisation of
    ``nearest_neighbours``. With ``references=None`` (self-retrieval, the
    query's own row excluded) and ``symmetric`` each tile of the upper
    triangle is computed once and feeds both the rows of its row block and
    those of its column block; ``symmetric=False`` computes every tile, as
    for separate references. `verbose` (0, 1, 2, "auto") shows a Progbar over the tiles.

    Example:
        >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
        >>> blockwise_search(x, None, 1)[0][:, 0].tolist()
        [1, 0, 1]
    """
    self_mode = references is None
    r = queries if self_mode else references
    n_q, n_r = queries.shape[0], r.shape[0]
    if n_r >= 2**32:
        raise ValueError(f"at most 2**32 - 1 references are supported, got {n_r}")
    row_edges = block_edges(n_q, block_size, math.isqrt(TILE_ELEMENTS))
    max_rows = int(np.diff(row_edges).max())
    col_edges = row_edges if self_mode else block_edges(n_r, block_size, TILE_ELEMENTS // max_rows)
    # Reused: a fresh 16 MiB array per tile would be page-faulted in every time.
    tile_buf = np.empty(max_rows * int(np.diff(col_edges).max()), np.float32)
    top = _TopK(n_q, k)

    def tile(i: int, j: int) -> np.ndarray:
        q_rows = queries[row_edges[i] : row_edges[i + 1]]
        r_rows = r[col_edges[j] : col_edges[j + 1]]
        out = tile_buf[: len(q_rows) * len(r_rows)].reshape(len(q_rows), len(r_rows))
        return np.matmul(q_rows, r_rows.T, out=out)  # float32 in, float32 accumulation

    n_row_blocks, n_col_blocks = len(row_edges) - 1, len(col_edges) - 1
    symmetric = self_mode and symmetric
    pairs = tile_order(n_row_blocks, n_col_blocks, symmetric)
    # One tile is done in a moment: a bar would only add a line.
    for i, j in with_progress(pairs, verbose if len(pairs) > 1 else 0, total=len(pairs), unit_name="tile"):
        block = tile(i, j)
        if i == j and self_mode:
            np.fill_diagonal(block, -np.inf)  # in place: a query is not its own neighbour
        seg_max = segment_max(block)
        top.update(block, seg_max, row_edges[i], col_edges[j], by_rows=True)
        if symmetric and i != j:  # the tile's columns are queries too
            top.update(block, seg_max, col_edges[j], row_edges[i], by_rows=False)
    return top.result()


def tile_order(n_row_blocks: int, n_col_blocks: int, symmetric: bool) -> list[tuple[int, int]]:
    """The `(row block, column block)` tiles a blockwise search computes, in order.

    Symmetric self-retrieval computes the upper triangle, diagonal tiles first: they hold every pair
    of their block, and they give every row a threshold before the off-diagonal tiles filter on it.

    Example:
        >>> tile_order(2, 2, symmetric=True), tile_order(1, 2, symmetric=False)
        ([(0, 0), (1, 1), (0, 1)], [(0, 0), (0, 1)])
    """
    if not symmetric:
        return [(i, j) for i in range(n_row_blocks) for j in range(n_col_blocks)]
    return [(i, i) for i in range(n_row_blocks)] + [
        (i, j) for i in range(n_row_blocks) for j in range(i + 1, n_col_blocks)]


class _TopK:
    """The running top-k of every query, as packed int64 keys (see ``pack``).

    ``keys[q]`` holds the k best keys of query q in ascending order, so
    ``keys[q, 0]`` is its k-th best, and ``kth[q]`` that key's similarity:
    the threshold a new candidate must reach (-inf while slots are empty).
    """

    def __init__(self, n_queries: int, k: int) -> None:
        self.k = k
        self.keys = np.full((n_queries, k), _EMPTY_KEY, np.int64)
        self.kth = np.full(n_queries, -np.inf, np.float32)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, similarities)`` sorted by similarity descending, ties by smaller index."""
        return unpack(self.keys[:, ::-1])

    def update(
        self, block: np.ndarray, seg_max: np.ndarray, first_target: int, first_other: int,
        *, by_rows: bool,
    ) -> None:
        """Merge a tile into the top-k of its rows (``by_rows``) or of its columns.

        ``seg_max`` is ``segment_max(block)``. Targets are the queries whose
        top-k is updated, from index ``first_target``; the other axis of the
        tile holds their candidates, from index ``first_other``.
        """
        n_targets = block.shape[0] if by_rows else block.shape[1]
        thresholds = self._thresholds(block, first_target, n_targets, by_rows)
        row, col = _entries_at_least(block, seg_max, thresholds, by_rows)
        target, other = (row, col) if by_rows else (col, row)
        self._merge(first_target + target, pack(block[row, col], first_other + other))

    def _thresholds(
        self, block: np.ndarray, first_target: int, n_targets: int, by_rows: bool
    ) -> np.ndarray:
        """A lower bound of each target's final k-th similarity.

        The current k-th similarity is one; a target without k neighbours yet
        takes the k-th largest entry of its line of this tile instead, since
        its final top-k holds at most the top-k of that line.
        """
        thresholds = self.kth[first_target : first_target + n_targets]
        k_missing = thresholds == -np.inf
        if not k_missing.any():
            return thresholds
        thresholds = thresholds.copy()
        lines = block if by_rows else block.T
        if not k_missing.all():
            lines = lines[k_missing]
        kth = lines.shape[1] - min(lines.shape[1], self.k)
        kth_of_line = np.empty(len(lines), np.float32)
        for i in range(0, len(lines), 256):  # np.partition copies: 256 lines at a time
            kth_of_line[i : i + 256] = np.partition(lines[i : i + 256], kth, axis=1)[:, kth]
        thresholds[k_missing] = kth_of_line
        return thresholds

    def _merge(self, target: np.ndarray, cand_keys: np.ndarray) -> None:
        """Merge candidate keys of the given target queries into their top-k."""
        if target.size == 0:
            return
        k = self.k
        order = np.argsort(target, kind="stable")
        target, cand_keys = target[order], cand_keys[order]
        rows, start, counts = np.unique(target, return_index=True, return_counts=True)
        group = np.repeat(np.arange(rows.size), counts)
        # One line per target: its k keys, then its candidates, padded with empty keys.
        lines = np.full((rows.size, k + int(counts.max())), _EMPTY_KEY, np.int64)
        lines[:, :k] = self.keys[rows]
        lines[group, k + np.arange(target.size) - start[group]] = cand_keys
        lines.sort(axis=1)
        self.keys[rows] = lines[:, -k:]
        kth_keys = lines[:, -k]
        self.kth[rows] = np.where(kth_keys == _EMPTY_KEY, -np.inf, unpack(kth_keys)[1])


# Tile rows per segment whose column maxima screen the tile (see _entries_at_least).
SEGMENT = 8


def segment_max(block: np.ndarray) -> np.ndarray:
    """Maximum of every column over each full segment of ``SEGMENT`` rows.

    Returns ``[rows // SEGMENT, cols]``; rows after the last full segment are left out.

    Example:
        >>> block = np.arange(2.0 * (SEGMENT + 2)).reshape(SEGMENT + 2, 2)
        >>> segment_max(block).tolist() == [block[SEGMENT - 1].tolist()]  # 2 rows left over
        True
    """
    n_seg = block.shape[0] // SEGMENT
    return block[: n_seg * SEGMENT].reshape(n_seg, SEGMENT, block.shape[1]).max(axis=1)


def _entries_at_least(
    block: np.ndarray, seg_max: np.ndarray, thresholds: np.ndarray, by_rows: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(row, col)`` of the entries at or above their row's (``by_rows``) or column's threshold.

    A comparison pass plus a scan of every entry costs about 0.6 ns, some 10%
    of the 512-d matmul's time per entry and twice that with the row and the
    column update of a symmetric tile; few entries pass. So the
    maxima of every column over segments of ``SEGMENT`` rows (one fast
    reduction, shared by the row and the column update) are compared first,
    with a segment's smallest row threshold, and only the segments that reach
    it are read entry by entry.
    """
    n_cols = block.shape[1]
    n_seg = seg_max.shape[0]
    if by_rows:
        seg_thresholds = thresholds[: n_seg * SEGMENT].reshape(n_seg, SEGMENT).min(axis=1)[:, None]
    else:
        seg_thresholds = thresholds[None, :]
    seg, col = np.divmod(np.flatnonzero(seg_max >= seg_thresholds), n_cols)
    row = (seg[:, None] * SEGMENT + np.arange(SEGMENT)).ravel()
    col = np.repeat(col, SEGMENT)
    # Rows past the last full segment are compared directly.
    tail_row, tail_col = np.divmod(
        np.flatnonzero(
            block[n_seg * SEGMENT :]
            >= (thresholds[n_seg * SEGMENT :, None] if by_rows else thresholds)
        ),
        n_cols,
    )
    row = np.concatenate([row, n_seg * SEGMENT + tail_row])
    col = np.concatenate([col, tail_col])
    keep = block[row, col] >= (thresholds[row] if by_rows else thresholds[col])
    return row[keep], col[keep]


# Empty top-k slot: below every packed similarity, -inf included.
_EMPTY_KEY = np.iinfo(np.int64).min
_LOW_32 = np.int64(0xFFFFFFFF)


def pack(similarities: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """int64 keys whose order is similarity ascending, then index descending.

    The float32 bits, made monotone, fill the high 32 bits and the complement
    of the index (< 2**32) the low ones, so one integer sort ranks by
    similarity with ties broken by index, as ``lexsort`` would, at a fraction
    of its cost. -0.0 is packed as +0.0 so that the two tie.

    Example:
        >>> keys = pack(np.array([0.5, 0.5, -1.0], np.float32), np.array([7, 3, 0]))
        >>> np.argsort(keys).tolist()  # -1.0 first; of the 0.5s, index 7 ranks below 3
        [2, 0, 1]
    """
    bits = (np.asarray(similarities, np.float32) + np.float32(0.0)).view(np.int32)
    ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    return (ordered.astype(np.int64) << 32) | (_LOW_32 - np.asarray(indices, np.int64))


def unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, similarities)`` of ``pack``'s keys: int64 and float32.

    Example:
        >>> unpack(pack(np.array([0.25], np.float32), np.array([9])))
        (array([9]), array([0.25], dtype=float32))
    """
    ordered = (keys >> 32).astype(np.int32)
    bits = ordered ^ ((ordered >> 31) & np.int32(0x7FFFFFFF))
    return _LOW_32 - (keys & _LOW_32), bits.view(np.float32)
