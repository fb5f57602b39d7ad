// The window operator against a brute-force reference evaluator on randomised out-of-order
// streams (fixed seeds): every window kind and aggregate, late events, allowed lateness, session
// merges, watermarks advanced from outside (idle timeouts), and state restored mid-stream.
#include <algorithm>
#include <catch2/catch.hpp>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

namespace {

// What the random streams exercised, summed over a test case's seeds (checked to be non-zero).
struct Coverage {
  std::size_t late = 0, merges = 0, rows = 0, restored_open = 0;
};
Coverage coverage;

struct Ev {
  std::int64_t t;
  std::string k;
  int g;
  std::optional<long long> x;
  std::size_t seq;  // arrival order
};

struct Group {
  std::int64_t start = 0, end = 0;
  std::string k;
  int g = 0;
  std::vector<Ev> evs;
};

std::string fmt_double(double v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::string(buf, p);
}

/// The row the query below must produce for a group, without the percentile.
std::string expected_row(const Group& gr) {
  std::vector<long long> xs;
  for (const Ev& e : gr.evs) {
    if (e.x) xs.push_back(*e.x);
  }
  std::string r = "ws=" + std::to_string(gr.start) + ",k=" + gr.k + ",g=" + std::to_string(gr.g) +
                  ",c=" + std::to_string(gr.evs.size()) + ",cx=" + std::to_string(xs.size());
  std::set<long long> distinct(xs.begin(), xs.end());
  r += ",dx=" + std::to_string(distinct.size());
  if (xs.empty()) {
    r += ",s=null,a=null,mn=null,mx=null,fv=null,lv=null";
    return r;
  }
  long long sum = 0;
  for (long long x : xs) sum += x;
  r += ",s=" + std::to_string(sum);
  r += ",a=" + fmt_double(static_cast<double>(sum) / static_cast<double>(xs.size()));
  r += ",mn=" + std::to_string(*std::min_element(xs.begin(), xs.end()));
  r += ",mx=" + std::to_string(*std::max_element(xs.begin(), xs.end()));
  // FIRST_VALUE: the non-null value of the earliest event time (the first to arrive on a tie);
  // LAST_VALUE: of the latest event time (the last to arrive on a tie).
  const Ev* first = nullptr;
  const Ev* last = nullptr;
  for (const Ev& e : gr.evs) {
    if (!e.x) continue;
    if (first == nullptr || e.t < first->t) first = &e;
    if (last == nullptr || e.t >= last->t) last = &e;
  }
  r += ",fv=" + std::to_string(*first->x) + ",lv=" + std::to_string(*last->x);
  return r;
}

double exact_median(const Group& gr) {
  std::vector<double> xs;
  for (const Ev& e : gr.evs) {
    if (e.x) xs.push_back(static_cast<double>(*e.x));
  }
  std::sort(xs.begin(), xs.end());
  return xs[static_cast<std::size_t>(std::floor(0.5 * static_cast<double>(xs.size() - 1)))];
}

struct Reference {
  WindowKind kind;
  std::int64_t size, slide, delay, lateness;
  std::int64_t wm = INT64_MIN;
  std::size_t late = 0;
  std::map<std::tuple<std::int64_t, std::string, int>, Group> windows;  // tumble, hop
  struct Session {
    Group gr;
    std::int64_t last = 0;
    bool closed = false;
  };
  std::vector<Session> sessions;

  void advance(std::int64_t w) {
    if (w > wm) wm = w;
    for (Session& s : sessions) {
      if (!s.closed && s.last + size + lateness <= wm) s.closed = true;
    }
  }

