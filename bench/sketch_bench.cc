// sql/sketch: add throughput of DistinctCounter (exact set and HLL) and QuantileSketch (DDSketch),
// the measured error of both, the encoded size of COUNT(DISTINCT) states, and the rate at which
// encoded states are decoded and merged (what a collector does per partial row).
// Usage: sluice_sketch_bench [N (default 20000000)]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "sql/sketch/distinct_counter.h"
#include "sql/sketch/hash.h"
#include "sql/sketch/quantile_sketch.h"

using namespace sluice::sql::sketch;

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double uniform01(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
}

template <class F>
double timed(F&& f) {
  const double start = cpu_seconds();
  f();
  return cpu_seconds() - start;
}

volatile std::uint64_t sink;  // keeps results alive

void add_throughput(std::size_t n) {
  std::printf("\nadd throughput, %zu values per run (CPU time)\n", n);
  std::printf("%-52s%10s%16s\n", "run", "cpu s", "adds/s");
  std::vector<std::uint64_t> hashes(std::max<std::size_t>(n, 10'000));  // the exact run uses 10k
  for (std::size_t i = 0; i < hashes.size(); ++i)
    hashes[i] = hash_int(static_cast<std::int64_t>(i));
  auto report = [&](const char* name, double s) {
    std::printf("%-52s%10.3f%16.0f\n", name, s, static_cast<double>(n) / s);
  };
  report("hash_int (xxh64 of 8 bytes)", timed([&] {
           std::uint64_t acc = 0;
           for (std::size_t i = 0; i < n; ++i) acc += hash_int(static_cast<std::int64_t>(i));
           sink = acc;
         }));
  report("hash_string (xxh64 of 16 bytes)", timed([&] {
           char buf[17] = "user-0000000000";
           std::uint64_t acc = 0;
           for (std::size_t i = 0; i < n; ++i) {
             buf[15] = static_cast<char>('a' + i % 26);
             acc += hash_string(std::string_view(buf, 16));
           }
           sink = acc;
         }));
  {
    DistinctCounter c(10'000);
    for (std::size_t i = 0; i < 10'000; ++i) c.add(hashes[i]);
    report("DistinctCounter exact, 10k distinct, repeats", timed([&] {
             for (std::size_t i = 0; i < n; ++i) c.add(hashes[i % 10'000]);
           }));
    sink = c.estimate();
  }
  {
    DistinctCounter c(1000);
    report("DistinctCounter limit 1000 -> HLL p=14, all new", timed([&] {
             for (std::size_t i = 0; i < n; ++i) c.add(hashes[i]);
           }));
    sink = c.estimate();
  }
  {
    QuantileSketch s;
    std::mt19937_64 rng(1);
    std::vector<double> values(n);
    for (double& v : values) v = -50.0 * std::log(uniform01(rng));
    report("QuantileSketch alpha=1%, exponential values", timed([&] {
             for (double v : values) s.add(v);
           }));
    sink = s.count();
  }
}

void hll_error() {
  std::printf("\nHLL p=14 error (sigma = 1.04/sqrt(16384) = 0.8125%%), 20 seeds per cardinality\n");
  std::printf("%-12s%14s%14s%12s%12s\n", "n", "mean |err| %", "max |err| %", "<=1 sigma",
              "<=2 sigma");
  const double sigma = 1.04 / std::sqrt(16384.0);
  int runs = 0, in1 = 0, in2 = 0, in3 = 0;
  for (std::uint64_t n = 10; n <= 10'000'000; n *= 10) {
    const int seeds = n >= 10'000'000 ? 5 : 20;
    double sum = 0, worst = 0;
    int c1 = 0, c2 = 0;
    for (int seed = 0; seed < seeds; ++seed) {
      DistinctCounter c(0);
      const std::uint64_t base = static_cast<std::uint64_t>(seed + 100) << 40;
      for (std::uint64_t i = 0; i < n; ++i) c.add(hash_int(static_cast<std::int64_t>(base + i)));
      const double e = std::abs((static_cast<double>(c.estimate()) - n) / n);
      sum += e;
      worst = std::max(worst, e);
      c1 += e <= sigma;
      c2 += e <= 2 * sigma;
      in3 += e <= 3 * sigma;
    }
    runs += seeds;
    in1 += c1;
    in2 += c2;
    std::printf("%-12llu%14.3f%14.3f%9d/%-2d%9d/%-2d\n", static_cast<unsigned long long>(n),
                100 * sum / seeds, 100 * worst, c1, seeds, c2, seeds);
  }
  std::printf("all: %d runs, %.0f%% within 1 sigma, %.0f%% within 2, %.0f%% within 3\n", runs,
              100.0 * in1 / runs, 100.0 * in2 / runs, 100.0 * in3 / runs);
}

void quantile_error() {
  std::printf("\nDDSketch alpha=1%%: max relative error over 5 seeds, 1M values each\n");
  const double qs[] = {0.01, 0.5, 0.9, 0.99, 0.999};
  std::printf("%-14s", "data");
  for (double q : qs) std::printf("%10g", q);
  std::printf("%12s\n", "buckets");
  struct Dist {
    const char* name;
    double (*draw)(std::mt19937_64&);
  };
  const Dist dists[] = {
      {"uniform", [](std::mt19937_64& r) { return 1000.0 * uniform01(r); }},
      {"exponential", [](std::mt19937_64& r) { return -50.0 * std::log(uniform01(r)); }},
      {"pareto 1.1", [](std::mt19937_64& r) { return 1.0 / std::pow(uniform01(r), 1 / 1.1); }},
  };
  for (const Dist& d : dists) {
    double worst[5] = {};
    std::size_t buckets = 0;
    for (std::uint64_t seed = 1; seed <= 5; ++seed) {
      std::mt19937_64 rng(seed);
      std::vector<double> values(1'000'000);
      QuantileSketch s;
      for (double& v : values) s.add(v = d.draw(rng));
      std::sort(values.begin(), values.end());
      for (int k = 0; k < 5; ++k) {
        const double truth = values[static_cast<std::size_t>(qs[k] * (values.size() - 1))];
        worst[k] = std::max(worst[k], std::abs(s.quantile(qs[k]) - truth) / truth);
      }
      buckets = std::max(buckets, s.positive().span());
    }
    std::printf("%-14s", d.name);
    for (double w : worst) std::printf("%9.3f%%", 100 * w);
    std::printf("%12zu\n", buckets);
  }
}

void encoded_sizes_and_merge() {
  std::printf("\nCOUNT(DISTINCT) state: encoded bytes, and decode + merge rate of such states\n");
  std::printf("%-12s%-12s%14s%18s\n", "distinct", "limit", "bytes", "decode+merge/s");
  for (std::size_t distinct : {10, 10'000, 1'000'000}) {
    for (std::size_t limit : {std::size_t{1000}, std::size_t{100'000}}) {
      DistinctCounter c(limit);
      for (std::size_t i = 0; i < distinct; ++i) c.add(hash_int(static_cast<std::int64_t>(i)));
      std::string bytes;
      c.encode(bytes);
      const int rounds = bytes.size() > 50'000 ? 200 : 20'000;
      DistinctCounter into(limit);
      const double s = timed([&] {
        for (int r = 0; r < rounds; ++r) {
          std::string_view in = bytes;
          auto d = DistinctCounter::decode(in);
          if (!d) std::abort();
          into.merge(*d);
        }
      });
      std::printf("%-12zu%-12zu%14zu%18.0f\n", distinct, limit, bytes.size(), rounds / s);
    }
  }
  QuantileSketch q;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100'000; ++i) q.add(-50.0 * std::log(uniform01(rng)));
  std::string bytes;
  q.encode(bytes);
  QuantileSketch into;
  const int rounds = 20'000;
  const double s = timed([&] {
    for (int r = 0; r < rounds; ++r) {
      std::string_view in = bytes;
      auto d = QuantileSketch::decode(in);
      if (!d) std::abort();
      into.merge(*d);
    }
  });
  std::printf(
      "APPROX_PERCENTILE state (100k exponential values, %zu buckets): %zu bytes, "
      "%.0f decode+merge/s\n",
      q.positive().span(), bytes.size(), rounds / s);
}

void footprint() {
  std::printf("\nstate memory (memory_bytes(): object + heap, before allocator overhead)\n");
  std::printf("%-10s%22s%30s\n", "values", "DistinctCounter(1024)", "QuantileSketch (exponential)");
  std::mt19937_64 rng(5);
  for (std::size_t n : {0, 1, 2, 3, 10, 100, 1024, 1025, 100'000}) {
    DistinctCounter c(1024);
    QuantileSketch q;
    for (std::size_t i = 0; i < n; ++i) {
      c.add(hash_int(static_cast<std::int64_t>(i)));
      q.add(-50.0 * std::log(uniform01(rng)));
    }
    std::printf("%-10zu%22zu%30zu\n", n, c.memory_bytes(), q.memory_bytes());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20'000'000;
  add_throughput(n);
  hll_error();
  quantile_error();
  encoded_sizes_and_merge();
  footprint();
  return 0;
}
