#include "agent/import_flume.h"

#include <catch2/catch.hpp>
#include <string>

#include "agent/agent_config.h"
#include "agent/registry.h"
#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

using namespace sluice;
using sluice::flume::import_flume;
using sluice::flume::parse_properties;

namespace {

flume::Translation translate(const std::string& text, const std::string& agent = "") {
  auto tr = import_flume(text, agent, "test.properties");
  INFO((tr ? std::string() : tr.error().message()));
  REQUIRE(tr);
  return *tr;
}

// True if `line` is one whole line of `toml`.
bool has_line(const std::string& toml, const std::string& line) {
  const std::string t = "\n" + toml;
  return t.find("\n" + line + "\n") != std::string::npos;
}

#define REQUIRE_LINE(toml, line) \
  do {                           \
    INFO(toml);                  \
    CHECK(has_line(toml, line)); \
  } while (false)

// The errors sluice check would print, or "" when the configuration is valid.
std::string check_errors(const std::string& toml) {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(toml, "translated.toml", registry, errors);
  std::string out;
  for (const auto& e : errors) out += e.str() + "\n";
  if (!cfg && out.empty()) out = "failed";
  return out;
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("flume properties: separators comments continuations and escapes",
          "[unit][import_flume]") {
  const std::string text =
      "# a comment\n"
      "   ! another comment\n"
      "a.b = one\n"
      "a.c: two\n"
      "a.d three\n"
      "a.e=x=y\n"
      "a.f = first \\\n"
      "      second\\\n"
      "third\n"
      "a\\ g = tab\\there\\u00e9\n"
      "a.h = c:\\\\dir\\\\\n"
      "a.i =\n"
      "a.b = replaced\r\n"
      "a.j = (\\\\d):(\\\\d)\n";
  auto props = parse_properties(text);
  REQUIRE(props);
  REQUIRE(props->size() == 9);
  CHECK((*props)[0].key == "a.b");
  CHECK((*props)[0].value == "replaced");  // the last one wins, the first position stays
  CHECK((*props)[0].line == 3);
  CHECK((*props)[1].value == "two");
  CHECK((*props)[2].value == "three");
  CHECK((*props)[3].value == "x=y");
  CHECK((*props)[4].value == "first secondthird");  // Java keeps no space it was not given
  CHECK((*props)[4].line == 7);
  CHECK((*props)[5].key == "a g");
  CHECK((*props)[5].value == "tab\there\xc3\xa9");
  CHECK((*props)[6].value == "c:\\dir\\");  // an even number of backslashes does not continue
  CHECK((*props)[7].key == "a.i");
  CHECK((*props)[7].value.empty());
  CHECK((*props)[8].value == "(\\d):(\\d)");
  auto bad = parse_properties("a.b = \\u12\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message() == "line 1: malformed \\uXXXX escape");
}

TEST_CASE("flume import: the agent is the only one or the one named", "[unit][import_flume]") {
  const std::string two = "a1.sources = r1\na2.sinks = k1\na2.sinks.k1.type = logger\n";
  auto tr = import_flume(two, "", "f");
  REQUIRE_FALSE(tr);
  CHECK(tr.error().message() ==
        "the file defines several agents (a1, a2); choose one with --agent NAME");
  auto none = import_flume("# nothing\n", "", "f");
  REQUIRE_FALSE(none);
  auto missing = import_flume(two, "a3", "f");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message() == "no settings for agent 'a3' in the file");
  const auto a2 = translate(two, "a2");
  CHECK(a2.agent == "a2");
  CHECK(a2.other_agents == 1);
  REQUIRE_LINE(a2.toml, "[sinks.k1]");
  REQUIRE_LINE(a2.toml, "type = \"stdout\"");
}

TEST_CASE("flume import: the web-agent scenario passes sluice check", "[unit][import_flume]") {
  const std::string text =
      test::read_file(test::source_dir() + "/tests/data/flume/web-agent.properties");
  const auto tr = translate(text);
  REQUIRE_LINE(tr.toml,
               "# name = \"a1\"    # Flume's agent name; sluice defaults to the host name");
  REQUIRE_LINE(tr.toml, "[sources.r1]");
  REQUIRE_LINE(tr.toml, "type = \"exec\"");
  REQUIRE_LINE(tr.toml, "command = [\"tail\", \"-F\", \"/var/log/app/events.log\"]");
  REQUIRE_LINE(tr.toml, "channel = \"c1\"");
  REQUIRE_LINE(tr.toml, "[channels.c1]");
  REQUIRE_LINE(tr.toml, "type = \"memory\"");
  REQUIRE_LINE(tr.toml, "max_events = 1000");
  REQUIRE_LINE(tr.toml, "transaction_events = 100");
  REQUIRE_LINE(tr.toml, "address = \"collector-a.internal:5555\"");
  REQUIRE_LINE(tr.toml, "address = \"collector-b.internal:5555\"");
  REQUIRE_LINE(tr.toml, "[sink_groups.g1]");
  REQUIRE_LINE(tr.toml, "processor = \"failover\"");
  REQUIRE_LINE(tr.toml, "priority = { k1 = 10, k2 = 5 }");
  REQUIRE_LINE(tr.toml, "max_penalty = \"10s\"");
  CHECK(tr.carried == 23);
  CHECK(tr.dropped == 0);
  CHECK(check_errors(tr.toml).empty());
}

TEST_CASE("flume import: the collector scenario becomes a datahub sink with tuple records",
          "[unit][import_flume]") {
  const std::string text =
      test::read_file(test::source_dir() + "/tests/data/flume/collector.properties");
  const auto tr = translate(text);
  REQUIRE_LINE(tr.toml, "type = \"avro\"");
  REQUIRE_LINE(tr.toml, "listen = \"0.0.0.0:5555\"");
  REQUIRE_LINE(tr.toml, "transaction_events = 1000");
  REQUIRE_LINE(tr.toml, "type = \"datahub\"");
  REQUIRE_LINE(tr.toml, "endpoint = \"http://datahub.example.internal\"");
  REQUIRE_LINE(tr.toml, "project = \"weblogs\"");
  REQUIRE_LINE(tr.toml, "topic = \"events\"");
  REQUIRE_LINE(tr.toml, "access_id = \"EXAMPLE_ACCESS_ID\"");
  REQUIRE_LINE(tr.toml, "access_key = \"EXAMPLE_ACCESS_KEY\"");
  REQUIRE_LINE(tr.toml, "record_type = \"tuple\"");
  REQUIRE_LINE(tr.toml, "fields = [{ name = \"line\", from = \"body\" }]");
  REQUIRE_LINE(tr.toml, "batch_events = 100");
  REQUIRE_LINE(tr.toml,
               "# flume: a1.sinks.k1.shard.number = 1  (sluice spreads records over the topic's "
               "active shards)");
  CHECK(tr.carried == 20);
  CHECK(tr.dropped == 4);
  CHECK(count(tr.toml, "# flume: a1.") == 4);
}

// The examples below are the Flume 1.11 user guide's, one per component.

TEST_CASE("flume import: user guide exec source and shell", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.sources.r1.type = exec\n"
      "a1.sources.r1.command = tail -F /var/log/secure\n"
      "a1.sources.r1.channels = c1\n");
  REQUIRE_LINE(tr.toml, "command = [\"tail\", \"-F\", \"/var/log/secure\"]");
  const auto sh = translate(
      "a1.sources = tailsource-1\n"
      "a1.sources.tailsource-1.type = exec\n"
      "a1.sources.tailsource-1.shell = /bin/bash -c\n"
      "a1.sources.tailsource-1.command = for i in /path/*.txt; do cat $i; done\n");
  REQUIRE_LINE(sh.toml, "[sources.tailsource-1]");
  REQUIRE_LINE(sh.toml, "shell = true");
  REQUIRE_LINE(sh.toml, "command = \"for i in /path/*.txt; do cat $i; done\"");
  REQUIRE_LINE(sh.toml,
               "# flume: a1.sources.tailsource-1.shell = /bin/bash -c  (sluice runs a shell "
               "command with /bin/sh -c)");
  REQUIRE_LINE(sh.toml, "# flume: this source names no channel; sluice needs one");
}

TEST_CASE("flume import: user guide taildir source", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.sources.r1.type = TAILDIR\n"
      "a1.sources.r1.channels = c1\n"
      "a1.sources.r1.positionFile = /var/log/flume/taildir_position.json\n"
      "a1.sources.r1.filegroups = f1 f2\n"
      "a1.sources.r1.filegroups.f1 = /var/log/test1/example.log\n"
      "a1.sources.r1.headers.f1.headerKey1 = value1\n"
      "a1.sources.r1.filegroups.f2 = /var/log/test2/.*log.*\n"
      "a1.sources.r1.headers.f2.headerKey1 = value2\n"
      "a1.sources.r1.headers.f2.headerKey2 = value2-2\n"
      "a1.sources.r1.fileHeader = true\n"
      "a1.sources.r1.maxBatchCount = 1000\n");
  REQUIRE_LINE(tr.toml, "type = \"taildir\"");
  REQUIRE_LINE(tr.toml, "[sources.r1.groups.f1]");
  REQUIRE_LINE(tr.toml, "paths = [\"/var/log/test1/example.log\"]");
  REQUIRE_LINE(tr.toml, "headers = { headerKey1 = \"value1\" }");
  REQUIRE_LINE(tr.toml, "[sources.r1.groups.f2]");
  REQUIRE_LINE(tr.toml, "paths = [\"/var/log/test2/*log*\"]");
  REQUIRE_LINE(tr.toml, "headers = { headerKey1 = \"value2\", headerKey2 = \"value2-2\" }");
  REQUIRE_LINE(tr.toml, "file_header = \"file\"");
  CHECK(count(tr.toml, "# flume: a1.sources.r1.positionFile") == 1);
  CHECK(count(tr.toml, "# flume: a1.sources.r1.maxBatchCount") == 1);
  CHECK(tr.dropped == 2);
  // A file-name regex that has no glob is not guessed at.
  const auto re = translate(
      "a1.sources = r1\na1.sources.r1.type = TAILDIR\na1.sources.r1.channels = c1\n"
      "a1.sources.r1.filegroups = f1\na1.sources.r1.filegroups.f1 = /var/log/(a|b)\\\\.log\n");
  CHECK(count(re.toml, "# flume: a1.sources.r1.filegroups.f1 = /var/log/(a|b)\\.log") == 1);
  CHECK(count(re.toml, "\npaths =") == 0);
}

