#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/channel.h"
#include "lib/core/context.h"
#include "lib/core/processor.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/core/source.h"

namespace sluice {

/// What the configuration check and the CLI must know about a channel type without naming it.
struct ChannelTraits {
  /// How many sink groups may drain one channel of this type; 0 means any number.
  std::uint32_t max_cursors = 0;
  /// `sluice channel stats` and `dump`, for a type whose events outlive the agent (nullptr: none).
  /// They read data_dir while the agent may be running, and print to `out`.
  Status (*print_stats)(const std::string& data_dir, const std::string& name,
                        std::FILE* out) = nullptr;
  Status (*dump)(const std::string& data_dir, const std::string& name, bool json,
                 std::FILE* out) = nullptr;
};

/// What the configuration check must know about a processor type without naming it.
struct ProcessorTraits {
  std::size_t min_sinks = 1;
  std::size_t max_sinks = std::numeric_limits<std::size_t>::max();
};

/// What a processor is built from: the group's sinks in the configured (priority) order and the
/// group's penalty settings. The sinks outlive the processor.
struct ProcessorContext {
  std::vector<Sink*> sinks;
  std::chrono::nanoseconds penalty_base;
  std::chrono::nanoseconds max_penalty;
};

struct NoTraits {};

/// Everything sluice can build, by `type` (by `processor` for sink groups). Filled by
/// register_builtin_components() alone.
class Registry {
 public:
  template <class Config, class Impl>
  void add_source(std::string name) {
    sources_[std::move(name)] = make_entry<Source, SourceContext, NoTraits, Config, Impl>({});
  }
  template <class Config, class Impl>
  void add_channel(std::string name, ChannelTraits traits = {}) {
    channels_[std::move(name)] =
        make_entry<Channel, ChannelContext, ChannelTraits, Config, Impl>(traits);
  }
  template <class Config, class Impl>
  void add_sink(std::string name) {
    sinks_[std::move(name)] = make_entry<Sink, SinkContext, NoTraits, Config, Impl>({});
  }
  /// `Config::parse(node, errors)` reads the processor's own keys of [sink_groups.NAME];
  /// `Impl::create(config, ProcessorContext&)` builds it.
  template <class Config, class Impl>
  void add_processor(std::string name, ProcessorTraits traits = {}) {
    processors_[std::move(name)] =
        make_entry<Processor, ProcessorContext, ProcessorTraits, Config, Impl>(traits);
  }

  template <class T, class Ctx, class Traits = NoTraits>
  struct Factory {
    std::function<std::optional<std::any>(const ConfigNode&, ConfigErrors&)> parse;
    std::function<Result<std::unique_ptr<T>>(const std::any&, Ctx&)> create;
    Traits traits;
  };
  using SourceFactory = Factory<Source, SourceContext>;
  using ChannelFactory = Factory<Channel, ChannelContext, ChannelTraits>;
  using SinkFactory = Factory<Sink, SinkContext>;
  using ProcessorFactory = Factory<Processor, ProcessorContext, ProcessorTraits>;

  const SourceFactory* source(std::string_view type) const { return find(sources_, type); }
  const ChannelFactory* channel(std::string_view type) const { return find(channels_, type); }
  const SinkFactory* sink(std::string_view type) const { return find(sinks_, type); }
  const ProcessorFactory* processor(std::string_view type) const { return find(processors_, type); }
  std::vector<std::string_view> source_types() const { return names(sources_); }
  std::vector<std::string_view> channel_types() const { return names(channels_); }
  std::vector<std::string_view> sink_types() const { return names(sinks_); }
  std::vector<std::string_view> processor_types() const { return names(processors_); }

 private:
  template <class T, class Ctx, class Traits, class Config, class Impl>
  static Factory<T, Ctx, Traits> make_entry(Traits traits) {
    Factory<T, Ctx, Traits> f;
    f.parse = [](const ConfigNode& node, ConfigErrors& errors) -> std::optional<std::any> {
      auto c = Config::parse(node, errors);
      if (!c) return std::nullopt;
      return std::any(std::move(*c));
    };
    f.create = [](const std::any& config, Ctx& ctx) -> Result<std::unique_ptr<T>> {
      auto r = Impl::create(std::any_cast<const Config&>(config), ctx);
      if (!r) return r.error();
      return std::unique_ptr<T>(std::move(*r));
    };
    f.traits = traits;
    return f;
  }
  template <class M>
  static const typename M::mapped_type* find(const M& m, std::string_view type) {
    auto it = m.find(type);
    return it == m.end() ? nullptr : &it->second;
  }
  template <class M>
  static std::vector<std::string_view> names(const M& m) {
    std::vector<std::string_view> out;
    for (const auto& [k, v] : m) out.emplace_back(k);
    return out;
  }

  std::map<std::string, SourceFactory, std::less<>> sources_;
  std::map<std::string, ChannelFactory, std::less<>> channels_;
  std::map<std::string, SinkFactory, std::less<>> sinks_;
  std::map<std::string, ProcessorFactory, std::less<>> processors_;
};

/// The one list of everything sluice can build.
void register_builtin_components(Registry& r);

}  // namespace sluice
