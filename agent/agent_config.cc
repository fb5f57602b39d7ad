#include "agent/agent_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "lib/parse/formats.h"
#include "lib/parse/pipeline.h"
#include "lib/parse/regex.h"
#include "lib/parse/time_format.h"

namespace sluice {
namespace {

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The fields a source's events can have when its format names them all: a regex's named groups
// (the ready patterns' too), plus what `set` and `rename` interceptors add, plus `body` (the
// event's text). A query naming another is then an error at `sluice check`. nullopt when any name
// may occur (json, logfmt, raw lines).
std::optional<std::vector<sql::Column>> source_schema(const toml::table& source,
                                                      const std::string& path,
                                                      const std::string& file) {
  ConfigErrors ignored;  // the source's own errors are reported where it is read
  parse::PipelineConfig pc;
  if (!parse::PipelineConfig::parse(ConfigNode(source, path, file), ignored, pc) ||
      pc.format != parse::PipelineConfig::Format::regex) {
    return std::nullopt;
  }
  std::vector<sql::Column> columns;
  auto add = [&](std::string_view name) {
    for (const auto& c : columns) {
      if (c.name == name) return;
    }
    columns.push_back({std::string(name), sql::SqlType::any, false});
  };
  auto patterns = parse::ready_patterns(pc.pattern);
  if (patterns.empty()) patterns.push_back(pc.pattern);
  for (const std::string_view pattern : patterns) {
    auto re = parse::Regex::compile(pattern, pc.match_limit);
    if (!re) return std::nullopt;
    for (const auto& [name, group] : re->names()) add(name);
  }
  for (const auto& i : pc.interceptors) {
    if (i.type == "set" || i.type == "rename") {
      for (const auto& [from, to] : i.pairs) add(i.type == "set" ? from : to);
    }
  }
  add("body");
  return columns;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "sluice";
  return buf;
}

std::string unknown_type(std::string_view kind, std::string_view type,
                         const std::vector<std::string_view>& known) {
  const std::string hint = did_you_mean(type, known);
  if (!hint.empty()) return fmt::format("unknown {} type '{}'{}", kind, type, hint);
  return fmt::format("unknown {} type '{}'; available: {}", kind, type, fmt::join(known, ", "));
}

// What is wrong with a listen address, or "" if nothing is. It accepts exactly what the listeners
// bind (lib/net tcp_listen: an IPv4 or IPv6 literal and a port, no name resolution), so that a bad
// address fails `sluice check` with its position instead of failing at start.
std::string address_problem(std::string_view address, std::string_view example, bool& loopback) {
  const std::string not_host_port =
      fmt::format("\"{}\" is not HOST:PORT (e.g. \"{}\")", address, example);
  std::string_view host, port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return not_host_port;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos) return not_host_port;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fmt::format("\"{}\": an IPv6 address needs brackets (e.g. \"[{}]:{}\")", address, host,
                         port);
    }
  }
  if (host.empty()) return not_host_port;
  const bool digits =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || std::stoul(std::string(port)) > 65535) {
    return fmt::format("\"{}\": the port must be a number in [0, 65535], got \"{}\"", address,
                       port);
  }
  const std::string ip(host.substr(0, host.find('%')));  // fe80::1%eth0: the zone is uv's to read
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
    loopback = IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  } else {
    return fmt::format("\"{}\": '{}' is not an IPv4 or IPv6 address (host names are not resolved)",
                       address, host);
  }
  return "";
}

// Parses one configuration, section by section. The sections refer to each other (a source names
// channels, a group names sinks), so what one section learns is kept here for the later ones.
class ConfigParser {
 public:
  ConfigParser(const toml::table& root, std::string_view text, const std::string& file,
               const Registry& registry, ConfigErrors& errors, AgentConfig& cfg)
      : root_table_(root),
        text_(text),
        root_(root, "", file),
        registry_(registry),
        errors_(errors),
        cfg_(cfg) {}

  void parse() {
    agent_section();
    channels_section();
    sink_groups_section();
    dead_letters_outside_groups();
    sinks_section();
    sources_section();
    pipelines_section();
    channel_readers();
    root_.reject_unknown_keys(errors_);
    something_to_run();
  }

 private:
  struct Listen {
    std::string address;
    std::string owner;
  };

