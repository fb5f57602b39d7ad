#!/usr/bin/python3
"""Builds the Debian package with CPack and checks it.

1. `cpack -G DEB` in the build directory, into a temporary directory.
2. `dpkg-deb -I`/`-f`: name, version, architecture, Depends (the libraries the binary links, found
   by dpkg-shlibdeps, and passwd for the maintainer scripts), maintainer scripts and conffiles.
3. `dpkg-deb -c` and `dpkg -x` into a scratch root: every file in place with its mode and owner,
   nothing under /usr/lib/systemd/system/sluice.service.d (the drop-ins are examples), the binary
   stripped; the unit passes `systemd-analyze verify` with the extracted paths; the extracted
   binary prints its version and `sluice check` passes on the extracted configuration.
4. Where the test may (root, `unshare -m`, overlayfs): a real `dpkg -i` in a private mount
   namespace whose /etc, /usr and /var are overlays (nothing reaches the host), as in a container
   without systemd: the user is created by systemd-sysusers (and, in a second run with
   systemd-sysusers and systemd-tmpfiles removed, by useradd), /var/lib/sluice exists with the
   tmpfiles mode and owner, nothing is started or enabled, the service user can read the config
   and `sluice check` passes as that user; `dpkg --purge` removes the state directory.

Usage: deb_test.py BUILD_DIR SOURCE_DIR   (exit 0 ok, 1 failures, 77 when dpkg-deb is absent)
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

BUILD, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


if shutil.which("dpkg-deb") is None:
    print("WARN: dpkg-deb is not installed (apt-get install dpkg); the .deb was not checked")
    sys.exit(77)

with open(os.path.join(SOURCE, "CMakeLists.txt"), encoding="utf-8") as f:
    version = re.search(r"project\(sluice VERSION ([0-9.]+)", f.read()).group(1)
arch = run("dpkg", "--print-architecture").stdout.strip()



def static_cxx():
    with open(os.path.join(BUILD, "CMakeCache.txt"), encoding="utf-8") as f:
        return re.search(r"^SLUICE_STATIC_CXX:BOOL=ON$", f.read(), re.M) is not None


def library_packages():
    """soname -> the Debian packages holding it, for the binary's NEEDED libraries and those it
    loads on first use."""
    out = run("readelf", "-d", os.path.join(BUILD, "agent", "sluice")).stdout
    sonames = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    lazy_dir = os.path.join(SOURCE, "lib", "core")
    for name in os.listdir(lazy_dir):
        if name.startswith("lazy_") and name.endswith(".S"):
            with open(os.path.join(lazy_dir, name), encoding="utf-8") as f:
                sonames |= set(re.findall(r'SLUICE_LAZY_BEGIN \w+, "([^"]+)"', f.read()))
    check(len(sonames) >= 10, f"the binary's libraries found, got {sorted(sonames)}")
    packages = {}
    for so in sorted(sonames):
        if re.match(r"lib(asan|ubsan|tsan|lsan)\.so", so):
            continue  # a sanitizer build's runtimes (the asan preset runs this test too)
        owner = run("dpkg", "-S", "*/" + so).stdout
        pkgs = {l.split(":")[0] for l in owner.splitlines() if "-dev" not in l.split(":")[0]}
        if check(pkgs, f"the package of {so} is found (dpkg -S)"):
            # A package may be named by what it provides (libspdlog1.10 provides
            # libspdlog1.10-fmt9, the name dpkg-shlibdeps writes).
            for pkg in list(pkgs):
                provides = run("dpkg-query", "-W", "-f=${Provides}", pkg).stdout
                pkgs |= {p.strip().split()[0] for p in provides.split(",") if p.strip()}
            packages[so] = pkgs
    return packages


tmp = tempfile.mkdtemp(prefix="sluice-deb-")
try:
    # 0. `cmake --install --strip` into a prefix: the same files, the config under PREFIX/etc.
    prefix = os.path.join(tmp, "prefix")
    r = run("cmake", "--install", BUILD, "--prefix", prefix, "--strip")
    if check(r.returncode == 0, f"cmake --install failed:\n{r.stdout}{r.stderr}"):
        for p in ("bin/sluice", "lib/systemd/system/sluice.service", "lib/sysusers.d/sluice.conf",
                  "lib/tmpfiles.d/sluice.conf", "etc/sluice/sluice.toml",
                  "share/doc/sluice/README.md"):
            check(os.path.isfile(os.path.join(prefix, p)), f"cmake --install puts PREFIX/{p}")
        sections = run("readelf", "-S", os.path.join(prefix, "bin/sluice")).stdout
        check(".symtab" not in sections, "cmake --install --strip strips the binary")

    # 1. Build the package.
    r = run("cpack", "-G", "DEB", "-B", tmp, "--config", os.path.join(BUILD, "CPackConfig.cmake"),
            cwd=BUILD)
    deb = os.path.join(tmp, f"sluice_{version}_{arch}.deb")
    if not check(r.returncode == 0 and os.path.exists(deb),
                 f"cpack failed ({r.returncode}):\n{r.stdout}{r.stderr}"):
        raise SystemExit
    print(f"{os.path.basename(deb)}: {os.path.getsize(deb)} bytes")

    # 2. Control fields.
    def field(name):
        return run("dpkg-deb", "-f", deb, name).stdout.strip()

    check(field("Package") == "sluice", "Package: sluice")
    check(field("Version") == version, f"Version: {version}, got {field('Version')}")
    check(field("Architecture") == arch, f"Architecture: {arch}")
    check(field("Maintainer") != "", "Maintainer is set")
    check(field("Section") == "admin", "Section: admin")
    depends = {d.strip().split()[0] for d in field("Depends").split(",") if d.strip()}
    print("Depends:", field("Depends"))
    # The libraries the binary links (its NEEDED entries) or loads on first use
    # (lib/core/lazy_*.S), each must come with its package in Depends (found with dpkg -S).
    # (libsystemd0 is not used: agent/sd_notify.cc.)
    check("passwd" in depends, "Depends names passwd")
    for so, pkgs in sorted(library_packages().items()):
        check(pkgs & depends, f"Depends names one of {sorted(pkgs)} (for {so})")
    # The release build has libstdc++, spdlog, fmt, toml++, libuv and http-parser in the binary
    # (SLUICE_STATIC_CXX): the package does not pull their shared libraries in.
    if static_cxx():
        for pkg in ("libstdc++6", "libuv1", "libspdlog1.10", "libfmt9", "libtomlplusplus3",
                    "libhttp-parser2.9"):
            check(pkg not in depends, f"Depends does not name {pkg} (linked into the binary)")
    # Every dependency resolves on this (Debian) system, through Provides where it is virtual.
    installed = run("dpkg-query", "-W", "-f=${Package} ${Provides}\\n").stdout
    known = set(re.findall(r"[a-z0-9][a-z0-9+.\-]+", installed))
    for d in sorted(depends):
        check(d in known, f"Depends {d} is an installed package or provided by one")
    info = run("dpkg-deb", "-I", deb).stdout
    for script in ("postinst", "prerm", "postrm"):
        check(re.search(rf"\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s", info) is not None,
              f"control has an executable {script}")
    ctrl = os.path.join(tmp, "control")
    run("dpkg-deb", "-e", deb, ctrl)
    with open(os.path.join(ctrl, "conffiles"), encoding="utf-8") as f:
        check(f.read().split() == ["/etc/sluice/sluice.toml"], "conffiles: /etc/sluice/sluice.toml")
    with open(os.path.join(ctrl, "postinst"), encoding="utf-8") as f:
        postinst = f.read()
    check("systemd-sysusers" in postinst, "postinst creates the user with systemd-sysusers")
    code = "\n".join(l for l in postinst.splitlines() if not l.lstrip().startswith("#"))
    check(not re.search(r"systemctl\s+(enable|start)|deb-systemd-helper\s+enable", code),
          "postinst enables and starts nothing")
    for script in ("postinst", "prerm", "postrm"):
        r = run("sh", "-n", os.path.join(ctrl, script))
        check(r.returncode == 0, f"{script} is valid sh: {r.stderr}")

    # 3. Contents, modes, owners.
    listing = {}
    for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
        parts = line.split(None, 5)
        listing[parts[5].lstrip(".").rstrip("/") or "/"] = (parts[0], parts[1])
    expected = {
        "/usr/bin/sluice": "-rwxr-xr-x",
        "/usr/lib/systemd/system/sluice.service": "-rw-r--r--",
        "/usr/lib/sysusers.d/sluice.conf": "-rw-r--r--",
        "/usr/lib/tmpfiles.d/sluice.conf": "-rw-r--r--",
        "/etc/sluice/sluice.toml": "-rw-r--r--",
        "/usr/share/doc/sluice/README.md": "-rw-r--r--",
        "/usr/share/doc/sluice/README.deploy.md": "-rw-r--r--",
        "/usr/share/doc/sluice/examples/systemd/read-any-log.conf": "-rw-r--r--",
        "/usr/share/doc/sluice/examples/systemd/loopback-only.conf": "-rw-r--r--",
        "/usr/share/doc/sluice/examples/sluice.toml": "-rw-r--r--",
    }
    for path, mode in expected.items():
        got = listing.get(path)
        if check(got is not None, f"the package has {path}"):
            check(got == (mode, "root/root"), f"{path}: {mode} root/root, got {got}")
    for path in listing:
        check(not path.startswith("/usr/local"), f"nothing under /usr/local: {path}")
        check(".service.d" not in path, f"no active drop-in: {path}")
    root = os.path.join(tmp, "root")
    r = run("dpkg", "-x", deb, root)
    check(r.returncode == 0, f"dpkg -x: {r.stderr}")
    binary = os.path.join(root, "usr/bin/sluice")
    sections = run("readelf", "-S", binary).stdout
    check(".symtab" not in sections and ".debug_info" not in sections, "the binary is stripped")
    for src, dst in (("systemd/sluice.service", "usr/lib/systemd/system/sluice.service"),
                     ("systemd/sluice.sysusers", "usr/lib/sysusers.d/sluice.conf"),
                     ("systemd/sluice.tmpfiles", "usr/lib/tmpfiles.d/sluice.conf"),
                     ("conf/sluice.toml", "etc/sluice/sluice.toml")):
        with open(os.path.join(SOURCE, src), "rb") as a, open(os.path.join(root, dst), "rb") as b:
            check(a.read() == b.read(), f"/{dst} is {src}")

    r = run(binary, "version")
    check(r.returncode == 0 and r.stdout.strip() == f"sluice {version}",
          f"extracted sluice version: 'sluice {version}', got {r.returncode} '{r.stdout.strip()}'")
    conf = os.path.join(root, "etc/sluice/sluice.toml")
    r = run(binary, "check", "-c", conf)
    check(r.returncode == 0, f"extracted sluice check on the extracted config:\n{r.stdout}{r.stderr}")

    if shutil.which("systemd-analyze"):
        unit_dir = os.path.join(tmp, "unit")
        os.makedirs(unit_dir)
        with open(os.path.join(root, "usr/lib/systemd/system/sluice.service"), encoding="utf-8") as f:
            unit = f.read()
        check("/usr/bin/sluice" in unit and "/etc/sluice/sluice.toml" in unit,
              "the unit runs /usr/bin/sluice with /etc/sluice/sluice.toml")
        unit = unit.replace("/etc/sluice/sluice.toml", conf).replace("/usr/bin/sluice", binary)
        with open(os.path.join(unit_dir, "sluice.service"), "w", encoding="utf-8") as f:
            f.write(unit)
        r = run("systemd-analyze", "verify", os.path.join(unit_dir, "sluice.service"))
        out = (r.stdout + r.stderr).strip()
        check(r.returncode == 0 and out == "", f"systemd-analyze verify on the packaged unit: {out}")
    else:
        print("WARN: no systemd-analyze; the packaged unit was not verified")

    # 4. A real install and purge in a throwaway mount namespace.
    can_install = (os.geteuid() == 0 and shutil.which("unshare") and
                   not os.path.isdir("/run/systemd/system"))
    if not can_install:
        print("WARN: not root, no unshare, or systemd runs here: dpkg -i in a scratch root skipped")
    else:
        script = os.path.join(SOURCE, "tests/packaging/deb_install_check.sh")
        for mode in ("sysusers", "useradd"):
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", script, deb,
                                os.path.join(tmp, "ovl-" + mode), mode],
                               capture_output=True, text=True, timeout=120)
            out = r.stdout + r.stderr
            print(f"--- dpkg -i ({mode}) ---\n{out.strip()}")
            if r.returncode == 77:
                print(f"WARN: dpkg -i in a scratch root skipped ({mode})")
                continue
            check(r.returncode == 0, f"install check ({mode}) failed ({r.returncode})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("ok")
