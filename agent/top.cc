#include "agent/top.h"

#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <simdjson.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "agent/agent_config.h"
#include "agent/registry.h"

namespace sluice::top {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The kind of component a metric describes, from its name.
std::string_view kind_of(std::string_view metric) {
  if (metric.rfind("sluice_source_", 0) == 0 || metric.rfind("sluice_taildir_", 0) == 0)
    return "source";
  if (metric.rfind("sluice_channel_", 0) == 0) return "channel";
  if (metric.rfind("sluice_group_", 0) == 0) return "sink_group";
  if (metric.rfind("sluice_sink_", 0) == 0) return "sink";
  return "";
}

std::string fit(std::string s, std::size_t w) {
  if (s.size() > w) {
    s.resize(w);
    if (w > 0) s.back() = '~';  // cut: say so
  }
  return s;
}

std::string count_text(double v) {
  if (std::isnan(v)) return "-";
  const double a = std::fabs(v);
  if (a < 10000) return fmt::format("{:.0f}", v);
  if (a < 10e6) return fmt::format("{:.1f}k", v / 1e3);
  if (a < 10e9) return fmt::format("{:.1f}M", v / 1e6);
  return fmt::format("{:.1f}G", v / 1e9);
}

std::string rate_text(double v) {
  if (std::isnan(v)) return "-";
  if (v < 100 && v != std::floor(v)) return fmt::format("{:.1f}", v);
  return count_text(v);
}

std::string bytes_text(double v) {
  if (std::isnan(v)) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f}B", v) : fmt::format("{:.1f}{}", v, units[u]);
}

std::string pct_text(double part, double whole) {
  if (std::isnan(part) || std::isnan(whole) || whole <= 0) return "-";
  return fmt::format("{:.0f}%", 100.0 * part / whole);
}

double total(const Row& r, const std::string& key) {
  auto it = r.totals.find(key);
  return it == r.totals.end() ? kNaN : it->second;
}

double sum(const Row& r, std::initializer_list<const char*> keys) {
  double s = kNaN;
  for (const char* k : keys) {
    const double v = total(r, k);
    if (!std::isnan(v)) s = std::isnan(s) ? v : s + v;
  }
  return s;
}

const Row* find_row(const Snapshot& s, std::string_view kind, std::string_view name) {
  for (const auto& r : s.rows) {
    if (r.kind == kind && r.name == name) return &r;
  }
  return nullptr;
}

// Per-second change of a counter between two snapshots; NaN when unknown or reset.
double rate(const Snapshot* before, const Snapshot& now, const Row& r, const std::string& key) {
  if (before == nullptr || now.at_ms <= before->at_ms) return kNaN;
  const Row* b = find_row(*before, r.kind, r.name);
  if (b == nullptr) return kNaN;
  const double x = total(*b, key), y = total(r, key);
  if (std::isnan(x) || std::isnan(y) || y < x) return kNaN;
  return (y - x) * 1000.0 / (now.at_ms - before->at_ms);
}

}  // namespace

std::vector<Sample> parse_metrics(std::string_view text) {
  std::vector<Sample> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line.front() == '#') continue;
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        std::string key(line.substr(i, eq - i));
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        s.labels.emplace(std::move(key), std::move(value));
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size()) continue;
    const std::string number(line.substr(i, line.find(' ', i) - i));
    char* stop = nullptr;
    s.value = std::strtod(number.c_str(), &stop);
    if (stop == number.c_str()) continue;
    out.push_back(std::move(s));
  }
  return out;
}