  void agent_section();
  void channels_section();
  void sink_groups_section();
  void sink_group(const std::string& name, const ConfigNode& node);
  const char* group_sinks(const ConfigNode& node, GroupSpec& g);
  void group_processor(const ConfigNode& node, GroupSpec& g, const char* sinks_key);
  void group_members(const ConfigNode& node, const GroupSpec& g, const char* sinks_key);
  void dead_letters_outside_groups();
  void sinks_section();
  void sink_channel(const std::string& name, const ConfigNode& node);
  void sources_section();
  void source_channels(const ConfigNode& node, SourceSpec& s);
  void source_dead_letter(const ConfigNode& node, SourceSpec& s);
  void source_listen(const std::string& name, const ConfigNode& node);
  void pipelines_section();
  void pipeline(const std::string& name, const ConfigNode& node);
  void channel_readers();
  void something_to_run();
  bool check_channel(const ConfigNode& node, std::string_view key, const std::string& channel);
  bool check_address(const ConfigNode& node, std::string_view key, const std::string& address,
                     std::string_view example, bool& loopback);
  const GroupSpec* group(std::string_view name) const;

  // Iterates the sub-tables of a top-level section ([sources.NAME] ...), reporting non-tables and
  // bad names.
  template <class F>
  void each_component(std::string_view section, F&& f) {
    auto sec = root_.child(section, errors_);
    if (!sec) return;
    for (const auto& [key, value] : sec->table()) {
      const std::string name(key.str());
      sec->mark_known(name);
      if (!value.is_table()) {
        sec->error_at(name, errors_,
                      "expected a table ([" + std::string(section) + "." + name + "])");
        continue;
      }
      if (!valid_name(name)) {
        sec->error_at(name, errors_, "names may use only letters, digits, '_' and '-'", true);
        continue;
      }
      ConfigNode node(*value.as_table(), std::string(section) + "." + name, root_.file());
      f(name, node);
    }
  }

  const toml::table& root_table_;
  std::string_view text_;  // the file, for positions inside SQL strings
  ConfigNode root_;
  const Registry& registry_;
  ConfigErrors& errors_;
  AgentConfig& cfg_;

  std::map<std::string, std::string, std::less<>> channel_types_;  // channel -> type
  std::vector<std::string_view> channel_names_;
  std::vector<std::string_view> sink_names_;
  std::map<std::string, std::string, std::less<>> group_of_;                 // sink -> group
  std::map<std::string, std::vector<std::string>, std::less<>> drained_by_;  // channel -> groups
  std::map<std::string, std::string, std::less<>> dead_letter_of_;           // sink -> group
  std::vector<Listen> listens_;
  std::map<std::string, std::vector<std::string>, std::less<>> written_by_;  // channel -> sources
};

void ConfigParser::agent_section() {
  cfg_.agent.name = host_name();
  auto agent = root_.child("agent", errors_);
  if (!agent) return;
  if (agent->optional("name", cfg_.agent.name, errors_) && agent->has("name")) {
    cfg_.agent.name_is_host = false;
    if (cfg_.agent.name.empty()) agent->error_at("name", errors_, "must not be empty");
    // PARTIAL states carry the name (at most 255 bytes): two longer names that share their
    // first 255 bytes would replace each other's states at a collector.
    if (cfg_.agent.name.size() > 255) {
      agent->error_at("name", errors_,
                      fmt::format("{} bytes; at most 255", cfg_.agent.name.size()));
    }
  }
  if (agent->optional("data_dir", cfg_.agent.data_dir, errors_) && cfg_.agent.data_dir.empty()) {
    agent->error_at("data_dir", errors_, "must not be empty");
  }
  bool loopback = true;
  if (agent->optional("admin", cfg_.agent.admin, errors_) && agent->has("admin") &&
      check_address(*agent, "admin", cfg_.agent.admin, "127.0.0.1:24280", loopback) && !loopback) {
    agent->warning_at("admin", errors_,
                      fmt::format("\"{}\" is not a loopback address: anyone who can reach it can "
                                  "read /metrics, /healthz and /api/v1/status (there is no "
                                  "authentication)",
                                  cfg_.agent.admin));
  }
  agent->optional(
      "shutdown_timeout", cfg_.agent.shutdown_timeout, errors_,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(0), std::chrono::hours(1)});
  agent->optional("max_pending_puts", cfg_.agent.max_pending_puts, errors_,
                  InRange<std::uint32_t>{1, 64});
  agent->reject_unknown_keys(errors_);
}

void ConfigParser::channels_section() {
  each_component("channels", [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    if (!node.required("type", type, errors_)) return;
    channel_types_[name] = type;
    const auto* factory = registry_.channel(type);
    if (factory == nullptr) {
      node.error_at("type", errors_, unknown_type("channel", type, registry_.channel_types()));
      return;
    }
    if (auto c = factory->parse(node, errors_))
      cfg_.channels.push_back({name, type, std::move(*c)});
  });
  for (const auto& [n, t] : channel_types_) channel_names_.push_back(n);
}