  void add(const Ev& e) {
    if (kind == WindowKind::session) {
      std::vector<std::size_t> hits;
      for (std::size_t i = 0; i < sessions.size(); ++i) {
        Session& s = sessions[i];
        if (s.closed || s.gr.k != e.k || s.gr.g != e.g) continue;
        if (e.t > s.gr.start - size && e.t < s.last + size) hits.push_back(i);
      }
      if (hits.empty()) {
        if (e.t + size + lateness <= wm) {
          ++late;
        } else {
          Session s;
          s.gr.start = e.t;
          s.gr.k = e.k;
          s.gr.g = e.g;
          s.gr.evs.push_back(e);
          s.last = e.t;
          sessions.push_back(std::move(s));
        }
      } else {
        Session& into = sessions[hits[0]];
        coverage.merges += hits.size() - 1;
        for (std::size_t h = 1; h < hits.size(); ++h) {
          Session& other = sessions[hits[h]];
          into.gr.start = std::min(into.gr.start, other.gr.start);
          into.last = std::max(into.last, other.last);
          for (const Ev& x : other.gr.evs) into.gr.evs.push_back(x);
          other.closed = true;
          other.gr.evs.clear();  // merged away: no row of its own
        }
        into.gr.start = std::min(into.gr.start, e.t);
        into.last = std::max(into.last, e.t);
        into.gr.evs.push_back(e);
      }
    } else {
      bool any = false;
      std::int64_t s = (e.t >= 0 ? e.t / slide : (e.t - slide + 1) / slide) * slide;
      for (; s > e.t - size; s -= slide) {
        if (s + size + lateness <= wm) continue;
        Group& gr = windows[{s, e.k, e.g}];
        gr.start = s;
        gr.end = s + size;
        gr.k = e.k;
        gr.g = e.g;
        gr.evs.push_back(e);
        any = true;
      }
      if (!any) ++late;
    }
    advance(e.t - delay);
  }

  std::vector<Group> groups() const {
    std::vector<Group> out;
    for (const auto& [key, gr] : windows) out.push_back(gr);
    for (const Session& s : sessions) {
      if (s.gr.evs.empty()) continue;
      Group g = s.gr;
      g.end = s.last + size;
      out.push_back(std::move(g));
    }
    return out;
  }
};

constexpr std::string_view kSelect =
    "SELECT CAST(window_start AS BIGINT) AS ws, k, g, COUNT(*) AS c, COUNT(x) AS cx, "
    "COUNT(DISTINCT x) AS dx, SUM(x) AS s, AVG(x) AS a, MIN(x) AS mn, MAX(x) AS mx, "
    "FIRST_VALUE(x) AS fv, LAST_VALUE(x) AS lv, APPROX_PERCENTILE(x, 0.5) AS p50 FROM src ";

struct Row {
  std::string text;  // without p50
  std::string p50;
  std::int64_t end;
};

std::vector<Row> split_rows(const Batch& out) {
  std::vector<Row> rows;
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::string t = row_text(out[i]);
    const std::size_t at = t.rfind(",p50=");
    rows.push_back({t.substr(0, at), t.substr(at + 5), out[i].timestamp_ns()});
  }
  return rows;
}

