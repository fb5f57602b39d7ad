#include "channels/lmdb/lmdb_channel.h"

#include <catch2/catch.hpp>

#include "channels/lmdb/record_codec.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::channels;
using namespace std::chrono_literals;

namespace {

struct Listener final : PutListener, SafeListener, CommitListener, DataListener, SpaceListener {
  std::vector<Status> puts;
  std::vector<std::uint64_t> safe;
  int commits = 0, data = 0, space = 0;
  void on_put_done(std::uint64_t, Status st) noexcept override { puts.push_back(std::move(st)); }
  void on_safe_in_channel(std::uint64_t seq) noexcept override { safe.push_back(seq); }
  void on_committed(std::uint64_t, Status st) noexcept override { commits += st.ok() ? 1 : 1000; }
  void on_data() noexcept override { ++data; }
  void on_space() noexcept override { ++space; }
};

std::vector<std::string> bodies(const Batch& b) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < b.size(); ++i) out.emplace_back(b[i].body());
  return out;
}

struct Rig {
  test::TempDir dir;
  Loop loop;
  MetricsRegistry metrics;
  ComponentContext ctx{loop, metrics, "durable", "lmdb", dir.path()};
  Listener l;

  std::unique_ptr<LmdbChannel> open(LmdbConfig cfg = {}) {
    auto ch = LmdbChannel::create(cfg, ctx);
    REQUIRE(ch.has_value());
    return std::move(*ch);
  }
  void put(LmdbChannel& ch, Batch b, std::uint64_t seq) {
    const std::size_t before = l.puts.size();
    ch.put(b, SourceCheckpoint{&l, seq, {}, {}}, l);
    REQUIRE(test::run_until(loop, 5s, [&] { return l.puts.size() > before; }));
    REQUIRE(l.puts.back().ok());
  }
  void commit(LmdbChannel& ch, Lease&& lease) {
    const int before = l.commits;
    ch.commit(std::move(lease), l);
    REQUIRE(test::run_until(loop, 5s, [&] { return l.commits > before; }));
    REQUIRE(l.commits == before + 1);
  }
};

}  // namespace

TEST_CASE("lmdb record codec round-trips events and detects damage", "[unit][lmdb]") {
  Batch b;
  b.set_common_header("file", "/var/log/a.log");
  b.add(std::string(500, 'x'), 11, 12);
  b.add_header("h", "v");
  b.add_field("n", "7", FieldType::integer);
  b.add("second", 21, 22);
  for (int level : {0, 3}) {
    std::string payload, record, scratch;
    serialize_batch(b, payload);
    seal_record(payload, 2, level, record);
    Batch out;
    REQUIRE(decode_record(record, out, scratch).ok());
    REQUIRE(out.size() == 2);
    CHECK(out[0].body() == std::string(500, 'x'));
    CHECK(out[0].timestamp_ns() == 11);
    CHECK(out[0].id() == 12);
    CHECK(out[0].header("h") == std::optional<std::string_view>("v"));
    CHECK(out[0].header("file") == std::optional<std::string_view>("/var/log/a.log"));
    CHECK(out[0].field(0).text == "7");
    CHECK(out[1].body() == "second");
    if (level > 0) CHECK(record.size() < payload.size());  // compressed
    record[record.size() / 2] ^= 0x20;                     // one flipped bit
    const Status st = decode_record(record, out, scratch);
    CHECK(st.code() == Errc::invalid_data);
    CHECK(st.message() == "checksum mismatch");
    CHECK(out.empty());
  }
}

