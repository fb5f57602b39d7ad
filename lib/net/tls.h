#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "lib/config/config_node.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"

namespace sluice::tls {

/// The `tls = { ... }` table of a network source (server) or of the avro sink (client).
struct TlsConfig {
  bool enabled = false;
  std::string cert, key;       // server: required; client: a client certificate, optional
  std::string ca;              // server: verify client certificates against it; client: trust
  std::string ca_dir;          // client: a hashed CA directory (openssl rehash) to trust as well
  bool verify_client = false;  // server: require a client certificate signed by `ca`
  bool verify = true;          // client: verify the server's certificate and name
  std::string server_name;     // client: expected name (and SNI); default: the address's host
  enum class Version { tls1_2, tls1_3 };
  Version min_version = Version::tls1_2;
  /// Reads `tls` from `parent` if present, and loads the files to report problems up front.
  static bool parse(const ConfigNode& parent, ConfigErrors& errors, TlsConfig& out, bool server);
};

/// sluice_tls_handshake_errors_total of a component (one definition for every TLS user).
inline Counter& handshake_errors(MetricsRegistry& metrics, const Labels& labels) {
  return metrics.counter("sluice_tls_handshake_errors_total",
                         "TLS connections closed for a failed handshake or TLS error.", labels);
}

/// An OpenSSL context built from a TlsConfig (certificates loaded once).
class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>> make(const TlsConfig& config, bool server);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* ctx() const noexcept { return ctx_; }
  bool server() const noexcept { return server_; }
  bool verify() const noexcept { return verify_; }

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool server_ = false;
  bool verify_ = false;
};

/// TLS over any byte stream (a libuv TCP connection) through memory BIOs: ciphertext from the
/// network goes in with read(), plaintext comes out; plaintext to send goes in with write(),
/// ciphertext to put on the wire comes out. Loop thread only, no blocking calls.
class TlsSession {
 public:
  /// `server_name`: for a client, the name to verify and send as SNI (may be empty).
  TlsSession(std::shared_ptr<TlsContext> ctx, std::string_view server_name = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  /// Client: starts the handshake (the ClientHello goes to `send`).
  Status start(std::string& send);
  /// Ciphertext received: plaintext is appended to `plain`, handshake or alert bytes to `send`.
  /// An error (a failed handshake: bad certificate, wrong version) names the reason.
  Status read(std::string_view cipher, std::string& plain, std::string& send);
  /// Plaintext to send: its ciphertext is appended to `send` (held until the handshake is done).
  Status write(std::string_view plain, std::string& send);
  bool established() const noexcept { return established_; }

 private:
  Status advance(std::string& plain, std::string& send);
  void drain(std::string& send);
  Status error(const char* what, int rc);

  std::shared_ptr<TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // network -> OpenSSL
  BIO* wbio_ = nullptr;  // OpenSSL -> network
  bool established_ = false;
  std::string held_;  // plaintext written before the handshake finished
};

}  // namespace sluice::tls