TEST_CASE("flume import: user guide spooling directory source", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.channels = ch-1\n"
      "a1.sources = src-1\n"
      "\n"
      "a1.sources.src-1.type = spooldir\n"
      "a1.sources.src-1.channels = ch-1\n"
      "a1.sources.src-1.spoolDir = /var/log/apache/flumeSpool\n"
      "a1.sources.src-1.fileHeader = true\n");
  REQUIRE_LINE(tr.toml, "[sources.src-1]");
  REQUIRE_LINE(tr.toml, "type = \"taildir\"");
  REQUIRE_LINE(tr.toml, "paths = [\"/var/log/apache/flumeSpool/*\"]");
  REQUIRE_LINE(tr.toml, "read_from = \"head\"");
  REQUIRE_LINE(tr.toml, "channel = \"ch-1\"");
  REQUIRE_LINE(tr.toml, "file_header = \"file\"");
  CHECK(count(tr.toml,
              "# flume: a1.sources.src-1.type = spooldir  (sluice has no "
              "spooling-directory source") == 1);
}

TEST_CASE("flume import: fileHeader fileHeaderKey and their absence", "[unit][import_flume]") {
  const std::string head =
      "a1.channels = c1\n"
      "a1.sources = r1\n"
      "a1.sources.r1.channels = c1\n";
  for (const std::string type : {"TAILDIR", "spooldir"}) {
    const std::string where = type == "TAILDIR" ? "a1.sources.r1.filegroups = f1\n"
                                                  "a1.sources.r1.filegroups.f1 = /var/log/a.log\n"
                                                : "a1.sources.r1.spoolDir = /var/spool\n";
    const std::string base = head + "a1.sources.r1.type = " + type + "\n" + where;
    const auto keyed = translate(base +
                                 "a1.sources.r1.fileHeader = true\n"
                                 "a1.sources.r1.fileHeaderKey = path\n");
    REQUIRE_LINE(keyed.toml, "file_header = \"path\"");
    CHECK(count(keyed.toml, "fileHeaderKey") == 0);
    const auto off = translate(base + "a1.sources.r1.fileHeader = false\n");
    REQUIRE_LINE(off.toml, "file_header = \"\"");
    // Flume adds no file header unless asked: nor does the translation.
    const auto absent = translate(base);
    REQUIRE_LINE(absent.toml, "file_header = \"\"");
  }
}

