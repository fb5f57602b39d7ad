#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/core/status.h"
#include "lib/net/tcp_server.h"  // WireCodec
#include "lib/net/tls.h"

namespace sluice::net {

struct TcpClientOptions {
  std::string address;  // "host:port" or "[v6]:port"; a name is resolved on the threadpool
  /// From connect() to a usable connection (resolution, TCP connect and the TLS handshake).
  std::chrono::milliseconds connect_timeout{5'000};
  /// A write handed to the socket that the kernel has not taken within this drops the connection
  /// (the peer stopped reading and every buffer is full). 0: no deadline.
  std::chrono::milliseconds write_timeout{5'000};
  /// After a failed connect, or a connection lost with bytes not yet taken by the kernel, the next
  /// connect waits this long, doubling up to backoff_max; a completed write resets it.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10'000};
  /// With TLS: the client context and the name to verify and send as SNI (default: the host).
  std::shared_ptr<tls::TlsContext> tls;
  std::string server_name;
  std::size_t read_buffer_bytes = 16 * 1024;
  /// When set, each connection's bytes pass through a codec it makes, between TLS (or the
  /// plaintext) and the socket: Flume 1.10's zlib outside TLS. encode() gets every byte queued
  /// since the last uv_write at once (a compressor flushes once per write); a decode() error
  /// drops the connection.
  std::function<std::unique_ptr<WireCodec>()> wire_codec;
};

/// What the user of a TcpClient hears. Every callback runs on the loop thread, never from inside a
/// TcpClient call, and none runs after TcpClient::close() or the client's destruction.
class TcpClientHandler {
 public:
  /// The connection is usable (TCP connected, TLS handshake done): write() may be called.
  virtual void on_connected() = 0;
  /// Every byte written up to `mark` (see TcpClient::write) was taken by the kernel.
  virtual void on_written(std::uint64_t mark) = 0;
  /// A connect failed or the connection was lost (peer closed, reset, write timeout, TLS error).
  /// Bytes written after the last on_written() mark may or may not have reached the peer.
  virtual void on_disconnected(const Status& why) = 0;
  /// Plaintext read from the peer; the view is valid only during the call.
  virtual void on_data(std::string_view data) { (void)data; }

 protected:
  ~TcpClientHandler() = default;
};

/// One outgoing TCP (or TLS) connection on the loop: connect by host:port with a deadline, writes
/// coalesced into at most one uv_write in flight (the rest waits in one buffer, so unsent_bytes()
/// is the back-pressure signal), a write-completion deadline, reconnect backoff, and a close after
/// which nothing calls back. Loop thread only.
class TcpClient {
 public:
  enum class State : std::uint8_t { idle, connecting, connected, backoff };

  /// `tls_errors` (may be null) counts failed handshakes and TLS errors.
  TcpClient(Loop& loop, TcpClientOptions options, TcpClientHandler& handler,
            Counter* tls_errors = nullptr);
  ~TcpClient();
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;

  State state() const noexcept { return state_; }
  bool connected() const noexcept { return state_ == State::connected; }
  /// Starts connecting when idle. While the backoff runs, connects when it ends. Otherwise does
  /// nothing. The outcome is on_connected() or on_disconnected().
  void connect();
  /// As connect(), but cuts a running backoff short (a health probe).
  void connect_now();
  /// Queues `data` (through TLS) and returns its mark: the count of bytes written through this
  /// client up to and including `data`, which on_written() reports once the kernel took them.
  /// Only while connected().
  std::uint64_t write(std::string_view data);
  /// The mark of the bytes the kernel has taken, and of every byte queued.
  std::uint64_t written_mark() const noexcept { return written_; }
  std::uint64_t queued_mark() const noexcept { return queued_; }
  /// Plaintext bytes queued and not yet taken by the kernel.
  std::uint64_t unsent_bytes() const noexcept { return queued_ - written_; }
  /// Drops the connection (or the connect in progress, or the backoff) without any callback.
  void close();
  /// Drops the connection as failed: on_disconnected(why) on a later loop turn, then the backoff.
  void abort(Status why);
  const std::string& address() const noexcept { return options_.address; }
  std::uint64_t connects() const noexcept { return connects_; }

 private:
  struct Conn;
  void start_connect();
  void on_resolved(int status, addrinfo* res);
  void on_tcp_connected(int status);
  void on_established();
  void on_read(ssize_t n, const uv_buf_t* buf);
  void on_write_done(int status);
  void flush();
  void send_cipher(std::string_view data);
  /// Drops the connection and reports `why` now (from a libuv callback).
  void fail(Status why, bool tls_error = false);
  void drop();
  static void reported(void* self, std::uint64_t);

  Loop& loop_;
  TcpClientOptions options_;
  TcpClientHandler& handler_;
  Counter* tls_errors_;
  std::string host_;
  int port_ = 0;
  State state_ = State::idle;
  bool want_connect_ = false;  // connect() was called during the backoff
  bool confirmed_ = false;     // this connection completed a write (resets the backoff)
  Conn* conn_ = nullptr;
  uv_getaddrinfo_t* gai_ = nullptr;
  Timer connect_timer_, write_timer_, backoff_timer_;
  std::chrono::milliseconds backoff_;
  std::string pending_;  // plaintext, or ciphertext with TLS, not yet handed to libuv
  std::uint64_t queued_ = 0, written_ = 0, inflight_mark_ = 0;
  std::uint64_t connects_ = 0;
  Status abort_why_;  // reported by abort() on the next turn
  bool abort_pending_ = false;
};

/// The keys every sink that streams over a TcpClient shares: `address`, `tls`, `connect_timeout`,
/// `reconnect_backoff`, `max_reconnect_backoff`, `flush_timeout`, and the sink's
/// `delivery_timeout` (read by the agent too), which bounds each write.
struct StreamSinkOptions {
  TcpClientOptions client;
  /// At stop, how long batches still being written may take before they answer Retry.
  std::chrono::milliseconds flush_timeout{2'000};
  /// Reads the keys above from `node` (errors positioned as usual). `client.tls` is built here.
  static bool parse(const ConfigNode& node, ConfigErrors& errors, StreamSinkOptions& out);
};

/// The delivery loop of a sink that writes each batch, encoded, to one TCP (or TLS) connection
/// with no answer from the peer (the tcp sink, ILP over TCP): batches are written in deliver
/// order and a batch answers Ok once the kernel took its last byte, so "Ok" means "in the local
/// kernel's send buffer": a peer or network failure after that can lose it. A lost connection,
/// a failed connect or a write not taken within delivery_timeout answers Retry for every batch
/// not yet Ok; the connection is made again with a doubling backoff, and while that backoff runs
/// deliveries answer Retry at once (a failover group moves on; probe() says when it is back).
class StreamSink : public Sink, private TcpClientHandler {
 public:
  /// Series: PREFIX_connects_total, PREFIX_disconnects_total, PREFIX_bytes_total,
  /// sluice_tls_handshake_errors_total.
  StreamSink(SinkContext& ctx, StreamSinkOptions options, std::string_view metric_prefix);
  ~StreamSink() override;

  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) final;
  void stop(StopCallback on_stopped) final;
  void cancel(DeliveryId id) final;
  bool probe(ProbeListener& listener) final;
  const TcpClient& client() const noexcept { return client_; }

 protected:
  /// Appends the wire form of `batch` to `out`. Events that cannot be encoded are left out and
  /// their indices appended to `rejected`, with the reason of the first in `why`: the batch then
  /// answers Reject for those alone once the rest was written.
  virtual void encode(const Batch& batch, std::string& out, std::vector<std::uint32_t>& rejected,
                      std::string& why) = 0;
  SinkContext& ctx_;

 private:
  struct Job {
    const Batch* batch = nullptr;
    DeliveryId id;
    DeliveryListener* done = nullptr;
    std::uint64_t mark = 0;  // the client's mark of its last byte, once written
    bool sent = false;
    std::vector<std::uint32_t> rejected;
    std::string why;
  };
  struct Later {
    enum class Kind : std::uint8_t { answer, probe, drain };
    DeliveryId id;
    DeliveryListener* done;
    DeliveryResult result;
    Kind kind;
  };
  /// A FIFO on one vector that keeps its capacity (std::deque frees and allocates blocks as it
  /// cycles, once per few batches): popped slots are reclaimed when the queue empties, or moved
  /// out of the way once a few piled up.
  template <class T>
  class Fifo {
   public:
    bool empty() const noexcept { return head_ == v_.size(); }
    std::size_t size() const noexcept { return v_.size() - head_; }
    T& front() { return v_[head_]; }
    T& back() { return v_.back(); }
    void push_back(T t) {
      if (head_ >= 16) {
        v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
      }
      v_.push_back(std::move(t));
    }
    void pop_front() {
      v_[head_] = T{};
      if (++head_ == v_.size()) {
        v_.clear();
        head_ = 0;
      }
    }
    auto begin() { return v_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() { return v_.end(); }
    void erase(typename std::vector<T>::iterator it) { v_.erase(it); }
    void swap(Fifo& other) noexcept {
      v_.swap(other.v_);
      std::swap(head_, other.head_);
    }

   private:
    std::vector<T> v_;
    std::size_t head_ = 0;
  };
  void on_connected() override;
  void on_written(std::uint64_t mark) override;
  void on_disconnected(const Status& why) override;
  void send(Job& job);
  void answer(Job& job);
  void answer_later(DeliveryId id, DeliveryListener* done, DeliveryResult result);
  static void later_task(void* self, std::uint64_t);
  void finish_probe(bool healthy);
  void maybe_stopped();

  StreamSinkOptions options_;
  TcpClient client_;
  Fifo<Job> jobs_;
  std::deque<Later> later_;
  std::string scratch_;
  ProbeListener* probe_ = nullptr;
  StopCallback on_stopped_;
  bool stopping_ = false;
  Timer stop_timer_;
  Counter& connects_;
  Counter& disconnects_;
  Counter& bytes_;
  RateLimiter log_limit_;
};

}  // namespace sluice::net
