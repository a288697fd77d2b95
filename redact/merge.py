"""Fuse overlapping detections (from overlapping tiles, levels and models) into one per object.

Two boxes of the same class are *linked* when they intersect and
``IoU >= cfg.iou_threshold`` or ``IoS >= cfg.ios_threshold`` (IoS: intersection over the
smaller box, which catches a partial box cut by a tile border lying inside the full one).
With ``wrap_width`` (equirectangular panoramas) overlap is measured on the cylinder, so boxes
on both sides of the 0/360 seam link up.

* :attr:`MergeMethod.UNION` (recall first): clusters are the connected components of the link
  graph (transitive); each becomes the box enclosing all members (unwrapped consistently around
  the seam), with the maximum score. ``source`` is the members' common model index, or -1 when
  members come from different models.
* :attr:`MergeMethod.NMS`: greedy by score: the best remaining box is kept and removes the
  boxes linked to it, repeatedly. Kept boxes are returned unchanged (their own ``source``).

Output order: class, then descending score, then first member's input position.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from redact.config import MergeConfig, MergeMethod
from redact.detections import Detections
from redact.geometry.boxes import (
    box_area,
    box_inter,
    box_inter_wrapped,
    normalize_unwrapped,
)

_CHUNK = 256  # rows of the pairwise matrices computed at once (bounds memory)

IntArray = npt.NDArray[np.int64]


def link_edges(
    xyxy: npt.ArrayLike, cfg: MergeConfig, wrap_width: float | None = None
) -> tuple[IntArray, IntArray]:
    """Linked pairs ``(i, j)``, ``i < j``, of (N, 4) boxes (one class) -> two (E,) int64 arrays."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    n = b.shape[0]
    area = box_area(b)
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    for s in range(0, n, _CHUNK):
        blk = b[s : s + _CHUNK]
        inter = box_inter(blk, b) if wrap_width is None else box_inter_wrapped(blk, b, wrap_width)
        a_blk = area[s : s + _CHUNK, None]
        union = a_blk + area[None, :] - inter
        smaller = np.minimum(a_blk, area[None, :])
        # x >= t * d  <=>  x / d >= t for d > 0 (and never true through d <= 0 with inter > 0)
        linked = (inter > 0) & (
            ((union > 0) & (inter >= cfg.iou_threshold * union))
            | ((smaller > 0) & (inter >= cfg.ios_threshold * smaller))
        )
        r, c = np.nonzero(linked)
        r = r + s
        upper = r < c
        ii.append(r[upper])
        jj.append(c[upper])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)


