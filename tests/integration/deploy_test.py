#!/usr/bin/python3
"""Checks deploy/: every Kubernetes manifest parses, the sluice containers' ports, probes,
annotations, volumes and grace periods agree with the configuration in their ConfigMap, that
configuration passes `sluice check`, and the Dockerfile copies paths that exist and everything
CMake builds.

Usage: deploy_test.py SLUICE_BINARY SOURCE_DIR   (exit 0 ok, 1 failures, 77 skipped)
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import tomllib

try:
    import yaml
except ImportError:
    print("WARN: python3-yaml is not installed (apt-get install python3-yaml); skipped")
    sys.exit(77)

SLUICE, SOURCE = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert m, duration
    n, unit = int(m.group(1)), m.group(2)
    return n / 1000 if unit == "ms" else n * {"s": 1, "m": 60, "h": 3600}[unit]


def sluice_check(name, text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        r = subprocess.run([SLUICE, "check", "-c", path], capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: sluice check failed:\n{r.stdout}{r.stderr}")
    finally:
        os.unlink(path)


def under(path, mounts):
    """The mount (path, volume, readOnly) that holds `path`, the deepest one."""
    best = None
    for m in mounts:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    return best


def check_workload(file, doc, configmaps):
    name = f"{os.path.basename(file)}: {doc['kind']} {doc['metadata']['name']}"
    pod = doc["spec"]["template"]
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    sluices = [c for c in spec["containers"] if c["image"].startswith("sluice")]
    check(len(sluices) == 1, f"{name}: one sluice container")
    if not sluices:
        return
    c = sluices[0]
    args = c.get("args", [])
    check(args[:2] == ["run", "-c"], f"{name}: args run -c FILE, got {args}")
    conf_path = args[2]
    mounts = c.get("volumeMounts", [])
    for m in mounts:
        check(m["name"] in volumes, f"{name}: mount {m['name']} has a volume")
    conf_mount = under(conf_path, mounts)
    if not check(conf_mount is not None, f"{name}: {conf_path} is on a mounted volume"):
        return
    cm_name = volumes[conf_mount["name"]].get("configMap", {}).get("name")
    key = os.path.relpath(conf_path, conf_mount["mountPath"])
    if not check(cm_name in configmaps and key in configmaps[cm_name],
                 f"{name}: ConfigMap {cm_name} has {key}"):
        return
    text = configmaps[cm_name][key]
    sluice_check(f"{name} ConfigMap {cm_name}/{key}", text)
    cfg = tomllib.loads(text)
    agent = cfg["agent"]

    # The admin port: container port, probes, Prometheus annotations.
    admin_port = int(agent["admin"].rsplit(":", 1)[1])
    check(not agent["admin"].startswith("127."), f"{name}: admin listens beyond loopback")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("admin") == admin_port, f"{name}: containerPort admin = {admin_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path, f"{name}: {probe} GET {path}")
        port = get.get("port")
        check(ports.get(port, port) == admin_port, f"{name}: {probe} on the admin port")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", f"{name}: prometheus.io/scrape")
    check(ann.get("prometheus.io/port") == str(admin_port), f"{name}: prometheus.io/port")
    check(ann.get("prometheus.io/path") == "/metrics", f"{name}: prometheus.io/path")

    # Resources and the grace period.
    res = c.get("resources", {})
    for k in ("requests", "limits"):
        check({"cpu", "memory"} <= set(res.get(k, {})), f"{name}: resources.{k} cpu and memory")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    timeout = seconds(agent.get("shutdown_timeout", "10s"))
    check(grace > timeout, f"{name}: terminationGracePeriodSeconds {grace} > shutdown_timeout {timeout}")

    # State and inputs on volumes.
    data = under(agent["data_dir"], mounts)
    if check(data is not None, f"{name}: data_dir {agent['data_dir']} is mounted"):
        check(not data.get("readOnly", False), f"{name}: data_dir is writable")
        v = volumes[data["name"]]
        check("hostPath" in v or "emptyDir" in v, f"{name}: data_dir on hostPath or emptyDir")
    for sname, src in cfg.get("sources", {}).items():
        for p in src.get("paths", []):
            m = under(os.path.dirname(p), mounts)
            if check(m is not None, f"{name}: source {sname} path {p} is mounted"):
                check(m.get("readOnly", False), f"{name}: {p} is mounted read-only")
    sec = c.get("securityContext", {})
    check(sec.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
    check(sec.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
    check("ALL" in sec.get("capabilities", {}).get("drop", []), f"{name}: drops all capabilities")

    if doc["kind"] == "DaemonSet":
        for path in ("/var/log", "/var/log/containers"):
            m = [m for m in mounts if m["mountPath"] == path]
            if check(len(m) == 1, f"{name}: {path} mounted"):
                v = volumes[m[0]["name"]]
                check(v.get("hostPath", {}).get("path") == path, f"{name}: {path} is a hostPath")
                check(m[0].get("readOnly") is True, f"{name}: {path} read-only")
        v = volumes[data["name"]] if data else {}
        check(v.get("hostPath", {}).get("type") == "DirectoryOrCreate",
              f"{name}: the state hostPath is DirectoryOrCreate")
    else:
        # A sidecar shares an emptyDir log volume with the application container.
        log_mounts = [under(os.path.dirname(p), mounts)
                      for s in cfg.get("sources", {}).values() for p in s.get("paths", [])]
        for m in log_mounts:
            if not m:
                continue
            check("emptyDir" in volumes[m["name"]], f"{name}: the log volume is an emptyDir")
            others = [o for o in spec["containers"] if o is not c and
                      any(x["name"] == m["name"] for x in o.get("volumeMounts", []))]
            check(len(others) >= 1, f"{name}: an application container writes {m['name']}")


def check_manifests():
    files = sorted(glob.glob(os.path.join(SOURCE, "deploy", "kubernetes", "*.yaml")))
    check(len(files) >= 2, "deploy/kubernetes has the DaemonSet and the sidecar manifests")
    kinds = []
    for f in files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {})
                      for d in docs if d["kind"] == "ConfigMap"}
        for d in docs:
            check({"apiVersion", "kind", "metadata"} <= set(d), f"{f}: a complete object")
            kinds.append(d["kind"])
            if d["kind"] in ("DaemonSet", "Deployment"):
                check_workload(f, d, configmaps)
    check("DaemonSet" in kinds, "a DaemonSet")
    check("Deployment" in kinds, "a sidecar Deployment")


def check_dockerfile():
    path = os.path.join(SOURCE, "deploy", "Dockerfile")
    lines, cont = [], ""
    with open(path) as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                cont += line[:-1] + " "
                continue
            lines.append(cont + line)
            cont = ""
    froms = [l.split()[1] for l in lines if l.startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: multi-stage")
    check(all(f == "debian:bookworm-slim" for f in froms), f"Dockerfile: debian:bookworm-slim, got {froms}")
    copied = []
    for l in lines:
        if not l.startswith("COPY "):
            continue
        words = l.split()[1:]
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        for src in words[:-1]:
            check(os.path.exists(os.path.join(SOURCE, src)), f"Dockerfile: COPY {src} exists")
            copied.append(src.rstrip("/"))
    # Everything CMakeLists.txt reads must be in the build stage.
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as fh:
        cmake = fh.read()
    needed = set(re.findall(r"add_subdirectory\(([\w/]+)\)", cmake))
    needed |= set(re.findall(r"install\(FILES ([\w/.]+)", cmake))
    needed |= set(re.findall(r"include\(([\w/]+\.cmake)\)", cmake))
    for n in sorted(needed):
        if n.startswith("tests") or n.startswith("bench"):
            continue  # not built in the image (SLUICE_BUILD_TESTS/BENCH=OFF)
        check(any(n == c or n.startswith(c + "/") for c in copied),
              f"Dockerfile: {n} (used by CMakeLists.txt) is copied")
    check("-DSLUICE_BUILD_TESTS=OFF" in " ".join(lines), "Dockerfile: tests are not built")
    check(any("strip" in l for l in lines), "Dockerfile: the binary is stripped")
    users = [l.split()[1] for l in lines if l.startswith("USER ")]
    check(users and not users[-1].startswith("0") and users[-1].split(":")[0] != "root",
          f"Dockerfile: runs as a non-root user, got {users}")
    cmd = [l for l in lines if l.startswith("CMD ")]
    check(cmd and '"/etc/sluice/sluice.toml"' in cmd[-1], "Dockerfile: CMD runs the copied config")
    check(any(l.startswith("COPY conf/sluice.toml /etc/sluice/sluice.toml") for l in lines),
          "Dockerfile: the default config is copied to /etc/sluice/sluice.toml")
    with open(os.path.join(SOURCE, "conf", "sluice.toml")) as fh:
        sluice_check("Dockerfile default config conf/sluice.toml", fh.read())
    check_runtime_packages(lines)


# Packages of debian:bookworm-slim itself (the C and C++ runtimes).
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}


def check_runtime_packages(lines):
    """The runtime stage installs the Debian package of every shared library the binary needs:
    its NEEDED entries and the libraries it loads on first use (lib/core/lazy_*.S), found with
    dpkg -S on this machine, so a missing one would fail at start-up or at a component's first call
    inside the image (no docker here to run it)."""
    stages = " ".join(lines).split("FROM ")
    runtime = stages[-1]
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", runtime))
    out = subprocess.run(["readelf", "-d", SLUICE], capture_output=True, text=True, check=True).stdout
    sonames = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    for path in glob.glob(os.path.join(SOURCE, "lib", "core", "lazy_*.S")):
        with open(path) as fh:
            sonames |= set(re.findall(r'SLUICE_LAZY_BEGIN \w+, "([^"]+)"', fh.read()))
    check(len(sonames) >= 10, f"Dockerfile: the binary's libraries found, got {sorted(sonames)}")
    # A sanitizer build (the asan preset runs this test too) needs its runtimes; the image does not.
    sonames = {so for so in sonames if not re.match(r"lib(asan|ubsan|tsan|lsan)\.so", so)}
    # The image's build is the release default on x86-64 (SLUICE_STATIC_CXX), with libstdc++,
    # spdlog, fmt, toml++, libuv and http-parser linked in; a binary under test built without it
    # (the asan preset) needs them shared, the image does not.
    if any(so.startswith("libstdc++") for so in sonames):
        sonames = {so for so in sonames if not re.match(
            r"lib(stdc\+\+|gcc_s|spdlog|fmt|tomlplusplus|uv|http_parser)\.so", so)}
    for so in sorted(sonames):
        owner = subprocess.run(["dpkg", "-S", "*/" + so], capture_output=True, text=True).stdout
        pkgs = {l.split(":")[0] for l in owner.splitlines() if "-dev" not in l.split(":")[0]}
        if not check(pkgs, f"Dockerfile: the package of {so} is found (dpkg -S)"):
            continue
        check(pkgs & (installed | BASE_PACKAGES),
              f"Dockerfile: the runtime stage installs {sorted(pkgs)} (for {so})")


check_manifests()
check_dockerfile()
if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("deploy: every manifest and the Dockerfile check out")
