// SourceOutput::settled(), which a reload waits for before it destroys a replaced source's output:
// true only once no channel will call the output back about its puts.
#include <catch2/catch.hpp>

#include "channels/memory/memory_channel.h"
#include "lib/core/source_output.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::channels;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

struct Commits final : CommitListener {
  int done = 0;
  void on_committed(std::uint64_t, Status) noexcept override { ++done; }
};

}  // namespace

TEST_CASE("reload: an output is settled once every stored put is safe and the rest dropped",
          "[unit][agent][reload]") {
  Loop loop;
  MetricsRegistry metrics;
  {
    ComponentContext ctx{loop, metrics, "buf", "memory", "/tmp"};
    MemoryChannel ch({.max_events = 10, .max_bytes = {1 << 20}, .transaction_events = 10}, ctx);
    const CursorId cursor = *ch.open_cursor("g");
    SourceOutput out(loop, {&ch}, 4);
    CHECK(out.settled());  // nothing put yet

    Batch b = make_batch(10);
    out.put(b, "pos-10");  // fills the channel
    Batch b2 = make_batch(5, "event-", 10);
    out.put(b2, "pos-15");  // waits for space
    REQUIRE(out.waiting_for_space());
    CHECK_FALSE(out.settled());  // a put is pending

    // At stop, a taildir source forgets the put no channel took: it is read again later.
    CHECK(out.drop_waiting() == 1);
    CHECK(out.idle());
    CHECK(out.unsafe_puts() == 2);
    CHECK_FALSE(
        out.settled());  // the first put sits in the channel, unsafe: the channel calls back

    // The sink group commits it: the channel reports it safe; the dropped one never will be.
    Batch taken;
    auto lease = take_some(loop, ch, cursor, taken, {100, 1 << 20});
    REQUIRE(lease);
    CHECK(taken.size() == 10);
    Commits commits;
    ch.commit(std::move(*lease), commits);
    REQUIRE(run_until(loop, 2s, [&] { return out.settled(); }));
    CHECK(out.safe_seq() == 1);
    CHECK(out.unsafe_puts() == 1);  // the dropped put stays unsafe: its position is never saved
  }
  REQUIRE(loop.close() == 0);
}
