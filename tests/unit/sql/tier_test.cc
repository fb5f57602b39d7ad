// Tiered aggregation (issue 14): PARTIAL(...) states at the edge, MERGE(field) at the collector.
// The rows travel as JSON bodies here (re-parsed with the json format, as an Avro source with
// `format = "json"` does), so these tests cover the text form the states take on the wire.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>

#include "sql/partial_state.h"
#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

namespace {

constexpr const char* kWhole =
    "SELECT window_start, page, COUNT(*) AS pv, COUNT(DISTINCT uid) AS uv, SUM(v) AS s, "
    "AVG(v) AS a, MIN(v) AS mn, MAX(name) AS mx, FIRST_VALUE(name) AS fv, LAST_VALUE(v) AS lv, "
    "APPROX_PERCENTILE(v, 0.9) AS p90, COUNT(v) AS c FROM src "
    "GROUP BY TUMBLE(INTERVAL '10' SECOND), page";
constexpr const char* kEdge =
    "SELECT window_start, window_end, page, PARTIAL(COUNT(*)) AS pv, "
    "PARTIAL(COUNT(DISTINCT uid)) AS uv, PARTIAL(SUM(v)) AS s, PARTIAL(AVG(v)) AS a, "
    "PARTIAL(MIN(v)) AS mn, PARTIAL(MAX(name)) AS mx, PARTIAL(FIRST_VALUE(name)) AS fv, "
    "PARTIAL(LAST_VALUE(v)) AS lv, PARTIAL(APPROX_PERCENTILE(v, 0.9)) AS p90, "
    "PARTIAL(COUNT(v)) AS c FROM src GROUP BY TUMBLE(INTERVAL '10' SECOND), page";
constexpr const char* kCollector =
    "SELECT window_start, page, MERGE(pv) AS pv, MERGE(uv) AS uv, MERGE(s) AS s, MERGE(a) AS a, "
    "MERGE(mn) AS mn, MERGE(mx) AS mx, MERGE(fv) AS fv, MERGE(lv) AS lv, MERGE(p90) AS p90, "
    "MERGE(c) AS c FROM edge GROUP BY TUMBLE(window_start, INTERVAL '10' SECOND), page";

struct Ev {
  std::int64_t t;
  std::string page, name;
  long long uid, v;
};

void add(Batch& b, const Ev& e) {
  add_event(b, e.t, {s("page", e.page), i("uid", e.uid), i("v", e.v), s("name", e.name)});
}

std::vector<Ev> stream(std::mt19937_64& rng, std::size_t n, long long uids) {
  std::vector<Ev> out;
  std::int64_t t = 100 * kSec;
  for (std::size_t k = 0; k < n; ++k) {
    t += static_cast<std::int64_t>(rng() % 400'000'000) + 1;  // distinct, ascending times
    Ev e;
    e.t = t;
    e.page = "/p" + std::to_string(rng() % 4);
    e.uid = static_cast<long long>(rng() % static_cast<std::uint64_t>(uids));
    e.v = static_cast<long long>(rng() % 1000) - 100;
    e.name = "n" + std::to_string(rng() % 50);
    out.push_back(e);
  }
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

RunnerOptions with_agent(std::string name, std::size_t limit = 1024) {
  RunnerOptions o;
  o.agent_name = std::move(name);
  o.distinct_exact_limit = limit;
  // Rows come in any order here: no window closes before the final flush.
  o.watermark_delay_ns = 3600 * kSec;
  return o;
}

/// Runs `events` split over `agents` edge runners (event k to agent pick[k]) and returns the
/// edge rows (as NDJSON bodies), in the order given by `rng`.
std::vector<std::string> edge_rows(const CompiledQuery& edge, const std::vector<Ev>& events,
                                   const std::vector<int>& pick, int agents, std::mt19937_64& rng,
                                   std::size_t limit = 1024) {
  std::vector<std::string> lines;
  for (int a = 0; a < agents; ++a) {
    auto r = must_run(edge, with_agent("edge-" + std::to_string(a), limit));
    Batch in, out;
    for (std::size_t k = 0; k < events.size(); ++k) {
      if (pick[k] == a) add(in, events[k]);
    }
    r->on_batch(in);
    r->flush(out);
    for (std::size_t k = 0; k < out.size(); ++k) lines.emplace_back(out[k].body());
  }
  std::shuffle(lines.begin(), lines.end(), rng);
  return lines;
}

std::vector<std::string> collect(const CompiledQuery& collector,
                                 const std::vector<std::string>& lines, std::size_t limit = 1024,
                                 RunnerStats* stats = nullptr) {
  auto r = must_run(collector, with_agent("collector", limit));
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  Batch in, out;
  parse_ndjson(text, in);
  for (std::size_t k = 0; k < in.size(); ++k) {
    const EventOutcome o = r->on_event(in[k]);
    INFO(r->last_bad_state());
    REQUIRE(o == EventOutcome::accepted);
  }
  r->flush(out);
  if (stats != nullptr) *stats = r->stats();
  return rows_of(out);
}

std::vector<std::string> reference(const CompiledQuery& whole, const std::vector<Ev>& events,
                                   std::size_t limit = 1024) {
  auto r = must_run(whole, with_agent("", limit));
  Batch in, out;
  for (const Ev& e : events) add(in, e);
  r->on_batch(in);
  r->flush(out);
  return rows_of(out);
}

/// A PARTIAL(COUNT(*)) state of agent "web01" for [60 s, 120 s) with count 3, written by
/// encoding version 1. Never change these bytes: states written by older agents must decode.
//   53 50            "SP"
//   01               version 1
//   01               COUNT(*)
//   05 77 65 62 30 31  "web01"
//   80 e0 ba 84 bf 03  zigzag(60e9)
//   80 c0 f5 88 fe 06  zigzag(120e9)
//   99 e9 d8 51 37 db 46 ef  the edge's group key: xxh64 of no key bytes
//   03               count
constexpr const char* kGoldenCountV1 = "U1ABAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAw==";

}  // namespace

TEST_CASE("sql tier: merging PARTIAL rows of any split equals one runner over the whole stream",
          "[unit][sql][tier]") {
  const auto whole = must_compile(kWhole);
  const auto edge = must_compile(kEdge);
  const auto collector = must_compile(kCollector);
  std::mt19937_64 rng(20261201);
  for (int round = 0; round < 40; ++round) {
    const auto events = stream(rng, 1 + rng() % 300, 1 + static_cast<long long>(rng() % 200));
    const int agents = 1 + static_cast<int>(rng() % 5);
    std::vector<int> pick;
    for (std::size_t k = 0; k < events.size(); ++k)
      pick.push_back(static_cast<int>(rng() % agents));
    const auto lines = edge_rows(edge, events, pick, agents, rng);
    INFO("round " << round << ", " << events.size() << " events, " << agents << " agents");
    // Any split, rows in any order (commutative and associative): exactly the whole's rows,
    // the percentile included (sketch buckets add exactly).
    CHECK(sorted(collect(collector, lines)) == sorted(reference(whole, events)));
  }
}

TEST_CASE("sql tier: HyperLogLog states merge within the stated error", "[unit][sql][tier]") {
  const auto edge = must_compile(kEdge);
  const auto collector = must_compile(kCollector);
  const auto whole = must_compile(
      "SELECT page, COUNT(DISTINCT uid) AS uv FROM src GROUP BY TUMBLE(INTERVAL '10' SECOND), "
      "page");
  std::mt19937_64 rng(7);
  // 3000 events over 2000 visitors: far past an exact limit of 16.
  const auto events = stream(rng, 3000, 2000);
  std::vector<int> pick;
  for (std::size_t k = 0; k < events.size(); ++k) pick.push_back(static_cast<int>(rng() % 3));
  const auto lines = edge_rows(edge, events, pick, 3, rng, 16);
  std::map<std::string, std::set<long long>> truth;  // window + page -> uids
  for (const Ev& e : events) {
    truth[std::to_string(e.t / (10 * kSec)) + e.page].insert(e.uid);
  }
  auto r = must_run(collector, with_agent("c", 16));
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  Batch in, out;
  parse_ndjson(text, in);
  r->on_batch(in);
  r->flush(out);
  REQUIRE(out.size() == truth.size());
  std::size_t checked = 0;
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::string ws, page;
    long long uv = -1;
    for (std::size_t f = 0; f < out[k].field_count(); ++f) {
      const Field fl = out[k].field(f);
      if (fl.key == "window_start") ws = std::string(fl.text);
      if (fl.key == "page") page = std::string(fl.text);
      if (fl.key == "uv") uv = std::stoll(std::string(fl.text));
    }
    // window_start is RFC 3339 text: its seconds tell the window.
    const long long secs = (std::stoll(ws.substr(14, 2)) * 60 + std::stoll(ws.substr(17, 2)));
    const auto& set = truth[std::to_string(secs / 10) + page];
    const double n = static_cast<double>(set.size());
    INFO(ws << " " << page << " uv " << uv << " true " << n);
    // HLL p=14: standard error 0.81%; 4 sigma.
    CHECK(std::abs(static_cast<double>(uv) - n) <= std::max(1.0, 0.033 * n));
    ++checked;
  }
  CHECK(checked > 10);
  // And merged HLL registers are the whole stream's registers: the same estimate.
  auto single = must_run(whole, with_agent("", 16));
  Batch win, wout;
  for (const Ev& e : events) add(win, e);
  single->on_batch(win);
  single->flush(wout);
  std::multiset<std::string> a, b;
  for (const auto& row : rows_of(wout)) a.insert(row);
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::string row;
    for (std::size_t f = 0; f < out[k].field_count(); ++f) {
      const Field fl = out[k].field(f);
      if (fl.key == "page" || fl.key == "uv") {
        if (!row.empty()) row += ",";
        row += std::string(fl.key) + "=" + std::string(fl.text);
      }
    }
    b.insert(row);
  }
  CHECK(a == b);
}

