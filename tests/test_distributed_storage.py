"""Where a distributed run writes (`mlxwx.distributed.storage`): a folder, or a URL that pyarrow
opens. (S3 itself, through a moto server: tests/test_distributed.py.)"""

from __future__ import annotations

import pytest

from mlxwx.distributed.storage import Destination
from mlxwx.errors import MlxwxError


@pytest.mark.parametrize("url", ["folder", "file://"])
def test_files_appear_whole_and_are_listed_relative(tmp_path, url):
    """A path, and a URL of a filesystem that is not an object store (a temporary dot file
    moved into place)."""
    root = tmp_path / "out"
    where = Destination(str(root) if url == "folder" else f"file://{root}")
    where.check()
    assert root.is_dir() and where.existing() == set()
    where.write("a/talk.json", '{"segments": []}')
    where.write("talk.txt", "héllo\n")
    (root / "a" / ".talk.json.1234.tmp").write_text("left by a killed writer")
    assert where.existing() == {"a/talk.json", "talk.txt"}
    assert (root / "talk.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in (root / "a").iterdir()) == [".talk.json.1234.tmp", "talk.json"]
    where.remove("talk.txt")
    where.remove("never-written.tsv")
    assert where.existing() == {"a/talk.json"}


def test_an_output_url_pyarrow_cannot_open_is_one_line(tmp_path):
    with pytest.raises(MlxwxError, match=r"^--output-dir nosuch://bucket/x: "):
        Destination("nosuch://bucket/x").check()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MlxwxError, match="not a folder"):
        Destination(str(blocker)).check()
