#pragma once

#include <any>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/channel.h"
#include "lib/core/context.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/core/source.h"

namespace sluice {

/// Everything sluice can build, by `type`. Filled by register_builtin_components() alone.
class Registry {
 public:
  template <class Config, class Impl>
  void add_source(std::string name) {
    sources_[std::move(name)] = make_entry<Source, SourceContext, Config, Impl>();
  }
  template <class Config, class Impl>
  void add_channel(std::string name) {
    channels_[std::move(name)] = make_entry<Channel, ChannelContext, Config, Impl>();
  }
  template <class Config, class Impl>
  void add_sink(std::string name) {
    sinks_[std::move(name)] = make_entry<Sink, SinkContext, Config, Impl>();
  }

  template <class T, class Ctx>
  struct Factory {
    std::function<std::optional<std::any>(const ConfigNode&, ConfigErrors&)> parse;
    std::function<Result<std::unique_ptr<T>>(const std::any&, Ctx&)> create;
  };
  using SourceFactory = Factory<Source, SourceContext>;
  using ChannelFactory = Factory<Channel, ChannelContext>;
  using SinkFactory = Factory<Sink, SinkContext>;

  const SourceFactory* source(std::string_view type) const { return find(sources_, type); }
  const ChannelFactory* channel(std::string_view type) const { return find(channels_, type); }
  const SinkFactory* sink(std::string_view type) const { return find(sinks_, type); }
  std::vector<std::string_view> source_types() const { return names(sources_); }
  std::vector<std::string_view> channel_types() const { return names(channels_); }
  std::vector<std::string_view> sink_types() const { return names(sinks_); }

 private:
  template <class T, class Ctx, class Config, class Impl>
  static Factory<T, Ctx> make_entry() {
    Factory<T, Ctx> f;
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
};

/// The one list of everything sluice can build.
void register_builtin_components(Registry& r);

}  // namespace sluice
