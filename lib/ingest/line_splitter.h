#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "lib/config/config_node.h"
#include "lib/parse/pipeline.h"

namespace sluice::sources {

enum class LineOverflow : std::uint8_t { split, truncate };

/// The keys every line source shares: `max_line_bytes` and `line_overflow`.
struct LineConfig {
  ByteSize max_line_bytes{1ULL << 20};
  LineOverflow overflow = LineOverflow::split;
  /// format, timestamp, interceptors, on_parse_error, multiline.
  parse::PipelineConfig pipeline;
  /// Reads the shared keys from a source's table (the caller rejects unknown keys afterwards).
  static bool parse(const ConfigNode& node, ConfigErrors& errors, LineConfig& out);
};

/// Splits a byte stream into lines. A line ends at '\n'; a '\r' before it is dropped. Bytes are
/// passed through unchanged (no UTF-8 check). Lines longer than max_line_bytes are split into
/// pieces of that size or truncated to it, and counted. Complete lines inside one read are handed
/// out as views of the input (no copy); only a line spanning reads is assembled in a buffer.
class LineSplitter {
 public:
  explicit LineSplitter(const LineConfig& config)
      : max_(config.max_line_bytes.bytes), mode_(config.overflow) {}

  /// Calls on_line(std::string_view) for each complete line in `data`.
  template <class F>
  void feed(std::string_view data, F&& on_line) {
    const char* p = data.data();
    const char* end = p + data.size();
    while (p < end) {
      const char* nl =
          static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      const char* seg_end = nl != nullptr ? nl : end;
      std::string_view seg(p, static_cast<std::size_t>(seg_end - p));
      if (discarding_) {
        if (nl != nullptr) discarding_ = false;
      } else if (partial_.empty() && nl != nullptr && seg.size() <= max_ + 1) {
        emit(seg, on_line);  // the common case: a whole line inside this read
      } else {
        append(seg, on_line);
        if (nl != nullptr && !discarding_) {
          emit(partial_, on_line);
          partial_.clear();
        }
        if (nl != nullptr) {
          discarding_ = false;
          counted_ = false;
          partial_.clear();
        }
      }
      p = nl != nullptr ? nl + 1 : end;
    }
  }

  /// End of input: hands out an unterminated last line, if any.
  template <class F>
  void finish(F&& on_line) {
    if (!partial_.empty() && !discarding_) emit(partial_, on_line);
    partial_.clear();
    discarding_ = false;
    counted_ = false;
  }

  /// Inside on_line: true if the line handed out ends at a newline (not a piece of a longer one).
  bool complete() const noexcept { return complete_; }
  /// Lines split or truncated because they exceeded max_line_bytes.
  std::uint64_t overflows() const noexcept { return overflows_; }
  std::size_t pending_bytes() const noexcept { return partial_.size(); }

 private:
  template <class F>
  void emit(std::string_view line, F& on_line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_) {
      if (!counted_) ++overflows_;
      if (mode_ == LineOverflow::truncate) {
        complete_ = true;
        on_line(line.substr(0, max_));
        return;
      }
      complete_ = false;
      while (line.size() > max_) {
        on_line(line.substr(0, max_));
        line.remove_prefix(max_);
      }
    }
    complete_ = true;
    on_line(line);
  }

  // Adds a piece of an unfinished line to partial_, handing out overflow as soon as it is known,
  // so memory stays bounded by max_line_bytes whatever the input.
  template <class F>
  void append(std::string_view seg, F& on_line) {
    partial_.append(seg);
    // Keep one spare byte: a '\r' that may turn out to end the line is not content.
    while (partial_.size() > max_ + 1) {
      if (!counted_) ++overflows_;
      counted_ = true;
      complete_ = false;
      on_line(std::string_view(partial_).substr(0, max_));
      if (mode_ == LineOverflow::truncate) {
        partial_.clear();
        discarding_ = true;
        return;
      }
      partial_.erase(0, max_);
    }
  }

  std::uint64_t max_;
  LineOverflow mode_;
  std::string partial_;
  bool discarding_ = false;
  bool counted_ = false;  // the current line's overflow was counted
  bool complete_ = true;
  std::uint64_t overflows_ = 0;
};

}  // namespace sluice::sources