bool ConfigParser::check_channel(const ConfigNode& node, std::string_view key,
                                 const std::string& channel) {
  if (channel_types_.count(channel) != 0) return true;
  node.error_at(
      key, errors_,
      fmt::format("unknown channel '{}'{}", channel, did_you_mean(channel, channel_names_)), true);
  return false;
}

bool ConfigParser::check_address(const ConfigNode& node, std::string_view key,
                                 const std::string& address, std::string_view example,
                                 bool& loopback) {
  const std::string problem = address_problem(address, example, loopback);
  if (problem.empty()) return true;
  node.error_at(key, errors_, problem);
  return false;
}

const GroupSpec* ConfigParser::group(std::string_view name) const {
  for (const auto& g : cfg_.groups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

void ConfigParser::sink_groups_section() {
  // Sinks are parsed after the groups, but group membership decides which keys a sink may have,
  // so the groups' sink lists come first; they are checked against the names in [sinks].
  if (auto sinks_section = root_table_.get_as<toml::table>("sinks")) {
    for (const auto& [k, v] : *sinks_section) sink_names_.push_back(k.str());
  }
  each_component("sink_groups",
                 [&](const std::string& name, const ConfigNode& node) { sink_group(name, node); });
}

void ConfigParser::sink_group(const std::string& name, const ConfigNode& node) {
  GroupSpec g;
  g.name = name;
  const bool has_channel = node.required("channel", g.channel, errors_);
  const char* sinks_key = group_sinks(node, g);
  group_processor(node, g, sinks_key);
  std::string dead_letter;
  if (node.has("dead_letter") && node.optional("dead_letter", dead_letter, errors_))
    g.dead_letter = dead_letter;
  node.mark_known("dead_letter");
  sinks::GroupConfig::parse(node, errors_, g.config);
  node.reject_unknown_keys(errors_);
  if (has_channel && check_channel(node, "channel", g.channel))
    drained_by_[g.channel].push_back(name);
  group_members(node, g, sinks_key);
  cfg_.groups.push_back(std::move(g));
}

// Reads `sinks = [...]` (in priority order) or `priority = { NAME = N }` into g.sinks; returns the
// key that was used, for error positions.
const char* ConfigParser::group_sinks(const ConfigNode& node, GroupSpec& g) {
  node.mark_known("sinks");
  node.mark_known("priority");
  if (node.has("sinks") && node.has("priority")) {
    node.error_at("priority", errors_,
                  "set either 'sinks' (in priority order) or 'priority', not both", true);
    return "sinks";
  }
  if (!node.has("priority")) {
    node.required("sinks", g.sinks, errors_);
    return "sinks";
  }
  auto prio = node.child("priority", errors_);
  if (!prio) return "priority";
  std::vector<std::pair<std::int64_t, std::string>> ranked;
  for (const auto& [k, v] : prio->table()) {
    std::int64_t p = 0;
    if (!prio->required(k.str(), p, errors_)) continue;
    for (const auto& [other_p, other] : ranked) {
      if (other_p == p) {
        prio->error_at(
            k.str(), errors_,
            fmt::format("sinks '{}' and '{}' have the same priority {}", other, k.str(), p));
      }
    }
    ranked.emplace_back(p, std::string(k.str()));
  }
  // A larger number is preferred, as in Flume.
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& [p, n] : ranked) g.sinks.push_back(n);
  return "priority";
}

// The processor, its own keys, and how many sinks it takes. A key that only another processor
// reads is named as such, which says more than "unknown key".
void ConfigParser::group_processor(const ConfigNode& node, GroupSpec& g, const char* sinks_key) {
  const auto types = registry_.processor_types();
  if (!node.optional("processor", g.processor, errors_, OneOf{types})) {
    // The processor is wrong: its keys and sink count cannot be checked, so do not guess.
    for (auto t : types) {
      ConfigErrors ignored;
      registry_.processor(t)->parse(node, ignored);
    }
    return;
  }
  const auto* factory = registry_.processor(g.processor);
  if (auto c = factory->parse(node, errors_)) g.processor_config = std::move(*c);
  std::map<std::string, std::vector<std::string_view>, std::less<>> read_by_others;
  for (auto t : types) {
    if (t == g.processor) continue;
    ConfigNode other(node.table(), node.path(), node.file());
    ConfigErrors ignored;
    registry_.processor(t)->parse(other, ignored);
    for (const auto& [k, v] : node.table()) {
      if (!node.is_known(k.str()) && other.is_known(k.str()))
        read_by_others[std::string(k.str())].push_back(t);
    }
  }
  for (const auto& [key, owners] : read_by_others) {
    node.mark_known(key);
    node.error_at(key, errors_,
                  fmt::format("only a {} group has a {}", fmt::join(owners, " or "), key), true);
  }
  if (!node.has(sinks_key)) return;
  const ProcessorTraits& t = factory->traits;
  const std::size_t n = g.sinks.size();
  if (t.min_sinks == t.max_sinks && n != t.min_sinks) {
    node.error_at(sinks_key, errors_,
                  fmt::format("processor '{}' takes exactly {} sink{}, got {}", g.processor,
                              t.min_sinks == 1 ? "one" : std::to_string(t.min_sinks),
                              t.min_sinks == 1 ? "" : "s", n));
  } else if (n == 0) {
    node.error_at(sinks_key, errors_, "must name at least one sink");
  } else if (n < t.min_sinks) {
    node.error_at(
        sinks_key, errors_,
        fmt::format("processor '{}' needs at least {} sinks, got {}", g.processor, t.min_sinks, n));
  } else if (n > t.max_sinks) {
    node.error_at(
        sinks_key, errors_,
        fmt::format("processor '{}' takes at most {} sinks, got {}", g.processor, t.max_sinks, n));
  }
}

// Every member and the dead-letter sink exist, and none is in two groups.
void ConfigParser::group_members(const ConfigNode& node, const GroupSpec& g,
                                 const char* sinks_key) {
  for (const auto& s : g.sinks) {
    if (std::find(sink_names_.begin(), sink_names_.end(), s) == sink_names_.end()) {
      node.error_at(sinks_key, errors_,
                    fmt::format("unknown sink '{}'{}", s, did_you_mean(s, sink_names_)), true);
    } else if (auto [it, fresh] = group_of_.emplace(s, g.name); !fresh) {
      node.error_at(sinks_key, errors_,
                    fmt::format("sink '{}' is already in sink group '{}'", s, it->second), true);
    }
  }
  if (!g.dead_letter) return;
  const std::string& dl = *g.dead_letter;
  if (std::find(sink_names_.begin(), sink_names_.end(), dl) == sink_names_.end()) {
    node.error_at("dead_letter", errors_,
                  fmt::format("unknown sink '{}'{}", dl, did_you_mean(dl, sink_names_)), true);
  } else if (auto [it, fresh] = dead_letter_of_.emplace(dl, g.name); !fresh) {
    node.error_at(
        "dead_letter", errors_,
        fmt::format("sink '{}' is already the dead_letter of sink group '{}'", dl, it->second),
        true);
  }
}

void ConfigParser::dead_letters_outside_groups() {
  for (const auto& [dl, group_name] : dead_letter_of_) {
    auto it = group_of_.find(dl);
    if (it == group_of_.end() || group(group_name) == nullptr) continue;
    ConfigNode node(*root_table_["sink_groups"][group_name].as_table(), "sink_groups." + group_name,
                    root_.file());
    node.error_at("dead_letter", errors_,
                  fmt::format("sink '{}' is in sink group '{}'; a dead-letter sink must not be", dl,
                              it->second),
                  true);
  }
}

void ConfigParser::sinks_section() {
  each_component("sinks", [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    const bool has_type = node.required("type", type, errors_);
    SinkSpec s;
    s.name = name;
    s.type = type;
    node.optional(
        "delivery_timeout", s.delivery_timeout, errors_,
        InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(1), std::chrono::hours(1)});
    sink_channel(name, node);
    if (!has_type) return;
    const auto* factory = registry_.sink(type);
    if (factory == nullptr) {
      node.error_at("type", errors_, unknown_type("sink", type, registry_.sink_types()));
      return;
    }
    if (auto c = factory->parse(node, errors_)) {
      s.config = std::move(*c);
      cfg_.sinks.push_back(std::move(s));
    }
  });
}