TEST_CASE("flume import: user guide avro http and netcat sources", "[unit][import_flume]") {
  const auto avro = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.sources.r1.type = avro\n"
      "a1.sources.r1.channels = c1\n"
      "a1.sources.r1.bind = 0.0.0.0\n"
      "a1.sources.r1.port = 4141\n");
  REQUIRE_LINE(avro.toml, "listen = \"0.0.0.0:4141\"");
  CHECK(avro.dropped == 0);
  const auto http = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.sources.r1.type = http\n"
      "a1.sources.r1.port = 5140\n"
      "a1.sources.r1.channels = c1\n"
      "a1.sources.r1.handler = org.example.rest.RestHandler\n"
      "a1.sources.r1.handler.nickname = random props\n"
      "a1.sources.r1.HttpConfiguration.sendServerVersion = false\n"
      "a1.sources.r1.ServerConnector.idleTimeout = 300\n");
  REQUIRE_LINE(http.toml, "type = \"http\"");
  REQUIRE_LINE(http.toml, "listen = \"0.0.0.0:5140\"");
  CHECK(count(http.toml, "# flume: a1.sources.r1.handler = org.example.rest.RestHandler") == 1);
  CHECK(http.dropped == 4);
  const auto nc = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.sources.r1.type = netcat\n"
      "a1.sources.r1.bind = 0.0.0.0\n"
      "a1.sources.r1.port = 6666\n"
      "a1.sources.r1.channels = c1\n");
  REQUIRE_LINE(nc.toml, "# [sources.r1] was a Flume netcat source; sluice has no equivalent");
  CHECK(count(nc.toml, "[sources.r1]\n") == 0);
  CHECK(nc.dropped == 4);
}

