"""The README's notebook example runs as written (one epoch instead of ten, to stay fast)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_notebook_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = blocks[0]
    assert "model.fit(" in example and "epochs=10" in example
    monkeypatch.chdir(tmp_path)  # the example exports into the working directory
    namespace: dict = {}
    exec(compile(example.replace("epochs=10", "epochs=1"), str(README), "exec"), namespace)
    assert (tmp_path / "emoji_embedder" / "saved_model.pb").is_file()
    assert namespace["validation"].best_epoch == 1
