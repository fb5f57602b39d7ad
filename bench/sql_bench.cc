// The SQL window operator alone and with JSON parsing in front, in events per CPU-second, on
// generated game events (scenario 2's shape), single thread. Usage: sluice_sql_bench [EVENTS]
// (default 2,000,000). Runs:
//   parse only                      JSON lines -> parsed fields in a Batch (lib/parse json)
//   TUMBLE 5s, 2 keys, COUNT + AVG  the operator over parsed batches (15 groups per window)
//   + COUNT(DISTINCT) + percentile  the issue's benchmark query, operator only
//   HOP, SESSION                    the other windows, operator only
//   parse + the benchmark query     both, as an agent pipeline does them
// `sluice_sql_bench wide [EVENTS] [MAX_STATE_MIB]` runs GROUP BY game_id, uid with 100,000 keys per
// window alone (parse included, inputs generated batch by batch) and reports the state size and
// peak RSS; `sluice_sql_bench issue ...` the same with issue 13's query and input (GROUP BY
// game_id, event with COUNT(*), COUNT(DISTINCT uid), AVG(x), APPROX_PERCENTILE(x, 0.99)).
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "lib/parse/formats.h"
#include "sql/engine.h"

using namespace sluice;

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

constexpr std::size_t kBatch = 1024;

/// NDJSON lines like game_events.ndjson: 10,000 events per second of event time, up to 2 s out
/// of order; `users` distinct uids.
std::vector<std::string> make_lines(std::size_t n, std::uint32_t users) {
  static const char* kEvents[] = {"login", "logout", "chat", "levelup", "purchase"};
  std::mt19937_64 rng(42);
  std::vector<std::string> lines;
  lines.reserve(n);
  char buf[256];
  const std::int64_t base_ms = 1750797000000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t ms =
        base_ms + static_cast<std::int64_t>(i / 10) - static_cast<std::int64_t>(rng() % 2000);
    const int len = std::snprintf(
        buf, sizeof buf,
        R"({"create_time":%lld,"event":"%s","game_id":"g%u","role":"warrior","server_id":"s%u","uid":%llu,"latency":%u})",
        static_cast<long long>(ms), kEvents[rng() % 5], static_cast<unsigned>(rng() % 3 + 1),
        static_cast<unsigned>(rng() % 50 + 1),
        static_cast<unsigned long long>(148950000 + rng() % users),
        static_cast<unsigned>(rng() % 500));
    lines.emplace_back(buf, static_cast<std::size_t>(len));
  }
  return lines;
}

void parse_into(parse::JsonFormat& json, parse::Draft& d, const std::vector<std::string>& lines,
                std::size_t from, std::size_t to, Batch& out) {
  out.clear();
  for (std::size_t i = from; i < to; ++i) {
    d.reset(lines[i], 0, i);
    if (json.parse(lines[i], d) != parse::ParseError::none) std::abort();
    out.add(lines[i], 0, i);
    for (const Field& f : d.fields) out.add_field(f.key, f.text, f.type);
  }
}

struct Outcome {
  double cpu_s = 0;
  std::size_t rows = 0;
  std::size_t peak_state = 0;
};

Outcome run_query(std::string_view sql, const std::vector<Batch>* parsed,
                  const std::vector<std::string>* lines, bool only_referenced = false) {
  auto q = sql::compile(sql);
  if (!q) {
    std::fprintf(stderr, "%s\n", q.error().message().c_str());
    std::exit(1);
  }
  sql::RunnerOptions o;
  o.time_source = sql::TimeSource::field;
  o.time_field = "create_time";
  o.watermark_delay_ns = 5'000'000'000;
  o.max_state_bytes = std::size_t{1} << 31;
  auto r = sql::WindowRunner::create(*q, o);
  if (!r) std::exit(1);
  parse::JsonOptions jo;
  if (only_referenced) {  // what an agent pipeline asks of its source: just the fields it reads
    for (const std::string& f : q->referenced_fields()) jo.fields.push_back(f);
    jo.fields.push_back("create_time");
  }
  parse::JsonFormat json(jo);
  parse::Draft d;
  Batch in, out;
  Outcome res;
  const double t0 = cpu_seconds();
  const std::size_t n = parsed ? parsed->size() : (lines->size() + kBatch - 1) / kBatch;
  for (std::size_t b = 0; b < n; ++b) {
    const Batch* batch = nullptr;
    if (parsed) {
      batch = &(*parsed)[b];
    } else {
      parse_into(json, d, *lines, b * kBatch, std::min(lines->size(), (b + 1) * kBatch), in);
      batch = &in;
    }
    (*r)->on_batch(*batch);
    out.clear();
    res.rows += (*r)->emit_closed(out);
    res.peak_state = std::max(res.peak_state, (*r)->state_bytes());
  }
  out.clear();
  res.rows += (*r)->flush(out);
  res.cpu_s = cpu_seconds() - t0;
  return res;
}

}  // namespace