TEST_CASE("flume import: user guide memory and file channels", "[unit][import_flume]") {
  const auto mem = translate(
      "a1.channels = c1\n"
      "a1.channels.c1.type = memory\n"
      "a1.channels.c1.capacity = 10000\n"
      "a1.channels.c1.transactionCapacity = 10000\n"
      "a1.channels.c1.byteCapacityBufferPercentage = 20\n"
      "a1.channels.c1.byteCapacity = 800000\n");
  REQUIRE_LINE(mem.toml, "max_events = 10000");
  REQUIRE_LINE(mem.toml, "transaction_events = 10000");
  REQUIRE_LINE(mem.toml, "max_bytes = \"800000B\"");
  CHECK(count(mem.toml, "# flume: a1.channels.c1.byteCapacityBufferPercentage = 20") == 1);
  const auto file = translate(
      "a1.channels = c1\n"
      "a1.channels.c1.type = file\n"
      "a1.channels.c1.checkpointDir = /mnt/flume/checkpoint\n"
      "a1.channels.c1.dataDirs = /mnt/flume/data\n");
  REQUIRE_LINE(file.toml, "type = \"lmdb\"");
  REQUIRE_LINE(file.toml,
               "# flume: a1.channels.c1.dataDirs = /mnt/flume/data  (an lmdb channel lives in "
               "the agent's data_dir)");
  CHECK(file.dropped == 2);
}

