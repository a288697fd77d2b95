"""Sources of a run: the candidate images (every matched path, accounted for), the sidecar
location catalog and the manual regions table.

Every matched path becomes a :class:`Candidate`. Local inputs are listed by
:func:`redact.io.inputs.list_local`, which also reports what Beam's matcher drops silently
(dangling links, loops, FIFOs, devices): such paths carry a ``problem`` and are quarantined
without being opened. Remote inputs (gs://, s3://) are matched with ``fileio.MatchFiles``
(object stores hold only objects). :func:`admit` then quarantines unsafe names and inputs
that would publish to the same output, so every input gets a manifest row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from redact.errors import ImageError, Stage
from redact.io.inputs import (
    NAME_MAX,
    REASONS,
    check_relative_name,
    classify_local,
    is_under_real,
    list_local,
    safe_text,
)
from redact.pipeline.job import NAMESPACE, JobSpec, progress
from redact.renditions import RENDITIONS_SUFFIX
from redact.season.location import CatalogEntry, Location, parse_catalog
from redact.season.manual import regions_from_parquet, regions_hash, table_pattern
from redact.season.markers import MARKER_SUFFIX

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One matched path. ``size_bytes``/``last_updated`` come from the listing (-1 / None
    when unknown); ``problem`` is a quarantine reason found without opening the file."""

    uri: str
    size_bytes: int = -1
    last_updated: float | None = None
    problem: str | None = None


def _why(reason: str) -> str:
    return REASONS.get(reason, reason.replace("_", " "))


def _selected(uri: str) -> list[Candidate]:
    """One line of a ``--files`` selection: a local path is classified like a listing entry
    (never opened, never taken as a glob); a remote one is matched."""
    if "://" in uri:
        return [_from_metadata(m) for m in FileSystems.match([uri])[0].metadata_list]
    path = os.path.abspath(uri)
    problem = classify_local(path)
    if problem is not None:
        return [Candidate(path, problem=problem)]
    st = os.stat(path)
    return [Candidate(path, st.st_size, st.st_mtime)]


def _from_metadata(meta: FileMetadata) -> Candidate:
    t = meta.last_updated_in_seconds
    return Candidate(meta.path, int(meta.size_in_bytes), float(t) if t else None)


def local_candidates(job: JobSpec) -> list[Candidate]:
    """Every path the local input pattern matches, the tool's own folders left out (listed on
    the launcher; raises FileNotFoundError when the input does not exist)."""
    out = []
    for entry in list_local(job.input.pattern, exclude=job.own_folders):
        if entry.reason is not None:
            out.append(Candidate(entry.path, problem=entry.reason))
            continue
        try:
            st = os.stat(entry.path)
        except OSError:  # gone since the listing: read_bytes will say why
            out.append(Candidate(entry.path))
            continue
        out.append(Candidate(entry.path, st.st_size, st.st_mtime))
    return out


def _is_own(job: JobSpec, uri: str) -> bool:
    return any(is_under_real(uri, d) for d in job.own_folders)


def list_candidates(
    p: beam.Pipeline, job: JobSpec, listed: Sequence[Candidate] | None = None
) -> beam.PCollection:
    """Candidates: the listed selection (``job.files``), the local listing (``listed`` when the
    launcher already made it, else :func:`local_candidates`), or MatchFiles."""
    if job.files:
        return (
            p
            | "ReadSelection" >> beam.io.ReadFromText(job.files)
            | "Uris" >> beam.Map(str.strip)
            | "NonEmpty" >> beam.Filter(bool)
            | "SelectionCandidates" >> beam.FlatMap(_selected)
        )
    if "://" not in job.input.pattern:
        return p | "ListLocal" >> beam.Create(
            list(listed) if listed is not None else local_candidates(job)
        )
    return (
        p
        | "Match"
        >> fileio.MatchFiles(
            job.input.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
        )
        | "NotOwn" >> beam.Filter(lambda m: not _is_own(job, m.path))
        | "Candidates" >> beam.Map(_from_metadata)
    )


def output_key(job: JobSpec, cand: Candidate) -> str:
    """The relative output path a candidate would publish to (its own uri when it is not
    under the input base: it is then rejected by :func:`admit`)."""
    try:
        return job.input.relative(cand.uri)
    except ValueError:
        return cand.uri