/// 100k distinct keys in every 5 s window: lines generated and parsed batch by batch (nothing
/// held but the window state), so the peak RSS is the operator's. `issue`: the query and input of
/// bench/sql_pipeline_bench.py's "100k keys" run (issue 13), else GROUP BY game_id, uid.
int run_wide(std::size_t n, bool issue, std::size_t max_state) {
  auto q = sql::compile(
      issue ? "SELECT window_start, game_id, event, COUNT(*) AS n, COUNT(DISTINCT uid) AS users, "
              "AVG(x) AS avg_x, APPROX_PERCENTILE(x, 0.99) AS p99 FROM src "
              "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event"
            : "SELECT game_id, uid, COUNT(*) AS events, AVG(latency) AS avg_latency FROM src "
              "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, uid");
  sql::RunnerOptions o;
  o.time_source = sql::TimeSource::field;
  o.time_field = "create_time";
  o.watermark_delay_ns = 5'000'000'000;
  o.max_state_bytes = max_state;
  auto r = sql::WindowRunner::create(*q, o);
  parse::JsonFormat json(parse::JsonOptions{});
  parse::Draft d;
  Batch in, out;
  std::vector<std::string> lines(kBatch);
  std::size_t rows = 0, peak_state = 0, peak_open = 0, checkpoint_bytes = 0;
  double checkpoint_s = 0;
  char buf[256];
  const double t0 = cpu_seconds();
  double gen_s = 0;
  // 40 events per ms: 200,000 events and exactly 100,000 distinct keys per 5 s window.
  for (std::size_t b = 0; b * kBatch < n; ++b) {
    const double g0 = cpu_seconds();
    for (std::size_t k = 0; k < kBatch; ++k) {
      const std::size_t i = b * kBatch + k;
      const long long ms = 1750797000000 + static_cast<long long>(i / 40);
      const int len =
          issue
              ? std::snprintf(
                    buf, sizeof buf,
                    R"({"create_time":%lld,"event":"e%zu","game_id":"g%zu","role":"mage","server_id":"s%zu","uid":%zu,"x":%.1f})",
                    ms, (i / 1000) % 100, i % 1000, 40 + i % 10, 148950000 + (i * 7919) % 100000,
                    static_cast<double>((i * 37) % 1000) / 10 + 0.5)
              : std::snprintf(
                    buf, sizeof buf,
                    R"({"create_time":%lld,"event":"chat","game_id":"g1","uid":%llu,"latency":%u})",
                    ms, static_cast<unsigned long long>(148950000 + i % 100000),
                    static_cast<unsigned>(i % 500));
      lines[k].assign(buf, static_cast<std::size_t>(len));
    }
    gen_s += cpu_seconds() - g0;
    parse_into(json, d, lines, 0, kBatch, in);
    (*r)->on_batch(in);
    do {  // rows leave in batches of at most 4096, as an agent pipeline hands them on
      out.clear();
      rows += (*r)->emit_closed(out, 4096);
    } while ((*r)->has_pending_rows());
    peak_state = std::max(peak_state, (*r)->state_bytes());
    peak_open = std::max(peak_open, (*r)->open_windows());
    if (b == (n / kBatch) * 3 / 4) {  // two windows open and full: what a checkpoint writes
      const double c0 = cpu_seconds();
      std::string state;
      (*r)->serialize_state(state);
      checkpoint_bytes = state.size();
      checkpoint_s = cpu_seconds() - c0;
      gen_s += checkpoint_s;  // not part of the event rate
    }
  }
  out.clear();
  rows += (*r)->flush(out, 4096);
  while ((*r)->has_pending_rows()) {
    out.clear();
    rows += (*r)->emit_closed(out, 4096);
  }
  const double s = cpu_seconds() - t0 - gen_s;
  std::printf("GROUP BY TUMBLE 5s, %s: 100,000 keys per window, %zu events\n",
              issue ? "game_id, event (issue 13 query)" : "game_id, uid", n);
  std::printf(
      "  parse + operator: %.3f cpu s, %.0f events/cpu-s, %zu rows, %llu windows closed early\n", s,
      static_cast<double>(n) / s, rows,
      static_cast<unsigned long long>((*r)->stats().windows_closed_early));
  std::printf("  peak state %.1f MB with up to %zu windows open; peak RSS %.1f MB\n",
              static_cast<double>(peak_state) / 1048576.0, peak_open,
              static_cast<double>(peak_rss_kb()) / 1024.0);
  std::printf("  one checkpoint (serialize_state) at 3/4 of the run: %.1f MB in %.3f cpu s\n",
              static_cast<double>(checkpoint_bytes) / 1048576.0, checkpoint_s);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && (std::string_view(argv[1]) == "wide" || std::string_view(argv[1]) == "issue")) {
    // [EVENTS] [MAX_STATE_MIB]
    const std::size_t mib = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 2048;
    return run_wide(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 4'000'000,
                    std::string_view(argv[1]) == "issue", mib << 20);
  }
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2'000'000;
  std::printf("sluice_sql_bench: %zu events, batches of %zu, one thread\n", n, kBatch);
  std::printf("%-44s%10s%16s%10s%14s\n", "run", "cpu s", "events/cpu-s", "rows", "peak state");

  const std::vector<std::string> lines = make_lines(n, 20000);
  std::vector<Batch> parsed((n + kBatch - 1) / kBatch);
  {
    parse::JsonFormat json(parse::JsonOptions{});
    parse::Draft d;
    const double t0 = cpu_seconds();
    for (std::size_t b = 0; b < parsed.size(); ++b) {
      parse_into(json, d, lines, b * kBatch, std::min(n, (b + 1) * kBatch), parsed[b]);
    }
    const double s = cpu_seconds() - t0;
    std::printf("%-44s%10.3f%16.0f%10s%14s\n", "parse only (json, 7 fields)", s,
                static_cast<double>(n) / s, "-", "-");
  }
  auto report = [&](const char* name, const Outcome& o) {
    std::printf("%-44s%10.3f%16.0f%10zu%13.1fM\n", name, o.cpu_s, static_cast<double>(n) / o.cpu_s,
                o.rows, static_cast<double>(o.peak_state) / 1048576.0);
  };
  constexpr std::string_view kSimple =
      "SELECT game_id, event, COUNT(*) AS events, AVG(latency) AS avg_latency FROM src "
      "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event";
  constexpr std::string_view kFull =
      "SELECT game_id, event, COUNT(*) AS events, COUNT(DISTINCT uid) AS players, "
      "AVG(latency) AS avg_latency, APPROX_PERCENTILE(latency, 0.99) AS p99 FROM src "
      "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event";
  report("TUMBLE 5s, 2 keys, COUNT + AVG", run_query(kSimple, &parsed, nullptr));
  report("+ COUNT(DISTINCT uid) + APPROX_PERCENTILE", run_query(kFull, &parsed, nullptr));
  report("HOP 10s/1min (6 windows per event)",
         run_query("SELECT server_id, COUNT(DISTINCT uid) AS active FROM src "
                   "GROUP BY HOP(INTERVAL '10' SECOND, INTERVAL '1' MINUTE), server_id",
                   &parsed, nullptr));
  report("SESSION 30s per uid, COUNT", run_query("SELECT uid, COUNT(*) AS events FROM src "
                                                 "GROUP BY SESSION(INTERVAL '30' SECOND), uid",
                                                 &parsed, nullptr));
  report("parse + the benchmark query", run_query(kFull, nullptr, &lines));
  report("parse (referenced fields only) + the query", run_query(kFull, nullptr, &lines, true));

  std::printf("peak RSS (inputs held in memory): %.1f MB\n",
              static_cast<double>(peak_rss_kb()) / 1024.0);
  return 0;
}