TEST_CASE("flume import: user guide logger avro file_roll null and hdfs sinks",
          "[unit][import_flume]") {
  const auto tr = translate(
      "a1.channels = c1\n"
      "a1.sinks = k1 k2 k3 k4 k5\n"
      "a1.sinks.k1.type = logger\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k2.type = avro\n"
      "a1.sinks.k2.channel = c1\n"
      "a1.sinks.k2.hostname = 10.10.10.10\n"
      "a1.sinks.k2.port = 4545\n"
      "a1.sinks.k3.type = file_roll\n"
      "a1.sinks.k3.channel = c1\n"
      "a1.sinks.k3.sink.directory = /var/log/flume\n"
      "a1.sinks.k4.type = null\n"
      "a1.sinks.k4.channel = c1\n"
      "a1.sinks.k5.type = hdfs\n"
      "a1.sinks.k5.channel = c1\n"
      "a1.sinks.k5.hdfs.path = /flume/events/%y-%m-%d/%H%M/%S\n"
      "a1.sinks.k5.hdfs.filePrefix = events-\n"
      "a1.sinks.k5.hdfs.round = true\n"
      "a1.sinks.k5.hdfs.roundValue = 10\n"
      "a1.sinks.k5.hdfs.roundUnit = minute\n");
  REQUIRE_LINE(tr.toml, "type = \"stdout\"");
  REQUIRE_LINE(tr.toml, "address = \"10.10.10.10:4545\"");
  REQUIRE_LINE(tr.toml, "type = \"file\"");
  REQUIRE_LINE(tr.toml, "path = \"/var/log/flume/events.log\"");
  REQUIRE_LINE(tr.toml, "roll_interval = \"30s\"");
  REQUIRE_LINE(tr.toml, "type = \"null\"");
  REQUIRE_LINE(tr.toml, "# [sinks.k5] was a Flume 'hdfs' sink; sluice has no equivalent");
  CHECK(count(tr.toml, "# flume: a1.sinks.k5.") == 7);
  // Four sinks outside a group on one channel take turns in Flume: one load_balance group.
  REQUIRE_LINE(tr.toml, "[sink_groups.c1_sinks]");
  REQUIRE_LINE(tr.toml, "processor = \"load_balance\"");
  REQUIRE_LINE(tr.toml, "sinks = [\"k1\", \"k2\", \"k3\", \"k4\"]");
  CHECK(tr.dropped == 7);
}

TEST_CASE("flume import: user guide kafka and http sinks", "[unit][import_flume]") {
  const auto kafka = translate(
      "a1.sinks = k1\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink\n"
      "a1.sinks.k1.kafka.topic = mytopic\n"
      "a1.sinks.k1.kafka.bootstrap.servers = localhost:9092\n"
      "a1.sinks.k1.kafka.flumeBatchSize = 20\n"
      "a1.sinks.k1.kafka.producer.acks = 1\n"
      "a1.sinks.k1.kafka.producer.linger.ms = 1\n"
      "a1.sinks.k1.kafka.producer.compression.type = snappy\n"
      "a1.sinks.k1.kafka.producer.request.timeout.ms = 20000\n"
      "a1.sinks.k1.kafka.producer.max.request.size = 2097152\n"
      "a1.sinks.k1.kafka.producer.buffer.memory = 33554432\n");
  REQUIRE_LINE(kafka.toml, "type = \"kafka\"");
  REQUIRE_LINE(kafka.toml, "brokers = \"localhost:9092\"");
  REQUIRE_LINE(kafka.toml, "topic = \"mytopic\"");
  REQUIRE_LINE(kafka.toml, "batch_events = 20");
  REQUIRE_LINE(kafka.toml, "acks = \"1\"");
  REQUIRE_LINE(kafka.toml, "linger = \"1ms\"");
  REQUIRE_LINE(kafka.toml, "compression = \"snappy\"");
  REQUIRE_LINE(kafka.toml, "[sinks.k1.librdkafka]");
  REQUIRE_LINE(kafka.toml, "\"request.timeout.ms\" = \"20000\"");
  // Java-only producer properties are not passed on: librdkafka would refuse them.
  CHECK(count(kafka.toml,
              "# flume: a1.sinks.k1.kafka.producer.buffer.memory = 33554432  "
              "(librdkafka does not take it") == 1);
  CHECK(count(kafka.toml,
              "# flume: a1.sinks.k1.kafka.producer.max.request.size = 2097152  "
              "(librdkafka does not take it") == 1);
  CHECK(kafka.dropped == 2);
  const auto http = translate(
      "a1.channels = c1\n"
      "a1.sinks = k1\n"
      "a1.sinks.k1.type = http\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k1.endpoint = http://localhost:8080/someuri\n"
      "a1.sinks.k1.connectTimeout = 2000\n"
      "a1.sinks.k1.requestTimeout = 2000\n"
      "a1.sinks.k1.acceptHeader = application/json\n"
      "a1.sinks.k1.contentTypeHeader = application/json\n"
      "a1.sinks.k1.defaultBackoff = true\n"
      "a1.sinks.k1.defaultRollback = true\n"
      "a1.sinks.k1.defaultIncrementMetrics = false\n"
      "a1.sinks.k1.backoff.4XX = false\n"
      "a1.sinks.k1.rollback.4XX = false\n"
      "a1.sinks.k1.incrementMetrics.4XX = true\n"
      "a1.sinks.k1.backoff.200 = false\n"
      "a1.sinks.k1.rollback.200 = false\n"
      "a1.sinks.k1.incrementMetrics.200 = true\n");
  REQUIRE_LINE(http.toml, "type = \"http\"");
  REQUIRE_LINE(http.toml, "url = \"http://localhost:8080/someuri\"");
  REQUIRE_LINE(http.toml, "format = \"raw\"");
  REQUIRE_LINE(http.toml, "request_timeout = \"2s\"");
  REQUIRE_LINE(http.toml, "connect_timeout = \"2s\"");
  CHECK(http.dropped == 11);
}