TEST_CASE("sql tier: a re-sent partial replaces the earlier one of the same agent and window",
          "[unit][sql][tier]") {
  const auto whole = must_compile(kWhole);
  const auto edge = must_compile(kEdge);
  const auto collector = must_compile(kCollector);
  std::mt19937_64 rng(99);
  const auto events = stream(rng, 400, 80);
  std::vector<int> pick;
  for (std::size_t k = 0; k < events.size(); ++k) pick.push_back(static_cast<int>(rng() % 3));
  auto lines = edge_rows(edge, events, pick, 3, rng);
  const std::size_t unique = lines.size();
  // Every row once more, a third of them a third time (at-least-once delivery, failovers).
  for (std::size_t k = 0; k < unique; ++k) lines.push_back(lines[k]);
  for (std::size_t k = 0; k < unique; k += 3) lines.push_back(lines[k]);
  std::shuffle(lines.begin(), lines.end(), rng);
  RunnerStats stats;
  CHECK(sorted(collect(collector, lines, 1024, &stats)) == sorted(reference(whole, events)));
  CHECK(stats.partials_replaced == 10 * (lines.size() - unique));  // ten MERGE columns

  // The same windows from two agents of the same name would be one agent's re-send: the name is
  // what tells agents apart.
  std::vector<int> one(events.size(), 0);
  const auto a = edge_rows(edge, events, one, 1, rng);
  std::vector<std::string> twice = a;
  twice.insert(twice.end(), a.begin(), a.end());
  CHECK(sorted(collect(collector, twice)) == sorted(reference(whole, events)));
}

