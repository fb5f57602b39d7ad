#include "agent/import_flume.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace sluice::flume {
namespace {

// ---- Java properties ---------------------------------------------------------------------------

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\f'; }

// One logical line (continuations joined, escapes still in place) and the line it starts on.
struct LogicalLine {
  std::string text;
  int line = 0;
};

std::vector<LogicalLine> logical_lines(std::string_view text) {
  std::vector<LogicalLine> out;
  std::size_t pos = 0;
  int line_no = 0;
  bool continuing = false;
  while (pos < text.size()) {
    std::size_t end = text.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(pos, end - pos);
    // A line ends at \n, \r\n or a lone \r, as in Java.
    pos = end;
    if (pos < text.size() && text[pos] == '\r') ++pos;
    if (pos < text.size() && text[pos] == '\n' && (pos == end || text[pos - 1] == '\r')) ++pos;
    ++line_no;
    std::size_t lead = 0;
    while (lead < raw.size() && is_blank(raw[lead])) ++lead;
    raw.remove_prefix(lead);
    if (!continuing) {
      if (raw.empty() || raw.front() == '#' || raw.front() == '!') continue;
      out.push_back({"", line_no});
    }
    // An odd number of trailing backslashes continues the line; an even number is escaped ones.
    std::size_t slashes = 0;
    while (slashes < raw.size() && raw[raw.size() - 1 - slashes] == '\\') ++slashes;
    continuing = slashes % 2 == 1;
    if (continuing) raw.remove_suffix(1);
    out.back().text.append(raw);
  }
  return out;
}

// Unescapes a key or value; false on a malformed \uXXXX (Java throws there too).
bool unescape(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\' || i + 1 == in.size()) {
      out.push_back(in[i]);
      continue;
    }
    const char c = in[++i];
    switch (c) {
      case 't':
        out.push_back('\t');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'u': {
        if (i + 4 >= in.size()) return false;
        unsigned cp = 0;
        for (int k = 1; k <= 4; ++k) {
          const char h = in[i + k];
          cp <<= 4;
          if (h >= '0' && h <= '9')
            cp |= static_cast<unsigned>(h - '0');
          else if (h >= 'a' && h <= 'f')
            cp |= static_cast<unsigned>(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F')
            cp |= static_cast<unsigned>(h - 'A' + 10);
          else
            return false;
        }
        i += 4;
        // UTF-8; a lone surrogate is written as is (it cannot be valid in either encoding).
        if (cp < 0x80) {
          out.push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
          out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
          out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
          out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
          out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
          out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
        break;
      }
      default:
        out.push_back(c);
    }
  }
  return true;
}

// ---- small helpers -----------------------------------------------------------------------------

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (is_blank(s[i]) || s[i] == '\n' || s[i] == '\r')) ++i;
    std::size_t j = i;
    while (j < s.size() && !(is_blank(s[j]) || s[j] == '\n' || s[j] == '\r')) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (is_blank(s.front()) || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (is_blank(s.back()) || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += fmt::format("\\u{:04X}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

std::string toml_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + toml_string(items[i]);
  return out + "]";
}

// A TOML bare key, or a quoted one when the name has other characters.
std::string toml_key(std::string_view k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  return bare ? std::string(k) : toml_string(k);
}

// A sluice component name: letters, digits, '_' and '-'.
std::string component_name(std::string_view flume_name) {
  std::string out(flume_name);
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

std::optional<std::uint64_t> number(std::string_view s) {
  const std::string t = trim(s);
  if (t.empty() || t.size() > 18) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

std::optional<bool> boolean(std::string_view s) {
  const std::string t = lower(trim(s));
  if (t == "true") return true;
  if (t == "false") return false;
  return std::nullopt;
}

std::string duration_ms(std::uint64_t ms) {
  if (ms != 0 && ms % 1000 == 0) return toml_string(fmt::format("{}s", ms / 1000));
  return toml_string(fmt::format("{}ms", ms));
}

std::string size_bytes(std::uint64_t b) {
  if (b != 0 && b % (1ULL << 30) == 0) return toml_string(fmt::format("{}GiB", b >> 30));
  if (b != 0 && b % (1ULL << 20) == 0) return toml_string(fmt::format("{}MiB", b >> 20));
  if (b != 0 && b % (1ULL << 10) == 0) return toml_string(fmt::format("{}KiB", b >> 10));
  return toml_string(fmt::format("{}B", b));
}

bool is_ip_literal(std::string_view host) {
  if (host.empty()) return false;
  const bool v4 = std::all_of(host.begin(), host.end(),
                              [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  return v4 || host.find(':') != std::string_view::npos;
}

std::string host_port(std::string host, std::string_view port) {
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return host + ":" + std::string(port);
}

// Flume's TAILDIR file group is a directory and a regular expression for the file name; sluice
// reads globs. The common expressions translate exactly; others do not translate.
std::optional<std::string> regex_to_glob(std::string_view re) {
  std::string out;
  if (!re.empty() && re.front() == '^') re.remove_prefix(1);
  if (!re.empty() && re.back() == '$') re.remove_suffix(1);
  for (std::size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '.' && i + 1 < re.size() && (re[i + 1] == '*' || re[i + 1] == '+')) {
      if (re[i + 1] == '+') out += '?';
      out += '*';
      ++i;
    } else if (c == '.') {
      // "example.log" means the dot, though the regex takes any character there.
      out += '.';
    } else if (c == '\\' && i + 1 < re.size() &&
               std::strchr(".-_[]()+?*{}|^$/", re[i + 1]) != nullptr &&
               std::strchr("[]*?", re[i + 1]) == nullptr) {
      out += re[++i];
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '/' || c == ',' || c == '=' || c == '@' || c == '%') {
      out += c;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// ---- translation -------------------------------------------------------------------------------

// One TOML table being written: its keys, then the Flume settings it could not carry, then its
// sub-tables (which TOML wants after the keys).
struct Block {
  std::string header;
  std::vector<std::string> keys;
  std::vector<std::string> comments;
  std::vector<std::string> tail;
};

class Translator {
 public:
  Translator(std::vector<Property> props, std::string agent) : agent_(std::move(agent)) {
    const std::string prefix = agent_ + ".";
    for (auto& p : props) {
      if (p.key.rfind(prefix, 0) == 0) {
        std::string k = p.key.substr(prefix.size());
        order_.push_back(k);
        props_.emplace(std::move(k), std::move(p));
      } else {
        ++other_agents_;
      }
    }
  }

  Translation run(std::string_view file);

 private:
  const Property* get(const std::string& k) const {
    auto it = props_.find(k);
    return it == props_.end() || used_.count(k) != 0 ? nullptr : &it->second;
  }
  std::string value(const std::string& k) const {
    const Property* p = get(k);
    return p == nullptr ? std::string() : trim(p->value);
  }
  bool has(const std::string& k) const { return get(k) != nullptr; }
  void carry(const std::string& k) {
    if (props_.count(k) != 0 && used_.insert(k).second) ++carried_;
  }
  void drop(Block& b, const std::string& k, std::string_view why) {
    auto it = props_.find(k);
    if (it == props_.end() || !used_.insert(k).second) return;
    ++dropped_;
    b.comments.push_back(
        fmt::format("# flume: {}.{} = {}  ({})", agent_, k, oneline(it->second.value), why));
  }
  // Drops every setting under `prefix` that nothing read.
  void drop_rest(Block& b, const std::string& prefix, std::string_view why) {
    for (const auto& k : order_) {
      if (k.rfind(prefix, 0) == 0 && used_.count(k) == 0) drop(b, k, why);
    }
  }
  static std::string oneline(std::string_view v) {
    std::string out = trim(v);
    for (char& c : out) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    return out;
  }
  // A number of milliseconds into a duration key, or a comment when it is not a number.
  void ms_key(Block& b, const std::string& k, std::string_view sluice_key,
              std::uint64_t scale = 1) {
    if (!has(k)) return;
    if (auto n = number(value(k))) {
      b.keys.push_back(fmt::format("{} = {}", sluice_key, duration_ms(*n * scale)));
      carry(k);
    } else {
      drop(b, k, "not a whole number");
    }
  }
  void count_key(Block& b, const std::string& k, std::string_view sluice_key) {
    if (!has(k)) return;
    if (auto n = number(value(k)); n && *n > 0) {
      b.keys.push_back(fmt::format("{} = {}", sluice_key, *n));
      carry(k);
    } else {
      drop(b, k, "not a positive whole number");
    }
  }
  void bool_key(Block& b, const std::string& k, std::string_view sluice_key) {
    if (!has(k)) return;
    if (auto v = boolean(value(k))) {
      b.keys.push_back(fmt::format("{} = {}", sluice_key, *v ? "true" : "false"));
      carry(k);
    } else {
      drop(b, k, "not true or false");
    }
  }

  // taildir's and spooldir's fileHeader/fileHeaderKey into file_header.
  void file_header(Block& b, const std::string& p) {
    if (!has(p + "fileHeader")) {
      // Flume adds no file header unless asked; sluice's default is "file".
      b.keys.push_back("file_header = \"\"");
      return;
    }
    if (auto v = boolean(value(p + "fileHeader"))) {
      const std::string key = has(p + "fileHeaderKey") ? value(p + "fileHeaderKey") : "file";
      b.keys.push_back("file_header = " + toml_string(*v ? key : ""));
      carry(p + "fileHeader");
      carry(p + "fileHeaderKey");
    }
  }

  void source(const std::string& name);
  void source_channels(Block& b, const std::string& p);
  void interceptors(Block& b, const std::string& p, const std::string& table);
  bool exec_source(Block& b, const std::string& p);
  bool taildir_source(Block& b, const std::string& p, const std::string& table);
  bool spooldir_source(Block& b, const std::string& p);
  bool listen_source(Block& b, const std::string& p);
  void channel(const std::string& name);
  void sink(const std::string& name);
  bool avro_sink(Block& b, const std::string& p);
  bool kafka_sink(Block& b, const std::string& p);
  bool file_roll_sink(Block& b, const std::string& p);
  bool http_sink(Block& b, const std::string& p);
  bool datahub_sink(Block& b, const std::string& p);
  void sink_group(const std::string& name);
  void shared_channels();

  std::string agent_;
  std::map<std::string, Property> props_;
  std::vector<std::string> order_;  // keys in file order
  std::set<std::string> used_;
  std::size_t carried_ = 0, dropped_ = 0, other_agents_ = 0;

  std::vector<Block> sources_, channels_, sinks_, groups_;
  std::vector<std::string> notes_;                   // header notes
  std::map<std::string, std::string> sink_channel_;  // sink -> channel
  std::map<std::string, std::size_t> sink_block_;    // sink -> index in sinks_
  std::map<std::string, std::string> group_of_;      // sink -> group
  std::set<std::string> translated_sinks_;
};

void Translator::source(const std::string& name) {
  const std::string p = "sources." + name + ".";
  const std::string table = "sources." + component_name(name);
  Block b;
  b.header = "[" + table + "]";
  const std::string type = value(p + "type");
  const std::string t = lower(type);
  bool ok = false;
  if (t == "exec" || t == "org.apache.flume.source.execsource") {
    b.keys.push_back("type = \"exec\"");
    carry(p + "type");
    ok = exec_source(b, p);
  } else if (t == "taildir" || t == "org.apache.flume.source.taildir.taildirsource") {
    b.keys.push_back("type = \"taildir\"");
    carry(p + "type");
    ok = taildir_source(b, p, table);
  } else if (t == "spooldir" || t == "org.apache.flume.source.spooldirectorysource") {
    b.keys.push_back("type = \"taildir\"");
    drop(b, p + "type",
         "sluice has no spooling-directory source: the directory is tailed instead; files are "
         "not renamed to .COMPLETED nor deleted, and a file that grows is read as it grows");
    ok = spooldir_source(b, p);
  } else if (t == "avro" || t == "org.apache.flume.source.avrosource") {
    b.keys.push_back("type = \"avro\"");
    carry(p + "type");
    ok = listen_source(b, p);
    if (has(p + "compression-type")) {
      const std::string c = lower(value(p + "compression-type"));
      if (c == "deflate" || c == "none") {
        b.keys.push_back(fmt::format("compression = {}", toml_string(c)));
        carry(p + "compression-type");
      }
    }
    drop(b, p + "threads", "sluice serves every connection on its event loop");
    drop(b, p + "ipFilter", "use allow = [\"CIDR\", ...] on the sluice avro source");
    drop(b, p + "ipFilterRules", "use allow = [\"CIDR\", ...] on the sluice avro source");
  } else if (t == "http" || t == "org.apache.flume.source.http.httpsource") {
    b.keys.push_back("type = \"http\"");
    carry(p + "type");
    ok = listen_source(b, p);
    if (has(p + "handler")) {
      const std::string h = value(p + "handler");
      if (h == "org.apache.flume.source.http.JSONHandler") {
        carry(p + "handler");
      } else {
        drop(b, p + "handler",
             "sluice reads Flume's JSON handler format (Content-Type application/json), NDJSON "
             "and text/plain; other handlers do not translate");
      }
    }
  } else if (t == "netcat" || t == "org.apache.flume.source.netcatsource" || t == "netcatudp") {
    b.header = "# [" + table + "] was a Flume netcat source; sluice has no equivalent";
    drop(b, p + "type",
         "no netcat source in sluice: have the client send lines to an http source "
         "(Content-Type text/plain) or write them to a file that a taildir source follows");
    drop_rest(b, p, "belongs to the netcat source, which is not translated");
    sources_.push_back(std::move(b));
    return;
  } else {
    b.header = "# [" + table + "] was a Flume '" + type + "' source; sluice has no equivalent";
    drop(b, p + "type", "no such source in sluice");
    drop_rest(b, p, "belongs to a source that is not translated");
    sources_.push_back(std::move(b));
    return;
  }
  (void)ok;
  source_channels(b, p);
  interceptors(b, p, table);
  drop(b, p + "batchSize", "sluice sizes its own batches (the channel's transaction_events)");
  drop(b, p + "batchDurationMillis", "sluice sizes its own batches");
  drop(b, p + "batchTimeout", "sluice sizes its own batches");
  drop_rest(b, p, "no sluice equivalent");
  sources_.push_back(std::move(b));
}

void Translator::source_channels(Block& b, const std::string& p) {
  std::vector<std::string> chans = words(value(p + "channels"));
  if (has(p + "channel") && chans.empty()) chans = words(value(p + "channel"));
  carry(p + "channels");
  carry(p + "channel");
  const std::string sel = lower(value(p + "selector.type"));
  if (sel.empty() || sel == "replicating") {
    carry(p + "selector.type");
    drop(b, p + "selector.optional",
         "sluice has no optional channels: a failed put into any channel pauses the source");
  } else if (sel == "multiplexing") {
    drop(b, p + "selector.type",
         "sluice has no multiplexing selector: the events go to the default channel (or to every "
         "channel when there is none); route with several sources or filter with interceptors");
    const std::vector<std::string> def = words(value(p + "selector.default"));
    if (!def.empty()) {
      chans = def;
      carry(p + "selector.default");
    }
    drop_rest(b, p + "selector.", "part of the multiplexing selector, not translated");
  } else {
    drop(b, p + "selector.type", "unknown channel selector; the events go to every channel");
    drop_rest(b, p + "selector.", "part of a channel selector that is not translated");
  }
  for (auto& c : chans) c = component_name(c);
  if (chans.size() == 1) {
    b.keys.push_back("channel = " + toml_string(chans[0]));
  } else if (!chans.empty()) {
    b.keys.push_back("channels = " + toml_array(chans));
  } else {
    b.comments.push_back("# flume: this source names no channel; sluice needs one");
  }
}

void Translator::interceptors(Block& b, const std::string& p, const std::string& table) {
  const std::vector<std::string> names = words(value(p + "interceptors"));
  carry(p + "interceptors");
  for (const auto& n : names) {
    const std::string ip = p + "interceptors." + n + ".";
    std::string t = value(ip + "type");
    static const std::map<std::string, std::string> kClasses = {
        {"org.apache.flume.interceptor.TimestampInterceptor$Builder", "timestamp"},
        {"org.apache.flume.interceptor.HostInterceptor$Builder", "host"},
        {"org.apache.flume.interceptor.StaticInterceptor$Builder", "static"},
        {"org.apache.flume.interceptor.RegexFilteringInterceptor$Builder", "regex_filter"},
        {"org.apache.flume.interceptor.RegexExtractorInterceptor$Builder", "regex_extractor"}};
    if (auto it = kClasses.find(t); it != kClasses.end()) t = it->second;
    t = lower(t);
    std::vector<std::string> keys;
    Block sub;  // collects this interceptor's comments
    if (t == "timestamp" || t == "host") {
      keys.push_back(fmt::format("type = \"{}\"", t));
      carry(ip + "type");
      const std::string hk = t == "timestamp" ? "headerName" : "hostHeader";
      if (has(ip + hk)) {
        keys.push_back("header = " + toml_string(value(ip + hk)));
        carry(ip + hk);
      }
      bool_key(sub, ip + "preserveExisting", "preserve_existing");
      if (t == "host") bool_key(sub, ip + "useIP", "use_ip");
    } else if (t == "static") {
      keys.push_back("type = \"static\"");
      carry(ip + "type");
      // Flume's defaults: key "key", value "value".
      const std::string k = has(ip + "key") ? value(ip + "key") : "key";
      const std::string v = has(ip + "value") ? value(ip + "value") : "value";
      keys.push_back("key = " + toml_string(k));
      keys.push_back("value = " + toml_string(v));
      carry(ip + "key");
      carry(ip + "value");
      bool_key(sub, ip + "preserveExisting", "preserve_existing");
    } else if (t == "regex_filter" || t == "regex_extractor") {
      keys.push_back(t == "regex_filter" ? "type = \"regex_filter\"" : "type = \"regex_extract\"");
      carry(ip + "type");
      // Flume's default regex is ".*".
      keys.push_back("regex = " + toml_string(has(ip + "regex") ? value(ip + "regex") : ".*"));
      carry(ip + "regex");
      if (t == "regex_filter") {
        bool_key(sub, ip + "excludeEvents", "exclude");
      } else {
        std::vector<std::string> headers;
        for (const auto& s : words(value(ip + "serializers"))) {
          const std::string sp = ip + "serializers." + s + ".";
          headers.push_back(value(sp + "name"));
          carry(sp + "name");
          const std::string st = value(sp + "type");
          if (st.empty() || st == "default" ||
              st == "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer") {
            carry(sp + "type");
          } else {
            drop(sub, sp + "type",
                 "sluice puts the matched text in the header as it is (pass-through)");
          }
          drop_rest(sub, sp, "no sluice equivalent");
        }
        carry(ip + "serializers");
        if (!headers.empty()) keys.push_back("headers = " + toml_array(headers));
      }
    } else {
      sub.comments.push_back("# flume: interceptor '" + n + "' is not translated");
      drop(sub, ip + "type",
           "sluice's interceptors: timestamp, host, static, regex_filter, regex_extract (and "
           "drop_fields, rename, set, sample)");
      drop_rest(sub, ip, "belongs to an interceptor that is not translated");
      for (auto& c : sub.comments) b.tail.push_back(c);
      continue;
    }
    drop_rest(sub, ip, "no sluice equivalent for this interceptor setting");
    std::string text = "\n[[" + table + ".interceptors]]  # flume interceptor " + n + "\n";
    for (const auto& k : keys) text += k + "\n";
    for (const auto& k : sub.keys) text += k + "\n";
    for (const auto& c : sub.comments) text += c + "\n";
    b.tail.push_back(text);
  }
}

bool Translator::exec_source(Block& b, const std::string& p) {
  const std::string command = value(p + "command");
  if (has(p + "shell")) {
    const std::string shell = value(p + "shell");
    b.keys.push_back("shell = true");
    b.keys.push_back("command = " + toml_string(command));
    carry(p + "command");
    if (words(shell) == std::vector<std::string>{"/bin/sh", "-c"}) {
      carry(p + "shell");
    } else {
      drop(b, p + "shell", "sluice runs a shell command with /bin/sh -c");
    }
  } else if (has(p + "command")) {
    // Flume splits the command on white space and runs it without a shell.
    b.keys.push_back("command = " + toml_array(words(command)));
    carry(p + "command");
  } else {
    b.comments.push_back("# flume: no command; sluice needs command = [\"prog\", \"arg\"]");
  }
  bool_key(b, p + "restart", "restart");
  ms_key(b, p + "restartThrottle", "restart_throttle");
  drop(b, p + "logStdErr", "sluice always logs the command's stderr lines at warn, rate-limited");
  drop(b, p + "charset", "sluice reads the bytes as they are (UTF-8 expected)");
  return true;
}

bool Translator::taildir_source(Block& b, const std::string& p, const std::string& table) {
  const std::vector<std::string> groups = words(value(p + "filegroups"));
  carry(p + "filegroups");
  bool any_headers = false;
  for (const auto& g : groups) {
    if (std::any_of(order_.begin(), order_.end(), [&](const std::string& k) {
          return k.rfind(p + "headers." + g + ".", 0) == 0;
        })) {
      any_headers = true;
    }
  }
  std::vector<std::string> paths;
  for (const auto& g : groups) {
    const std::string gk = p + "filegroups." + g;
    const std::string full = value(gk);
    const std::size_t slash = full.rfind('/');
    std::optional<std::string> glob;
    if (slash != std::string::npos) {
      if (auto name = regex_to_glob(full.substr(slash + 1)))
        glob = full.substr(0, slash + 1) + *name;
    }
    if (!glob) {
      drop(b, gk,
           "the file-name regular expression has no glob equivalent; write paths = [\"GLOB\"] "
           "by hand (sluice reads globs)");
      continue;
    }
    carry(gk);
    if (!any_headers) {
      paths.push_back(*glob);
      continue;
    }
    std::string text = "\n[" + table + ".groups." + toml_key(component_name(g)) + "]\n";
    text += "paths = " + toml_array({*glob}) + "\n";
    std::vector<std::string> hs;
    for (const auto& k : order_) {
      const std::string hp = p + "headers." + g + ".";
      if (k.rfind(hp, 0) != 0 || used_.count(k) != 0) continue;
      hs.push_back(toml_key(k.substr(hp.size())) + " = " + toml_string(value(k)));
      carry(k);
    }
    if (!hs.empty()) text += "headers = { " + fmt::format("{}", fmt::join(hs, ", ")) + " }\n";
    b.tail.push_back(text);
  }
  if (!paths.empty()) b.keys.push_back("paths = " + toml_array(paths));
  drop(b, p + "positionFile",
       "sluice keeps its own positions (DATA_DIR/NAME.positions.json, a different format); "
       "Flume's file is not read, so the files are read again from read_from");
  if (has(p + "skipToEnd")) {
    if (auto v = boolean(value(p + "skipToEnd"))) {
      b.keys.push_back(std::string("read_from = ") + (*v ? "\"tail\"" : "\"head\""));
      carry(p + "skipToEnd");
    }
  }
  file_header(b, p);
  ms_key(b, p + "writePosInterval", "checkpoint_interval");
  drop(b, p + "idleTimeout", "sluice keeps files open; close_removed_after closes deleted ones");
  drop(b, p + "byteOffsetHeader", "sluice has no byte-offset header (the event id is stable)");
  drop(b, p + "cachePatternMatching", "sluice rescans globs every rescan_interval");
  drop(b, p + "maxBatchCount", "sluice sizes its own batches");
  return true;
}

bool Translator::spooldir_source(Block& b, const std::string& p) {
  const std::string dir = value(p + "spoolDir");
  if (!dir.empty()) {
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    b.keys.push_back("paths = " + toml_array({d + "/*"}));
    b.keys.push_back("read_from = \"head\"");
    carry(p + "spoolDir");
  }
  file_header(b, p);
  drop(b, p + "includePattern", "a regular expression; narrow paths with a glob by hand");
  drop(b, p + "ignorePattern", "a regular expression; use exclude = [\"GLOB\"] by hand");
  drop(b, p + "deletePolicy", "sluice never deletes or renames what it reads");
  drop(b, p + "fileSuffix", "sluice never renames what it reads");
  drop(b, p + "deserializer", "sluice reads lines (see multiline for records over several lines)");
  drop(b, p + "inputCharset", "sluice reads the bytes as they are (UTF-8 expected)");
  return true;
}

bool Translator::listen_source(Block& b, const std::string& p) {
  std::string bind = has(p + "bind") ? value(p + "bind") : "0.0.0.0";
  if (bind == "localhost") bind = "127.0.0.1";
  const std::string port = value(p + "port");
  if (port.empty() || !number(port)) {
    drop(b, p + "port", "not a port number");
    b.comments.push_back("# flume: no port; sluice needs listen = \"HOST:PORT\"");
    return false;
  }
  if (!is_ip_literal(bind)) {
    drop(b, p + "bind", "sluice binds IP addresses, not host names; 0.0.0.0 is used");
    bind = "0.0.0.0";
  } else {
    carry(p + "bind");
  }
  b.keys.push_back("listen = " + toml_string(host_port(bind, port)));
  carry(p + "port");
  drop(b, p + "ssl", "TLS keys are not translated; see the source's tls table");
  drop(b, p + "keystore", "TLS keys are not translated (sluice reads PEM files)");
  drop(b, p + "keystore-password", "TLS keys are not translated");
  drop(b, p + "keystore-type", "TLS keys are not translated");
  return true;
}

void Translator::channel(const std::string& name) {
  const std::string p = "channels." + name + ".";
  Block b;
  b.header = "[channels." + component_name(name) + "]";
  const std::string type = value(p + "type");
  const std::string t = lower(type);
  if (t == "memory" || t == "org.apache.flume.channel.memorychannel") {
    b.keys.push_back("type = \"memory\"");
    carry(p + "type");
  } else if (t == "file" || t == "org.apache.flume.channel.file.filechannel") {
    b.keys.push_back("type = \"lmdb\"");
    carry(p + "type");
    drop(b, p + "checkpointDir", "an lmdb channel lives in the agent's data_dir");
    drop(b, p + "dataDirs", "an lmdb channel lives in the agent's data_dir");
    drop(b, p + "backupCheckpointDir", "LMDB needs no checkpoint");
    drop(b, p + "useDualCheckpoints", "LMDB needs no checkpoint");
    drop(b, p + "checkpointInterval", "LMDB needs no checkpoint (see sync)");
    drop(b, p + "maxFileSize", "bound the channel with max_bytes");
    drop(b, p + "minimumRequiredSpace",
         "an lmdb channel stops taking puts when max_bytes is reached");
    drop(b, p + "keep-alive", "a full channel pauses the source instead of timing out");
  } else {
    b.keys.push_back("type = \"lmdb\"");
    drop(b, p + "type",
         "no such channel in sluice; a durable lmdb channel stands in (check its bounds)");
    drop_rest(b, p, "belongs to a channel type that is not translated");
    channels_.push_back(std::move(b));
    return;
  }
  count_key(b, p + "capacity", "max_events");
  count_key(b, p + "transactionCapacity", "transaction_events");
  if (has(p + "byteCapacity")) {
    if (auto n = number(value(p + "byteCapacity")); n && *n >= 1024) {
      b.keys.push_back("max_bytes = " + size_bytes(*n));
      carry(p + "byteCapacity");
    } else {
      drop(b, p + "byteCapacity", "not a number of bytes of at least 1024");
    }
  }
  drop(b, p + "byteCapacityBufferPercentage",
       "sluice counts the event's bytes exactly, with no header estimate");
  drop(b, p + "keep-alive", "a full channel pauses the source instead of timing out");
  drop_rest(b, p, "no sluice equivalent");
  channels_.push_back(std::move(b));
}

void Translator::sink(const std::string& name) {
  const std::string p = "sinks." + name + ".";
  Block b;
  b.header = "[sinks." + component_name(name) + "]";
  const std::string type = value(p + "type");
  const std::string t = lower(type);
  bool ok = true;
  if (t == "avro" || t == "org.apache.flume.sink.avrosink") {
    b.keys.push_back("type = \"avro\"");
    carry(p + "type");
    ok = avro_sink(b, p);
  } else if (t == "kafka" || t == "org.apache.flume.sink.kafka.kafkasink") {
    b.keys.push_back("type = \"kafka\"");
    carry(p + "type");
    ok = kafka_sink(b, p);
  } else if (t == "logger" || t == "org.apache.flume.sink.loggersink") {
    b.keys.push_back("type = \"stdout\"");
    carry(p + "type");
    drop(b, p + "maxBytesToLog", "the stdout sink writes whole bodies");
  } else if (t == "file_roll" || t == "org.apache.flume.sink.rollingfilesink") {
    b.keys.push_back("type = \"file\"");
    carry(p + "type");
    ok = file_roll_sink(b, p);
  } else if (t == "http" || t == "org.apache.flume.sink.http.httpsink") {
    b.keys.push_back("type = \"http\"");
    carry(p + "type");
    ok = http_sink(b, p);
  } else if (t == "null" || t == "org.apache.flume.sink.nullsink") {
    b.keys.push_back("type = \"null\"");
    carry(p + "type");
  } else if (type == "com.aliyun.datahub.flume.sink.DatahubSink") {
    b.keys.push_back("type = \"datahub\"");
    carry(p + "type");
    ok = datahub_sink(b, p);
  } else {
    const std::string why =
        t == "hdfs" || t == "org.apache.flume.sink.hdfs.hdfseventsink"
            ? "sluice has no HDFS sink: write to Kafka, a file or an HTTP endpoint instead"
            : "no such sink in sluice";
    b.header = "# [sinks." + component_name(name) + "] was a Flume '" + type +
               "' sink; sluice has no equivalent";
    drop(b, p + "type", why);
    drop(b, p + "channel", "the sink is not translated");
    drop_rest(b, p, "belongs to a sink that is not translated");
    sinks_.push_back(std::move(b));
    return;
  }
  (void)ok;
  translated_sinks_.insert(name);
  sink_channel_[name] = component_name(value(p + "channel"));
  carry(p + "channel");
  if (has(p + "batchSize")) {
    count_key(b, p + "batchSize", "batch_events");
  }
  drop_rest(b, p, "no sluice equivalent");
  sink_block_[name] = sinks_.size();
  sinks_.push_back(std::move(b));
}

bool Translator::avro_sink(Block& b, const std::string& p) {
  const std::string host = value(p + "hostname");
  const std::string port = value(p + "port");
  if (!host.empty() && number(port)) {
    b.keys.push_back("address = " + toml_string(host_port(host, port)));
    carry(p + "hostname");
    carry(p + "port");
  } else {
    b.comments.push_back("# flume: hostname and port are needed for address = \"HOST:PORT\"");
  }
  count_key(b, p + "batch-size", "batch_events");
  ms_key(b, p + "request-timeout", "delivery_timeout");
  if (has(p + "compression-type")) {
    const std::string c = lower(value(p + "compression-type"));
    if (c == "deflate" || c == "none") {
      b.keys.push_back("compression = " + toml_string(c));
      carry(p + "compression-type");
    }
  }
  count_key(b, p + "compression-level", "compression_level");
  drop(b, p + "connect-timeout", "sluice's delivery_timeout covers connecting");
  drop(b, p + "reset-connection-interval", "sluice reconnects only after a failure");
  drop(b, p + "maxIoWorkers", "sluice runs the connection on its event loop");
  drop(b, p + "ssl", "TLS keys are not translated; see the sink's tls table");
  drop(b, p + "trust-all-certs", "TLS keys are not translated");
  drop(b, p + "truststore", "TLS keys are not translated (sluice reads PEM files)");
  drop(b, p + "truststore-password", "TLS keys are not translated");
  drop(b, p + "truststore-type", "TLS keys are not translated");
  return true;
}

bool Translator::kafka_sink(Block& b, const std::string& p) {
  std::string brokers = value(p + "kafka.bootstrap.servers");
  carry(p + "kafka.bootstrap.servers");
  if (brokers.empty() && has(p + "brokerList")) {  // Flume before 1.7
    brokers = value(p + "brokerList");
    carry(p + "brokerList");
  }
  if (!brokers.empty()) {
    b.keys.push_back("brokers = " + toml_string(brokers));
  } else {
    b.comments.push_back("# flume: no kafka.bootstrap.servers; sluice needs brokers");
  }
  std::string topic = "default-flume-topic";  // Flume's default
  for (const char* k : {"kafka.topic", "topic"}) {
    if (has(p + k)) {
      topic = value(p + k);
      carry(p + k);
      break;
    }
  }
  b.keys.push_back("topic = " + toml_string(topic));
  count_key(b, p + "flumeBatchSize", "batch_events");
  count_key(b, p + "kafka.flumeBatchSize", "batch_events");
  std::vector<std::string> extra;
  rd_kafka_conf_t* probe = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& k : order_) {
    const std::string prefix = p + "kafka.producer.";
    if (k.rfind(prefix, 0) != 0 || used_.count(k) != 0) continue;
    const std::string name = k.substr(prefix.size());
    const std::string v = value(k);
    if (name == "acks") {
      const std::string a = v == "-1" ? "all" : v;
      if (a == "all" || a == "1" || a == "0") {
        b.keys.push_back("acks = " + toml_string(a));
        carry(k);
        continue;
      }
    }
    if (name == "compression.type") {
      if (v == "none" || v == "gzip" || v == "snappy" || v == "lz4" || v == "zstd") {
        b.keys.push_back("compression = " + toml_string(v));
        carry(k);
        continue;
      }
    }
    if (name == "linger.ms") {
      if (auto n = number(v)) {
        b.keys.push_back("linger = " + duration_ms(*n));
        carry(k);
        continue;
      }
    }
    if (name == "enable.idempotence") {
      if (auto bv = boolean(v)) {
        b.keys.push_back(std::string("idempotence = ") + (*bv ? "true" : "false"));
        carry(k);
        continue;
      }
    }
    // The Java serializer classes have no librdkafka counterpart; sluice sends bytes.
    if (name == "key.serializer" || name == "value.serializer") {
      drop(b, k, "sluice sends the body bytes as the value");
      continue;
    }
    // librdkafka shares most producer property names with the Java client; ask it.
    if (rd_kafka_conf_set(probe, name.c_str(), v.c_str(), errstr, sizeof errstr) ==
        RD_KAFKA_CONF_OK) {
      extra.push_back(toml_string(name) + " = " + toml_string(v));
      carry(k);
    } else {
      drop(b, k, std::string("librdkafka does not take it: ") + errstr);
    }
  }
  rd_kafka_conf_destroy(probe);
  if (has(p + "requiredAcks")) {  // Flume before 1.7
    const std::string a = value(p + "requiredAcks") == "-1" ? "all" : value(p + "requiredAcks");
    if (a == "all" || a == "1" || a == "0") {
      b.keys.push_back("acks = " + toml_string(a));
      carry(p + "requiredAcks");
    }
  }
  drop(b, p + "useFlumeEventFormat",
       "sluice sends the body; headers go as Kafka headers, not as an Avro Flume event");
  drop(b, p + "partitionIdHeader", "sluice partitions by key (key = \"header.NAME\")");
  drop(b, p + "defaultPartitionId", "sluice partitions by key (key = \"header.NAME\")");
  drop(b, p + "allowTopicOverride", "sluice sends every event to topic");
  drop(b, p + "topicHeader", "sluice sends every event to topic");
  if (!extra.empty()) {
    std::string text = "\n[" + b.header.substr(1, b.header.size() - 2) + ".librdkafka]\n";
    for (const auto& e : extra) text += e + "\n";
    b.tail.push_back(text);
  }
  return true;
}

bool Translator::file_roll_sink(Block& b, const std::string& p) {
  std::string dir = value(p + "sink.directory");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!dir.empty()) {
    const std::string prefix =
        has(p + "sink.pathManager.prefix") ? value(p + "sink.pathManager.prefix") : "";
    std::string ext = value(p + "sink.pathManager.extension");
    if (!ext.empty() && ext.front() != '.') ext = "." + ext;
    b.keys.push_back("path = " + toml_string(dir + "/" + prefix + "events" +
                                             (ext.empty() ? std::string(".log") : ext)));
    b.comments.push_back(
        "# flume: file_roll named files TIMESTAMP-N in sink.directory; sluice writes one file "
        "and renames it when it rolls");
    carry(p + "sink.directory");
    carry(p + "sink.pathManager.prefix");
    carry(p + "sink.pathManager.extension");
  }
  // Flume rolls every 30 s by default; 0 disables rolling.
  std::uint64_t secs = 30;
  if (has(p + "sink.rollInterval")) {
    if (auto n = number(value(p + "sink.rollInterval"))) {
      secs = *n;
      carry(p + "sink.rollInterval");
    }
  }
  if (secs != 0) b.keys.push_back("roll_interval = " + duration_ms(secs * 1000));
  count_key(b, p + "sink.batchSize", "batch_events");
  if (has(p + "sink.serializer")) {
    const std::string s = lower(value(p + "sink.serializer"));
    if (s == "text") {
      b.keys.push_back("format = \"body\"");
      carry(p + "sink.serializer");
    } else if (s == "header_and_text") {
      b.keys.push_back("format = \"json\"");
      drop(b, p + "sink.serializer",
           "HEADER_AND_TEXT written as JSON lines with headers and body instead");
    } else {
      drop(b, p + "sink.serializer", "sluice writes the body (format = \"body\") or JSON");
    }
  }
  drop_rest(b, p + "sink.serializer.", "no sluice equivalent");
  return true;
}

bool Translator::http_sink(Block& b, const std::string& p) {
  if (has(p + "endpoint")) {
    b.keys.push_back("url = " + toml_string(value(p + "endpoint")));
    carry(p + "endpoint");
  } else {
    b.comments.push_back("# flume: no endpoint; sluice needs url");
  }
  // Flume posts one event's body per request; sluice batches, and "raw" keeps bodies as they are.
  b.keys.push_back("format = \"raw\"");
  ms_key(b, p + "requestTimeout", "request_timeout");
  ms_key(b, p + "connectTimeout", "connect_timeout");
  drop(b, p + "contentTypeHeader", "the format decides the Content-Type");
  drop(b, p + "acceptHeader", "not sent by sluice");
  drop(b, p + "defaultBackoff", "sluice retries 429/5xx and fails over; other 4xx are rejected");
  drop(b, p + "defaultRollback", "sluice retries 429/5xx and fails over; other 4xx are rejected");
  drop(b, p + "defaultIncrementMetrics", "sluice counts every outcome");
  drop_rest(b, p + "backoff.", "sluice retries 429/5xx and fails over; other 4xx are rejected");
  drop_rest(b, p + "rollback.", "sluice retries 429/5xx and fails over; other 4xx are rejected");
  drop_rest(b, p + "incrementMetrics.", "sluice counts every outcome");
  return true;
}

bool Translator::datahub_sink(Block& b, const std::string& p) {
  auto key = [&](std::initializer_list<const char*> names, std::string_view sluice_key) {
    for (const char* n : names) {
      if (!has(p + n)) continue;
      b.keys.push_back(fmt::format("{} = {}", sluice_key, toml_string(value(p + n))));
      carry(p + n);
      return;
    }
  };
  key({"datahub.endPoint", "datahub.endpoint"}, "endpoint");
  key({"datahub.project"}, "project");
  key({"datahub.topic"}, "topic");
  key({"datahub.accessID", "datahub.accessId", "datahub.accessid"}, "access_id");
  key({"datahub.accessKey", "datahub.accesskey"}, "access_key");
  const std::string ser = lower(value(p + "serializer"));
  std::vector<std::string> fields;
  for (const char* k : {"serializer.fieldnames", "serializer.fieldNames"}) {
    if (has(p + k)) {
      std::string list = value(p + k);
      std::size_t i = 0;
      while (i <= list.size()) {
        std::size_t j = list.find(',', i);
        if (j == std::string::npos) j = list.size();
        fields.push_back(trim(list.substr(i, j - i)));
        i = j + 1;
      }
      carry(p + k);
    }
  }
  if (ser == "delimited" && !fields.empty()) {
    carry(p + "serializer");
    b.keys.push_back("record_type = \"tuple\"");
    if (fields.size() == 1) {
      // One field takes the whole body, as the DELIMITED serializer does with one name.
      b.keys.push_back("fields = [{ name = " + toml_string(fields[0]) + ", from = \"body\" }]");
      drop(b, p + "serializer.delimiter", "one field: the whole body, no splitting");
    } else {
      b.keys.push_back("fields = " + toml_array(fields));
      // The source has to parse the body into these fields; a pattern that splits like DELIMITED.
      const std::string delim =
          has(p + "serializer.delimiter") ? value(p + "serializer.delimiter") : ",";
      std::string quoted;
      for (char c : delim) {
        if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) quoted += '\\';
        quoted += c;
      }
      std::string pattern = "^";
      for (std::size_t i = 0; i < fields.size(); ++i) {
        const bool last = i + 1 == fields.size();
        pattern +=
            "(?<" + fields[i] + ">" + (last ? std::string(".*") : "(?:(?!" + quoted + ").)*") + ")";
        if (!last) pattern += quoted;
      }
      pattern += "$";
      drop(b, p + "serializer.delimiter",
           "sluice does not split the body here: give the source feeding this channel format = "
           "\"regex\", pattern = " +
               toml_string(pattern));
    }
  } else if (!ser.empty()) {
    drop(b, p + "serializer", "sluice writes BLOB records (the body) unless fields are listed");
  }
  drop(b, p + "serializer.charset", "sluice sends the bytes as they are (UTF-8 expected)");
  drop(b, p + "serializer.dateFormat", "no sluice equivalent");
  drop(b, p + "shard.number", "sluice spreads records over the topic's active shards");
  drop(b, p + "shard.maxTimeOut", "sluice waits for shards within delivery_timeout");
  drop(b, p + "retryTimes", "sluice retries until delivery_timeout, then fails over");
  drop(b, p + "retryInterval", "sluice backs off on its own (retry_backoff)");
  drop(b, p + "dirtyDataContinue", "rejected records go to the group's dead_letter sink");
  drop(b, p + "dirtyDataFile", "rejected records go to the group's dead_letter sink");
  return true;
}

void Translator::sink_group(const std::string& name) {
  const std::string p = "sinkgroups." + name + ".";
  Block b;
  b.header = "[sink_groups." + component_name(name) + "]";
  const std::vector<std::string> members = words(value(p + "sinks"));
  carry(p + "sinks");
  std::vector<std::string> live;
  for (const auto& m : members) {
    if (translated_sinks_.count(m) != 0) live.push_back(m);
  }
  std::string channel;
  for (const auto& m : live) {
    if (channel.empty()) channel = sink_channel_[m];
    group_of_[m] = name;
  }
  for (const auto& m : live) {
    if (sink_channel_[m] != channel) {
      // A sluice group drains one channel; Flume's sinks each name theirs.
      b.comments.push_back("# flume: sink '" + m + "' reads channel '" + sink_channel_[m] +
                           "', not '" + channel +
                           "': sluice drains one channel per group; "
                           "split the group by hand");
    }
  }
  if (!channel.empty()) b.keys.push_back("channel = " + toml_string(channel));
  const std::string type = lower(value(p + "processor.type"));
  carry(p + "processor.type");
  if (type == "failover") {
    b.keys.push_back("processor = \"failover\"");
    std::vector<std::pair<std::int64_t, std::string>> prio;
    std::int64_t next = -1;
    for (const auto& m : live) {
      const std::string k = p + "processor.priority." + m;
      if (auto n = number(value(k))) {
        prio.emplace_back(static_cast<std::int64_t>(*n), m);
        carry(k);
      } else {
        // Flume gives an unlisted sink priority -1, -2, ... in the order they are named.
        prio.emplace_back(next--, m);
        drop(b, k, "not a whole number; the sink gets a low priority");
      }
    }
    std::string text = "priority = { ";
    for (std::size_t i = 0; i < prio.size(); ++i) {
      text += (i ? ", " : "") + toml_key(component_name(prio[i].second)) + " = " +
              std::to_string(prio[i].first);
    }
    b.keys.push_back(text + " }");
    ms_key(b, p + "processor.maxpenalty", "max_penalty");
  } else if (type == "load_balance") {
    b.keys.push_back("processor = \"load_balance\"");
    std::vector<std::string> names;
    for (const auto& m : live) names.push_back(component_name(m));
    b.keys.push_back("sinks = " + toml_array(names));
    const std::string sel = lower(value(p + "processor.selector"));
    if (sel.empty() || sel == "round_robin" || sel == "random") {
      if (!sel.empty()) b.keys.push_back("selector = " + toml_string(sel));
      carry(p + "processor.selector");
    } else {
      drop(b, p + "processor.selector", "sluice selects round_robin or random");
    }
    if (has(p + "processor.backoff")) {
      if (boolean(value(p + "processor.backoff")).value_or(false)) {
        carry(p + "processor.backoff");
      } else {
        drop(b, p + "processor.backoff",
             "sluice always backs off a failed sink (penalty_base doubling up to max_penalty)");
      }
    }
    ms_key(b, p + "processor.selector.maxTimeOut", "max_penalty");
    ms_key(b, p + "processor.selector.maxBackoffMillis", "max_penalty");  // older name
  } else {
    b.keys.push_back("processor = \"default\"");
    std::vector<std::string> names;
    for (const auto& m : live) names.push_back(component_name(m));
    b.keys.push_back("sinks = " + toml_array(names));
  }
  for (const auto& m : members) {
    if (translated_sinks_.count(m) == 0)
      b.comments.push_back("# flume: sink '" + m + "' of this group is not translated");
  }
  drop_rest(b, p, "no sluice equivalent");
  groups_.push_back(std::move(b));
}

// Flume sinks that read one channel outside any group compete for its events; the sluice
// equivalent is one load_balance group (a channel's readers otherwise each see every event).
void Translator::shared_channels() {
  std::map<std::string, std::vector<std::string>> by_channel;
  for (const auto& [sink, ch] : sink_channel_) {
    if (group_of_.count(sink) == 0 && !ch.empty()) by_channel[ch].push_back(sink);
  }
  for (auto& [ch, sinks] : by_channel) {
    if (sinks.size() < 2) {
      for (const auto& s : sinks)
        sinks_[sink_block_[s]].keys.push_back("channel = " + toml_string(ch));
      continue;
    }
    Block b;
    b.header = "[sink_groups." + ch + "_sinks]";
    b.comments.push_back(
        "# flume: these sinks shared channel " + ch +
        " outside a sink group, taking events in turn; in sluice that is a load_balance group");
    b.keys.push_back("channel = " + toml_string(ch));
    b.keys.push_back("processor = \"load_balance\"");
    std::vector<std::string> names;
    for (const auto& s : sinks) names.push_back(component_name(s));
    b.keys.push_back("sinks = " + toml_array(names));
    groups_.push_back(std::move(b));
  }
}

Translation Translator::run(std::string_view file) {
  // A name listed twice, or two names that become the same sluice name, would be one TOML table
  // defined twice: the later one is left out, and said so.
  auto unique = [&](const char* list) {
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (auto& n : words(value(list))) {
      if (seen.insert(component_name(n)).second) {
        out.push_back(std::move(n));
      } else {
        notes_.push_back(
            fmt::format("# flume: '{}' in {}.{} is listed twice (or clashes with "
                        "another name once made a sluice name); translated once",
                        n, agent_, list));
      }
    }
    return out;
  };
  const std::vector<std::string> sources = unique("sources");
  const std::vector<std::string> channels = unique("channels");
  const std::vector<std::string> sinks = unique("sinks");
  const std::vector<std::string> groups = unique("sinkgroups");
  for (const char* k : {"sources", "channels", "sinks", "sinkgroups"}) carry(k);
  for (const auto& c : channels) channel(c);
  for (const auto& s : sources) source(s);
  for (const auto& s : sinks) sink(s);
  for (const auto& g : groups) sink_group(g);
  shared_channels();
  // Batch sizes of grouped sinks belong to the group in sluice; they were written on the sink.
  for (const auto& [sink_name, group_name] : group_of_) {
    auto& keys = sinks_[sink_block_[sink_name]].keys;
    for (auto it = keys.begin(); it != keys.end();) {
      if (it->rfind("batch_events = ", 0) == 0) {
        sinks_[sink_block_[sink_name]].comments.push_back("# flume: batch size " + it->substr(15) +
                                                          " of a grouped sink: set batch_events on "
                                                          "sink_groups." +
                                                          component_name(group_name) +
                                                          " (one value for the group)");
        it = keys.erase(it);
        --carried_;
        ++dropped_;
      } else {
        ++it;
      }
    }
  }
  Block rest;
  for (const auto& k : order_) {
    if (used_.count(k) == 0) {
      drop(rest, k, "not part of a listed component (Flume ignores it too) or not understood");
    }
  }

  std::string out = fmt::format(
      "# sluice configuration translated from Flume agent '{}' ({}) by sluice import-flume.\n"
      "# Every Flume setting that did not carry over is kept below as a '# flume:' comment.\n",
      agent_, file);
  for (const auto& n : notes_) out += n + "\n";
  // Flume agents of a fleet usually share one name ("a1"); sluice names itself after the host
  // unless told otherwise, which tells the agents apart in metrics and logs.
  out += "\n[agent]\n# name = " + toml_string(agent_) +
         "    # Flume's agent name; sluice defaults to the host name\n"
         "# data_dir = \"/var/lib/sluice\"\n";
  for (const auto& c : rest.comments) out += c + "\n";
  auto emit = [&](const std::vector<Block>& blocks) {
    for (const auto& b : blocks) {
      out += "\n" + b.header + "\n";
      for (const auto& k : b.keys) out += k + "\n";
      for (const auto& c : b.comments) out += c + "\n";
      for (const auto& t : b.tail) out += t;
    }
  };
  emit(sources_);
  emit(channels_);
  emit(sinks_);
  emit(groups_);
  Translation tr;
  tr.agent = agent_;
  tr.toml = std::move(out);
  tr.carried = carried_;
  tr.dropped = dropped_;
  tr.other_agents = other_agents_;
  return tr;
}

}  // namespace

Result<std::vector<Property>> parse_properties(std::string_view text) {
  std::vector<Property> out;
  std::map<std::string, std::size_t> index;
  for (const auto& l : logical_lines(text)) {
    const std::string& s = l.text;
    std::size_t i = 0;
    // The key ends at the first unescaped '=', ':' or white space.
    while (i < s.size()) {
      if (s[i] == '\\') {
        i += 2;
        continue;
      }
      if (s[i] == '=' || s[i] == ':' || is_blank(s[i])) break;
      ++i;
    }
    const std::size_t key_end = std::min(i, s.size());
    while (i < s.size() && is_blank(s[i])) ++i;
    if (i < s.size() && (s[i] == '=' || s[i] == ':')) ++i;
    while (i < s.size() && is_blank(s[i])) ++i;
    Property p;
    p.line = l.line;
    if (!unescape(std::string_view(s).substr(0, key_end), p.key) ||
        !unescape(std::string_view(s).substr(std::min(i, s.size())), p.value)) {
      return Status(Errc::config, fmt::format("line {}: malformed \\uXXXX escape", l.line));
    }
    if (auto it = index.find(p.key); it != index.end()) {
      out[it->second].value = std::move(p.value);  // as Java: the last one wins
    } else {
      index.emplace(p.key, out.size());
      out.push_back(std::move(p));
    }
  }
  return out;
}

Result<Translation> import_flume(std::string_view text, std::string_view agent,
                                 std::string_view file) {
  auto props = parse_properties(text);
  if (!props) return props.error();
  std::string name(agent);
  if (name.empty()) {
    // An agent is whatever prefixes AGENT.sources / .channels / .sinks.
    std::set<std::string> agents;
    for (const auto& p : *props) {
      for (const char* what : {".sources", ".channels", ".sinks"}) {
        const std::string_view k = p.key;
        const std::size_t n = std::strlen(what);
        if (k.size() > n && k.substr(k.size() - n) == what && k.find('.') == k.size() - n) {
          agents.insert(std::string(k.substr(0, k.size() - n)));
        }
      }
    }
    if (agents.empty()) {
      return Status(Errc::config,
                    "no Flume agent found (no AGENT.sources, AGENT.channels or AGENT.sinks line)");
    }
    if (agents.size() > 1) {
      return Status(Errc::config, fmt::format("the file defines several agents ({}); choose one "
                                              "with --agent NAME",
                                              fmt::join(agents, ", ")));
    }
    name = *agents.begin();
  } else {
    const std::string prefix = name + ".";
    if (std::none_of(props->begin(), props->end(),
                     [&](const Property& p) { return p.key.rfind(prefix, 0) == 0; })) {
      return Status(Errc::config, fmt::format("no settings for agent '{}' in the file", name));
    }
  }
  return Translator(std::move(*props), name).run(file);
}

int run_import_flume(const std::string& file, const std::string& agent, const std::string& out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "sluice import-flume: cannot read %s: %s\n", file.c_str(),
                 std::strerror(errno));
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto tr = import_flume(text.str(), agent, file);
  if (!tr) {
    std::fprintf(stderr, "sluice import-flume: %s: %s\n", file.c_str(),
                 tr.error().message().c_str());
    return 2;
  }
  if (out.empty() || out == "-") {
    std::fwrite(tr->toml.data(), 1, tr->toml.size(), stdout);
  } else {
    std::ofstream o(out, std::ios::binary | std::ios::trunc);
    o << tr->toml;
    o.close();
    if (!o) {
      std::fprintf(stderr, "sluice import-flume: cannot write %s\n", out.c_str());
      return 1;
    }
  }
  const std::string others =
      tr->other_agents == 0
          ? std::string()
          : fmt::format("; {} settings of other agents ignored", tr->other_agents);
  std::fprintf(stderr,
               "sluice import-flume: agent '%s': %zu setting%s carried, %zu not (kept as "
               "'# flume:' comments)%s\n",
               tr->agent.c_str(), tr->carried, tr->carried == 1 ? "" : "s", tr->dropped,
               others.c_str());
  return 0;
}

}  // namespace sluice::flume
