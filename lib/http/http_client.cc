#include "lib/http/http_client.h"

#include <curl/curl.h>
#include <strings.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "lib/core/assert.h"
#include "lib/core/log.h"

namespace sluice::http {

namespace {

constexpr std::size_t kMaxPooledEasy = 64;

std::once_flag g_curl_init;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::string_view ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

// One request, from submit() to its callback.
struct Transfer {
  RequestId id = 0;
  ClientRequest request;
  ResponseCallback done;
  ClientResponse response;
  TimePoint submitted{};
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  bool in_multi = false;
  std::size_t max_body = 0;
  char errbuf[CURL_ERROR_SIZE] = {};
};

// A socket curl asked us to watch. The uv_poll_t is heap-allocated on its own and freed by
// libuv's close callback, so it never points back into a destroyed Client.
struct SocketWatch {
  uv_poll_t* poll = nullptr;
  curl_socket_t fd = CURL_SOCKET_BAD;
};

struct Client::Impl {
  Loop& loop;
  ClientOptions options;
  CURLM* multi = nullptr;
  uv_timer_t* timer = nullptr;
  std::unordered_map<RequestId, std::unique_ptr<Transfer>> transfers;
  std::deque<RequestId> queue;                      // submitted, not yet handed to curl
  std::vector<std::unique_ptr<Transfer>> finished;  // answered, callbacks not yet run
  std::vector<CURL*> easy_pool;
  std::unordered_map<curl_socket_t, SocketWatch*> sockets;
  RequestId next_id = 0;
  std::size_t active = 0;  // transfers in the multi handle
  std::uint64_t connects = 0;
  bool closed = false;
  bool dispatch_scheduled = false;
  bool in_curl = false;       // inside a curl_multi_* call: do not re-enter it
  bool* destroyed = nullptr;  // set by ~Impl while callbacks are being dispatched

  Impl(Loop& l, ClientOptions o) : loop(l), options(std::move(o)) {}
  ~Impl();

  Status init();
  void start_queued();
  Status configure(Transfer& t);
  void on_socket_event(curl_socket_t fd, int status, int events);
  void on_timeout();
  void drain_messages();
  void finish(std::unique_ptr<Transfer> t);
  void schedule_dispatch();
  void dispatch();
  void release_easy(Transfer& t);
  void shutdown();

