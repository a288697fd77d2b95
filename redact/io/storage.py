"""Blob-storage paths through Beam ``FileSystems`` (local, gs://, s3://): input patterns,
relative output paths, reads with retries and atomic writes.

Local files are read with ``os`` directly (never a FIFO or a device: see :func:`read_bytes`);
remote objects through ``FileSystems``.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from redact.errors import ImageError, Stage
from redact.io.inputs import (
    REASONS,
    RejectedName,
    check_relative_name,
    classify_local,
    mode_reason,
    oserror_reason,
)

_LOG = logging.getLogger(__name__)
_GLOB_CHARS = "*?["

TMP_PREFIX = ".redact-tmp-"
"""Start of :func:`write_atomic`'s temporary names: ``TMP_PREFIX + <32 hex digits>``."""
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{32}\Z")


def is_temp_name(name: str) -> bool:
    """Whether a file name (no folder) is one of :func:`write_atomic`'s temporaries (exactly
    ``TMP_PREFIX`` + 32 hex digits; an input merely containing the text is not)."""
    return _TMP_NAME.match(name) is not None


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
        if not _is_remote(src) and os.path.lexists(src):  # literal, even "[2024]" or "a*.jpg"
            path = os.path.abspath(src)
            if os.path.isdir(path):
                return cls(pattern=os.path.join(path, "**"), base=path)
            return cls(pattern=path, base=os.path.dirname(path))  # any kind: a FIFO, a link...
        first_glob = min((i for i in (src.find(c) for c in _GLOB_CHARS) if i >= 0), default=-1)
        if first_glob >= 0:
            if not _is_remote(src) and not os.path.isabs(src):  # Beam matches none relative
                src = os.path.join(os.getcwd(), src)
                first_glob = min(i for i in (src.find(c) for c in _GLOB_CHARS) if i >= 0)
            head = src[:first_glob]
            base = head[: head.rfind("/") + 1] if "/" in head else ""
            return cls(pattern=src, base=base.rstrip("/") or ("/" if base == "/" else ""))
        if not _is_remote(src):
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
        """Path of ``uri`` relative to :attr:`base`, verbatim (no normalisation: a leading
        ``/`` left after the base, as in ``base//x.jpg``, is for :func:`output_uri` to refuse)."""
        prefix = self.base.rstrip("/") + "/"
        if uri.startswith(prefix):
            return uri[len(prefix) :]
        raise ValueError(f"{uri!r} is not under the input base {self.base!r}")


def output_uri(dst: str, relative: str) -> str:
    """Where the published copy of an image with this relative path goes: ``dst/relative``.

    Never rewritten nor normalised, so distinct names never share an output. Raises
    :class:`~redact.io.inputs.RejectedName` (a ValueError; ``.reason`` from
    :func:`~redact.io.inputs.check_relative_name`) for a name that cannot be published as is.
    """
    reason = check_relative_name(relative)
    if reason is not None:
        raise RejectedName(reason, relative)
    return _join(dst, relative)


def normalize_dir(path: str) -> str:
    """Absolute local path, or a remote URI without a trailing slash."""
    return path.rstrip("/") if _is_remote(path) else os.path.abspath(path)


def is_under(path: str, folder: str) -> bool:
    folder = normalize_dir(folder)
    path = normalize_dir(path)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _read_local(path: str) -> bytes:
    """A local regular file's bytes; ImageError(stage READ) for anything else, never blocking.

    Checked before opening (:func:`classify_local`: a FIFO or device is never opened) and
    after (``fstat`` of the descriptor, opened with ``O_NONBLOCK``: a FIFO swapped in
    meanwhile neither blocks nor gets read).
    """
    reason = classify_local(path)
    if reason is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            reason = oserror_reason(e, path)
            if reason is None:
                raise
        else:
            with open(fd, "rb") as f:
                reason = mode_reason(os.fstat(fd).st_mode)
                if reason is None:
                    return f.read()
    raise ImageError(reason, f"cannot read {path}: {REASONS[reason]}", Stage.READ)


def _read_remote(uri: str) -> bytes:
    with FileSystems.open(
        uri, mime_type="application/octet-stream", compression_type="uncompressed"
    ) as f:
        data: bytes = f.read()
        return data


def read_bytes(uri: str, *, retries: int = 3, backoff_s: float = 0.5) -> bytes:
    """Read a whole object, retrying transient errors; raises ImageError(stage=READ) at the end.

    A local path that is not a readable regular file (a FIFO, a device, a dangling link, ...:
    :func:`~redact.io.inputs.classify_local`'s reasons) fails at once, without retries and
    without being opened for reading.
    """
    last: Exception | None = None
    for attempt in range(retries):
        try:
            return _read_remote(uri) if _is_remote(uri) else _read_local(uri)
        except ImageError:
            raise
        except Exception as e:  # any other filesystem error is retried, then reported
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
    copy + delete; the final object appears in one piece). The temporary's name is
    ``TMP_PREFIX`` + 32 hex digits (44 bytes), whatever the length of the target's name.
    """
    folder = FileSystems.split(uri)[0] if _is_remote(uri) else os.path.dirname(uri)
    tmp = _join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
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
