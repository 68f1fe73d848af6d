"""Emoji across vendors, from the npm package ``emoji-datasource``: one class per emoji.

Each class is one base emoji (skin-tone variants are ignored); its images are the vendors'
RGBA drawings of it (32 px by default, 64 px with ``size=64``), cut from the packages' sprite
sheets. The packages are fetched with ``npm pack`` on first use into the data directory (``root``,
else ``$TFDML_DATA``, else ``~/.cache/tfdml``) and the decoded images are cached there as one ``.npz``.

Licences differ by vendor (Google Apache-2.0, Twitter CC-BY-4.0; Apple's and Facebook's are not
freely licensed), hence the ``vendors`` argument.

Example (not run as a doctest: it downloads the emoji dataset):
    >>> table = read_emoji(vendors=("google", "twitter"))  # doctest: +SKIP
    >>> table.images.shape[1:], table.path[0]  # doctest: +SKIP
    ((32, 32, 4), 'google/hash')
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdml.data.readers import register_reader
from tfdml.data.table import DatasetTable
from tfdml.errors import ConfigError, DataError

VENDORS = ("apple", "google", "twitter", "facebook")
SIZES = (16, 20, 32, 64)  # the sprite sheets of emoji-datasource 16 (32 px in the base package, all per vendor)
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else ``$TFDML_DATA``, else ``~/.cache/tfdml``."""
    return Path(root or os.environ.get("TFDML_DATA") or Path.home() / ".cache" / "tfdml").expanduser()


def _npm_package(vendor: str | None, size: int, version: str) -> str:
    """The npm package to take a file from: the base one has 32 px sheets only, each vendor's has every
    size and the same ``emoji.json`` (so a size other than 32 never needs the base package)."""
    return f"emoji-datasource@{version}" if size == 32 else f"emoji-datasource-{vendor}@{version}"


def fetch_emoji_package(data: Path, version: str, vendors: Sequence[str], size: int) -> Path:
    """Make sure ``emoji.json`` and the vendors' sheets are under ``data``; return the ``package`` dir.

    ``emoji-datasource`` holds ``emoji.json`` and the 32 px sheets; other sizes (16, 20, 64) come
    from the per-vendor packages ``emoji-datasource-<vendor>``, whose ``emoji.json`` is the same.
    Missing files are fetched with ``npm pack`` and moved into place one atomic rename per
    file, so an interrupted fetch leaves either whole files or none.
    """
    root = data / f"emoji-datasource-{version}"
    wanted = {"package/emoji.json": vendors[0], **{f"package/img/{v}/sheets/{size}.png": v for v in vendors}}
    by_package: dict[str, list[str]] = {}
    for member, vendor in wanted.items():
        if not (root / member).is_file():
            by_package.setdefault(_npm_package(vendor, size, version), []).append(member)
    for spec, members in by_package.items():
        _npm_fetch(data, root, spec, members)
    return root / "package"


def _npm_fetch(data: Path, root: Path, spec: str, members: list[str]) -> None:
    """``npm pack spec`` into a temporary folder under ``data``, then move ``members`` to ``root``."""
    tgz_name = spec.replace("@", "-")
    by_hand = (f"fetch it by hand with: mkdir -p {root} && cd {root} && npm pack {spec} && "
               f"tar xzf {tgz_name}.tgz; or set $TFDML_DATA to a directory that has it")
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"the emoji data is missing: expected {root / members[0]}, and npm (Node.js) is not "
                        f"on PATH to fetch it; install npm, or {by_hand}")
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data, prefix=".fetch-emoji-") as tmp:
        try:
            proc = subprocess.run([npm, "pack", spec], cwd=tmp, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DataError(f"'npm pack {spec}' failed ({err}); expected {root / members[0]}; {by_hand}") from None
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            raise DataError(f"'npm pack {spec}' failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}; "
                            f"expected {root / members[0]}; {by_hand}")
        with tarfile.open(tgz[0]) as tar:
            for member in members:
                try:
                    source = tar.extractfile(member)
                except KeyError:
                    stems = {Path(n).stem for n in tar.getnames() if "/sheets/" in n}
                    sizes = sorted(int(stem) for stem in stems if stem.isdigit())
                    raise DataError(f"{spec} has no {member}; sheet sizes in the package: {sizes}") from None
                staged = Path(tmp, member)
                staged.parent.mkdir(parents=True, exist_ok=True)
                with source, open(staged, "wb") as out:
                    shutil.copyfileobj(source, out)
        for member in members:
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp, member), root / member)


