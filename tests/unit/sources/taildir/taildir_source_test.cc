#include "sources/taildir/taildir_source.h"

#include <catch2/catch.hpp>
#include <filesystem>

#include "channels/memory/memory_channel.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sources;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

struct Committed final : CommitListener {
  int calls = 0;
  void on_committed(std::uint64_t, Status) noexcept override { ++calls; }
};

}  // namespace

// A reload destroys a stopped taildir once its puts are safe: an asynchronous positions write
// started by a late acknowledgement would outlive it and race persist_checkpoint().
TEST_CASE("taildir source: an acknowledgement after stop starts no asynchronous positions write",
          "[unit][taildir]") {
  TempDir tmp;
  Loop loop;
  {
    MetricsRegistry metrics;
    ComponentContext ch_ctx{loop, metrics, "buf", "memory", tmp.path()};
    channels::MemoryChannel channel(
        {.max_events = 10000, .max_bytes = {1 << 20}, .transaction_events = 100}, ch_ctx);
    auto cursor = channel.open_cursor("g");
    REQUIRE(cursor.has_value());
    SourceOutput output(loop, {&channel}, 1000);
    SourceContext ctx{{loop, metrics, "tail", "taildir", tmp.path()}, output, {}};
    TaildirConfig cfg;
    TaildirGroup group;
    group.name = "default";
    group.paths = {tmp.file("app.log")};
    cfg.groups.push_back(group);
    cfg.positions_file = tmp.file("positions.json");
    cfg.checkpoint_bytes = ByteSize{1};
    cfg.checkpoint_interval = 1h;
    cfg.rescan_interval = 50ms;
    cfg.poll_interval = 10ms;
    write_file(tmp.file("app.log"), "a\nb\nc\n");
    auto src = TaildirSource::create(cfg, ctx);
    REQUIRE(src.has_value());
    REQUIRE((*src)->start().ok());
    REQUIRE(run_until(loop, 5s, [&] { return channel.events() == 3; }));
    Batch b;
    auto lease = channel.take(*cursor, b, {1000, 1 << 20});
    REQUIRE(lease.has_value());
    REQUIRE(b.size() == 3);
    bool stopped = false;
    (*src)->stop([&] { stopped = true; });
    REQUIRE(run_until(loop, 5s, [&] { return stopped; }));
    REQUIRE_FALSE(std::filesystem::exists(cfg.positions_file));
    // The sinks acknowledge after the stop: past checkpoint_bytes, but nothing is written now.
    Committed done;
    channel.commit(std::move(*lease), done);
    CHECK_FALSE(
        run_until(loop, 300ms, [&] { return std::filesystem::exists(cfg.positions_file); }));
    // The agent's own last checkpoint writes the acknowledged offset.
    (*src)->persist_checkpoint();
    CHECK(read_file(cfg.positions_file).find("6") != std::string::npos);
    src->reset();
  }
  REQUIRE(loop.close() == 0);
}
