"""The review queue: review-band detections out to a reviewer, decisions back in.

Every run writes its review-band detections (blurred, but not sure) to
``DST/_review/run-<run_id>-*.parquet`` (:data:`REVIEW_SCHEMA`: image uri, box, class, score).
A reviewer's decisions (``redact review decide``) are appended to ``DST/_review/decisions/``;
``missed`` (a real face/plate: keep it blurred whatever a future model or threshold says)
becomes a manual region, ``false_positive`` becomes a labelled *hard negative* for training
(``DST/_review/hard_negatives/``, boxes on the ORIGINAL image), ``confirmed`` is only recorded.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import io
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from redact.classes import Decision, ObjectClass
from redact.io.storage import write_atomic
from redact.season.manual import ManualRegion, RegionSource

_BOX = [("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32())]

REVIEW_SCHEMA = pa.schema(
    [
        ("review_id", pa.string()),
        ("run_id", pa.string()),
        ("image_uri", pa.string()),
        ("relative_path", pa.string()),
        ("output_uri", pa.string()),
        ("class", pa.string()),
        ("score", pa.float32()),
        *_BOX,
        ("model", pa.string()),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
    ]
)

DECISION_SCHEMA = pa.schema(
    [
        ("review_id", pa.string()),
        ("decision", pa.string()),
        ("class", pa.string()),
        *_BOX,
        ("note", pa.string()),
        ("decided_at", pa.timestamp("ms", tz="UTC")),
        ("decided_by", pa.string()),
        ("region_id", pa.string()),  # the manual region a "missed" became
    ]
)

HARD_NEGATIVE_SCHEMA = pa.schema(
    [
        ("review_id", pa.string()),
        ("image_uri", pa.string()),  # the original (unblurred) image
        ("relative_path", pa.string()),
        ("detected_class", pa.string()),  # what the detector wrongly thought it was
        ("label", pa.string()),  # always "background"
        ("score", pa.float32()),
        *_BOX,
        ("model", pa.string()),
        ("run_id", pa.string()),
        ("decided_at", pa.timestamp("ms", tz="UTC")),
        ("decided_by", pa.string()),
    ]
)

DECISIONS_DIR = "decisions"
HARD_NEGATIVES_DIR = "hard_negatives"


class ReviewDecision(enum.Enum):
    MISSED = "missed"  # a real object: pinned as a manual region
    FALSE_POSITIVE = "false_positive"  # not an object: a hard negative for training
    CONFIRMED = "confirmed"  # a real object, correctly blurred: recorded only

    @classmethod
    def parse(cls, text: str) -> ReviewDecision:
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"fp": "false_positive", "false": "false_positive", "miss": "missed"}
        try:
            return cls(aliases.get(key, key))
        except ValueError:
            valid = ", ".join(d.value for d in cls)
            raise ValueError(
                f"unknown review decision {text!r} (expected one of: {valid})"
            ) from None


def review_id(run_id: str, relative_path: str, det: Mapping[str, Any]) -> str:
    """Stable id of one review item (same run, image, class and box -> same id)."""
    key = "|".join(
        [run_id, relative_path, str(det["class"])]
        + [f"{float(det[k]):.2f}" for k in ("x1", "y1", "x2", "y2")]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def review_items(row: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The review-band detections of one manifest row, as :data:`REVIEW_SCHEMA` dicts."""
    if row.get("status") != "published":
        return
    for det in row.get("detections") or ():
        if det["decision"] != Decision.REVIEW.value:
            continue
        yield {
            "review_id": review_id(row["run_id"], row["relative_path"], det),
            "run_id": row["run_id"],
            "image_uri": row["image_uri"],
            "relative_path": row["relative_path"],
            "output_uri": row["output_uri"],
            "class": det["class"],
            "score": det["score"],
            **{k: det[k] for k in ("x1", "y1", "x2", "y2")},
            "model": det["model"],
            "processed_at": row["processed_at"],
        }


def _read_dir(pattern: str, schema: pa.Schema) -> pa.Table:
    paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not paths:
        return schema.empty_table()
    if all("://" not in p for p in paths):
        return ds.dataset(paths, format="parquet", schema=schema).to_table()
    tables = []
    for p in paths:
        with FileSystems.open(p, compression_type="uncompressed") as f:
            tables.append(pq.read_table(io.BytesIO(f.read()), schema=schema))
    return pa.concat_tables(tables)


