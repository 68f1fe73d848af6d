"""Grids of queries and their matches: framed tiles with a caption under each (rank, score, class).

Frames: blue the query, green a match of the query's class, red another class, grey unknown.
Captions need Pillow (`pip install 'tfdml[plot]'`); without it the grid has frames only.

Example:
    >>> import numpy as np
    >>> tiles = np.zeros((1, 3, 16, 16, 3), np.uint8)
    >>> grid = draw_grid(tiles, [["query", "match", "mismatch"]], [["q", "1 0.9", "2 0.5"]])
    >>> grid.shape[1] == 3 * (16 + 2 * (FRAME + MARGIN))
    True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FRAME = 4  # pixels of frame around each tile
MARGIN = 2  # white pixels around each frame
COLOURS = {"query": (40, 90, 210), "match": (0, 160, 60), "mismatch": (215, 30, 30), "unknown": (150, 150, 150)}
PLACEHOLDER = 225  # grey of a tile whose image is unavailable
LINE = 12  # caption line height in pixels (Pillow's default bitmap font)


def draw_grid(tiles: np.ndarray, frames: Sequence[Sequence[str]], captions: Sequence[Sequence[str]] | None = None,
              ) -> np.ndarray:
    """uint8 RGB grid of `tiles` `[rows, columns, t, t, 3]`, each framed by `COLOURS[frame]`, captioned below.

    A caption may hold several lines (`\\n`); the caption band is as tall as the longest. Captions
    are dropped (frames kept) when Pillow is not installed.
    """
    rows, columns, tile = tiles.shape[0], tiles.shape[1], tiles.shape[2]
    draw_text = _text_drawer() if captions is not None else None
    lines = max((c.count("\n") + 1 for row in captions or [] for c in row), default=0) if draw_text else 0
    cell_w, cell_h = tile + 2 * (FRAME + MARGIN), tile + 2 * (FRAME + MARGIN) + lines * LINE
    grid = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(columns):
            if c >= len(frames[r]):
                continue
            y, x = r * cell_h + MARGIN, c * cell_w + MARGIN
            grid[y:y + tile + 2 * FRAME, x:x + tile + 2 * FRAME] = COLOURS[frames[r][c]]
            grid[y + FRAME:y + FRAME + tile, x + FRAME:x + FRAME + tile] = tiles[r, c]
    if draw_text is not None and lines:
        grid = draw_text(grid, [(r * cell_h + cell_h - lines * LINE - 1, c * cell_w + MARGIN, text)
                                for r, row in enumerate(captions) for c, text in enumerate(row)])
    return grid


def table_grid(table, rows: Sequence[Sequence[int]], frames: Sequence[Sequence[str]],
               captions: Sequence[Sequence[str]], tile: int = 64) -> np.ndarray:
    """`draw_grid` of a table's images: grid line i shows the table rows `rows[i]` (shorter lines leave blanks).

    Example (not run as a doctest: it needs a gallery's images):
        >>> grid = table_grid(table, [[4, 7, 2]], [["query", "match", "mismatch"]],
        ...                   [["AP 0.25", "1: 0.91", "2: 0.88"]])  # doctest: +SKIP
    """
    needed = sorted({r for line in rows for r in line})
    pixels = dict(zip(needed, table_thumbnails(table.select(needed), tile)))
    tiles = np.full((len(rows), max(map(len, rows)), tile, tile, 3), PLACEHOLDER, np.uint8)
    for i, line in enumerate(rows):
        for j, row in enumerate(line):
            if pixels[row] is not None:
                tiles[i, j] = pixels[row]
    return draw_grid(tiles, frames, captions)


def short(text: str, width: int = 14) -> str:
    """`text` cut to `width` characters (the last one `~`), to fit under a 64-pixel tile.

    Example:
        >>> short("Black_footed_Albatross")
        'Black_footed_~'
    """
    return text if len(text) <= width else text[: width - 1] + "~"


def _text_drawer():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    font = ImageFont.load_default()

    def draw(grid: np.ndarray, texts: list[tuple[int, int, str]]) -> np.ndarray:
        image = Image.fromarray(grid)
        pen = ImageDraw.Draw(image)
        for y, x, text in texts:
            pen.multiline_text((x, y), text, fill=(0, 0, 0), font=font, spacing=1)
        return np.asarray(image).copy()

    return draw


def thumbnails(table, tile: int) -> np.ndarray:
    """uint8 `[N, tile, tile, 3]` of a table's images, as the evaluation pipeline prepares them."""
    from tfdml.data.pipeline import eval_dataset

    pixels = np.concatenate([x.numpy() for x, _ in eval_dataset(table, image_size=tile, batch_size=64)])
    return np.round(pixels).clip(0, 255).astype(np.uint8)


def table_thumbnails(table, tile: int) -> list[np.ndarray | None]:
    """Thumbnails of a table's rows; None for a row whose file is missing or not an image (so one bad file
    leaves a grey tile instead of failing the whole picture)."""
    import tensorflow as tf

    from tfdml.data.pipeline import find_bad_images

    out: list[np.ndarray | None] = [None] * len(table)
    bad = {row for row, _ in find_bad_images(table)} if table.images is None else set()
    good = [i for i in range(len(table)) if i not in bad]
    if good:
        try:
            for i, pixels in zip(good, thumbnails(table.select(good), tile)):
                out[i] = pixels
        except tf.errors.OpError:  # a file changed or does not decode: placeholders
            pass
    return out
