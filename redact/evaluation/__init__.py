"""Privacy evaluation: ground-truth labels, matching, recall/precision metrics, threshold
tuning, irreversibility checks, the HTML report and the human audit sample.

Modules (one concept each):

* :mod:`~redact.evaluation.labels` -- ground-truth readers (COCO, YOLO, Pascal VOC, openalpr,
  the project's ``dev_labels.json``).
* :mod:`~redact.evaluation.matching` -- one-to-one greedy matching of detections to labels.
* :mod:`~redact.evaluation.pixels` -- which pixels a published copy blurred (diff against the
  original) and whether an object's identifying detail is gone.
* :mod:`~redact.evaluation.dataset` -- pairs labels with manifest rows and image files.
* :mod:`~redact.evaluation.metrics` -- per-object results and sliced summaries.
* :mod:`~redact.evaluation.sweep` -- precision/recall curves over manifest scores, tuning.
* :mod:`~redact.evaluation.irreversibility` -- face-embedding and OCR checks.
* :mod:`~redact.evaluation.report` -- the confidential HTML report.
* :mod:`~redact.evaluation.audit` -- stratified samples of published images for human review.
"""