// A collector may group more coarsely than its edges (a total over every page): the states of one
// agent and window for different edge keys are different parts, not re-sends of one another.
TEST_CASE("sql tier: a collector rolling up over the edge's keys counts every edge row",
          "[unit][sql][tier]") {
  const auto whole = must_compile(
      "SELECT window_start, COUNT(*) AS pv, COUNT(DISTINCT uid) AS uv FROM src "
      "GROUP BY TUMBLE(INTERVAL '10' SECOND)");
  const auto edge = must_compile(kEdge);
  const auto rollup = must_compile(
      "SELECT window_start, MERGE(pv) AS pv, MERGE(uv) AS uv FROM edge "
      "GROUP BY TUMBLE(window_start, INTERVAL '10' SECOND)");
  std::mt19937_64 rng(7);
  const auto events = stream(rng, 300, 60);
  std::vector<int> pick;
  for (std::size_t k = 0; k < events.size(); ++k) pick.push_back(static_cast<int>(rng() % 2));
  auto lines = edge_rows(edge, events, pick, 2, rng);
  RunnerStats stats;
  CHECK(sorted(collect(rollup, lines, 1024, &stats)) == sorted(reference(whole, events)));
  CHECK(stats.partials_replaced == 0);
  // Re-sent rows still replace.
  const std::size_t unique = lines.size();
  for (std::size_t k = 0; k < unique; ++k) lines.push_back(lines[k]);
  CHECK(sorted(collect(rollup, lines, 1024, &stats)) == sorted(reference(whole, events)));
  CHECK(stats.partials_replaced == 2 * unique);
}

