"""``redact`` command line. ``redact run --input SRC --output DST`` is the main job.

Unknown ``--options`` of commands that run a Beam job are passed to Beam (``--runner``,
``--direct_num_workers``, ``--project``, ``--region``, ``--temp_location``, ...), so the same
command submits to Dataflow. Subcommands live in :mod:`redact.commands`.

Errors the user can fix (bad arguments, config, registry, model files, canary, unwritable
output) end in one line ``redact: error: ...`` and exit status 2; anything else in one line and
exit status 1. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from redact import __version__
from redact.config import RedactConfig
from redact.errors import UsageError
from redact.resources import config_path

#: The packaged default config (``redact.resources.config_path()``), kept for callers.
DEFAULT_CONFIG: Path = config_path()


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set a.b=1`` -> ``{"a": {"b": 1}}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE (e.g. thresholds.face.blur=0.3)")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(path: str | None, overrides: Sequence[str] = ()) -> RedactConfig:
    """``path`` (default: the packaged default config) with ``--set`` overrides applied."""
    cfg_path = Path(path) if path else config_path()
    return RedactConfig.load(cfg_path, _parse_set(overrides))


def build_parser() -> argparse.ArgumentParser:
    from redact.commands import register_all

    parser = argparse.ArgumentParser(
        prog="redact",
        description="Find and irreversibly blur faces and licence plates in street imagery.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"redact {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (any position)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub)
    _add_debug_flag(parser)
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (``redact run ... --debug``), not passed to Beam."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if "--debug" not in child._option_string_actions:
                    child.add_argument(
                        "--debug",
                        action="store_true",
                        default=argparse.SUPPRESS,
                        help="traceback of an error",
                    )
                _add_debug_flag(child)


class _LogFormatter(logging.Formatter):
    """Log lines without the tracebacks of logged exceptions unless ``tracebacks``."""

    def __init__(self, fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei) if self.tracebacks else ""

    def formatStack(self, stack_info: str) -> str:
        return super().formatStack(stack_info) if self.tracebacks else ""


def _is_default_handler(handler: logging.Handler) -> bool:
    """Whether ``handler`` is the one ``logging.basicConfig()`` (no arguments; also what a
    first ``logging.warning(...)`` call makes) puts on the root logger."""
    fmt = getattr(handler.formatter, "_fmt", None)
    return type(handler) is logging.StreamHandler and fmt == logging.BASIC_FORMAT


def configure_logging(*, verbose: bool = False, debug: bool = False) -> None:
    """INFO (``-v``: DEBUG) to stderr; Beam's INFO chatter and logged tracebacks only with
    ``-v``/``--debug``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        _LogFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", tracebacks=verbose or debug
        )
    )
    # An import may have logged through the root logger before any handler existed (Beam
    # without the [gcp] extra warns "apitools not found"), which gave the root logger
    # logging's default handler and made basicConfig below a no-op. Only that handler goes;
    # handlers someone installed on purpose (pytest's, an embedding program's) stay.
    root = logging.getLogger()
    for h in root.handlers[:]:
        if _is_default_handler(h):
            root.removeHandler(h)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    # Beam's INFO lines (type hint conversions, ...) hide what matters; Dataflow's own (job id,
    # console URL) stay.
    logging.getLogger("apache_beam").setLevel(logging.NOTSET if verbose else logging.WARNING)
    logging.getLogger("apache_beam.runners.dataflow").setLevel(
        logging.NOTSET if verbose else logging.INFO
    )
    # The error of a failing step, which Beam logs before the pipeline raises it: main() reports
    # it once, in one line.
    # The SDK worker of the multi-threaded local run logs the same error again, with its
    # traceback in the message text.
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose or debug else logging.CRITICAL)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    configure_logging(verbose=args.verbose, debug=args.debug)
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_beam_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [
        a for i, a in enumerate(extra) if not a.startswith("-") and not _is_option_value(extra, i)
    ]
    if bad:
        parser.error(f"unexpected argument(s): {' '.join(bad)}")
    try:
        return int(args.func(args, extra))
    except KeyboardInterrupt:
        print("redact: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return report_error(e, debug=args.debug)


#: Error types the user can fix, by module: looked up in ``sys.modules`` when an error is
#: reported (a module that never loaded raised none of them).
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("redact.errors", "UsageError"),
    ("redact.errors", "ConfigError"),
    ("redact.detection.registry", "ModelRegistryError"),
    ("redact.detection.registry", "ModelFileError"),
    ("redact.detection.canary", "CanaryError"),
    ("redact.detection.yolo", "DetectorOutputError"),
    ("redact.postprocess", "RescorerError"),
)
# "ModelFileError: model 'x' at ... [while running 'Infer']": how a Beam runner that re-raised
# an error from its worker as text (e.g. a RuntimeError holding the worker's traceback) names it.
_NAMED = re.compile(
    r"^(?:[\w.]+\.)?(" + "|".join(name for _, name in USER_ERRORS) + r"): (.+)$", re.MULTILINE
)
_BEAM_STEP = re.compile(r" \[while running '[^']*'\]")
# The DirectRunner's multi-threading mode re-raises a worker's error as a RuntimeError whose
# text is the worker's traceback; its last "Type: message" line is the error that ended it
# ("RuntimeError: OSError: [Errno 20] Not a directory: ... [while running ...]").
_TRACEBACK_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$", re.MULTILINE)
_ERRNO_TEXT = re.compile(r"^\[Errno \d+\] (.+?): '(.+)'$")
_FIXABLE_BY_NAME = frozenset(
    {
        "OSError", "IOError", "FileNotFoundError", "PermissionError", "NotADirectoryError",
        "IsADirectoryError", "FileExistsError", "ValueError",
    }
)  # fmt: skip


