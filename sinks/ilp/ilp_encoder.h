#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/batch.h"

namespace sluice::sinks {

/// The line-protocol type of a field: from the parsed value (`auto`) or forced.
enum class IlpType : std::uint8_t { auto_type, integer, floating, string, boolean };
/// The unit of the designated timestamp.
enum class IlpPrecision : std::uint8_t { ns, us, ms, s };

struct IlpMapping {
  std::string table;
  std::vector<std::string> tags;                        // names of fields sent as tags
  std::vector<std::pair<std::string, IlpType>> fields;  // names of fields sent as fields
  IlpPrecision precision = IlpPrecision::ns;
  bool timestamp = true;  // the event time; false: the server stamps the row
};

/// Appends `s` escaped as a table, tag key, tag value or field name (PROTOCOLS §4.1, as
/// QuestDB's client does): a backslash before each space, comma, '=', '\n', '\r' and '\\'.
void ilp_append_name(std::string& out, std::string_view s);
/// Appends `s` as a quoted string field value: '"', '\\', '\n' and '\r' get a backslash.
void ilp_append_string(std::string& out, std::string_view s);

/// Builds one line per event from its parsed fields:
///   table[,tag=value...] field=value[,field=value...] [timestamp]\n
/// A tag or field the event lacks (or has as null, or an empty tag value) is left out.
class IlpEncoder {
 public:
  explicit IlpEncoder(IlpMapping mapping);
  /// Appends the line of `e` to `out`. Returns false, appending nothing, when the event cannot
  /// make a line: a value that does not fit its forced type, or none of the fields present;
  /// `why` then says which.
  bool encode(const EventView& e, std::string& out, std::string& why) const;
  const IlpMapping& mapping() const noexcept { return mapping_; }

 private:
  bool append_value(const Field& f, IlpType type, std::string& out, std::string& why) const;

  IlpMapping mapping_;
  std::string table_;                    // escaped
  std::vector<std::string> tag_keys_;    // ",key=" escaped
  std::vector<std::string> field_keys_;  // "key=" escaped
  std::int64_t divisor_ = 1;
};

}  // namespace sluice::sinks
