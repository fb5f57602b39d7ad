#!/usr/bin/python3
"""Checks that conf/sluice.toml documents every configuration key the agent accepts, and that it
passes `sluice check`.

The keys are read from the sources: every ConfigNode call that declares a key
(required/optional/optional_enum/mark_known/child/has, and the helpers read_secret/read_pairs)
with a literal name. Each key is attributed to where it is accepted:
  - sources/T, sinks/T, channels/T: a [sources|sinks|channels.NAME] table with type = "T";
  - sinks/group and agent/builtin_components.cc (processors): a [sink_groups.NAME] table (or a
    sink with its own channel, which is a group of one);
  - agent/agent_config.cc: by the ConfigParser function that reads it ([agent], [sources.*],
    [sinks.*], [sink_groups.*], [pipelines.*], [channels.*]);
  - a lib/ file (shared parsing: lines, parse pipeline, TLS, stream sinks, secrets): wherever the
    components that call its parse functions (directly or through another lib file) are accepted.
    A shared key is documented once: it must appear in at least one of those tables.
A key "appears" in a table when `KEY =` or `[...KEY]` is in the table's text, commented or not
(commented lines carry keys whose example values cannot all be set at once). Every registered
source, channel, sink and processor type must have a real (uncommented) table, so that
`sluice check` validates its example values.

Usage: config_keys_test.py SLUICE_BINARY SOURCE_DIR   (exit 0 ok, 1 failures)
"""
import os
import re
import subprocess
import sys
import tomllib

SLUICE, SOURCE = sys.argv[1], sys.argv[2]
CONF = os.path.join(SOURCE, "conf", "sluice.toml")
failures = []

# Calls that declare a key. The key is the first string literal argument, optionally after one
# non-string argument (the node of read_secret(node, "key", ...)).
KEY_CALL = re.compile(
    r"\b(?:required|optional|optional_enum|mark_known|child|has|read_secret|read_pairs)"
    r"\s*\(\s*(?:[\w*&.>\-]+\s*,\s*)?\"([a-z][a-z0-9_]*)\"")
# Functions that take a ConfigNode (the parse entry points of shared lib code).
CONFIG_FN = re.compile(r"([A-Za-z_][\w:]*)\s*\(\s*const\s+ConfigNode\s*&")
# Where agent/agent_config.cc's functions read their keys.
AGENT_CONFIG_FUNCTIONS = {
    "agent_section": {("agent", None)},
    "channels_section": {("channels", "*")},
    "sink_groups_section": {("sink_groups", "*")},
    "sink_group": {("sink_groups", "*")},
    "group_sinks": {("sink_groups", "*")},
    "group_processor": {("sink_groups", "*")},
    "group_members": {("sink_groups", "*")},
    "sinks_section": {("sinks", "*")},
    "sink_channel": {("sinks", "*")},
    "sources_section": {("sources", "*")},
    "source_channels": {("sources", "*")},
    "source_dead_letter": {("sources", "*")},
    "source_listen": {("sources", "*")},
    "pipelines_section": {("pipelines", "*")},
    "pipeline": {("pipelines", "*")},
}
# Functions that only look at which top-level sections exist (their tables are checked above).
AGENT_CONFIG_SECTIONS_ONLY = {"something_to_run"}


def strip_comments(code):
    """C++ without // and /* */ comments (string literals kept)."""
    out, i, n = [], 0, len(code)
    while i < n:
        c = code[i]
        if c == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            out.append(code[i:j + 1])
            i = j + 1
        elif code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read(path):
    with open(os.path.join(SOURCE, path), encoding="utf-8") as f:
        return strip_comments(f.read())


def sources_under(*dirs):
    for d in dirs:
        for root, _, files in os.walk(os.path.join(SOURCE, d)):
            for name in sorted(files):
                if name.endswith((".cc", ".h")):
                    yield os.path.relpath(os.path.join(root, name), SOURCE)


# Keys read in a loop over a literal list: `for (const char* key : {"start", "continuation"})`.
KEY_LOOP = re.compile(r"for\s*\(\s*(?:const\s+)?(?:char\s*\*|auto|std::string_view)\s*&?\s*\w+\s*:"
                      r"\s*\{([^}]*)\}\s*\)")


def keys_in(code):
    found = set(KEY_CALL.findall(code))
    for group in KEY_LOOP.findall(code):
        found |= set(re.findall(r"\"([a-z][a-z0-9_]*)\"", group))
    return found


# 1. The registered component types.
builtin = read("agent/builtin_components.cc")
registered = {kind: set(re.findall(r"add_" + kind + r"<[^;]*?>\(\s*\"(\w+)\"", builtin))
              for kind in ("source", "channel", "sink", "processor")}
for kind, types in registered.items():
    if not types:
        failures.append(f"found no registered {kind} types in agent/builtin_components.cc")

# 2. Keys per scope. A scope is (section, type): type None for [agent], "*" for any table.
keys = {}  # key -> {scope set per declaring file}


def declare(file, found, scopes):
    for k in found:
        keys.setdefault(k, []).append((file, frozenset(scopes)))


component_files = {}
for f in sources_under("sources", "sinks", "channels"):
    kind, typ = f.split(os.sep)[:2]
    if kind == "sinks" and typ == "group":
        scopes = {("sink_groups", "*"), ("sinks", "*")}
    else:
        scopes = {(kind, typ)}
    component_files[f] = scopes
    declare(f, keys_in(read(f)), scopes)