class Admit(beam.DoFn):
    """``(relative path, [Candidate, ...])`` -> admitted candidates; tagged ``rejected``:
    ``(Candidate, ImageError)`` for every input that must be quarantined without being read:
    a problem found by the listing, an unsafe name, or several inputs publishing to one output
    (all of them are rejected: which one would win is arbitrary)."""

    REJECTED = "rejected"

    def __init__(self, job: JobSpec) -> None:
        self._job = job
        self._renditions = job.config.renditions.enabled
        self._failed = Metrics.counter(NAMESPACE, "images_failed")

    def process(self, element: tuple[str, Iterable[Candidate]]) -> Iterator[Any]:
        rel, group = element
        cands = sorted(set(group), key=lambda c: c.uri)
        for cand in cands:
            err = self._rejection(rel, cand, cands)
            if err is None:
                yield cand
                continue
            self._failed.inc()
            progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", safe_text(cand.uri), err)
            yield beam.pvalue.TaggedOutput(self.REJECTED, (cand, err))

    def _rejection(self, rel: str, cand: Candidate, cands: list[Candidate]) -> ImageError | None:
        """Why ``cand`` (one of the ``cands`` claiming output ``rel``) must be quarantined."""
        if len(cands) > 1:
            return ImageError(
                "output_collision",
                f"{len(cands)} inputs would publish to {safe_text(rel)!r}: "
                + ", ".join(safe_text(x.uri) for x in cands[:5]),
                Stage.READ,
            )
        if cand.problem:
            return ImageError(
                cand.problem, f"{safe_text(cand.uri)}: {_why(cand.problem)}", Stage.READ
            )
        try:
            self._job.input.relative(cand.uri)
        except ValueError as e:
            return ImageError("name_outside_input", str(e), Stage.READ)
        # Room for the marker's ".json" suffix: a name whose marker cannot be written would be
        # re-done by every run (and for ".renditions", the folder of its renditions).
        suffix = max(len(MARKER_SUFFIX), len(RENDITIONS_SUFFIX) if self._renditions else 0)
        reason = check_relative_name(rel, max_component_bytes=NAME_MAX - suffix)
        if reason:
            return ImageError(reason, f"unsafe name {safe_text(rel)!r}: {_why(reason)}", Stage.READ)
        if any(part.endswith(RENDITIONS_SUFFIX) for part in rel.split("/")):
            # DST/<x>.renditions/ holds x's renditions (emptied of anything else on publication)
            return ImageError(
                "name_reserved",
                f"unsafe name {safe_text(rel)!r}: a name ending in {RENDITIONS_SUFFIX!r} "
                "is the folder of another image's renditions",
                Stage.READ,
            )
        return None


def _catalog_locations(job: JobSpec, data: bytes, path: str) -> Iterator[tuple[str, Location]]:
    """Catalog entries keyed by image uri (relative paths resolved against the input base)."""
    entry: CatalogEntry
    for entry in parse_catalog(data, path):
        if entry.is_uri:
            key = entry.key if "://" in entry.key else os.path.abspath(entry.key)
        else:
            key = job.uri_for(entry.key)
        yield key, entry.location


def read_catalog(p: beam.Pipeline, job: JobSpec) -> beam.PCollection:
    """``(image uri, Location)`` of the sidecar catalog."""
    return (
        p
        | "MatchCatalog" >> fileio.MatchFiles(job.catalog)
        | "ReadCatalog" >> fileio.ReadMatches()
        | "ParseCatalog"
        >> beam.FlatMap(lambda f: _catalog_locations(job, f.read(), f.metadata.path))
    )


def read_manual(p: beam.Pipeline, job: JobSpec) -> beam.PCollection:
    """``(image uri, ManualRegion)`` of the manual regions table."""
    return (
        p
        | "MatchManual"
        >> fileio.MatchFiles(
            table_pattern(job.manual), empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
        )
        | "ReadManual" >> fileio.ReadMatches()
        | "ParseManual" >> beam.FlatMap(lambda f: regions_from_parquet(f.read()))
        | "KeyManual" >> beam.Map(lambda r: (job.uri_for(r.relative_path), r))
    )


def manual_hashes(manual: beam.PCollection) -> beam.PCollection:
    """``(image uri, regions_hash)`` of every image with manual regions (for the markers)."""
    return (
        manual
        | "GroupManual" >> beam.GroupByKey()
        | "HashManual"
        >> beam.MapTuple(lambda uri, rs: (uri, regions_hash({r.region_id: r for r in rs}.values())))
    )
