"""The GitHub workflows that deploy or publish stay in step with the project: the images the
release workflow pushes are the ones the stacks deploy, and the end-to-end workflow runs the
engine versions and the stack configuration the engine check covers."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml

from infra.config import StackConfig, parse_config
from infra.engine import versions
from infra.render import REPO_ROOT, stack_config

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def steps_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    return next(step for step in steps_of(job) if str(step.get("uses", "")).startswith(action))


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps_of(job))


def test_release_publishes_both_images_the_stacks_deploy_on_a_version_tag() -> None:
    release = workflow("release.yml")
    assert release[True]["push"]["tags"] == ["v*.*.*"]  # YAML reads the key "on" as True
    job = release["jobs"]["images"]
    images = {entry["image"]: entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]}
    for key in ("api_image", "worker_image"):
        default = StackConfig.model_fields[key].default
        repository, _, tag = default.rpartition(":")
        owner, image = repository.removeprefix("ghcr.io/").split("/")
        assert owner == "kafka-tasks"  # README: published by this workflow for that owner
        assert image in images
        assert (REPO_ROOT / images[image]).is_file()
        # The default tag is the version a `v<version>` tag publishes.
        project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
        assert tag == project["version"]
    assert "v${version}" in runs(job)
    meta = step_using(job, "docker/metadata-action")["with"]
    assert meta["images"] == "ghcr.io/${{ github.repository_owner }}/${{ matrix.image }}"
    build = step_using(job, "docker/build-push-action")["with"]
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["provenance"] == "mode=max"
    assert build["sbom"] is True
    assert build["push"] is True
    assert release["permissions"] == {"contents": "read", "packages": "write"}


def test_e2e_runs_the_engine_versions_the_check_runs() -> None:
    e2e = workflow("e2e-kind.yml")
    assert e2e["env"]["PULUMI_VERSION"] == versions.PULUMI_CLI_VERSION.removeprefix("v")
    assert e2e["env"]["HELM_VERSION"] == versions.HELM_VERSION
    job = e2e["jobs"]["kind"]
    assert (
        step_using(job, "pulumi/actions")["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"
    )
    assert step_using(job, "azure/setup-helm")["with"]["version"] == "${{ env.HELM_VERSION }}"


def test_e2e_deploys_the_dev_stack_which_needs_no_load_balancer() -> None:
    e2e = workflow("e2e-kind.yml")
    assert e2e["env"]["STACK"] == "dev"
    dev = parse_config(stack_config("dev"))
    assert dev.api_exposure == "ClusterIP"
    assert e2e["env"]["API_HOST"] == dev.api_host
    job = e2e["jobs"]["kind"]
    script = runs(job)
    # The hook check on the real charts comes before anything is deployed.
    assert script.index("python -m infra.charts") < script.index("pulumi up")
    assert "kind load docker-image" in script
    assert "--policy-pack infra/policy" in script
    assert "kafka-tasks submit sleep" in script
    assert "kafka-tasks-worker -o jsonpath='{.status.readyReplicas}'" in script
    destroy = next(step for step in steps_of(job) if step.get("name") == "pulumi destroy")
    assert destroy["if"] == "always()"
    assert "pulumi destroy --yes" in destroy["run"]


def test_pull_requests_build_the_engine_and_check_the_real_charts() -> None:
    job = workflow("preview.yml")["jobs"]["offline"]
    cache = step_using(job, "actions/cache")["with"]
    assert "~/.cache/kafka-tasks/engine" in cache["path"]
    assert "infra/engine/versions.py" in cache["key"]
    script = runs(job)
    assert "python -m infra.engine build" in script
    assert "python -m infra.preview --engine" in script
    assert "python -m infra.charts" in script
