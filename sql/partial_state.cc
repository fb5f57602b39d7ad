#include "sql/partial_state.h"

#include <cmath>

#include "sql/sketch/encoding.h"

namespace sluice::sql {

namespace enc = sketch::enc;

namespace {

constexpr std::string_view kMagic = "SP";
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::uint8_t partial_code(AggKind kind) noexcept {
  switch (kind) {
    case AggKind::count_star:
      return 1;
    case AggKind::count:
      return 2;
    case AggKind::count_distinct:
      return 3;
    case AggKind::sum:
      return 4;
    case AggKind::avg:
      return 5;
    case AggKind::min:
      return 6;
    case AggKind::max:
      return 7;
    case AggKind::first_value:
      return 8;
    case AggKind::last_value:
      return 9;
    case AggKind::approx_percentile:
      return 10;
    case AggKind::merge:
      return 0;
  }
  return 0;
}

std::optional<AggKind> partial_kind(std::uint8_t code) noexcept {
  static constexpr AggKind kKinds[] = {AggKind::count_star,
                                       AggKind::count,
                                       AggKind::count_distinct,
                                       AggKind::sum,
                                       AggKind::avg,
                                       AggKind::min,
                                       AggKind::max,
                                       AggKind::first_value,
                                       AggKind::last_value,
                                       AggKind::approx_percentile};
  if (code < 1 || code > 10) return std::nullopt;
  return kKinds[code - 1];
}

void encode_partial(AggKind kind, double q, std::string_view agent, std::int64_t start,
                    std::int64_t end, std::uint64_t key, const Cell& cell, const SideStore& side,
                    std::string& out) {
  out.append(kMagic);
  enc::put_u8(out, kPartialVersion);
  enc::put_u8(out, partial_code(kind));
  if (agent.size() > kMaxAgentName) agent = agent.substr(0, kMaxAgentName);
  enc::put_varint(out, agent.size());
  out.append(agent);
  enc::put_varint(out, enc::zigzag(start));
  enc::put_varint(out, enc::zigzag(end));
  enc::put_u64(out, key);
  if (kind == AggKind::approx_percentile) enc::put_f64(out, q);
  Aggregates::encode_cell(kind, cell, side, out);
}

std::optional<std::string> decode_partial(std::string_view text, DecodedPartial& out,
                                          std::string& bytes, std::size_t distinct_limit) {
  out.valid = false;
  if (!base64_decode(text, bytes)) return "not base64 text";
  std::string_view in(bytes);
  if (in.substr(0, kMagic.size()) != kMagic) return "not a PARTIAL state (no \"SP\" magic)";
  in.remove_prefix(kMagic.size());
  std::uint8_t version = 0, code = 0;
  if (!enc::get_u8(in, version)) return "truncated state";
  if (version != kPartialVersion) {
    return "unknown encoding version " + std::to_string(version) + " (this build reads " +
           std::to_string(kPartialVersion) + ")";
  }
  if (!enc::get_u8(in, code)) return "truncated state";
  const auto kind = partial_kind(code);
  if (!kind) return "unknown aggregate code " + std::to_string(code);
  std::uint64_t n = 0, s = 0, e = 0;
  if (!enc::get_varint(in, n) || n > kMaxAgentName || n > in.size()) {
    return "truncated or malformed agent name";
  }
  out.agent.assign(in.data(), n);
  in.remove_prefix(n);
  if (!enc::get_varint(in, s) || !enc::get_varint(in, e)) return "truncated window";
  out.start = enc::unzigzag(s);
  out.end = enc::unzigzag(e);
  if (out.end <= out.start) return "empty window";
  if (!enc::get_u64(in, out.key)) return "truncated group key";
  out.q = 0.5;
  if (*kind == AggKind::approx_percentile) {
    if (!enc::get_f64(in, out.q) || !(out.q >= 0 && out.q <= 1)) {
      return "truncated or malformed quantile";
    }
  }
  out.kind = *kind;
  out.side.reset();
  Aggregates::init_cell(*kind, out.cell, out.side, distinct_limit);
  if (!Aggregates::decode_cell(*kind, in, out.cell, out.side)) return "damaged aggregate state";
  if (!in.empty()) return "trailing bytes after the state";
  out.valid = true;
  return std::nullopt;
}

void base64_encode(std::string_view in, std::string& out) {
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16 |
                            std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8 |
                            std::uint32_t{static_cast<unsigned char>(in[i + 2])};
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest == 0) return;
  std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
  if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
  out.push_back(kAlphabet[v >> 18]);
  out.push_back(kAlphabet[(v >> 12) & 63]);
  out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
  out.push_back('=');
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0) return false;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + static_cast<std::size_t>(k)];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return false;  // data after padding
      v[k] = b64_value(c);
      if (v[k] < 0) return false;
    }
    const std::uint32_t w =
        static_cast<std::uint32_t>(v[0]) << 18 | static_cast<std::uint32_t>(v[1]) << 12 |
        static_cast<std::uint32_t>(v[2]) << 6 | static_cast<std::uint32_t>(v[3]);
    out.push_back(static_cast<char>(w >> 16));
    if (pad < 2) out.push_back(static_cast<char>((w >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(w & 0xFF));
  }
  return true;
}

}  // namespace sluice::sql