TEST_CASE("sql tier: the collector's state checkpoints its parts, so re-sends still replace",
          "[unit][sql][tier]") {
  const auto whole = must_compile(kWhole);
  const auto edge = must_compile(kEdge);
  const auto collector = must_compile(kCollector);
  std::mt19937_64 rng(5);
  const auto events = stream(rng, 200, 50);
  std::vector<int> pick;
  for (std::size_t k = 0; k < events.size(); ++k) pick.push_back(static_cast<int>(rng() % 2));
  const auto lines = edge_rows(edge, events, pick, 2, rng);
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  Batch in, out;
  parse_ndjson(text, in);
  auto first = must_run(collector, with_agent("c"));
  first->on_batch(in);
  std::string state;
  first->serialize_state(state);
  auto second = must_run(collector, with_agent("c"));
  REQUIRE(second->restore_state(state).ok());
  second->on_batch(in);                                        // everything again after the restart
  CHECK(second->stats().partials_replaced == 10 * in.size());  // ten MERGE columns
  second->flush(out);
  CHECK(sorted(rows_of(out)) == sorted(reference(whole, events)));
}

TEST_CASE("sql tier: a late partial merges into an open window or is late like any event",
          "[unit][sql][tier]") {
  const auto edge = must_compile(
      "SELECT window_start, page, PARTIAL(COUNT(*)) AS pv FROM src "
      "GROUP BY TUMBLE(INTERVAL '10' SECOND), page");
  const auto collector = must_compile(
      "SELECT window_start, page, MERGE(pv) AS pv FROM edge "
      "GROUP BY TUMBLE(window_start, INTERVAL '10' SECOND), page");
  auto rows_of_agent = [&](const std::string& agent, std::int64_t t) {
    auto r = must_run(edge, with_agent(agent));
    Batch in, out;
    add_event(in, t, {s("page", "/a")});
    add_event(in, t + 1, {s("page", "/a")});
    r->on_batch(in);
    r->flush(out);
    std::string text;
    for (std::size_t k = 0; k < out.size(); ++k) text += std::string(out[k].body()) + "\n";
    return text;
  };
  RunnerOptions o = with_agent("c");
  o.watermark_delay_ns = 0;
  o.allowed_lateness_ns = 10 * kSec;
  auto r = must_run(collector, o);
  Batch in, out;
  parse_ndjson(rows_of_agent("a", 100 * kSec) + rows_of_agent("a", 110 * kSec), in);
  // b's partial of [100, 110) arrives after a's of [110, 120): within the allowed lateness.
  parse_ndjson(rows_of_agent("b", 100 * kSec), in);
  // a's of [130, 140) closes [100, 110); c's of [100, 110) is then late.
  parse_ndjson(rows_of_agent("a", 130 * kSec), in);
  parse_ndjson(rows_of_agent("c", 100 * kSec), in);
  std::vector<EventOutcome> outcomes;
  for (std::size_t k = 0; k < in.size(); ++k) outcomes.push_back(r->on_event(in[k]));
  CHECK(outcomes == std::vector<EventOutcome>{EventOutcome::accepted, EventOutcome::accepted,
                                              EventOutcome::accepted, EventOutcome::accepted,
                                              EventOutcome::late});
  r->flush(out);
  CHECK(rows_of(out) ==
        std::vector<std::string>{"window_start=1970-01-01T00:01:40.000Z,page=/a,pv=4",
                                 "window_start=1970-01-01T00:01:50.000Z,page=/a,pv=2",
                                 "window_start=1970-01-01T00:02:10.000Z,page=/a,pv=2"});
  CHECK(r->stats().events_late == 1);
}

