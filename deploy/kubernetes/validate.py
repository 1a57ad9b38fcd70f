"""Checks for validate.sh, run with the Python of target/test-venv (which has
kubernetes-validate and PyYAML).

    validate.py schema K8S_VERSION FILE...
        Every resource of the rendered YAML streams FILE... against the
        Kubernetes JSON schemas of K8S_VERSION bundled with
        kubernetes-validate, strict (an unknown field is an error). A kind
        the schemas do not know is an error too (kubernetes-validate itself
        only warns, which would let a misspelt apiVersion through).

    validate.py semantics CLUSTER MONITORING SCRAPE_CONFIG [BIN_DIR]
        What a schema cannot see: the reapi containers' flags against the
        binaries' --help (when BIN_DIR holds them), the $(VAR)s of their
        args, --advertise with a wildcard --listen, probes on the metrics
        port, grace periods above the drain times, disk budgets below their
        volumes, selectors that select something, the autoscaler's metric
        against the prometheus-adapter rule, and the scrape config.

Exits 1 with one line per problem.
"""

import os
import re
import subprocess
import sys

import yaml

# How long reapi-scheduler lets its operations finish on SIGTERM (DRAIN_GRACE
# in bin/src/bin/reapi-scheduler.rs) and reapi-worker's default
# --drain_grace (DEFAULT_DRAIN_GRACE in bin/src/config/worker.rs).
SCHEDULER_DRAIN_SECONDS = 60
WORKER_DEFAULT_DRAIN_SECONDS = 600
DEFAULT_REPLICA_COUNT = 3
BINARIES = ("reapi-scheduler", "reapi-worker")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def name_of(resource):
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


# ---- schema ----


