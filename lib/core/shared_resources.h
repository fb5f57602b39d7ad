#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "lib/core/result.h"
#include "lib/core/status.h"

namespace sluice {

/// What the components of one agent share, each under a key (the lmdb channels: their one
/// environment, data_dir/lmdb). The agent owns the store and hands it to every component through
/// its context; it is created before the components and released after them (Agent::~Agent), so
/// that a resource outlives every user. A user may keep its own shared_ptr, so a resource lives
/// until the store and its last user are both gone. Components created without an agent (tests,
/// benchmarks, `sluice channel`) pass a store of their own: there is no global one.
/// Used from the loop thread only.
class SharedResources {
 public:
  SharedResources() = default;
  SharedResources(const SharedResources&) = delete;
  SharedResources& operator=(const SharedResources&) = delete;

  /// The resource under `key`, made by `make()` (returning Result<std::shared_ptr<T>>) if there
  /// is none yet. A failed make() stores nothing: the next caller tries again. The same key asked
  /// for with another type is an error, not a cast.
  template <class T, class Make>
  Result<std::shared_ptr<T>> get_or_create(const std::string& key, Make&& make) {
    if (auto it = entries_.find(key); it != entries_.end()) {
      if (it->second.type != &kTypeTag<T>) {
        return Status(Errc::config, "shared resource '" + key + "' holds another type");
      }
      return std::static_pointer_cast<T>(it->second.value);
    }
    Result<std::shared_ptr<T>> made = std::forward<Make>(make)();
    if (!made) return made.error();
    entries_.emplace(key, Entry{*made, &kTypeTag<T>});
    return made;
  }

  /// The resource under `key` if it exists with type T, else null.
  template <class T>
  std::shared_ptr<T> find(const std::string& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.type != &kTypeTag<T>) return nullptr;
    return std::static_pointer_cast<T>(it->second.value);
  }

  std::size_t size() const noexcept { return entries_.size(); }
  /// Releases the store's references (the agent: after its components are destroyed).
  void clear() noexcept { entries_.clear(); }

 private:
  // One address per type: identifies T without RTTI.
  template <class T>
  static constexpr char kTypeTag = 0;
  struct Entry {
    std::shared_ptr<void> value;
    const char* type;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace sluice
