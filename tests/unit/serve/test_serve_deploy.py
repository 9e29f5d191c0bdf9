"""deploy/: the Dockerfile and Kubernetes manifests agree with the server they run."""

import json
import shlex
from pathlib import Path

import pytest
import yaml

from shoestring.cli.serve_cmd import serve_command

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def manifests() -> dict[str, list[dict]]:
    docs: dict[str, list[dict]] = {}
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            docs.setdefault(doc["kind"], []).append(doc)
    return docs


def parse_serve_args(args: list[str]) -> dict:
    """Parse arguments with the real `shoestring serve` command (no server is started)."""
    assert args[0] == "serve"
    ctx = serve_command().make_context("serve", list(args[1:]))
    return ctx.params


def docker_instructions() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line and not line.startswith("#") and not line.startswith(" "):
            word, _, rest = line.partition(" ")
            out[word] = rest
    return out


def test_the_dockerfile_runs_the_cli_as_a_non_root_user():
    ins = docker_instructions()
    assert ins["FROM"].startswith("python:3.11")
    assert ins["USER"] != "root" and int(ins["USER"]) > 0
    assert json.loads(ins["ENTRYPOINT"]) == ["shoestring"]
    params = parse_serve_args(json.loads(ins["CMD"]))
    assert params["host"] == "0.0.0.0" and str(params["port"]) in ins["EXPOSE"]
    # The usage log lives on the image's volume, where durable charges must outlive a crash.
    assert str(params["usage_log"]).startswith(json.loads(ins["VOLUME"]) if
                                               ins["VOLUME"].startswith("[") else ins["VOLUME"])
    assert "torch==2.13.0" in (DEPLOY / "Dockerfile").read_text()  # the pinned CPU build


def test_the_statefulset_probes_drains_keeps_its_usage_log_and_scales(run_dir, db_url):
    docs = manifests()
    assert {"StatefulSet", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    (sts,) = docs["StatefulSet"]
    pod = sts["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    params = parse_serve_args(c["args"])
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert params["port"] == port and params["host"] == "0.0.0.0"
    # The probes hit routes the app really has.
    from shoestring.serve.app import build_app
    from shoestring.serve.config import resolve_serve_config
    from shoestring.serve.service import Service

    app = build_app(Service(resolve_serve_config({"models": [{"run_dir": run_dir}],
                                                  "db": db_url, "auth": False})))
    routes = {r.path for r in app.routes}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"] in routes
        assert c[probe]["httpGet"]["port"] == "http"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Grace period > preStop sleep + drain, so SIGKILL never cuts a drain short.
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + params["drain_seconds"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in c["env"]}
    assert "secretKeyRef" in env["SHOESTRING_DB"]["valueFrom"]  # no password in the manifest
    # Each pod's usage log is on its own persistent volume, kept when scaled down or deleted.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert str(params["usage_log"]).startswith(mounts[claim] + "/")
    assert set(sts["spec"]["persistentVolumeClaimRetentionPolicy"].values()) == {"Retain"}
    # Services and autoscaler point at these pods.
    labels = pod["metadata"]["labels"]
    services = {s["metadata"]["name"]: s["spec"] for s in docs["Service"]}
    assert services[sts["spec"]["serviceName"]]["clusterIP"] == "None"  # the governing one
    for spec in services.values():
        assert spec["selector"].items() <= labels.items()
        assert spec["ports"][0]["targetPort"] == "http"
    (hpa,) = [d["spec"] for d in docs["HorizontalPodAutoscaler"]]
    assert hpa["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["scaleTargetRef"]["name"] == sts["metadata"]["name"]
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    assert metric == "shoestring_inflight_requests"
    from shoestring.serve.metrics import ServerMetrics

    assert metric in {m.name for m in ServerMetrics().registry.collect()}


@pytest.mark.parametrize("args", ["serve runs/x --no-such-flag", "serve --port 1"])
def test_bad_manifest_arguments_would_be_caught(args):
    import click

    with pytest.raises(click.UsageError):
        parse_serve_args(shlex.split(args))