Result<Snapshot> make_snapshot(std::string_view status_json, std::string_view metrics_text,
                               double at_ms) {
  Snapshot snap;
  snap.at_ms = at_ms;
  simdjson::dom::parser parser;
  simdjson::padded_string padded(status_json);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS) {
    return Status(Errc::invalid_data, "/api/v1/status is not JSON");
  }
  auto str = [](simdjson::dom::element e, const char* key) {
    std::string_view v;
    return e[key].get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
  };
  auto num = [](simdjson::dom::element e, const char* key) {
    double d = 0;
    std::uint64_t u = 0;
    if (e[key].get(u) == simdjson::SUCCESS) return static_cast<double>(u);
    if (e[key].get(d) == simdjson::SUCCESS) return d;
    return kNaN;
  };
  simdjson::dom::element agent;
  if (doc["agent"].get(agent) == simdjson::SUCCESS) {
    snap.agent = str(agent, "name");
    snap.version = str(agent, "version");
    snap.state = str(agent, "state");
    const double up = num(agent, "uptime_s");
    snap.uptime_s = std::isnan(up) ? 0 : static_cast<std::uint64_t>(up);
  }
  simdjson::dom::array comps;
  if (doc["components"].get(comps) != simdjson::SUCCESS) {
    return Status(Errc::invalid_data, "/api/v1/status has no components");
  }
  for (simdjson::dom::element c : comps) {
    Row r;
    r.kind = str(c, "kind");
    r.name = str(c, "name");
    r.type = str(c, "type");
    r.state = str(c, "state");
    if (r.kind == "source") {
      const double safe = num(c, "safe_seq"), last = num(c, "last_seq");
      r.pending = std::isnan(safe) || std::isnan(last) ? kNaN : last - safe;
    } else if (r.kind == "channel") {
      r.totals["events"] = num(c, "events");
      r.totals["bytes"] = num(c, "bytes");
    } else if (r.kind == "sink_group") {
      r.active_sink = str(c, "active_sink");
      r.in_flight = num(c, "in_flight");
    }
    snap.rows.push_back(std::move(r));
  }
  for (auto& s : parse_metrics(metrics_text)) {
    if (s.name.size() > 7 && s.name.compare(s.name.size() - 7, 7, "_bucket") == 0) continue;
    const std::string_view kind = kind_of(s.name);
    auto comp = s.labels.find("component");
    if (kind.empty() || comp == s.labels.end()) continue;
    Row* row = nullptr;
    for (auto& r : snap.rows) {
      if (r.kind == kind && r.name == comp->second) row = &r;
    }
    if (row == nullptr) continue;
    if (s.name == "sluice_group_active_sink") {
      auto sink = s.labels.find("sink");
      if (sink != s.labels.end()) row->members.push_back(sink->second);
      continue;
    }
    std::string key = s.name;
    if (auto o = s.labels.find("outcome"); o != s.labels.end()) key += ":" + o->second;
    row->totals[key] += s.value;
  }
  return snap;
}

