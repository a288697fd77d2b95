"""Detectors: YOLOv8 ONNX handlers for Beam RunInference, union ensemble, model registry."""

from redact.detection.base import DetectorHandler, DetectorModel, TileInference, preprocess
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
from redact.detection.yolo import decode_yolov8, nms

__all__ = [
    "DetectorHandler",
    "DetectorModel",
    "EnsembleModelHandler",
    "ModelFileError",
    "ModelRegistry",
    "ModelRegistryError",
    "ModelSpec",
    "OnnxDetectorModel",
    "TileInference",
    "YoloOnnxModelHandler",
    "decode_yolov8",
    "describe_models",
    "make_detector_handler",
    "nms",
    "preprocess",
    "verify",
]
