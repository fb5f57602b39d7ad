#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"

namespace sluice {

using StopCallback = std::function<void()>;

struct DeliveryId {
  std::uint64_t value = 0;
  friend bool operator==(DeliveryId, DeliveryId) = default;
};

enum class Outcome : std::uint8_t { ok, retry, reject };

/// A sink's answer for one batch. Ok carries nothing and does not allocate.
struct DeliveryResult {
  Outcome outcome = Outcome::ok;
  std::string reason;
  /// With reject: indices of the rejected events in the batch; empty means all of them. The
  /// other events of the batch count as delivered.
  std::vector<std::uint32_t> rejected;

  static DeliveryResult ok() { return {}; }
  static DeliveryResult retry(std::string why) { return {Outcome::retry, std::move(why), {}}; }
  static DeliveryResult reject(std::string why, std::vector<std::uint32_t> which = {}) {
    return {Outcome::reject, std::move(why), std::move(which)};
  }
  bool is_ok() const noexcept { return outcome == Outcome::ok; }
  bool is_retry() const noexcept { return outcome == Outcome::retry; }
  bool is_reject() const noexcept { return outcome == Outcome::reject; }
};

class DeliveryListener {
 public:
  virtual void on_delivered(DeliveryId id, const DeliveryResult& result) noexcept = 0;

 protected:
  ~DeliveryListener() = default;
};

class ProbeListener {
 public:
  /// The result of Sink::probe(): ok when the sink's destination answered.
  virtual void on_probed(class Sink& sink, bool healthy) noexcept = 0;

 protected:
  ~ProbeListener() = default;
};

class Sink {
 public:
  virtual ~Sink() = default;
  /// Starts delivering `batch`, which stays valid until `done.on_delivered(id, result)`. That
  /// callback runs exactly once, on the loop thread, and never from inside deliver().
  virtual void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) = 0;
  /// Runs `on_stopped` once every delivery already started has been answered, and once a probe
  /// in flight has called its listener (the sink may cancel it: it then reports unhealthy). After
  /// `on_stopped`, and after the sink is destroyed, no listener of it is ever called.
  virtual void stop(StopCallback on_stopped) = 0;
  /// The group gave up on delivery `id` (timeout or failover) and will ignore its answer: drop
  /// what is still queued for it if the sink can, so that it answers soon. Optional.
  virtual void cancel(DeliveryId id) { (void)id; }
  /// Checks the destination without sending events (Kafka metadata, TCP connect, HTTP GET) and
  /// calls `listener.on_probed()` once, later, on the loop thread. Returns false if the sink has
  /// no probe (or is stopping); it is then tried again with the next batch. A sink that knows its
  /// destination is down answers deliveries Retry at once and lets the probe say when it is back.
  virtual bool probe(ProbeListener& listener) {
    (void)listener;
    return false;
  }
};

}  // namespace sluice
