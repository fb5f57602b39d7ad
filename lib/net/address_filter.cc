#include "lib/net/address_filter.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sluice::net {

Result<AddressFilter> AddressFilter::make(const std::vector<std::string>& rules) {
  AddressFilter f;
  for (const auto& text : rules) {
    Rule r{};
    std::string ip = text;
    const auto slash = text.find('/');
    int max = 0;
    if (slash != std::string::npos) ip = text.substr(0, slash);
    if (inet_pton(AF_INET, ip.c_str(), r.addr.data()) == 1) {
      r.family = AF_INET;
      max = 32;
    } else if (inet_pton(AF_INET6, ip.c_str(), r.addr.data()) == 1) {
      r.family = AF_INET6;
      max = 128;
    } else {
      return Status(Errc::config, "\"" + text + "\" is not an address or CIDR range");
    }
    r.prefix = static_cast<unsigned>(max);
    if (slash != std::string::npos) {
      const std::string bits = text.substr(slash + 1);
      char* end = nullptr;
      const long n = std::strtol(bits.c_str(), &end, 10);
      if (bits.empty() || *end != '\0' || n < 0 || n > max)
        return Status(Errc::config, "\"" + text + "\" has a bad prefix length");
      r.prefix = static_cast<unsigned>(n);
    }
    f.rules_.push_back(r);
  }
  return f;
}

bool AddressFilter::allows(const sockaddr_storage& peer) const noexcept {
  if (rules_.empty()) return true;
  int family = peer.ss_family;
  std::array<std::uint8_t, 16> addr{};
  if (family == AF_INET) {
    std::memcpy(addr.data(), &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, 4);
  } else if (family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    std::memcpy(addr.data(), &a6->sin6_addr, 16);
    if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {  // ::ffff:a.b.c.d matches IPv4 rules
      family = AF_INET;
      std::memmove(addr.data(), addr.data() + 12, 4);
    }
  } else {
    return false;
  }
  for (const Rule& r : rules_) {
    if (r.family != family) continue;
    const unsigned full = r.prefix / 8, rest = r.prefix % 8;
    if (std::memcmp(addr.data(), r.addr.data(), full) != 0) continue;
    if (rest != 0) {
      const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
      if ((addr[full] & mask) != (r.addr[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

}  // namespace sluice::net
