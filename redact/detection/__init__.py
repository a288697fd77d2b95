"""Detectors: YOLOv8 and CenterFace ONNX handlers for Beam RunInference, union ensemble, model registry,
the head output contract and the detector canary."""

from redact.detection.base import (
    BackendUnavailableError,
    DetectorHandler,
    DetectorModel,
    TileInference,
    preprocess,
)
from redact.detection.canary import (
    Canary,
    CanaryError,
    CanaryReport,
    check_detectors,
    load_canary,
    run_canary,
)
from redact.detection.centerface import (
    CenterFaceOnnxModel,
    CenterFaceOnnxModelHandler,
    decode_centerface,
)
from redact.detection.ensemble import (
    EnsembleModelHandler,
    describe_models,
    make_detector_handler,
)
from redact.detection.onnx_handler import OnnxDetectorModel, YoloOnnxModelHandler
from redact.detection.registry import (
    ModelFileError,
    ModelRegistry,
    ModelRegistryError,
    ModelSpec,
    verify,
)
from redact.detection.yolo import DetectorOutputError, check_head, decode_yolov8, nms

__all__ = [
    "BackendUnavailableError",
    "Canary",
    "CanaryError",
    "CanaryReport",
    "CenterFaceOnnxModel",
    "CenterFaceOnnxModelHandler",
    "DetectorHandler",
    "DetectorModel",
    "DetectorOutputError",
    "EnsembleModelHandler",
    "ModelFileError",
    "ModelRegistry",
    "ModelRegistryError",
    "ModelSpec",
    "OnnxDetectorModel",
    "TileInference",
    "YoloOnnxModelHandler",
    "check_detectors",
    "check_head",
    "decode_centerface",
    "decode_yolov8",
    "describe_models",
    "load_canary",
    "make_detector_handler",
    "nms",
    "preprocess",
    "run_canary",
    "verify",
]
