"""Every python block of README.md runs as written (the notebook trains one epoch instead of ten).

Blocks run in README order in one namespace, in a temporary working directory, like cells of one
notebook. Before the blocks that load `runs/emoji/...` (what `make demo` writes), the test writes
those SavedModels from the notebook's model and gives the names the text says a reader brings
(`images`, `images_uint8`, `query.png`). A block preceded by `<!-- skip: reason -->` is not run; the reason is
printed in the test report.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import tfdml

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!--\s*skip:\s*(?P<skip>.+?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", flags=re.S)


@dataclass
class Block:
    line: int
    code: str
    skip: str | None


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [Block(text.count("\n", 0, m.start("code")) + 1, m["code"], m["skip"]) for m in BLOCK.finditer(text)]


def test_lazy_submodules_named_in_the_readme_resolve_after_import_tfdml():
    assert tfdml.mixing.Metrix.__name__ == "Metrix" and tfdml.ccp.CCPRounds.__name__ == "CCPRounds"
    for name in tfdml.__all__:
        assert getattr(tfdml, name) is not None, name
    for used in set(re.findall(r"\btfdml\.([a-z_]+)\.", README.read_text())):
        assert used in tfdml.__all__, f"the README uses tfdml.{used}, which `import tfdml` does not resolve"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tfdml.nope  # noqa: B018


def test_every_readme_python_block_runs(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) >= 3 and "model.fit(" in blocks[0].code and "epochs=10" in blocks[0].code
    skipped = [f"README.md:{b.line}: {b.skip}" for b in blocks if b.skip]
    assert len(skipped) <= 1, f"keep the skipped README blocks few: {skipped}"
    monkeypatch.chdir(tmp_path)  # the examples write into the working directory
    namespace: dict = {}
    for block in blocks:
        if block.skip:
            continue
        if "runs/emoji/" in block.code and not (tmp_path / "runs" / "emoji").exists():
            _write_demo_outputs(namespace, tmp_path / "runs" / "emoji")
        code = block.code.replace("epochs=10", "epochs=1")
        exec(compile("\n" * (block.line - 1) + code, str(README), "exec"), namespace)  # tracebacks name README lines
    assert (tmp_path / "emoji_embedder" / "saved_model.pb").is_file()
    assert namespace["validation"].best_epoch == 1
    for reason in skipped:
        warnings.warn(f"README block not run: {reason}", stacklevel=1)


def _write_demo_outputs(namespace: dict, run_dir: Path) -> None:
    """What `make demo` leaves in runs/emoji/, from the notebook's model, and the images a reader has."""
    import tensorflow as tf

    from tfdml.export import export_retrieval_model, export_saved_model

    model, test = namespace["model"], namespace["test"]
    export_saved_model(model, run_dir / "saved_model", image_size=32)
    export_retrieval_model(model, test, run_dir / "retrieval_model", image_size=32)
    rgba = test.images[:2]
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    images = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # composited on white, as training does
    namespace.update(images=images.astype(np.float32), images_uint8=np.round(images).astype(np.uint8))
    tf.io.write_file("query.png", tf.io.encode_png(rgba[0]))  # an RGBA file, as the README feeds it
