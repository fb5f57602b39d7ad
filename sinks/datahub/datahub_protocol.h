#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/batch.h"

// The pure parts of DataHub's JSON PutRecords API (../shared/PROTOCOLS.md §3): signing, request
// bodies, answers and the classification of error codes. Nothing here touches a socket or a clock.
namespace sluice::sinks::datahub {

/// Appends the standard base64 alphabet, padded, of `bytes` to `out`.
void append_base64(std::string& out, std::string_view bytes);
/// HTTP-date in RFC 1123 form, GMT: "Mon, 02 Jan 2006 15:04:05 GMT".
std::string rfc1123_date(std::int64_t unix_seconds);

/// §3.3: METHOD, Content-Type, Date, then one "name:value" line per header whose lower-cased name
/// starts with "x-datahub-" (sorted by that name), then the path (with "?query" if non-empty),
/// joined by '\n' with no trailing newline. `headers` are the request's other headers.
std::string string_to_sign(std::string_view method, std::string_view content_type,
                           std::string_view date,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::string_view path_and_query);
/// base64(HMAC-SHA1(access_key, string_to_sign)).
std::string signature(std::string_view access_key, std::string_view string_to_sign);
/// "DATAHUB <access_id>:<signature>".
std::string authorization(std::string_view access_id, std::string_view signature);

/// TUPLE field types of a topic schema (§3.2), each with its own text form.
enum class FieldKind : std::uint8_t {
  bigint,
  integer,
  smallint,
  tinyint,
  double_,
  float_,
  boolean,
  timestamp,
  string,
  json,
  decimal
};
std::optional<FieldKind> field_kind(std::string_view name);
std::string_view field_kind_name(FieldKind kind) noexcept;

/// Where a tuple value comes from: a parsed field of the event (by name), its body, or its time.
struct TupleField {
  std::string name;  // the topic's field name
  FieldKind kind = FieldKind::string;
  enum class From : std::uint8_t { field, body, event_time } from = From::field;
  std::string source;  // the event field's name when from == field
};

/// Appends the JSON value (a quoted string or null) that TUPLE field `spec` takes for event `e`.
/// A missing or null field gives null. Returns false, with `error` set, when the event's value
/// has no text form of that type ("abc" for a BIGINT): the record cannot be sent.
bool append_tuple_value(std::string& out, const TupleField& spec, const EventView& e,
                        std::string& error);

/// Builds one PutRecords body: {"Action":"pub","Records":[{"ShardId":"..","Data":..},...]}.
class BodyWriter {
 public:
  void begin();
  /// A BLOB record: Data is the body in base64.
  void add_blob(std::string_view shard_id, std::string_view body);
  /// A TUPLE record; false (nothing appended) when a value has no text form of its type.
  bool add_tuple(std::string_view shard_id, const std::vector<TupleField>& schema,
                 const EventView& e, std::string& error);
  /// Closes the body and returns it; stays valid until the next begin().
  const std::string& finish();
  std::size_t records() const noexcept { return records_; }
  std::size_t size() const noexcept { return out_.size(); }

 private:
  void open_record(std::string_view shard_id);
  std::string out_;
  std::size_t records_ = 0;
};

struct FailedRecord {
  std::uint32_t index = 0;
  std::string code;
  std::string message;
};
/// A 2xx PutRecords answer: {"FailedRecordCount":N,"FailedRecords":[{"Index":i,...}]}. An empty
/// or absent list means every record was accepted. nullopt when the body is not such an object.
std::optional<std::vector<FailedRecord>> parse_put_result(std::string_view body);

struct ErrorBody {
  std::string code;
  std::string message;
};
/// A whole-request error: {"ErrorCode":"..","ErrorMessage":".."}; nullopt if not one.
std::optional<ErrorBody> parse_error(std::string_view body);

struct Shard {
  std::string id;
  std::string state;                         // ACTIVE, CLOSED, OPENING, CLOSING
  std::string begin_hash_key, end_hash_key;  // 32 hex digits, upper case
};
/// GET …/shards: {"Shards":[{"ShardId":"0","State":"ACTIVE","BeginHashKey":..,"EndHashKey":..}]}.
std::optional<std::vector<Shard>> parse_shards(std::string_view body);
/// The ACTIVE shards of `all`, in the listed order.
std::vector<Shard> active_shards(const std::vector<Shard>& all);

/// What the sink does about an error code (§3.4, sluice policy).
enum class CodeClass : std::uint8_t {
  retry,    // LimitExceeded, InternalServerError, ConsumerGroupInProcess, any unknown code
  reroute,  // InvalidShardOperation: the shard was split or merged; list shards, route again
  reject,   // MalformedRecord, InvalidParameter, InvalidSchema...: this record/request never fits
  halt,     // Unauthorized, NoPermission, NoSuch*, ResourceNotFound, OperationDenied: stop sending
};
CodeClass classify_code(std::string_view code) noexcept;
std::string_view code_class_name(CodeClass c) noexcept;

/// MD5 of `key` as 32 upper-case hex digits: DataHub's HashKey space.
std::string hash_key(std::string_view key);
/// The index in `shards` (ACTIVE ones) whose [BeginHashKey, EndHashKey] holds `hash`; falls back to
/// `hash` modulo the count when ranges are missing.
std::size_t shard_for_hash(const std::vector<Shard>& shards, std::string_view hash);

}  // namespace sluice::sinks::datahub
