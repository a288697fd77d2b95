"""Every input accounted for: which relative names are publishable, which local paths are
regular files, what a local pattern matches (broken links, FIFOs and any extension included),
which inputs would collide on one output, and whether an output folder is safe.

Pure building blocks, decided from names and ``lstat``/``stat`` only: nothing here opens an
input for reading. Reason codes are short strings (see :data:`REASONS`) meant for the manifest
and quarantine records.

Why not ``fileio.MatchFiles`` for local inputs (Beam 2.77, verified): ``LocalFileSystem``
lists with ``os.walk`` and stats each file with ``os.path.getsize``; an ``OSError`` there is
silently dropped, so dangling symlinks and symlink loops vanish without a trace. Symlinked
directories are not descended (``followlinks=False``) and unreadable directories are skipped
(``os.walk`` ignores the error): their files vanish too. FIFOs, sockets and devices are
reported like files (size 0), and ``ReadMatches``/``FileSystems.open`` would then open them
(a FIFO blocks forever). A relative glob (``*.jpg``) matches nothing. :func:`list_local`
reports all of these, each with a verdict.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from apache_beam.io.filesystem import FileSystem

NAME_MAX = 255
"""Longest file-name component in bytes (UTF-8) on common filesystems (ext4, XFS, APFS)."""

SNIFF_BYTES = 16
"""How many leading bytes :func:`sniff_format` looks at."""

# The magic values of redact.io.codec.decode_image (not imported: storage, which every stage
# imports, must not depend on the codecs).
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GLOB_CHARS = "*?["

REASONS: Mapping[str, str] = {
    # relative names (check_relative_name)
    "name_absolute": "the relative path is absolute",
    "name_parent_ref": "the path has a '..' component",
    "name_backslash": "the name contains a backslash",
    "name_control_char": "the name contains a control character or line separator",
    "name_not_utf8": "the name is not valid UTF-8",
    "name_empty_component": "the path has an empty component ('a//b', a trailing '/')",
    "name_dot_component": "the path has a '.' component",
    "name_too_long": f"a path component is longer than {NAME_MAX} bytes",
    # local paths (classify_local, list_local)
    "missing": "no such file",
    "not_regular_fifo": "a FIFO (named pipe), not a regular file",
    "not_regular_device": "a device, not a regular file",
    "not_regular_socket": "a socket, not a regular file",
    "not_regular_directory": "a directory, not a regular file",
    "not_regular_other": "not a regular file",
    "dangling_symlink": "a symbolic link to nothing",
    "symlink_loop": "a symbolic link loop",
    "unreadable_permission": "no permission to read it",
    # content (sniff_format; wired by the pipeline)
    "not_an_image": "neither a JPEG nor a PNG (unrecognised magic bytes)",
    "output_collision": "another input publishes to the same output path",
}
"""Every reason code of this module with a one-line explanation."""

# A legal name character: an allowlist of Unicode general categories (letters, marks, numbers,
# punctuation, symbols, spaces, format characters, private-use and not-yet-assigned code
# points). Excluded: Cc (C0/C1 controls, DEL), Zl/Zp (U+2028/U+2029: line breaks for
# str.splitlines), Cs (lone surrogates: os.fsdecode's escape of non-UTF-8 bytes).
_LEGAL_CATEGORIES = frozenset(
    "Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Cf Co Cn".split()
)


class RejectedName(ValueError):
    """A relative path that cannot be published as is; ``reason`` is its code."""

    def __init__(self, reason: str, relative: str) -> None:
        super().__init__(f"{reason}: relative path {relative!r}: {REASONS[reason]}")
        self.reason = reason
        self.relative = relative


def _char_reason(c: str) -> str | None:
    if c == "\\":
        return "name_backslash"
    cat = unicodedata.category(c)
    if cat in _LEGAL_CATEGORIES:
        return None
    return "name_not_utf8" if cat == "Cs" else "name_control_char"


def check_relative_name(rel: str, *, max_component_bytes: int = NAME_MAX) -> str | None:
    """None if ``rel`` can be published as ``DST/<rel>`` exactly as written, else a reason.

    A legal path is ``/``-separated components, each non-empty, not ``.`` or ``..``, at most
    ``max_component_bytes`` bytes of UTF-8, made of legal characters (see
    ``_LEGAL_CATEGORIES``; no backslash). The reason is the first that applies, in this order:
    ``name_absolute``, ``name_parent_ref``, the first bad character's (``name_backslash``,
    ``name_not_utf8``, ``name_control_char``), ``name_empty_component``,
    ``name_dot_component``, ``name_too_long``. The empty string has one empty component.
    """
    if rel.startswith("/"):
        return "name_absolute"
    parts = rel.split("/")
    if ".." in parts:
        return "name_parent_ref"
    for c in rel:
        if c != "/" and (reason := _char_reason(c)) is not None:
            return reason
    if "" in parts:
        return "name_empty_component"
    if "." in parts:
        return "name_dot_component"
    if any(len(p.encode("utf-8")) > max_component_bytes for p in parts):
        return "name_too_long"
    return None


def safe_text(path: str) -> str:
    """``path`` as printable UTF-8 text for records and logs (undecodable bytes as ``\\xNN``,
    control characters escaped); not reversible, for display only."""
    raw = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(
        c if unicodedata.category(c) in _LEGAL_CATEGORIES else c.encode("unicode_escape").decode()
        for c in raw
    )


def output_collisions(relative_paths: Iterable[str]) -> dict[str, list[str]]:
    """Output relative paths claimed more than once, each with its claims (as often as given).

    Exact comparison: accepted names are published verbatim (:func:`check_relative_name`), so
    distinct names never share an output; a collision means the same relative path came from
    two inputs (a selection listing an image twice, two listings of one folder). Every input
    of a group is to be quarantined (``output_collision``). See :func:`case_collisions` for
    names that only collide on case- or normalisation-insensitive filesystems.
    """
    counts = Counter(relative_paths)
    return {rel: [rel] * n for rel, n in sorted(counts.items()) if n > 1}


def case_collisions(relative_paths: Iterable[str]) -> dict[str, list[str]]:
    """Distinct relative paths that are one file on a case-insensitive, Unicode-normalising
    filesystem (macOS, Windows): ``NFC(casefold)`` key -> the sorted distinct names (2 or more).

    Not an error on the usual Linux or object-store outputs; worth a warning when the
    published tree is copied to such a filesystem.
    """
    groups: defaultdict[str, set[str]] = defaultdict(set)
    for rel in relative_paths:
        key = unicodedata.normalize("NFC", unicodedata.normalize("NFC", rel).casefold())
        groups[key].add(rel)
    return {k: sorted(v) for k, v in sorted(groups.items()) if len(v) > 1}


def sniff_format(head: bytes) -> str | None:
    """``"jpeg"`` or ``"png"`` from the magic bytes at the start of a file, else None.

    Same magic values as :func:`redact.io.codec.decode_image`; images are recognised by
    content, never by extension (a file that is neither: reason ``not_an_image``).
    """
    head = bytes(head[:SNIFF_BYTES])
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_PNG_MAGIC):
        return "png"
    return None


def _is_remote(path: str) -> bool:
    return "://" in path


def mode_reason(mode: int) -> str | None:
    """None for a regular file's ``st_mode``, else its ``not_regular_*`` reason."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "not_regular_fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not_regular_device"
    if stat.S_ISSOCK(mode):
        return "not_regular_socket"
    if stat.S_ISDIR(mode):
        return "not_regular_directory"
    return "not_regular_other"


