#pragma once

#include <string_view>

#include "lib/core/batch.h"
#include "sql/value.h"

namespace sluice::sql {

/// Finds member path `path` ("b" or "b.c") inside the JSON object text `json` (a field the json
/// format kept as JSON text because it is an object). On success sets `text` and `type` as the
/// json format would for a top-level member: strings unescaped (into `arena` when they hold
/// escapes), numbers, booleans and null as their text, objects and arrays as their JSON text.
/// False if the path is absent or the text is not valid enough to follow.
bool json_lookup(std::string_view json, std::string_view path, Arena& arena, std::string_view& text,
                 FieldType& type);

}  // namespace sluice::sql
