#include "agent/config_keys.h"

#include <catch2/catch.hpp>
#include <map>
#include <sstream>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

using namespace sluice;
using sluice::test::read_file;
using sluice::test::write_file;

namespace {

Registry builtin() {
  Registry r;
  register_builtin_components(r);
  return r;
}

const TableKeys* table(const std::vector<TableKeys>& tables, std::string_view path) {
  for (const auto& t : tables) {
    if (t.path == path) return &t;
  }
  return nullptr;
}

// "sources.app.tls" and "sinks.hub.fields[1]" belong to the component table "sources.app" and
// "sinks.hub"; "agent.x" to "agent".
std::string component_of(const std::string& path) {
  std::string p = path.substr(0, path.find('['));
  const auto first = p.find('.');
  if (first == std::string::npos || p.substr(0, first) == "agent") return p.substr(0, first);
  const auto second = p.find('.', first + 1);
  return second == std::string::npos ? p : p.substr(0, second);
}

// The text of every component table of a TOML file (its sub-tables and comments included),
// keyed "sources.app", "agent", ...; the lines before the first header under "".
std::map<std::string, std::string> component_texts(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line, current;
  while (std::getline(in, line)) {
    const auto start = line.find_first_not_of(' ');
    if (start != std::string::npos && line[start] == '[') {
      const auto open = line.find_first_not_of('[', start);
      const auto close = line.find(']', open);
      std::string name = line.substr(open, close - open);
      std::erase(name, '"');
      current = component_of(name);
    }
    out[current] += line + "\n";
  }
  return out;
}

bool word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// `key = ...`, `[....key]`, `[....key.` or `{ ..., key = ... }`, commented or not.
bool mentions(const std::string& text, const std::string& key) {
  for (auto pos = text.find(key); pos != std::string::npos; pos = text.find(key, pos + 1)) {
    if (pos > 0 && word_char(text[pos - 1])) continue;
    std::size_t end = pos + key.size();
    if (end < text.size() && word_char(text[end])) continue;
    if (pos > 0 && text[pos - 1] == '.' && end < text.size() &&
        (text[end] == ']' || text[end] == '.'))
      return true;
    if (end < text.size() && text[end] == '"') ++end;  // a quoted key: "socket.keepalive.enable"
    while (end < text.size() && text[end] == ' ') ++end;
    if (end < text.size() && (text[end] == '=' || text[end] == ']')) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("config keys: the listing names every key a table accepts whether set or not",
          "[unit][config]") {
  test::TempDir dir;
  write_file(dir.file("t.toml"), R"(
[agent]
data_dir = "/tmp/x"

[sources.in]
type = "stdin"
channel = "buf"
tls = 1

[channels.buf]
type = "memory"

[sinks.out]
type = "stdout"
channel = "buf"
)");
  const Registry registry = builtin();
  ConfigErrors errors;
  const auto tables = list_config_keys(dir.file("t.toml"), registry, errors);
  // The file's own mistake is reported; the listing is complete anyway.
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].str().find("sources.in.tls: unknown key") != std::string::npos);
  const TableKeys* in = table(tables, "sources.in");
  REQUIRE(in != nullptr);
  for (const char* k :
       {"type", "channel", "channels", "exit_on_eof", "max_line_bytes", "line_overflow", "format",
        "on_parse_error", "timestamp", "multiline", "interceptors", "dead_letter_channel"}) {
    INFO(k);
    CHECK(std::find(in->keys.begin(), in->keys.end(), k) != in->keys.end());
  }
  CHECK(std::find(in->keys.begin(), in->keys.end(), "tls") == in->keys.end());
  CHECK(std::is_sorted(in->keys.begin(), in->keys.end()));
  const TableKeys* agent = table(tables, "agent");
  REQUIRE(agent != nullptr);
  CHECK(agent->keys == std::vector<std::string>{"admin", "data_dir", "max_pending_puts", "name",
                                                "shutdown_timeout"});
  const TableKeys* out = table(tables, "sinks.out");
  REQUIRE(out != nullptr);
  for (const char* k : {"format", "delivery_timeout", "max_penalty", "batch_events"}) {
    INFO(k);
    CHECK(std::find(out->keys.begin(), out->keys.end(), k) != out->keys.end());
  }
  // Nothing stays installed after the call.
  CHECK(ConfigNode::observe_keys(nullptr) == nullptr);
}

TEST_CASE("config keys: conf/sluice.toml names every key the code asks for in its tables",
          "[unit][config]") {
  const std::string path = test::source_dir() + "/conf/sluice.toml";
  const Registry registry = builtin();
  ConfigErrors errors;
  const auto tables = list_config_keys(path, registry, errors);
  for (const auto& e : errors) FAIL_CHECK(e.str());
  const auto texts = component_texts(read_file(path));
  // A key shared by several components (the parse keys of every source, the group keys of every
  // sink) is documented once: it must be in one of the tables that accept it at the same place
  // ("sources.*" + ".timestamp"); a key of a sub-table may also be shown in a comment of any
  // table of the section (`# tls = { ... }`).
  struct Where {
    std::vector<std::string> components;
    std::string first_path;
  };
  std::map<std::string, Where> accepted;  // "SECTION|SUB|KEY"
  for (const auto& t : tables) {
    const std::string component = component_of(t.path);
    // The top level and [sources], [sinks], ...: their keys are section and component names.
    if (component.find('.') == std::string::npos && component != "agent") continue;
    REQUIRE(texts.count(component) == 1);
    const std::string section = component.substr(0, component.find('.'));
    std::string sub = t.path.substr(component.size());
    sub = sub.substr(0, sub.find('['));
    for (const auto& k : t.keys) {
      Where& w = accepted[section + "|" + sub + "|" + k];
      w.components.push_back(component);
      if (w.first_path.empty()) w.first_path = t.path;
    }
  }
  std::size_t missing = 0;
  for (const auto& [id, w] : accepted) {
    const std::string section = id.substr(0, id.find('|'));
    const std::string sub = id.substr(section.size() + 1, id.rfind('|') - section.size() - 1);
    const std::string key = id.substr(id.rfind('|') + 1);
    bool found = false;
    for (const auto& c : w.components) found = found || mentions(texts.at(c), key);
    if (!found && !sub.empty()) {
      for (const auto& [c, text] : texts) {
        found = found || (c.rfind(section + ".", 0) == 0 && mentions(text, key));
      }
    }
    if (!found) {
      ++missing;
      FAIL_CHECK(w.first_path << ": key '" << key << "' is not in conf/sluice.toml");
    }
  }
  WARN(accepted.size() << " (section, table, key) places checked over " << tables.size()
                       << " tables");
  CHECK(missing == 0);
  CHECK(accepted.size() > 150);
}
