#pragma once

#include <simdjson.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/parse/formats.h"
#include "lib/parse/regex.h"
#include "lib/parse/time_format.h"

namespace sluice::parse {

enum class Container : std::uint8_t { none, cri, docker };

/// The `multiline` table of a line source.
struct MultilineConfig {
  Container container = Container::none;
  std::string mode;          // "java", "python", "go", or "" (custom or none)
  std::string start;         // a line matching this begins a record
  std::string continuation;  // a line matching this continues the previous record
  std::uint32_t max_lines = 500;
  ByteSize max_bytes{1ULL << 20};
  std::chrono::nanoseconds timeout = std::chrono::seconds(1);

  bool joins() const noexcept { return !start.empty() || !continuation.empty(); }
  bool enabled() const noexcept { return container != Container::none || joins(); }
  /// Reads `multiline = { ... }` from a source's table, if present.
  static bool parse(const ConfigNode& source, ConfigErrors& errors, MultilineConfig& out);
};

/// The continuation pattern of a ready mode ("java", "python", "go"); empty if unknown.
std::string_view ready_continuation(std::string_view mode);

/// One assembled record. `text` stays valid until the next call into the assembler.
struct Record {
  std::string_view text;
  std::uint64_t start = 0;          // offset of its first byte (for ids)
  std::uint64_t end = 0;            // offset after its last line
  std::int64_t time_ns = 0;         // from the container runtime; 0 if none
  std::string_view stream;          // "stdout" / "stderr" from the container runtime
  const Header* headers = nullptr;  // headers the record arrived with (network sources)
  std::size_t header_count = 0;
};

/// Compiled rules shared by the assemblers of one source.
class MultilineRules {
 public:
  static Result<MultilineRules> make(const MultilineConfig& config);
  const MultilineConfig& config() const noexcept { return config_; }

 private:
  friend class LineAssembler;
  MultilineConfig config_;
  std::optional<Regex> start_, continuation_;
  simdjson::ondemand::parser docker_parser_;
  PaddedBuffer docker_buf_;
  TimeFormat rfc3339_;
  std::uint64_t container_errors_ = 0, overflows_ = 0;

 public:
  /// Lines that were not valid CRI / Docker JSON (passed on as they are).
  std::uint64_t container_errors() const noexcept { return container_errors_; }
  /// Records cut because they reached max_lines or max_bytes.
  std::uint64_t overflows() const noexcept { return overflows_; }
};

/// Assembles the lines of one input stream (one file, one pipe) into records: decodes the
/// container runtime's format and joins its partial lines, then joins stack traces. Lines held
/// back wait for the next line, flush(), or timeout.
class LineAssembler {
 public:
  explicit LineAssembler(MultilineRules& rules) : rules_(&rules) {}

  /// Feeds one line spanning [start, end) of the input; returns the records it completes.
  const std::vector<Record>& push(std::string_view line, std::uint64_t start, std::uint64_t end,
                                  std::int64_t now_ns);
  /// Emits whatever is held back.
  const std::vector<Record>& flush();
  /// Emits what has waited longer than the timeout (none if nothing is due).
  const std::vector<Record>& flush_due(std::int64_t now_ns);
  bool holding() const noexcept;
  /// The offset of the first byte held back, or UINT64_MAX: a checkpoint must not pass it.
  std::uint64_t held_from() const noexcept;

 private:
  struct Partial {  // a container line in pieces
    std::string text;
    std::uint64_t start = 0, end = 0;
    std::int64_t time_ns = 0, since_ns = 0;
    bool active = false;
  };
  struct Joined {  // a multiline record being built
    std::string text;
    std::uint64_t start = 0, end = 0;
    std::int64_t time_ns = 0, since_ns = 0;
    std::uint32_t lines = 0;
    bool active = false;
  };
  void begin_output();
  void decoded(std::size_t stream, std::string_view text, std::uint64_t start, std::uint64_t end,
               std::int64_t time_ns, std::int64_t now_ns);
  void join(std::size_t stream, std::string_view text, std::uint64_t start, std::uint64_t end,
            std::int64_t time_ns, std::int64_t now_ns);
  void emit_joined(std::size_t stream);
  void emit_partial(std::size_t stream);
  std::string_view keep(std::string& s);

  MultilineRules* rules_;
  std::array<Partial, 2> partial_{};
  std::array<Joined, 2> joined_{};
  std::vector<Record> out_;
  std::vector<std::string> store_;  // texts of out_ that the assembler had to own
  std::size_t stored_ = 0;
};

}  // namespace sluice::parse
