#pragma once

#include <simdjson.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

namespace sluice::test {

/// One request as tests/support/http_peer.py recorded it.
struct PeerRequest {
  long n = 0;
  std::string method, path, encoding, body, answer, decode_error;
  std::map<std::string, std::string> headers;  // names lower-case
  long raw_bytes = 0;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// tests/support/http_peer.py run as a child process on 127.0.0.1 (see the script for the
/// actions of `script`). Killed when destroyed; restart() brings it back on the same port.
class HttpPeer {
 public:
  explicit HttpPeer(std::string script = "", int port = 0, std::vector<std::string> extra_args = {})
      : extra_(std::move(extra_args)) {
    start(script, port);
  }

  const std::string& address() const { return address_; }
  int port() const { return port_; }
  std::string url(const std::string& path = "/in") const { return "http://" + address_ + path; }
  const std::string& out_path() const { return out_; }

  /// Kills the peer (connections reset) and waits for it to be gone.
  void kill() { child_.reset(); }
  /// Starts it again on the same port, keeping the record file.
  void restart(const std::string& script = "") { start(script, port_); }

  /// Replaces the remaining script ("503:1,400,ok").
  void script(const std::string& actions) { control("POST", "/_peer/script", actions); }
  void down() { control("POST", "/_peer/down", ""); }
  void up() { control("POST", "/_peer/up", ""); }
  /// One counter of /_peer/stats ("requests", "health", "connections", "events"), -1 on error.
  long stat(const char* name) const {
    HttpReply r = control("GET", "/_peer/stats", "");
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    if (r.status != 200 || p.parse(r.body).get(doc)) return -1;
    std::int64_t v = 0;
    if (doc[name].get_int64().get(v)) return -1;
    return static_cast<long>(v);
  }

  /// Every request recorded so far, in arrival order.
  std::vector<PeerRequest> requests() const {
    std::vector<PeerRequest> out;
    simdjson::dom::parser p;
    for (const std::string& line : read_lines(out_)) {
      simdjson::dom::element e;
      if (line.empty() || p.parse(line).get(e)) continue;
      PeerRequest r;
      r.n = static_cast<long>(e["n"].get_int64().value_unsafe());
      r.method = std::string(e["method"].get_string().value_unsafe());
      r.path = std::string(e["path"].get_string().value_unsafe());
      r.encoding = std::string(e["encoding"].get_string().value_unsafe());
      r.answer = std::string(e["answer"].get_string().value_unsafe());
      r.raw_bytes = static_cast<long>(e["raw_bytes"].get_int64().value_unsafe());
      std::string_view s;
      if (!e["body"].get_string().get(s)) r.body = std::string(s);
      if (!e["decode_error"].get_string().get(s)) r.decode_error = std::string(s);
      simdjson::dom::object h;
      if (!e["headers"].get_object().get(h)) {
        for (auto [k, v] : h) {
          std::string_view vs;
          if (!v.get_string().get(vs)) r.headers[std::string(k)] = std::string(vs);
        }
      }
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  void start(const std::string& script, int port) {
    const std::string addr_file = dir_.file("peer.addr");
    ::unlink(addr_file.c_str());
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     source_dir() + "/tests/support/http_peer.py",
                                     "--addr-file",
                                     addr_file,
                                     "--out",
                                     out_,
                                     "--port",
                                     std::to_string(port)};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    if (!script.empty()) {
      argv.push_back("--script");
      argv.push_back(script);
    }
    child_ = std::make_unique<ChildProcess>(argv, dir_.file("peer.log"));
    eventually(10s, [&] {
      std::string a = read_file(addr_file);
      if (a.empty() || a.back() != '\n') return false;
      address_ = a.substr(0, a.size() - 1);
      return true;
    });
    port_ = std::stoi(address_.substr(address_.rfind(':') + 1));
  }
  HttpReply control(const char* method, const char* path, const std::string& body) const {
    std::string req = std::string(method) + " " + path +
                      " HTTP/1.1\r\nHost: peer\r\nConnection: close\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body;
    return http_request(address_, req);
  }

  std::vector<std::string> extra_;
  TempDir dir_;
  std::string out_ = dir_.file("requests.jsonl");
  std::unique_ptr<ChildProcess> child_;
  std::string address_;
  int port_ = 0;
};

}  // namespace sluice::test
