#include "sinks/ilp/ilp_encoder.h"

#include <catch2/catch.hpp>

#include "sinks/ilp/ilp_sink.h"
#include "tests/unit/sinks/tcp_sink_driver.h"

using namespace sluice;
using namespace sluice::sinks;

namespace {

std::string name(std::string_view s) {
  std::string out;
  ilp_append_name(out, s);
  return out;
}
std::string str(std::string_view s) {
  std::string out;
  ilp_append_string(out, s);
  return out;
}

IlpMapping game_mapping() {
  IlpMapping m;
  m.table = "game_event_table";
  m.tags = {"game_id", "event"};
  m.fields = {
      {"uid", IlpType::integer}, {"role", IlpType::string}, {"server_id", IlpType::auto_type}};
  return m;
}

Batch game_event() {
  Batch b;
  b.add("{...}", 1'750'768'209'903'000'000, 1);
  b.add_field("create_time", "2025-06-24 20:30:09.903", FieldType::string);
  b.add_field("event", "login", FieldType::string);
  b.add_field("game_id", "g1", FieldType::string);
  b.add_field("role", "none", FieldType::string);
  b.add_field("server_id", "s45", FieldType::string);
  b.add_field("uid", "148952381", FieldType::integer);
  return b;
}

}  // namespace

TEST_CASE("ilp escaping: names and tag values escape space comma equals CR LF and backslash",
          "[unit][sinks][ilp]") {
  CHECK(name("plain_name.1") == "plain_name.1");
  CHECK(name("a b") == "a\\ b");
  CHECK(name("a,b") == "a\\,b");
  CHECK(name("a=b") == "a\\=b");
  CHECK(name("a\nb") == "a\\\nb");
  CHECK(name("a\rb") == "a\\\rb");
  CHECK(name("a\\b") == "a\\\\b");
  CHECK(name(" ,=\\") == "\\ \\,\\=\\\\");
  CHECK(name("") == "");
  CHECK(name("\"quoted\"") == "\"quoted\"");  // quotes need no escape outside string values
  CHECK(name("h\xc3\xa9") == "h\xc3\xa9");    // UTF-8 passes through
}

TEST_CASE("ilp escaping: string values escape quote backslash CR and LF only",
          "[unit][sinks][ilp]") {
  CHECK(str("plain") == "\"plain\"");
  CHECK(str("") == "\"\"");
  CHECK(str("say \"hi\"") == "\"say \\\"hi\\\"\"");
  CHECK(str("c:\\dir") == "\"c:\\\\dir\"");
  CHECK(str("two\nlines") == "\"two\\\nlines\"");
  CHECK(str("cr\r") == "\"cr\\\r\"");
  CHECK(str("a b,c=d") == "\"a b,c=d\"");  // space, comma and equals are fine inside quotes
}

TEST_CASE("ilp encoder: scenario 2's game event makes one line with typed fields",
          "[unit][sinks][ilp]") {
  IlpEncoder enc(game_mapping());
  Batch b = game_event();
  std::string out, why;
  REQUIRE(enc.encode(b[0], out, why));
  CHECK(out ==
        "game_event_table,game_id=g1,event=login uid=148952381i,role=\"none\",server_id=\"s45\" "
        "1750768209903000000\n");
}

TEST_CASE("ilp encoder: types from the parsed value", "[unit][sinks][ilp]") {
  IlpMapping m;
  m.table = "t";
  m.fields = {{"i", IlpType::auto_type}, {"f", IlpType::auto_type}, {"b", IlpType::auto_type},
              {"s", IlpType::auto_type}, {"j", IlpType::auto_type}, {"n", IlpType::auto_type}};
  m.timestamp = false;
  IlpEncoder enc(m);
  Batch b;
  b.add("", 0, 1);
  b.add_field("i", "-7", FieldType::integer);
  b.add_field("f", "1.5e3", FieldType::floating);
  b.add_field("b", "true", FieldType::boolean);
  b.add_field("s", "x y", FieldType::string);
  b.add_field("j", "{\"a\":1}", FieldType::json);
  b.add_field("n", "", FieldType::null);
  std::string out, why;
  REQUIRE(enc.encode(b[0], out, why));
  CHECK(out == "t i=-7i,f=1.5e3,b=t,s=\"x y\",j=\"{\\\"a\\\":1}\"\n");
}

TEST_CASE("ilp encoder: forced types convert or reject the event with a reason",
          "[unit][sinks][ilp]") {
  IlpMapping m;
  m.table = "t";
  m.fields = {{"v", IlpType::integer}};
  m.timestamp = false;
  auto one = [&](IlpType type, std::string_view text, FieldType ft, std::string& out,
                 std::string& why) {
    m.fields[0].second = type;
    IlpEncoder enc(m);
    Batch b;
    b.add("", 0, 1);
    b.add_field("v", text, ft);
    out.clear();
    why.clear();
    return enc.encode(b[0], out, why);
  };
  std::string out, why;
  CHECK(one(IlpType::integer, "42", FieldType::string, out, why));
  CHECK(out == "t v=42i\n");
  CHECK_FALSE(one(IlpType::integer, "4.2", FieldType::floating, out, why));
  CHECK(out.empty());
  CHECK(why == "field 'v': \"4.2\" is not an integer");
  CHECK_FALSE(one(IlpType::integer, "12ab", FieldType::string, out, why));
  CHECK(why == "field 'v': \"12ab\" is not an integer");
  CHECK(one(IlpType::floating, "3", FieldType::integer, out, why));
  CHECK(out == "t v=3\n");  // a bare number is a float in line protocol
  CHECK(one(IlpType::floating, "2.5", FieldType::string, out, why));
  CHECK(out == "t v=2.5\n");
  CHECK_FALSE(one(IlpType::floating, "nan", FieldType::string, out, why));
  CHECK(why == "field 'v': \"nan\" is not a finite number");
  CHECK(one(IlpType::string, "148952381", FieldType::integer, out, why));
  CHECK(out == "t v=\"148952381\"\n");
  CHECK(one(IlpType::boolean, "FALSE", FieldType::string, out, why));
  CHECK(out == "t v=f\n");
  CHECK_FALSE(one(IlpType::boolean, "yes", FieldType::string, out, why));
  CHECK(why == "field 'v': \"yes\" is not a boolean");
}