TEST_CASE("sql tier: encoding version 1 is stable and other versions are refused",
          "[unit][sql][tier]") {
  const auto edge = must_compile(
      "SELECT window_start, PARTIAL(COUNT(*)) AS pv FROM src GROUP BY TUMBLE(INTERVAL '1' "
      "MINUTE)");
  auto r = must_run(edge, with_agent("web01"));
  Batch in, out;
  for (int k = 0; k < 3; ++k) add_event(in, 61 * kSec + k, {});
  r->on_batch(in);
  r->flush(out);
  REQUIRE(out.size() == 1);
  // Today's edge writes exactly the golden bytes of version 1.
  CHECK(row_text(out[0]) ==
        std::string("window_start=1970-01-01T00:01:00.000Z,pv=") + kGoldenCountV1);

  DecodedPartial d;
  std::string scratch;
  REQUIRE(!decode_partial(kGoldenCountV1, d, scratch, 1024));
  CHECK(d.valid);
  CHECK(d.kind == AggKind::count_star);
  CHECK(d.agent == "web01");
  CHECK(d.start == 60 * kSec);
  CHECK(d.end == 120 * kSec);
  CHECK(d.cell.i == 3);

  // Golden v1 states of the other aggregates (written by this build's first release): each
  // decodes and finalizes to its value.
  struct Golden {
    const char* text;
    AggKind kind;
    std::string value;
  };
  const Golden goldens[] = {
      // COUNT(DISTINCT uid) over uids 1, 2, 3, 2 (exact set of three hashes)
      {"U1ABAwV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAQAOgAgDg8R/Tl2e+i4OidKe6qMPRwmXs6jWRfuK",
       AggKind::count_distinct, "3"},
      // SUM(v) over 5, 7
      {"U1ABBAV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvGAAAAAAAAAAAAgA=", AggKind::sum, "12"},
      // MAX(name) over "x", "zz"
      {"U1ABBwV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvBAJ6eg==", AggKind::max, "zz"},
  };
  for (const Golden& g : goldens) {
    INFO(g.text);
    REQUIRE(!decode_partial(g.text, d, scratch, 1024));
    CHECK(d.kind == g.kind);
    const Value v = Aggregates::finalize_cell(d.kind, SqlType::any, d.q, d.cell, d.side);
    const std::string text = v.type == SqlType::string ? std::string(v.s) : std::to_string(v.i);
    CHECK(text == g.value);
  }

  // A future version is refused, with the reason.
  std::string bytes;
  REQUIRE(base64_decode(kGoldenCountV1, bytes));
  bytes[2] = 2;
  std::string v2;
  base64_encode(bytes, v2);
  CHECK(decode_partial(v2, d, scratch, 1024) ==
        std::optional<std::string>("unknown encoding version 2 (this build reads 1)"));
  CHECK(!d.valid);
}