  static int socket_cb(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int timer_cb(CURLM* multi, long timeout_ms, void* userp);
  static size_t write_cb(char* data, size_t size, size_t n, void* userp);
  static size_t header_cb(char* data, size_t size, size_t n, void* userp);
};

Status Client::Impl::init() {
  CURLcode gc = CURLE_OK;
  std::call_once(g_curl_init, [&] { gc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (gc != CURLE_OK) {
    return Status(Errc::io, std::string("curl_global_init: ") + curl_easy_strerror(gc));
  }
  multi = curl_multi_init();
  if (multi == nullptr) return Status(Errc::io, "curl_multi_init failed");
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::socket_cb);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::timer_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  // Keep one idle connection per possible transfer so that a steady load reuses them all.
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(options.max_in_flight));
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  timer = new uv_timer_t;
  int rc = uv_timer_init(loop.uv(), timer);
  if (rc != 0) {
    delete timer;
    timer = nullptr;
    return Status::from_uv(rc, "uv_timer_init");
  }
  timer->data = this;
  return Status();
}

Client::Impl::~Impl() {
  if (destroyed != nullptr) *destroyed = true;
  shutdown();
  loop.cancel_deferred(this);
}

void Client::Impl::shutdown() {
  if (multi != nullptr) {
    in_curl = true;
    for (auto& [id, t] : transfers) {
      if (t->in_multi) curl_multi_remove_handle(multi, t->easy);
      release_easy(*t);
    }
    for (auto& t : finished) release_easy(*t);
    transfers.clear();
    finished.clear();
    queue.clear();
    active = 0;
    for (CURL* e : easy_pool) curl_easy_cleanup(e);
    easy_pool.clear();
    // Closes the cached connections; curl may still call socket_cb (REMOVE) from here.
    curl_multi_cleanup(multi);
    multi = nullptr;
    in_curl = false;
  }
  for (auto& [fd, w] : sockets) {
    close_and_delete(w->poll);
    delete w;
  }
  sockets.clear();
  if (timer != nullptr) {
    timer->data = nullptr;
    close_and_delete(timer);
    timer = nullptr;
  }
}

void Client::Impl::release_easy(Transfer& t) {
  if (t.headers != nullptr) {
    curl_slist_free_all(t.headers);
    t.headers = nullptr;
  }
  if (t.easy == nullptr) return;
  if (easy_pool.size() < kMaxPooledEasy && !closed && multi != nullptr) {
    curl_easy_reset(t.easy);
    easy_pool.push_back(t.easy);
  } else {
    curl_easy_cleanup(t.easy);
  }
  t.easy = nullptr;
}

Status Client::Impl::configure(Transfer& t) {
  CURL* e = nullptr;
  if (!easy_pool.empty()) {
    e = easy_pool.back();
    easy_pool.pop_back();
  } else {
    e = curl_easy_init();
    if (e == nullptr) return Status(Errc::io, "curl_easy_init failed");
  }
  t.easy = e;
  const ClientOptions& o = options;
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(e, CURLOPT_URL, t.request.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  const auto timeout = t.request.timeout.count() > 0 ? t.request.timeout : o.request_timeout;
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(e, CURLOPT_USERAGENT, o.user_agent.c_str());
  // An empty proxy string also disables the *_proxy environment variables.
  curl_easy_setopt(e, CURLOPT_PROXY, o.proxy.c_str());
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   o.http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_SSLVERSION,
                   static_cast<long>(o.tls.min_version == "1.3" ? CURL_SSLVERSION_TLSv1_3
                                                                : CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, o.tls.verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, o.tls.verify ? 2L : 0L);
  if (!o.tls.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, o.tls.ca_file.c_str());
  if (!o.tls.ca_dir.empty()) curl_easy_setopt(e, CURLOPT_CAPATH, o.tls.ca_dir.c_str());
  if (!o.tls.cert_file.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, o.tls.cert_file.c_str());
  if (!o.tls.key_file.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, o.tls.key_file.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);

  switch (t.request.method) {
    case Method::get:
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      break;
    case Method::head:
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      break;
    case Method::post:
    case Method::put:
      if (t.request.method == Method::put) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.request.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(t.request.body.size()));
      break;
  }

  std::string line;
  for (const auto& [name, value] : t.request.headers) {
    line.assign(name);
    // "Name;" is curl's way to send a header with an empty value.
    line.append(value.empty() ? ";" : ": ");
    line.append(value);
    curl_slist* n = curl_slist_append(t.headers, line.c_str());
    if (n == nullptr) return Status(Errc::io, "curl_slist_append failed");
    t.headers = n;
  }
  // No "Expect: 100-continue" round trip before each body.
  curl_slist* n = curl_slist_append(t.headers, "Expect:");
  if (n == nullptr) return Status(Errc::io, "curl_slist_append failed");
  t.headers = n;
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);
  return Status();
}

void Client::Impl::start_queued() {
  while (!closed && !in_curl && active < options.max_in_flight && !queue.empty()) {
    const RequestId id = queue.front();
    queue.pop_front();
    auto it = transfers.find(id);
    if (it == transfers.end()) continue;  // cancelled while queued
    Transfer& t = *it->second;
    Status st = configure(t);
    CURLMcode mc = CURLM_OK;
    if (st.ok()) {
      in_curl = true;
      mc = curl_multi_add_handle(multi, t.easy);
      in_curl = false;
      if (mc != CURLM_OK) st = Status(Errc::io, curl_multi_strerror(mc));
    }
    if (!st.ok()) {
      t.response.curl_code = CURLE_FAILED_INIT;
      t.response.error = st.message();
      auto owned = std::move(it->second);
      transfers.erase(it);
      finish(std::move(owned));
      continue;
    }
    t.in_multi = true;
    ++active;
  }
}

int Client::Impl::socket_cb(CURL* /*easy*/, curl_socket_t fd, int what, void* userp,
                            void* socketp) {
  auto* self = static_cast<Impl*>(userp);
  auto* w = static_cast<SocketWatch*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (w != nullptr) {
      close_and_delete(w->poll);
      self->sockets.erase(fd);
      delete w;
      if (self->multi != nullptr) curl_multi_assign(self->multi, fd, nullptr);
    }
    return 0;
  }
  if (w == nullptr) {
    w = new SocketWatch;
    w->fd = fd;
    w->poll = new uv_poll_t;
    int rc = uv_poll_init_socket(self->loop.uv(), w->poll, fd);
    if (rc != 0) {
      delete w->poll;
      delete w;
      spdlog::error("http client: uv_poll_init_socket: {}", uv_strerror(rc));
      return -1;
    }
    w->poll->data = self;
    self->sockets[fd] = w;
    curl_multi_assign(self->multi, fd, w);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  uv_poll_start(w->poll, events, [](uv_poll_t* p, int status, int ev) {
    auto* impl = static_cast<Impl*>(p->data);
    if (impl == nullptr) return;
    int sfd = -1;
    uv_fileno(reinterpret_cast<uv_handle_t*>(p), &sfd);
    impl->on_socket_event(sfd, status, ev);
  });
  return 0;
}

int Client::Impl::timer_cb(CURLM* /*multi*/, long timeout_ms, void* userp) {
  auto* self = static_cast<Impl*>(userp);
  if (self->timer == nullptr) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(self->timer);
    return 0;
  }
  // Even a 0 ms timeout goes through the loop: curl must not be re-entered from its callback.
  uv_timer_start(
      self->timer,
      [](uv_timer_t* t) {
        auto* impl = static_cast<Impl*>(t->data);
        if (impl != nullptr) impl->on_timeout();
      },
      static_cast<std::uint64_t>(timeout_ms), 0);
  return 0;
}

void Client::Impl::on_socket_event(curl_socket_t fd, int status, int events) {
  if (multi == nullptr || in_curl) return;
  int flags = 0;
  // On POLLERR libuv stops the handle and reports an error without events: let curl read and
  // write so that it finds the socket's own error ("Connection reset by peer"), which says more
  // than CURL_CSELECT_ERR's "select/poll returned error".
  if (status < 0) flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running = 0;
  in_curl = true;
  curl_multi_socket_action(multi, fd, flags, &running);
  in_curl = false;
  drain_messages();
}

void Client::Impl::on_timeout() {
  if (multi == nullptr || in_curl) return;
  int running = 0;
  in_curl = true;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  in_curl = false;
  drain_messages();
}

void Client::Impl::drain_messages() {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL* e = m->easy_handle;
    const CURLcode code = m->data.result;
    Transfer* raw = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&raw));
    in_curl = true;
    curl_multi_remove_handle(multi, e);
    in_curl = false;
    if (raw == nullptr) continue;
    auto it = transfers.find(raw->id);
    SLUICE_ASSERT(it != transfers.end());
    std::unique_ptr<Transfer> t = std::move(it->second);
    transfers.erase(it);
    t->in_multi = false;
    --active;
    ClientResponse& r = t->response;
    r.curl_code = code;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    long new_conns = 0;
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &new_conns);
    connects += static_cast<std::uint64_t>(std::max(0L, new_conns));
    curl_off_t uploaded = 0;
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &uploaded);
    r.bytes_sent = static_cast<std::size_t>(std::max<curl_off_t>(0, uploaded));
    // CURLE_WRITE_ERROR with a cut body: write_cb stopped at max_response_body, after the status.
    const bool cut = code == CURLE_WRITE_ERROR && r.body_truncated && status > 0;
    if (code == CURLE_OK || cut) {
      r.curl_code = CURLE_OK;
      r.status = static_cast<int>(status);
      long version = 0;
      curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
      switch (version) {
        case CURL_HTTP_VERSION_1_0:
          r.http_version = 10;
          break;
        case CURL_HTTP_VERSION_1_1:
          r.http_version = 11;
          break;
        case CURL_HTTP_VERSION_2_0:
          r.http_version = 20;
          break;
        case CURL_HTTP_VERSION_3:
          r.http_version = 30;
          break;
        default:
          r.http_version = 0;
          break;
      }
    } else {
      // A partial answer (status line read, then a reset) is not an answer.
      r.status = 0;
      r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
      r.error = t->errbuf[0] != '\0' ? std::string(t->errbuf) : curl_easy_strerror(code);
    }
    finish(std::move(t));
  }
  start_queued();
}

