#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::net {

/// An allow-list of client addresses: "10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8".
class AddressFilter {
 public:
  static Result<AddressFilter> make(const std::vector<std::string>& rules);
  bool empty() const noexcept { return rules_.empty(); }
  bool allows(const sockaddr_storage& peer) const noexcept;

 private:
  struct Rule {
    int family;
    std::array<std::uint8_t, 16> addr;
    unsigned prefix;
  };
  std::vector<Rule> rules_;
};

}  // namespace sluice::net