TEST_CASE("sql tier: damaged states are refused with a reason and never crash",
          "[unit][sql][tier]") {
  const auto collector = must_compile(
      "SELECT page, MERGE(pv) AS pv, MERGE(uv) AS uv FROM edge "
      "GROUP BY TUMBLE(window_start, INTERVAL '1' MINUTE), page");
  auto r = must_run(collector, with_agent("c"));
  auto row = [&](const std::string& pv, const std::string& uv) {
    Batch b;
    add_event(
        b, 0,
        {s("window_start", "1970-01-01T00:01:00Z"), s("page", "/a"), s("pv", pv), s("uv", uv)});
    return b;
  };
  const std::string uv =
      "U1ABAwV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAQAOgAgDg8R/Tl2e+i4OidKe6qMPRwmXs6jWRfuK";
  struct Case {
    std::string pv, why;
  };
  const Case cases[] = {
      {"%%%", "field 'pv': not base64 text"},
      {"aGVsbG8=", "field 'pv': not a PARTIAL state (no \"SP\" magic)"},
      {"U1ABAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bv", "field 'pv': damaged aggregate state"},
      {"U1ABDwV3ZWIwMYDguoS/A4DA9Yj+BgM=", "field 'pv': unknown aggregate code 15"},
      {"U1ABAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAwA=",
       "field 'pv': trailing bytes after the state"},
  };
  for (const Case& c : cases) {
    INFO(c.pv);
    Batch b = row(c.pv, uv);
    CHECK(r->on_event(b[0]) == EventOutcome::bad_state);
    CHECK(r->last_bad_state() == c.why);
  }
  Batch elsewhere;  // a state of [60 s, 120 s) in a row of the window [120 s, 180 s)
  add_event(elsewhere, 0,
            {s("window_start", "1970-01-01T00:02:00Z"), s("page", "/a"), s("pv", kGoldenCountV1),
             s("uv", uv)});
  CHECK(r->on_event(elsewhere[0]) == EventOutcome::bad_state);
  CHECK(r->last_bad_state() ==
        "field 'pv': the partial's window does not fit in one of this query's windows (make the "
        "collector's window a multiple of the edge's)");
  Batch missing;
  add_event(missing, 0, {s("window_start", "1970-01-01T00:01:00Z"), s("page", "/a")});
  CHECK(r->on_event(missing[0]) == EventOutcome::bad_state);
  CHECK(r->last_bad_state() == "field 'pv': missing (no PARTIAL state)");
  Batch number;
  add_event(number, 0,
            {s("window_start", "1970-01-01T00:01:00Z"), s("page", "/a"), i("pv", 3), s("uv", uv)});
  CHECK(r->on_event(number[0]) == EventOutcome::bad_state);
  CHECK(r->last_bad_state() == "field 'pv': a BIGINT, not a PARTIAL state");
  const std::uint64_t refused = r->stats().bad_states;
  CHECK(refused == std::size(cases) + 3);

  // A good row, then a state of another aggregate in the same column.
  Batch good = row(kGoldenCountV1, uv);
  CHECK(r->on_event(good[0]) == EventOutcome::accepted);
  Batch swapped = row(uv, uv);
  CHECK(r->on_event(swapped[0]) == EventOutcome::bad_state);
  CHECK(r->last_bad_state() ==
        "field 'pv': a state of COUNT, where earlier rows had another aggregate's");

  // Random damage to valid states: bit flips, truncations and splices, as base64 and raw.
  std::mt19937_64 rng(1234);
  std::string raw_pv, raw_uv;
  REQUIRE(base64_decode(kGoldenCountV1, raw_pv));
  REQUIRE(base64_decode(uv, raw_uv));
  std::size_t accepted = 0, bad = 0;
  for (int k = 0; k < 20000; ++k) {
    std::string bytes = (rng() % 2) ? raw_pv : raw_uv;
    switch (rng() % 4) {
      case 0:
        bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        bytes.resize(rng() % bytes.size());
        break;
      case 2:
        bytes.insert(rng() % (bytes.size() + 1), 1, static_cast<char>(rng()));
        break;
      default:
        for (int n = 0; n < 4; ++n) bytes[rng() % bytes.size()] = static_cast<char>(rng());
        break;
    }
    std::string text;
    base64_encode(bytes, text);
    if (rng() % 8 == 0 && !text.empty()) text[rng() % text.size()] = static_cast<char>(rng());
    Batch b = row(text, uv);
    const EventOutcome o = r->on_event(b[0]);
    (o == EventOutcome::bad_state ? bad : accepted) += 1;
    CHECK((o == EventOutcome::bad_state || o == EventOutcome::accepted));
  }
  CHECK(bad > 15000);
  CHECK(r->stats().bad_states == refused + 1 + bad);
  Batch out;
  r->flush(out);  // whatever was accepted still finalizes
  CHECK(out.size() == 1);
}

