#include "lib/parse/formats.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/lib/parse/parse_helpers.h"

using namespace sluice;
using namespace sluice::parse;
using sluice::parse::testing::PipelineFixture;

namespace {

struct Case {
  std::string_view input;
  ParseError expect;
};

ParseError run(Format& f, std::string_view text, Draft& d) {
  d.reset(text, 0, 0);
  return f.parse(text, d);
}

std::string nested(int depth) {
  return "{\"a\":" + std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']') + "}";
}

}  // namespace

TEST_CASE("json: a table of inputs parses or fails with the right reason", "[parse]") {
  JsonFormat f(JsonOptions{});
  Draft d;
  const std::string big = "{\"msg\":\"" + std::string(1 << 20, 'x') + "\"}";
  const std::string d63 = nested(63), d64 = nested(64), d5000 = nested(5000);
  const Case cases[] = {
      {R"({"a":1,"b":"x"})", ParseError::none},
      {R"(  {"a" : 1 }  )", ParseError::none},
      {"{}", ParseError::none},
      {big, ParseError::none},
      {"", ParseError::json_syntax},
      {"{\"a\":1,,}", ParseError::json_syntax},
      {"{\"a\":", ParseError::json_syntax},
      {"{\"a\":1", ParseError::json_syntax},
      {"not json", ParseError::json_syntax},
      {"{\"a\":\"\xff\xfe\"}", ParseError::json_utf8},
      {"[1,2]", ParseError::json_not_object},
      {"42", ParseError::json_not_object},
      {"\"s\"", ParseError::json_not_object},
      {d63, ParseError::none},
      {d64, ParseError::json_depth},
      {d5000, ParseError::json_depth},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.input.substr(0, 60)));
    CHECK(reason_name(run(f, c.input, d)) == reason_name(c.expect));
  }
}

TEST_CASE("json: values keep their type and text, strings are unescaped", "[parse]") {
  JsonFormat f(JsonOptions{});
  Draft d;
  REQUIRE(run(f,
              R"({"s":"a\"b\u00e9","i":-12,"f":1.5e3,"t":true,"n":null,"o":{"k":[1,2]},"l":[1]})",
              d) == ParseError::none);
  REQUIRE(d.fields.size() == 7);
  CHECK(d.fields[0].text == "a\"b\xc3\xa9");
  CHECK(d.fields[0].type == FieldType::string);
  CHECK(d.fields[1].text == "-12");
  CHECK(d.fields[1].type == FieldType::integer);
  CHECK(d.fields[2].text == "1.5e3");
  CHECK(d.fields[2].type == FieldType::floating);
  CHECK(d.fields[3].type == FieldType::boolean);
  CHECK(d.fields[4].type == FieldType::null);
  CHECK(d.fields[5].text == R"({"k":[1,2]})");
  CHECK(d.fields[5].type == FieldType::json);
  CHECK(d.fields[6].text == "[1]");
}

