#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "lib/config/config_node.h"

namespace sluice {

/// A credential read from the configuration (`auth_token`, `access_key`, passwords). Its value is
/// only reachable through reveal(), for the one place that sends it; printing a Secret (fmt,
/// spdlog) shows "<redacted>", and origin() says where it came from without saying what it is.
class Secret {
 public:
  Secret() = default;
  Secret(std::string value, std::string origin)
      : value_(std::move(value)), origin_(std::move(origin)) {}
  Secret(const Secret&) = default;
  Secret& operator=(const Secret&) = default;
  Secret(Secret&&) noexcept = default;
  Secret& operator=(Secret&&) noexcept = default;
  ~Secret();

  /// The value itself. Never log it or put it in an error or a status page.
  const std::string& reveal() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  /// "inline", "env NAME" or "file /path": safe to show.
  const std::string& origin() const noexcept { return origin_; }

 private:
  std::string value_;
  std::string origin_;
};

/// Reads `key` as a secret: a string (the value itself), `{ env = "NAME" }` (the environment
/// variable NAME, which must be set and non-empty) or `{ file = "/path" }` (the file's contents,
/// one trailing newline removed; at most 64 KiB). The env variable and file are read here, so that
/// `sluice check` reports a missing one with FILE:LINE:COL; no error message ever holds the value.
/// Returns false (with an error) when present and wrong, or absent and `required`.
bool read_secret(const ConfigNode& node, std::string_view key, Secret& out, ConfigErrors& errors,
                 bool required = false);

}  // namespace sluice

template <>
struct fmt::formatter<sluice::Secret> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const sluice::Secret& /*secret*/, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("<redacted>", ctx);
  }
};