def oserror_reason(err: OSError, path: str) -> str | None:
    """The reason code of an error from ``stat``/``open`` of a local ``path``, or None when it
    is not one of the permanent, explained ones (an I/O error: worth a retry)."""
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return "dangling_symlink" if os.path.islink(path) else "missing"
    if err.errno == errno.ELOOP:
        return "symlink_loop"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "unreadable_permission"
    if err.errno == errno.ENAMETOOLONG:
        return "name_too_long"
    return None


def classify_local(path: str) -> str | None:
    """None if ``path`` is a readable regular file (or a symlink to one), else a reason.

    Decided with ``lstat``/``stat``/``access`` only, never opening the file. Remote URIs
    (``scheme://``) are None: object stores hold only objects. Reasons: ``missing``,
    ``dangling_symlink``, ``symlink_loop``, ``not_regular_fifo``, ``not_regular_device``,
    ``not_regular_socket``, ``not_regular_directory``, ``not_regular_other``,
    ``unreadable_permission``, ``name_too_long``. Other ``OSError`` s propagate.
    """
    if _is_remote(path):
        return None
    try:
        os.lstat(path)
        st = os.stat(path)
    except OSError as e:
        reason = oserror_reason(e, path)
        if reason is None:
            raise
        return reason
    reason = mode_reason(st.st_mode)
    if reason is None and not os.access(path, os.R_OK):
        return "unreadable_permission"
    return reason


@dataclass(frozen=True)
class LocalEntry:
    """One path a local pattern matched; ``reason`` None: a regular file to read."""

    path: str
    reason: str | None


def _glob_index(pattern: str) -> int:
    return min((i for i in (pattern.find(c) for c in _GLOB_CHARS) if i >= 0), default=-1)