TEST_CASE("flume import: user guide failover and load_balance sink groups",
          "[unit][import_flume]") {
  const std::string sinks =
      "a1.channels = c1\n"
      "a1.channels.c1.type = memory\n"
      "a1.sinks = k1 k2\n"
      "a1.sinks.k1.type = logger\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k2.type = null\n"
      "a1.sinks.k2.channel = c1\n";
  const auto fo = translate(sinks +
                            "a1.sinkgroups = g1\n"
                            "a1.sinkgroups.g1.sinks = k1 k2\n"
                            "a1.sinkgroups.g1.processor.type = failover\n"
                            "a1.sinkgroups.g1.processor.priority.k1 = 5\n"
                            "a1.sinkgroups.g1.processor.priority.k2 = 10\n"
                            "a1.sinkgroups.g1.processor.maxpenalty = 10000\n");
  REQUIRE_LINE(fo.toml, "[sink_groups.g1]");
  REQUIRE_LINE(fo.toml, "channel = \"c1\"");
  REQUIRE_LINE(fo.toml, "priority = { k1 = 5, k2 = 10 }");
  REQUIRE_LINE(fo.toml, "max_penalty = \"10s\"");
  CHECK(fo.dropped == 0);
  CHECK(check_errors(fo.toml).empty());
  const auto lb = translate(sinks +
                            "a1.sinkgroups = g1\n"
                            "a1.sinkgroups.g1.sinks = k1 k2\n"
                            "a1.sinkgroups.g1.processor.type = load_balance\n"
                            "a1.sinkgroups.g1.processor.backoff = true\n"
                            "a1.sinkgroups.g1.processor.selector = random\n");
  REQUIRE_LINE(lb.toml, "processor = \"load_balance\"");
  REQUIRE_LINE(lb.toml, "sinks = [\"k1\", \"k2\"]");
  REQUIRE_LINE(lb.toml, "selector = \"random\"");
  CHECK(lb.dropped == 0);
  CHECK(check_errors(lb.toml).empty());
}

