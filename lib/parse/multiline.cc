#include "lib/parse/multiline.h"

#include <algorithm>

namespace sluice::parse {
namespace {

constexpr std::string_view kStreams[2] = {"stdout", "stderr"};

// Continuation lines of the ready modes. A record starts at any line that does not match.
constexpr std::string_view kJava =
    R"re(^(?:[ \t]+\S|Caused by: |[ \t]*\.\.\. \d+ (?:more|common frames omitted)|)re"
    R"re((?:[a-zA-Z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)(?:: |$)))re";
constexpr std::string_view kPython =
    R"re(^(?:[ \t]+\S|Traceback \(most recent call last\):|)re"
    R"re((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Warning|Exit|Interrupt|Iteration)(?:: |$)|)re"
    R"re(During handling of the above exception|The above exception was the direct cause|$))re";
constexpr std::string_view kGo =
    R"re(^(?:[ \t]+\S|$|goroutine \d+ \[|created by |\[signal |exit status \d+$|)re"
    R"re([\w./\-*()]+\(.*\)$))re";

}  // namespace

std::string_view ready_continuation(std::string_view mode) {
  if (mode == "java") return kJava;
  if (mode == "python") return kPython;
  if (mode == "go") return kGo;
  return {};
}

bool MultilineConfig::parse(const ConfigNode& source, ConfigErrors& errors, MultilineConfig& out) {
  source.mark_known("multiline");
  if (!source.has("multiline")) return true;
  auto node = source.child("multiline", errors);
  if (!node) return false;
  const std::size_t before = errors.size();
  std::string container = "none";
  node->optional("container", container, errors, OneOf{{"none", "cri", "docker"}});
  node->optional("mode", out.mode, errors,
                 OneOf{{"java", "python", "go", "cri", "docker", "custom"}});
  if (out.mode == "cri" || out.mode == "docker") {
    if (node->has("container") && container != out.mode) {
      node->error_at("mode", errors, "contradicts container = \"" + container + "\"");
    }
    container = out.mode;
    out.mode.clear();
  }
  if (out.mode == "custom") out.mode.clear();
  out.container = container == "cri"      ? Container::cri
                  : container == "docker" ? Container::docker
                                          : Container::none;
  node->optional("start", out.start, errors);
  node->optional("continuation", out.continuation, errors);
  node->optional("max_lines", out.max_lines, errors, InRange<std::uint64_t>{1, 100000});
  node->optional("max_bytes", out.max_bytes, errors,
                 InRange<ByteSize>{{64}, {std::uint64_t{64} << 20}});
  node->optional(
      "timeout", out.timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(1), std::chrono::hours(1)});
  if (!out.start.empty() && !out.continuation.empty()) {
    node->error_at("continuation", errors, "set either 'start' or 'continuation', not both", true);
  }
  if (!out.mode.empty()) {
    if (!out.start.empty() || !out.continuation.empty()) {
      node->error_at("mode", errors,
                     "a ready mode (\"" + out.mode + "\") does not take 'start' or 'continuation'",
                     true);
    }
    out.continuation = std::string(ready_continuation(out.mode));
  }
  if (!out.enabled() && errors.size() == before) {
    node->error(errors,
                "needs 'mode' (java, python, go, cri, docker), 'container', 'start' or "
                "'continuation'");
  }
  for (const char* key : {"start", "continuation"}) {
    std::string pattern;
    if (node->has(key) && node->optional(key, pattern, errors)) {
      if (auto r = Regex::compile(pattern); !r) node->error_at(key, errors, r.error().message());
    }
  }
  node->reject_unknown_keys(errors);
  return errors.size() == before;
}

