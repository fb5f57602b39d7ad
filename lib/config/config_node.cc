#include "lib/config/config_node.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace sluice {
namespace {

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string quoted(std::string_view s) { return fmt::format("\"{}\"", s); }

}  // namespace

std::string ConfigError::str() const {
  std::string where = line == 0 ? file : fmt::format("{}:{}:{}", file, line, column);
  if (path.empty()) return fmt::format("{}: {}", where, message);
  return fmt::format("{}: {}: {}", where, path, message);
}

namespace {
std::string join_path(const std::string& base, std::string_view key) {
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}
}  // namespace

void ConfigErrors::sort() {
  const auto by_position = [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.file, a.line, a.column) < std::tie(b.file, b.line, b.column);
  };
  std::stable_sort(errors_.begin(), errors_.end(), by_position);
  std::stable_sort(warnings_.begin(), warnings_.end(), by_position);
}

ConfigNode::ConfigNode(const toml::table& table, std::string path, std::string file)
    : table_(&table), path_(std::move(path)), file_(std::move(file)) {}

bool ConfigNode::has(std::string_view key) const { return table_->get(key) != nullptr; }

std::optional<ConfigNode> ConfigNode::child(std::string_view key, ConfigErrors& errors) const {
  mark_known(key);
  const toml::node* n = table_->get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_table()) {
    error_at(key, errors, fmt::format("expected a table, got {}", type_name(*n)));
    return std::nullopt;
  }
  return ConfigNode(*n->as_table(), join_path(path_, key), file_);
}

void ConfigNode::error(ConfigErrors& errors, std::string message) const {
  const auto& src = table_->source();
  errors.add({file_, src.begin.line, src.begin.column, path_, std::move(message)});
}

void ConfigNode::error_at(std::string_view key, ConfigErrors& errors, std::string message,
                          bool at_key) const {
  toml::source_position pos = table_->source().begin;
  auto it = table_->find(key);
  if (it != table_->end()) {
    pos = at_key ? it->first.source().begin : it->second.source().begin;
  }
  errors.add({file_, pos.line, pos.column, join_path(path_, key), std::move(message)});
}

void ConfigNode::error_at_element(std::string_view key, std::size_t index, ConfigErrors& errors,
                                  std::string message) const {
  toml::source_position pos = table_->source().begin;
  if (const toml::node* n = table_->get(key)) {
    pos = n->source().begin;
    if (const auto* a = n->as_array(); a != nullptr && index < a->size()) {
      pos = (*a)[index].source().begin;
    }
  }
  errors.add({file_, pos.line, pos.column, fmt::format("{}[{}]", join_path(path_, key), index),
              std::move(message)});
}

void ConfigNode::warning_at(std::string_view key, ConfigErrors& errors, std::string message) const {
  toml::source_position pos = table_->source().begin;
  if (const toml::node* n = table_->get(key)) pos = n->source().begin;
  errors.warn({file_, pos.line, pos.column, join_path(path_, key), std::move(message)});
}

void ConfigNode::reject_unknown_keys(ConfigErrors& errors) const {
  std::vector<std::string_view> known(known_.begin(), known_.end());
  for (const auto& [k, v] : *table_) {
    if (known_.contains(k.str())) continue;
    error_at(k.str(), errors, "unknown key" + did_you_mean(k.str(), known), true);
  }
}

bool ConfigNode::read(const toml::node& n, std::string& out, std::string& err) const {
  if (const auto* s = n.as_string()) {
    out = s->get();
    return true;
  }
  err = fmt::format("expected a string, got {}", type_name(n));
  return false;
}

bool ConfigNode::read(const toml::node& n, bool& out, std::string& err) const {
  if (const auto* b = n.as_boolean()) {
    out = b->get();
    return true;
  }
  err = fmt::format("expected a boolean, got {}", type_name(n));
  return false;
}

bool ConfigNode::read(const toml::node& n, std::int64_t& out, std::string& err) const {
  if (const auto* i = n.as_integer()) {
    out = i->get();
    return true;
  }
  err = fmt::format("expected an integer, got {}", type_name(n));
  return false;
}