void Client::Impl::finish(std::unique_ptr<Transfer> t) {
  t->response.elapsed = std::chrono::steady_clock::now() - t->submitted;
  release_easy(*t);
  finished.push_back(std::move(t));
  schedule_dispatch();
}

void Client::Impl::schedule_dispatch() {
  if (dispatch_scheduled || closed) return;
  dispatch_scheduled = true;
  loop.defer([](void* self, std::uint64_t) { static_cast<Impl*>(self)->dispatch(); }, this, 0);
}

void Client::Impl::dispatch() {
  dispatch_scheduled = false;
  std::vector<std::unique_ptr<Transfer>> ready;
  ready.swap(finished);
  bool gone = false;
  destroyed = &gone;
  for (auto& t : ready) {
    if (closed) break;
    ResponseCallback cb = std::move(t->done);
    ClientResponse r = std::move(t->response);
    t.reset();
    if (cb) cb(std::move(r));
    if (gone) return;  // the owner destroyed the client from its callback
  }
  destroyed = nullptr;
  start_queued();
}

Result<std::unique_ptr<Client>> Client::create(Loop& loop, ClientOptions options) {
  if (options.max_in_flight == 0) options.max_in_flight = 1;
  auto impl = std::make_unique<Impl>(loop, std::move(options));
  Status st = impl->init();
  if (!st.ok()) return st;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

RequestId Client::submit(ClientRequest request, ResponseCallback done) {
  Impl& s = *impl_;
  if (s.closed) return 0;
  auto t = std::make_unique<Transfer>();
  t->id = ++s.next_id;
  t->request = std::move(request);
  t->done = std::move(done);
  t->submitted = std::chrono::steady_clock::now();
  t->max_body = s.options.max_response_body;
  const RequestId id = t->id;
  s.transfers.emplace(id, std::move(t));
  s.queue.push_back(id);
  s.start_queued();
  return id;
}

void Client::cancel(RequestId id) {
  Impl& s = *impl_;
  if (s.closed) return;
  auto it = s.transfers.find(id);
  if (it == s.transfers.end()) return;
  std::unique_ptr<Transfer> t = std::move(it->second);
  s.transfers.erase(it);
  if (t->in_multi) {
    s.in_curl = true;
    curl_multi_remove_handle(s.multi, t->easy);
    s.in_curl = false;
    t->in_multi = false;
    --s.active;
  }
  t->response.status = 0;
  t->response.cancelled = true;
  t->response.curl_code = CURLE_ABORTED_BY_CALLBACK;
  t->response.error = "cancelled";
  s.finish(std::move(t));
  s.start_queued();
}

void Client::cancel_all() {
  std::vector<RequestId> ids;
  ids.reserve(impl_->transfers.size());
  for (const auto& [id, t] : impl_->transfers) ids.push_back(id);
  std::sort(ids.begin(), ids.end());  // answer in submit order
  for (RequestId id : ids) cancel(id);
}

void Client::close() {
  Impl& s = *impl_;
  if (s.closed) return;
  s.closed = true;
  s.shutdown();
  s.loop.cancel_deferred(&s);
  s.dispatch_scheduled = false;
}

std::size_t Client::pending() const noexcept {
  return impl_->transfers.size() + impl_->finished.size();
}
std::size_t Client::in_flight() const noexcept { return impl_->active; }
std::uint64_t Client::connections_opened() const noexcept { return impl_->connects; }
const ClientOptions& Client::options() const noexcept { return impl_->options; }

size_t Client::Impl::write_cb(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const std::size_t len = size * n;
  std::string& body = t->response.body;
  const std::size_t room = t->max_body > body.size() ? t->max_body - body.size() : 0;
  body.append(data, std::min(len, room));
  if (len <= room) return len;
  // Past the cap: stop reading (curl ends the transfer with CURLE_WRITE_ERROR and closes the
  // connection). The status is known; waiting for a body that may never end would time the
  // request out and send an answered request again.
  t->response.body_truncated = true;
  return 0;
}

size_t Client::Impl::header_cb(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const std::size_t len = size * n;
  std::string_view line(data, len);
  if (line.starts_with("HTTP/")) {
    // A new status line (after 100 Continue, or a proxy's CONNECT answer): start over.
    t->response.headers.clear();
    return len;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return len;
  std::string name(trim(line.substr(0, colon)));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t->response.headers.size() < 100) {
    t->response.headers.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
  }
  return len;
}

}  // namespace sluice::http

