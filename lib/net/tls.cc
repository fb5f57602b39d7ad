#include "lib/net/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>

namespace sluice::tls {
namespace {

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

bool readable(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

bool TlsConfig::parse(const ConfigNode& parent, ConfigErrors& errors, TlsConfig& out, bool server) {
  parent.mark_known("tls");
  if (!parent.has("tls")) return true;
  auto node = parent.child("tls", errors);
  if (!node) return false;
  const std::size_t before = errors.size();
  out.enabled = true;
  if (server) {
    node->required("cert", out.cert, errors);
    node->required("key", out.key, errors);
    node->optional("ca", out.ca, errors);
    node->optional("verify_client", out.verify_client, errors);
    if (out.verify_client && out.ca.empty())
      node->error_at("verify_client", errors,
                     "needs 'ca' (the CA file that signs client certificates)");
  } else {
    node->optional("ca", out.ca, errors);
    node->optional("ca_dir", out.ca_dir, errors);
    node->optional("verify", out.verify, errors);
    node->optional("server_name", out.server_name, errors);
    node->optional("cert", out.cert, errors);
    node->optional("key", out.key, errors);
    if (out.cert.empty() != out.key.empty())
      node->error(errors, "a client certificate needs both 'cert' and 'key'");
  }
  node->optional_enum("min_version", out.min_version, errors,
                      {{"1.2", TlsConfig::Version::tls1_2}, {"1.3", TlsConfig::Version::tls1_3}});
  for (const char* key : {"cert", "key", "ca"}) {
    const std::string& path = std::string_view(key) == "cert"  ? out.cert
                              : std::string_view(key) == "key" ? out.key
                                                               : out.ca;
    if (!path.empty() && !readable(path)) {
      node->error_at(key, errors, "cannot read \"" + path + "\"");
    }
  }
  if (!out.ca_dir.empty()) {
    struct stat st {};
    if (::stat(out.ca_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      node->error_at("ca_dir", errors, "\"" + out.ca_dir + "\" is not a directory");
  }
  node->reject_unknown_keys(errors);
  if (errors.size() != before) return false;
  if (auto ctx = TlsContext::make(out, server); !ctx) {
    node->error(errors, ctx.error().message());
    return false;
  }
  return true;
}

Result<std::shared_ptr<TlsContext>> TlsContext::make(const TlsConfig& config, bool server) {
  std::shared_ptr<TlsContext> t(new TlsContext());
  t->server_ = server;
  t->ctx_ = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (t->ctx_ == nullptr) return Status(Errc::config, "tls: " + openssl_errors());
  SSL_CTX_set_min_proto_version(
      t->ctx_, config.min_version == TlsConfig::Version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_mode(t->ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!config.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(t->ctx_, config.cert.c_str()) != 1) {
      return Status(Errc::config,
                    "tls: cannot load the certificate " + config.cert + ": " + openssl_errors());
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx_, config.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Status(Errc::config,
                    "tls: cannot load the key " + config.key + ": " + openssl_errors());
    }
    if (SSL_CTX_check_private_key(t->ctx_) != 1) {
      return Status(Errc::config, "tls: the key " + config.key +
                                      " does not match the certificate " + config.cert);
    }
  }
  if (server) {
    t->verify_ = config.verify_client;
    if (config.verify_client) {
      if (SSL_CTX_load_verify_locations(t->ctx_, config.ca.c_str(), nullptr) != 1) {
        return Status(Errc::config,
                      "tls: cannot load the CA file " + config.ca + ": " + openssl_errors());
      }
      SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  } else {
    t->verify_ = config.verify;
    if (config.verify) {
      const bool own = !config.ca.empty() || !config.ca_dir.empty();
      const int ok = !own ? SSL_CTX_set_default_verify_paths(t->ctx_)
                          : SSL_CTX_load_verify_locations(
                                t->ctx_, config.ca.empty() ? nullptr : config.ca.c_str(),
                                config.ca_dir.empty() ? nullptr : config.ca_dir.c_str());
      if (ok != 1) {
        return Status(Errc::config,
                      "tls: cannot load the CA file " + config.ca +
                          (config.ca_dir.empty() ? "" : " or directory " + config.ca_dir) + ": " +
                          openssl_errors());
      }
      SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER, nullptr);
    }
  }
  return t;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

TlsSession::TlsSession(std::shared_ptr<TlsContext> ctx, std::string_view server_name)
    : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->ctx());
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl_, rbio_, wbio_);  // the SSL owns both BIOs now
  if (ctx_->server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!server_name.empty()) {
      const std::string name(server_name);
      SSL_set_tlsext_host_name(ssl_, name.c_str());
      if (ctx_->verify()) {
        // The certificate must name this host (or IP address).
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) {
          SSL_set1_host(ssl_, name.c_str());
        }
      }
    }
  }
}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsSession::drain(std::string& send) {
  char buf[16 * 1024];
  while (BIO_ctrl_pending(wbio_) > 0) {
    const int n = BIO_read(wbio_, buf, sizeof buf);
    if (n <= 0) break;
    send.append(buf, static_cast<std::size_t>(n));
  }
}

Status TlsSession::error(const char* what, int rc) {
  const int e = SSL_get_error(ssl_, rc);
  std::string why = openssl_errors();
  if (e == SSL_ERROR_SSL && SSL_get_verify_result(ssl_) != X509_V_OK) {
    why = X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
  }
  return Status(Errc::invalid_data, std::string("TLS ") + what + " failed: " + why);
}

Status TlsSession::start(std::string& send) {
  std::string plain;
  return advance(plain, send);
}

Status TlsSession::advance(std::string& plain, std::string& send) {
  if (!established_) {
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
      established_ = true;
    } else {
      const int e = SSL_get_error(ssl_, rc);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        drain(send);  // the alert, if any
        return error("handshake", rc);
      }
    }
  }
  if (established_) {
    if (!held_.empty()) {
      std::string held;
      held.swap(held_);
      if (Status st = write(held, send); !st.ok()) return st;
    }
    char buf[16 * 1024];
    while (true) {
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        plain.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
      if (e == SSL_ERROR_ZERO_RETURN) break;  // close_notify: the peer closes next
      drain(send);
      return error("read", n);
    }
  }
  drain(send);
  return {};
}

Status TlsSession::read(std::string_view cipher, std::string& plain, std::string& send) {
  while (!cipher.empty()) {
    const int n = BIO_write(rbio_, cipher.data(), static_cast<int>(cipher.size()));
    if (n <= 0) return Status(Errc::invalid_data, "TLS: BIO_write failed");
    cipher.remove_prefix(static_cast<std::size_t>(n));
  }
  return advance(plain, send);
}

Status TlsSession::write(std::string_view plain, std::string& send) {
  if (!established_) {
    held_.append(plain);
    return {};
  }
  while (!plain.empty()) {
    const int n = SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
    if (n <= 0) return error("write", n);
    plain.remove_prefix(static_cast<std::size_t>(n));
    drain(send);
  }
  drain(send);
  return {};
}

}  // namespace sluice::tls