TEST_CASE("sql tier: PARTIAL and MERGE misuse is a compile error with its position",
          "[unit][sql][tier]") {
  auto error_of = [](std::string_view sql, const CompileOptions& o = {}) {
    CompileError e;
    auto q = compile(sql, o, &e);
    return q ? std::string("OK") : e.str();
  };
  const std::string win = " FROM src GROUP BY TUMBLE(INTERVAL '1' MINUTE)";
  CHECK(error_of("SELECT window_start, PARTIAL(COUNT(*)) AS pv" + win) == "OK");
  CHECK(error_of("SELECT PARTIAL(COUNT(*)) AS pv" + win) ==
        "1:8: a PARTIAL query must SELECT window_start: a collector's MERGE takes its event time "
        "from it");
  CHECK(error_of("SELECT COUNT(*) AS n, window_end, PARTIAL(SUM(x)) AS s" + win) ==
        "1:35: a PARTIAL query must SELECT window_start: a collector's MERGE takes its event "
        "time from it");
  CHECK(error_of("SELECT PARTIAL(x) AS pv" + win) ==
        "1:16: PARTIAL takes one aggregate call, e.g. PARTIAL(COUNT(*))");
  CHECK(error_of("SELECT PARTIAL(PARTIAL(COUNT(*))) AS pv" + win) ==
        "1:16: PARTIAL cannot be nested");
  CHECK(error_of("SELECT PARTIAL() AS pv" + win) ==
        "1:16: PARTIAL needs an aggregate, e.g. PARTIAL(COUNT(*))");
  CHECK(error_of("SELECT PARTIAL(COUNT(*), SUM(x)) AS pv" + win) ==
        "1:24: PARTIAL takes one aggregate call");
  CHECK(error_of("SELECT PARTIAL(COUNT(*)) + 1 AS pv" + win) ==
        "1:8: PARTIAL(...) must be a whole SELECT item: its value is an encoded state, not a "
        "number");
  CHECK(error_of("SELECT PARTIAL(COUNT(*)) AS pv" + win + " HAVING PARTIAL(COUNT(*)) > 1") ==
        "1:85: PARTIAL is not allowed in HAVING (its value is an encoded state, not a number)");
  CHECK(error_of("SELECT PARTIAL(COUNT(*)) AS pv" + win + " HAVING pv > 1") ==
        "1:85: 'pv' is a PARTIAL state: HAVING cannot compare it (filter at the collector, on "
        "MERGE)");
  CHECK(error_of("SELECT PARTIAL(COUNT(*)) AS pv FROM src GROUP BY SESSION(INTERVAL '1' MINUTE)") ==
        "1:50: PARTIAL needs a TUMBLE window (hopping and session windows do not split into "
        "mergeable parts)");
  CHECK(error_of("SELECT PARTIAL(MERGE(pv)) AS pv" + win) ==
        "1:16: PARTIAL(MERGE(...)) is not supported: a collector emits values");
  CHECK(error_of("SELECT window_start, PARTIAL(COUNT(*)) AS pv, PARTIAL(COUNT(*)) AS pv2, "
                 "COUNT(*) AS n" +
                 win) == "OK");

  const std::string cwin = " FROM edge GROUP BY TUMBLE(window_start, INTERVAL '1' MINUTE)";
  CHECK(error_of("SELECT MERGE(pv) AS pv" + cwin) == "OK");
  CHECK(error_of("SELECT MERGE(pv) * 2 AS pv2" + cwin + " HAVING MERGE(pv) > 10") == "OK");
  CHECK(error_of("SELECT MERGE(pv) AS pv FROM edge GROUP BY TUMBLE(INTERVAL '1' MINUTE)") ==
        "1:43: MERGE takes event time from the partial rows' window: GROUP BY "
        "TUMBLE(window_start, INTERVAL ...)");
  CHECK(error_of("SELECT MERGE(COUNT(*)) AS pv" + cwin) ==
        "1:14: MERGE takes the field that carries a PARTIAL state, not an aggregate (write "
        "PARTIAL(...) at the edge and MERGE(column) at the collector)");
  CHECK(error_of("SELECT MERGE(LOWER(pv)) AS pv" + cwin) ==
        "1:14: MERGE takes the name of a field that carries a PARTIAL state");
  CHECK(error_of("SELECT MERGE(pv, uv) AS pv" + cwin) ==
        "1:18: MERGE takes 1 argument (the field that carries a PARTIAL state), got 2");
  CHECK(error_of("SELECT MERGE() AS pv" + cwin) ==
        "1:14: MERGE needs the field that carries a PARTIAL state");
  CHECK(error_of("SELECT MERGE(pv) AS pv, PARTIAL(COUNT(*)) AS n" + cwin) ==
        "1:8: a query either emits PARTIAL states (at the edge) or MERGEs them (at the "
        "collector), not both");
  CHECK(error_of("SELECT MERGE(pv) AS pv FROM edge GROUP BY HOP(window_start, INTERVAL '1' "
                 "MINUTE, INTERVAL '5' MINUTE)") ==
        "1:43: MERGE needs a TUMBLE window (hopping and session windows do not split into "
        "mergeable parts)");
  CompileOptions typed;
  typed.schema = std::vector<Column>{{"window_start", SqlType::timestamp, false},
                                     {"pv", SqlType::integer, false}};
  CHECK(error_of("SELECT MERGE(pv) AS pv" + cwin, typed) ==
        "1:14: MERGE needs a field that carries a PARTIAL state (VARCHAR), 'pv' is BIGINT");
  CHECK(error_of("SELECT MERGE(pw) AS pv" + cwin, typed) ==
        "1:14: unknown column 'pw' (did you mean 'pv'?)");
}

