// The listeners and helpers both memory channel test files use (a put that returns its result,
// take into bodies, metrics of the channel).
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "channels/memory/memory_channel.h"
#include "lib/core/source_output.h"
#include "tests/support/test_support.h"

namespace sluice::channels::testing {

struct Fixture final : PutListener, SpaceListener, DataListener, CommitListener, SafeListener {
  Loop loop;
  MetricsRegistry metrics;
  ComponentContext ctx{loop, metrics, "buf", "memory", "/tmp"};
  std::vector<Status> put_results;
  std::vector<std::uint64_t> safe;
  int space_calls = 0, data_calls = 0, commits = 0;

  void on_put_done(std::uint64_t, Status st) noexcept override {
    put_results.push_back(std::move(st));
  }
  void on_space() noexcept override { ++space_calls; }
  void on_data() noexcept override { ++data_calls; }
  void on_committed(std::uint64_t, Status st) noexcept override {
    commits += st.ok() ? 1 : 1000;  // no Catch assertion here: it allocates
  }
  void on_safe_in_channel(std::uint64_t seq) noexcept override { safe.push_back(seq); }

  Status put(MemoryChannel& ch, Batch& b, std::uint64_t seq) {
    ch.put(b, SourceCheckpoint{this, seq, {}, {}}, *this);
    REQUIRE(!put_results.empty());
    return put_results.back();
  }
  Status put(MemoryChannel& ch, Batch&& b, std::uint64_t seq) { return put(ch, b, seq); }
  std::vector<std::string> take_bodies(MemoryChannel& ch, CursorId cursor, std::uint32_t n,
                                       Lease& lease) {
    Batch out;
    auto l = ch.take(cursor, out, {n, 1 << 20});
    REQUIRE(l.has_value());
    lease = std::move(*l);
    std::vector<std::string> bodies;
    for (std::size_t i = 0; i < out.size(); ++i) bodies.emplace_back(out[i].body());
    return bodies;
  }
  std::vector<std::string> bodies(const Batch& b) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < b.size(); ++i) out.emplace_back(b[i].body());
    return out;
  }
  double metric(const char* name) {
    double v = 0;
    REQUIRE(metrics.find(name, ctx.labels(), v));
    return v;
  }
};

}  // namespace sluice::channels::testing
