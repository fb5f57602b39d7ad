#pragma once

#include <simdjson.h>

#include <string>
#include <vector>

#include "tests/support/agent_process.h"

namespace sluice::test {

/// tests/support/datahub_peer.py run as a child: a local DataHub on 127.0.0.1 that checks every
/// request (signature, body, deflate), fails on demand and records what it accepted.
class DataHubPeer {
 public:
  struct Options {
    int shards = 2;
    std::string record_type = "blob";
    std::string schema;  // "name:type,..." for tuple topics
    bool count_only = false;
    std::string access_id = "test-id", access_key = "test-key";
  };
  explicit DataHubPeer(const Options& o) {
    std::vector<std::string> argv = {
        "/usr/bin/python3", source_dir() + "/tests/support/datahub_peer.py",
        "--addr-file",      dir_.file("addr"),
        "--shards",         std::to_string(o.shards),
        "--record-type",    o.record_type,
        "--access-id",      o.access_id,
        "--access-key",     o.access_key};
    if (!o.schema.empty()) {
      argv.push_back("--schema");
      argv.push_back(o.schema);
    }
    if (o.count_only) argv.push_back("--count-only");
    child_ = std::make_unique<ChildProcess>(argv, dir_.file("peer.log"));
    eventually(10s, [&] {
      std::string a = read_file(dir_.file("addr"));
      if (a.empty() || a.back() != '\n') return false;
      a.pop_back();
      address_ = a;
      return true;
    });
  }
  DataHubPeer() : DataHubPeer(Options{}) {}

  const std::string& address() const { return address_; }
  std::string endpoint() const { return "http://" + address_; }
  std::string log() const { return read_file(dir_.file("peer.log")); }

  /// POST /_control with a JSON object (see datahub_peer.py).
  bool control(const std::string& json) {
    const std::string req =
        "POST /_control HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        "Content-Length: " +
        std::to_string(json.size()) + "\r\n\r\n" + json;
    return http_request(address_, req).status == 200;
  }
  std::string stats_json() { return http_get(address_, "/_stats").body; }
  /// A top-level integer counter of /_stats (-1 if absent).
  long stat(const std::string& name) {
    const std::string s = stats_json();
    const auto at = s.find("\"" + name + "\": ");
    if (at == std::string::npos) return -1;
    return std::stol(s.substr(at + name.size() + 4));
  }
  /// The data of every accepted record, in arrival order.
  std::vector<std::string> records() { return fetch(false); }
  /// The shard of every accepted record, in arrival order.
  std::vector<std::string> shards() { return fetch(true); }

 private:
  std::vector<std::string> fetch(bool shard) {
    std::vector<std::string> out;
    const std::string body = http_get(address_, "/_records").body;
    simdjson::padded_string json(body);
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document doc;
    simdjson::ondemand::array arr;
    if (parser.iterate(json).get(doc) || doc.get_array().get(arr)) return out;
    for (auto item : arr) {
      std::string_view v;
      if (item.find_field(shard ? "shard" : "data").get_string().get(v)) return out;
      out.emplace_back(v);
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> child_;
  std::string address_;
};

}  // namespace sluice::test