bool ConfigNode::read(const toml::node& n, std::uint64_t& out, std::string& err) const {
  std::int64_t v = 0;
  if (!read(n, v, err)) return false;
  if (v < 0) {
    err = fmt::format("must not be negative, got {}", v);
    return false;
  }
  out = static_cast<std::uint64_t>(v);
  return true;
}

bool ConfigNode::read(const toml::node& n, std::uint32_t& out, std::string& err) const {
  std::int64_t v = 0;
  if (!read(n, v, err)) return false;
  if (v < 0 || v > 0xffffffffLL) {
    err = fmt::format("must be in [0, 4294967295], got {}", v);
    return false;
  }
  out = static_cast<std::uint32_t>(v);
  return true;
}

bool ConfigNode::read(const toml::node& n, double& out, std::string& err) const {
  if (const auto* f = n.as_floating_point()) {
    out = f->get();
    return true;
  }
  if (const auto* i = n.as_integer()) {
    out = static_cast<double>(i->get());
    return true;
  }
  err = fmt::format("expected a number, got {}", type_name(n));
  return false;
}

bool ConfigNode::read(const toml::node& n, std::chrono::nanoseconds& out, std::string& err) const {
  const auto* s = n.as_string();
  if (s == nullptr) {
    err = fmt::format("expected a duration string (e.g. \"250ms\", \"5s\"), got {}", type_name(n));
    return false;
  }
  auto d = parse_duration(s->get());
  if (!d) {
    err = fmt::format("{} is not a duration (e.g. \"250ms\", \"5s\")", quoted(s->get()));
    return false;
  }
  out = *d;
  return true;
}

bool ConfigNode::read(const toml::node& n, std::chrono::milliseconds& out, std::string& err) const {
  std::chrono::nanoseconds ns{};
  if (!read(n, ns, err)) return false;
  out = std::chrono::duration_cast<std::chrono::milliseconds>(ns);
  return true;
}

bool ConfigNode::read(const toml::node& n, ByteSize& out, std::string& err) const {
  if (const auto* i = n.as_integer()) {
    if (i->get() < 0) {
      err = fmt::format("must not be negative, got {}", i->get());
      return false;
    }
    out = ByteSize{static_cast<std::uint64_t>(i->get())};
    return true;
  }
  const auto* s = n.as_string();
  if (s == nullptr) {
    err = fmt::format("expected a size string (e.g. \"64MiB\"), got {}", type_name(n));
    return false;
  }
  auto v = parse_size(s->get());
  if (!v) {
    err = fmt::format("{} is not a size (e.g. \"64MiB\", \"512KiB\")", quoted(s->get()));
    return false;
  }
  out = *v;
  return true;
}

bool ConfigNode::read(const toml::node& n, std::vector<std::string>& out, std::string& err) const {
  const auto* a = n.as_array();
  if (a == nullptr) {
    err = fmt::format("expected an array of strings, got {}", type_name(n));
    return false;
  }
  out.clear();
  for (std::size_t i = 0; i < a->size(); ++i) {
    const auto* s = (*a)[i].as_string();
    if (s == nullptr) {
      err = fmt::format("expected an array of strings, element {} is {}", i, type_name((*a)[i]));
      return false;
    }
    out.push_back(s->get());
  }
  return true;
}

bool ConfigNode::read(const toml::node& n, StringList& out, std::string& err) const {
  if (const auto* s = n.as_string()) {
    out.items.clear();
    std::string_view rest = s->get();
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) out.items.emplace_back(item);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    return true;
  }
  if (n.is_array()) return read(n, out.items, err);
  err = fmt::format("expected a string or an array of strings, got {}", type_name(n));
  return false;
}

bool ConfigNode::passes(const std::string& v, const OneOf& r, std::string& err) {
  for (auto allowed : r.values) {
    if (v == allowed) return true;
  }
  std::string list;
  for (auto allowed : r.values) {
    if (!list.empty()) list += ", ";
    list += quoted(allowed);
  }
  err = fmt::format("must be one of {}, got {}{}", list, quoted(v), did_you_mean(v, r.values));
  return false;
}

std::string ConfigNode::describe(double v) { return fmt::format("{}", v); }

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    prev.swap(cur);
  }
  return prev[b.size()];
}

std::string_view closest(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (auto c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates) {
  auto c = closest(word, candidates);
  return c.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", c);
}

}  // namespace sluice
