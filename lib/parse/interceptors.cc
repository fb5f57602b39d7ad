#include "lib/parse/interceptors.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <charconv>

#include "lib/codec/hash.h"
#include "lib/parse/regex.h"

namespace sluice::parse {
namespace {

// The text an interceptor matches: a field's, a header's of that name, or the body.
std::string_view subject(const Draft& d, const std::string& field) {
  if (field.empty()) return d.body;
  for (const auto& f : d.fields) {
    if (f.key == field) return f.text;
  }
  if (const Header* h = d.header(field)) return h->value;
  return {};
}

class TimestampInterceptor final : public Interceptor {
 public:
  explicit TimestampInterceptor(const InterceptorSpec& s)
      : header_(s.header), keep_(s.preserve_existing) {}
  bool apply(Draft& d) override {
    if (keep_ && d.header(header_) != nullptr) return true;
    char* p = d.arena.reserve(24);
    const auto r = std::to_chars(p, p + 24, d.timestamp_ns / 1'000'000);
    const std::size_t n = static_cast<std::size_t>(r.ptr - p);
    d.arena.commit(n);
    d.set_header(header_, {p, n});
    return true;
  }

 private:
  std::string header_;
  bool keep_;
};

std::string host_name(bool use_ip) {
  if (use_ip) {
    ifaddrs* list = nullptr;
    std::string found;
    if (::getifaddrs(&list) == 0) {
      for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
        if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
        char buf[INET_ADDRSTRLEN];
        const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
        if (::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf) != nullptr &&
            std::string_view(buf).rfind("127.", 0) != 0)
          found = buf;
      }
      ::freeifaddrs(list);
    }
    return found.empty() ? "127.0.0.1" : found;
  }
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

class HostInterceptor final : public Interceptor {
 public:
  explicit HostInterceptor(const InterceptorSpec& s)
      : header_(s.header), host_(host_name(s.use_ip)), keep_(s.preserve_existing) {}
  bool apply(Draft& d) override {
    d.set_header(header_, host_, keep_);
    return true;
  }

 private:
  std::string header_, host_;
  bool keep_;
};

class StaticInterceptor final : public Interceptor {
 public:
  explicit StaticInterceptor(const InterceptorSpec& s)
      : pairs_(s.pairs), keep_(s.preserve_existing) {}
  bool apply(Draft& d) override {
    for (const auto& [k, v] : pairs_) d.set_header(k, v, keep_);
    return true;
  }

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
  bool keep_;
};

class RegexFilter final : public Interceptor {
 public:
  RegexFilter(const InterceptorSpec& s, Regex re)
      : re_(std::move(re)), field_(s.field), exclude_(s.exclude) {}
  bool apply(Draft& d) override {
    // A match limit counts as no match: such a line is kept by an exclude filter.
    const bool matched = re_.match(subject(d, field_)) == Regex::Outcome::match;
    return matched != exclude_;
  }

 private:
  Regex re_;
  std::string field_;
  bool exclude_;
};

class RegexExtract final : public Interceptor {
 public:
  RegexExtract(const InterceptorSpec& s, Regex re)
      : re_(std::move(re)), field_(s.field), names_(s.names) {
    for (const auto& [name, n] : re_.names()) named_.emplace_back(name, n);
  }
  bool apply(Draft& d) override {
    if (re_.match(subject(d, field_)) != Regex::Outcome::match) return true;
    if (!names_.empty()) {
      for (std::uint32_t i = 0; i < names_.size(); ++i) {
        if (re_.group_set(i + 1)) d.set_header(names_[i], re_.group(i + 1));
      }
    } else {
      for (const auto& [name, n] : named_) {
        if (re_.group_set(n)) d.set_header(name, re_.group(n));
      }
    }
    return true;
  }

 private:
  Regex re_;
  std::string field_;
  std::vector<std::string> names_;
  std::vector<std::pair<std::string, std::uint32_t>> named_;
};

class DropFields final : public Interceptor {
 public:
  explicit DropFields(const InterceptorSpec& s) : names_(s.names) {}
  bool apply(Draft& d) override {
    std::erase_if(d.fields, [&](const Field& f) {
      for (const auto& n : names_) {
        if (f.key == n) return true;
      }
      return false;
    });
    return true;
  }

 private:
  std::vector<std::string> names_;
};

class Rename final : public Interceptor {
 public:
  explicit Rename(const InterceptorSpec& s) : pairs_(s.pairs) {}
  bool apply(Draft& d) override {
    for (const auto& [from, to] : pairs_) {
      for (auto& f : d.fields) {
        if (f.key == from) f.key = to;
      }
    }
    return true;
  }

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

class Set final : public Interceptor {
 public:
  explicit Set(const InterceptorSpec& s) : pairs_(s.pairs) {}
  bool apply(Draft& d) override {
    for (const auto& [k, v] : pairs_) d.set_field(k, v, FieldType::string);
    return true;
  }

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

class Sample final : public Interceptor {
 public:
  explicit Sample(const InterceptorSpec& s) : field_(s.field), rate_(s.rate) {}
  bool apply(Draft& d) override {
    // Deterministic: the same value is always kept or always dropped, on every agent.
    std::uint64_t h = codec::fnv1a64(subject(d, field_));  // then a final mix
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h % rate_ == 0;
  }