TEST_CASE("json: with fields, only those are extracted, nested paths too", "[parse]") {
  JsonOptions o;
  o.fields = {"uid", "user.name", "missing", "user.id.deeper"};
  JsonFormat f(o);
  Draft d;
  REQUIRE(run(f, R"({"a":[1,{"x":2}],"user":{"id":7,"name":"ann"},"uid":3})", d) ==
          ParseError::none);
  REQUIRE(d.fields.size() == 2);  // in document order
  CHECK(d.fields[0].key == "user.name");
  CHECK(d.fields[0].text == "ann");
  CHECK(d.fields[1].key == "uid");
  CHECK(d.fields[1].text == "3");
  // Stopping after the last wanted field still checks the whole line for UTF-8 and unterminated
  // strings or brackets; grammar after that field is not checked (as the README says).
  JsonOptions first;
  first.fields = {"uid"};
  JsonFormat one(first);
  CHECK(run(one, R"({"uid":1, "a": [1,2)", d) == ParseError::json_syntax);
  CHECK(run(one, R"({"uid":1, "a": "open)", d) == ParseError::json_syntax);
  CHECK(run(one, "{\"uid\":1, \"a\": \"\xff\"}", d) == ParseError::json_utf8);
  CHECK(run(one, R"({"uid":1, "a": }})", d) == ParseError::none);
  // Malformed documents are errors, never undefined behaviour (found by fuzz_parse).
  CHECK(run(f, R"({"cime": "": [1]}, "log": 137, "b": {"c": [:::: ]})", d) != ParseError::none);
  JsonFormat all(JsonOptions{});
  CHECK(run(all, R"({"create_time": null5-06-24 20:30:00.020", "event":d": 1})", d) ==
        ParseError::json_syntax);
}

TEST_CASE("json: a wrapped JSON string is unwrapped into fields", "[parse]") {
  JsonOptions o;
  o.unwrap = "log";
  JsonFormat f(o);
  Draft d;
  REQUIRE(run(f, R"({"log":"{\"level\":\"warn\",\"n\":2}","stream":"stdout"})", d) ==
          ParseError::none);
  REQUIRE(d.fields.size() == 3);
  CHECK(d.fields[0].key == "stream");
  CHECK(d.fields[1].key == "level");
  CHECK(d.fields[1].text == "warn");
  CHECK(d.fields[2].text == "2");
  CHECK(run(f, R"({"log":"plain text"})", d) == ParseError::json_unwrap);
  CHECK(run(f, R"({"log":5})", d) == ParseError::json_unwrap);
  CHECK(run(f, R"({"other":1})", d) == ParseError::none);  // nothing to unwrap
}

TEST_CASE("json: keys and values without escapes are stored once, as parts of the line",
          "[parse]") {
  JsonFormat f(JsonOptions{});
  Draft d;
  const std::string line = R"({"level":"warn","n":2,"o":{"k":[1]},"esc":"a\"b","t":true})";
  REQUIRE(run(f, line, d) == ParseError::none);
  REQUIRE(d.fields.size() == 5);
  Batch b;
  d.append_to(b);
  // Only the unescaped string and the literal "true" are not in the line as they are stored.
  CHECK(b.bytes() == line.size() + 3 + 4);
  const EventView e = b[0];
  CHECK(e.body() == line);
  const char* const keys[] = {"level", "n", "o", "esc", "t"};
  const char* const texts[] = {"warn", "2", R"({"k":[1]})", "a\"b", "true"};
  REQUIRE(e.field_count() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(e.field(i).key == keys[i]);
    CHECK(e.field(i).text == texts[i]);
  }
  // Parsing a text that is not the draft's body copies everything, as before.
  d.reset("other", 0, 0);
  REQUIRE(f.parse(line, d) == ParseError::none);
  Batch c;
  d.append_to(c);
  CHECK(c.bytes() == 5 + 5 + 4 + 1 + 1 + 1 + 9 + 3 + 3 + 1 + 4);
  CHECK(c[0].field(2).text == R"({"k":[1]})");
  // Members of an unwrapped string come from its unescaped text (copied); the others do not.
  JsonOptions o;
  o.unwrap = "log";
  JsonFormat u(o);
  const std::string wrapped = R"({"log":"{\"level\":\"warn\"}","s":"x"})";
  REQUIRE(run(u, wrapped, d) == ParseError::none);
  Batch w;
  d.append_to(w);
  CHECK(w.bytes() == wrapped.size() + 5 + 4);
  REQUIRE(w[0].field_count() == 2);
  CHECK(w[0].field(0).key == "s");
  CHECK(w[0].field(1).key == "level");
  CHECK(w[0].field(1).text == "warn");
}

