"""Where a distributed run's outputs go: a local folder, or a folder URL of any filesystem
pyarrow opens (`s3://bucket/prefix`, `gs://...`, `hdfs://...`, `file://...`; options such as
`?endpoint_override=host:port&scheme=http` in the URL, credentials from the environment of
each node, as pyarrow reads them).

Every file appears whole or not at all: a local file is linked into place when written
(`mlxwx.writers.write_atomic`); an object store (S3, GCS) shows an object only once its upload
completes; any other filesystem gets a temporary name (a dot file) moved into place.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import MlxwxError
from ..inputs import check_output_dir, is_url
from ..writers import write_atomic

# Filesystems whose writes are already whole-or-nothing (an object appears on upload complete).
OBJECT_STORES = frozenset({"s3", "gcs"})


@dataclass(frozen=True)
class Destination:
    """The output folder `url` (a path or a URL); files are named relative to it (posix)."""

    url: str

    @functools.cached_property
    def _remote(self) -> tuple[Any, str] | None:
        """(pyarrow filesystem, base path), or None for a local folder; opened once."""
        if not is_url(self.url):
            return None
        from pyarrow import fs as pafs

        try:
            filesystem, base = pafs.FileSystem.from_uri(self.url)
        except (ValueError, OSError) as err:
            raise MlxwxError(f"--output-dir {self.url}: {err}") from None
        return filesystem, base.rstrip("/")

    def check(self) -> None:
        """Create the folder if needed; MlxwxError when it cannot be reached or made."""
        remote = self._remote
        if remote is None:
            check_output_dir(Path(self.url))
            return
        filesystem, base = remote
        try:
            filesystem.create_dir(base, recursive=True)
        except OSError as err:
            raise MlxwxError(f"--output-dir {self.url}: {' '.join(str(err).split())}") from None

    def existing(self) -> set[str]:
        """The names of the files under the folder (relative, posix), dot files left out."""
        remote = self._remote
        if remote is None:
            root = Path(self.url)
            found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        else:
            from pyarrow import fs as pafs

            filesystem, base = remote
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            infos = filesystem.get_file_info(selector)
            found = (i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File)
        return {name for name in found if not PurePosixPath(name).name.startswith(".")}

    def write(self, name: str, text: str) -> None:
        """`text` as the file `name`, whole or not at all."""
        remote = self._remote
        if remote is None:
            write_atomic(Path(self.url) / name, text)
            return
        filesystem, base = remote
        path = f"{base}/{name}"
        if filesystem.type_name in OBJECT_STORES:
            _upload(filesystem, path, text)
            return
        parent, _, leaf = path.rpartition("/")
        filesystem.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{leaf}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            _upload(filesystem, tmp, text)
            filesystem.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                filesystem.delete_file(tmp)
            raise

    def remove(self, name: str) -> None:
        """Delete the file `name` if it exists."""
        remote = self._remote
        if remote is None:
            (Path(self.url) / name).unlink(missing_ok=True)
            return
        filesystem, base = remote
        from pyarrow import fs as pafs

        if filesystem.get_file_info(f"{base}/{name}").type != pafs.FileType.NotFound:
            filesystem.delete_file(f"{base}/{name}")


def _upload(filesystem: Any, path: str, text: str) -> None:
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))