TEST_CASE("flume import: user guide replicating and multiplexing selectors",
          "[unit][import_flume]") {
  const auto rep = translate(
      "a1.sources = r1\n"
      "a1.channels = c1 c2 c3\n"
      "a1.sources.r1.type = avro\n"
      "a1.sources.r1.port = 4141\n"
      "a1.sources.r1.selector.type = replicating\n"
      "a1.sources.r1.channels = c1 c2 c3\n"
      "a1.sources.r1.selector.optional = c3\n");
  REQUIRE_LINE(rep.toml, "channels = [\"c1\", \"c2\", \"c3\"]");
  CHECK(count(rep.toml, "# flume: a1.sources.r1.selector.optional = c3") == 1);
  const auto mux = translate(
      "a1.sources = r1\n"
      "a1.channels = c1 c2 c3 c4\n"
      "a1.sources.r1.type = avro\n"
      "a1.sources.r1.port = 4141\n"
      "a1.sources.r1.channels = c1 c2 c3 c4\n"
      "a1.sources.r1.selector.type = multiplexing\n"
      "a1.sources.r1.selector.header = state\n"
      "a1.sources.r1.selector.mapping.CZ = c1\n"
      "a1.sources.r1.selector.mapping.US = c2 c3\n"
      "a1.sources.r1.selector.default = c4\n");
  REQUIRE_LINE(mux.toml, "channel = \"c4\"");
  CHECK(count(mux.toml, "# flume: a1.sources.r1.selector.") == 4);
}

TEST_CASE("flume import: user guide interceptors", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.sources = r1\n"
      "a1.channels = c1\n"
      "a1.channels.c1.type = memory\n"
      "a1.sources.r1.channels = c1\n"
      "a1.sources.r1.type = exec\n"
      "a1.sources.r1.command = cat /var/log/app.log\n"
      "a1.sources.r1.interceptors = i1 i2 i3 i4 i5 i6\n"
      "a1.sources.r1.interceptors.i1.type = "
      "org.apache.flume.interceptor.HostInterceptor$Builder\n"
      "a1.sources.r1.interceptors.i1.preserveExisting = false\n"
      "a1.sources.r1.interceptors.i1.hostHeader = hostname\n"
      "a1.sources.r1.interceptors.i2.type = "
      "org.apache.flume.interceptor.TimestampInterceptor$Builder\n"
      "a1.sources.r1.interceptors.i3.type = static\n"
      "a1.sources.r1.interceptors.i3.key = datacenter\n"
      "a1.sources.r1.interceptors.i3.value = NEW_YORK\n"
      "a1.sources.r1.interceptors.i4.type = regex_filter\n"
      "a1.sources.r1.interceptors.i4.regex = ^DEBUG\n"
      "a1.sources.r1.interceptors.i4.excludeEvents = true\n"
      "a1.sources.r1.interceptors.i5.type = regex_extractor\n"
      "a1.sources.r1.interceptors.i5.regex = (\\\\d):(\\\\d):(\\\\d)\n"
      "a1.sources.r1.interceptors.i5.serializers = s1 s2 s3\n"
      "a1.sources.r1.interceptors.i5.serializers.s1.name = one\n"
      "a1.sources.r1.interceptors.i5.serializers.s2.name = two\n"
      "a1.sources.r1.interceptors.i5.serializers.s3.name = three\n"
      "a1.sources.r1.interceptors.i6.type = remove_header\n"
      "a1.sources.r1.interceptors.i6.withName = secret\n");
  REQUIRE_LINE(tr.toml, "[[sources.r1.interceptors]]  # flume interceptor i1");
  REQUIRE_LINE(tr.toml, "type = \"host\"");
  REQUIRE_LINE(tr.toml, "header = \"hostname\"");
  REQUIRE_LINE(tr.toml, "preserve_existing = false");
  REQUIRE_LINE(tr.toml, "type = \"timestamp\"");
  REQUIRE_LINE(tr.toml, "key = \"datacenter\"");
  REQUIRE_LINE(tr.toml, "value = \"NEW_YORK\"");
  REQUIRE_LINE(tr.toml, "type = \"regex_filter\"");
  REQUIRE_LINE(tr.toml, "regex = \"^DEBUG\"");
  REQUIRE_LINE(tr.toml, "exclude = true");
  REQUIRE_LINE(tr.toml, "type = \"regex_extract\"");
  REQUIRE_LINE(tr.toml, "regex = \"(\\\\d):(\\\\d):(\\\\d)\"");
  REQUIRE_LINE(tr.toml, "headers = [\"one\", \"two\", \"three\"]");
  CHECK(count(tr.toml, "# flume: a1.sources.r1.interceptors.i6.") == 2);
  CHECK(tr.dropped == 2);
  // The interceptors parse as sluice's: the source with a channel and a sink passes check.
  const std::string runnable = tr.toml + "\n[sinks.out]\ntype = \"null\"\nchannel = \"c1\"\n";
  INFO(check_errors(runnable));
  CHECK(check_errors(runnable).empty());
}

