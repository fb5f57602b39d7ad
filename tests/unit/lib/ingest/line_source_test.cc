#include "lib/ingest/line_source.h"

#include <toml++/toml.h>

#include <catch2/catch.hpp>

#include "channels/memory/memory_channel.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sources;
using namespace std::chrono_literals;

namespace {

struct Rig {
  Loop loop;
  MetricsRegistry metrics;
};

// A line source's shared half over a real memory channel; the host records each batch put.
struct Fixture final : LineReaderHost {
  Loop& loop;
  MetricsRegistry& metrics;
  ComponentContext channel_ctx{loop, metrics, "buf", "memory", "/tmp"};
  channels::MemoryChannel channel;
  SourceOutput output;
  SourceContext ctx{{loop, metrics, "src", "taildir", "/tmp"}, output, {}};
  SourceMetrics source_metrics{ctx};
  LineBatcher batcher{ctx, *this, source_metrics, /*count_at_put=*/false};
  std::vector<LineCheckpoint> puts;
  std::vector<std::size_t> sizes;
  LineConfig config;

  Fixture(Rig& rig, std::uint32_t transaction_events)
      : loop(rig.loop),
        metrics(rig.metrics),
        channel(
            {.max_events = 10000, .max_bytes = {1 << 20}, .transaction_events = transaction_events},
            channel_ctx),
        output(loop, {&channel}, 1000) {
    REQUIRE(channel.open_cursor("g").has_value());
  }
  void pause_reading() override {}
  void resume_reading() override {}
  void on_sealed(LineCheckpoint& cp) override { cp.position = std::to_string(cp.end); }
  void on_put(std::uint64_t, const LineCheckpoint& cp) override { puts.push_back(cp); }
  std::vector<std::uint64_t> ends() const {
    std::vector<std::uint64_t> out;
    for (const auto& cp : puts) out.push_back(cp.end);
    return out;
  }
  // Every event in the channel, as "BODY" or "BODY@HEADER".
  std::vector<std::string> taken(const char* header = nullptr) {
    std::vector<std::string> out;
    std::vector<Lease> leases;  // held, or the events go back to the head
    while (true) {
      Batch b;
      auto lease = channel.take(0, b, {1000, 1 << 20});
      REQUIRE(lease.has_value());
      if (b.empty()) break;
      leases.push_back(std::move(*lease));
      for (std::size_t i = 0; i < b.size(); ++i) {
        std::string s(b[i].body());
        if (header != nullptr) s += "@" + std::string(b[i].header(header).value_or("-"));
        out.push_back(s);
      }
    }
    return out;
  }
};

using U = std::vector<std::uint64_t>;
using S = std::vector<std::string>;

}  // namespace

