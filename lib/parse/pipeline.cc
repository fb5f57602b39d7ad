#include "lib/parse/pipeline.h"

#include <fmt/format.h>

namespace sluice::parse {

std::string_view PipelineConfig::format_name(Format f) noexcept {
  switch (f) {
    case Format::json:
      return "json";
    case Format::regex:
      return "regex";
    case Format::logfmt:
      return "logfmt";
    case Format::raw:
      break;
  }
  return "raw";
}

bool PipelineConfig::parse(const ConfigNode& node, ConfigErrors& errors, PipelineConfig& out,
                           bool lines) {
  const std::size_t before = errors.size();
  using F = PipelineConfig::Format;
  node.optional_enum(
      "format", out.format, errors,
      {{"raw", F::raw}, {"json", F::json}, {"regex", F::regex}, {"logfmt", F::logfmt}});
  if (out.format == F::regex) {
    if (node.required("pattern", out.pattern, errors)) {
      node.optional("match_limit", out.match_limit, errors,
                    InRange<std::uint64_t>{100, 100'000'000});
      if (auto f = RegexFormat::make(out.pattern, out.match_limit); !f)
        node.error_at("pattern", errors, f.error().message());
    }
  } else {
    for (const char* key : {"pattern", "match_limit"}) {
      node.mark_known(key);
      if (node.has(key)) node.error_at(key, errors, "only applies to format = \"regex\"", true);
    }
  }
  if (out.format == F::json) {
    node.optional("fields", out.json.fields, errors);
    node.optional("unwrap", out.json.unwrap, errors);
    node.optional("max_depth", out.json.max_depth, errors, InRange<std::uint64_t>{1, 1000});
    for (const auto& f : out.json.fields) {
      if (f.empty() || f.front() == '.' || f.back() == '.' || f.find("..") != std::string::npos)
        node.error_at("fields", errors, "\"" + f + "\" is not a field path (e.g. \"user.id\")");
    }
  } else {
    for (const char* key : {"fields", "unwrap", "max_depth"}) {
      node.mark_known(key);
      if (node.has(key)) node.error_at(key, errors, "only applies to format = \"json\"", true);
    }
  }
  node.optional_enum("on_parse_error", out.on_parse_error, errors,
                     {{"pass", OnParseError::pass},
                      {"drop", OnParseError::drop},
                      {"dead_letter", OnParseError::dead_letter}});
  node.optional("parse_error_header", out.error_header, errors);
  if (auto ts = node.child("timestamp", errors)) {
    out.has_timestamp = true;
    ts->required("field", out.time_field, errors);
    ts->optional("format", out.time_format, errors);
    ts->optional("timezone", out.time_zone, errors);
    auto zone = TimeZone::load(out.time_zone);
    if (!zone) {
      ts->error_at("timezone", errors, zone.error().message());
    } else if (auto tf = TimeFormat::make(out.time_format, *zone); !tf) {
      ts->error_at("format", errors, tf.error().message());
    }
    ts->reject_unknown_keys(errors);
    if (out.format == F::raw) {
      node.error_at("timestamp", errors,
                    "needs fields to read the time from: set format (json, regex, logfmt)", true);
    }
  }
  InterceptorSpec::parse_all(node, errors, out.interceptors);
  if (lines) {
    MultilineConfig::parse(node, errors, out.multiline);
  } else {
    node.mark_known("multiline");
    if (node.has("multiline"))
      node.error_at("multiline", errors, "only applies to line sources", true);
  }
  return errors.size() == before;
}

EventPipeline::EventPipeline(const PipelineConfig& config, const ComponentContext& ctx)
    : config_(config), trivial_(config.trivial()), source_name_(ctx.name) {
  for (std::size_t i = 1; i < kParseErrorCount; ++i) {
    Labels l = ctx.labels();
    l.emplace_back("reason", std::string(reason_name(static_cast<ParseError>(i))));
    parse_errors_[i] = &ctx.metrics.counter("sluice_source_parse_errors_total",
                                            "Records that did not parse, by reason.", l);
  }
  time_errors_ = &ctx.metrics.counter(
      "sluice_source_timestamp_errors_total",
      "Events whose time field was missing or did not parse (arrival time used).", ctx.labels());
  Labels l = ctx.labels();
  l.emplace_back("reason", "parse_error");
  dropped_parse_ = &ctx.metrics.counter("sluice_source_dropped_total",
                                        "Events dropped on purpose, by reason.", l);
  l.back().second = "interceptor";
  dropped_filter_ = &ctx.metrics.counter("sluice_source_dropped_total",
                                         "Events dropped on purpose, by reason.", l);
  multiline_overflows_ =
      &ctx.metrics.counter("sluice_source_multiline_overflows_total",
                           "Multiline records cut at max_lines or max_bytes.", ctx.labels());
}

Result<std::unique_ptr<EventPipeline>> EventPipeline::make(const PipelineConfig& config,
                                                           const ComponentContext& ctx) {
  std::unique_ptr<EventPipeline> p(new EventPipeline(config, ctx));
  if (config.format == PipelineConfig::Format::json) {
    p->format_ = std::make_unique<JsonFormat>(config.json);
  } else if (config.format == PipelineConfig::Format::regex) {
    auto f = RegexFormat::make(config.pattern, config.match_limit);
    if (!f) return f.error();
    p->format_ = std::move(*f);
  } else if (config.format == PipelineConfig::Format::logfmt) {
    p->format_ = std::make_unique<LogfmtFormat>();
  }
  if (config.has_timestamp) {
    auto zone = TimeZone::load(config.time_zone);
    if (!zone) return zone.error();
    auto tf = TimeFormat::make(config.time_format, *zone);
    if (!tf) return tf.error();
    p->time_.emplace(std::move(*tf));
  }
  for (const auto& spec : config.interceptors) {
    auto i = Interceptor::make(spec);
    if (!i) return i.error();
    p->interceptors_.push_back(std::move(*i));
  }
  if (config.multiline.enabled()) {
    auto r = MultilineRules::make(config.multiline);
    if (!r) return r.error();
    p->rules_.emplace(std::move(*r));
  }
  return p;
}

void EventPipeline::sync_multiline_metrics() {
  if (!rules_) return;
  if (rules_->container_errors() != container_errors_seen_) {
    parse_errors_[static_cast<std::size_t>(ParseError::container_syntax)]->inc(
        rules_->container_errors() - container_errors_seen_);
    container_errors_seen_ = rules_->container_errors();
  }
  if (rules_->overflows() != overflows_seen_) {
    multiline_overflows_->inc(rules_->overflows() - overflows_seen_);
    overflows_seen_ = rules_->overflows();
  }
}

EventPipeline::Outcome EventPipeline::process(const Record& record, std::int64_t arrival_ns,
                                              std::uint64_t id, Batch& out, std::string_view origin,
                                              std::uint64_t offset) {
  Draft& d = draft_;
  d.reset(record.text, record.time_ns != 0 ? record.time_ns : arrival_ns, id);
  for (std::size_t i = 0; i < record.header_count; ++i) d.headers.push_back(record.headers[i]);
  if (!record.stream.empty()) d.headers.push_back({"stream", record.stream});
  ParseError pe = ParseError::none;
  if (format_) pe = format_->parse(record.text, d);
  bool dead = false;
  if (pe != ParseError::none) {
    parse_errors_[static_cast<std::size_t>(pe)]->inc();
    SLUICE_WARN_LIMITED(parse_log_, "{}: {} record{}{} did not parse ({}): {}", source_name_,
                        PipelineConfig::format_name(config_.format), origin.empty() ? "" : " in ",
                        origin, fmt::format("{} at offset {}", reason_name(pe), offset),
                        log_excerpt(record.text));
    d.fields.clear();
    if (config_.on_parse_error == OnParseError::drop) {
      dropped_parse_->inc();
      return Outcome::dropped;
    }
    d.headers.push_back({config_.error_header, reason_name(pe)});
    dead = config_.on_parse_error == OnParseError::dead_letter;
  } else if (time_) {
    const Field* f = d.field(config_.time_field);
    const auto t = f != nullptr ? time_->parse(f->text, arrival_ns, time_cache_) : std::nullopt;
    if (t) {
      d.timestamp_ns = *t;
    } else {
      time_errors_->inc();
      SLUICE_WARN_LIMITED(
          time_log_, "{}: time field '{}' {} (format \"{}\"); using the arrival time", source_name_,
          config_.time_field,
          f == nullptr ? std::string("is missing")
                       : fmt::format("\"{}\" does not parse", log_excerpt(f->text, 64)),
          time_->spec());
    }
  }
  // A record bound for the dead-letter channel goes as it came: interceptors are for parsed events.
  for (std::size_t k = 0; !dead && k < interceptors_.size(); ++k) {
    auto& i = interceptors_[k];
    if (!i->apply(d)) {
      dropped_filter_->inc();
      return Outcome::dropped;
    }
  }
  d.append_to(out);
  if (dead) {
    out.set_flags(Batch::kDeadLetter);
    return Outcome::dead_letter;
  }
  return Outcome::kept;
}

void EventPipeline::process_batch(const Batch& in, Batch& out, std::string_view origin) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const EventView e = in[i];
    headers_.clear();
    for (std::size_t h = 0; h < e.header_count(); ++h) headers_.push_back(e.header(h));
    Record rec;
    rec.text = e.body();
    rec.headers = headers_.data();
    rec.header_count = headers_.size();
    process(rec, e.timestamp_ns(), e.id(), out, origin, i);
  }
}

std::unique_ptr<EventPipeline> PipelinePool::take() {
  if (!spare_.empty()) {
    std::unique_ptr<EventPipeline> p = std::move(spare_.back());
    spare_.pop_back();
    return p;
  }
  auto made = EventPipeline::make(config_, ctx_);
  return made ? std::move(*made) : nullptr;
}

void PipelinePool::give(std::unique_ptr<EventPipeline> p) {
  if (p && spare_.size() < keep_) spare_.push_back(std::move(p));
}

}  // namespace sluice::parse
