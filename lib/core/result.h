#pragma once

#include <utility>
#include <variant>

#include "lib/core/assert.h"
#include "lib/core/status.h"

namespace sluice {

/// A value or the Status that explains its absence; the surface of std::expected<T, Status>.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Status error) : v_(std::in_place_index<1>, std::move(error)) {  // NOLINT
    SLUICE_ASSERT(!std::get<1>(v_).ok());
  }

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Status& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace sluice
