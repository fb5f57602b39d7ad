// The ilp sink against a real InfluxDB 1.x (Debian's influxd, started here on 127.0.0.1 with its
// own directories), and over TCP against a local listener.
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include "tests/support/agent_process.h"
#include "tests/support/fault_peers.h"
#include "tests/unit/lib/net/tcp_client_peer.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int port = ntohs(Blackhole::bind_loopback(fd, 1).sin_port);
  ::close(fd);
  return port;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// influxd with a configuration of its own: data, meta and wal under a temp dir, HTTP on a free
// port of 127.0.0.1, no reporting, no monitor store, no UDP/Graphite listeners.
class Influxd {
 public:
  Influxd() {
    const int http = free_port(), rpc = free_port();
    address_ = "127.0.0.1:" + std::to_string(http);
    write_file(dir_.file("influxdb.conf"),
               "reporting-disabled = true\n"
               "bind-address = \"127.0.0.1:" +
                   std::to_string(rpc) +
                   "\"\n"
                   "[meta]\n  dir = \"" +
                   dir_.file("meta") +
                   "\"\n  logging-enabled = false\n"
                   "[data]\n  dir = \"" +
                   dir_.file("data") + "\"\n  wal-dir = \"" + dir_.file("wal") +
                   "\"\n  query-log-enabled = false\n"
                   "[monitor]\n  store-enabled = false\n"
                   "[http]\n  enabled = true\n  bind-address = \"" +
                   address_ +
                   "\"\n  log-enabled = false\n"
                   "[[udp]]\n  enabled = false\n[[graphite]]\n  enabled = false\n"
                   "[continuous_queries]\n  enabled = false\n[subscriber]\n  enabled = false\n");
    child_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/influxd", "run", "-config", dir_.file("influxdb.conf")},
        dir_.file("influxd.log"));
    ready_ = eventually(30s, [&] { return http_get(address_, "/ping").status == 204; });
  }
  bool ready() const { return ready_; }
  std::string log() const { return read_file(dir_.file("influxd.log")); }
  const std::string& address() const { return address_; }
  HttpReply query(const std::string& db, const std::string& q) const {
    const std::string body = "q=" + url_encode(q);
    return http_request(address_,
                        "POST /query?db=" + db +
                            "&epoch=ns HTTP/1.0\r\nHost: x\r\n"
                            "Connection: close\r\n"
                            "Content-Type: application/x-www-form-urlencoded\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body,
                        10s);
  }

 private:
  TempDir dir_;
  std::string address_;
  std::unique_ptr<ChildProcess> child_;
  bool ready_ = false;
};

// "2025-06-24 20:30:09.903" in Shanghai (UTC+8, no daylight saving) as UTC nanoseconds.
std::int64_t shanghai_ns(const std::string& text) {
  std::tm tm{};
  strptime(text.c_str(), "%Y-%m-%d %H:%M:%S", &tm);
  const std::int64_t secs = static_cast<std::int64_t>(timegm(&tm)) - 8 * 3600;
  const std::int64_t ms = std::stoll(text.substr(20));
  return secs * 1'000'000'000 + ms * 1'000'000;
}

struct Row {
  std::string role, server_id;
  std::int64_t uid;
  friend bool operator==(const Row&, const Row&) = default;
};
using Key = std::tuple<std::int64_t, std::string, std::string>;  // time, game_id, event

// The series of a /query answer as (time, game_id, event) -> row; false if malformed.
bool rows_of(const std::string& json, std::map<Key, Row>& out) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(json).get(doc)) return false;
  simdjson::dom::array series;
  if (doc["results"].at(0)["series"].get_array().get(series)) return false;
  for (auto s : series) {
    std::vector<std::string> cols;
    simdjson::dom::array columns, values;
    if (s["columns"].get_array().get(columns) || s["values"].get_array().get(values)) return false;
    for (auto c : columns) cols.emplace_back(c.get_string().value_unsafe());
    for (auto v : values) {
      std::map<std::string, simdjson::dom::element> m;
      std::size_t i = 0;
      simdjson::dom::array row;
      if (v.get_array().get(row)) return false;
      for (auto x : row) m[cols[i++]] = x;
      Row r;
      std::int64_t t = 0;
      if (m["time"].get_int64().get(t)) return false;
      if (m["uid"].get_int64().get(r.uid)) return false;  // an integer, not a float
      r.role = std::string(m["role"].get_string().value_unsafe());
      r.server_id = std::string(m["server_id"].get_string().value_unsafe());
      out[{t, std::string(m["game_id"].get_string().value_unsafe()),
           std::string(m["event"].get_string().value_unsafe())}] = r;
    }
  }
  return true;
}