TEST_CASE("logfmt pairs and regex groups taken from the line are stored once", "[parse]") {
  Draft d;
  Batch b;
  auto logfmt = LogfmtFormat();
  const std::string line = R"(level=info msg="two words" esc="a\"b" bare)";
  REQUIRE(run(logfmt, line, d) == ParseError::none);
  d.append_to(b);
  // Only the unescaped value (a"b) and the literal "true" of the bare key are copied.
  CHECK(b[0].bytes() == line.size() + 3 + 4);
  REQUIRE(b[0].field_count() == 4);
  CHECK(b[0].field(1).text == "two words");
  CHECK(b[0].field(2).text == "a\"b");
  CHECK(b[0].field(3).text == "true");
  auto re = RegexFormat::make(R"((?<word>\w+) (?<n>\d+))", 100'000);
  REQUIRE(re);
  const std::string text = "abc 123";
  REQUIRE(run(**re, text, d) == ParseError::none);
  d.append_to(b);
  // The groups' values are parts of the line; their names ("word", "n") are copied.
  CHECK(b[1].bytes() == text.size() + 4 + 1);
  CHECK(b[1].field(0).text == "abc");
  CHECK(b[1].field(1).text == "123");
}

TEST_CASE("regex: the ready access-log patterns", "[parse]") {
  auto combined = RegexFormat::make("combined", Regex::kDefaultMatchLimit);
  REQUIRE(combined);
  Draft d;
  const std::string line =
      R"(203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\"")";
  REQUIRE(run(**combined, line, d) == ParseError::none);
  auto get = [&](std::string_view k) -> std::string {
    Field* f = d.field(k);
    return f ? std::string(f->text) : "<absent>";
  };
  CHECK(get("host") == "203.0.113.9");
  CHECK(get("user") == "frank");
  CHECK(get("time") == "10/Oct/2000:13:55:36 -0700");
  CHECK(get("method") == "GET");
  CHECK(get("path") == "/apache_pb.gif?a=1");
  CHECK(get("protocol") == "HTTP/1.0");
  CHECK(get("status") == "200");
  CHECK(get("size") == "2326");
  CHECK(get("referer") == "http://www.example.com/start.html");
  CHECK(get("agent") == R"(Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\")");

  auto common = RegexFormat::make("common", Regex::kDefaultMatchLimit);
  REQUIRE(common);
  CHECK(run(**common, R"(::1 - - [10/Oct/2000:13:55:36 +0000] "HEAD / HTTP/1.1" 304 -)", d) ==
        ParseError::none);
  CHECK(run(**common, "garbage", d) == ParseError::regex_no_match);
  CHECK(run(**combined, "", d) == ParseError::regex_no_match);
}

TEST_CASE("regex: syslog RFC 3164 and RFC 5424", "[parse]") {
  auto f = RegexFormat::make("syslog", Regex::kDefaultMatchLimit);
  REQUIRE(f);
  Draft d;
  REQUIRE(run(**f, "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick", d) ==
          ParseError::none);
  CHECK(d.field("pri")->text == "34");
  CHECK(d.field("time")->text == "Oct 11 22:14:15");
  CHECK(d.field("host")->text == "mymachine");
  CHECK(d.field("ident")->text == "su");
  CHECK(d.field("pid")->text == "123");
  CHECK(d.field("message")->text == "'su root' failed for lonvick");
  REQUIRE(run(**f, "Jun  4 07:01:02 web01 cron: job done", d) == ParseError::none);
  CHECK(d.field("pid") == nullptr);
  REQUIRE(
      run(**f,
          R"(<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event)",
          d) == ParseError::none);
  CHECK(d.field("version")->text == "1");
  CHECK(d.field("time")->text == "2003-10-11T22:14:15.003Z");
  CHECK(d.field("msgid")->text == "ID47");
  CHECK(d.field("extradata")->text == R"([exampleSDID@32473 iut="3" eventSource="Application"])");
  CHECK(d.field("message")->text == "An application event");
}

