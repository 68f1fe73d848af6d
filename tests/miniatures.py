"""Miniature copies of the benchmarks in their official layouts, for the reader tests.

Each writer builds the real file names, header lines and formats (``.mat`` structs through
scipy.io.savemat, the In-Shop count lines) around a few tiny JPEGs of varying sizes. Every image
is grey with one saturated patch exactly where its bounding box says; ``Mini.colour`` maps each
image path to its patch colour, so a box crop can be checked by colour.

Example:
    >>> mini = write_cub(tmp_path)  # doctest: +SKIP
    >>> read_cub(mini.root, check_counts=False).path[0] in mini.colour  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import tensorflow as tf

COLOURS = ((255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 200, 0), (160, 0, 200), (0, 200, 200))
BIRDS = {1: "Black_footed_Albatross", 2: "Laysan_Albatross", 100: "Brown_Pelican", 101: "White_Pelican",
         102: "Western_Wood_Pewee", 200: "Common_Yellowthroat"}


@dataclass
class Mini:
    """A written miniature: its root, and each image's patch colour and box ``x1, y1, x2, y2`` (0-based edges)."""

    root: Path
    colour: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    box: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)

    def image(self, path: Path, k: int, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """Write JPEG number ``k`` (sizes vary with k) with a ``colour`` patch; return its box."""
        h, w = 40 + 8 * (k % 3), 48 + 8 * (k % 4)
        x1, y1 = 8 + 2 * (k % 3), 6 + 2 * (k % 2)
        box = (x1, y1, x1 + 24, y1 + 20)
        pixels = np.full((h, w, 3), 128, np.uint8)
        pixels[box[1]:box[3], box[0]:box[2]] = colour
        path.parent.mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(path), tf.io.encode_jpeg(pixels, quality=95))
        self.colour[str(path)], self.box[str(path)] = colour, box
        return box


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_cub(tmp: Path, per_class: int = 3) -> Mini:
    """``CUB_200_2011/`` with classes 1, 2, 100 (train) and 101, 102, 200 (test); classes.txt lists all 200."""
    mini = Mini(tmp / "CUB_200_2011")
    names = {c: f"{c:03d}.{BIRDS.get(c, f'Bird_{c}')}" for c in range(1, 201)}
    images, labels, boxes, split = [], [], [], []
    for n, cls in enumerate(sorted(BIRDS)):
        for i in range(per_class):
            k = len(images) + 1
            rel = f"{names[cls]}/{BIRDS[cls]}_{1000 + k:04d}_{k}.jpg"
            x1, y1, x2, y2 = mini.image(mini.root / "images" / rel, k, COLOURS[n])
            images.append(f"{k} {rel}")
            labels.append(f"{k} {cls}")
            boxes.append(f"{k} {float(x1)} {float(y1)} {float(x2 - x1)} {float(y2 - y1)}")
            split.append(f"{k} {int(i > 0)}")
    _lines(mini.root / "images.txt", images)
    _lines(mini.root / "image_class_labels.txt", labels)
    _lines(mini.root / "bounding_boxes.txt", boxes)
    _lines(mini.root / "train_test_split.txt", split)  # the classification split, unused by DML
    _lines(mini.root / "classes.txt", [f"{c} {n}" for c, n in names.items()])
    return mini


CAR_CLASSES = (1, 2, 98, 99, 100, 196)


def _struct(records: list[dict]) -> np.ndarray:
    """A 1 x N MATLAB struct array; numbers as 1x1 uint16 matrices as in the published files."""
    names = list(records[0])
    out = np.zeros((1, len(records)), dtype=[(n, object) for n in names])
    for i, r in enumerate(records):
        out[0, i] = tuple(v if isinstance(v, str) else np.array([[v]], np.uint16) for v in r.values())
    return out


def _car_names() -> np.ndarray:
    names = np.empty((1, 196), dtype=object)  # a 1 x 196 cell array
    names[0, :] = [f"Make{c} Model{c} {1990 + c % 30}" for c in range(1, 197)]
    names[0, 0] = "AM General Hummer SUV 2000"
    return names


def write_cars(tmp: Path, layout: str = "A", test_annos_in_devkit: bool = True, per_class: int = 3) -> Mini:
    """Cars196 in layout A (``car_ims/`` + ``cars_annos.mat``) or B (the devkit), same images and boxes.

    MATLAB boxes are 1-based and inclusive, so a patch over 0-based columns ``x1..x2-1`` is ``x1+1, x2``.
    """
    mini = Mini(tmp / "cars196")
    annos, train, test = [], [], []
    for n, cls in enumerate(CAR_CLASSES):
        for i in range(per_class):
            k = n * per_class + i + 1
            is_test = (k % 2 == 0)
            if layout == "A":
                rel = f"car_ims/{k:06d}.jpg"
                path = mini.root / rel
            else:  # the devkit numbers each folder from 1
                part = test if is_test else train
                rel = f"{len(part) + 1:05d}.jpg"
                path = mini.root / ("cars_test" if is_test else "cars_train") / rel
            x1, y1, x2, y2 = mini.image(path, k, COLOURS[n])
            box = {"bbox_x1": x1 + 1, "bbox_y1": y1 + 1, "bbox_x2": x2, "bbox_y2": y2, "class": cls}
            if layout == "A":
                annos.append({"relative_im_path": rel, **box, "test": int(is_test)})
            else:
                (test if is_test else train).append({**box, "fname": rel})
    if layout == "A":
        scipy.io.savemat(mini.root / "cars_annos.mat", {"annotations": _struct(annos), "class_names": _car_names()})
    else:
        devkit = mini.root / "devkit"
        devkit.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(devkit / "cars_train_annos.mat", {"annotations": _struct(train)})
        scipy.io.savemat((devkit if test_annos_in_devkit else mini.root) / "cars_test_annos_withlabels.mat",
                         {"annotations": _struct(test)})
        scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": _car_names()})
    return mini