// A sink's `channel`: required for a sink outside any group (it becomes a group of one), optional
// and matching for a group member, absent for a dead-letter sink.
void ConfigParser::sink_channel(const std::string& name, const ConfigNode& node) {
  std::string channel;
  const bool has_channel = node.has("channel") && node.optional("channel", channel, errors_);
  node.mark_known("channel");
  auto grp = group_of_.find(name);
  if (auto dl = dead_letter_of_.find(name); dl != dead_letter_of_.end()) {
    if (node.has("channel")) {
      node.error_at(
          "channel", errors_,
          fmt::format("this sink is the dead_letter of sink group '{}' and reads no channel",
                      dl->second),
          true);
    }
  } else if (grp == group_of_.end()) {
    GroupSpec g;
    g.name = name;
    g.implicit = true;
    g.sinks = {name};
    // The default processor reads no keys, so this cannot claim one of the sink's.
    if (auto c = registry_.processor(g.processor)->parse(node, errors_)) {
      g.processor_config = std::move(*c);
    }
    sinks::GroupConfig::parse(node, errors_, g.config);
    if (!node.has("channel")) {
      node.error(errors_,
                 "missing required key 'channel' (or list this sink in a [sink_groups] table)");
    } else if (has_channel && check_channel(node, "channel", channel)) {
      g.channel = channel;
      drained_by_[channel].push_back(name);
      cfg_.groups.push_back(std::move(g));
    }
  } else if (has_channel) {
    const GroupSpec* g = group(grp->second);
    if (g != nullptr && g->channel != channel) {
      node.error_at(
          "channel", errors_,
          fmt::format("sink group '{}' reads channel '{}'; remove this key or make it match",
                      g->name, g->channel),
          true);
    }
  }
}

