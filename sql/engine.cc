#include "sql/engine.h"

namespace sluice::sql {

std::string_view type_name(SqlType t) noexcept {
  switch (t) {
    case SqlType::null:
      return "NULL";
    case SqlType::boolean:
      return "BOOLEAN";
    case SqlType::integer:
      return "BIGINT";
    case SqlType::floating:
      return "DOUBLE";
    case SqlType::string:
      return "VARCHAR";
    case SqlType::timestamp:
      return "TIMESTAMP";
    case SqlType::interval:
      return "INTERVAL";
    case SqlType::any:
      return "ANY";
  }
  return "?";
}

std::string CompileError::str() const {
  return std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

}  // namespace sluice::sql