void run_case(WindowKind kind, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const std::int64_t delays[] = {0, 1 * kSec, 3 * kSec};
  const std::int64_t latenesses[] = {0, 2 * kSec};
  Reference ref;
  ref.kind = kind;
  ref.delay = delays[pick(0, 2)];
  ref.lateness = latenesses[pick(0, 1)];
  std::string group_by;
  switch (kind) {
    case WindowKind::tumble:
      ref.size = ref.slide = 5 * kSec;
      group_by = "GROUP BY TUMBLE(INTERVAL '5' SECOND), k, g";
      break;
    case WindowKind::hop:
      ref.size = 6 * kSec;
      ref.slide = 2 * kSec;
      group_by = "GROUP BY HOP(INTERVAL '2' SECOND, INTERVAL '6' SECOND), k, g";
      break;
    case WindowKind::session:
      ref.size = 3 * kSec;
      ref.slide = 0;
      group_by = "GROUP BY SESSION(INTERVAL '3' SECOND), k, g";
      break;
  }
  INFO("seed " << seed << " delay " << ref.delay << " lateness " << ref.lateness);
  auto q = must_compile(std::string(kSelect) + group_by);
  RunnerOptions opts;
  opts.watermark_delay_ns = ref.delay;
  opts.allowed_lateness_ns = ref.lateness;
  opts.distinct_exact_limit = 100000;

  // Events: a clock moving forward in random steps; most events a little out of order, some
  // very late, some with x missing; sessions get bursts with pauses so they open, merge and close.
  const int n = static_cast<int>(pick(200, 800));
  std::vector<Ev> evs;
  Batch in;
  std::int64_t clock = 1'700'000'000 * kSec + pick(0, 10 * kSec);
  for (int e = 0; e < n; ++e) {
    clock += kind == WindowKind::session && pick(0, 30) == 0 ? pick(3, 9) * kSec
                                                             : pick(0, 400) * 1'000'000;
    std::int64_t t = clock - pick(0, 1500) * 1'000'000;
    if (pick(0, 19) == 0) t = clock - pick(2, 12) * kSec;  // late or nearly so
    Ev ev{t, "k" + std::to_string(pick(0, 3)), static_cast<int>(pick(0, 1)), std::nullopt,
          static_cast<std::size_t>(e)};
    if (pick(0, 9) != 0) ev.x = pick(-50, 50);
    evs.push_back(ev);
    std::vector<F> fields{s("k", ev.k), i("g", ev.g)};
    if (ev.x) fields.push_back(i("x", *ev.x));
    add_event(in, t, fields);
  }
  // Idle timeouts: now and then the agent raises the watermark past what the events gave.
  std::vector<std::optional<std::int64_t>> idle(evs.size());
  for (std::size_t e = 1; e < evs.size(); ++e) {
    if (pick(0, 40) == 0) idle[e] = evs[e - 1].t - ref.delay + pick(0, 3000) * 1'000'000;
  }
  for (std::size_t e = 0; e < evs.size(); ++e) {
    if (idle[e]) ref.advance(*idle[e]);
    ref.add(evs[e]);
  }
  std::vector<std::string> want;
  std::map<std::string, double> want_median;
  for (const Group& gr : ref.groups()) {
    const std::string row = expected_row(gr);
    want.push_back(row + "|end=" + std::to_string(gr.end));
    bool has_x = false;
    for (const Ev& e : gr.evs) has_x |= e.x.has_value();
    if (has_x) want_median[row] = exact_median(gr);
  }
  std::sort(want.begin(), want.end());

  // Run twice: straight through, and with the state serialised and restored at a random point.
  for (int pass = 0; pass < 2; ++pass) {
    const std::size_t cut = pass == 0 ? evs.size() : static_cast<std::size_t>(pick(0, n - 1));
    auto r = must_run(q, opts);
    Batch out;
    std::size_t late = 0;
    for (std::size_t e = 0; e < evs.size(); ++e) {
      if (e == cut) {
        std::string state;
        r->serialize_state(state);
        coverage.restored_open += r->open_windows();
        r = must_run(q, opts);
        REQUIRE(r->restore_state(state).ok());
      }
      if (idle[e]) r->advance_watermark(*idle[e]);
      late += r->on_event(in[e]) == EventOutcome::late ? 1 : 0;
      if (pick(0, 3) == 0) {
        const std::size_t before = out.size();
        r->emit_closed(out);
        // Rows leave only once their window has closed.
        for (std::size_t o = before; o < out.size(); ++o) {
          CHECK(out[o].timestamp_ns() + ref.lateness <= r->watermark());
        }
      }
    }
    CHECK(late == ref.late);
    coverage.late += late;
    coverage.rows += out.size();
    CHECK(r->stats().events_late == ref.late);
    r->flush(out);
    CHECK(r->open_windows() == 0);
    std::vector<std::string> got;
    for (const Row& row : split_rows(out)) {
      got.push_back(row.text + "|end=" + std::to_string(row.end));
      auto m = want_median.find(row.text);
      if (m == want_median.end()) {
        CHECK(row.p50 == "null");
      } else {
        double p = 0;
        std::from_chars(row.p50.data(), row.p50.data() + row.p50.size(), p);
        CHECK(std::fabs(p - m->second) <= 0.01 * std::fabs(m->second) + 1e-9);
      }
    }
    std::sort(got.begin(), got.end());
    CHECK(got == want);
  }
}

}  // namespace

TEST_CASE("sql reference: TUMBLE on random out-of-order streams", "[unit][sql]") {
  coverage = {};
  for (std::uint32_t seed = 1; seed <= 25; ++seed) run_case(WindowKind::tumble, seed);
  CHECK(coverage.late > 100);
  CHECK(coverage.restored_open > 25);
}

TEST_CASE("sql reference: HOP on random out-of-order streams", "[unit][sql]") {
  coverage = {};
  for (std::uint32_t seed = 101; seed <= 125; ++seed) run_case(WindowKind::hop, seed);
  CHECK(coverage.late > 100);
  CHECK(coverage.restored_open > 25);
}

TEST_CASE("sql reference: SESSION on random out-of-order streams", "[unit][sql]") {
  coverage = {};
  for (std::uint32_t seed = 201; seed <= 225; ++seed) run_case(WindowKind::session, seed);
  CHECK(coverage.late > 100);
  CHECK(coverage.merges > 25);
  CHECK(coverage.restored_open > 25);
}
