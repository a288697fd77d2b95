"""Blob-storage paths through Beam ``FileSystems`` (local, gs://, s3://): input patterns,
relative output paths, reads with retries and atomic writes."""

from __future__ import annotations

import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from redact.errors import ImageError, Stage

_LOG = logging.getLogger(__name__)
_GLOB_CHARS = "*?["


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    if _is_remote(base):  # object-store URIs join with "/"; no filesystem client needed
        return base.rstrip("/") + "/" + rel.lstrip("/")
    return os.path.join(base, rel)


@dataclass(frozen=True)
class InputSpec:
    """Where the images come from.

    ``pattern`` is what ``fileio.MatchFiles`` matches; ``base`` is the folder the published
    copies' relative paths are computed from (``DST/<path relative to base>``).
    """

    pattern: str
    base: str

    @classmethod
    def parse(cls, src: str) -> InputSpec:
        """A directory (recursive), a glob, a single file, or a gs:// / s3:// prefix or pattern."""
        if not src:
            raise ValueError("--input is empty")
        first_glob = min((i for i in (src.find(c) for c in _GLOB_CHARS) if i >= 0), default=-1)
        if first_glob >= 0:
            head = src[:first_glob]
            base = head[: head.rfind("/") + 1] if "/" in head else ""
            return cls(pattern=src, base=base.rstrip("/"))
        if not _is_remote(src):
            path = os.path.abspath(src)
            if os.path.isdir(path):
                return cls(pattern=os.path.join(path, "**"), base=path)
            if os.path.isfile(path):
                return cls(pattern=path, base=os.path.dirname(path))
            raise ValueError(f"--input {src!r}: no such file or directory")
        # Remote without wildcards: a single object if it exists as such, else a prefix.
        stripped = src.rstrip("/")
        if not src.endswith("/"):
            try:
                found = FileSystems.match([stripped])[0].metadata_list
            except Exception:  # a prefix is not an object: treat it as a folder
                found = []
            if len(found) == 1 and found[0].path == stripped:
                return cls(pattern=stripped, base=FileSystems.split(stripped)[0])
        return cls(pattern=stripped + "/**", base=stripped)

    def relative(self, uri: str) -> str:
        """Path of ``uri`` relative to :attr:`base` (forward slashes)."""
        base = self.base.rstrip("/")
        if base and uri.startswith(base + "/"):
            return uri[len(base) + 1 :]
        if not base:
            return uri.lstrip("/")
        raise ValueError(f"{uri!r} is not under the input base {base!r}")


def output_uri(dst: str, relative: str) -> str:
    """Where the published copy of an image with this relative path goes."""
    rel = posixpath.normpath(relative.replace("\\", "/"))
    if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
        raise ValueError(f"relative path {relative!r} escapes the output folder")
    return _join(dst, rel)


def normalize_dir(path: str) -> str:
    """Absolute local path, or a remote URI without a trailing slash."""
    return path.rstrip("/") if _is_remote(path) else os.path.abspath(path)


def is_under(path: str, folder: str) -> bool:
    folder = normalize_dir(folder)
    path = normalize_dir(path)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def read_bytes(uri: str, *, retries: int = 3, backoff_s: float = 0.5) -> bytes:
    """Read a whole object, retrying transient errors; raises ImageError(stage=READ) at the end."""
    last: Exception | None = None
    for attempt in range(retries):
        try:
            with FileSystems.open(
                uri, mime_type="application/octet-stream", compression_type="uncompressed"
            ) as f:
                return f.read()
        except Exception as e:  # any filesystem error is retried, then reported
            last = e
            if attempt + 1 < retries:
                _LOG.warning("read %s failed (attempt %d/%d): %s", uri, attempt + 1, retries, e)
                time.sleep(backoff_s * (2**attempt))
    raise ImageError(
        "unreadable", f"cannot read {uri} after {retries} attempts: {last}", Stage.READ
    )


def write_atomic(uri: str, data: bytes, *, retries: int = 3, backoff_s: float = 0.5) -> None:
    """Write ``data`` so that readers see either the old object or the complete new one.

    Writes a temporary sibling then renames it over ``uri`` (on object stores the rename is a
    copy + delete; the final object appears in one piece).
    """
    folder, name = FileSystems.split(uri) if _is_remote(uri) else os.path.split(uri)
    tmp = _join(folder, f".{name}.redact-tmp-{uuid.uuid4().hex}")
    last: Exception | None = None
    for attempt in range(retries):
        try:
            with FileSystems.create(
                tmp, mime_type="application/octet-stream", compression_type="uncompressed"
            ) as f:
                f.write(data)
            FileSystems.rename([tmp], [uri])
            return
        except Exception as e:  # retried, then reported as a write failure
            last = e
            try:
                if FileSystems.exists(tmp):
                    FileSystems.delete([tmp])
            except Exception as cleanup:  # best effort: the write error matters more
                _LOG.warning("could not remove temporary %s: %s", tmp, cleanup)
            if attempt + 1 < retries:
                time.sleep(backoff_s * (2**attempt))
    raise ImageError("write_failed", f"cannot write {uri}: {last}", Stage.WRITE)
