#include "agent/agent_config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "lib/http/http_server.h"

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

// Iterates the sub-tables of a top-level section ([sources.NAME] ...), reporting non-tables and bad
// names.
template <class F>
void each_component(const ConfigNode& root, std::string_view section, ConfigErrors& errors, F&& f) {
  auto sec = root.child(section, errors);
  if (!sec) return;
  for (const auto& [key, value] : sec->table()) {
    const std::string name(key.str());
    sec->mark_known(name);
    if (!value.is_table()) {
      sec->error_at(name, errors, "expected a table ([" + std::string(section) + "." + name + "])");
      continue;
    }
    if (!valid_name(name)) {
      sec->error_at(name, errors, "names may use only letters, digits, '_' and '-'", true);
      continue;
    }
    ConfigNode node(*value.as_table(), std::string(section) + "." + name, root.file());
    f(name, node);
  }
}

}  // namespace

std::optional<AgentConfig> load_config(const std::string& path, const Registry& registry,
                                       ConfigErrors& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.add({path, 0, 0, "",
                fmt::format("cannot read the configuration file: {}", std::strerror(errno))});
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, registry, errors);
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
  ConfigNode root(root_table, "", file);

  // [agent]
  cfg.agent.name = host_name();
  if (auto agent = root.child("agent", errors)) {
    agent->optional("name", cfg.agent.name, errors);
    if (agent->optional("data_dir", cfg.agent.data_dir, errors) && cfg.agent.data_dir.empty()) {
      agent->error_at("data_dir", errors, "must not be empty");
    }
    if (agent->optional("admin", cfg.agent.admin, errors)) {
      std::string host;
      int port = 0;
      if (!http::split_host_port(cfg.agent.admin, host, port)) {
        agent->error_at(
            "admin", errors,
            fmt::format("\"{}\" is not HOST:PORT (e.g. \"127.0.0.1:24280\")", cfg.agent.admin));
      }
    }
    agent->optional(
        "shutdown_timeout", cfg.agent.shutdown_timeout, errors,
        InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(0), std::chrono::hours(1)});
    agent->optional("max_pending_puts", cfg.agent.max_pending_puts, errors,
                    InRange<std::uint32_t>{1, 64});
    agent->reject_unknown_keys(errors);
  }

  // [channels.NAME]
  std::map<std::string, std::string, std::less<>> channel_types;
  each_component(root, "channels", errors, [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    if (!node.required("type", type, errors)) return;
    channel_types[name] = type;
    const auto* factory = registry.channel(type);
    if (factory == nullptr) {
      node.error_at("type", errors, unknown_type("channel", type, registry.channel_types()));
      return;
    }
    if (auto c = factory->parse(node, errors)) cfg.channels.push_back({name, type, std::move(*c)});
  });
  std::vector<std::string_view> channel_names;
  for (const auto& [n, t] : channel_types) channel_names.push_back(n);
  auto check_channel = [&](const ConfigNode& node, std::string_view key,
                           const std::string& channel) {
    if (channel_types.count(channel) != 0) return true;
    node.error_at(
        key, errors,
        fmt::format("unknown channel '{}'{}", channel, did_you_mean(channel, channel_names)), true);
    return false;
  };

  // Sinks are parsed before groups are checked, but group membership decides which keys a sink
  // may have, so collect the groups' sink lists first.
  std::map<std::string, std::string, std::less<>> group_of;                 // sink -> group
  std::map<std::string, std::vector<std::string>, std::less<>> drained_by;  // channel -> groups
  std::vector<std::string_view> sink_names;
  if (auto sinks_section = root_table.get_as<toml::table>("sinks")) {
    for (const auto& [k, v] : *sinks_section) sink_names.push_back(k.str());
  }
  std::map<std::string, std::string, std::less<>> dead_letter_of;  // sink -> group
  each_component(root, "sink_groups", errors, [&](const std::string& name, const ConfigNode& node) {
    GroupSpec g;
    g.name = name;
    const bool has_channel = node.required("channel", g.channel, errors);
    node.optional("processor", g.processor, errors, OneOf{{"default", "failover", "load_balance"}});
    node.mark_known("sinks");
    node.mark_known("priority");
    const char* sinks_key = "sinks";
    if (node.has("sinks") && node.has("priority")) {
      node.error_at("priority", errors,
                    "set either 'sinks' (in priority order) or 'priority', not both", true);
    } else if (node.has("priority")) {
      sinks_key = "priority";
      if (auto prio = node.child("priority", errors)) {
        std::vector<std::pair<std::int64_t, std::string>> ranked;
        for (const auto& [k, v] : prio->table()) {
          std::int64_t p = 0;
          if (prio->required(k.str(), p, errors)) {
            for (const auto& [other_p, other] : ranked) {
              if (other_p == p) {
                prio->error_at(k.str(), errors,
                               fmt::format("sinks '{}' and '{}' have the same priority {}", other,
                                           k.str(), p));
              }
            }
            ranked.emplace_back(p, std::string(k.str()));
          }
        }
        // A larger number is preferred, as in Flume.
        std::stable_sort(ranked.begin(), ranked.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
        for (auto& [p, n] : ranked) g.sinks.push_back(n);
      }
    } else {
      node.required("sinks", g.sinks, errors);
    }
    if (node.optional("selector", g.selector, errors, OneOf{{"round_robin", "random"}}) &&
        node.has("selector") && g.processor != "load_balance") {
      node.error_at("selector", errors, "only a load_balance group has a selector", true);
    }
    std::string dead_letter;
    if (node.has("dead_letter") && node.optional("dead_letter", dead_letter, errors))
      g.dead_letter = dead_letter;
    node.mark_known("dead_letter");
    sinks::GroupConfig::parse(node, errors, g.config);
    node.reject_unknown_keys(errors);
    if (has_channel && check_channel(node, "channel", g.channel))
      drained_by[g.channel].push_back(name);
    if (g.processor == "default" && node.has(sinks_key) && g.sinks.size() != 1) {
      node.error_at(
          sinks_key, errors,
          fmt::format("processor 'default' takes exactly one sink, got {}", g.sinks.size()));
    } else if (node.has(sinks_key) && g.sinks.empty()) {
      node.error_at(sinks_key, errors, "must name at least one sink");
    }
    for (const auto& s : g.sinks) {
      if (std::find(sink_names.begin(), sink_names.end(), s) == sink_names.end()) {
        node.error_at(sinks_key, errors,
                      fmt::format("unknown sink '{}'{}", s, did_you_mean(s, sink_names)), true);
      } else if (auto [it, fresh] = group_of.emplace(s, name); !fresh) {
        node.error_at(sinks_key, errors,
                      fmt::format("sink '{}' is already in sink group '{}'", s, it->second), true);
      }
    }
    if (g.dead_letter) {
      const std::string& dl = *g.dead_letter;
      if (std::find(sink_names.begin(), sink_names.end(), dl) == sink_names.end()) {
        node.error_at("dead_letter", errors,
                      fmt::format("unknown sink '{}'{}", dl, did_you_mean(dl, sink_names)), true);
      } else if (auto [it, fresh] = dead_letter_of.emplace(dl, name); !fresh) {
        node.error_at(
            "dead_letter", errors,
            fmt::format("sink '{}' is already the dead_letter of sink group '{}'", dl, it->second),
            true);
      }
    }
    cfg.groups.push_back(std::move(g));
  });
  for (const auto& [dl, group] : dead_letter_of) {
    if (auto it = group_of.find(dl); it != group_of.end()) {
      for (const auto& g : cfg.groups) {
        if (g.name == group) {
          ConfigNode node(*root_table["sink_groups"][group].as_table(), "sink_groups." + group,
                          file);
          node.error_at(
              "dead_letter", errors,
              fmt::format("sink '{}' is in sink group '{}'; a dead-letter sink must not be", dl,
                          it->second),
              true);
        }
      }
    }
  }

  // [sinks.NAME]
  each_component(root, "sinks", errors, [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    const bool has_type = node.required("type", type, errors);
    SinkSpec s;
    s.name = name;
    s.type = type;
    node.optional(
        "delivery_timeout", s.delivery_timeout, errors,
        InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(1), std::chrono::hours(1)});
    std::string channel;
    const bool has_channel = node.has("channel") && node.optional("channel", channel, errors);
    node.mark_known("channel");
    auto grp = group_of.find(name);
    if (dead_letter_of.count(name) != 0) {
      if (node.has("channel")) {
        node.error_at(
            "channel", errors,
            fmt::format("this sink is the dead_letter of sink group '{}' and reads no channel",
                        dead_letter_of.find(name)->second),
            true);
      }
    } else if (grp == group_of.end()) {
      GroupSpec g;
      g.name = name;
      g.implicit = true;
      g.sinks = {name};
      sinks::GroupConfig::parse(node, errors, g.config);
      if (!node.has("channel")) {
        node.error(errors,
                   "missing required key 'channel' (or list this sink in a [sink_groups] table)");
      } else if (has_channel && check_channel(node, "channel", channel)) {
        g.channel = channel;
        drained_by[channel].push_back(name);
        cfg.groups.push_back(std::move(g));
      }
    } else if (has_channel) {
      const GroupSpec* g = nullptr;
      for (const auto& gs : cfg.groups) {
        if (gs.name == grp->second) g = &gs;
      }
      if (g != nullptr && g->channel != channel) {
        node.error_at(
            "channel", errors,
            fmt::format("sink group '{}' reads channel '{}'; remove this key or make it match",
                        g->name, g->channel),
            true);
      }
    }
    if (!has_type) return;
    const auto* factory = registry.sink(type);
    if (factory == nullptr) {
      node.error_at("type", errors, unknown_type("sink", type, registry.sink_types()));
      return;
    }
    if (auto c = factory->parse(node, errors)) {
      s.config = std::move(*c);
      cfg.sinks.push_back(std::move(s));
    }
  });

  // [sources.NAME]
  struct Listen {
    std::string address;
    std::string owner;
  };
  std::vector<Listen> listens;
  listens.push_back({cfg.agent.admin, "agent.admin"});
  each_component(root, "sources", errors, [&](const std::string& name, const ConfigNode& node) {
    std::string type;
    const bool has_type = node.required("type", type, errors);
    SourceSpec s;
    s.name = name;
    s.type = type;
    node.mark_known("channel");
    node.mark_known("channels");
    if (node.has("channel") && node.has("channels")) {
      node.error_at("channels", errors, "set either 'channel' or 'channels', not both", true);
    } else if (node.has("channels")) {
      if (node.optional("channels", s.channels, errors) && s.channels.empty()) {
        node.error_at("channels", errors, "must not be empty");
      }
      for (const auto& c : s.channels) check_channel(node, "channels", c);
    } else {
      std::string channel;
      if (node.required("channel", channel, errors) && check_channel(node, "channel", channel)) {
        s.channels.push_back(channel);
      }
    }
    node.mark_known("dead_letter_channel");
    const auto* on_error = node.table().get_as<std::string>("on_parse_error");
    const bool wants_dead_letter = on_error != nullptr && on_error->get() == "dead_letter";
    if (node.has("dead_letter_channel")) {
      if (node.optional("dead_letter_channel", s.dead_letter_channel, errors) &&
          check_channel(node, "dead_letter_channel", s.dead_letter_channel)) {
        if (std::find(s.channels.begin(), s.channels.end(), s.dead_letter_channel) !=
            s.channels.end()) {
          node.error_at("dead_letter_channel", errors,
                        "is also one of this source's channels; use a channel of its own");
        }
      }
      if (!wants_dead_letter) {
        node.error_at("dead_letter_channel", errors,
                      "only applies with on_parse_error = \"dead_letter\"", true);
      }
    } else if (wants_dead_letter) {
      node.error_at("on_parse_error", errors,
                    "\"dead_letter\" needs dead_letter_channel = \"NAME\" (a channel that a sink "
                    "group drains)");
    }
    if (const auto* listen = node.table().get_as<std::string>("listen")) {
      const std::string address = listen->get();
      for (const auto& l : listens) {
        std::string host;
        int port = 0;
        if (l.address == address && http::split_host_port(address, host, port) && port != 0) {
          node.error_at("listen", errors,
                        fmt::format("address {} is already used by {}", address, l.owner));
        }
      }
      listens.push_back({address, "sources." + name + ".listen"});
    }
    if (!has_type) return;
    const auto* factory = registry.source(type);
    if (factory == nullptr) {
      node.error_at("type", errors, unknown_type("source", type, registry.source_types()));
      return;
    }
    if (auto c = factory->parse(node, errors)) {
      s.config = std::move(*c);
      cfg.sources.push_back(std::move(s));
    }
  });

  // Every channel is drained by exactly the groups its type supports.
  if (const auto* channels = root_table.get_as<toml::table>("channels")) {
    for (const auto& [name, type] : channel_types) {
      auto it = drained_by.find(name);
      if (it == drained_by.end()) {
        ConfigNode node(*channels->get_as<toml::table>(name), "channels." + name, file);
        node.error(errors, "no sink or sink group drains this channel");
      } else if (type == "memory" && it->second.size() > 1) {
        ConfigNode node(*channels->get_as<toml::table>(name), "channels." + name, file);
        node.error(errors,
                   fmt::format("a memory channel can be drained by one sink group; {} read it: {}",
                               it->second.size(), fmt::join(it->second, ", ")));
      }
    }
  }
  root.reject_unknown_keys(errors);
  errors.sort();
  if (errors.size() != before) return std::nullopt;
  return cfg;
}

}  // namespace sluice