def list_local(pattern: str, *, exclude: Iterable[str] = ()) -> list[LocalEntry]:
    """Every path a local input pattern matches, sorted by path, each with its verdict.

    ``pattern``: a folder (everything under it, recursively), a file (any kind, even a
    dangling link), or a glob with Beam's ``MatchFiles`` syntax (``*`` within a component,
    ``**`` across folders; relative patterns are taken from the working directory). An
    existing path is taken literally even if its name has glob characters (``[2024]``), and
    so is the folder of ``<existing folder>/**``.
    Reported: files of any name or extension (hidden ones too), dangling links, link loops,
    FIFOs, sockets, devices (verdict from :func:`classify_local`), unreadable folders
    (``unreadable_permission``) and symlinks to a folder being descended (``symlink_loop``).
    Folders are descended, symlinked ones too, but not reported; folders whose real path is
    under one of ``exclude`` (the tool's own output folders; remote ones ignored) are neither.

    Raises FileNotFoundError when the file, folder, or a glob's base folder does not exist;
    an existing folder with nothing matching gives ``[]``.
    """
    if _is_remote(pattern):
        raise ValueError(f"list_local needs a local pattern, not {pattern!r}")
    if not os.path.isabs(pattern):
        pattern = os.path.join(os.getcwd(), pattern)
    skip = tuple(os.path.realpath(x) for x in exclude if x and not _is_remote(x))
    first = _glob_index(pattern)
    path = os.path.abspath(pattern)
    if pattern.endswith("/**") and os.path.isdir(pattern[:-3]):
        path, first = os.path.abspath(pattern[:-3]), -1  # InputSpec's pattern for a folder
    if first < 0 or os.path.lexists(path):
        if os.path.isdir(path):
            return sorted(_walk(path, None, skip), key=lambda e: e.path)
        if os.path.lexists(path):
            return [LocalEntry(path, classify_local(path))]
        raise FileNotFoundError(f"input {pattern!r}: no such file or directory")
    head = pattern[:first]
    root = head[: head.rfind("/") + 1].rstrip("/") or "/"
    if not os.path.isdir(root):
        raise FileNotFoundError(f"input pattern {pattern!r}: no such folder {root!r}")
    regex = re.compile(FileSystem.translate_pattern(pattern))
    return sorted(_walk(root, regex, skip), key=lambda e: e.path)


def _under(real: str, folder: str) -> bool:
    return real == folder or real.startswith(folder.rstrip("/") + "/")


def _walk(root: str, regex: re.Pattern[str] | None, skip: tuple[str, ...]) -> Iterator[LocalEntry]:
    """Non-folder entries under ``root`` (matching ``regex`` if given), following symlinked
    folders; ``(st_dev, st_ino)`` of the folders on the way down detect loops (bind mounts
    too)."""
    top = os.stat(root)
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (root, frozenset({(top.st_dev, top.st_ino)}))
    ]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except PermissionError:
            yield LocalEntry(folder, "unreadable_permission")
            continue
        for entry in entries:
            path = os.path.join(folder, entry.name)
            wanted = regex is None or regex.match(path) is not None
            try:
                st: os.stat_result | None = entry.stat()  # follows links
            except OSError:  # a broken link, a loop, a vanished entry: classify_local says
                st = None
            if st is None or not stat.S_ISDIR(st.st_mode):
                if wanted:
                    yield LocalEntry(path, classify_local(path))
                continue
            if any(_under(os.path.realpath(path), s) for s in skip):
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                if wanted:
                    yield LocalEntry(path, "symlink_loop")
                continue
            stack.append((path, ancestors | {key}))


def _norm_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return scheme.lower() + "://" + rest.rstrip("/")


def _real_location(path: str) -> str:
    """Real path of a folder, or of a file's folder joined with its own (unresolved) name."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return os.path.realpath(path)
    head, name = os.path.split(path)
    return os.path.join(os.path.realpath(head), name)


def is_under_real(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it, comparing real paths for local ones.

    A folder (or a link to one) is resolved fully; a file's final name is not (a link in the
    input folder pointing into the output is an input, not one of the tool's files). Remote:
    normalised URIs; a local path is never under a remote folder or the reverse.
    """
    if _is_remote(path) or _is_remote(folder):
        if not (_is_remote(path) and _is_remote(folder)):
            return False
        return _under(_norm_uri(path), _norm_uri(folder))
    return _under(_real_location(path), os.path.realpath(folder))


def _same_file(a: str, b: str) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def check_output_location(src_base: str, dst: str) -> str | None:
    """None if ``dst`` is a safe output folder for inputs under ``src_base``, else why not.

    Refused: a local ``dst`` under a file (it cannot be created); ``dst`` is the input folder
    or contains it, compared on real paths (symlinks resolved; same inode too, for
    case-insensitive filesystems and bind mounts). Allowed: a distinct subfolder of the input
    (the tool's own folders are excluded from the listing).
    Remote: normalised URIs. A local input and a remote output (or the reverse) never clash.
    """
    if _is_remote(src_base) or _is_remote(dst):
        if not (_is_remote(src_base) and _is_remote(dst)):
            return None
        s, d = _norm_uri(src_base), _norm_uri(dst)
        if s == d:
            return f"--output {dst!r} is the input folder: originals would be overwritten"
        if _under(s, d):
            return f"--output {dst!r} contains the input folder {src_base!r}"
        return None
    rs, rd = os.path.realpath(src_base), os.path.realpath(dst)
    existing = rd
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"--output {dst!r} cannot be created: {existing!r} is not a folder"
    if rs == rd or _same_file(rs, rd):
        return (
            f"--output {dst!r} is the input folder {src_base!r} (symlinks resolved: {rs!r}): "
            "originals would be overwritten"
        )
    if _under(rs, rd):
        return f"--output {dst!r} contains the input folder {src_base!r} (real path {rs!r})"
    ancestor = rs
    while True:
        if _same_file(ancestor, rd):
            return f"--output {dst!r} contains the input folder {src_base!r} (real path {rs!r})"
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            return None
        ancestor = parent