TEST_CASE("regex: catastrophic backtracking is bounded by the match limit", "[parse]") {
  auto f = RegexFormat::make("^(?<x>(a+)+)$", 10'000);
  REQUIRE(f);
  Draft d;
  const std::string evil = std::string(40, 'a') + "b";
  const auto start = std::chrono::steady_clock::now();
  CHECK(run(**f, evil, d) == ParseError::regex_limit);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(run(**f, "aaaa", d) == ParseError::none);
}

TEST_CASE("regex: patterns without named groups or that do not compile are refused", "[parse]") {
  auto none = RegexFormat::make("^(\\d+)$", 1000);
  REQUIRE_FALSE(none);
  CHECK_THAT(none.error().message(), Catch::Contains("no named groups"));
  auto bad = RegexFormat::make("^(?<a>[", 1000);
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message(), Catch::Contains("does not compile at offset"));
}

TEST_CASE("logfmt: pairs, quotes, escapes, bare keys and errors", "[parse]") {
  LogfmtFormat f;
  Draft d;
  REQUIRE(run(f, R"(level=info msg="hello \"world\"" n=3 debug  path=/a=b)", d) ==
          ParseError::logfmt_syntax);
  REQUIRE(run(f, R"(level=info msg="hello \"world\"\n" n=3 debug)", d) == ParseError::none);
  REQUIRE(d.fields.size() == 4);
  CHECK(d.field("msg")->text == "hello \"world\"\n");
  CHECK(d.field("n")->text == "3");
  CHECK(d.field("debug")->type == FieldType::boolean);
  CHECK(run(f, "", d) == ParseError::none);
  CHECK(run(f, "=x", d) == ParseError::logfmt_syntax);
  CHECK(run(f, R"(a="unterminated)", d) == ParseError::logfmt_syntax);
  CHECK(run(f, R"(a="x"b)", d) == ParseError::logfmt_syntax);
  CHECK(run(f, "a=", d) == ParseError::none);
  CHECK(d.field("a")->text.empty());
}

TEST_CASE("raw: bytes pass unchanged, invalid UTF-8 and empty lines included", "[parse]") {
  PipelineFixture p("");
  CHECK(p.feed("\xff\xfe bytes") == EventPipeline::Outcome::kept);
  CHECK(p.feed("") == EventPipeline::Outcome::kept);
  REQUIRE(p.out.size() == 2);
  CHECK(p.out[0].body() == "\xff\xfe bytes");
  CHECK(p.out[1].body().empty());
  CHECK(p.out[0].field_count() == 0);
}

// systemd's MemoryDenyWriteExecute=yes (which the shipped unit sets) forbids the writable and
// executable memory PCRE2's JIT compiles into. Regex parsing must still work, in the interpreter.
TEST_CASE("regex parsing works where writable executable memory is refused", "[parse]") {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN (1): Linux 6.3 and later.
    if (::prctl(65, 1UL, 0UL, 0UL, 0UL) != 0) ::_exit(77);
    auto r = parse::Regex::compile(R"((?<word>\w+) (?<n>\d+))", 100'000);
    if (!r) ::_exit(2);
    if (r->jit()) ::_exit(3);  // the refusal would have been a crash or an error later
    if (r->match("abc 123") != parse::Regex::Outcome::match) ::_exit(4);
    if (r->group(2) != "123") ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    WARN("skipped: this kernel has no PR_SET_MDWE");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
  // Where writable executable memory is allowed, the same pattern is compiled by the JIT.
  std::uint32_t has_jit = 0;
  pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
  auto r = parse::Regex::compile(R"((?<word>\w+) (?<n>\d+))", 100'000);
  REQUIRE(r);
  CHECK(r->jit() == (has_jit == 1));
}

namespace {

// The reference: every member through simdjson's own unescaping (unescaped_key, get_string),
// which is what JsonFormat did before it used unescaped keys and strings in place.
struct RefField {
  std::string key, text;
  FieldType type;
};
bool reference_parse(std::string_view text, std::vector<RefField>& out) {
  namespace od = simdjson::ondemand;
  static od::parser parser;
  const simdjson::padded_string padded(text);
  od::document doc;
  if (parser.iterate(padded).get(doc)) return false;
  od::object obj;
  if (doc.get_object().get(obj)) return false;
  for (auto member : obj) {
    std::string_view key;
    if (member.unescaped_key().get(key)) return false;
    od::value v;
    if (member.value().get(v)) return false;
    od::json_type t{};
    if (v.type().get(t)) return false;
    std::string_view s;
    FieldType ft = FieldType::string;
    if (t == od::json_type::string) {
      if (v.get_string().get(s)) return false;
    } else if (t == od::json_type::number) {
      od::number_type nt{};
      if (v.get_number_type().get(nt)) return false;
      ft = nt == od::number_type::floating_point_number ? FieldType::floating : FieldType::integer;
      s = v.raw_json_token();
      while (!s.empty() &&
             (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    } else if (t == od::json_type::object) {
      od::object o;
      if (v.get_object().get(o) || o.raw_json().get(s)) return false;
      ft = FieldType::json;
    } else if (t == od::json_type::array) {
      od::array a;
      if (v.get_array().get(a) || a.raw_json().get(s)) return false;
      ft = FieldType::json;
    } else if (t == od::json_type::boolean) {
      bool b = false;
      if (v.get_bool().get(b)) return false;
      s = b ? "true" : "false";
      ft = FieldType::boolean;
    } else {
      bool null = false;
      if (v.is_null().get(null) || !null) return false;
      s = "null";
      ft = FieldType::null;
    }
    out.push_back({std::string(key), std::string(s), ft});
  }
  return true;
}

}  // namespace

TEST_CASE("json: keys and strings used in place match simdjson's unescaping", "[parse]") {
  JsonFormat f(JsonOptions{});
  Draft d;
  const std::string long_plain(300, 'x');
  const std::string inputs[] = {
      R"({"create_time":"2025-06-24 20:30:00.020","event":"login","uid":148950000,"msg":"xxx"})",
      R"({"a\"b":1,"c\\":"d","\u00e9":"\u00e9","e\/":"\/"})",
      R"({"s":"ends with a backslash \\","t":"quote \" inside","u":"\ud83d\ude00"})",
      R"({"k":"","":"","  ":"  "})",
      "{\"ws\" :\t\"v\"  ,\n\"n\" : \"tail\"   }",
      R"({"s":"a,b}c:d[e]","t":"{\"x\":1}"})",
      R"({"esc_late":")" + long_plain + R"(\n"})",
      R"({"plain_long":")" + long_plain + R"("})",
      R"({"i":0,"neg0":-0,"big":18446744073709551616,"min":-9223372036854775809})",
      R"({"f":1e308,"tiny":1e-400,"e":1E+2,"z":0.0,"x":-1.5e-3})",
      R"({"o":{"a":{"b":"c\"d"}},"l":["x\"",{"y":"z"}],"after":"ok"})",
      R"({"t":true,"f":false,"n":null})",
      "{\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
      // Errors: the same ones as the reference gives.
      R"({"bad":"\x"})",
      R"({"bad":"\ud800"})",
      "{\"ctl\":\"a\x01\"}",
      "{\"key\x01\":1}",
      R"({"a":"x" "b":1})",
      R"({"a":"x",})",
      R"({"a" "x"})",
      R"({1:2})",
  };
  for (const auto& in : inputs) {
    INFO(in);
    std::vector<RefField> ref;
    const bool ref_ok = reference_parse(in, ref);
    d.reset(in, 0, 0);
    const ParseError e = f.parse(in, d);
    REQUIRE((e == ParseError::none) == ref_ok);
    if (!ref_ok) continue;
    REQUIRE(d.fields.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      CHECK(d.fields[i].key == ref[i].key);
      CHECK(d.fields[i].text == ref[i].text);
      CHECK(d.fields[i].type == ref[i].type);
    }
  }
}