Result<MultilineRules> MultilineRules::make(const MultilineConfig& config) {
  MultilineRules r;
  r.config_ = config;
  if (!config.start.empty()) {
    auto re = Regex::compile(config.start);
    if (!re) return re.error();
    r.start_.emplace(std::move(*re));
  }
  if (!config.continuation.empty()) {
    auto re = Regex::compile(config.continuation);
    if (!re) return re.error();
    r.continuation_.emplace(std::move(*re));
  }
  auto tf = TimeFormat::make("rfc3339", TimeZone());
  if (!tf) return tf.error();
  r.rfc3339_ = std::move(*tf);
  return r;
}

void LineAssembler::begin_output() {
  out_.clear();
  stored_ = 0;
}

std::string_view LineAssembler::keep(std::string& s) {
  if (stored_ == store_.size()) store_.emplace_back();
  std::string& slot = store_[stored_++];
  slot.clear();
  slot.swap(s);  // s gets slot's old capacity back
  return slot;
}

bool LineAssembler::holding() const noexcept {
  return partial_[0].active || partial_[1].active || joined_[0].active || joined_[1].active;
}

std::uint64_t LineAssembler::held_from() const noexcept {
  std::uint64_t from = UINT64_MAX;
  for (const auto& p : partial_) {
    if (p.active) from = std::min(from, p.start);
  }
  for (const auto& j : joined_) {
    if (j.active) from = std::min(from, j.start);
  }
  return from;
}

const std::vector<Record>& LineAssembler::push(std::string_view line, std::uint64_t start,
                                               std::uint64_t end, std::int64_t now_ns) {
  begin_output();
  const MultilineConfig& cfg = rules_->config_;
  if (cfg.container == Container::none) {
    join(0, line, start, end, 0, now_ns);
    return out_;
  }
  std::size_t stream = 0;
  std::string_view text;
  std::int64_t time_ns = 0;
  bool partial = false;
  if (cfg.container == Container::cri) {
    // "2016-10-06T00:17:09.669794202Z stdout P message"
    const std::size_t a = line.find(' ');
    const std::size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
    if (b == std::string_view::npos) {
      ++rules_->container_errors_;
      decoded(0, line, start, end, 0, now_ns);
      return out_;
    }
    const std::size_t c = line.find(' ', b + 1);
    const std::string_view tag =
        line.substr(b + 1, (c == std::string_view::npos ? line.size() : c) - (b + 1));
    const std::string_view st = line.substr(a + 1, b - a - 1);
    const auto t = rules_->rfc3339_.parse(line.substr(0, a), now_ns);
    if (!t || (st != "stdout" && st != "stderr") || tag.empty() ||
        (tag[0] != 'P' && tag[0] != 'F')) {
      ++rules_->container_errors_;
      decoded(0, line, start, end, 0, now_ns);
      return out_;
    }
    stream = st == "stderr" ? 1 : 0;
    time_ns = *t;
    partial = tag[0] == 'P';
    text = c == std::string_view::npos ? std::string_view() : line.substr(c + 1);
  } else {
    // {"log":"message\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}
    namespace od = simdjson::ondemand;
    od::document doc;
    od::object obj;
    std::string_view log, st, time;
    bool ok = !rules_->docker_parser_.iterate(rules_->docker_buf_.load(line)).get(doc) &&
              !doc.get_object().get(obj);
    if (ok) {
      for (auto member : obj) {
        std::string_view key;
        if (member.unescaped_key().get(key)) {
          ok = false;
          break;
        }
        std::string_view* to = key == "log"      ? &log
                               : key == "stream" ? &st
                               : key == "time"   ? &time
                                                 : nullptr;
        if (to != nullptr && member.value().get_string().get(*to)) {
          ok = false;
          break;
        }
      }
    }
    const auto t = ok ? rules_->rfc3339_.parse(time, now_ns) : std::nullopt;
    if (!ok || log.data() == nullptr) {
      ++rules_->container_errors_;
      decoded(0, line, start, end, 0, now_ns);
      return out_;
    }
    stream = st == "stderr" ? 1 : 0;
    time_ns = t.value_or(0);
    partial = log.empty() || log.back() != '\n';
    if (!partial) log.remove_suffix(1);
    if (!log.empty() && log.back() == '\r' && !partial) log.remove_suffix(1);
    text = log;
  }
  Partial& p = partial_[stream];
  if (!p.active && !partial) {
    decoded(stream, text, start, end, time_ns, now_ns);
    return out_;
  }
  if (!p.active) {
    p.active = true;
    p.start = start;
    p.time_ns = time_ns;
    p.since_ns = now_ns;
    p.text.clear();
  }
  if (p.text.size() + text.size() > cfg.max_bytes.bytes) {
    ++rules_->overflows_;
    emit_partial(stream);
    p.active = true;
    p.start = start;
    p.time_ns = time_ns;
  }
  p.text.append(text);
  p.end = end;
  p.since_ns = now_ns;
  if (!partial) emit_partial(stream);
  return out_;
}

