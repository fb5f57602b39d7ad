// libFuzzer target: the first byte picks the state (even: DistinctCounter, odd: QuantileSketch),
// the rest is decoded. A decoded state must answer queries, merge with a fixed state, and encode
// back to bytes that decode to an equal state.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sql/sketch/distinct_counter.h"
#include "sql/sketch/quantile_sketch.h"

namespace {

template <class Sketch>
void check_round_trip(const Sketch& s) {
  std::string bytes;
  s.encode(bytes);
  std::string_view in = bytes;
  auto again = Sketch::decode(in);
  if (!again || !in.empty() || !(*again == s)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::sql::sketch;
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto c = DistinctCounter::decode(in);
    if (!c) return 0;
    (void)c->estimate();
    check_round_trip(*c);
    DistinctCounter other(100, 12);
    for (std::uint64_t h = 1; h < 200; ++h) other.add(h * 0x9E3779B97F4A7C15ULL);
    DistinctCounter merged = *c;
    merged.merge(other);
    (void)merged.estimate();
    check_round_trip(merged);
    other.merge(*c);
    if (!(other == merged)) std::abort();  // merge is commutative
  } else {
    auto s = QuantileSketch::decode(in);
    if (!s) return 0;
    for (double q : {0.0, 0.01, 0.5, 0.99, 1.0}) (void)s->quantile(q);
    check_round_trip(*s);
    QuantileSketch other(0.02, 64);
    for (int i = -50; i < 50; ++i) other.add(i * 1.5);
    QuantileSketch merged = *s;
    merged.merge(other);
    (void)merged.quantile(0.5);
    if (merged.count() != s->count() + other.count()) std::abort();
    other.merge(*s);  // the other way: s's buckets re-added at other's accuracy
    (void)other.quantile(0.99);
  }
  return 0;
}
