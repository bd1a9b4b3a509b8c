"""deploy/k8s/: each overlay built here and validated offline. No kustomize binary is on this
machine, so `build` below does the part of kustomize these files use, and refuses any other
field: resources (files and directories), components, namespace, images, labels (metadata only)
replicas, and patches given as a path, one object per file (strategic merge: maps merged,
lists of named items merged by name, other lists replaced; a patch must name an object that
exists). Every standard object is
then checked against the Kubernetes schemas of the pinned kubernetes-validate (strict: an
unknown field fails); KEDA's ScaledObject has no shipped schema and is checked by hand."""

import copy
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.test_deploy_compose import settings_read

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KEDA = K8S / "components" / "keda-ingest-lag"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # an older supported cluster and the newest schema
SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "images", "labels",
             "patches", "replicas"}


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def merge(base, patch):
    """Strategic merge, the subset these patches need."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = merge(base[name], value) if name in base else copy.deepcopy(value)
        return merged
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(item, dict) and "name" in item for item in base + patch)):
        by_name = {item["name"]: item for item in base}
        merged = [merge(by_name[item["name"]], item) if item["name"] in by_name else item
                  for item in patch]
        return [item for item in base if item["name"] not in {i["name"] for i in patch}] + merged
    return copy.deepcopy(patch)


def build(directory: Path, extra_components: tuple[Path, ...] = ()) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: this test's build does not know {unsupported}"
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        assert path.exists(), f"{directory}: resource {entry} missing"
        objects += build(path) if path.is_dir() else load(path)
    for path in [directory / entry for entry in kustomization.get("components", [])] + \
            list(extra_components):
        assert (path / "kustomization.yaml").is_file(), f"{directory}: component {path} missing"
        objects += build(path)
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only patches by path are built here"
        # kustomize's `patches` takes one patch per path (several need patchesStrategicMerge).
        (patch,) = load(directory / entry["path"])
        targets = [i for i, obj in enumerate(objects) if key(obj) == key(patch)]
        assert targets, f"{directory}: patch {entry['path']} names no object {key(patch)}"
        objects[targets[0]] = merge(objects[targets[0]], patch)
    for entry in kustomization.get("replicas", []):
        targets = [obj for obj in objects if key(obj) == ("Deployment", entry["name"])]
        assert targets, f"{directory}: replicas for no Deployment {entry['name']}"
        targets[0]["spec"]["replicas"] = entry["count"]
    for obj in objects:
        for labels in kustomization.get("labels", []):
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
            assert not labels.get("includeSelectors") and not labels.get("includeTemplates")
        if "namespace" in kustomization:
            obj["metadata"]["namespace"] = kustomization["namespace"]
        for image in kustomization.get("images", []):
            for container in containers(obj):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    assert len({key(obj) for obj in objects}) == len(objects), f"{directory}: duplicate objects"
    return objects


def containers(obj: dict) -> list[dict]:
    return obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


VALIDATED: set[str] = set()
BUILDS = {
    "staging": (K8S / "overlays" / "staging", ()),
    "production": (K8S / "overlays" / "production", ()),
    # The optional KEDA component as production's kustomization says to enable it.
    "production+keda": (K8S / "overlays" / "production", (KEDA,)),
}


@pytest.fixture(scope="module", params=list(BUILDS))
def built(request) -> tuple[str, dict[tuple[str, str], dict]]:
    directory, components = BUILDS[request.param]
    return request.param, {key(obj): obj for obj in build(directory, components)}


def test_every_standard_object_matches_the_kubernetes_schema(built):
    name, objects = built
    standard = [obj for obj in objects.values() if obj["apiVersion"] != "keda.sh/v1alpha1"]
    assert len(standard) == len(objects) - (name == "production+keda")
    for obj in standard:
        # An object the same in another build but for its namespace is validated once.
        same = json.dumps({**obj, "metadata": {**obj["metadata"], "namespace": ""}},
                          sort_keys=True)
        if same not in VALIDATED:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)  # raises when invalid
            VALIDATED.add(same)
    kinds = sorted({obj["kind"] for obj in standard})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress",
                     "PodDisruptionBudget", "Service"]


def deployment_of(objects: dict, selector: dict) -> list[str]:
    return [name for (kind, name), obj in objects.items() if kind == "Deployment"
            and selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()]


def test_references_between_objects_hold(built):
    """Selectors select a Deployment, autoscalers and ingress backends name existing objects,
    every pod reads the ConfigMap, every setting in it is one the code reads, images set."""
    _, objects = built
    deployments = {name for kind, name in objects if kind == "Deployment"}
    assert deployments == {"query-api", "collector", "ingest-worker", "evaluation-worker", "beat",
                           "flower"}
    for (kind, name), obj in objects.items():
        if kind in ("Service", "PodDisruptionBudget"):
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert len(deployment_of(objects, selector)) == 1, (kind, name)
        if kind == "HorizontalPodAutoscaler":
            assert ("Deployment", obj["spec"]["scaleTargetRef"]["name"]) in objects
        if kind == "Ingress":
            for rule in obj["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    service = objects[("Service", path["backend"]["service"]["name"])]
                    port = path["backend"]["service"]["port"]["name"]
                    assert port in {p["name"] for p in service["spec"]["ports"]}
        for container in containers(obj):
            assert container["image"].startswith("registry.example.com/llmops:")
            assert {"configMapRef": {"name": "llmops-config"}} in container["envFrom"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            assert "memory" in container["resources"]["limits"], name
    config = objects[("ConfigMap", "llmops-config")]["data"]
    known = settings_read()
    assert not set(config) - known, f"no setting reads {set(config) - known}"
    assert len(config["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    assert config["CLICKHOUSE_CLUSTER"] and config["KAFKA_REPLICATION_FACTOR"] == "3"
    assert config["KAFKA_MIN_INSYNC_REPLICAS"] == "2"


def test_probes_beat_and_autoscaling_follow_the_design(built):
    name, objects = built
    for api in ("query-api", "collector"):
        (container,) = containers(objects[("Deployment", api)])
        port = container["ports"][0]["name"]
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/health/", "port": port, "httpHeaders": [{"name": "Host",
                                                                "value": "localhost"}]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        # /metrics adds up the pod's gunicorn workers: a shared, writable directory.
        (directory,) = [e["value"] for e in container["env"]
                        if e["name"] == "PROMETHEUS_MULTIPROC_DIR"]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
        volumes = objects[("Deployment", api)]["spec"]["template"]["spec"]["volumes"]
        assert {"name": mount["name"], "emptyDir": {}} in volumes
        allowed = objects[("ConfigMap", "llmops-config")]["data"]["DJANGO_ALLOWED_HOSTS"]
        assert "localhost" in allowed.split(",")
    # One beat, never two at once: it has no lease of its own.
    beat = objects[("Deployment", "beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    assert not any(obj.get("spec", {}).get("scaleTargetRef", {}).get("name") == "beat"
                   for obj in objects.values())
    hpa = objects[("HorizontalPodAutoscaler", "query-api-hpa")]["spec"]
    assert hpa["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 70}}}]
    expected = (5, 50) if name.startswith("production") else (2, 5)
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == expected
    assert objects[("Deployment", "query-api")]["spec"]["replicas"] == expected[0]
    if name.startswith("production"):  # tier 2: a zone lost leaves the rest running
        for spread in ("query-api", "collector", "ingest-worker"):
            pod = objects[("Deployment", spread)]["spec"]["template"]
            (constraint,) = pod["spec"]["topologySpreadConstraints"]
            assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
            assert constraint["labelSelector"]["matchLabels"] == pod["metadata"]["labels"]
    assert hpa["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 4,
                                                       "periodSeconds": 60}]
    assert ("HorizontalPodAutoscaler", "collector-hpa") in objects
    # Nothing else scales the ingest workers but KEDA (when enabled): two owners would fight.
    owners = [obj for obj in objects.values()
              if obj.get("spec", {}).get("scaleTargetRef", {}).get("name") == "ingest-worker"]
    assert len(owners) == (name == "production+keda")


# KEDA 2.x ScaledObject fields (keda.sh/v1alpha1) and its kafka scaler's metadata, from KEDA's
# documentation: the CRD's schema is not shipped, so names are checked against these lists.
SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod",
                      "initialCooldownPeriod", "idleReplicaCount", "minReplicaCount",
                      "maxReplicaCount", "fallback", "advanced", "triggers"}
KAFKA_TRIGGER = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold",
                 "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
                 "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
                 "partitionLimitation", "version", "sasl", "tls"}


def setting_default(name: str) -> str:
    """The default a setting has when the environment does not set it (its env() call)."""
    source = (ROOT / "llmops" / "settings" / "kafka.py").read_text()
    return re.search(rf'env\("{name}", "([^"]+)"\)', source).group(1)


def test_keda_scaled_object_by_hand():
    objects = {key(obj): obj for obj in build(*BUILDS["production+keda"])}
    scaled = objects[("ScaledObject", "ingest-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == "llmops"
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert ("Deployment", target["name"]) in objects
    config = objects[("ConfigMap", "llmops-config")]["data"]
    # More workers than partitions would hold no lease.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == \
        int(config["KAFKA_SPANS_PARTITIONS"])
    assert set(spec["advanced"]) == {"horizontalPodAutoscalerConfig"}
    # The behaviour block is an HPA's: validate it inside one.
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "keda-hpa-ingest-worker"},
           "spec": {"scaleTargetRef": target, "maxReplicas": spec["maxReplicaCount"],
                    **spec["advanced"]["horizontalPodAutoscalerConfig"]}}
    kubernetes_validate.validate(hpa, KUBERNETES_VERSIONS[-1], strict=True)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka" and set(trigger) == {"type", "metadata"}
    metadata = trigger["metadata"]
    assert set(metadata) <= KAFKA_TRIGGER, set(metadata) - KAFKA_TRIGGER
    assert all(isinstance(value, str) for value in metadata.values())  # KEDA wants strings
    # The topic and group the drains commit on (the settings' defaults, which the ConfigMap
    # keeps), the brokers the pods use.
    assert not {"KAFKA_SPANS_TOPIC", "KAFKA_CONSUMER_GROUP"} & set(config)
    assert metadata["topic"] == setting_default("KAFKA_SPANS_TOPIC")
    assert metadata["consumerGroup"] == setting_default("KAFKA_CONSUMER_GROUP")
    assert metadata["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert int(metadata["lagThreshold"]) == 100_000  # design: lag > 100K messages


def test_the_build_refuses_a_patch_without_a_target(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: [../base]\npatches: [{path: p.yaml}]\n")
    (overlay / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    with pytest.raises(AssertionError, match="names no object"):
        build(overlay)