b = keys_in(builtin)
declare("agent/builtin_components.cc", b, {("sink_groups", "*")})

agent_config = read("agent/agent_config.cc")
parts = re.split(r"\n(?=[\w:<>, ]+\bConfigParser::(\w+)\()", agent_config)
# re.split with one group alternates text and the function name that starts the next part.
chunks = [(None, parts[0])] + [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
for fn, text in chunks:
    found = keys_in(text)
    if not found:
        continue
    if fn in AGENT_CONFIG_SECTIONS_ONLY:
        continue
    if fn not in AGENT_CONFIG_FUNCTIONS:
        failures.append(f"agent/agent_config.cc: ConfigParser::{fn} reads {sorted(found)}; "
                        f"add it to AGENT_CONFIG_FUNCTIONS in {os.path.basename(__file__)}")
        continue
    declare(f"agent/agent_config.cc ({fn})", found, AGENT_CONFIG_FUNCTIONS[fn])

# lib files: scopes from their callers, to a fixpoint (a lib helper may call another).
lib_files = {f: read(f) for f in sources_under("lib")}
lib_fns = {f: set(CONFIG_FN.findall(t)) for f, t in lib_files.items()}
callers = dict(component_files)
callers["agent/agent_config.cc"] = {s for v in AGENT_CONFIG_FUNCTIONS.values() for s in v}
texts = {f: read(f) for f in component_files}
texts["agent/agent_config.cc"] = agent_config
lib_scopes = {f: set() for f in lib_files}
changed = True
while changed:
    changed = False
    for f, fns in lib_fns.items():
        for fn in fns:
            short = "::".join(fn.split("::")[-2:])
            call = re.compile(r"(?<![\w])" + re.escape(short) + r"\s*\(")
            for g, text in list(texts.items()) + list(lib_files.items()):
                if g == f or not call.search(text):
                    continue
                add = callers.get(g, set()) if g in callers else lib_scopes.get(g, set())
                if not add <= lib_scopes[f]:
                    lib_scopes[f] |= add
                    changed = True
for f, text in lib_files.items():
    found = keys_in(text)
    if not found:
        continue
    if not lib_scopes[f]:
        failures.append(f"{f} reads keys {sorted(found)} but no component calls it")
        continue
    declare(f, found, lib_scopes[f])

# 3. conf/sluice.toml: the text of each component table (its sub-tables included).
with open(CONF, encoding="utf-8") as fh:
    conf_text = fh.read()
try:
    conf = tomllib.loads(conf_text)
except tomllib.TOMLDecodeError as e:
    print(f"FAIL: {CONF} is not TOML: {e}")
    sys.exit(1)
tables = {}  # (section, name) -> text
current = ("", "")
header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
for line in conf_text.splitlines():
    m = header.match(line)
    if m:
        parts_ = [p.strip().strip('"') for p in m.group(1).split(".")]
        current = (parts_[0], parts_[1] if len(parts_) > 1 and parts_[0] != "agent" else "")
    tables.setdefault(current, []).append(line)
tables = {k: "\n".join(v) for k, v in tables.items()}


def table_type(section, name):
    t = conf.get(section, {}).get(name, {})
    return t.get("type") if isinstance(t, dict) else None


def in_scope(section, name, scope):
    s, t = scope
    if s != section:
        return False
    if t is None or t == "*":
        return True
    return table_type(section, name) == t


def appears(key, text):
    k = re.escape(key)
    return (re.search(r"(?<![\w\-])" + k + r"(\s*=|\s*\]|\"\s*\])", text) is not None or
            re.search(r"\[\[?[\w.\-\"]*\." + k + r"[.\]]", text) is not None)


for section, kinds in (("sources", "source"), ("channels", "channel"), ("sinks", "sink")):
    present = {table_type(section, n) for n in conf.get(section, {})}
    for t in sorted(registered[kinds] - present):
        failures.append(f"conf/sluice.toml has no [{section}.NAME] table with type = \"{t}\"")
processors = {g.get("processor", "default") for g in conf.get("sink_groups", {}).values()}
for p in sorted(registered["processor"] - processors):
    if not re.search(r"\b" + p + r"\b", tables.get(("sink_groups", ""), "") +
                     "".join(v for (s, _), v in tables.items() if s == "sink_groups")):
        failures.append(f"conf/sluice.toml does not mention the sink group processor \"{p}\"")

checked = 0
for key, decls in sorted(keys.items()):
    for file, scopes in decls:
        checked += 1
        ok = any(appears(key, text) for (section, name), text in tables.items()
                 if any(in_scope(section, name, sc) for sc in scopes))
        if not ok:
            where = ", ".join(sorted(f"[{s}]" if t is None else
                                     f"[{s}.*]" if t == "*" else f"[{s}.* type={t}]"
                                     for s, t in scopes))
            failures.append(f"key '{key}' (read in {file}) is not in conf/sluice.toml under {where}")

# 4. The file passes `sluice check` (which also rejects every key the agent does not accept).
r = subprocess.run([SLUICE, "check", "-c", CONF], capture_output=True, text=True)
if r.returncode != 0:
    failures.append(f"sluice check -c conf/sluice.toml failed ({r.returncode}):\n{r.stdout}{r.stderr}")

print(f"{len(keys)} key names, {checked} (key, file) declarations checked against conf/sluice.toml")
if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("ok")
