#include "sinks/ilp/ilp_encoder.h"

#include <charconv>
#include <cmath>
#include <optional>

namespace sluice::sinks {

void ilp_append_name(std::string& out, std::string_view s) {
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == ' ' || c == ',' || c == '=' || c == '\n' || c == '\r' || c == '\\') {
      out.append(s.data() + run, i - run);
      out += '\\';
      out += c;
      run = i + 1;
    }
  }
  out.append(s.data() + run, s.size() - run);
}

void ilp_append_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"' || c == '\\' || c == '\n' || c == '\r') {
      out.append(s.data() + run, i - run);
      out += '\\';
      out += c;
      run = i + 1;
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

IlpEncoder::IlpEncoder(IlpMapping mapping) : mapping_(std::move(mapping)) {
  ilp_append_name(table_, mapping_.table);
  for (const auto& t : mapping_.tags) {
    std::string k = ",";
    ilp_append_name(k, t);
    k += '=';
    tag_keys_.push_back(std::move(k));
  }
  for (const auto& [name, type] : mapping_.fields) {
    std::string k;
    ilp_append_name(k, name);
    k += '=';
    field_keys_.push_back(std::move(k));
  }
  switch (mapping_.precision) {
    case IlpPrecision::ns:
      divisor_ = 1;
      break;
    case IlpPrecision::us:
      divisor_ = 1'000;
      break;
    case IlpPrecision::ms:
      divisor_ = 1'000'000;
      break;
    case IlpPrecision::s:
      divisor_ = 1'000'000'000;
      break;
  }
}

namespace {

bool find_field(const EventView& e, std::string_view name, Field& out) {
  for (std::size_t i = 0; i < e.field_count(); ++i) {
    Field f = e.field(i);
    if (f.key == name) {
      out = f;
      return true;
    }
  }
  return false;
}

bool is_integer(std::string_view t) {
  std::int64_t v = 0;
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  return r.ec == std::errc() && r.ptr == t.data() + t.size();
}

bool is_finite_number(std::string_view t) {
  double v = 0;
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  return r.ec == std::errc() && r.ptr == t.data() + t.size() && std::isfinite(v);
}

// Line protocol's boolean spellings; nullopt for anything else.
std::optional<bool> as_bool(std::string_view t) {
  if (t == "t" || t == "T" || t == "true" || t == "True" || t == "TRUE") return true;
  if (t == "f" || t == "F" || t == "false" || t == "False" || t == "FALSE") return false;
  return std::nullopt;
}

std::string quoted(std::string_view text) {
  std::string s = "\"";
  s.append(text.substr(0, 64));
  if (text.size() > 64) s += "...";
  s += '"';
  return s;
}

}  // namespace

bool IlpEncoder::append_value(const Field& f, IlpType type, std::string& out,
                              std::string& why) const {
  const std::string_view t = f.text;
  switch (type) {
    case IlpType::auto_type:
      switch (f.type) {
        case FieldType::integer:
          out.append(t);
          out += 'i';
          return true;
        case FieldType::floating:
          out.append(t);
          return true;
        case FieldType::boolean:
          out += (as_bool(t).value_or(false) ? 't' : 'f');
          return true;
        case FieldType::string:
        case FieldType::json:
          ilp_append_string(out, t);
          return true;
        case FieldType::null:
          return true;  // not reached: nulls are left out
      }
      return true;
    case IlpType::integer:
      if ((f.type == FieldType::integer || f.type == FieldType::string) && is_integer(t)) {
        out.append(t);
        out += 'i';
        return true;
      }
      why = "field '" + std::string(f.key) + "': " + quoted(t) + " is not an integer";
      return false;
    case IlpType::floating:
      if ((f.type == FieldType::integer || f.type == FieldType::floating ||
           f.type == FieldType::string) &&
          is_finite_number(t)) {
        out.append(t);
        return true;
      }
      why = "field '" + std::string(f.key) + "': " + quoted(t) + " is not a finite number";
      return false;
    case IlpType::string:
      ilp_append_string(out, t);
      return true;
    case IlpType::boolean:
      if (f.type == FieldType::boolean || f.type == FieldType::string) {
        if (auto b = as_bool(t)) {
          out += *b ? 't' : 'f';
          return true;
        }
      }
      why = "field '" + std::string(f.key) + "': " + quoted(t) + " is not a boolean";
      return false;
  }
  return false;
}

bool IlpEncoder::encode(const EventView& e, std::string& out, std::string& why) const {
  const std::size_t start = out.size();
  out += table_;
  Field f{};
  for (std::size_t i = 0; i < tag_keys_.size(); ++i) {
    if (!find_field(e, mapping_.tags[i], f) || f.type == FieldType::null || f.text.empty()) {
      continue;
    }
    out += tag_keys_[i];
    ilp_append_name(out, f.text);
  }
  bool first = true;
  for (std::size_t i = 0; i < field_keys_.size(); ++i) {
    if (!find_field(e, mapping_.fields[i].first, f) || f.type == FieldType::null) continue;
    out += first ? ' ' : ',';
    out += field_keys_[i];
    if (!append_value(f, mapping_.fields[i].second, out, why)) {
      out.resize(start);
      return false;
    }
    first = false;
  }
  if (first) {
    out.resize(start);
    why = "the event has none of the fields [";
    for (std::size_t i = 0; i < mapping_.fields.size(); ++i) {
      if (i > 0) why += ", ";
      why += mapping_.fields[i].first;
    }
    why += "]";
    return false;
  }
  if (mapping_.timestamp) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, e.timestamp_ns() / divisor_);
    out += ' ';
    out.append(buf, r.ptr);
  }
  out += '\n';
  return true;
}

}  // namespace sluice::sinks