void ConfigParser::sources_section() {
  listens_.push_back({cfg_.agent.admin, "agent.admin"});
  each_component("sources", [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    const bool has_type = node.required("type", type, errors_);
    SourceSpec s;
    s.name = name;
    s.type = type;
    source_channels(node, s);
    source_dead_letter(node, s);
    source_listen(name, node);
    if (!has_type) return;
    const auto* factory = registry_.source(type);
    if (factory == nullptr) {
      node.error_at("type", errors_, unknown_type("source", type, registry_.source_types()));
      return;
    }
    if (auto c = factory->parse(node, errors_)) {
      s.config = std::move(*c);
      cfg_.sources.push_back(std::move(s));
    }
  });
}

void ConfigParser::source_channels(const ConfigNode& node, SourceSpec& s) {
  node.mark_known("channel");
  node.mark_known("channels");
  if (node.has("channel") && node.has("channels")) {
    node.error_at("channels", errors_, "set either 'channel' or 'channels', not both", true);
  } else if (node.has("channels")) {
    if (node.optional("channels", s.channels, errors_) && s.channels.empty()) {
      node.error_at("channels", errors_, "must not be empty");
    }
    for (std::size_t i = 0; i < s.channels.size(); ++i) {
      const std::string& c = s.channels[i];
      if (!check_channel(node, "channels", c)) continue;
      if (std::find(s.channels.begin(), s.channels.begin() + i, c) != s.channels.begin() + i) {
        node.error_at_element(
            "channels", i, errors_,
            fmt::format("channel '{}' is listed twice; every event would be put into it twice", c));
      }
    }
  } else {
    std::string channel;
    if (node.required("channel", channel, errors_) && check_channel(node, "channel", channel)) {
      s.channels.push_back(channel);
    }
  }
  for (const auto& c : s.channels) written_by_[c].push_back(s.name);
}

void ConfigParser::source_dead_letter(const ConfigNode& node, SourceSpec& s) {
  node.mark_known("dead_letter_channel");
  const auto* on_error = node.table().get_as<std::string>("on_parse_error");
  const bool wants_dead_letter = on_error != nullptr && on_error->get() == "dead_letter";
  if (node.has("dead_letter_channel")) {
    if (node.optional("dead_letter_channel", s.dead_letter_channel, errors_) &&
        check_channel(node, "dead_letter_channel", s.dead_letter_channel)) {
      if (std::find(s.channels.begin(), s.channels.end(), s.dead_letter_channel) !=
          s.channels.end()) {
        node.error_at("dead_letter_channel", errors_,
                      "is also one of this source's channels; use a channel of its own");
      }
    }
    if (!wants_dead_letter) {
      node.error_at("dead_letter_channel", errors_,
                    "only applies with on_parse_error = \"dead_letter\"", true);
    }
  } else if (wants_dead_letter) {
    node.error_at("on_parse_error", errors_,
                  "\"dead_letter\" needs dead_letter_channel = \"NAME\" (a channel that a sink "
                  "group drains)");
  }
}

// A network source's `listen` (the source reads the key itself): a bindable address, used once.
void ConfigParser::source_listen(const std::string& name, const ConfigNode& node) {
  const auto* listen = node.table().get_as<std::string>("listen");
  if (listen == nullptr) return;
  const std::string address = listen->get();
  bool loopback = false;
  if (!check_address(node, "listen", address, "0.0.0.0:4141", loopback)) return;
  const bool any_port = address.size() >= 2 && address.substr(address.size() - 2) == ":0";
  for (const auto& l : listens_) {
    if (l.address == address && !any_port) {
      node.error_at("listen", errors_,
                    fmt::format("address {} is already used by {}", address, l.owner));
    }
  }
  listens_.push_back({address, "sources." + name + ".listen"});
}