def schema(version, paths):
    import kubernetes_validate
    from kubernetes_validate import utils

    bundled = utils.all_versions()
    if utils.major_minor(version) not in {utils.major_minor(v) for v in bundled}:
        sys.exit(
            f"validate.py: kubernetes-validate {kubernetes_validate.__version__} has no "
            f"schemas for Kubernetes {version}; it has {', '.join(bundled)} "
            "(set K8S_VERSION to one of them)"
        )
    count = 0
    for path in paths:
        for resource in load_all(path):
            count += 1
            where = f"{os.path.basename(path)} {name_of(resource)}"
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                field = ".".join(str(p) for p in e.path) or "(top)"
                problem(where, f"{field}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problem(where, e.message)
            except Exception as e:  # a schema the validator cannot use
                problem(where, f"could not be validated: {e}")
    if count == 0:
        problem(" ".join(paths), "no resources rendered")
    return count


# ---- semantics ----


def parse_duration(text):
    """Seconds, as reapi's parse_duration reads them (30, 500ms, 10m, 3h)."""
    m = re.fullmatch(r"([0-9.]+)\s*(|s|ms|m|min|h)", text.strip())
    if not m:
        raise ValueError(f"not a reapi duration: {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600}[m.group(2)]


def parse_reapi_size(text):
    """Bytes, as reapi's parse_byte_size reads them: K, M, G, T are binary."""
    m = re.fullmatch(r"([0-9.]+)\s*([kmgt]?)(i?b)?", text.strip().lower())
    if not m:
        raise ValueError(f"not a reapi size: {text!r}")
    return int(float(m.group(1)) * (1 << (10 * " kmgt".index(m.group(2) or " "))))


def parse_quantity(text):
    """Bytes of a Kubernetes quantity (100Gi, 60G, 512Mi, 1e9)."""
    m = re.fullmatch(r"([0-9.e+]+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    suffix = m.group(2) or ""
    if suffix.endswith("i"):
        factor = 1 << (10 * "KMGTP".index(suffix[0]) + 10)
    elif suffix:
        factor = 1000 ** ("kMGTP".index(suffix) + 1)
    else:
        factor = 1
    return float(m.group(1)) * factor


def help_flags(bin_dir, binary):
    """Every flag and alias in `binary --help`, or None when not built."""
    path = os.path.join(bin_dir, binary) if bin_dir else ""
    if not path or not os.access(path, os.X_OK):
        return None
    out = subprocess.run([path, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"--([A-Za-z0-9][A-Za-z0-9_-]*)", out))


def parse_args(args):
    """{flag: [values]} of `--flag=value`, `--flag value` and `--flag`."""
    flags = {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if not arg.startswith("--"):
            flags.setdefault("", []).append(arg)
            i += 1
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
            value = str(args[i + 1])
            i += 1
        flags.setdefault(name, []).append(value if (eq or value) else None)
        i += 1
    return flags


def flag(flags, *names, default=None):
    """The last value of the first of `names` given (aliases), else default."""
    for name in names:
        if name in flags:
            return flags[name][-1]
    return default


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def volume_size(pod_spec, workload, mount_path, container):
    """Bytes of the volume mounted at mount_path (None: unbounded or unknown)
    and a description; raises LookupError when nothing is mounted there."""
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    name = mounts.get(mount_path.rstrip("/"))
    if name is None:
        raise LookupError(mount_path)
    for volume in pod_spec.get("volumes", []):
        if volume["name"] == name:
            limit = (volume.get("emptyDir") or {}).get("sizeLimit")
            return (parse_quantity(limit) if limit else None), f"volume {name}"
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        if claim["metadata"]["name"] == name:
            storage = claim["spec"]["resources"]["requests"]["storage"]
            return parse_quantity(storage), f"volumeClaimTemplate {name}"
    raise LookupError(mount_path)


def check_probe(where, container, probe_name, path, metrics_port):
    probe = container.get(probe_name)
    get = (probe or {}).get("httpGet")
    if not get:
        problem(where, f"no {probe_name} with httpGet {path}")
        return
    if get.get("path") != path:
        problem(where, f"{probe_name} asks {get.get('path')}, not {path}")
    port = get.get("port")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    number = ports.get(port) if isinstance(port, str) else port
    if number != metrics_port:
        problem(where, f"{probe_name} port {port} is not the --metrics_listen port {metrics_port}")


def check_reapi_container(where, workload, pod_spec, container, binary, known_flags, replica_counts):
    flags = parse_args(container.get("args", []))
    if "" in flags:
        problem(where, f"arguments that are not flags: {flags['']}")
    if known_flags is not None:
        for name in flags:
            if name and name not in known_flags:
                problem(where, f"{binary} has no flag --{name} (see {binary} --help)")
    env = {e["name"] for e in container.get("env", [])}
    for arg in container.get("args", []):
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
            if var not in env:
                problem(where, f"{arg!r} names $({var}), which is not in the container's env "
                               "(Kubernetes would pass it on literally)")
    if not flag(flags, "schedulers"):
        problem(where, "no --schedulers (the schedulers' headless Service name:port)")

    listen = flag(flags, "listen")
    if listen and re.match(r"^(0\.0\.0\.0|\[::\]):", listen) and not flag(flags, "advertise"):
        problem(where, f"--listen={listen} needs --advertise (the address others reach it at)")

    metrics = flag(flags, "metrics_listen", "metrics-listen")
    if not metrics:
        problem(where, "no --metrics_listen: no /metrics, /healthz or /readyz")
    else:
        port = int(metrics.rsplit(":", 1)[1])
        if port not in [p["containerPort"] for p in container.get("ports", [])]:
            problem(where, f"--metrics_listen port {port} is not a containerPort")
        check_probe(where, container, "readinessProbe", "/readyz", port)
        check_probe(where, container, "livenessProbe", "/healthz", port)

    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    if binary == "reapi-worker":
        drain = parse_duration(flag(flags, "drain_grace", default=f"{WORKER_DEFAULT_DRAIN_SECONDS}"))
        what = "--drain_grace"
    else:
        drain, what = SCHEDULER_DRAIN_SECONDS, "the scheduler's fixed 60 s drain"
    if grace <= drain:
        problem(where, f"terminationGracePeriodSeconds {grace} is not above {what} ({drain:g} s)")

    replica_counts.add(int(flag(flags, "replica_count", default=DEFAULT_REPLICA_COUNT)))

    data_dir = flag(flags, "data-dir", "data_dir")
    if not data_dir:
        problem(where, "no --data-dir (it would default to ./reapi-data in the image)")
        return
    try:
        size, volume = volume_size(pod_spec, workload, data_dir, container)
    except LookupError:
        problem(where, f"no volume is mounted at --data-dir {data_dir}")
        return
    if binary == "reapi-worker":
        # The disk store's budget: the replica space, which is --disk_size
        # unless given; with --replica_space=0, --disk_size of cache.
        disk_size = parse_reapi_size(flag(flags, "disk_size", "disk-size", default="10G"))
        replica_space = flag(flags, "replica_space")
        budget, what = disk_size, "--disk_size"
        if replica_space is not None and parse_reapi_size(replica_space) > 0:
            budget, what = parse_reapi_size(replica_space), "--replica_space"
        if size is not None and budget >= size:
            problem(where, f"{what} ({budget / (1 << 30):g} GiB) does not fit in {volume} "
                           f"({size / (1 << 30):g} GiB)")


def semantics(cluster_path, monitoring_path, scrape_path, bin_dir):
    resources = load_all(cluster_path)
    known = {b: help_flags(bin_dir, b) for b in BINARIES}
    for b, flags in known.items():
        if flags is None:
            print(f"validate.py: {b} is not built in {bin_dir or '(no BIN_DIR)'}; "
                  "its flags are not checked against --help")
    replica_counts = set()
    pods = []  # (workload, template labels)
    reapi_containers = 0
    for workload in resources:
        if workload["kind"] not in WORKLOADS:
            continue
        spec = workload["spec"]
        template = spec["template"]
        labels = template.get("metadata", {}).get("labels", {})
        pods.append((workload, labels))
        if not selects(spec.get("selector", {}).get("matchLabels", {}), labels):
            problem(name_of(workload), "selector.matchLabels does not match the pod template's labels")
        pod_spec = template["spec"]
        for container in pod_spec["containers"]:
            binary = os.path.basename((container.get("command") or [""])[0])
            if binary in BINARIES:
                reapi_containers += 1
                where = f"{name_of(workload)} container {container['name']}"
                check_reapi_container(where, workload, pod_spec, container, binary,
                                      known[binary], replica_counts)
    if reapi_containers == 0:
        problem(cluster_path, "no container runs reapi-scheduler or reapi-worker")
    if len(replica_counts) > 1:
        problem(cluster_path, f"--replica_count differs between containers: {sorted(replica_counts)}")

    for resource in resources:
        kind = resource["kind"]
        if kind == "Service":
            selector = resource["spec"].get("selector", {})
        elif kind == "PodDisruptionBudget":
            selector = resource["spec"].get("selector", {}).get("matchLabels", {})
        else:
            continue
        if not any(selects(selector, labels) for _, labels in pods):
            problem(name_of(resource), f"selector {selector} selects no pod template")

    # The autoscaler: its target exists and leaves the replica count to it;
    # its External metrics are ones the adapter rule serves.
    adapter_metrics = check_monitoring(monitoring_path, scrape_path)
    for hpa in (r for r in resources if r["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = [r for r in resources if r["kind"] == ref["kind"] and r["metadata"]["name"] == ref["name"]]
        if not target:
            problem(name_of(hpa), f"scaleTargetRef {ref['kind']}/{ref['name']} is not rendered")
        elif "replicas" in target[0]["spec"]:
            problem(name_of(target[0]), "sets spec.replicas, which every apply would reset "
                                        "under its HorizontalPodAutoscaler")
        for metric in hpa["spec"].get("metrics", []):
            if metric["type"] == "External":
                name = metric["external"]["metric"]["name"]
                if name not in adapter_metrics:
                    problem(name_of(hpa), f"External metric {name} is not served by the "
                                          f"prometheus-adapter rules ({sorted(adapter_metrics)})")


def check_monitoring(monitoring_path, scrape_path):
    """The external metric names the adapter rules serve; checks the rules and
    the scrape config along the way."""
    served = set()
    configmaps = [r for r in load_all(monitoring_path) if r["kind"] == "ConfigMap"]
    for cm in configmaps:
        where = f"{name_of(cm)} config.yaml"
        text = cm.get("data", {}).get("config.yaml")
        if text is None:
            problem(name_of(cm), "no config.yaml")
            continue
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            problem(where, f"not YAML: {e}")
            continue
        rules = config.get("externalRules") or []
        if not rules:
            problem(where, "no externalRules")
        for i, rule in enumerate(rules):
            at = f"{where} externalRules[{i}]"
            for key in ("seriesQuery", "metricsQuery", "name"):
                if not rule.get(key):
                    problem(at, f"no {key}")
            if "<<.LabelMatchers>>" not in (rule.get("metricsQuery") or ""):
                problem(at, "metricsQuery does not use <<.LabelMatchers>> (the autoscaler's namespace)")
            overrides = (rule.get("resources") or {}).get("overrides") or {}
            if not any((v or {}).get("resource") == "namespace" for v in overrides.values()):
                problem(at, "no label is mapped to the namespace resource")
            served.add((rule.get("name") or {}).get("as"))
    if not configmaps:
        problem(monitoring_path, "no prometheus-adapter ConfigMap rendered")

    try:
        with open(scrape_path) as f:
            scrape = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        problem(scrape_path, f"not YAML: {e}")
        return served
    jobs = scrape.get("scrape_configs") or []
    if not jobs:
        problem(scrape_path, "no scrape_configs")
    for job in jobs:
        if not job.get("job_name"):
            problem(scrape_path, "a scrape job without job_name")
        targets = {r.get("target_label") for r in job.get("relabel_configs", [])}
        if "namespace" not in targets:
            problem(scrape_path, f"job {job.get('job_name')} sets no `namespace` label, "
                                 "which the adapter rule matches on")
    return served


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "schema":
        count = schema(sys.argv[2], sys.argv[3:])
        summary = f"{count} resources valid against Kubernetes {sys.argv[2]} (strict)"
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "semantics":
        semantics(*sys.argv[2:5], sys.argv[5] if len(sys.argv) == 6 else None)
        summary = "flags, probes, grace periods, disk budgets, selectors and monitoring consistent"
    else:
        sys.exit(__doc__)
    if problems:
        for line in problems:
            print(f"FAIL {line}", file=sys.stderr)
        sys.exit(1)
    print(f"validate.py: {summary}")


if __name__ == "__main__":
    main()
