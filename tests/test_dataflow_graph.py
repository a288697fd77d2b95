"""The Dataflow job graph, built by the real DataflowRunner classes without submitting it
(``--dry_run``: no credentials, no network), and the worker Dockerfile."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import apache_beam as beam
import pytest

apiclient = pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")

from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions  # noqa: E402
from apache_beam.portability.api import beam_runner_api_pb2  # noqa: E402

from redact.config import SeasonConfig  # noqa: E402
from redact.detection import ModelRegistry, describe_models, make_detector_handler  # noqa: E402
from redact.pipeline import add_sinks, build_pipeline, run_info  # noqa: E402
from redact.runner import make_job  # noqa: E402
from tests.test_season_support import write_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE = "us-docker.pkg.dev/redact-test/redact/worker:2024.05"
ACCEL_URN = "beam:resources:accelerator:v1"


def _dataflow_job(tmp_path: Path, accelerator: str | None, catalog: str = ""):
    from redact.cli import load_config

    config = load_config(str(write_config(tmp_path)))
    args = argparse.Namespace(
        input="gs://redact-test-bucket/season/*.jpg",
        output="gs://redact-test-bucket/published",
        manifest=None,
        quarantine=None,
        projection="auto",
        run_id="df1",
        catalog=catalog,
        force=False,
        accelerator=accelerator,
    )
    job = make_job(args, config)
    registry = ModelRegistry({})
    handler = make_detector_handler(config, registry)
    run = run_info(job, describe_models(config, registry))
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=redact-test",
            "--region=europe-west4",
            "--temp_location=gs://redact-test-bucket/tmp",
            "--staging_location=gs://redact-test-bucket/staging",
            f"--sdk_container_image={IMAGE}",
            "--sdk_location=container",
            "--job_name=redact-season-test",
            "--dry_run=True",
            "--no_auth",
        ]
    )
    p = beam.Pipeline(options=options)
    outs = build_pipeline(p, job, run, handler)
    add_sinks(outs["rows"], outs["quarantine"], job, outs["review"], outs["alerts"])
    result = p.run()  # dry run: translated to a Dataflow Job, never submitted
    return job, result.job, p.runner.proto_pipeline


def _env_of(proto, name_part: str) -> set[str]:
    return {
        t.environment_id
        for t in proto.components.transforms.values()
        if name_part in t.unique_name and t.environment_id and not t.subtransforms
    }


def test_tiling_and_inference_alone_carry_the_gpu_hint(tmp_path):
    job, df_job, proto = _dataflow_job(tmp_path, accelerator=None)
    hint = SeasonConfig().accelerator
    assert job.accelerator == hint == "type:nvidia-l4;count:1;install-nvidia-driver"
    envs = proto.components.environments
    detect_envs = _env_of(proto, "Detect/")
    prepare_envs = _env_of(proto, "Prepare")
    assert detect_envs and prepare_envs, "no leaf transforms under Detect / Prepare"
    for env_id in detect_envs | prepare_envs:
        assert envs[env_id].resource_hints[ACCEL_URN] == hint.encode()
    # one environment: the rendered tiles go from PrepareImage to RunInference inside one fused
    # stage on the GPU workers, never through the shuffle
    assert prepare_envs == detect_envs and len(detect_envs) == 1
    tiles_pc = {
        pc
        for t in proto.components.transforms.values()
        if t.unique_name == "Prepare" or t.unique_name.startswith("Prepare/")
        for tag, pc in t.outputs.items()
        if tag == "tiles"
    }
    consumers = {
        t.unique_name.split("/")[0]
        for t in proto.components.transforms.values()
        if not t.subtransforms and tiles_pc & set(t.inputs.values())
    }
    assert tiles_pc and consumers == {"Detect"}
    # follow the tiles to the inference DoFn: leaf steps of the GPU environment only, no
    # grouping (a stateful batcher would shuffle the tiles before RunInference)
    leaves = [t for t in proto.components.transforms.values() if not t.subtransforms]
    frontier, seen, reached = set(tiles_pc), set(), False
    while frontier:
        pc = frontier.pop()
        seen.add(pc)
        for t in leaves:
            if pc not in set(t.inputs.values()):
                continue
            assert t.spec.urn != "beam:transform:group_by_key:v1", t.unique_name
            assert t.environment_id in detect_envs, t.unique_name
            if t.spec.urn == "beam:transform:pardo:v1":  # stateful: keyed, hence shuffled
                payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
                assert not payload.state_specs and not payload.timer_family_specs, t.unique_name
            if "_RunInferenceDoFn" in t.unique_name:
                reached = True
                continue
            frontier |= set(t.outputs.values()) - seen
    assert reached
    # the failed batches' pixels stay there too: only their keys leave the GPU stage
    assert _env_of(proto, "FailedBatches") == detect_envs
    for step in ("Finalize", "SkipPublished", "WriteManifest/", "Admit", "Publish"):
        step_envs = _env_of(proto, step)
        assert step_envs, step
        for env_id in step_envs:
            assert ACCEL_URN not in envs[env_id].resource_hints, step
    # Every environment is the custom worker image; the job carries the option too.
    for env in envs.values():
        assert env.urn == "beam:env:docker:v1"
        assert beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image == IMAGE
    assert df_job.options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert df_job.proto.name == "redact-season-test"


def test_accelerator_is_configurable_and_can_be_off(tmp_path):
    other = "type:nvidia-tesla-t4;count:2;install-nvidia-driver"
    _, _, proto = _dataflow_job(tmp_path, accelerator=other)
    envs = proto.components.environments
    for step in ("Detect/", "Prepare"):
        assert {envs[e].resource_hints[ACCEL_URN] for e in _env_of(proto, step)} == {
            other.encode()
        }, step
    _, _, proto = _dataflow_job(tmp_path, accelerator="")
    assert not any(ACCEL_URN in e.resource_hints for e in proto.components.environments.values())


def test_catalog_join_is_in_the_graph(tmp_path):
    _, _, proto = _dataflow_job(tmp_path, None, catalog="gs://redact-test-bucket/catalog.parquet")
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"MatchCatalog", "ParseCatalog", "MatchManual", "JoinByImage"} <= {
        n.split("/")[0] for n in names
    }


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_pyproject_caps_beam_below_the_next_release_after_the_workers():
    """A fresh install must get the SDK the worker image runs (never a newer, untested one)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    version = re.search(r"^ARG BEAM_VERSION=(\d+)\.(\d+)\.\d+$", _dockerfile(), re.M)
    assert version, "Dockerfile has no ARG BEAM_VERSION=X.Y.Z"
    cap = f"<{version[1]}.{int(version[2]) + 1}"
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(meta["dependencies"]) + [
        d for extra in meta["optional-dependencies"].values() for d in extra
    ]
    beam_specs = [d for d in specs if d.startswith("apache-beam")]
    assert beam_specs and all(cap in d for d in beam_specs), (cap, beam_specs)


def test_dockerfile_builds_a_beam_worker_with_cuda_tensorrt_and_the_project():
    text = _dockerfile()
    instr = [
        line.split(None, 1)
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ops = [i[0].upper() for i in instr]
    assert ops[ops.index("FROM")] == "FROM" and "ENTRYPOINT" == ops[-1]
    froms = [i[1] for i in instr if i[0].upper() == "FROM"]
    assert any(f.startswith("nvcr.io/nvidia/tensorrt:") for f in froms)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    sdk = f"apache/beam_python{py}_sdk:{beam.__version__}"
    assert f"COPY --from={sdk} /opt/apache/beam /opt/apache/beam" in text, sdk
    assert f"ARG BEAM_VERSION={beam.__version__}" in text
    assert f"python{py}" in text
    assert instr[-1][1].strip() == '["/opt/apache/beam/boot"]'
    assert re.search(r'pip install .*"\.\[gcp,tensorrt,openvino\]"', text)
    for folder in ("redact", "pipelines", "configs", "models"):
        assert re.search(rf"^COPY {folder} ", text, re.M), folder
