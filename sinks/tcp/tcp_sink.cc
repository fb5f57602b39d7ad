#include "sinks/tcp/tcp_sink.h"

#include <charconv>

namespace sluice::sinks {

std::optional<TcpSinkConfig> TcpSinkConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  TcpSinkConfig c;
  net::StreamSinkOptions::parse(node, errors, c.stream);
  node.optional_enum(
      "framing", c.framing, errors,
      {{"newline", TcpFraming::newline}, {"octet_counting", TcpFraming::octet_counting}});
  node.optional_enum("payload", c.payload, errors,
                     {{"body", codec::OutputFormat::body}, {"json", codec::OutputFormat::json}});
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

TcpSink::TcpSink(const TcpSinkConfig& config, SinkContext& ctx)
    : StreamSink(ctx, config.stream, "sluice_tcp_sink"),
      framing_(config.framing),
      payload_(config.payload) {}

Result<std::unique_ptr<TcpSink>> TcpSink::create(const TcpSinkConfig& config, SinkContext& ctx) {
  return std::make_unique<TcpSink>(config, ctx);
}

namespace {
void append_octet_frame(std::string& out, std::string_view msg) {
  char len[24];
  const auto r = std::to_chars(len, len + sizeof len, msg.size());
  out.append(len, r.ptr);
  out += ' ';
  out.append(msg);
}
}  // namespace

void TcpSink::encode(const Batch& batch, std::string& out, std::vector<std::uint32_t>&,
                     std::string&) {
  if (framing_ == TcpFraming::newline) {
    codec::encode_batch(batch, payload_, out);
    return;
  }
  if (payload_ == codec::OutputFormat::body) {
    // RFC 6587 octet counting carries any byte, newlines included: the body goes as it is.
    for (std::size_t i = 0; i < batch.size(); ++i) append_octet_frame(out, batch[i].body());
    return;
  }
  // The JSON encoding escapes every newline inside an event, so its lines are the events.
  json_.clear();
  codec::encode_batch(batch, payload_, json_);
  std::string_view rest(json_);
  while (!rest.empty()) {
    const std::size_t nl = rest.find('\n');
    append_octet_frame(out, rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  if (json_.capacity() > (std::size_t{8} << 20)) std::string().swap(json_);
}

}  // namespace sluice::sinks
