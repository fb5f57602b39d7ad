// Helpers shared by the tiered-aggregation integration tests (tier_chain_test.cc,
// tier_ha_test.cc): conf/ files rendered with test values, access-log lines with visitors and
// sequence numbers, and reading the collectors' JSON rows.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/agent_process.h"

namespace sluice::test::tier {

// The conf/ file with its deployment values replaced by the test's: every `from` must be present
// (a changed example fails here instead of silently running something else) and is replaced
// everywhere.
inline std::string render(const std::string& example, const std::string& out,
                          const std::vector<std::pair<std::string, std::string>>& replace) {
  std::string text = read_file(source_dir() + "/conf/" + example);
  for (const auto& [from, to] : replace) {
    INFO(example << ": " << from);
    REQUIRE(text.find(from) != std::string::npos);
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
  }
  write_file(out, text);
  return out;
}

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// The value of `"key":` in a flat JSON object (strings unquoted); "" if absent.
inline std::string json_value(std::string_view obj, std::string_view key) {
  const std::string k = "\"" + std::string(key) + "\":";
  const auto at = obj.find(k);
  if (at == std::string_view::npos) return "";
  std::size_t p = at + k.size();
  if (p < obj.size() && obj[p] == '"') {
    const auto end = obj.find('"', p + 1);
    return std::string(obj.substr(p + 1, end - p - 1));
  }
  std::size_t end = p;
  while (end < obj.size() && obj[end] != ',' && obj[end] != '}') ++end;
  return std::string(obj.substr(p, end - p));
}

// A JSON number as written, or -1 (null, absent).
inline long number(const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  return text.empty() || *end != '\0' ? -1 : v;
}

struct Line {
  int second;  // event time, seconds after 2026-01-01T00:00:00Z
  std::string host, method, path;
  long seq;
};

inline std::string combined(const Line& l) {
  char t[64];
  std::snprintf(t, sizeof t, "01/Jan/2026:00:%02d:%02d +0000", l.second / 60, l.second % 60);
  return l.host + " - - [" + t + "] \"" + l.method + " " + l.path + " HTTP/1.1\" 200 512 \"-\" " +
         "\"bench/1.0 seq=" + std::to_string(l.seq) + "\"\n";
}

inline void append(const std::string& path, const std::vector<Line>& lines) {
  std::string text;
  for (const Line& l : lines) text += combined(l);
  FILE* f = std::fopen(path.c_str(), "a");
  REQUIRE(f != nullptr);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Lines of one edge for the given seconds, in time order: visitors 0..199 are shared by every
// edge, visitors 1000 * (edge + 1) + n only visit this edge; one line in ten is a POST (not
// counted: the query keeps GETs).
inline std::vector<Line> lines_for(int edge, int first_second, int last_second,
                                   std::mt19937_64& rng, long& seq) {
  std::vector<Line> out;
  for (int s = first_second; s <= last_second; ++s) {
    const int n = 10 + static_cast<int>(rng() % 10);
    for (int k = 0; k < n; ++k) {
      Line l;
      l.second = s;
      const long visitor = rng() % 3 == 0 ? 1000L * (edge + 1) + static_cast<long>(rng() % 50)
                                          : static_cast<long>(rng() % 200);
      l.host = "10." + std::to_string(visitor / 65536) + "." + std::to_string(visitor / 256 % 256) +
               "." + std::to_string(visitor % 256);
      l.method = rng() % 10 == 0 ? "POST" : "GET";
      l.path = "/p" + std::to_string(rng() % 4);
      l.seq = seq++;
      out.push_back(l);
    }
  }
  return out;
}

inline std::string window_text(int second) {
  char t[64];
  std::snprintf(t, sizeof t, "2026-01-01T00:%02d:%02d.000Z", second / 60, second % 60);
  return t;
}

}  // namespace sluice::test::tier
