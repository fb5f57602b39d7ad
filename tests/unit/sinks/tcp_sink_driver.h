#pragma once

// Drives a sink as a sink group would, for sinks that stream to a test peer: every batch is
// delivered, and a batch answered Retry is delivered again (with the rest of its round, in order)
// until every batch was answered Ok or Reject: at-least-once, as the group's rollback gives.

#include <toml++/toml.h>

#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/sink.h"
#include "tests/support/test_support.h"

namespace sluice::test {

struct Driver final : DeliveryListener {
  Loop& loop;
  Sink& sink;
  std::deque<Batch> batches;
  std::vector<int> state;  // per batch: 0 waiting, 1 in flight, 2 done
  std::map<std::uint64_t, DeliveryResult> last;
  std::size_t retries = 0, answers = 0;
  Driver(Loop& l, Sink& s) : loop(l), sink(s) {}

  void add(Batch b) {
    batches.push_back(std::move(b));
    state.push_back(0);
  }
  void on_delivered(DeliveryId id, const DeliveryResult& r) noexcept override {
    ++answers;
    const std::size_t i = id.value - 1;
    last[id.value] = r;
    if (r.is_retry()) {
      ++retries;
      state[i] = 0;
    } else {
      state[i] = 2;
    }
  }
  /// Delivers every waiting batch while none is in flight, until all are done.
  bool run(std::chrono::milliseconds timeout, std::size_t max_in_flight = 4) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      std::size_t flying = 0, done = 0;
      for (int s : state) {
        flying += s == 1;
        done += s == 2;
      }
      if (done == state.size()) return true;
      if (flying == 0) {
        for (std::size_t i = 0; i < state.size() && flying < max_in_flight; ++i) {
          if (state[i] != 0) continue;
          state[i] = 1;
          ++flying;
          sink.deliver(batches[i], DeliveryId{i + 1}, *this);
        }
      }
      loop.run_once();
      if (flying > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
};

/// Parses `[sinks.s]` of `text` with Config::parse; the errors' text goes to `errors`.
template <class Config>
std::optional<Config> parse_sink(std::string_view text, std::vector<std::string>& errors) {
  static toml::table doc;  // the node refers into it
  doc = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(*doc["sinks"]["s"].as_table(), "sinks.s", "inline.toml");
  node.mark_known("type");
  ConfigErrors errs;
  auto c = Config::parse(node, errs);
  for (const auto& e : errs) errors.push_back(e.str());
  return c;
}

}  // namespace sluice::test
