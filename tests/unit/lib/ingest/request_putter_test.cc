#include "lib/ingest/request_putter.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "channels/memory/memory_channel.h"
#include "tests/unit/channels/memory/memory_fixture.h"

using namespace sluice;
using namespace sluice::channels;
using sluice::channels::testing::Fixture;
using sluice::sources::RequestPutter;

namespace {

constexpr std::size_t kEventBytes = 1000;

Batch request(std::size_t n, char fill) {
  Batch b;
  const std::string body(kEventBytes, fill);
  for (std::size_t i = 0; i < n; ++i) b.add(body, 0, i);
  return b;
}

// Takes and commits everything in the channel, as a sink group would: the puts become safe.
void drain(MemoryChannel& ch, CursorId cursor, Fixture& f) {
  for (;;) {
    Batch out;
    auto lease = ch.take(cursor, out, {100'000, 1ULL << 40});
    REQUIRE(lease.has_value());
    if (out.empty()) return;
    ch.commit(std::move(*lease), f);
  }
}

}  // namespace

TEST_CASE("request putter: a large request is put over several loop turns and answered once",
          "[unit][ingest]") {
  Fixture f;
  MemoryChannel ch({.max_events = 1'000'000, .max_bytes = {1ULL << 30}, .transaction_events = 100},
                   f.ctx);
  const CursorId cursor = *ch.open_cursor("g");
  {
    SourceOutput out(f.loop, {&ch});
    RequestPutter putter(f.loop, out);
    std::vector<std::string> answers;
    Batch big = request(20'000, 'a');  // 20 MB
    putter.submit(big, [&](bool safe) { answers.push_back(safe ? "big ok" : "big refused"); });
    CHECK(big.empty());
    // One turn copies and puts about kBytesPerTurn, not the whole request.
    const std::uint64_t per_turn = RequestPutter::kBytesPerTurn + 100 * kEventBytes;
    CHECK(ch.events() * kEventBytes <= per_turn);
    CHECK(ch.events() > 0);
    // A request arriving meanwhile is accepted, queued behind, and answered after it.
    REQUIRE(putter.accepting());
    Batch small = request(3, 'b');
    putter.submit(small,
                  [&](bool safe) { answers.push_back(safe ? "small ok" : "small refused"); });
    int turns = 1;
    std::uint64_t before = ch.events();
    while (ch.events() < 20'003 && turns < 1000) {
      f.loop.run_once();
      ++turns;
      CHECK((ch.events() - before) * kEventBytes <= per_turn);
      before = ch.events();
    }
    CHECK(ch.events() == 20'003);
    CHECK(turns >= 10);
    CHECK(answers.empty());  // nothing is safe before a sink committed it
    drain(ch, cursor, f);
    for (int i = 0; i < 10 && answers.size() < 2; ++i) f.loop.run_once();
    CHECK(answers == std::vector<std::string>{"big ok", "small ok"});
    CHECK(putter.idle());
  }
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("request putter: a channel filling during a large request refuses it and those behind",
          "[unit][ingest]") {
  Fixture f;
  MemoryChannel ch({.max_events = 5'000, .max_bytes = {1ULL << 30}, .transaction_events = 100},
                   f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  {
    SourceOutput out(f.loop, {&ch});
    RequestPutter putter(f.loop, out);
    std::vector<std::string> answers;
    Batch big = request(20'000, 'a');
    putter.submit(big, [&](bool safe) { answers.push_back(safe ? "big ok" : "big refused"); });
    Batch small = request(3, 'b');
    putter.submit(small,
                  [&](bool safe) { answers.push_back(safe ? "small ok" : "small refused"); });
    for (int i = 0; i < 1000 && answers.size() < 2; ++i) f.loop.run_once();
    CHECK(answers == std::vector<std::string>{"big refused", "small refused"});
    CHECK(ch.events() == 5'000);  // the chunks stored before stay: at-least-once
    CHECK(putter.idle());
    // Full: a new request is refused at once, inside submit().
    Batch more = request(1, 'c');
    bool refused_inline = false;
    putter.submit(more, [&](bool safe) { refused_inline = !safe; });
    CHECK(refused_inline);
    // An empty request is answered true at once.
    Batch none;
    bool ok_inline = false;
    putter.submit(none, [&](bool safe) { ok_inline = safe; });
    CHECK(ok_inline);
  }
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("request putter: refuses new requests while kMaxUnputBytes wait to be put",
          "[unit][ingest]") {
  Fixture f;
  MemoryChannel ch({.max_events = 1'000'000, .max_bytes = {1ULL << 30}, .transaction_events = 1000},
                   f.ctx);
  const CursorId cursor = *ch.open_cursor("g");
  {
    SourceOutput out(f.loop, {&ch});
    RequestPutter putter(f.loop, out);
    const std::size_t n = RequestPutter::kMaxUnputBytes / kEventBytes + 4'000;
    Batch big = request(n, 'a');
    int big_answers = 0;
    putter.submit(big, [&](bool safe) { big_answers += safe ? 1 : 100; });
    // Accepted requests not put yet are outside the channel's bounds: a second one waits for
    // the client's retry.
    CHECK_FALSE(putter.accepting());
    Batch small = request(1, 'b');
    bool refused = false;
    putter.submit(small, [&](bool safe) { refused = !safe; });
    CHECK(refused);
    for (int i = 0; i < 1000 && !putter.accepting(); ++i) f.loop.run_once();
    CHECK(putter.accepting());
    CHECK(ch.events() < n);  // accepting again before the whole request is put
    for (int i = 0; i < 1000 && ch.events() < n; ++i) f.loop.run_once();
    drain(ch, cursor, f);
    for (int i = 0; i < 10 && big_answers == 0; ++i) f.loop.run_once();
    CHECK(big_answers == 1);
  }
  REQUIRE(f.loop.close() == 0);
}