TEST_CASE("sql tier: partial rows of the same window and key from two agents have different ids",
          "[unit][sql][tier]") {
  const auto edge = must_compile(
      "SELECT window_start, page, PARTIAL(COUNT(*)) AS pv FROM src "
      "GROUP BY TUMBLE(INTERVAL '10' SECOND), page");
  auto id_of = [&](const std::string& agent) {
    auto r = must_run(edge, with_agent(agent));
    Batch in, out;
    add_event(in, 100 * kSec, {s("page", "/a")});
    r->on_batch(in);
    r->flush(out);
    REQUIRE(out.size() == 1);
    return out[0].id();
  };
  CHECK(id_of("web01") == id_of("web01"));  // a re-send keeps its id
  CHECK(id_of("web01") != id_of("web02"));
}

// Figures for the README (run by hand: sluice_unit_tests "[.][bench]"): partial rows merged per
// second at the collector, and the size of a COUNT(DISTINCT) partial state.
TEST_CASE("sql tier: bench merge rate and state sizes", "[.][bench]") {
  const auto edge = must_compile(
      "SELECT window_start, page, PARTIAL(COUNT(*)) AS pv, PARTIAL(COUNT(DISTINCT uid)) AS uv "
      "FROM src GROUP BY TUMBLE(INTERVAL '1' MINUTE), page");
  for (long n : {10L, 10'000L, 1'000'000L}) {
    auto r = must_run(edge, with_agent("web01"));
    Batch in, out;
    for (long k = 0; k < n; ++k) {
      add_event(in, 60 * kSec + k, {s("page", "/a"), i("uid", k)});
      if (in.size() == 4096) {
        r->on_batch(in);
        in.clear();
      }
    }
    r->on_batch(in);
    r->flush(out);
    REQUIRE(out.size() == 1);
    std::size_t text = 0;
    for (std::size_t f = 0; f < out[0].field_count(); ++f) {
      if (out[0].field(f).key == "uv") text = out[0].field(f).text.size();
    }
    WARN(n << " distinct: uv state " << text << " base64 chars (" << text * 3 / 4
           << " bytes), row body " << out[0].body().size() << " bytes");
  }
  // 100 agents x 100 pages x 60 windows of small states, merged by one collector runner.
  const auto collector = must_compile(
      "SELECT window_start, page, MERGE(pv) AS pv, MERGE(uv) AS uv FROM edge "
      "GROUP BY TUMBLE(window_start, INTERVAL '1' MINUTE), page");
  std::string text;
  for (int w = 0; w < 60; ++w) {
    for (int a = 0; a < 100; ++a) {
      auto r = must_run(edge, with_agent("web" + std::to_string(a)));
      Batch in, out;
      for (int p = 0; p < 100; ++p) {
        for (int k = 0; k < 5; ++k) {
          add_event(in, (60 + 60 * w) * kSec + k,
                    {s("page", "/p" + std::to_string(p)), i("uid", a * 7 + k)});
        }
      }
      r->on_batch(in);
      r->flush(out);
      for (std::size_t k = 0; k < out.size(); ++k) text += std::string(out[k].body()) + "\n";
    }
  }
  Batch rows;
  parse_ndjson(text, rows);
  auto c = must_run(collector, with_agent("c"));
  Batch out;
  const auto t0 = std::chrono::steady_clock::now();
  c->on_batch(rows);
  c->flush(out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN(rows.size() << " partial rows (2 states each) merged in " << secs
                   << " s: " << static_cast<double>(rows.size()) / secs << " rows/s; " << out.size()
                   << " final rows");
}
