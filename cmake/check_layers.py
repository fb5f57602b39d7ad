#!/usr/bin/env python3
"""Fails when an #include crosses a layer upwards or one component includes another.

The layers, bottom-up: lib/<module> in LIB_ORDER (a module may include the ones before it), then the
components (sources/*, channels/*, sinks/*, sql), which may include lib/ and their own folder only,
then agent/, which may include everything. tests/ and bench/ are not checked.
Usage: check_layers.py SOURCE_DIR
"""
import pathlib
import re
import sys

LIB_ORDER = ["core", "config", "codec", "net", "http", "parse", "avro", "ingest", "deliver"]
COMPONENT_ROOTS = ["sources", "channels", "sinks"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def unit_of(path: str):
    """('lib', module) | ('component', 'sinks/kafka') | ('sql',) | ('agent',) | None."""
    parts = path.split("/")
    if parts[0] == "lib" and len(parts) > 2:
        return ("lib", parts[1])
    if parts[0] in COMPONENT_ROOTS and len(parts) > 2:
        return ("component", "/".join(parts[:2]))
    if parts[0] == "sql":
        return ("sql", "sql")
    if parts[0] == "agent":
        return ("agent", "agent")
    return None


def allowed(src, dst) -> bool:
    if dst is None or src == dst:
        return True
    kind, name = src
    if kind == "agent":
        return True
    if dst[0] == "lib":
        if kind != "lib":
            return True
        if dst[1] not in LIB_ORDER or name not in LIB_ORDER:
            return False
        return LIB_ORDER.index(dst[1]) < LIB_ORDER.index(name)
    if kind == "component" and dst[0] == "sql":
        return False
    return False


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = []
    for top in ["lib", "sql", "agent"] + COMPONENT_ROOTS:
        for f in sorted((root / top).rglob("*")):
            if f.suffix not in (".h", ".cc") or not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            src = unit_of(rel)
            if src is None:
                continue
            if src[0] == "lib" and src[1] not in LIB_ORDER:
                problems.append(f"{rel}: lib/{src[1]} is not in LIB_ORDER of cmake/check_layers.py")
                continue
            for lineno, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                dst = unit_of(m.group(1))
                if not allowed(src, dst):
                    problems.append(f"{rel}:{lineno}: includes \"{m.group(1)}\" "
                                    f"({'/'.join(dst)} may not be used by {'/'.join(src)})")
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} include(s) cross a layer upwards or between components")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