 private:
  std::string field_;
  std::uint64_t rate_;
};

bool read_pairs(const ConfigNode& node, std::string_view key, ConfigErrors& errors,
                std::vector<std::pair<std::string, std::string>>& out) {
  auto t = node.child(key, errors);
  if (!t) return false;
  for (const auto& [k, v] : t->table()) {
    std::string value;
    if (t->required(k.str(), value, errors)) out.emplace_back(std::string(k.str()), value);
  }
  return true;
}

}  // namespace

std::vector<std::string_view> InterceptorSpec::types() {
  return {"timestamp",   "host",   "static", "regex_filter", "regex_extract",
          "drop_fields", "rename", "set",    "sample"};
}

bool InterceptorSpec::parse_all(const ConfigNode& source, ConfigErrors& errors,
                                std::vector<InterceptorSpec>& out) {
  source.mark_known("interceptors");
  const toml::node* n = source.table().get("interceptors");
  if (n == nullptr) return true;
  const std::size_t before = errors.size();
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    source.error_at("interceptors", errors,
                    "expected an array of tables ([[" + source.path() + ".interceptors]])");
    return false;
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::table* t = (*arr)[i].as_table();
    const std::string path = source.path() + ".interceptors[" + std::to_string(i) + "]";
    if (t == nullptr) {
      source.error_at("interceptors", errors, "entry " + std::to_string(i) + " is not a table");
      continue;
    }
    ConfigNode node(*t, path, source.file());
    InterceptorSpec s;
    const auto kinds = types();
    if (!node.required("type", s.type, errors, OneOf{{kinds.begin(), kinds.end()}})) continue;
    if (s.type == "timestamp" || s.type == "host") {
      s.header = s.type;
      s.use_ip = s.type == "host";  // Flume's host interceptor defaults to the IP address
      node.optional("header", s.header, errors);
      node.optional("preserve_existing", s.preserve_existing, errors);
      if (s.type == "host") node.optional("use_ip", s.use_ip, errors);
    } else if (s.type == "static") {
      s.preserve_existing = true;  // as in Flume
      node.optional("preserve_existing", s.preserve_existing, errors);
      if (node.has("headers")) {
        read_pairs(node, "headers", errors, s.pairs);
      } else {
        std::string k, v;
        const bool has_key = node.required("key", k, errors);
        if (node.required("value", v, errors) && has_key) s.pairs.emplace_back(k, v);
      }
    } else if (s.type == "regex_filter" || s.type == "regex_extract") {
      if (node.required("regex", s.regex, errors)) {
        auto re = Regex::compile(s.regex);
        if (!re) {
          node.error_at("regex", errors, re.error().message());
        } else if (s.type == "regex_extract") {
          node.optional("headers", s.names, errors);
          if (s.names.empty() && re->names().empty()) {
            node.error_at("regex", errors,
                          "has no named groups; name them (?<header>...) or set 'headers'");
          } else if (s.names.size() > re->group_count()) {
            node.error_at("headers", errors,
                          "names " + std::to_string(s.names.size()) +
                              " headers but the regex has " + std::to_string(re->group_count()) +
                              " groups");
          }
        }
      }
      node.optional("field", s.field, errors);
      if (s.type == "regex_filter") node.optional("exclude", s.exclude, errors);
    } else if (s.type == "drop_fields") {
      node.required("fields", s.names, errors);
    } else if (s.type == "rename") {
      if (node.has("fields")) {
        read_pairs(node, "fields", errors, s.pairs);
      } else {
        node.required("fields", s.names, errors);  // reports the missing key
      }
    } else if (s.type == "set") {
      if (node.has("fields")) {
        read_pairs(node, "fields", errors, s.pairs);
      } else {
        node.required("fields", s.names, errors);
      }
    } else if (s.type == "sample") {
      node.required("rate", s.rate, errors, InRange<std::uint64_t>{1, 1'000'000'000});
      node.optional("field", s.field, errors);
    }
    node.reject_unknown_keys(errors);
    out.push_back(std::move(s));
  }
  return errors.size() == before;
}

Result<std::unique_ptr<Interceptor>> Interceptor::make(const InterceptorSpec& s) {
  if (s.type == "timestamp") return std::unique_ptr<Interceptor>(new TimestampInterceptor(s));
  if (s.type == "host") return std::unique_ptr<Interceptor>(new HostInterceptor(s));
  if (s.type == "static") return std::unique_ptr<Interceptor>(new StaticInterceptor(s));
  if (s.type == "regex_filter" || s.type == "regex_extract") {
    auto re = Regex::compile(s.regex);
    if (!re) return re.error();
    if (s.type == "regex_filter")
      return std::unique_ptr<Interceptor>(new RegexFilter(s, std::move(*re)));
    return std::unique_ptr<Interceptor>(new RegexExtract(s, std::move(*re)));
  }
  if (s.type == "drop_fields") return std::unique_ptr<Interceptor>(new DropFields(s));
  if (s.type == "rename") return std::unique_ptr<Interceptor>(new Rename(s));
  if (s.type == "set") return std::unique_ptr<Interceptor>(new Set(s));
  if (s.type == "sample") return std::unique_ptr<Interceptor>(new Sample(s));
  return Status(Errc::config, "unknown interceptor type '" + s.type + "'");
}

}  // namespace sluice::parse
