"""Detection: Beam RunInference over the tiles, mapped back to image pixels."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from apache_beam.options.pipeline_options import StandardOptions

from redact.detections import Detections
from redact.records import TileFailure, TileKey, TileResult
from redact.tiling import tile_boxes_to_image

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T", bound=beam.PTransform)

#: Runners that execute the whole graph in this process (or this machine's processes). They
#: have no worker pools to right-fit, but still refuse to fuse steps with different resource
#: hints: with the accelerator hint, every rendered tile (1.2 MB at 640 px) was pickled and
#: held in memory between PrepareImage and RunInference (docs/performance.md).
#: By :func:`runner_key` (Beam's spelling-free name).
LOCAL_RUNNERS = frozenset({"direct", "switchingdirect", "bundlebaseddirect", "fnapi", "prism"})


def runner_key(runner: object) -> str:
    """A runner's name normalised as Beam's ``create_runner`` reads ``--runner``:
    ``DirectRunner``, ``direct`` and ``apache_beam.runners.direct.DirectRunner`` are all
    ``direct``; a runner object by its class name."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    name = name.rsplit(".", 1)[-1].lower()
    return name[: -len("runner")] if name.endswith("runner") else name


def is_local_runner(pipeline: beam.Pipeline) -> bool:
    """Whether ``pipeline`` runs on a local runner (:data:`LOCAL_RUNNERS`; no ``--runner`` is
    the DirectRunner)."""
    runner = pipeline.options.view_as(StandardOptions).runner
    return runner is None or runner_key(runner) in LOCAL_RUNNERS


def on_accelerator(transform: _T, pipeline: beam.Pipeline, accelerator: str) -> _T:
    """``transform`` with the ``accelerator`` resource hint (Dataflow right-fitting: it runs on
    GPU workers), except on a local runner (:func:`is_local_runner`), where a hint would only
    split the fused stage (tiles pickled and held between steps). ``""``: no hint."""
    if accelerator and not is_local_runner(pipeline):
        transform.with_resource_hints(accelerator=accelerator)  # returns the same transform
    return transform


def to_image_space(element: tuple[TileKey, Any]) -> tuple[str, TileResult | TileFailure]:
    """Map one tile's detections from tile pixels to image pixels (seam-aware)."""
    key, prediction = element
    try:
        inference = prediction.inference
        dets: Detections = inference.detections
        boxes, src = tile_boxes_to_image(key.tile, dets.xyxy, key.width, key.height, key.wrap)
        mapped = dets[src].with_boxes(boxes) if len(src) else Detections.empty()
        return key.image_uri, TileResult(key.index, mapped, float(inference.seconds))
    except Exception as e:  # reported per tile; the image is quarantined
        _LOG.exception("mapping tile %d of %s failed", key.index, key.image_uri)
        return key.image_uri, TileFailure(key.index, f"{type(e).__name__}: {e}")


def failed_batch_to_tiles(failed: tuple[Any, Any]) -> Iterator[tuple[str, TileFailure]]:
    """RunInference's dead letters are whole batches: fail every tile in them.

    ``failed`` is ``(batch, error)``; Beam's exception handling gives ``error`` as
    ``(exception type, repr, traceback lines)``, older releases as the exception itself.
    """
    batch, err = failed
    reason = f"inference failed: {_describe(err)}"
    for item in batch:
        key = item[0]
        yield key.image_uri, TileFailure(key.index, reason)


def _describe(err: Any) -> str:
    """The exception type and message of a dead letter's error, in either of its shapes."""
    if isinstance(err, tuple) and len(err) >= 2 and isinstance(err[1], str):
        return err[1]  # Beam's repr(exception)
    return repr(err)


def detect_tiles(
    tiles: beam.PCollection, handler: ModelHandler, accelerator: str = ""
) -> beam.PCollection:
    """``(TileKey, pixels)`` -> ``(image uri, TileResult | TileFailure)``: every tile gets
    exactly one result; a failed batch fails its tiles (dead letters), never drops them."""
    # On Dataflow this step and PrepareImage, which renders the tiles, carry the same GPU hint
    # so that they fuse: the tiles never cross a stage boundary (graph.py).
    inference: RunInference = RunInference(KeyedModelHandler(handler))
    detect = on_accelerator(inference, tiles.pipeline, accelerator)
    inferred, dlq = tiles | "Detect" >> detect.with_exception_handling()
    results = inferred | "ToImageSpace" >> beam.Map(to_image_space)
    # on the GPU workers too: a failed batch carries its tiles' pixels; only the keys leave
    to_failures = on_accelerator(beam.FlatMap(failed_batch_to_tiles), tiles.pipeline, accelerator)
    errors = dlq.failed_inferences | "FailedBatches" >> to_failures
    return (results, errors) | "AllTiles" >> beam.Flatten()
