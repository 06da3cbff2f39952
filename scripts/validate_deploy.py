#!/usr/bin/env python3
"""Validates deploy/: the Kubernetes manifests, the Helm chart and the KServe runtime.

- deploy/kubernetes/*.yaml and deploy/kserve/*.yaml: every document parses; built-in kinds
  (Deployment, Service, PersistentVolumeClaim, HorizontalPodAutoscaler) are checked against the
  Kubernetes API's OpenAPI schemas by `kubernetes-validate --strict` (unknown fields are errors);
  the custom resources (ServiceMonitor, ClusterServingRuntime, InferenceService) have no schema
  there, so their required structure is checked here (apiVersion, kind, metadata.name, the spec
  fields their operators read).
- deploy/helm/petrel: `helm lint --strict` and `helm template` through Helm's own Go SDK
  (helm-python-sdk, no helm binary), with the default values and with every optional part turned
  on; the rendered manifests then go through the same schema check.
- deploy/Containerfile: the stages and instructions the image needs are there (no image is built
  here: no container engine on this machine).
Exits 1 on any problem. Run by scripts/validate-deploy.sh (which installs what it needs).
"""
import glob
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILTIN = {"Deployment", "Service", "PersistentVolumeClaim", "HorizontalPodAutoscaler", "ConfigMap", "Job"}
problems = []


def fail(where, message):
    problems.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}")


def need(doc, path, where):
    node = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            fail(where, f"missing {path}")
            return None
        node = node[key]
    return node


def check_custom(doc, where):
    kind = doc.get("kind")
    need(doc, "metadata.name", where)
    if kind == "ServiceMonitor":
        if doc.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(where, "ServiceMonitor apiVersion must be monitoring.coreos.com/v1")
        need(doc, "spec.selector.matchLabels", where)
        for e in need(doc, "spec.endpoints", where) or []:
            if "port" not in e:
                fail(where, "every endpoint needs a port name")
    elif kind in ("ServingRuntime", "ClusterServingRuntime"):
        if doc.get("apiVersion") != "serving.kserve.io/v1alpha1":
            fail(where, f"{kind} apiVersion must be serving.kserve.io/v1alpha1")
        formats = need(doc, "spec.supportedModelFormats", where) or []
        if not all("name" in f for f in formats):
            fail(where, "every supportedModelFormat needs a name")
        versions = need(doc, "spec.protocolVersions", where) or []
        if not set(versions) <= {"v1", "v2", "grpc-v1", "grpc-v2"}:
            fail(where, f"unknown protocolVersions {versions}")
        containers = need(doc, "spec.containers", where) or []
        if not any(c.get("name") == "kserve-container" for c in containers):
            fail(where, "the serving container must be named kserve-container")
        for c in containers:
            args = " ".join(c.get("args", []))
            for flag in ("--model-repository=/mnt/models", "--http-port=8080"):
                if flag not in args:
                    fail(where, f"container args lack {flag} (KServe mounts models at /mnt/models and probes 8080)")
    elif kind == "InferenceService":
        if doc.get("apiVersion") != "serving.kserve.io/v1beta1":
            fail(where, "InferenceService apiVersion must be serving.kserve.io/v1beta1")
        need(doc, "spec.predictor.model.modelFormat.name", where)
        need(doc, "spec.predictor.model.storageUri", where)
    else:
        fail(where, f"unknown kind {kind}")


def check_documents(text, where):
    builtin = []
    for i, doc in enumerate(yaml.safe_load_all(text)):
        if not doc:
            continue
        w = f"{where}#{i}"
        if "apiVersion" not in doc or "kind" not in doc:
            fail(w, "a document without apiVersion and kind")
            continue
        if doc["kind"] in BUILTIN:
            builtin.append(doc)
        else:
            check_custom(doc, w)
    if builtin:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump_all(builtin, f)
        r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        if r.returncode != 0:
            fail(where, "kubernetes-validate: " + (r.stdout + r.stderr).strip())
    return len(builtin)


def main():
    counted = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy/kubernetes/*.yaml")) + glob.glob(os.path.join(ROOT, "deploy/kserve/*.yaml"))):
        counted += check_documents(open(path).read(), os.path.relpath(path, ROOT))

    import helm_python
    chart_dir = os.path.join(ROOT, "deploy/helm/petrel")
    report = helm_python.lint(chart_dir, strict=True)
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            fail("helm lint", f"{m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []) or []:
        fail("helm lint", e)
    chart = helm_python.Chart.load(chart_dir)
    variants = {
        "defaults": None,
        "everything on": {"serviceMonitor": {"enabled": True}, "autoscaling": {"enabled": True},
                          "modelRepository": {"storageClassName": "fast"}, "extraArgs": ["--log-verbose=1"],
                          "nodeSelector": {"gpu": "h100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
        "cpu only": {"device": "cpu", "gpus": 0, "modelRepository": {"create": False}},
    }
    for label, values in variants.items():
        try:
            rendered = chart.render(values, name="petrel", namespace="default")
        except helm_python.HelmError as e:
            fail(f"helm template ({label})", str(e))
            continue
        text = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml") and v.strip())
        counted += check_documents(text, f"helm template ({label})")
        if values is None and "nvidia.com/gpu" not in text:
            fail("helm template (defaults)", "no GPU request")

    cf = open(os.path.join(ROOT, "deploy/Containerfile")).read()
    for needle in ("AS kernels", "AS build", "--static-swift-stdlib", "libpetrel_cuda.so", "USER petrel", "EXPOSE 8000 8001 8002",
                   "VOLUME", 'ENTRYPOINT ["petrel", "serve"]', "PETREL_MODEL_REPOSITORY"):
        if needle not in cf:
            fail("deploy/Containerfile", f"lacks {needle!r}")

    print(f"{counted} built-in resources checked against the Kubernetes 1.37 API schemas (kubernetes-validate --strict), "
          f"Helm chart linted and rendered with Helm SDK {helm_python.helm_sdk_version()}; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