TEST_CASE("flume import: a full agent of translatable components passes sluice check",
          "[unit][import_flume]") {
  const std::string text =
      test::read_file(test::source_dir() + "/tests/data/flume/edge-agent.properties");
  const auto tr = translate(text);
  INFO(tr.toml);
  CHECK(check_errors(tr.toml).empty());
  REQUIRE_LINE(tr.toml, "type = \"lmdb\"");
  REQUIRE_LINE(tr.toml, "[sinks.kafka.librdkafka]");
  REQUIRE_LINE(tr.toml, "[sink_groups.out]");
  REQUIRE_LINE(tr.toml, "batch_events = 500");
}

TEST_CASE("flume import: a name listed twice is translated once", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.channels = c1 c1 c.2 c_2\n"
      "a1.channels.c1.type = memory\n"
      "a1.channels.c.2.type = memory\n"
      "a1.channels.c_2.type = memory\n"
      "a1.sinks = k1\n"
      "a1.sinks.k1.type = null\n"
      "a1.sinks.k1.channel = c1\n");
  CHECK(count(tr.toml, "[channels.c1]") == 1);
  CHECK(count(tr.toml, "[channels.c_2]") == 1);
  CHECK(count(tr.toml, "# flume: 'c1' in a1.channels is listed twice") == 1);
  CHECK(count(tr.toml, "# flume: 'c_2' in a1.channels is listed twice") == 1);
  // The settings of the left-out channel stay visible.
  CHECK(count(tr.toml, "# flume: a1.channels.c_2.type = memory") == 1);
}

TEST_CASE("flume import: a sink group over two channels is flagged", "[unit][import_flume]") {
  const auto tr = translate(
      "a1.channels = c1 c2\n"
      "a1.sinks = k1 k2\n"
      "a1.sinks.k1.type = null\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k2.type = null\n"
      "a1.sinks.k2.channel = c2\n"
      "a1.sinkgroups = g1\n"
      "a1.sinkgroups.g1.sinks = k1 k2\n"
      "a1.sinkgroups.g1.processor.type = failover\n");
  REQUIRE_LINE(tr.toml, "channel = \"c1\"");
  CHECK(count(tr.toml, "# flume: sink 'k2' reads channel 'c2', not 'c1'") == 1);
}

TEST_CASE("flume import: a DELIMITED serializer with several fields suggests a pattern",
          "[unit][import_flume]") {
  const auto tr = translate(
      "a1.sinks = k1\n"
      "a1.sinks.k1.type = com.aliyun.datahub.flume.sink.DatahubSink\n"
      "a1.sinks.k1.channel = c1\n"
      "a1.sinks.k1.datahub.accessId = id\n"
      "a1.sinks.k1.datahub.accessKey = key\n"
      "a1.sinks.k1.datahub.endPoint = https://dh.example\n"
      "a1.sinks.k1.datahub.project = proj\n"
      "a1.sinks.k1.datahub.topic = topic\n"
      "a1.sinks.k1.serializer = DELIMITED\n"
      "a1.sinks.k1.serializer.delimiter = |\n"
      "a1.sinks.k1.serializer.fieldnames = ts,user,action\n");
  REQUIRE_LINE(tr.toml, "access_id = \"id\"");
  REQUIRE_LINE(tr.toml, "record_type = \"tuple\"");
  REQUIRE_LINE(tr.toml, "fields = [\"ts\", \"user\", \"action\"]");
  REQUIRE_LINE(
      tr.toml,
      "# flume: a1.sinks.k1.serializer.delimiter = |  (sluice does not split the body here: "
      "give the source feeding this channel format = \"regex\", pattern = "
      "\"^(?<ts>(?:(?!\\\\|).)*)\\\\|(?<user>(?:(?!\\\\|).)*)\\\\|(?<action>.*)$\")");
}