SOP_SUPER = ("bicycle", "cabinet", "chair", "coffee_maker")


def write_sop(tmp: Path) -> Mini:
    """``Stanford_Online_Products/`` with 4 train and 4 test products of 2-3 images (uppercase ``.JPG``)."""
    mini = Mini(tmp / "Stanford_Online_Products")
    rows = {"train": [], "test": []}
    image_id = {"train": 0, "test": 0}
    for cls in range(1, 9):
        part, sup = ("train" if cls <= 4 else "test"), (cls - 1) % 4
        for i in range(2 + cls % 2):
            image_id[part] += 1
            rel = f"{SOP_SUPER[sup]}_final/{111085122870 + cls}_{i}.JPG"
            mini.image(mini.root / rel, cls + i, COLOURS[(cls - 1) % len(COLOURS)])
            rows[part].append(f"{image_id[part]} {cls} {sup + 1} {rel}")
    for part, lines in rows.items():
        _lines(mini.root / f"Ebay_{part}.txt", ["image_id class_id super_class_id path", *lines])
    _lines(mini.root / "Ebay_info.txt", ["image_id class_id super_class_id path",
                                         *rows["train"], *rows["test"]])
    return mini


def write_inshop(tmp: Path, with_boxes: bool = True) -> Mini:
    """In-Shop with 3 train items and 3 test items (2 query + 2 gallery images each), count lines and headers."""
    mini = Mini(tmp / "inshop")
    part_rows, box_rows = [], []
    for n in range(6):
        item = f"id_{n + 1:08d}"
        folder = f"img/{'WOMEN' if n % 2 else 'MEN'}/{'Blouses_Shirts' if n % 2 else 'Denim'}/{item}"
        statuses = ["train"] * 3 if n < 3 else ["query", "gallery", "query", "gallery"]
        for i, status in enumerate(statuses):
            name = f"{folder}/{i + 1:02d}_{i % 2 + 1}_{('front', 'side')[i % 2]}.jpg"
            x1, y1, x2, y2 = mini.image(mini.root / name, n + i, COLOURS[n])
            # The published files align their columns with runs of spaces.
            part_rows.append(f"{name:<60}{item:<20}{status}")
            box_rows.append(f"{name:<60}1  {i % 2 + 1}  {x1}  {y1}  {x2}  {y2}")
    _lines(mini.root / "Eval/list_eval_partition.txt",
           [str(len(part_rows)), "image_name item_id evaluation_status", *part_rows])
    if with_boxes:
        _lines(mini.root / "Anno/list_bbox_inshop.txt",
               [str(len(box_rows)), "image_name  clothes_type  pose_type  x_1  y_1  x_2  y_2", *box_rows])
    return mini


FOLDER_CLASSES = ("boots", "sandals", "sneakers")


def write_folder(tmp: Path) -> Mini:
    """``root/<class>/<image>`` with 3 classes, one image in a sub-folder, an upper-case extension and a stray
    text file and hidden file that are not images."""
    mini = Mini(tmp / "shoes")
    k = 0
    for n, cls in enumerate(FOLDER_CLASSES):
        for name in ("a.jpg", "b.JPEG", "sub/c.jpg")[: 2 + (n == 0)]:
            k += 1
            mini.image(mini.root / cls / name, k, COLOURS[n])
    (mini.root / "boots" / "notes.txt").write_text("not an image")
    (mini.root / "sandals" / ".DS_Store").write_bytes(b"\0")
    return mini


def write_colour_classes(root: Path, classes: int = 12, per_class: int = 4, size: tuple[int, int] = (16, 16),
                         ext: str = "png") -> Path:
    """`root/class<NN>/<i>.<ext>` (PNG or JPEG): one colour per class plus noise, so a tiny network can learn
    the classes. For end-to-end runs of the `folder` reader (training, packaging, multi-worker)."""
    import tensorflow as tf

    encode = tf.io.encode_png if ext == "png" else tf.io.encode_jpeg
    rng = np.random.default_rng(0)
    for c in range(classes):
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)
            path = root / f"class{c:02d}" / f"{i}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(pixels).numpy())
    return root