// Writes `conf` as the agent's configuration (placeholders filled) and starts it.
std::unique_ptr<AgentProcess> start_agent(const TempDir& tmp, const std::string& conf,
                                          std::map<std::string, std::string> vars) {
  const std::string path = tmp.file("agent-" + std::to_string(std::rand()) + ".toml");
  write_file(path, conf);
  AgentProcess::Options o;
  o.config_file = path;
  o.vars = std::move(vars);
  return std::make_unique<AgentProcess>("", o);
}

constexpr const char* kScenario2 = R"([agent]
name = "it-ilp"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"

[sources.game]
type = "taildir"
paths = ["@LOGS@/game*.log"]
format = "json"
timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }
rescan_interval = "200ms"
poll_interval = "50ms"
channel = "buf"

[sources.mixed]
type = "taildir"
paths = ["@LOGS@/mixed*.log"]
format = "json"
timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }
rescan_interval = "200ms"
poll_interval = "50ms"
channel = "mixed_buf"

[channels.buf]
type = "memory"
[channels.mixed_buf]
type = "memory"

[sinks.questdb]
type = "ilp"
channel = "buf"
url = "http://@INFLUX@/write?db=game"
table = "game_event_table"
tags = ["game_id", "event"]
fields = { uid = "integer", role = "string", server_id = "string" }

# uid's type comes from the parsed value here: a float meets the integer column.
[sinks.mixed_out]
type = "ilp"
url = "http://@INFLUX@/write?db=game"
table = "game_event_table"
tags = ["game_id", "event"]
fields = ["uid", "role", "server_id"]

[sinks.rejects]
type = "file"
path = "@DIR@/rejects.json"
format = "json"

[sink_groups.mixed]
channel = "mixed_buf"
sinks = ["mixed_out"]
dead_letter = "rejects"
)";

constexpr const char* kPipelineToIlp = R"([agent]
name = "it-ilp-sql"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"

[sources.game]
type = "taildir"
paths = ["@LOGS@/game*.log"]
format = "json"
rescan_interval = "200ms"
poll_interval = "50ms"
channel = "events"

[channels.events]
type = "memory"

[sinks.raw]
type = "null"
channel = "events"

[pipelines.pv_uv]
sql = """
INSERT INTO rows
SELECT game_id, event, COUNT(*) AS pv, COUNT(DISTINCT uid) AS uv
FROM game
GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event
"""
event_time = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", watermark_delay = "5s" }
idle_timeout = "1s"

[channels.rows]
type = "memory"

[sinks.influx]
type = "ilp"
channel = "rows"
url = "http://@INFLUX@/write?db=game"
table = "pv_uv"
tags = ["game_id", "event"]
fields = { pv = "integer", uv = "integer" }
)";

// "2025-06-24T20:30:05.000Z" as nanoseconds.
std::int64_t iso_ns(const std::string& text) {
  std::tm tm{};
  strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  return static_cast<std::int64_t>(timegm(&tm)) * 1'000'000'000 +
         std::stoll(text.substr(20, 3)) * 1'000'000;
}

}  // namespace