TEST_CASE("lmdb channel: put is durable, then safe, take and commit remove", "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(3, "a"), 1);
    CHECK(r.l.safe == std::vector<std::uint64_t>{1});  // safe at durable put
    r.put(*ch, test::make_batch(2, "b"), 2);
    CHECK(ch->events() == 5);
    Batch out;
    auto lease = ch->take(cur, out, {100, 1 << 20});
    REQUIRE(lease.has_value());
    CHECK(bodies(out) == std::vector<std::string>{"a0", "a1", "a2", "b0", "b1"});
    r.commit(*ch, std::move(*lease));
    CHECK(ch->events() == 0);
    CHECK(ch->bytes() == 0);
    auto none = ch->take(cur, out, {100, 1 << 20});
    CHECK(out.empty());
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: state survives a restart, an open lease is delivered again",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId cur = *ch->open_cursor("g");
    for (int i = 0; i < 3; ++i)
      r.put(*ch, test::make_batch(2, "r" + std::to_string(i) + "-"), i + 1);
    Batch out;
    auto first = ch->take(cur, out, {2, 1 << 20});
    r.commit(*ch, std::move(*first));
    auto second = ch->take(cur, out, {2, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"r1-0", "r1-1"});
    second->release();  // the process "dies" with this lease open: no commit, no rollback
  }
  {
    auto ch = r.open();  // a new environment on the same directory
    CHECK(ch->events() == 4);
    const CursorId cur = *ch->open_cursor("g");
    Batch out;
    auto again = ch->take(cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"r1-0", "r1-1", "r2-0", "r2-1"});
    r.commit(*ch, std::move(*again));
    r.put(*ch, test::make_batch(1, "after-"), 4);  // numbering continues
    auto last = ch->take(cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"after-0"});
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: rollback returns records in order, two cursors each see everything",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId b = *ch->open_cursor("b");
    r.put(*ch, test::make_batch(2, "x"), 1);
    r.put(*ch, test::make_batch(2, "y"), 2);
    Batch out;
    auto l1 = ch->take(a, out, {2, 1 << 20});
    auto l2 = ch->take(a, out, {2, 1 << 20});
    l2->rollback();
    l1->rollback();
    auto all = ch->take(a, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"x0", "x1", "y0", "y1"});
    r.commit(*ch, std::move(*all));
    CHECK(ch->events() == 4);  // cursor b has not committed: nothing is deleted
    auto lb = ch->take(b, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"x0", "x1", "y0", "y1"});
    r.commit(*ch, std::move(*lb));
    CHECK(ch->events() == 0);
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: a damaged record is quarantined, the others are delivered",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.compression_level = 0});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(1, "good-"), 1);
    r.put(*ch, test::make_batch(1, "bad-"), 2);
    r.put(*ch, test::make_batch(1, "fine-"), 3);
    // Flip one byte of record 2 on disk.
    auto env = shared_env(r.dir.path(), r.loop);
    auto dbi = (*env)->dbi("c:durable");
    bool flipped = false;
    (*env)->submit({[&, d = *dbi](MDB_txn* txn) {
                      std::string key(8, '\0');
                      key[7] = 2;
                      MDB_val k{8, key.data()}, v{};
                      int rc = mdb_get(txn, d, &k, &v);
                      if (rc != 0) return rc;
                      std::string copy(static_cast<const char*>(v.mv_data), v.mv_size);
                      copy[copy.size() - 3] ^= 0x01;
                      MDB_val nv{copy.size(), copy.data()};
                      return mdb_put(txn, d, &k, &nv, 0);
                    },
                    [&](Status st) { flipped = st.ok(); }, true});
    REQUIRE(test::run_until(r.loop, 5s, [&] { return flipped; }));
    Batch out;
    auto lease = ch->take(cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"good-0", "fine-0"});
    CHECK(ch->quarantined() == 1);
    r.commit(*ch, std::move(*lease));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: full means back-pressure until a commit frees space", "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 3});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(3, "a"), 1);
    Batch extra = test::make_batch(1, "b");
    ch->put(extra, SourceCheckpoint{&r.l, 2, {}, {}}, r.l);
    REQUIRE(r.l.puts.back().code() == Errc::backpressure);
    CHECK(extra.size() == 1);  // untouched
    ch->wait_for_space(r.l);
    Batch out;
    auto lease = ch->take(cur, out, {100, 1 << 20});
    r.commit(*ch, std::move(*lease));
    CHECK(r.l.space == 1);
    r.put(*ch, std::move(extra), 2);
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: when_full = drop_oldest drops the oldest record and counts it",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 4, .drop_oldest_when_full = true});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(2, "old"), 1);
    r.put(*ch, test::make_batch(2, "mid"), 2);
    Batch extra = test::make_batch(2, "new");
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    CHECK(r.l.puts.back().code() == Errc::backpressure);  // the source waits for the drop
    ch->wait_for_space(r.l);
    REQUIRE(test::run_until(r.loop, 5s, [&] { return r.l.space == 1; }));
    r.put(*ch, std::move(extra), 3);
    Batch out;
    auto lease = ch->take(cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"mid0", "mid1", "new0", "new1"});
    double dropped = 0;
    REQUIRE(r.metrics.find("sluice_channel_dropped_events_total", r.ctx.labels(), dropped));
    CHECK(dropped == 2);
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("lmdb channel: a lagging cursor with detach loses its oldest backlog, the other goes on",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 4});
    const CursorId live = *ch->open_cursor("live");
    const CursorId dead = *ch->open_cursor("dead");
    r.put(*ch, test::make_batch(2, "a"), 1);
    r.put(*ch, test::make_batch(2, "b"), 2);
    Batch out;
    auto l = ch->take(live, out, {100, 1 << 20});
    r.commit(*ch, std::move(*l));
    Batch extra = test::make_batch(2, "c");
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    CHECK(r.l.puts.back().code() == Errc::backpressure);  // blocked: "dead" holds everything
    ch->set_detach_when_lagging(dead, true);
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    ch->wait_for_space(r.l);
    REQUIRE(test::run_until(r.loop, 5s, [&] { return r.l.space == 1; }));
    r.put(*ch, std::move(extra), 3);
    auto d = ch->take(dead, out, {100, 1 << 20});
    CHECK(bodies(out) ==
          std::vector<std::string>{"b0", "b1", "c0", "c1"});  // "a" was dropped for it
    auto lv = ch->take(live, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"c0", "c1"});
  }
  REQUIRE(r.loop.close() == 0);
}
