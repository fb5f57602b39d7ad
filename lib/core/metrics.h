#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

/// Counters are resolved once, in create(), and bumped on the hot path without lookups.
class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(std::int64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

/// A histogram with fixed bucket bounds in seconds (delivery latency).
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
  void observe(double seconds) noexcept;
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept;
  std::uint64_t bucket(std::size_t i) const noexcept {
    return buckets_[i].load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size()> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

using Labels = std::vector<std::pair<std::string, std::string>>;
/// `labels` plus one more (e.g. a component's labels and a status).
inline Labels with_label(Labels labels, std::string key, std::string value) {
  labels.emplace_back(std::move(key), std::move(value));
  return labels;
}

/// All series of the agent, rendered in the Prometheus text format. Registration takes a lock and
/// allocates; it happens in create(), never per event. Returned references live as long as the
/// registry.
class MetricsRegistry {
 public:
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels);
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels);
  Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels);
  /// The Prometheus text exposition (version 0.0.4).
  std::string render() const;
  /// The value of one counter or gauge series, for tests and the status API; nullopt if absent.
  bool find(std::string_view name, const Labels& labels, double& out) const;
  /// Takes every series whose labels include all of `match` (a component's {component, type})
  /// out of render() and find(): a component removed by a reload leaves /metrics. Returns how
  /// many. The series' storage stays (whoever resolved it may still bump it harmlessly), and
  /// registering the same name and labels again brings the series back with its value, so a
  /// component built again by a reload continues its counters rather than restarting at 0.
  std::size_t remove(const Labels& match);

 private:
  enum class Kind { counter, gauge, histogram };
  struct Series {
    std::string labels;  // rendered: component="x",type="y"
    Labels pairs;        // the same, as given
    bool removed = false;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    std::string help;
    Kind kind;
    std::deque<Series> series;
  };
  Series& series(std::string_view name, std::string_view help, Kind kind, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

/// Renders labels as Prometheus does: key="value" pairs joined by commas, values escaped.
std::string render_labels(const Labels& labels);

}  // namespace sluice