void LineAssembler::emit_partial(std::size_t stream) {
  Partial& p = partial_[stream];
  if (!p.active) return;
  p.active = false;
  const std::uint64_t end = p.end;
  if (!rules_->config_.joins()) {
    out_.push_back({keep(p.text), p.start, end, p.time_ns, kStreams[stream]});
    return;
  }
  // The joiner copies what it keeps; p.text is reused after this call.
  decoded(stream, p.text, p.start, end, p.time_ns, p.since_ns);
  p.text.clear();
}

void LineAssembler::decoded(std::size_t stream, std::string_view text, std::uint64_t start,
                            std::uint64_t end, std::int64_t time_ns, std::int64_t now_ns) {
  if (!rules_->config_.joins()) {
    const bool container = rules_->config_.container != Container::none;
    out_.push_back({text, start, end, time_ns, container ? kStreams[stream] : std::string_view()});
    return;
  }
  join(stream, text, start, end, time_ns, now_ns);
}

void LineAssembler::join(std::size_t stream, std::string_view text, std::uint64_t start,
                         std::uint64_t end, std::int64_t time_ns, std::int64_t now_ns) {
  const MultilineConfig& cfg = rules_->config_;
  Joined& j = joined_[stream];
  bool continues = false;
  if (j.active) {
    if (rules_->start_) {
      continues = rules_->start_->match(text) != Regex::Outcome::match;
    } else if (rules_->continuation_) {
      continues = rules_->continuation_->match(text) == Regex::Outcome::match;
    }
  }
  if (continues &&
      (j.lines >= cfg.max_lines || j.text.size() + 1 + text.size() > cfg.max_bytes.bytes)) {
    ++rules_->overflows_;
    continues = false;
  }
  if (continues) {
    j.text.push_back('\n');
    j.text.append(text);
    j.end = end;
    j.since_ns = now_ns;
    ++j.lines;
    return;
  }
  emit_joined(stream);
  j.active = true;
  j.text.assign(text);
  j.start = start;
  j.end = end;
  j.time_ns = time_ns;
  j.since_ns = now_ns;
  j.lines = 1;
}

void LineAssembler::emit_joined(std::size_t stream) {
  Joined& j = joined_[stream];
  if (!j.active) return;
  j.active = false;
  const bool container = rules_->config_.container != Container::none;
  out_.push_back(
      {keep(j.text), j.start, j.end, j.time_ns, container ? kStreams[stream] : std::string_view()});
}

const std::vector<Record>& LineAssembler::flush() {
  begin_output();
  for (std::size_t s = 0; s < 2; ++s) {
    emit_partial(s);
    emit_joined(s);
  }
  return out_;
}

const std::vector<Record>& LineAssembler::flush_due(std::int64_t now_ns) {
  begin_output();
  const std::int64_t timeout = rules_->config_.timeout.count();
  for (std::size_t s = 0; s < 2; ++s) {
    if (partial_[s].active && now_ns - partial_[s].since_ns >= timeout) emit_partial(s);
    if (joined_[s].active && now_ns - joined_[s].since_ns >= timeout) emit_joined(s);
  }
  return out_;
}

}  // namespace sluice::parse
