#include "lib/core/metrics.h"

#include <fmt/format.h>

#include <algorithm>

#include "lib/core/assert.h"

namespace sluice {

void Histogram::observe(double seconds) noexcept {
  if (seconds < 0) seconds = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

double Histogram::sum() const noexcept {
  return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
}

std::string render_labels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k;
    out += "=\"";
    for (char c : v) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '"') {
        out += "\\\"";
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    out += '"';
  }
  return out;
}

MetricsRegistry::Series& MetricsRegistry::series(std::string_view name, std::string_view help,
                                                 Kind kind, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{std::string(help), kind, {}}).first;
  }
  Family& f = it->second;
  SLUICE_ASSERT(f.kind == kind);
  std::string rendered = render_labels(labels);
  for (auto& s : f.series) {
    if (s.labels != rendered) continue;
    s.removed = false;
    return s;
  }
  Series& s = f.series.emplace_back();
  s.labels = std::move(rendered);
  s.pairs = labels;
  switch (kind) {
    case Kind::counter:
      s.counter = std::make_unique<Counter>();
      break;
    case Kind::gauge:
      s.gauge = std::make_unique<Gauge>();
      break;
    case Kind::histogram:
      s.histogram = std::make_unique<Histogram>();
      break;
  }
  return s;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const Labels& labels) {
  return *series(name, help, Kind::counter, labels).counter;
}
Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, Kind::gauge, labels).gauge;
}
Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      const Labels& labels) {
  return *series(name, help, Kind::histogram, labels).histogram;
}

bool MetricsRegistry::find(std::string_view name, const Labels& labels, double& out) const {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return false;
  const std::string rendered = render_labels(labels);
  for (const auto& s : it->second.series) {
    if (s.labels != rendered || s.removed) continue;
    if (s.counter) out = static_cast<double>(s.counter->value());
    if (s.gauge) out = static_cast<double>(s.gauge->value());
    if (s.histogram) out = static_cast<double>(s.histogram->count());
    return true;
  }
  return false;
}

std::size_t MetricsRegistry::remove(const Labels& match) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (auto& [name, f] : families_) {
    for (auto& s : f.series) {
      if (s.removed) continue;
      bool all = true;
      for (const auto& m : match) {
        all = all && std::find(s.pairs.begin(), s.pairs.end(), m) != s.pairs.end();
      }
      if (!all) continue;
      s.removed = true;
      ++n;
    }
  }
  return n;
}

namespace {
std::string with_labels(std::string_view name, std::string_view labels,
                        std::string_view extra = {}) {
  std::string out(name);
  if (labels.empty() && extra.empty()) return out;
  out += '{';
  out += labels;
  if (!labels.empty() && !extra.empty()) out += ',';
  out += extra;
  out += '}';
  return out;
}
}  // namespace

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(4096);
  for (const auto& [name, f] : families_) {
    // A family whose every series was removed is not shown at all.
    if (std::all_of(f.series.begin(), f.series.end(), [](const Series& s) { return s.removed; }))
      continue;
    const char* type = f.kind == Kind::counter ? "counter"
                       : f.kind == Kind::gauge ? "gauge"
                                               : "histogram";
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, f.help, name,
                   type);
    for (const auto& s : f.series) {
      if (s.removed) continue;
      if (s.counter) {
        fmt::format_to(std::back_inserter(out), "{} {}\n", with_labels(name, s.labels),
                       s.counter->value());
      } else if (s.gauge) {
        fmt::format_to(std::back_inserter(out), "{} {}\n", with_labels(name, s.labels),
                       s.gauge->value());
      } else {
        const Histogram& h = *s.histogram;
        const std::string bucket = name + "_bucket";
        for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
          fmt::format_to(
              std::back_inserter(out), "{} {}\n",
              with_labels(bucket, s.labels, fmt::format("le=\"{}\"", Histogram::kBounds[i])),
              h.bucket(i));
        }
        fmt::format_to(std::back_inserter(out), "{} {}\n",
                       with_labels(bucket, s.labels, "le=\"+Inf\""), h.count());
        fmt::format_to(std::back_inserter(out), "{} {}\n", with_labels(name + "_sum", s.labels),
                       h.sum());
        fmt::format_to(std::back_inserter(out), "{} {}\n", with_labels(name + "_count", s.labels),
                       h.count());
      }
    }
  }
  return out;
}

}  // namespace sluice