namespace sluice::http {

namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "";
  }
}

int month_index(std::string_view m) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i) {
    if (m == kMonths[i]) return i;
  }
  return -1;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool to_int(std::string_view s, int& out) {
  if (!all_digits(s) || s.size() > 9) return false;
  out = 0;
  for (char c : s) out = out * 10 + (c - '0');
  return true;
}

// Splits on spaces, dropping empty tokens.
std::vector<std::string_view> tokens(std::string_view s, std::string_view seps) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && seps.find(s[i]) != std::string_view::npos) ++i;
    std::size_t j = i;
    while (j < s.size() && seps.find(s[j]) == std::string_view::npos) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's algorithm.
std::int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<std::int64_t>(era) * 146097 + doe - 719468;
}

// "07:28:00"
bool parse_hms(std::string_view s, int& h, int& mi, int& sec) {
  auto parts = tokens(s, ":");
  return parts.size() == 3 && parts[0].size() == 2 && parts[1].size() == 2 &&
         parts[2].size() == 2 && to_int(parts[0], h) && to_int(parts[1], mi) &&
         to_int(parts[2], sec) && h < 24 && mi < 60 && sec <= 60;
}

std::optional<std::int64_t> parse_http_date(std::string_view v) {
  auto t = tokens(v, " ,");
  int day = 0, year = 0, h = 0, mi = 0, sec = 0, mon = -1;
  if (t.size() == 6 && t[5] == "GMT") {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    mon = month_index(t[2]);
    if (!to_int(t[1], day) || !to_int(t[3], year) || t[3].size() != 4 || mon < 0 ||
        !parse_hms(t[4], h, mi, sec)) {
      return std::nullopt;
    }
  } else if (t.size() == 4 && t[3] == "GMT") {
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    auto dmy = tokens(t[1], "-");
    if (dmy.size() != 3 || !to_int(dmy[0], day) || !to_int(dmy[2], year) ||
        !parse_hms(t[2], h, mi, sec)) {
      return std::nullopt;
    }
    mon = month_index(dmy[1]);
    if (mon < 0) return std::nullopt;
    if (dmy[2].size() == 2) year += year < 70 ? 2000 : 1900;
  } else if (t.size() == 5) {
    // asctime: "Sun Nov  6 08:49:37 1994"
    mon = month_index(t[1]);
    if (mon < 0 || !to_int(t[2], day) || !parse_hms(t[3], h, mi, sec) || !to_int(t[4], year)) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (day < 1 || day > 31 || year < 1970) return std::nullopt;
  return days_from_civil(year, mon + 1, day) * 86400 + h * 3600 + mi * 60 + sec;
}

}  // namespace

