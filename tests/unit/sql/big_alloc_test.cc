#include "sql/big_alloc.h"

#include <catch2/catch.hpp>

#include "sql/window_operator.h"
#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

TEST_CASE("sql state: the cell blocks of a four-aggregate window are mappings of their own",
          "[unit][sql]") {
  // A block of 2048 groups x 4 cells x 24 bytes is 192 KiB: past kMapFrom (128 KiB), so a closed
  // window's cells go back to the system when it is emitted instead of staying in malloc's heap
  // between the next windows' arrays (issue 13: 1.3 MB less peak RSS at 100k keys per window).
  auto q = must_compile(
      "SELECT game_id, COUNT(*) AS n, COUNT(DISTINCT uid) AS users, AVG(x) AS ax, "
      "APPROX_PERCENTILE(x, 0.99) AS p FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id");
  RunnerOptions o;
  o.watermark_delay_ns = 0;
  auto r = must_run(q, o);
  // 20 blocks of 2048 groups (the first 2048 come in smaller blocks); over 4 MiB, so the closed
  // pane is not kept for reuse.
  constexpr int kGroups = 40960;
  Batch in, next, out;
  for (int e = 0; e < kGroups; ++e) {
    add_event(in, kSec + e, {s("game_id", "g" + std::to_string(e)), i("uid", e), d("x", "1.5")});
  }
  add_event(next, 6 * kSec, {s("game_id", "g0"), i("uid", 1), d("x", "1.5")});
  const std::size_t before = big_alloc_mapped_bytes().load();
  r->on_batch(in);
  const std::size_t mapped = big_alloc_mapped_bytes().load() - before;
  CHECK(mapped >= 19 * CellBlocks::kGroups * 4 * sizeof(Cell));
  r->on_batch(next);  // closes the window
  CHECK(r->emit_closed(out) == std::size_t{kGroups});
  CHECK(out.size() == std::size_t{kGroups});
  CHECK(big_alloc_mapped_bytes().load() - before < 64 * 1024);
}