std::vector<std::string> render(const Snapshot* before, const Snapshot& now, std::string_view admin,
                                std::size_t width, SortBy sort) {
  std::vector<std::string> lines;
  auto add = [&](std::string l) { lines.push_back(fit(std::move(l), width)); };
  const std::uint64_t up = now.uptime_s;
  add(fmt::format("sluice top: {} {} {}, up {}h{:02}m{:02}s, admin {}", now.agent, now.version,
                  now.state, up / 3600, up / 60 % 60, up % 60, admin));
  auto sorted = [&](std::string_view kind, const std::function<double(const Row&)>& key) {
    std::vector<const Row*> rows;
    for (const auto& r : now.rows) {
      if (r.kind == kind) rows.push_back(&r);
    }
    std::stable_sort(rows.begin(), rows.end(), [&](const Row* a, const Row* b) {
      if (sort == SortBy::rate) {
        const double x = key(*a), y = key(*b);
        const double xa = std::isnan(x) ? -1 : x, ya = std::isnan(y) ? -1 : y;
        if (xa != ya) return xa > ya;
      }
      return a->name < b->name;
    });
    return rows;
  };
  auto sink_ok_rate = [&](const Row& r) {
    return rate(before, now, r, "sluice_sink_events_total:ok");
  };

  const auto sources = sorted(
      "source", [&](const Row& r) { return rate(before, now, r, "sluice_source_events_total"); });
  if (!sources.empty()) {
    add("");
    add(fmt::format("{:<16} {:<9} {:<9} {:>8} {:>9} {:>6} {:>5} {:>9}", "SOURCE", "TYPE", "STATE",
                    "IN/s", "BYTES/s", "ERRS", "PEND", "LAG"));
    for (const Row* r : sources) {
      const double errs =
          sum(*r, {"sluice_source_parse_errors_total", "sluice_source_timestamp_errors_total",
                   "sluice_taildir_errors_total"});
      const double lag = total(*r, "sluice_taildir_lag_bytes");
      add(fmt::format("{:<16} {:<9} {:<9} {:>8} {:>9} {:>6} {:>5} {:>9}", fit(r->name, 16),
                      fit(r->type, 9), fit(r->state, 9),
                      rate_text(rate(before, now, *r, "sluice_source_events_total")),
                      bytes_text(rate(before, now, *r, "sluice_source_bytes_total")),
                      count_text(errs), count_text(r->pending), bytes_text(lag)));
    }
  }
  const auto channels = sorted("channel", [&](const Row& r) {
    return rate(before, now, r, "sluice_channel_put_events_total");
  });
  if (!channels.empty()) {
    add("");
    add(fmt::format("{:<14} {:<7} {:>8} {:>8} {:>8} {:>5} {:>8} {:>5} {:>5}", "CHANNEL", "TYPE",
                    "IN/s", "OUT/s", "EVENTS", "%EV", "BYTES", "%B", "BP/s"));
    for (const Row* r : channels) {
      const double ev = total(*r, "events"), by = total(*r, "bytes");
      add(fmt::format("{:<14} {:<7} {:>8} {:>8} {:>8} {:>5} {:>8} {:>5} {:>5}", fit(r->name, 14),
                      fit(r->type, 7),
                      rate_text(rate(before, now, *r, "sluice_channel_put_events_total")),
                      rate_text(rate(before, now, *r, "sluice_channel_committed_events_total")),
                      count_text(ev), pct_text(ev, total(*r, "sluice_channel_capacity_events")),
                      bytes_text(by), pct_text(by, total(*r, "sluice_channel_capacity_bytes")),
                      rate_text(rate(before, now, *r, "sluice_channel_backpressure_total"))));
    }
  }
  auto group_rate = [&](const Row& g) {
    double s = kNaN;
    for (const auto& m : g.members) {
      const Row* sink = find_row(now, "sink", m);
      const double v = sink == nullptr ? kNaN : sink_ok_rate(*sink);
      if (!std::isnan(v)) s = std::isnan(s) ? v : s + v;
    }
    return s;
  };
  const auto groups = sorted("sink_group", group_rate);
  if (!groups.empty()) {
    add("");
    add(fmt::format("{:<16} {:<11} {:<9} {:>8} {:<16} {:>8} {:>5}", "SINK GROUP", "TYPE", "STATE",
                    "OUT/s", "ACTIVE", "SWITCHES", "INFL"));
    for (const Row* r : groups) {
      add(fmt::format("{:<16} {:<11} {:<9} {:>8} {:<16} {:>8} {:>5}", fit(r->name, 16),
                      fit(r->type, 11), fit(r->state, 9), rate_text(group_rate(*r)),
                      fit(r->active_sink.empty() ? "-" : r->active_sink, 16),
                      count_text(total(*r, "sluice_group_switches_total")),
                      count_text(r->in_flight)));
    }
  }
  const auto sinks = sorted("sink", sink_ok_rate);
  if (!sinks.empty()) {
    add("");
    add(fmt::format("{:<16} {:<9} {:<9} {:>8} {:>9} {:>7} {:>7} {:>6}", "SINK", "TYPE", "STATE",
                    "OUT/s", "BYTES/s", "RETRY", "REJECT", "ERRS"));
    for (const Row* r : sinks) {
      add(fmt::format(
          "{:<16} {:<9} {:<9} {:>8} {:>9} {:>7} {:>7} {:>6}", fit(r->name, 16), fit(r->type, 9),
          fit(r->state, 9), rate_text(sink_ok_rate(*r)),
          bytes_text(rate(before, now, *r, "sluice_sink_bytes_total")),
          count_text(total(*r, "sluice_sink_events_total:retry")),
          count_text(total(*r, "sluice_sink_events_total:reject")),
          count_text(sum(*r, {"sluice_sink_timeouts_total", "sluice_sink_write_errors_total"}))));
    }
  }
  add("");
  add("PEND: batches put, not yet safe. BP/s: puts refused by a full channel.");
  add("Not exported by the agent: oldest event age, back-pressure per source.");
  return lines;
}