namespace {
constexpr std::string_view kRequestsHelp = "HTTP requests answered, by status class.";
constexpr std::string_view kBytesHelp = "Request body bytes before and after compression.";
}  // namespace

SinkMetrics::SinkMetrics(MetricsRegistry& m, const Labels& l)
    : requests_2xx(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                             with_label(l, "code", "2xx"))),
      requests_3xx(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                             with_label(l, "code", "3xx"))),
      requests_4xx(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                             with_label(l, "code", "4xx"))),
      requests_5xx(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                             with_label(l, "code", "5xx"))),
      requests_error(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                               with_label(l, "code", "error"))),
      requests_cancelled(m.counter("sluice_http_sink_requests_total", kRequestsHelp,
                                   with_label(l, "code", "cancelled"))),
      request_seconds(m.histogram("sluice_http_sink_request_seconds",
                                  "Time from submitting a request to its answer.", l)),
      bytes_uncompressed(m.counter("sluice_http_sink_bytes_total", kBytesHelp,
                                   with_label(l, "stage", "uncompressed"))),
      bytes_compressed(m.counter("sluice_http_sink_bytes_total", kBytesHelp,
                                 with_label(l, "stage", "compressed"))),
      retries(m.counter("sluice_http_sink_retries_total",
                        "Deliveries answered Retry (408, 429, 5xx, timeouts, connection errors, "
                        "Retry-After waits).",
                        l)),
      rejects(m.counter("sluice_http_sink_rejects_total",
                        "Deliveries rejected by the server (4xx, or the records it refused).", l)),
      retry_after(m.counter(
          "sluice_http_sink_retry_after_total",
          "Deliveries answered Retry at once because the server's Retry-After had not passed.",
          l)) {}