TEST_CASE("ilp: scenario 2's game events into a real influxd, typed and at event time",
          "[integration][ilp][influxd]") {
  if (::access("/usr/bin/influxd", X_OK) != 0) FAIL("influxd is missing: apt-get install influxdb");
  Influxd influx;
  INFO(influx.log());
  REQUIRE(influx.ready());
  REQUIRE(influx.query("", "CREATE DATABASE game").status == 200);
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  fs::copy_file(source_dir() + "/tests/data/game_events.ndjson", logs + "/game.log");
  auto agent = start_agent(tmp, kScenario2, {{"LOGS", logs}, {"INFLUX", influx.address()}});
  REQUIRE(agent->wait_ready());

  // What InfluxDB must hold: one point per (time, game_id, event); a later line with the same
  // key overwrites the earlier one (4 of the 2000 lines share a key with another).
  std::map<Key, Row> expect;
  simdjson::dom::parser p;
  for (const std::string& line : read_lines(logs + "/game.log")) {
    simdjson::dom::element e = p.parse(line).value_unsafe();
    expect[{shanghai_ns(std::string(e["create_time"].get_string().value_unsafe())),
            std::string(e["game_id"].get_string().value_unsafe()),
            std::string(e["event"].get_string().value_unsafe())}] =
        Row{std::string(e["role"].get_string().value_unsafe()),
            std::string(e["server_id"].get_string().value_unsafe()),
            e["uid"].get_int64().value_unsafe()};
  }
  REQUIRE(expect.size() == 1996);
  std::map<Key, Row> got;
  INFO(agent->stderr_text());
  const bool all = eventually(30s, [&] {
    got.clear();
    return rows_of(influx.query("game", "SELECT * FROM game_event_table").body, got) &&
           got.size() == expect.size();
  });
  INFO(influx.query("game", "SELECT count(*) FROM game_event_table").body.substr(0, 500));
  INFO(influx.query("game", "SELECT * FROM game_event_table LIMIT 2").body.substr(0, 500));
  REQUIRE(all);
  CHECK(got == expect);
  CHECK(got.count(Key{1750768200020000000, "g3", "chat"}) ==
        1);  // the first line: 20:30:00.020 +08:00
  const std::string fields = influx.query("game", "SHOW FIELD KEYS FROM game_event_table").body;
  CHECK(fields.find(R"(["role","string"],["server_id","string"],["uid","integer"])") !=
        std::string::npos);
  const std::string tags = influx.query("game", "SHOW TAG KEYS FROM game_event_table").body;
  CHECK(tags.find(R"([["event"],["game_id"]])") != std::string::npos);
  const std::string labels = R"(component="questdb",type="ilp")";
  CHECK(agent->metric("sluice_ilp_rows_written_total{" + labels + "}") == 2000.0);
  // Counted when the leases commit, which may follow the last write by a moment.
  CHECK(eventually(5s, [&] {
    return agent->metric("sluice_sink_events_total{" + labels + R"(,outcome="ok"})") == 2000.0;
  }));

  // Bad rows: a uid that is a float meets the integer column. InfluxDB writes the good lines of
  // the request and answers 400 partial write; the sink finds the bad ones, rejects them to the
  // dead letter, and the good ones stay.
  std::string mixed;
  for (int i = 0; i < 12; ++i) {
    const bool bad = i % 4 == 1;
    char line[200];
    std::snprintf(line, sizeof line,
                  R"({"create_time": "2025-06-25 08:00:%02d.000", "event": "mixed", )"
                  R"("game_id": "g9", "role": "r%d", "server_id": "s1", "uid": %s})",
                  i, i, bad ? "1.5" : std::to_string(1000 + i).c_str());
    mixed += std::string(line) + "\n";
  }
  write_file(logs + "/mixed.log", mixed);
  REQUIRE(eventually(30s, [&] { return count_lines(agent->path("rejects.json")) == 3; }));
  const std::string rejected = read_file(agent->path("rejects.json"));
  CHECK(rejected.find("\"uid\":1.5") != std::string::npos);
  CHECK(rejected.find("\"role\":\"r1\"") != std::string::npos);
  CHECK(rejected.find("\"role\":\"r5\"") != std::string::npos);
  CHECK(rejected.find("\"role\":\"r9\"") != std::string::npos);
  std::map<Key, Row> kept;
  REQUIRE(rows_of(influx.query("game", "SELECT * FROM game_event_table WHERE game_id = 'g9'").body,
                  kept));
  CHECK(kept.size() == 9);
  for (const auto& [k, row] : kept) CHECK(row.uid >= 1000);
  const std::string mlabels = R"(component="mixed_out",type="ilp")";
  CHECK(agent->metric("sluice_ilp_rows_rejected_total{" + mlabels + R"(,reason="server"})") == 3.0);
  CHECK(eventually(5s, [&] {
    return agent->metric("sluice_sink_events_total{" + mlabels + R"(,outcome="reject"})") == 3.0;
  }));
  CHECK(agent->terminate() == 0);
}