def read_review_items(review_dir: str, run_id: str = "") -> pa.Table:
    """Review items of one run (or of every run)."""
    pattern = f"run-{run_id}-*.parquet" if run_id else "run-*.parquet"
    return _read_dir(FileSystems.join(review_dir, pattern), REVIEW_SCHEMA)


def read_decisions(review_dir: str) -> pa.Table:
    return _read_dir(FileSystems.join(review_dir, DECISIONS_DIR, "*.parquet"), DECISION_SCHEMA)


def read_hard_negatives(review_dir: str) -> pa.Table:
    return _read_dir(
        FileSystems.join(review_dir, HARD_NEGATIVES_DIR, "*.parquet"), HARD_NEGATIVE_SCHEMA
    )


def _append(folder: str, prefix: str, rows: Sequence[dict], schema: pa.Schema) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    uri = FileSystems.join(folder, f"{prefix}-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(rows), schema=schema), buf)
    write_atomic(uri, buf.getvalue())
    return uri


def apply_decisions(
    items: Mapping[str, Mapping[str, Any]],
    decisions: Sequence[tuple[str, ReviewDecision, dict[str, Any]]],
    *,
    decided_by: str,
) -> tuple[list[dict], list[ManualRegion], list[dict]]:
    """Turn decisions into (decision rows, manual regions, hard-negative rows).

    Args:
        items: review items by review id (:data:`REVIEW_SCHEMA` dicts).
        decisions: (review id, decision, extras) with optional extras ``box`` (x1, y1, x2, y2)
            replacing the item's box for a "missed" region, ``class`` (ObjectClass) and ``note``.

    Raises ValueError for an unknown review id.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    rows: list[dict] = []
    regions: list[ManualRegion] = []
    negatives: list[dict] = []
    for rid, decision, extra in decisions:
        if rid not in items:
            raise ValueError(f"unknown review id {rid!r}")
        item = items[rid]
        box = extra.get("box") or tuple(float(item[k]) for k in ("x1", "y1", "x2", "y2"))
        cls: ObjectClass = extra.get("class") or ObjectClass.parse(str(item["class"]))
        note = str(extra.get("note") or "")
        region_id = ""
        if decision is ReviewDecision.MISSED:
            region = ManualRegion.new(
                image_uri=str(item["image_uri"]),
                relative_path=str(item["relative_path"]),
                box=box,
                object_class=cls,
                reason=f"review {rid}: missed" + (f" ({note})" if note else ""),
                created_by=decided_by,
                source=RegionSource.REVIEW,
                review_id=rid,
            )
            regions.append(region)
            region_id = region.region_id
        elif decision is ReviewDecision.FALSE_POSITIVE:
            negatives.append(
                {
                    "review_id": rid,
                    "image_uri": item["image_uri"],
                    "relative_path": item["relative_path"],
                    "detected_class": item["class"],
                    "label": "background",
                    "score": item["score"],
                    **{k: item[k] for k in ("x1", "y1", "x2", "y2")},
                    "model": item["model"],
                    "run_id": item["run_id"],
                    "decided_at": now,
                    "decided_by": decided_by,
                }
            )
        rows.append(
            {
                "review_id": rid,
                "decision": decision.value,
                "class": cls.label,
                **dict(zip(("x1", "y1", "x2", "y2"), box, strict=True)),
                "note": note,
                "decided_at": now,
                "decided_by": decided_by,
                "region_id": region_id,
            }
        )
    return rows, regions, negatives


def write_decisions(review_dir: str, rows: Sequence[dict]) -> str:
    return _append(FileSystems.join(review_dir, DECISIONS_DIR), "decisions", rows, DECISION_SCHEMA)


def write_hard_negatives(review_dir: str, rows: Sequence[dict]) -> str:
    return _append(
        FileSystems.join(review_dir, HARD_NEGATIVES_DIR), "hn", rows, HARD_NEGATIVE_SCHEMA
    )


def parse_decision_rows(
    wanted: Sequence[Mapping[str, Any]], where: Sequence[str]
) -> list[tuple[str, ReviewDecision, dict[str, Any]]]:
    """Decision requests (``redact review decide`` flags, ``--csv`` rows, the review page's
    POSTs) -> (review id, decision, extras) for :func:`record_decisions`.

    Each request is a mapping with ``review_id``, ``decision`` and optionally ``box``
    (``"x1,y1,x2,y2"``, pixels) or ``x1``..``y2`` columns, ``class`` and ``note``; ``where``
    names each one in errors. Raises ValueError (``"<where>: <why>"``) for a missing column,
    an unknown decision or class, or a bad box.
    """
    from redact.season.manual import parse_box

    if len(where) != len(wanted):
        raise ValueError(f"{len(where)} locations for {len(wanted)} decision requests")
    out = []
    for w, at in zip(wanted, where, strict=True):
        try:
            extra: dict[str, Any] = {"note": str(w.get("note") or "")}
            box_text = w.get("box") or (
                ",".join(str(w[k]) for k in ("x1", "y1", "x2", "y2")) if w.get("x1") else ""
            )
            if box_text:
                extra["box"] = parse_box(str(box_text))
            if w.get("class"):
                extra["class"] = ObjectClass.parse(str(w["class"]))
            out.append(
                (str(w["review_id"]).strip(), ReviewDecision.parse(str(w["decision"])), extra)
            )
        except KeyError as e:
            raise ValueError(f"{at}: missing column {e}") from None
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None
    return out


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What :func:`record_decisions` wrote: counts and the files ("" when none)."""

    decisions: int
    decisions_uri: str
    regions: int = 0
    regions_uri: str = ""
    markers_invalidated: int = 0
    negatives: int = 0
    negatives_uri: str = ""

    def summary(self) -> str:
        """One line for a person (what ``redact review decide`` prints)."""
        msg = [f"recorded {self.decisions} decision(s)"]
        if self.regions:
            msg.append(
                f"{self.regions} manual region(s) in {self.regions_uri} "
                f"({self.markers_invalidated} marker(s) invalidated)"
            )
        if self.negatives:
            msg.append(f"{self.negatives} hard negative(s) in {self.negatives_uri}")
        return "; ".join(msg)


def record_decisions(
    layout: Any,
    decisions: Sequence[tuple[str, ReviewDecision, dict[str, Any]]],
    *,
    decided_by: str,
    items: Mapping[str, Mapping[str, Any]] | None = None,
) -> Recorded:
    """The one writer of review decisions (``redact review decide`` and the review page).

    Appends the decision rows to ``layout.review/decisions``; a ``missed`` becomes a manual
    region in ``layout.manual`` (its image's marker is invalidated, so the next run re-does
    it); a ``false_positive`` a hard negative in ``layout.review/hard_negatives``.
    ``layout``: a :class:`redact.runner.Layout`; ``items``: the review items by id (default:
    every run's, read from ``layout.review``). Raises ValueError for an unknown review id
    before anything is written.
    """
    from redact.season.manual import write_regions
    from redact.season.republish import invalidate

    if items is None:
        items = {r["review_id"]: r for r in read_review_items(layout.review).to_pylist()}
    rows, regions, negatives = apply_decisions(items, decisions, decided_by=decided_by)
    if not rows:
        return Recorded(0, "")
    decisions_uri = write_decisions(layout.review, rows)
    regions_uri, invalidated, negatives_uri = "", 0, ""
    if regions:
        regions_uri = write_regions(layout.manual, regions)
        invalidated = invalidate(layout.markers, [r.relative_path for r in regions])
    if negatives:
        negatives_uri = write_hard_negatives(layout.review, negatives)
    return Recorded(
        decisions=len(rows),
        decisions_uri=decisions_uri,
        regions=len(regions),
        regions_uri=regions_uri,
        markers_invalidated=invalidated,
        negatives=len(negatives),
        negatives_uri=negatives_uri,
    )


def latest_decisions(review_dir: str) -> dict[str, dict[str, Any]]:
    """The newest decision row of every review id (by ``decided_at``)."""
    out: dict[str, dict[str, Any]] = {}
    for row in read_decisions(review_dir).to_pylist():
        cur = out.get(row["review_id"])
        if cur is None or row["decided_at"] >= cur["decided_at"]:
            out[row["review_id"]] = row
    return out