void ConfigParser::pipelines_section() {
  each_component("pipelines",
                 [&](const std::string& name, const ConfigNode& node) { pipeline(name, node); });
}

// A pipeline's SQL compiles, its FROM names a source that writes to an lmdb or memory channel
// (which the pipeline reads with its own cursor), and its rows and late events go to configured
// channels. Errors inside the SQL point into the SQL text in the file.
void ConfigParser::pipeline(const std::string& name, const ConfigNode& node) {
  PipelineSpec p;
  p.name = name;
  p.agent_name = cfg_.agent.name;  // PARTIAL states carry it (issue 14)
  p.agent_name_is_host = cfg_.agent.name_is_host;
  const std::size_t before = errors_.size();
  const bool has_sql = node.required("sql", p.sql, errors_);
  std::string channel_key;
  node.optional("channel", channel_key, errors_);
  std::string source_key;
  node.optional("source", source_key, errors_);
  bool et_without_field = false;
  if (auto et = node.child("event_time", errors_)) {
    // Without a field, the source's timestamp is the event time (watermark_delay alone).
    et->optional("field", p.event_time_field, errors_);
    et_without_field = !et->has("field");
    if (et_without_field && (et->has("format") || et->has("timezone"))) {
      et_without_field = false;  // one error for it
      node.error_at("event_time", errors_,
                    "format and timezone are those of `field`, which is missing (without a "
                    "field, event time is the source's timestamp)");
    }
    parse::TimeZone zone;
    if (et->optional("timezone", p.event_time_timezone, errors_) &&
        !p.event_time_timezone.empty()) {
      auto z = parse::TimeZone::load(p.event_time_timezone);
      if (!z) {
        et->error_at("timezone", errors_, z.error().message());
      } else {
        zone = std::move(*z);
      }
    }
    if (et->optional("format", p.event_time_format, errors_) && et->has("format")) {
      auto tf = parse::TimeFormat::make(p.event_time_format, zone);
      if (!tf) et->error_at("format", errors_, tf.error().message());
    }
    if (et->has("watermark_delay")) p.watermark_delay_set = true;
    et->optional(
        "watermark_delay", p.watermark_delay, errors_,
        InRange<std::chrono::nanoseconds>{std::chrono::nanoseconds(0), std::chrono::hours(24 * 7)});
    et->reject_unknown_keys(errors_);
  }
  const InRange<std::chrono::nanoseconds> week{std::chrono::nanoseconds(0),
                                               std::chrono::hours(24 * 7)};
  node.optional("allowed_lateness", p.allowed_lateness, errors_, week);
  node.optional("idle_timeout", p.idle_timeout, errors_, week);
  node.optional(
      "checkpoint_interval", p.checkpoint_interval, errors_,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(10), std::chrono::minutes(10)});
  node.optional("late", p.late_channel, errors_);
  node.optional_enum("on_stop", p.on_stop, errors_,
                     {{"emit", OnStop::emit}, {"keep", OnStop::keep}});
  ByteSize state{p.max_state_bytes};
  if (node.optional("max_state_bytes", state, errors_,
                    InRange<ByteSize>{{1 << 16}, {1ULL << 40}})) {
    p.max_state_bytes = state.bytes;
  }
  node.optional("distinct_exact_limit", p.distinct_exact_limit, errors_,
                InRange<std::uint64_t>{0, 1'000'000});
  node.reject_unknown_keys(errors_);
  if (!has_sql) return;

  // The SQL string's position in the file, to turn offsets in the SQL into file positions.
  const toml::node* sql_node = node.table().get("sql");
  const auto begin = sql_node->source().begin;
  const TomlStringMap map(text_, begin.line, begin.column);
  auto sql_error = [&](std::size_t offset, std::string message) {
    const auto [line, column] = map.position(offset);
    errors_.add({root_.file(), line, column, node.path() + ".sql", std::move(message)});
  };
  sql::CompileError cerr;
  auto compiled = sql::compile(p.sql, {}, &cerr);
  if (!compiled) {
    sql_error(cerr.offset, cerr.message);
    return;
  }
  if (!compiled->table_name()) {
    // Without CREATE TABLE, names are checked against the source's fields when its format
    // names them all.
    const std::string read = source_key.empty() ? std::string(compiled->from()) : source_key;
    if (const toml::table* t = root_table_["sources"][read].as_table()) {
      if (auto schema = source_schema(*t, "sources." + read, root_.file())) {
        compiled = sql::compile(p.sql, {std::move(schema)}, &cerr);
        if (!compiled) {
          if (cerr.message.rfind("unknown column", 0) == 0) {
            cerr.message += " (source '" + read +
                            "' has the named groups of its regex, the fields its `set` and "
                            "`rename` interceptors add, and body)";
          }
          sql_error(cerr.offset, cerr.message);
          return;
        }
      }
    }
  }
  p.query = std::make_shared<const sql::CompiledQuery>(std::move(*compiled));
  const sql::CompiledQuery& q = *p.query;

  // FROM: a source (or the CREATE TABLE name, with `source` naming the source it stands for).
  std::vector<std::string_view> source_names;
  for (const auto& s : cfg_.sources) source_names.push_back(s.name);
  const std::string from(q.from());
  p.source = source_key.empty() ? from : source_key;
  const SourceSpec* src = nullptr;
  for (const auto& s : cfg_.sources) {
    if (s.name == p.source) src = &s;
  }
  const bool source_table_exists =
      root_table_["sources"][p.source].as_table() != nullptr;  // present but with errors
  if (src == nullptr && !source_table_exists) {
    const std::string msg =
        fmt::format("unknown source '{}'{}", p.source, did_you_mean(p.source, source_names));
    if (source_key.empty()) {
      sql_error(sql_name_offset(p.sql, "FROM", from), msg);
    } else {
      node.error_at("source", errors_, msg);
    }
  }

  // INSERT INTO or `channel`: where the rows go.
  const std::optional<std::string_view> into = q.insert_into();
  if (into && !channel_key.empty() && *into != channel_key) {
    node.error_at("channel", errors_,
                  fmt::format("the SQL inserts into '{}'; remove this key or make it match",
                              std::string(*into)));
  } else if (!into && channel_key.empty()) {
    sql_error(0, "the query has no INSERT INTO <channel>; add one or set channel = \"NAME\"");
  } else {
    p.channel = into ? std::string(*into) : channel_key;
    if (channel_types_.count(p.channel) == 0) {
      const std::string msg =
          fmt::format("unknown channel '{}'{}", p.channel, did_you_mean(p.channel, channel_names_));
      if (into) {
        sql_error(sql_name_offset(p.sql, "INTO", p.channel), msg);
      } else {
        node.error_at("channel", errors_, msg);
      }
    } else if (src != nullptr && std::find(src->channels.begin(), src->channels.end(), p.channel) !=
                                     src->channels.end()) {
      const std::string msg = fmt::format(
          "channel '{}' is also a channel of source '{}': the pipeline would read its own rows",
          p.channel, p.source);
      if (into) {
        sql_error(sql_name_offset(p.sql, "INTO", p.channel), msg);
      } else {
        node.error_at("channel", errors_, msg);
      }
    }
  }
  if (!p.late_channel.empty() && check_channel(node, "late", p.late_channel)) {
    if (p.late_channel == p.channel) {
      node.error_at("late", errors_,
                    "is the pipeline's own output channel; use a channel of its own");
    } else if (src != nullptr && std::find(src->channels.begin(), src->channels.end(),
                                           p.late_channel) != src->channels.end()) {
      node.error_at("late", errors_,
                    fmt::format("channel '{}' is also a channel of source '{}': the pipeline "
                                "would read its late events again",
                                p.late_channel, p.source));
    }
  }

  // The input: the source's durable channel, read through the pipeline's own cursor, so that the
  // pipeline's state and cursor move in one transaction and the source's position is stored with
  // the events (agent/pipeline.h explains why).
  if (src != nullptr) {
    for (const auto& c : src->channels) {
      auto t = channel_types_.find(c);
      const auto* factory = t == channel_types_.end() ? nullptr : registry_.channel(t->second);
      if (factory != nullptr && factory->traits.print_stats != nullptr) {
        p.input_channel = c;
        p.input_durable = true;
        break;
      }
    }
    // Else a memory channel: read without checkpoints (agent/pipeline.h).
    for (const auto& c : src->channels) {
      auto t = channel_types_.find(c);
      if (!p.input_channel.empty() || t == channel_types_.end() || t->second != "memory") continue;
      p.input_channel = c;
    }
    if (!p.input_channel.empty() && !p.input_durable && p.on_stop == OnStop::keep) {
      node.error_at("on_stop", errors_,
                    fmt::format("\"keep\" needs a durable input, and source '{}' writes to no lmdb "
                                "channel (its memory channel '{}' keeps nothing across a restart); "
                                "use \"emit\" or add an lmdb channel to sources.{}.channels",
                                p.source, p.input_channel, p.source));
    }
    auto source_error = [&](std::string msg) {
      if (source_key.empty()) {
        sql_error(sql_name_offset(p.sql, "FROM", from), std::move(msg));
      } else {
        node.error_at("source", errors_, std::move(msg));
      }
    };
    if (p.input_channel.empty()) {
      source_error(fmt::format(
          "source '{}' writes to no lmdb or memory channel; a pipeline reads its source's events "
          "from one (add an lmdb channel to sources.{}.channels)",
          p.source, p.source));
    } else {
      std::vector<std::string> others;
      for (const auto& w : written_by_[p.input_channel]) {
        if (w != p.source) others.push_back("sources." + w);
      }
      if (!others.empty()) {
        source_error(fmt::format(
            "channel '{}' of source '{}' is also written by {}; a pipeline's input channel must "
            "hold only its source's events",
            p.input_channel, p.source, fmt::join(others, ", ")));
      }
    }
    // Event time: the pipeline's event_time, else the query's WATERMARK column, else the source's
    // `timestamp`, else processing time.
    const bool source_timestamp =
        root_table_["sources"][p.source]["timestamp"].as_table() != nullptr;
    p.processing_time = p.event_time_field.empty() && !q.watermark_column() && !source_timestamp;
    if (et_without_field && p.processing_time) {
      node.error_at("event_time", errors_,
                    fmt::format("no field, and source '{}' has no `timestamp`: name the field "
                                "that holds the event time",
                                p.source));
    }
  }
  if (errors_.size() == before) cfg_.pipelines.push_back(std::move(p));
}