TEST_CASE("line stream: each batch's checkpoint is the end of its last complete line",
          "[unit][lines]") {
  Rig r;
  {
    Fixture f(r, 3);
    LineBatcher::Headers headers = {{"file", "/l/a.log"}};
    {
      LineStream s(f.config, nullptr, LineStream::Positions::bytes, 7, 100);
      s.bind(1, 0, &headers);
      s.feed("a\nb\nc\nd\ne", f.batcher, 1);  // offsets 100..108; "e" waits for its newline
      f.batcher.seal();
      f.batcher.flush();
      CHECK(f.ends() == U{106, 108});
      CHECK(f.puts[0].position == "106");
      CHECK(s.line_end() == 108);
      CHECK(s.lines() == 4);
      s.feed("\n", f.batcher, 1);
      f.batcher.seal();
      f.batcher.flush();
      CHECK(f.ends() == U{106, 108, 110});
      CHECK(f.taken("file") ==
            S{"a@/l/a.log", "b@/l/a.log", "c@/l/a.log", "d@/l/a.log", "e@/l/a.log"});
    }
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("line stream: a long line's pieces complete nothing until its newline, across batches",
          "[unit][lines]") {
  Rig r;
  {
    Fixture f(r, 2);
    f.config.max_line_bytes = ByteSize{4};
    {
      LineStream s(f.config, nullptr, LineStream::Positions::bytes, 7, 0);
      s.bind(1, 0, nullptr);
      s.feed("x\nabcdefghij\n", f.batcher, 1);
      f.batcher.seal();
      f.batcher.flush();
      // [x, abcd] ends after "x\n"; [efgh, ij]: the last piece ends the line.
      CHECK(f.ends() == U{2, 13});
      CHECK(f.taken() == S{"x", "abcd", "efgh", "ij"});
      CHECK(s.take_overflows() == 1);
      CHECK(s.take_overflows() == 0);
    }
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("line batcher: batches of two streams never mix, and keep their own headers",
          "[unit][lines]") {
  Rig r;
  {
    Fixture f(r, 10);
    LineBatcher::Headers ha = {{"file", "a"}}, hb = {{"file", "b"}};
    {
      LineStream a(f.config, nullptr, LineStream::Positions::bytes, 1, 0);
      LineStream b(f.config, nullptr, LineStream::Positions::bytes, 2, 0);
      a.bind(1, 0, &ha);
      b.bind(2, 0, &hb);
      a.feed("1\n", f.batcher, 1);
      b.feed("2\n", f.batcher, 1);
      a.feed("3\n", f.batcher, 1);
      f.batcher.seal();
      f.batcher.flush();
      REQUIRE(f.puts.size() == 3);
      CHECK(f.puts[0].stream == 1);
      CHECK(f.puts[1].stream == 2);
      CHECK(f.ends() == U{2, 2, 4});
      CHECK(f.taken("file") == S{"1@a", "2@b", "3@a"});
    }
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("line batcher: records the pipeline drops move the last batch's checkpoint",
          "[unit][lines]") {
  Rig r;
  {
    Fixture f(r, 2);
    toml::table doc = toml::parse(R"(format = "json"
on_parse_error = "drop"
)",
                                  std::string_view("inline.toml"));
    ConfigNode node(doc, "sources.src", "inline.toml");
    ConfigErrors errors;
    REQUIRE(LineConfig::parse(node, errors, f.config));
    auto pipeline = parse::EventPipeline::make(f.config.pipeline, f.ctx);
    REQUIRE(pipeline.has_value());
    {
      LineStream s(f.config, pipeline->get(), LineStream::Positions::bytes, 7, 0);
      s.bind(1, 0, nullptr);
      // Two good records fill a batch; the bad ones after it are dropped, and the checkpoint of
      // that batch (still waiting) covers them: no empty batch is needed.
      s.feed("{\"a\":1}\n{\"a\":2}\nbad\nbad\n", f.batcher, 1);
      f.batcher.seal();
      f.batcher.flush();
      CHECK(f.ends() == U{24});
      CHECK(f.puts[0].position == "24");
      // Only dropped records: an empty batch carries the checkpoint.
      s.feed("bad\n", f.batcher, 1);
      f.batcher.seal();
      f.batcher.flush();
      CHECK(f.ends() == U{24, 28});
      CHECK(f.taken() == S{"{\"a\":1}", "{\"a\":2}"});
    }
  }
  REQUIRE(r.loop.close() == 0);
}

namespace {

struct PausingHost final : LineReaderHost {
  int pauses = 0, resumes = 0;
  void pause_reading() override { ++pauses; }
  void resume_reading() override { ++resumes; }
};

}  // namespace

TEST_CASE("line reader: parsing a slow read yields to the loop and keeps every line in order",
          "[unit][lines]") {
  Rig r;
  {
    Fixture f(r, 1000);
    toml::table doc = toml::parse(R"(format = "regex"
pattern = '^(?<v>(a+)+)$'
)",
                                  std::string_view("inline.toml"));
    ConfigNode node(doc, "sources.src", "inline.toml");
    ConfigErrors errors;
    LineConfig config;
    REQUIRE(LineConfig::parse(node, errors, config));
    auto pipeline = parse::EventPipeline::make(config.pipeline, f.ctx);
    REQUIRE(pipeline.has_value());
    PausingHost host;
    std::string text;
    constexpr int kLines = 3000;  // each backtracks to the match limit
    for (int i = 0; i < kLines; ++i) text += std::string(40, 'a') + "b" + std::to_string(i) + "\n";
    {
      LineReader reader(f.ctx, config, host, std::move(*pipeline));
      const auto t0 = std::chrono::steady_clock::now();
      reader.on_bytes(text);
      const auto took = std::chrono::steady_clock::now() - t0;
      CHECK(took < 50ms);  // one slice (5 ms), not the whole read
      CHECK(reader.blocked());
      CHECK(host.pauses == 1);
      CHECK(host.resumes == 0);
      int turns = 0;
      REQUIRE(test::run_until(f.loop, 30s, [&] {
        ++turns;
        return !reader.blocked();
      }));
      CHECK(host.resumes == 1);
      CHECK(turns > 1);
      const auto bodies = f.taken();
      REQUIRE(bodies.size() == std::size_t(kLines));
      for (int i = 0; i < kLines; ++i)
        CHECK(bodies[std::size_t(i)] == std::string(40, 'a') + "b" + std::to_string(i));
      CHECK(reader.idle());
    }
  }
  REQUIRE(r.loop.close() == 0);
}