def _reraised(text: str) -> tuple[str, str] | None:
    """(type name, message) of the last error line of a traceback held as text, with Beam's
    ``RuntimeError: `` wrappers taken off; None if ``text`` holds no traceback."""
    if "Traceback (most recent call last)" not in text:
        return None
    lines = _TRACEBACK_LINE.findall(text)
    if not lines:
        return None
    name, message = lines[-1]
    while (inner := _TRACEBACK_LINE.match(message)) is not None:
        name, message = inner.groups()
    errno = _ERRNO_TEXT.match(_BEAM_STEP.sub("", message))
    if errno is not None:  # "[Errno 2] No such file ...: 'p'" as an OSError's own line says it
        message = f"{errno.group(1)}: {errno.group(2)}"
    return name.rsplit(".", 1)[-1], message


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    for module, name in USER_ERRORS:
        t = getattr(sys.modules.get(module), name, None)
        if isinstance(t, type) and issubclass(t, BaseException):
            types.append(t)
    return tuple(types)


def _chain(e: BaseException) -> Iterator[BaseException]:
    """``e``, then what caused it (``__cause__``, else ``__context__``), outermost first."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _one_line(text: str) -> str:
    """The first non-empty line of ``text`` without Beam's step annotations."""
    lines = [ln.strip() for ln in _BEAM_STEP.sub("", text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _os_error_line(errors: Sequence[OSError]) -> str:
    """``strerror: path`` of the first error that names a path (Beam re-raises the original
    ``OSError`` of a file system as a bare ``OSError(str)``)."""
    for e in errors:
        if e.strerror and e.filename is not None:
            where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else e.filename
            return f"{e.strerror}: {where}"
    return _one_line(str(errors[0])) or type(errors[0]).__name__


def describe_error(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) of an error that ended a command.

    Status 2 for what the user can fix: the project's user errors (also when a Beam runner
    wrapped them, found through the exception chain or, failing that, named in the message),
    ``OSError`` (unreadable input, unwritable output) and ``ValueError`` (bad values). Status 1
    otherwise, with the innermost cause's type and message.
    """
    chain = list(_chain(e))
    user = _user_error_types()
    for x in chain:
        if isinstance(x, user):
            return _one_line(str(x)) or type(x).__name__, 2
    for x in chain:
        m = _NAMED.search(str(x))
        if m:
            return _one_line(m.group(2)), 2
    os_errors = [x for x in chain if isinstance(x, OSError)]
    if os_errors:
        return _os_error_line(os_errors), 2
    for x in chain:
        if isinstance(x, ValueError):
            return _one_line(str(x)) or type(x).__name__, 2
    root = chain[-1]
    name, text = type(root).__name__, _one_line(str(root))
    inner = _reraised(str(root))
    if inner is not None:
        name, text = inner[0], _one_line(inner[1])
        if name in _FIXABLE_BY_NAME:
            return text or name, 2
    return (
        f"{name}{': ' + text if text else ''} (unexpected; rerun with --debug for the traceback)",
        1,
    )


def report_error(e: BaseException, *, debug: bool = False) -> int:
    """Print ``redact: error: <one line>`` (after the traceback with ``debug``); exit status."""
    message, status = describe_error(e)
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    print(f"redact: error: {message}", file=sys.stderr)
    return status


def _is_option_value(args: Sequence[str], i: int) -> bool:
    return i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]


if __name__ == "__main__":
    sys.exit(main())
