// libFuzzer target: line-protocol escaping, checked against a reference decoder. A name (table,
// tag key or value, field name) and a string field value are escaped, then read back as a
// server reads them: the decoded text must equal the input, and no unescaped separator may appear
// inside. A whole line from an event with these texts must end at its only unescaped newline.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/core/batch.h"
#include "sinks/ilp/ilp_encoder.h"

namespace {

// Reads an escaped name up to the first unescaped ' ', ',' or '=' (or the end); returns the
// decoded text and where it stopped.
std::string read_name(std::string_view s, std::size_t& pos) {
  std::string out;
  while (pos < s.size()) {
    const char c = s[pos];
    if (c == '\\' && pos + 1 < s.size()) {
      out += s[pos + 1];
      pos += 2;
      continue;
    }
    if (c == ' ' || c == ',' || c == '=' || c == '\n') break;
    out += c;
    ++pos;
  }
  return out;
}

std::string read_string(std::string_view s, std::size_t& pos) {
  if (pos >= s.size() || s[pos] != '"') std::abort();
  ++pos;
  std::string out;
  while (pos < s.size() && s[pos] != '"') {
    if (s[pos] == '\n') std::abort();  // a raw newline would end the line
    if (s[pos] == '\\' && pos + 1 < s.size()) ++pos;
    out += s[pos++];
  }
  if (pos >= s.size()) std::abort();
  ++pos;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t cut = in.find('\0');
  const std::string_view a = in.substr(0, cut), b = cut == in.npos ? in : in.substr(cut + 1);
  std::string name;
  sinks::ilp_append_name(name, a);
  std::size_t pos = 0;
  if (read_name(name, pos) != a || pos != name.size()) std::abort();
  std::string str;
  sinks::ilp_append_string(str, b);
  pos = 0;
  if (read_string(str, pos) != b || pos != str.size()) std::abort();

  if (a.empty()) return 0;
  sinks::IlpMapping m;
  m.table = std::string(a);
  m.tags = {std::string(a)};
  m.fields = {{std::string(b.empty() ? "v" : b), sinks::IlpType::string}};
  sinks::IlpEncoder enc(m);
  Batch batch;
  batch.add("x", 1, 1);
  batch.add_field(a, b, FieldType::string);
  if (!b.empty()) batch.add_field(b, b, FieldType::string);
  batch.add_field("v", b, FieldType::string);
  std::string line, why;
  if (!enc.encode(batch[0], line, why)) return 0;
  // table[,tag=value] field="..." ts\n: walk it with the reference reader.
  pos = 0;
  if (read_name(line, pos) != a) std::abort();
  while (pos < line.size() && line[pos] == ',') {
    ++pos;
    (void)read_name(line, pos);
    if (pos >= line.size() || line[pos] != '=') std::abort();
    ++pos;
    (void)read_name(line, pos);
  }
  if (pos >= line.size() || line[pos] != ' ') std::abort();
  ++pos;
  (void)read_name(line, pos);
  if (pos >= line.size() || line[pos] != '=') std::abort();
  ++pos;
  if (read_string(line, pos) != b) std::abort();
  const std::size_t nl = line.find('\n', pos);
  if (nl != line.size() - 1) std::abort();
  return 0;
}
