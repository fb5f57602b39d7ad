#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "sql/engine.h"

namespace sluice::sql {

/// One value during evaluation. Strings are views: into the event's batch, into a literal of the
/// plan, into a window's key bytes, or into the evaluation Arena.
struct Value {
  SqlType type = SqlType::null;  // never `any` at run time
  bool b = false;
  std::int64_t i = 0;  // integer, timestamp (ns), interval (ns)
  double d = 0;
  std::string_view s;

  static Value null() { return {}; }
  static Value boolean(bool v) {
    Value x;
    x.type = SqlType::boolean;
    x.b = v;
    return x;
  }
  static Value integer(std::int64_t v) {
    Value x;
    x.type = SqlType::integer;
    x.i = v;
    return x;
  }
  static Value floating(double v) {
    Value x;
    x.type = SqlType::floating;
    x.d = v;
    return x;
  }
  static Value string(std::string_view v) {
    Value x;
    x.type = SqlType::string;
    x.s = v;
    return x;
  }
  static Value timestamp(std::int64_t ns) {
    Value x;
    x.type = SqlType::timestamp;
    x.i = ns;
    return x;
  }
  static Value interval(std::int64_t ns) {
    Value x;
    x.type = SqlType::interval;
    x.i = ns;
    return x;
  }
  bool is_null() const noexcept { return type == SqlType::null; }
  bool is_number() const noexcept { return type == SqlType::integer || type == SqlType::floating; }
  double as_double() const noexcept {
    return type == SqlType::floating ? d : static_cast<double>(i);
  }
};

/// Bump storage for strings computed while evaluating one event or one row (LOWER, CONCAT, ...).
/// reset() keeps the blocks, so a warm arena does not allocate.
class Arena {
 public:
  char* allocate(std::size_t n) {
    for (;;) {
      if (block_ < blocks_.size()) {
        Block& b = blocks_[block_];
        if (used_ + n <= b.size) {
          char* p = b.data.get() + used_;
          used_ += n;
          return p;
        }
        if (used_ != 0) {
          ++block_;
          used_ = 0;
          continue;
        }
      }
      // No block left, or an empty one too small for n: a new block goes here.
      const std::size_t size = n > kBlock ? n : kBlock;
      blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(block_),
                     Block{std::make_unique<char[]>(size), size});
      used_ = 0;
    }
  }
  std::string_view copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = allocate(s.size());
    std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
  }
  void reset() noexcept {
    block_ = 0;
    used_ = 0;
  }

 private:
  static constexpr std::size_t kBlock = 4096;
  struct Block {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
  };
  std::vector<Block> blocks_;
  std::size_t block_ = 0;
  std::size_t used_ = 0;
};

}  // namespace sluice::sql