TEST_CASE("json: mutated lines parse as simdjson's unescaping does", "[parse]") {
  // Seeds with escapes in keys and values, mutated one to three bytes at a time (deterministic):
  // every line either fails in both or gives the same fields.
  const std::string seeds[] = {
      R"({"create_time": "2025-06-24 20:30:00.020", "event": "chat", "uid": 148950274, "b": {"c": [1]}, "log": "{\"x\":1}"})",
      R"({"k\"ey":"v\\al","\u00e9":"a\/b","n":-1.5e3,"t":true,"z":null,"s":"  spaced  "})",
  };
  const char alphabet[] = {'"', '\\', ',', ':', '{', '}', '[', ']',    ' ',    'u',
                           'n', '0',  '1', 'e', '.', '-', 'x', '\x01', '\xc3', '\xa9'};
  JsonFormat f(JsonOptions{});
  Draft d;
  std::uint64_t state = 42;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::size_t>(state >> 33);
  };
  std::size_t same_error = 0, same_fields = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string in = seeds[static_cast<std::size_t>(round) % 2];
    const std::size_t edits = 1 + next() % 3;
    for (std::size_t k = 0; k < edits; ++k) {
      const std::size_t at = next() % in.size();
      const char c = alphabet[next() % sizeof(alphabet)];
      switch (next() % 3) {
        case 0:
          in[at] = c;
          break;
        case 1:
          in.insert(in.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          if (in.size() > 1) in.erase(at, 1);
      }
    }
    INFO(in);
    std::vector<RefField> ref;
    const bool ref_ok = reference_parse(in, ref);
    d.reset(in, 0, 0);
    const ParseError e = f.parse(in, d);
    if (e == ParseError::json_depth) continue;  // the reference has no depth limit
    REQUIRE((e == ParseError::none) == ref_ok);
    if (!ref_ok) {
      ++same_error;
      continue;
    }
    ++same_fields;
    REQUIRE(d.fields.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      REQUIRE(d.fields[i].key == ref[i].key);
      REQUIRE(d.fields[i].text == ref[i].text);
      REQUIRE(d.fields[i].type == ref[i].type);
    }
  }
  // Both outcomes were exercised many times.
  CHECK(same_error > 1000);
  CHECK(same_fields > 1000);
}

