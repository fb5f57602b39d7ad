#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/codec/json.h"
#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/result.h"
#include "lib/net/tcp_client.h"

namespace sluice::sinks {

enum class TcpFraming : std::uint8_t { newline, octet_counting };

struct TcpSinkConfig {
  net::StreamSinkOptions stream;
  TcpFraming framing = TcpFraming::newline;
  codec::OutputFormat payload = codec::OutputFormat::body;
  static std::optional<TcpSinkConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Lines over one TCP (or TLS) connection: each event's body, or its JSON form (the file sink's
/// `json` encoding), framed by a newline or as RFC 6587 octet counting (`LEN SP MSG`). The peer
/// sends no answer, so Ok means the local kernel took every byte of the batch (see StreamSink):
/// a crash of the peer, or of its host, loses what it had not yet processed.
class TcpSink final : public net::StreamSink {
 public:
  TcpSink(const TcpSinkConfig& config, SinkContext& ctx);
  static Result<std::unique_ptr<TcpSink>> create(const TcpSinkConfig& config, SinkContext& ctx);

 private:
  void encode(const Batch& batch, std::string& out, std::vector<std::uint32_t>& rejected,
              std::string& why) override;

  TcpFraming framing_;
  codec::OutputFormat payload_;
  std::string json_;  // the JSON lines of a batch before octet counting
};

}  // namespace sluice::sinks
