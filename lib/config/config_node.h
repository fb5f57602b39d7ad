#pragma once

#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lib/config/units.h"

namespace sluice {

/// One configuration error: "FILE:LINE:COL: PATH: MESSAGE".
struct ConfigError {
  std::string file;
  std::uint32_t line = 0;
  std::uint32_t column = 0;
  std::string path;
  std::string message;
  std::string str() const;
};

/// Every error found, in order; all are reported at once. Warnings (a configuration that works but
/// is probably not what was meant) are kept apart: they do not make the configuration invalid.
class ConfigErrors {
 public:
  void add(ConfigError e) { errors_.push_back(std::move(e)); }
  void warn(ConfigError w) { warnings_.push_back(std::move(w)); }
  const std::vector<ConfigError>& warnings() const noexcept { return warnings_; }
  std::size_t size() const noexcept { return errors_.size(); }
  bool empty() const noexcept { return errors_.empty(); }
  const ConfigError& operator[](std::size_t i) const { return errors_[i]; }
  auto begin() const { return errors_.begin(); }
  auto end() const { return errors_.end(); }
  /// Sorts errors and warnings by file position, as a reader scans the file.
  void sort();

 private:
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

/// A string list written either as an array or as one comma-separated string ("h1:9092,h2:9092").
struct StringList {
  std::vector<std::string> items;
};

/// A value check: the value must lie in [lo, hi].
template <class T>
struct InRange {
  T lo, hi;
};
/// A string check: the value must be one of these.
struct OneOf {
  std::vector<std::string_view> values;
};
struct NoCheck {};

/// A TOML table of one component (or of [agent]) with its key path and file, that records which
/// keys were read so that reject_unknown_keys() can name the rest with a suggestion.
class ConfigNode {
 public:
  ConfigNode(const toml::table& table, std::string path, std::string file);

  const std::string& path() const noexcept { return path_; }
  const std::string& file() const noexcept { return file_; }
  const toml::table& table() const noexcept { return *table_; }
  bool has(std::string_view key) const;
  /// Declares `key` known without reading it (the agent reads `type` and `channel` itself).
  void mark_known(std::string_view key) const {
    known_.emplace(key);
    if (key_observer_ != nullptr) key_observer_->declared(path_, key);
  }

  /// Sees every key a ConfigNode of this thread declares known (required(), optional(),
  /// mark_known(), ...) with its table's path: `sluice check --list-keys` and the test that
  /// conf/sluice.toml lists every key are built on it.
  class KeyObserver {
   public:
    virtual void declared(std::string_view path, std::string_view key) = 0;

   protected:
    ~KeyObserver() = default;
  };
  /// Installs `observer` for this thread (nullptr removes it); returns the previous one.
  static KeyObserver* observe_keys(KeyObserver* observer) {
    KeyObserver* previous = key_observer_;
    key_observer_ = observer;
    return previous;
  }

  template <class T, class Check = NoCheck>
  bool required(std::string_view key, T& out, ConfigErrors& errors, const Check& check = {}) const {
    mark_known(key);
    const toml::node* n = table_->get(key);
    if (n == nullptr) {
      error(errors, "missing required key '" + std::string(key) + "'");
      return false;
    }
    return read_checked(key, *n, out, errors, check);
  }
  template <class T, class Check = NoCheck>
  bool optional(std::string_view key, T& out, ConfigErrors& errors, const Check& check = {}) const {
    mark_known(key);
    const toml::node* n = table_->get(key);
    if (n == nullptr) return true;
    return read_checked(key, *n, out, errors, check);
  }
  /// A string key that names one of `values` (`format = "json"` -> OutputFormat::json), so that a
  /// parse function needs no string compares. A wrong value is an error that lists the allowed
  /// names, with a suggestion; `out` keeps its default when the key is absent or wrong.
  template <class T>
  bool optional_enum(
      std::string_view key, T& out, ConfigErrors& errors,
      std::initializer_list<std::pair<std::string_view, std::type_identity_t<T>>> values) const {
    mark_known(key);
    const toml::node* n = table_->get(key);
    if (n == nullptr) return true;
    std::string name, err;
    if (!read(*n, name, err)) {
      error_at(key, errors, std::move(err));
      return false;
    }
    std::vector<std::string_view> names;
    for (const auto& [allowed, value] : values) {
      if (name == allowed) {
        out = value;
        return true;
      }
      names.push_back(allowed);
    }
    passes(name, OneOf{std::move(names)}, err);
    error_at(key, errors, std::move(err));
    return false;
  }
  /// Whether required()/optional()/mark_known() asked for `key`.
  bool is_known(std::string_view key) const { return known_.find(key) != known_.end(); }
  /// A nested table (`timestamp = { ... }` or `[sources.x.sub]`); nullopt if absent or not a table.
  std::optional<ConfigNode> child(std::string_view key, ConfigErrors& errors) const;

