// libFuzzer target: the SQL engine. First byte even: the rest is a query, compiled (lexer,
// parser, planner); a query that compiles runs over a few events, its state is serialized and
// restored into a fresh runner, and its windows are flushed. First byte odd: the rest is a
// damaged checkpoint, restored into a runner of a fixed query: refused or accepted, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/core/batch.h"
#include "sql/engine.h"

namespace {

using namespace sluice;

void feed(sql::WindowRunner& r, std::uint8_t seed) {
  static const char* kPages[] = {"/a", "/b", "/c"};
  Batch batch, out;
  for (int i = 0; i < 40; ++i) {
    batch.clear();
    batch.add("line", (1'700'000'000'000LL + (i * 397 + seed) % 20'000) * 1'000'000, i);
    batch.add_field("page", kPages[(i + seed) % 3], FieldType::string);
    batch.add_field("uid", std::to_string((i * 7 + seed) % 11), FieldType::integer);
    batch.add_field("ms", std::to_string(i * 13 % 101) + ".5", FieldType::floating);
    batch.add_field("ok", i % 2 == 0 ? "true" : "false", FieldType::boolean);
    (void)r.on_event(batch[0]);
    out.clear();
    r.emit_closed(out);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto q = sql::compile(rest);
    if (!q) return 0;
    (void)q->explain();
    auto runner = sql::WindowRunner::create(*q, {});
    if (!runner) return 0;
    feed(**runner, data[0]);
    std::string state;
    (*runner)->serialize_state(state);
    auto again = sql::WindowRunner::create(*q, {});
    if (!again) std::abort();
    if (!(*again)->restore_state(state).ok()) std::abort();  // its own state must restore
    Batch out;
    (*again)->flush(out);
    return 0;
  }
  static const auto query = *sql::compile(
      "SELECT page, COUNT(*) AS pv, COUNT(DISTINCT uid) AS uv, AVG(ms) AS a, "
      "APPROX_PERCENTILE(ms, 0.9) AS p90, FIRST_VALUE(uid) AS f FROM x "
      "GROUP BY HOP(INTERVAL '1' SECOND, INTERVAL '3' SECOND), page");
  auto runner = sql::WindowRunner::create(query, {});
  if (!runner) std::abort();
  if ((*runner)->restore_state(rest).ok()) {
    feed(**runner, 1);
    Batch out;
    (*runner)->flush(out);
  }
  return 0;
}
