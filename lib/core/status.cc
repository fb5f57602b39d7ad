#include "lib/core/status.h"

#include <uv.h>

#include <cstring>

namespace sluice {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok:
      return "ok";
    case Errc::backpressure:
      return "backpressure";
    case Errc::unavailable:
      return "unavailable";
    case Errc::timeout:
      return "timeout";
    case Errc::invalid_data:
      return "invalid_data";
    case Errc::io:
      return "io";
    case Errc::config:
      return "config";
    case Errc::stopping:
      return "stopping";
  }
  return "unknown";
}

Status Status::from_uv(int rc, std::string_view what) {
  if (rc >= 0) return {};
  Errc code = Errc::io;
  if (rc == UV_ETIMEDOUT) code = Errc::timeout;
  if (rc == UV_ECONNREFUSED || rc == UV_EHOSTUNREACH || rc == UV_ENETUNREACH)
    code = Errc::unavailable;
  std::string msg(what);
  msg += ": ";
  msg += uv_err_name(rc);
  msg += " (";
  msg += uv_strerror(rc);
  msg += ")";
  return {code, std::move(msg)};
}

Status Status::from_errno(int err, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  char buf[256];
  msg += strerror_r(err, buf, sizeof buf);
  return {Errc::io, std::move(msg)};
}

std::string Status::str() const {
  if (ok()) return "ok";
  std::string s(errc_name(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

}  // namespace sluice