def connected_components(n: int, i: IntArray, j: IntArray) -> IntArray:
    """Component label of each of ``n`` nodes given undirected edges ``(i, j)`` -> (n,) int64.

    The label is the smallest node index in the component. Vectorized union-find: hook each
    edge's larger root under its smaller root, then pointer-jump to full compression; repeat
    until every edge lies within one tree.
    """
    parent = np.arange(n, dtype=np.int64)
    if i.size == 0:
        return parent
    while True:
        pi, pj = parent[i], parent[j]
        differ = pi != pj
        if not differ.any():
            return parent
        lo = np.minimum(pi[differ], pj[differ])
        hi = np.maximum(pi[differ], pj[differ])
        np.minimum.at(parent, hi, lo)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _union_clusters(
    b: np.ndarray, conf: np.ndarray, src: np.ndarray, labels: IntArray, wrap: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enclosing box, max score, common source and first member of each cluster."""
    roots, inv = np.unique(labels, return_inverse=True)
    k = roots.size
    # Best member of each cluster: highest score, then lowest index.
    order = np.lexsort((np.arange(conf.size), -conf, inv))
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    best = order[starts]  # (k,), clusters in `roots` order
    x1, x2 = b[:, 0].copy(), b[:, 2].copy()
    if wrap is not None:
        # Shift each member by -W, 0 or +W to sit next to its cluster's best member.
        cx = (x1 + x2) / 2.0
        shift = -np.clip(np.round((cx - cx[best[inv]]) / wrap), -1, 1) * wrap
        x1 += shift
        x2 += shift
    lo_x = np.full(k, np.inf)
    lo_y = np.full(k, np.inf)
    hi_x = np.full(k, -np.inf)
    hi_y = np.full(k, -np.inf)
    np.minimum.at(lo_x, inv, x1)
    np.minimum.at(lo_y, inv, b[:, 1])
    np.maximum.at(hi_x, inv, x2)
    np.maximum.at(hi_y, inv, b[:, 3])
    boxes = np.stack([lo_x, lo_y, hi_x, hi_y], axis=1)
    if wrap is not None:
        boxes = normalize_unwrapped(boxes, wrap)
    score = np.full(k, -np.inf)
    np.maximum.at(score, inv, conf.astype(np.float64))
    s_lo = np.full(k, np.iinfo(np.int64).max)
    s_hi = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(s_lo, inv, src.astype(np.int64))
    np.maximum.at(s_hi, inv, src.astype(np.int64))
    source = np.where(s_lo == s_hi, s_lo, -1)
    return boxes.astype(np.float32), score.astype(np.float32), source, roots


def _greedy_nms(n: int, conf: np.ndarray, i: IntArray, j: IntArray) -> IntArray:
    """Indices kept by greedy NMS over the link graph (best score first, ties by index)."""
    a = np.concatenate([i, j])
    c = np.concatenate([j, i])
    order = np.argsort(a, kind="stable")
    a, c = a[order], c[order]
    indptr = np.searchsorted(a, np.arange(n + 1))
    suppressed = np.zeros(n, bool)
    keep: list[int] = []
    for k in np.lexsort((np.arange(n), -conf)):
        if suppressed[k]:
            continue
        keep.append(int(k))
        suppressed[c[indptr[k] : indptr[k + 1]]] = True
    return np.asarray(keep, np.int64)


def merge_detections(
    dets: Detections, cfg: MergeConfig, wrap_width: float | None = None
) -> Detections:
    """Merge the detections of one image (see the module docstring for the rules).

    Args:
        dets: N detections in image pixels (unwrapped panorama boxes when ``wrap_width``).
        cfg: thresholds and method.
        wrap_width: panorama width in pixels for seam-aware overlap; None for ordinary images.

    Returns:
        K <= N merged detections.
    """
    if wrap_width is not None and not wrap_width > 0:
        raise ValueError(f"wrap_width must be positive, got {wrap_width}")
    if len(dets) == 0:
        return Detections.empty()
    xyxy32 = dets.xyxy
    if wrap_width is not None:
        xyxy32 = normalize_unwrapped(xyxy32, wrap_width)  # exact for canonical input
    xyxy = xyxy32.astype(np.float64)
    out_boxes, out_conf, out_cls, out_src, out_first = [], [], [], [], []
    for cls in np.unique(dets.class_id):
        idx = np.flatnonzero(dets.class_id == cls)
        b, conf, src = xyxy[idx], dets.confidence[idx], dets.source[idx]
        i, j = link_edges(b, cfg, wrap_width)
        if cfg.method is MergeMethod.UNION:
            labels = connected_components(idx.size, i, j)
            boxes, score, source, first = _union_clusters(b, conf, src, labels, wrap_width)
        elif cfg.method is MergeMethod.NMS:
            first = _greedy_nms(idx.size, conf, i, j)
            boxes, score, source = xyxy32[idx][first], conf[first], src[first]
        else:  # pragma: no cover - exhaustive over MergeMethod
            raise ValueError(f"unknown merge method {cfg.method!r}")
        out_boxes.append(boxes)
        out_conf.append(score)
        out_cls.append(np.full(first.size, cls, np.int32))
        out_src.append(source)
        out_first.append(idx[first])
    boxes = np.concatenate(out_boxes)
    conf = np.concatenate(out_conf)
    cls_ = np.concatenate(out_cls)
    first = np.concatenate(out_first)
    order = np.lexsort((first, -conf, cls_))
    return Detections(
        boxes[order], conf[order], cls_[order], np.concatenate(out_src).astype(np.int16)[order]
    )