TEST_CASE("ilp encoder: absent or null fields and tags are left out, no field at all rejects",
          "[unit][sinks][ilp]") {
  IlpEncoder enc(game_mapping());
  Batch b;
  b.add("", 5'000'000'000, 1);
  b.add_field("game_id", "", FieldType::string);  // an empty tag value is left out
  b.add_field("role", "mage", FieldType::string);
  b.add_field("uid", "", FieldType::null);
  b.add("", 5'000'000'000, 2);
  b.add_field("event", "chat", FieldType::string);
  std::string out, why;
  REQUIRE(enc.encode(b[0], out, why));
  CHECK(out == "game_event_table role=\"mage\" 5000000000\n");
  out.clear();
  CHECK_FALSE(enc.encode(b[1], out, why));
  CHECK(out.empty());
  CHECK(why == "the event has none of the fields [uid, role, server_id]");
}

TEST_CASE("ilp encoder: precision divides the event time", "[unit][sinks][ilp]") {
  for (auto [p, expect] :
       std::vector<std::pair<IlpPrecision, std::string>>{{IlpPrecision::ns, "1750768209903123456"},
                                                         {IlpPrecision::us, "1750768209903123"},
                                                         {IlpPrecision::ms, "1750768209903"},
                                                         {IlpPrecision::s, "1750768209"}}) {
    IlpMapping m;
    m.table = "t";
    m.fields = {{"v", IlpType::auto_type}};
    m.precision = p;
    IlpEncoder enc(m);
    Batch b;
    b.add("", 1'750'768'209'903'123'456, 1);
    b.add_field("v", "1", FieldType::integer);
    std::string out, why;
    REQUIRE(enc.encode(b[0], out, why));
    CHECK(out == "t v=1i " + expect + "\n");
  }
}

TEST_CASE("ilp encoder: table tag and field names are escaped", "[unit][sinks][ilp]") {
  IlpMapping m;
  m.table = "my table,x";
  m.tags = {"host name"};
  m.fields = {{"a=b", IlpType::auto_type}};
  m.timestamp = false;
  IlpEncoder enc(m);
  Batch b;
  b.add("", 0, 1);
  b.add_field("host name", "web 1,eu=west", FieldType::string);
  b.add_field("a=b", "v\"q", FieldType::string);
  std::string out, why;
  REQUIRE(enc.encode(b[0], out, why));
  CHECK(out == "my\\ table\\,x,host\\ name=web\\ 1\\,eu\\=west a\\=b=\"v\\\"q\"\n");
}

TEST_CASE("ilp config: keys defaults and errors", "[unit][sinks][ilp][config]") {
  std::vector<std::string> errors;
  auto c = test::parse_sink<IlpConfig>(R"([sinks.s]
url = "http://127.0.0.1:8086/write?db=game"
table = "game_event_table"
tags = ["game_id", "event"]
fields = { uid = "integer", role = "string", server_id = "string" }
)",
                                       errors);
  INFO((errors.empty() ? std::string() : errors[0]));
  REQUIRE(c);
  CHECK(!c->tcp);
  CHECK(c->write_url() == "http://127.0.0.1:8086/write?db=game&precision=n");
  CHECK(c->mapping.fields.size() == 3);
  CHECK(c->mapping.precision == IlpPrecision::ns);
  CHECK(c->mapping.timestamp);
  c = test::parse_sink<IlpConfig>(R"([sinks.s]
address = "127.0.0.1:9009"
table = "t"
fields = ["a", "b"]
precision = "ms"
)",
                                  errors);
  REQUIRE(c);
  REQUIRE(c->tcp);
  CHECK(c->tcp->client.address == "127.0.0.1:9009");
  CHECK(c->mapping.fields[1] == std::pair<std::string, IlpType>{"b", IlpType::auto_type});
  c = test::parse_sink<IlpConfig>(R"([sinks.s]
url = "http://127.0.0.1:9000/write?precision=ms"
table = "t"
fields = ["a"]
)",
                                  errors);
  CHECK(!c);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:2:7: sinks.s.url: precision=ms differs from the sink's precision (\"n\"); "
        "set 'precision' instead");
  errors.clear();
  c = test::parse_sink<IlpConfig>(R"([sinks.s]
table = "t"
fields = { uid = "int" }
)",
                                  errors);
  CHECK(!c);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0] ==
        "inline.toml:1:1: sinks.s: missing required key 'url' (HTTP) or 'address' (TCP)");
  CHECK(errors[1].rfind("inline.toml:3:18: sinks.s.fields.uid: ", 0) == 0);
  CHECK(errors[1].find("integer") != std::string::npos);
  errors.clear();
  c = test::parse_sink<IlpConfig>(R"([sinks.s]
url = "ftp://x"
address = "127.0.0.1:9009"
fields = []
)",
                                  errors);
  CHECK(!c);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0] ==
        "inline.toml:1:1: sinks.s: set either 'url' (HTTP) or 'address' (TCP), not both");
  CHECK(errors[1] == "inline.toml:1:1: sinks.s: missing required key 'table'");
  CHECK(errors[2] == "inline.toml:2:7: sinks.s.url: must start with http:// or https://");
}
