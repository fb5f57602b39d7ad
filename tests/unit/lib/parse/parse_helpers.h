#pragma once

#include <toml++/toml.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/parse/pipeline.h"

namespace sluice::parse::testing {

/// Parses `toml` as a source table; returns the config errors as one string ("" if none).
inline std::string pipeline_config(std::string_view toml, PipelineConfig& out) {
  static thread_local toml::table root;
  root = toml::parse(toml);
  ConfigNode node(root, "sources.s", "t.toml");
  ConfigErrors errors;
  PipelineConfig::parse(node, errors, out);
  std::string all;
  for (const auto& e : errors) all += e.str() + "\n";
  return all;
}

/// A pipeline built from a source table, with its own metrics registry.
struct PipelineFixture {
  Loop loop;
  MetricsRegistry metrics;
  ComponentContext ctx{loop, metrics, "s", "stdin", "/tmp"};
  std::unique_ptr<EventPipeline> pipeline;
  Batch out;

  explicit PipelineFixture(std::string_view toml) {
    PipelineConfig cfg;
    const std::string errors = pipeline_config(toml, cfg);
    INFO(errors);
    REQUIRE(errors.empty());
    auto p = EventPipeline::make(cfg, ctx);
    REQUIRE(p);
    pipeline = std::move(*p);
  }
  EventPipeline::Outcome feed(std::string_view text, std::int64_t arrival = 1'000'000'000) {
    Record r;
    r.text = text;
    return pipeline->process(r, arrival, out.size() + 1, out);
  }
  std::string field(std::size_t event, std::string_view key) const {
    const auto e = out[event];
    for (std::size_t i = 0; i < e.field_count(); ++i) {
      if (e.field(i).key == key) return std::string(e.field(i).text);
    }
    return "<absent>";
  }
  double counter(std::string_view name, Labels extra = {}) const {
    Labels l = ctx.labels();
    for (auto& x : extra) l.push_back(x);
    double v = -1;
    metrics.find(name, l, v);
    return v;
  }
};

}  // namespace sluice::parse::testing