TEST_CASE("json: a line parses the same whatever line came before it", "[parse]") {
  // More closing brackets than opening ones: simdjson ignores what follows the first object's
  // end, unless the byte after the line is a '}' (it then checks the balance and refuses it).
  const std::string unbalanced = R"({"uid": 14895}274, "b": 1})";
  JsonFormat fresh(JsonOptions{}), reused(JsonOptions{});
  Draft d;
  d.reset(unbalanced, 0, 0);
  const ParseError first = fresh.parse(unbalanced, d);
  CHECK(first == ParseError::none);
  CHECK(d.fields.size() == 1);
  const std::string longer = unbalanced + std::string(40, '}');  // leaves '}' in the buffer
  d.reset(longer, 0, 0);
  (void)reused.parse(longer, d);
  d.reset(unbalanced, 0, 0);
  CHECK(reused.parse(unbalanced, d) == first);
}

TEST_CASE("json: a line that ends where its buffer ends is read within it", "[parse]") {
  // Under ASan any read past the line's last byte fails this test: the parser must copy such a
  // line into its padded buffer.
  JsonFormat f(JsonOptions{});
  Draft d;
  for (const std::string_view line : {R"({"a":"b"})", R"({"a":1})", R"({"k\"":"v\\"})", "{}"}) {
    auto buf = std::make_unique<char[]>(line.size());
    std::memcpy(buf.get(), line.data(), line.size());
    const std::string_view text(buf.get(), line.size());
    d.reset(text, 0, 0);
    CHECK(f.parse(text, d) == ParseError::none);
  }
}