Result<std::string> http_get(const std::string& address, const std::string& path, int timeout_ms) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return Status(Errc::invalid_data, address + " is not HOST:PORT");
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return Status(Errc::io, "cannot resolve " + address);
  }
  const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return Status(Errc::io, std::string("socket: ") + std::strerror(errno));
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Status(Errc::io, "cannot connect to " + address + ": " + why);
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + address +
                          "\r\nConnection: close\r\nUser-Agent: sluice-top\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return Status(Errc::io, "cannot send to " + address);
  }
  std::string resp;
  char buf[65536];
  std::size_t body_at = std::string::npos, length = std::string::npos;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return Status(Errc::io, "no answer from " + address + " within the timeout");
    }
    if (n == 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
    if (body_at == std::string::npos) {
      const auto h = resp.find("\r\n\r\n");
      if (h != std::string::npos) {
        body_at = h + 4;
        std::string head = resp.substr(0, h);
        for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto cl = head.find("\r\ncontent-length:");
        if (cl != std::string::npos) length = std::strtoull(head.c_str() + cl + 17, nullptr, 10);
      }
    }
    if (body_at != std::string::npos && length != std::string::npos &&
        resp.size() >= body_at + length)
      break;
    if (resp.size() > (64u << 20)) break;
  }
  ::close(fd);
  if (body_at == std::string::npos || resp.rfind("HTTP/1.", 0) != 0) {
    return Status(Errc::io, "bad HTTP answer from " + address);
  }
  const int status = std::atoi(resp.c_str() + 9);
  if (status != 200) {
    return Status(Errc::io, fmt::format("{}{} answered {}", address, path, status));
  }
  std::string body = resp.substr(body_at);
  if (length != std::string::npos && body.size() > length) body.resize(length);
  return body;
}

namespace {

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_resized = 0;
termios g_saved{};
bool g_raw = false;

void on_signal(int) { g_stop = 1; }
void on_winch(int) { g_resized = 1; }

void restore_terminal() {
  if (!g_raw) return;
  ::tcsetattr(STDIN_FILENO, TCSANOW, &g_saved);
  const char leave[] = "\x1b[?25h\x1b[?1049l";
  [[maybe_unused]] auto n = ::write(STDOUT_FILENO, leave, sizeof leave - 1);
  g_raw = false;
}

std::size_t terminal_width() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

Result<std::string> find_admin(const Options& o) {
  if (!o.admin.empty()) return o.admin;
  if (o.config_path.empty()) return std::string("127.0.0.1:24280");
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = load_config(o.config_path, registry, errors);
  if (!cfg) {
    std::string msg = "cannot read the configuration";
    for (const auto& e : errors) msg += "\n" + e.str();
    return Status(Errc::config, msg);
  }
  std::ifstream in(cfg->agent.data_dir + "/admin.addr");
  std::string addr;
  if (in && std::getline(in, addr) && !addr.empty()) return addr;
  if (cfg->agent.admin.size() > 2 && cfg->agent.admin.substr(cfg->agent.admin.size() - 2) == ":0") {
    return Status(Errc::unavailable, "the agent's admin port is chosen at start and " +
                                         cfg->agent.data_dir +
                                         "/admin.addr does not exist: is the agent running?");
  }
  return cfg->agent.admin;
}

Result<Snapshot> scrape(const std::string& admin) {
  auto status = http_get(admin, "/api/v1/status", 2000);
  if (!status) return status.error();
  auto metrics = http_get(admin, "/metrics", 2000);
  if (!metrics) return metrics.error();
  return make_snapshot(*status, *metrics, now_ms());
}

}  // namespace

