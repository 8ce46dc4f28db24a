"""The slug's cache key (issue 18: an unchanged deploy reuses its slug): what the build sees, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from labctl.engine.build import context_digest


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    return root


def test_the_key_follows_every_input_the_build_sees(tmp_path: Path):
    src = _tree(tmp_path / "src")
    files = {"Dockerfile": b"FROM stack\n"}
    key = context_digest(files, src)
    assert context_digest(files, src) == key
    assert context_digest({"Dockerfile": b"FROM other\n"}, src) != key
    (src / "pkg" / "mod.py").write_text("X = 2\n")
    changed = context_digest(files, src)
    assert changed != key
    os.chmod(src / "app.py", 0o755)
    assert context_digest(files, src) != changed
    (src / "new.txt").write_text("")
    assert context_digest(files, src) not in (key, changed)


def test_what_the_build_leaves_out_does_not_count(tmp_path: Path):
    src = _tree(tmp_path / "src")
    key = context_digest({}, src)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (src / "pkg" / "__pycache__").mkdir()
    (src / "pkg" / "__pycache__" / "mod.cpython-313.pyc").write_bytes(b"\0")
    assert context_digest({}, src) == key
