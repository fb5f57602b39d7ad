#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

enum class Errc : std::uint8_t {
  ok,
  backpressure,
  unavailable,
  timeout,
  invalid_data,
  io,
  config,
  stopping
};

std::string_view errc_name(Errc code) noexcept;

/// The outcome of a fallible operation. sluice code never throws; third-party error codes are
/// converted once, at the boundary, through the from_* helpers.
class [[nodiscard]] Status {
 public:
  Status() = default;  // ok; no allocation
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status from_uv(int rc, std::string_view what);  // "uv_tcp_bind 127.0.0.1:4141: EADDRINUSE"
  static Status from_errno(int err, std::string_view what);  // "open /x: No such file or directory"

  bool ok() const noexcept { return code_ == Errc::ok; }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  /// "backpressure: channel full"; "ok" when ok.
  std::string str() const;

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

}  // namespace sluice