// Every channel is drained, by no more sink groups than its type allows.
void ConfigParser::channel_readers() {
  const auto* channels = root_table_.get_as<toml::table>("channels");
  if (channels == nullptr) return;
  for (const auto& [name, type] : channel_types_) {
    ConfigNode node(*channels->get_as<toml::table>(name), "channels." + name, root_.file());
    auto it = drained_by_.find(name);
    const auto* factory = registry_.channel(type);
    if (it == drained_by_.end()) {
      node.error(errors_, "no sink or sink group drains this channel");
    } else if (factory != nullptr && factory->traits.max_cursors != 0 &&
               it->second.size() > factory->traits.max_cursors) {
      const std::uint32_t max = factory->traits.max_cursors;
      node.error(errors_,
                 fmt::format("a {} channel can be drained by {} sink group{}; {} read it: {}", type,
                             max == 1 ? "one" : std::to_string(max), max == 1 ? "" : "s",
                             it->second.size(), fmt::join(it->second, ", ")));
    }
  }
}

// An empty file (or one with only [agent]) would start an agent that does nothing and exits 0.
void ConfigParser::something_to_run() {
  for (const char* section : {"sources", "channels", "sinks"}) {
    const auto* t = root_table_.get_as<toml::table>(section);
    if (t != nullptr && !t->empty()) return;
    if (root_table_.get(section) != nullptr && t == nullptr) return;  // reported as not a table
  }
  errors_.add({root_.file(), 0, 0, "",
               "the configuration defines no sources, channels or sinks; nothing would run"});
}

}  // namespace

