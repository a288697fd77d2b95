"""Local parallelism of a job (redact.runner.local_parallelism) and its effect on a real run."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest

from redact.cli import main
from redact.config import RedactConfig
from redact.runner import local_parallelism

SAMPLE = Path(__file__).parent / "data" / "sample_shard"


def _config(local_workers: int = 2, threads: tuple[int, ...] = (0,)) -> RedactConfig:
    return RedactConfig.from_dict(
        {
            "season": {"local_workers": local_workers},
            "models": [{"name": f"m{i}", "intra_op_threads": t} for i, t in enumerate(threads)],
        }
    )


MT2 = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]


@pytest.mark.parametrize(
    ("beam_args", "local_workers", "cores", "added", "threads"),
    [
        # (given args, season.local_workers, cores) -> (args appended, intra-op threads)
        ([], 2, 2, ["--direct_num_workers=2", "--direct_running_mode=multi_threading"], 1),
        ([], 2, 8, ["--direct_num_workers=2", "--direct_running_mode=multi_threading"], 4),
        ([], 3, 2, ["--direct_num_workers=3", "--direct_running_mode=multi_threading"], 1),
        (
            ["--runner=DirectRunner"],
            2,
            4,
            ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
            2,
        ),
        ([], 1, 2, [], 0),  # one worker: Beam's default, ONNX Runtime's default threads
        (["--direct_num_workers=4", "--direct_running_mode=multi_threading"], 2, 8, [], 2),
        (["--direct_num_workers=4"], 2, 8, [], 0),  # in_memory mode ignores the worker count
        (["--direct_num_workers=1"], 2, 8, [], 0),  # the user's choice wins
        (["--runner=DataflowRunner"], 2, 2, [], 0),  # remote: untouched
        (["--runner", "DataflowRunner"], 2, 2, [], 0),
        (["--runner=direct"], 2, 2, MT2, 1),  # Beam's own spellings of the DirectRunner
        (["--runner=apache_beam.runners.direct.DirectRunner"], 2, 2, MT2, 1),
        (["--runner=FnApiRunner"], 2, 4, MT2, 2),
        (["--runner=PrismRunner"], 2, 2, [], 0),  # ignores --direct_num_workers: untouched
        (["--runner=BundleBasedDirectRunner"], 2, 2, [], 0),
        (["--direct_running_mode=multi_processing"], 2, 4, [], 0),  # 1 worker by Beam's default
        (["--direct_running_mode=in_memory"], 2, 4, [], 0),  # the user's mode is kept
        (["--direct_num_workers=0", "--direct_running_mode=multi_threading"], 2, 8, [], 1),
    ],
)
def test_local_parallelism_table(beam_args, local_workers, cores, added, threads):
    config = _config(local_workers)
    args, detector_config = local_parallelism(config, beam_args, cores)
    assert args == beam_args + added
    assert [m.intra_op_threads for m in detector_config.models] == [threads]


def test_explicit_intra_op_threads_are_kept_and_the_job_config_is_not_changed():
    config = _config(2, threads=(0, 3))
    _, detector_config = local_parallelism(config, [], 4)
    assert [m.intra_op_threads for m in detector_config.models] == [2, 3]
    assert [m.intra_op_threads for m in config.models] == [0, 3]  # no hidden mutation


@pytest.mark.parametrize("have_openvino", [True, False])
def test_openvino_detectors_keep_every_core(
    have_openvino: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one stream runs one request at a time: its threads are every core, not cores / workers;
    # auto is OpenVINO only where this process can import it
    monkeypatch.setattr("redact.detection.auto_handler.openvino_available", lambda: have_openvino)
    config = RedactConfig.from_dict(
        {
            "season": {"local_workers": 2},
            "models": [
                {"name": "a"},
                {"name": "b", "backend": "openvino"},
                {"name": "c", "backend": "auto"},
            ],
        }
    )
    _, detector_config = local_parallelism(config, [], 4)
    auto = 0 if have_openvino else 2
    assert [m.intra_op_threads for m in detector_config.models] == [2, 0, auto]
    assert [m.backend.value for m in detector_config.models] == ["onnx", "openvino", "auto"]


def test_local_workers_do_not_change_the_config_hash():
    # season is an unhashed section: a run with another worker count re-does no image
    assert _config(1).hash() == _config(4).hash()
    assert _config(1).hash() != _config(1, threads=(1,)).hash()  # a hashed key does


def _published(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.jpg"))
        if not any(part.startswith("_") for part in p.relative_to(out).parts)
    }


def _detections(out: Path) -> dict[str, list]:
    table = pq.read_table(out / "_manifest").to_pylist()
    return {
        row["image_uri"].rsplit("/", 1)[-1]: sorted(
            (d["class"], d["decision"], [round(d[k], 2) for k in ("x1", "y1", "x2", "y2")])
            for d in row["detections"]
        )
        for row in table
    }


def test_two_worker_threads_publish_what_one_worker_publishes(tmp_path, monkeypatch):
    """The opt-in local run of 2 worker threads (1 ONNX Runtime thread each) against the
    default, Beam's single-threaded run with the ONNX Runtime default: same bytes, same
    detections."""
    src = tmp_path / "in"
    shutil.copytree(SAMPLE / "photos", src)
    photo = next(src.glob("*.jpg"))
    img = cv2.imread(str(photo))
    h, w = img.shape[:2]
    cv2.imwrite(str(src / "mirrored.jpg"), img[:, ::-1])  # more images than worker threads
    cv2.imwrite(str(src / "crop.jpg"), img[h // 4 :, w // 5 :])
    import redact.runner

    seen: list[tuple[list[str], list[int]]] = []

    def spy(config, beam_args, cores):
        args, detector_config = local_parallelism(config, beam_args, cores)
        seen.append((args, [m.intra_op_threads for m in detector_config.models]))
        return args, detector_config

    monkeypatch.setattr(redact.runner, "local_parallelism", spy)
    outs = {}
    for name, extra in (("one", []), ("two", ["--set", "season.local_workers=2"])):
        out = tmp_path / name
        assert main(["run", "--input", str(src), "--output", str(out), *extra]) == 0
        outs[name] = out
    assert seen[0] == ([], [0])  # the default: Beam's in_memory runner, nothing added
    assert seen[1][0] == MT2  # the opt-in run really ran two worker threads
    one, two = (_published(outs[k]) for k in ("one", "two"))
    assert one and one.keys() == two.keys()
    assert one == two
    assert _detections(outs["one"]) == _detections(outs["two"])


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("DirectRunner", "direct"),
        ("direct", "direct"),
        ("apache_beam.runners.direct.DirectRunner", "direct"),
        ("DataflowRunner", "dataflow"),
        ("dataflow", "dataflow"),
        ("PrismRunner", "prism"),
    ],
)
def test_runner_key_reads_every_spelling_beam_accepts(spelling, key):
    from types import SimpleNamespace

    from apache_beam.options.pipeline_options import PipelineOptions

    from redact.pipeline.detect import is_local_runner, runner_key

    assert runner_key(spelling) == key
    pipeline = SimpleNamespace(options=PipelineOptions([f"--runner={spelling}"]))
    assert is_local_runner(pipeline) == (key != "dataflow")  # type: ignore[arg-type]