void SinkMetrics::answered(const ClientResponse& r) noexcept {
  if (r.status >= 200 && r.status < 300) {
    requests_2xx.inc();
  } else if (r.status >= 300 && r.status < 400) {
    requests_3xx.inc();
  } else if (r.status >= 400 && r.status < 500) {
    requests_4xx.inc();
  } else if (r.status >= 500) {
    requests_5xx.inc();
  } else if (r.cancelled) {
    requests_cancelled.inc();
  } else {
    requests_error.inc();
  }
  if (!r.cancelled) request_seconds.observe(std::chrono::duration<double>(r.elapsed).count());
}

std::optional<Duration> parse_retry_after(std::string_view value, std::int64_t now_unix_s) {
  value = trim(value);
  if (all_digits(value)) {
    if (value.size() > 9) return std::chrono::seconds(999'999'999);
    int s = 0;
    to_int(value, s);
    return std::chrono::seconds(s);
  }
  auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  // Bounded like a number of seconds: a date centuries away must not overflow the nanoseconds.
  return std::chrono::seconds(std::clamp<std::int64_t>(*at - now_unix_s, 0, 999'999'999));
}

Classification classify(const ClientResponse& r, std::size_t max_body, std::int64_t now_unix_s) {
  Classification c;
  if (r.status == 0) {
    c.verdict = Verdict::retry;
    if (r.cancelled) {
      c.reason = "cancelled";
    } else if (r.timed_out) {
      c.reason = "timeout: " + escape_for_log(r.error, 200);
    } else {
      c.reason = escape_for_log(r.error.empty() ? std::string("no answer") : r.error, 200);
    }
    return c;
  }
  if (r.status >= 200 && r.status < 300) return c;
  const bool retry = r.status == 408 || r.status == 429 || (r.status >= 500 && r.status < 600);
  c.verdict = retry ? Verdict::retry : Verdict::reject;
  c.reason = "HTTP " + std::to_string(r.status);
  if (auto phrase = reason_phrase(r.status); !phrase.empty()) {
    c.reason += ' ';
    c.reason += phrase;
  }
  std::string_view body = trim(r.body);
  if (!body.empty()) {
    c.reason += ": ";
    append_log_excerpt(c.reason, body, max_body);
  }
  if (retry) {
    if (auto ra = r.header("retry-after"); !ra.empty()) {
      if (now_unix_s == 0) now_unix_s = static_cast<std::int64_t>(std::time(nullptr));
      c.retry_after = parse_retry_after(ra, now_unix_s);
    }
  }
  return c;
}

}  // namespace sluice::http