  /// Reports every key that no required()/optional()/mark_known() asked for.
  void reject_unknown_keys(ConfigErrors& errors) const;

  /// An error positioned at this table.
  void error(ConfigErrors& errors, std::string message) const;
  /// An error positioned at `key`'s value (or at the key itself with at_key), path PATH.KEY.
  void error_at(std::string_view key, ConfigErrors& errors, std::string message,
                bool at_key = false) const;
  /// An error positioned at element `index` of the array `key`, path PATH.KEY[INDEX].
  void error_at_element(std::string_view key, std::size_t index, ConfigErrors& errors,
                        std::string message) const;
  /// A warning positioned at `key`'s value: the configuration stays valid.
  void warning_at(std::string_view key, ConfigErrors& errors, std::string message) const;

 private:
  bool read(const toml::node& n, std::string& out, std::string& err) const;
  bool read(const toml::node& n, bool& out, std::string& err) const;
  bool read(const toml::node& n, std::int64_t& out, std::string& err) const;
  bool read(const toml::node& n, std::uint64_t& out, std::string& err) const;
  bool read(const toml::node& n, std::uint32_t& out, std::string& err) const;
  bool read(const toml::node& n, double& out, std::string& err) const;
  bool read(const toml::node& n, std::chrono::nanoseconds& out, std::string& err) const;
  bool read(const toml::node& n, std::chrono::milliseconds& out, std::string& err) const;
  bool read(const toml::node& n, ByteSize& out, std::string& err) const;
  bool read(const toml::node& n, std::vector<std::string>& out, std::string& err) const;
  bool read(const toml::node& n, StringList& out, std::string& err) const;

  template <class T, class Check>
  bool read_checked(std::string_view key, const toml::node& n, T& out, ConfigErrors& errors,
                    const Check& check) const {
    T value{};
    std::string err;
    if (!read(n, value, err)) {
      error_at(key, errors, std::move(err));
      return false;
    }
    if constexpr (!std::is_same_v<Check, NoCheck>) {
      if (!passes(value, check, err)) {
        error_at(key, errors, std::move(err));
        return false;
      }
    }
    out = std::move(value);
    return true;
  }

  template <class T, class U>
  static bool passes(const T& v, const InRange<U>& r, std::string& err) {
    const T lo = static_cast<T>(r.lo), hi = static_cast<T>(r.hi);
    if (v >= lo && v <= hi) return true;
    err = "must be in [" + describe(lo) + ", " + describe(hi) + "], got " + describe(v);
    return false;
  }
  static bool passes(const std::string& v, const OneOf& r, std::string& err);
  static std::string describe(std::int64_t v) { return std::to_string(v); }
  static std::string describe(std::uint64_t v) { return std::to_string(v); }
  static std::string describe(std::uint32_t v) { return std::to_string(v); }
  static std::string describe(double v);
  static std::string describe(std::chrono::nanoseconds v) { return format_duration(v); }
  static std::string describe(std::chrono::milliseconds v) {
    return format_duration(std::chrono::nanoseconds(v));
  }
  static std::string describe(ByteSize v) { return format_size(v); }

  const toml::table* table_;
  std::string path_;
  std::string file_;
  mutable std::set<std::string, std::less<>> known_;
  static inline thread_local KeyObserver* key_observer_ = nullptr;
};

/// Levenshtein distance, for "did you mean" suggestions.
std::size_t edit_distance(std::string_view a, std::string_view b);
/// The closest candidate within a small distance, or empty.
std::string_view closest(std::string_view word, const std::vector<std::string_view>& candidates);
/// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace sluice
