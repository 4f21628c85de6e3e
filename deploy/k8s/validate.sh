#!/usr/bin/env bash
# Renders every kustomize overlay under deploy/k8s/overlays (or the overlay
# directories given as arguments) with `kubectl kustomize` and validates the
# output offline: each object against the Kubernetes OpenAPI schemas
# (kubernetes-validate, strict: unknown fields are errors) for the oldest and
# newest Kubernetes versions it knows, plus Herald's own deployment rules
# (references resolve, probes and resources are set, containers are locked
# down, the dispatch HPA stays below the partition count, the dispatch grace
# period outlasts a delivery attempt). Custom resources such as ServiceMonitor
# have no offline schema and are skipped by name.
#
# Installs what is missing: kubectl from Debian's `kubernetes-client` (whose
# kubectl 1.20 embeds kustomize v2.0.3, the oldest these overlays support),
# and kubernetes-validate into the project's .venv from PyPI.
#
# Environment: KUBECTL (a kubectl binary to use instead of the one on PATH),
# HERALD_K8S_VERSIONS (space-separated Kubernetes versions to validate
# against; default: 1.25 and the newest the validator knows).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"
k8s_dir="$herald_root/deploy/k8s"
cd "$herald_root"

kubectl="${KUBECTL:-kubectl}"
[ -n "${KUBECTL:-}" ] || ensure_packages kubectl kubernetes-client
command -v "$kubectl" >/dev/null 2>&1 || { echo "kubectl not found: $kubectl" >&2; exit 1; }

venv="$herald_root/.venv"
req="$k8s_dir/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  ensure_packages python3 python3
  python3 -m venv "$venv" 2>/dev/null || { ensure_packages dummy python3-venv; python3 -m venv "$venv"; }
fi
if ! cmp -s "$req" "$venv/.installed-k8s-requirements"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.installed-k8s-requirements"
fi

