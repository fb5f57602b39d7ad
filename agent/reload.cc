#include "agent/reload.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <sstream>

namespace sluice::reload {

namespace {

std::string print(const toml::node* node) {
  if (node == nullptr) return "";
  std::ostringstream out;
  if (const auto* t = node->as_table()) {
    out << *t;
  } else {
    // A non-table component is a configuration error that parse_config() refused already.
    out << "?";
  }
  return out.str();
}

const toml::table* section(const toml::table& root, std::string_view name) {
  return root.get_as<toml::table>(name);
}

std::string member_print(const toml::table* sec, const std::string& name) {
  if (sec == nullptr) return "";
  return print(sec->get(name));
}

template <class Specs>
const auto* find_spec(const Specs& specs, std::string_view name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return static_cast<const typename Specs::value_type*>(nullptr);
}

bool changed(const std::map<std::string, std::string, std::less<>>& old_prints,
             const std::map<std::string, std::string, std::less<>>& next_prints,
             const std::string& name) {
  auto o = old_prints.find(name);
  auto n = next_prints.find(name);
  if (o == old_prints.end() || n == next_prints.end()) return true;
  return o->second != n->second;
}

template <class Specs>
NameSet builds(const Specs& next_specs, const Specs& old_specs, const NameSet& retired) {
  NameSet out;
  for (const auto& s : next_specs) {
    if (retired.count(s.name) > 0 || find_spec(old_specs, s.name) == nullptr) out.insert(s.name);
  }
  return out;
}

}  // namespace

Prints fingerprints(const AgentConfig& config) {
  Prints p;
  toml::table root;
  try {
    root = toml::parse(config.text, config.file);
  } catch (const toml::parse_error&) {
    // parse_config() accepted this text; an empty print only makes every component look changed.
    return p;
  }
  p.agent = print(root.get("agent"));
  const toml::table* sources = section(root, "sources");
  const toml::table* channels = section(root, "channels");
  const toml::table* sinks = section(root, "sinks");
  const toml::table* groups = section(root, "sink_groups");
  const toml::table* pipelines = section(root, "pipelines");
  // The agent's max_pending_puts shapes every source's and pipeline's output.
  const std::string agent_part =
      fmt::format("\n#max_pending_puts {}", config.agent.max_pending_puts);
  for (const auto& s : config.sources)
    p.sources[s.name] = member_print(sources, s.name) + agent_part;
  for (const auto& c : config.channels) p.channels[c.name] = member_print(channels, c.name);
  for (const auto& s : config.sinks) p.sinks[s.name] = member_print(sinks, s.name);
  for (const auto& g : config.groups) {
    // A sink with its own `channel` is a group of one named after it, read from the sink's table.
    p.groups[g.name] =
        g.implicit ? "implicit\n" + member_print(sinks, g.name) : member_print(groups, g.name);
  }
  for (const auto& pl : config.pipelines) {
    p.pipelines[pl.name] = member_print(pipelines, pl.name) + "\n#input " + pl.input_channel +
                           agent_part +
                           // PARTIAL rows carry the agent's name.
                           "\n#agent_name " + config.agent.name;
  }
  return p;
}

bool Plan::empty() const {
  return retire_sources.empty() && retire_channels.empty() && retire_sinks.empty() &&
         retire_groups.empty() && retire_pipelines.empty() && build_sources.empty() &&
         build_channels.empty() && build_sinks.empty() && build_groups.empty() &&
         build_pipelines.empty();
}

std::string Plan::summary() const {
  std::string out;
  auto part = [&](std::string_view kind, const NameSet& retire, const NameSet& build) {
    std::string items;
    for (const auto& n : build) {
      items += fmt::format("{}{}{}", items.empty() ? "" : " ", retire.count(n) > 0 ? "~" : "+", n);
    }
    for (const auto& n : retire) {
      if (build.count(n) == 0) items += fmt::format("{}-{}", items.empty() ? "" : " ", n);
    }
    if (items.empty()) return;
    out += fmt::format("{}{} {}", out.empty() ? "" : "; ", kind, items);
  };
  part("sources", retire_sources, build_sources);
  part("channels", retire_channels, build_channels);
  part("sinks", retire_sinks, build_sinks);
  part("sink_groups", retire_groups, build_groups);
  part("pipelines", retire_pipelines, build_pipelines);
  return out.empty() ? "no component changed" : out;
}

Plan plan(const AgentConfig& old_config, const Prints& old_prints, const AgentConfig& next,
          const Prints& next_prints, const SingleCursor& single_cursor) {
  Plan p;
  for (const auto& c : old_config.channels) {
    if (changed(old_prints.channels, next_prints.channels, c.name))
      p.retire_channels.insert(c.name);
  }
  for (const auto& s : old_config.sinks) {
    if (changed(old_prints.sinks, next_prints.sinks, s.name)) p.retire_sinks.insert(s.name);
  }
  for (const auto& g : old_config.groups) {
    if (changed(old_prints.groups, next_prints.groups, g.name)) p.retire_groups.insert(g.name);
  }
  for (const auto& pl : old_config.pipelines) {
    if (changed(old_prints.pipelines, next_prints.pipelines, pl.name))
      p.retire_pipelines.insert(pl.name);
  }
  for (const auto& s : old_config.sources) {
    if (changed(old_prints.sources, next_prints.sources, s.name)) p.retire_sources.insert(s.name);
  }
  // Close over the dependencies until nothing more is added.
  bool grew = true;
  auto add = [&](NameSet& set, const std::string& name) {
    if (set.insert(name).second) grew = true;
  };
  while (grew) {
    grew = false;
    for (const auto& g : old_config.groups) {
      bool retire = p.retire_groups.count(g.name) > 0 || p.retire_channels.count(g.channel) > 0;
      for (const auto& s : g.sinks) retire = retire || p.retire_sinks.count(s) > 0;
      if (g.dead_letter) retire = retire || p.retire_sinks.count(*g.dead_letter) > 0;
      if (!retire) continue;
      // Draining a group stops its sinks: they are built again with the new group.
      add(p.retire_groups, g.name);
      for (const auto& s : g.sinks) add(p.retire_sinks, s);
      if (g.dead_letter) add(p.retire_sinks, *g.dead_letter);
    }
    for (const auto& pl : old_config.pipelines) {
      const bool retire =
          p.retire_pipelines.count(pl.name) > 0 || p.retire_channels.count(pl.input_channel) > 0 ||
          p.retire_channels.count(pl.channel) > 0 ||
          (!pl.late_channel.empty() && p.retire_channels.count(pl.late_channel) > 0);
      if (!retire) continue;
      add(p.retire_pipelines, pl.name);
      // A pipeline opens its own named cursor on its input: that channel starts again with it.
      add(p.retire_channels, pl.input_channel);
    }
    for (const auto& c : old_config.channels) {
      if (p.retire_channels.count(c.name) > 0 || single_cursor(c.type)) continue;
      // A retired reader that does not read this channel again under the same name would leave
      // its cursor behind, holding every record it has not committed.
      for (const auto& g : old_config.groups) {
        if (g.channel != c.name || p.retire_groups.count(g.name) == 0) continue;
        const GroupSpec* again = find_spec(next.groups, g.name);
        if (again == nullptr || again->channel != c.name) add(p.retire_channels, c.name);
      }
    }
    for (const auto& s : old_config.sources) {
      bool retire = p.retire_sources.count(s.name) > 0;
      for (const auto& c : s.channels) retire = retire || p.retire_channels.count(c) > 0;
      if (!s.dead_letter_channel.empty())
        retire = retire || p.retire_channels.count(s.dead_letter_channel) > 0;
      if (retire) add(p.retire_sources, s.name);
    }
  }
  p.build_sources = builds(next.sources, old_config.sources, p.retire_sources);
  p.build_channels = builds(next.channels, old_config.channels, p.retire_channels);
  p.build_sinks = builds(next.sinks, old_config.sinks, p.retire_sinks);
  p.build_groups = builds(next.groups, old_config.groups, p.retire_groups);
  p.build_pipelines = builds(next.pipelines, old_config.pipelines, p.retire_pipelines);
  return p;
}

std::vector<std::string> unchangeable(const AgentConfig& old_config, const AgentConfig& next) {
  std::vector<std::string> out;
  if (old_config.agent.data_dir != next.agent.data_dir) {
    out.push_back(fmt::format(
        "agent.data_dir: cannot change on reload (running with \"{}\", the file says \"{}\"); "
        "restart sluice to use it",
        old_config.agent.data_dir, next.agent.data_dir));
  }
  if (old_config.agent.admin != next.agent.admin) {
    out.push_back(fmt::format(
        "agent.admin: cannot change on reload (running with \"{}\", the file says \"{}\"); "
        "restart sluice to use it",
        old_config.agent.admin, next.agent.admin));
  }
  return out;
}

}  // namespace sluice::reload