def _decode_png(path: Path) -> np.ndarray:
    # TensorFlow is the one image decoder the package depends on; imported here so that
    # reading a cached table stays TF-free and fast.
    import tensorflow as tf

    return tf.io.decode_png(tf.io.read_file(str(path)), channels=4).numpy()


def _cut_cells(package: Path, vendors: Sequence[str], size: int) -> DatasetTable:
    entries = json.loads((package / "emoji.json").read_text(encoding="utf-8"))
    sheets = {v: _decode_png(package / "img" / v / "sheets" / f"{size}.png") for v in vendors}
    paths, labels, images, names = [], [], [], []
    for entry in entries:
        # Where has_img_<vendor> is false the sheet holds another vendor's drawing.
        drawn = [v for v in vendors if entry.get(f"has_img_{v}")]
        if not drawn:
            continue
        x, y = entry["sheet_x"] * (size + 2) + 1, entry["sheet_y"] * (size + 2) + 1
        for vendor in drawn:
            images.append(sheets[vendor][y:y + size, x:x + size])
            paths.append(f"{vendor}/{entry['short_name']}")
            labels.append(len(names))
        names.append(entry["short_name"])
    if not names:
        raise DataError(f"{package / 'emoji.json'} lists no emoji drawn by {list(vendors)}")
    return _table(np.array(paths), np.array(labels), names, np.stack(images))


def _table(path: np.ndarray, label: np.ndarray, class_names: Sequence[str], images: np.ndarray) -> DatasetTable:
    # Every emoji image is both a query and a gallery item; there are no boxes.
    n = len(path)
    return DatasetTable(path=path, label=label, split=np.full(n, ""), is_query=np.ones(n, bool),
                        is_gallery=np.ones(n, bool), bbox=np.full((n, 4), np.nan, np.float32),
                        class_names=tuple(class_names), images=images)


@register_reader("emoji")
def read_emoji(
    root: str | os.PathLike | None = None,
    *,
    vendors: Sequence[str] = VENDORS,
    version: str = "16.0.0",
    size: int = 32,
) -> DatasetTable:
    """Read the emoji dataset: one class per base emoji, one RGBA ``size`` px image per vendor drawing.

    Args:
        root: data directory; defaults to ``$TFDML_DATA`` or ``~/.cache/tfdml``.
        vendors: which vendors' drawings to include (rows are ordered emoji-major, then vendor).
        version: ``emoji-datasource`` npm version.
        size: sprite size in pixels: 32 from ``emoji-datasource``; 16, 20 or 64 from the per-vendor
            packages ``emoji-datasource-<vendor>`` (about 75 MB each, fetched once). The 64 px
            drawings are the vendors' own, not 32 px ones upsampled.

    Returns:
        An unsplit table with ``images`` uint8 ``[N, size, size, 4]`` and ``path`` ``"<vendor>/<short_name>"``.
    """
    vendors = tuple(vendors)
    unknown = sorted(set(vendors) - set(VENDORS))
    if not vendors or unknown or len(set(vendors)) != len(vendors):
        raise ConfigError(f"emoji vendors {list(vendors)} are invalid; choose distinct names from {list(VENDORS)}")
    if size not in SIZES:
        raise ConfigError(f"emoji size {size!r} has no sprite sheet; choose one of {list(SIZES)} (pixels)")
    data = data_dir(root)
    cache = data / f"emoji-datasource-{version}" / f"emoji_{'-'.join(vendors)}_{size}px_v{_CACHE_FORMAT}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return _table(z["path"], z["label"], z["class_names"].tolist(), z["images"])
    table = _cut_cells(fetch_emoji_package(data, version, vendors, size), vendors, size)
    # Write to a temporary name, then rename: a reader never sees a half-written cache.
    with tempfile.NamedTemporaryFile(dir=cache.parent, prefix=".tmp-", suffix=".npz", delete=False) as f:
        np.savez_compressed(f, path=table.path, label=table.label, images=table.images,
                            class_names=np.array(table.class_names))
    os.replace(f.name, cache)
    return table