TEST_CASE("ilp: a SQL pipeline's rows into a real influxd: keys as tags, aggregates as fields",
          "[integration][ilp][influxd][sql]") {
  if (::access("/usr/bin/influxd", X_OK) != 0) FAIL("influxd is missing: apt-get install influxdb");
  Influxd influx;
  INFO(influx.log());
  REQUIRE(influx.ready());
  REQUIRE(influx.query("", "CREATE DATABASE game").status == 200);
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  const std::string input = source_dir() + "/tests/data/game_events.ndjson";
  // The rows expected: the same query by `sluice sql run` over the same file (the engine is
  // checked against a reference evaluator elsewhere; here the mapping to points is), with the
  // window end each row is stamped with.
  auto [code, text] = run_sluice(
      {"sql", "run",
       "SELECT window_end, game_id, event, COUNT(*) AS pv, COUNT(DISTINCT uid) AS uv FROM game "
       "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event",
       "--input", input, "--event-time", "create_time:%Y-%m-%d %H:%M:%S.%f", "--watermark-delay",
       "5s", "--output", "ndjson"});
  REQUIRE(code == 0);
  using Point = std::tuple<std::int64_t, std::string, std::string>;  // time, game_id, event
  std::map<Point, std::pair<std::int64_t, std::int64_t>> expect;     // pv, uv
  simdjson::dom::parser p;
  std::int64_t events = 0;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.rfind("{", 0) != 0) continue;  // the summary line of the late events
    simdjson::dom::element e = p.parse(line).value_unsafe();
    const std::int64_t pv = e["pv"].get_int64().value_unsafe();
    expect[{iso_ns(std::string(e["window_end"].get_string().value_unsafe())),
            std::string(e["game_id"].get_string().value_unsafe()),
            std::string(e["event"].get_string().value_unsafe())}] = {
        pv, e["uv"].get_int64().value_unsafe()};
    events += pv;
  }
  REQUIRE(expect.size() > 100);
  fs::copy_file(input, logs + "/game.log");
  auto agent = start_agent(tmp, kPipelineToIlp, {{"LOGS", logs}, {"INFLUX", influx.address()}});
  REQUIRE(agent->wait_ready());
  INFO(agent->stderr_text());
  std::map<Point, std::pair<std::int64_t, std::int64_t>> got;
  auto read_back = [&] {
    got.clear();
    simdjson::dom::parser q;
    simdjson::dom::element doc;
    const std::string body = influx.query("game", "SELECT pv, uv, game_id, event FROM pv_uv").body;
    if (q.parse(body).get(doc)) return false;
    simdjson::dom::array series;
    if (doc["results"].at(0)["series"].get_array().get(series)) return false;
    simdjson::dom::array values;
    if (series.at(0)["values"].get_array().get(values)) return false;
    for (auto row : values) {
      // time, pv, uv, game_id, event (the order asked for)
      auto v = row.get_array().value_unsafe();
      std::int64_t t = 0, pv = 0, uv = 0;
      if (v.at(0).get_int64().get(t) || v.at(1).get_int64().get(pv) ||
          v.at(2).get_int64().get(uv)) {
        return false;
      }
      got[{t, std::string(v.at(3).get_string().value_unsafe()),
           std::string(v.at(4).get_string().value_unsafe())}] = {pv, uv};
    }
    return got.size() == expect.size();
  };
  // The last windows close after idle_timeout without input.
  const bool all = eventually(30s, read_back);
  INFO(influx.query("game", "SELECT count(*) FROM pv_uv").body.substr(0, 300));
  CHECK(all);
  CHECK(got == expect);
  const std::string fields = influx.query("game", "SHOW FIELD KEYS FROM pv_uv").body;
  CHECK(fields.find(R"([["pv","integer"],["uv","integer"]])") != std::string::npos);
  const std::string tags = influx.query("game", "SHOW TAG KEYS FROM pv_uv").body;
  CHECK(tags.find(R"([["event"],["game_id"]])") != std::string::npos);
  const std::string labels = R"(component="influx",type="ilp")";
  CHECK(agent->metric("sluice_ilp_rows_written_total{" + labels + "}") ==
        static_cast<double>(expect.size()));
  WARN("sql -> ilp: " << expect.size() << " rows of " << events << " events read back");
  CHECK(agent->terminate() == 0);
}

TEST_CASE("ilp: over TCP to a local listener, QuestDB style", "[integration][ilp]") {
  LinePeer peer;
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  write_file(logs + "/game.log",
             "{\"create_time\": \"2025-06-24 20:30:09.903\", \"event\": \"login\", \"game_id\": "
             "\"g1\", \"role\": \"none\", \"server_id\": \"s45\", \"uid\": 148952381}\n");
  auto agent = start_agent(tmp, R"([agent]
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
[sources.game]
type = "taildir"
paths = ["@LOGS@/*.log"]
format = "json"
timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }
channel = "buf"
[channels.buf]
type = "memory"
[sinks.questdb]
type = "ilp"
channel = "buf"
address = "@PEER@"
table = "game_event_table"
tags = ["game_id", "event"]
fields = { uid = "integer", role = "string", server_id = "string" }
)",
                           {{"LOGS", logs}, {"PEER", peer.address()}});
  REQUIRE(agent->wait_ready());
  const std::string expect =
      "game_event_table,game_id=g1,event=login uid=148952381i,role=\"none\",server_id=\"s45\" "
      "1750768209903000000\n";
  INFO(agent->stderr_text());
  eventually(10s, [&] { return peer.received() == expect; });
  CHECK(peer.received() == expect);
  CHECK(agent->terminate() == 0);
}