if [ $# -gt 0 ]; then overlays=("$@"); else overlays=("$k8s_dir"/overlays/*/); fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

client="$("$kubectl" version --client 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1 || true)"
kustomize="$("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p' || true)"
echo "kubectl $(command -v "$kubectl") ${client:-unknown version}${kustomize:+ (kustomize $kustomize)}"

rendered=()
for overlay in "${overlays[@]}"; do
  overlay="${overlay%/}"
  name="$(basename "$overlay")"
  if ! "$kubectl" kustomize "$overlay" >"$work/$name.yaml" 2>"$work/$name.err"; then
    echo "FAIL $name: kubectl kustomize $overlay" >&2
    cat "$work/$name.err" >&2
    exit 1
  fi
  # kustomize v4+ calls `bases` and `patchesStrategicMerge` deprecated; they
  # stay because kubectl 1.20's kustomize v2.0.3 knows nothing newer.
  if grep -q "is deprecated" "$work/$name.err"; then
    echo "note $name: kustomize reports bases/patchesStrategicMerge as deprecated (kept for kustomize v2.0.3)"
  fi
  if grep -v "is deprecated" "$work/$name.err" | grep -q .; then
    grep -v "is deprecated" "$work/$name.err" | sed "s/^/kustomize $name: /"
  fi
  rendered+=("$name=$work/$name.yaml")
done

"$venv/bin/python" - "${rendered[@]}" <<'PY'
"""Validates rendered overlays: schemas per Kubernetes version, then Herald's rules."""
import os
import sys

import yaml
from kubernetes_validate import utils as kv

versions = os.environ.get("HERALD_K8S_VERSIONS", "").split() or ["1.25.0", kv.latest_version()]


def is_custom(api_version):
    """True for kinds from CRDs: an API group with a dot outside *.k8s.io."""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return "." in group and not group.endswith(".k8s.io")


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def template_labels(obj):
    return obj["spec"]["template"]["metadata"].get("labels", {})


def matches(selector, labels):
    if not selector:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        op, key, values = expr["operator"], expr["key"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def secret_values(secret):
    """A Secret's values, from stringData and (decoded) data."""
    import base64
    values = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        values.setdefault(key, base64.b64decode(value).decode())
    return {k: str(v or "").strip() for k, v in values.items()}


def secret_rules(secrets, herald_env):
    """Placeholders never ship; gRPC is authenticated; producers hold a publish token only."""
    errors = []
    for name, secret in secrets.items():
        for key, value in secret_values(secret).items():
            if value.startswith("REPLACE-ME"):
                errors.append(f"Secret/{name}: {key} is still a placeholder; set it (deploy/README.md, Secrets)")
    for key in ("HERALD_GRPC_TOKEN", "HERALD_GRPC_PUBLISH_TOKENS"):
        if herald_env.get(key):
            errors.append(f"ConfigMap herald-config: {key} is a secret; it belongs in herald-secrets")
    herald = secrets.get("herald-secrets")
    full, publish = "", []
    if herald is not None:
        values = secret_values(herald)
        full = values.get("HERALD_GRPC_TOKEN", "")
        publish = [t.strip() for t in values.get("HERALD_GRPC_PUBLISH_TOKENS", "").split(",") if t.strip()]
        if not full:
            errors.append("Secret/herald-secrets: HERALD_GRPC_TOKEN is empty, so gRPC would take any caller")
        if not publish:
            errors.append("Secret/herald-secrets: HERALD_GRPC_PUBLISH_TOKENS is empty, so producers would need "
                          "the full token")
        if full and full in publish:
            errors.append("Secret/herald-secrets: HERALD_GRPC_PUBLISH_TOKENS holds HERALD_GRPC_TOKEN")
    producer = secrets.get("herald-producer-token")
    if producer is not None and herald is not None:
        token = secret_values(producer).get("HERALD_PUBLISH_TOKEN", "")
        if token and token == full:
            errors.append("Secret/herald-producer-token: holds the full HERALD_GRPC_TOKEN, not a publish token")
        elif token not in publish:
            errors.append("Secret/herald-producer-token: HERALD_PUBLISH_TOKEN is not one of HERALD_GRPC_PUBLISH_TOKENS")
    return errors


def herald_rules(objs):
    """Deployment rules no schema expresses. Returns (errors, notes)."""
    errors, notes = [], []
    by_kind = {}
    seen = set()
    for o in objs:
        ident = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        if ident in seen:
            errors.append(f"{o['kind']}/{o['metadata']['name']} is rendered twice")
        seen.add(ident)
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    workloads = [o for o in objs if pod_spec(o) is not None]
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}

    herald_env = {}
    for cm in configmaps.values():
        if cm["metadata"]["name"].startswith("herald-config"):
            herald_env = cm.get("data", {})

    for w in workloads:
        name = f"{w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        if not matches(w["spec"].get("selector"), template_labels(w)):
            errors.append(f"{name}: selector does not match its pod template labels")
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: automountServiceAccountToken is not false")
        for c in spec["containers"]:
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
                errors.append(f"{cname}: runAsNonRoot is not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cname}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cname}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                errors.append(f"{cname}: capabilities do not drop ALL")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        errors.append(f"{cname}: no {part}.{r}")
            if "livenessProbe" not in c or "readinessProbe" not in c:
                errors.append(f"{cname}: liveness and readiness probes are required")
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append(f"{cname}: {probe} names port {port!r}, which the container lacks")
            for src in c.get("envFrom", []):
                if "configMapRef" in src and src["configMapRef"]["name"] not in configmaps:
                    errors.append(f"{cname}: ConfigMap {src['configMapRef']['name']} is not rendered")
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    notes.append(f"{cname} reads Secret {src['secretRef']['name']}, which is not rendered: "
                                 "it must exist in the namespace (secret manager)")
        hpa = hpa_targets.get(w["metadata"]["name"])
        if hpa is not None and "replicas" in w["spec"]:
            errors.append(f"{name}: sets replicas although HPA {hpa['metadata']['name']} owns them")

    dispatch = by_kind.get("Deployment", {}).get("herald-dispatch")
    if dispatch is not None:
        timeout_s = int(herald_env.get("HERALD_DELIVERY_TIMEOUT_MS", "15000")) / 1000
        grace = pod_spec(dispatch).get("terminationGracePeriodSeconds", 30)
        if grace < timeout_s + 15:
            errors.append(f"Deployment/herald-dispatch: terminationGracePeriodSeconds {grace} does not leave "
                          f"15 s of margin over the {timeout_s:g} s delivery timeout")
        hpa = hpa_targets.get("herald-dispatch")
        partitions = int(herald_env.get("HERALD_PARTITIONS", "16"))
        if hpa is not None and hpa["spec"]["maxReplicas"] >= partitions:
            errors.append(f"HorizontalPodAutoscaler/herald-dispatch: maxReplicas {hpa['spec']['maxReplicas']} "
                          f"is not below HERALD_PARTITIONS={partitions}")

    errors.extend(secret_rules(secrets, herald_env))

    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind.get(kind, {}).values():
            name = f"{kind}/{o['metadata']['name']}"
            if kind == "Service":
                selector = {"matchLabels": o["spec"].get("selector", {})}
            elif kind == "PodDisruptionBudget":
                selector = o["spec"]["selector"]
            else:
                selector = o["spec"]["podSelector"]
            targets = [w for w in workloads if matches(selector, template_labels(w))]
            if not targets:
                errors.append(f"{name}: selects no rendered workload")
            if kind == "Service":
                for port in o["spec"]["ports"]:
                    tp = port.get("targetPort")
                    for w in targets:
                        names = {p.get("name") for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
                        if isinstance(tp, str) and tp not in names:
                            errors.append(f"{name}: targetPort {tp!r} is not a port of {w['metadata']['name']}")
    return errors, notes


failed = False
for arg in sys.argv[1:]:
    overlay, path = arg.split("=", 1)
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    print(f"== {overlay}: {len(objs)} objects, schemas of Kubernetes {', '.join(versions)} (strict)")
    for o in objs:
        ident = f"{o['kind']}/{o['metadata']['name']}"
        if is_custom(o["apiVersion"]):
            print(f"skip {ident}: custom resource {o['apiVersion']}, no offline schema (needs its CRD installed)")
            continue
        problems = []
        for version in versions:
            try:
                kv.validate(o, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(root)"
                problems.append(f"k8s {e.version}: {where}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problems.append(e.message)
            except kv.VersionNotSupportedError as e:
                problems.append(f"kubernetes-validate has no schemas for Kubernetes {e.version}")
        if problems:
            failed = True
            for p in problems:
                print(f"FAIL {ident} ({o['apiVersion']}): {p}")
        else:
            print(f"ok   {ident} ({o['apiVersion']})")
    errors, notes = herald_rules(objs)
    for n in notes:
        print(f"note {n}")
    for e in errors:
        failed = True
        print(f"FAIL {e}")
    if not errors:
        print(f"ok   {overlay}: Herald's deployment rules hold")

if failed:
    print("manifests are NOT valid")
    sys.exit(1)
print("all overlays rendered and validated")
PY