std::optional<AgentConfig> load_config(const std::string& path, const Registry& registry,
                                       ConfigErrors& errors) {
  auto fail = [&](std::string message) {
    errors.add({path, 0, 0, "", std::move(message)});
    return std::nullopt;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(fmt::format("cannot read the configuration file: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return fail("is a directory, not a configuration file");
  }
  // Read one byte past the limit, so that a file of exactly the limit passes.
  std::string text;
  text.resize(kMaxConfigBytes + 1);
  std::size_t used = 0;
  int read_errno = 0;
  while (used < text.size()) {
    const ssize_t n = ::read(fd, text.data() + used, text.size() - used);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      read_errno = errno;
      break;
    }
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (read_errno != 0) {
    return fail(fmt::format("cannot read the configuration file: {}", std::strerror(read_errno)));
  }
  if (used > kMaxConfigBytes) {
    return fail(fmt::format("is larger than {}, the limit for a configuration file",
                            format_size(ByteSize{kMaxConfigBytes})));
  }
  text.resize(used);
  return parse_config(text, path, registry, errors);
}

std::optional<AgentConfig> parse_config(std::string_view text, const std::string& file,
                                        const Registry& registry, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  toml::table root_table;
  try {
    root_table = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    errors.add({file, e.source().begin.line, e.source().begin.column, "",
                fmt::format("syntax error: {}", e.description())});
    return std::nullopt;
  }
  AgentConfig cfg;
  cfg.file = file;
  cfg.text = std::string(text);
  ConfigParser(root_table, text, file, registry, errors, cfg).parse();
  errors.sort();
  if (errors.size() != before) return std::nullopt;
  return cfg;
}

}  // namespace sluice