int run(const Options& o) {
  auto admin = find_admin(o);
  if (!admin) {
    std::fprintf(stderr, "sluice top: %s\n", admin.error().message().c_str());
    return 2;
  }
  const auto interval = std::chrono::milliseconds(static_cast<int>(o.interval_s * 1000));
  if (o.once) {
    // Two scrapes an interval apart, so that the rates are measured, not guessed.
    auto first = scrape(*admin);
    if (!first) {
      std::fprintf(stderr, "sluice top: %s\n", first.error().message().c_str());
      return 1;
    }
    std::this_thread::sleep_for(interval);
    auto second = scrape(*admin);
    if (!second) {
      std::fprintf(stderr, "sluice top: %s\n", second.error().message().c_str());
      return 1;
    }
    for (const auto& l : render(&*first, *second, *admin, 80, SortBy::name))
      std::printf("%s\n", l.c_str());
    return 0;
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  struct sigaction sw {};
  sw.sa_handler = on_winch;
  sigemptyset(&sw.sa_mask);
  ::sigaction(SIGWINCH, &sw, nullptr);
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  if (tty && ::tcgetattr(STDIN_FILENO, &g_saved) == 0) {
    termios raw = g_saved;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays: Ctrl-C still stops
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
      g_raw = true;
      std::atexit(restore_terminal);
      std::fputs("\x1b[?1049h\x1b[?25l", stdout);
    }
  }
  SortBy sort = SortBy::name;
  bool stdin_open = true;
  std::optional<Snapshot> before;
  std::string error;
  while (g_stop == 0) {
    auto snap = scrape(*admin);
    std::vector<std::string> lines;
    const std::size_t width = terminal_width();
    if (snap) {
      lines = render(before ? &*before : nullptr, *snap, *admin, width, sort);
      before = std::move(*snap);
    } else {
      lines.push_back(fit("sluice top: " + snap.error().message() + " (retrying)", width));
    }
    lines.push_back(
        fit(fmt::format("q quit, s sort by {} (now by {})", sort == SortBy::name ? "rate" : "name",
                        sort == SortBy::name ? "name" : "rate"),
            width));
    std::string frame = "\x1b[H";
    for (const auto& l : lines) frame += l + "\x1b[K\r\n";
    frame += "\x1b[J";
    std::fwrite(frame.data(), 1, frame.size(), stdout);
    std::fflush(stdout);
    // Wait for the next refresh, or a key.
    const auto until = std::chrono::steady_clock::now() + interval;
    bool redraw = false;
    while (g_stop == 0 && !redraw) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            until - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) break;
      pollfd p{stdin_open ? STDIN_FILENO : -1, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) {
        if (g_resized != 0) {
          g_resized = 0;
          redraw = true;
        }
        continue;
      }
      if (r <= 0) continue;
      char c = 0;
      const ssize_t n = ::read(STDIN_FILENO, &c, 1);
      if (n == 0) {  // stdin closed: nobody can press q; keep refreshing until a signal
        stdin_open = false;
        continue;
      }
      if (n < 0) continue;
      if (c == 'q' || c == 'Q') g_stop = 1;
      if (c == 's' || c == 'S') {
        sort = sort == SortBy::name ? SortBy::rate : SortBy::name;
        redraw = true;
      }
    }
  }
  restore_terminal();
  return 0;
}

}  // namespace sluice::top
