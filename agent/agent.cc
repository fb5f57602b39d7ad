#include "agent/agent.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "lib/codec/atomic_file.h"
#include "lib/codec/json.h"
#include "lib/core/log.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace sluice {

std::string_view sluice_version() { return SLUICE_VERSION; }

Agent::Agent(AgentConfig config, const Registry& registry)
    : config_(std::move(config)),
      registry_(registry),
      shutdown_timer_(loop_),
      watchdog_timer_(loop_),
      log_summary_timer_(loop_),
      status_timer_(loop_),
      up_(metrics_.gauge("sluice_agent_ready", "1 once every component started, 0 while stopping.",
                         {{"component", "agent"}, {"type", "agent"}})) {
  metrics_
      .gauge("sluice_agent_info", "Build and identity of this agent.",
             {{"component", "agent"},
              {"type", "agent"},
              {"version", std::string(sluice_version())},
              {"name", config_.agent.name}})
      .set(1);
}

Agent::~Agent() {
  // Destroy in reverse order of dependencies, then let the loop close the handles.
  sources_.clear();
  pipelines_.clear();
  groups_.clear();
  sinks_.clear();
  channels_.clear();
  shared_.clear();  // after the components that use them: the lmdb environment closes here
  admin_.reset();
  for (auto* s : signals_) close_and_delete(s);
  signals_.clear();
}

Channel* Agent::channel(std::string_view name) {
  for (auto& c : channels_) {
    if (c.name == name) return c.channel.get();
  }
  return nullptr;
}

Status Agent::prepare_data_dir() {
  std::error_code ec;
  const std::filesystem::path dir(config_.agent.data_dir);
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return Status(Errc::io,
                    fmt::format("cannot create data_dir {}: {}", dir.string(), ec.message()));
    std::filesystem::permissions(dir, std::filesystem::perms(0750), ec);
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return Status(Errc::io, fmt::format("data_dir {} is not a directory", dir.string()));
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    return Status::from_errno(errno, fmt::format("data_dir {} is not writable", dir.string()));
  }
  return {};
}

Status Agent::create_components() {
  auto make_ctx = [&](const std::string& name, const std::string& type) {
    return std::make_unique<ComponentContext>(
        ComponentContext{loop_, metrics_, name, type, config_.agent.data_dir, &shared_});
  };
  for (const auto& spec : config_.channels) {
    ChannelEntry e{spec.name, spec.type, make_ctx(spec.name, spec.type), nullptr};
    auto r = registry_.channel(spec.type)->create(spec.config, *e.ctx);
    if (!r)
      return Status(r.error().code(),
                    fmt::format("channels.{}: {}", spec.name, r.error().message()));
    e.channel = std::move(*r);
    channels_.push_back(std::move(e));
  }
  for (const auto& spec : config_.sinks) {
    SinkEntry e{spec.name, spec.type, make_ctx(spec.name, spec.type), nullptr};
    auto r = registry_.sink(spec.type)->create(spec.config, *e.ctx);
    if (!r)
      return Status(r.error().code(), fmt::format("sinks.{}: {}", spec.name, r.error().message()));
    e.sink = std::move(*r);
    sinks_.push_back(std::move(e));
  }
  for (const auto& spec : config_.groups) {
    Channel* ch = channel(spec.channel);
    SLUICE_ASSERT(ch != nullptr);
    auto cursor = ch->open_cursor(spec.name);
    if (cursor && spec.config.detach_when_lagging) ch->set_detach_when_lagging(*cursor, true);
    if (!cursor)
      return Status(Errc::config,
                    fmt::format("sink_groups.{}: {}", spec.name, cursor.error().message()));
    auto member = [&](const std::string& sink_name) {
      const SinkSpec* sspec = nullptr;
      for (const auto& sp : config_.sinks) {
        if (sp.name == sink_name) sspec = &sp;
      }
      Sink* sink = nullptr;
      for (auto& se : sinks_) {
        if (se.name == sink_name) sink = se.sink.get();
      }
      SLUICE_ASSERT(sspec != nullptr && sink != nullptr);
      return sinks::GroupMember{sink_name, sspec->type, sink, sspec->delivery_timeout};
    };
    std::vector<sinks::GroupMember> members;
    std::vector<Sink*> member_sinks;
    for (const auto& sink_name : spec.sinks) {
      members.push_back(member(sink_name));
      member_sinks.push_back(members.back().sink);
    }
    ProcessorContext pctx{member_sinks, spec.config.penalty_base, spec.config.max_penalty};
    auto processor = registry_.processor(spec.processor)->create(spec.processor_config, pctx);
    if (!processor)
      return Status(processor.error().code(),
                    fmt::format("sink_groups.{}: {}", spec.name, processor.error().message()));
    std::optional<sinks::GroupMember> dead_letter;
    if (spec.dead_letter) dead_letter = member(*spec.dead_letter);
    ComponentContext gctx{loop_,
                          metrics_,
                          spec.name,
                          spec.implicit ? "group" : spec.processor,
                          config_.agent.data_dir,
                          &shared_};
    groups_.push_back({spec.name, spec.channel,
                       std::make_unique<sinks::SinkGroup>(gctx, *ch, *cursor, std::move(*processor),
                                                          std::move(members), spec.config, clock_,
                                                          std::move(dead_letter)),
                       false});
  }
  if (Status st = create_pipelines(); !st.ok()) return st;
  for (const auto& spec : config_.sources) {
    std::vector<Channel*> outs;
    for (const auto& c : spec.channels) outs.push_back(channel(c));
    SourceEntry e;
    e.name = spec.name;
    e.type = spec.type;
    Channel* dead_letter =
        spec.dead_letter_channel.empty() ? nullptr : channel(spec.dead_letter_channel);
    e.output = std::make_unique<SourceOutput>(loop_, std::move(outs),
                                              config_.agent.max_pending_puts, dead_letter);
    e.output->set_source_name(spec.name);
    e.output->set_metrics(metrics_, {{"component", spec.name}, {"type", spec.type}});
    auto sctx = std::make_unique<SourceContext>(
        SourceContext{{loop_, metrics_, spec.name, spec.type, config_.agent.data_dir, &shared_},
                      *e.output,
                      [this, name = spec.name] {
                        begin_shutdown(fmt::format("source {} finished its input", name));
                      }});
    auto r = registry_.source(spec.type)->create(spec.config, *sctx);
    if (!r)
      return Status(r.error().code(),
                    fmt::format("sources.{}: {}", spec.name, r.error().message()));
    e.source = std::move(*r);
    e.ctx = std::move(sctx);
    sources_.push_back(std::move(e));
  }
  return {};
}

// Pipelines open their cursors before any sink group runs, so that nothing they have not read is
// deleted from their input channel.
Status Agent::create_pipelines() {
  for (const auto& spec : config_.pipelines) {
    Channel* input = channel(spec.input_channel);
    Channel* target = channel(spec.channel);
    Channel* late = spec.late_channel.empty() ? nullptr : channel(spec.late_channel);
    SLUICE_ASSERT(input != nullptr && target != nullptr);
    auto p = std::make_unique<Pipeline>(spec, loop_, metrics_, *input, *target, late,
                                        config_.agent.max_pending_puts);
    if (Status st = p->open(); !st.ok())
      return Status(st.code(), fmt::format("pipelines.{}: {}", spec.name, st.message()));
    pipelines_.push_back(std::move(p));
  }
  return {};
}

void Agent::stop_pipelines() {
  // Between step 2 and 3: rows of windows closed by the shutdown (on_stop = "emit") must be in
  // their channels before the sink groups drain them.
  pipelines_stopping_ = pipelines_.size();
  if (pipelines_stopping_ == 0) return on_pipeline_stopped();
  for (auto& p : pipelines_) p->stop([this] { on_pipeline_stopped(); });
}

void Agent::on_pipeline_stopped() {
  if (pipelines_stopping_ > 0) --pipelines_stopping_;
  if (pipelines_stopping_ > 0) return;
  // Step 3: memory channels drain to their sinks.
  groups_draining_ = groups_.size();
  if (groups_draining_ == 0) return on_group_drained();
  for (auto& g : groups_) {
    g.group->drain([this, &g] {
      g.drained = true;
      on_group_drained();
    });
  }
}

Status Agent::start_admin() {
  admin_ = std::make_unique<http::Server>(
      loop_,
      // Health checks must get through 64+ half-open or idle connections: unfinished headers
      // are cut at 2s, and a new connection at the limit evicts the least active idle one.
      http::ServerLimits{.max_header_bytes = 8192,
                         .max_body_bytes = 0,
                         .max_connections = 64,
                         .header_timeout = std::chrono::milliseconds(2000),
                         .evict_when_full = http::ServerLimits::Eviction::unfinished_or_idle},
      [this](http::Request& req, http::Responder r) { handle_admin(req, std::move(r)); }, &metrics_,
      Labels{{"component", "admin"}, {"type", "admin"}});
  Status st = admin_->listen(config_.agent.admin);
  if (!st.ok()) return Status(st.code(), fmt::format("agent.admin: {}", st.message()));
  const std::string addr_file = config_.agent.data_dir + "/admin.addr";
  st = codec::write_file_atomic(addr_file, admin_->bound_address() + "\n");
  if (!st.ok()) return st;
  spdlog::info("admin endpoint on http://{} (written to {})", admin_->bound_address(), addr_file);
  return {};
}

void Agent::install_signals() {
  std::signal(SIGPIPE, SIG_IGN);
  for (int signum : {SIGTERM, SIGINT, SIGHUP}) {
    auto* s = new uv_signal_t{};
    uv_signal_init(loop_.uv(), s);
    s->data = this;
    uv_signal_start(
        s, [](uv_signal_t* h, int n) { static_cast<Agent*>(h->data)->on_signal(n); }, signum);
    uv_unref(reinterpret_cast<uv_handle_t*>(s));
    signals_.push_back(s);
  }
}

void Agent::on_signal(int signum) {
  if (signum == SIGHUP) {
    spdlog::warn(
        "SIGHUP: configuration reload is not supported yet; restart the agent to apply changes");
    return;
  }
  if (state_ == State::stopping) exit_now(1, fmt::format("second signal ({})", strsignal(signum)));
  begin_shutdown(strsignal(signum));
}

int Agent::run() {
  started_at_ = std::chrono::steady_clock::now();
  install_signals();
  Status st = prepare_data_dir();
  if (st.ok()) st = create_components();
  if (st.ok()) st = start_admin();
  if (!st.ok()) {
    spdlog::error("cannot start: {}", st.message());
    return 1;
  }
  for (auto& g : groups_) g.group->start();
  for (auto& p : pipelines_) p->start();
  for (auto& s : sources_) {
    Status ss = s.source->start();
    if (!ss.ok()) {
      spdlog::error("cannot start: sources.{}: {}", s.name, ss.message());
      return 1;
    }
    if (const std::string addr = s.source->bound_address(); !addr.empty()) {
      const std::string file = config_.agent.data_dir + "/" + s.name + ".addr";
      if (Status ws = codec::write_file_atomic(file, addr + "\n"); !ws.ok()) {
        spdlog::error("cannot start: sources.{}: {}", s.name, ws.message());
        return 1;
      }
      spdlog::info("source {} listening on {} (written to {})", s.name, addr, file);
    }
  }
  sources_running_ = sources_.size();
  if (state_ == State::starting) {
    state_ = State::running;
    up_.set(1);
  }
  spdlog::info("sluice {} started as '{}': {} sources, {} channels, {} sinks", sluice_version(),
               config_.agent.name, sources_.size(), channels_.size(), sinks_.size());
  sd_notify(0, "READY=1");
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    const auto every = std::chrono::microseconds(watchdog_usec / 2);
    watchdog_timer_.start(
        every, [] { sd_notify(0, "WATCHDOG=1"); }, every);
  }
  log_summary_timer_.start(
      std::chrono::seconds(1), [] { RateLimiter::log_summaries(); }, std::chrono::seconds(1));
  if (std::getenv("NOTIFY_SOCKET") != nullptr) {
    status_at_ = std::chrono::steady_clock::now();
    notify_status();
    status_timer_.start(
        kStatusEvery, [this] { notify_status(); }, kStatusEvery);
  }
  loop_.run();
  return exit_code_;
}

void Agent::begin_shutdown(std::string_view why) {
  if (state_ == State::stopping || state_ == State::stopped) return;
  const bool was_starting = state_ == State::starting;
  state_ = State::stopping;
  up_.set(0);
  sd_notify(0, "STOPPING=1");
  spdlog::info("shutting down ({}): stopping sources, then draining channels within {}", why,
               format_duration(config_.agent.shutdown_timeout));
  shutdown_timer_.start(config_.agent.shutdown_timeout, [this] {
    // Durable channels keep their events: only memory channels lose what they still hold.
    std::uint64_t left = 0, in_flight = 0;
    for (auto& c : channels_) {
      if (!c.channel->durable()) left += c.channel->events();
    }
    std::string waiting;
    for (auto& g : groups_) {
      in_flight += g.group->in_flight();
      if (!g.drained) waiting += (waiting.empty() ? "" : ", ") + g.name;
    }
    exit_now(1, fmt::format("shutdown_timeout ({}) passed with {} events still in memory "
                            "channels and {} deliveries in flight (sink groups not drained: {})",
                            format_duration(config_.agent.shutdown_timeout), left, in_flight,
                            waiting.empty() ? "none" : waiting));
  });
  if (was_starting) {
    // A source asked to stop before start() returned (stdin already at EOF): run() resumes here.
  }
  // Step 1 and 2: sources stop reading and their pending puts complete.
  sources_running_ = sources_.size();
  if (sources_running_ == 0) return on_source_stopped();
  for (auto& s : sources_) {
    s.source->stop([this, &s] {
      s.stopped = true;
      on_source_stopped();
    });
  }
}

void Agent::on_source_stopped() {
  if (sources_running_ > 0) --sources_running_;
  if (sources_running_ > 0) return;
  stop_pipelines();
}

void Agent::on_group_drained() {
  if (groups_draining_ > 0) --groups_draining_;
  if (groups_draining_ > 0) return;
  // The pipelines' last checkpoints, now that their rows are safe.
  auto left = std::make_shared<std::size_t>(pipelines_.size());
  if (*left == 0) return finish();
  for (auto& p : pipelines_) {
    p->final_checkpoint([this, left] {
      if (--*left == 0) finish();
    });
  }
}

void Agent::finish() {
  // Step 4: sources persist their last safe checkpoint. Step 5: exit 0.
  for (auto& s : sources_) s.source->persist_checkpoint();
  for (const auto& s : sources_) {
    double events = 0, bytes = 0;
    const Labels l{{"component", s.name}, {"type", s.type}};
    metrics_.find("sluice_source_events_total", l, events);
    metrics_.find("sluice_source_bytes_total", l, bytes);
    spdlog::info("source {}: {:.0f} events, {:.0f} bytes read", s.name, events, bytes);
  }
  for (const auto& p : pipelines_) {
    spdlog::info("pipeline {}: {} events in, {} rows out, {} late", p->name(), p->events_in(),
                 p->rows_out(), p->late_events());
  }
  state_ = State::stopped;
  shutdown_timer_.stop();
  watchdog_timer_.stop();
  log_summary_timer_.stop();
  status_timer_.stop();
  RateLimiter::log_summaries(true);
  if (admin_) admin_->close();
  spdlog::info("stopped: every channel drained");
  exit_code_ = 0;
  loop_.stop();
}

void Agent::exit_now(int code, std::string_view why) {
  RateLimiter::log_summaries(true);
  spdlog::error("exiting at once: {}", why);
  for (auto& s : sources_) s.source->persist_checkpoint();
  spdlog::default_logger()->flush();
  std::_Exit(code);
}

void Agent::handle_admin(http::Request& req, http::Responder responder) {
  http::Response r;
  const std::string_view path = req.path();
  const bool known =
      path == "/metrics" || path == "/healthz" || path == "/readyz" || path == "/api/v1/status";
  if (!known) {
    r.status = 404;
    r.body = "not found; try /metrics, /healthz, /readyz or /api/v1/status\n";
  } else if (req.method != HTTP_GET && req.method != HTTP_HEAD) {
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, HEAD");
    r.body = "method not allowed\n";
  } else if (path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.render();
  } else if (path == "/healthz") {
    // Still 200: the agent keeps running; the body names what an operator should look at.
    const std::string problems = health_problems();
    r.body = problems.empty() ? "ok\n" : "degraded\n" + problems;
  } else if (path == "/readyz") {
    const bool ready = state_ == State::running;
    r.status = ready ? 200 : 503;
    r.body = ready ? "ready\n" : (state_ == State::starting ? "starting\n" : "stopping\n");
  } else {
    r.content_type = "application/json";
    r.body = status_json();
  }
  responder.respond(std::move(r));
}

std::string Agent::health_problems() const {
  std::string problems;
  for (const auto& c : channels_) {
    const std::string p = c.channel->health_problem();
    if (!p.empty()) problems += p + "\n";
  }
  for (const auto& s : sources_) {
    const std::string p = s.output->health_problem();
    if (!p.empty()) problems += p + "\n";
  }
  return problems;
}

// systemd's STATUS= line (`systemctl status sluice`): throughput since the last one, what the
// channels hold, and the first health problem if any.
void Agent::notify_status() {
  double in = 0, out = 0, v = 0;
  for (const auto& s : sources_) {
    if (metrics_.find("sluice_source_events_total", {{"component", s.name}, {"type", s.type}}, v))
      in += v;
  }
  for (const auto& s : sinks_) {
    if (metrics_.find("sluice_sink_events_total",
                      {{"component", s.name}, {"type", s.type}, {"outcome", "ok"}}, v))
      out += v;
  }
  std::uint64_t held = 0;
  for (const auto& c : channels_) held += c.channel->events();
  const auto now = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(now - status_at_).count();
  const double in_rate = seconds > 0 ? (in - status_in_) / seconds : 0;
  const double out_rate = seconds > 0 ? (out - status_out_) / seconds : 0;
  status_at_ = now;
  status_in_ = in;
  status_out_ = out;
  std::string problems = health_problems();
  if (const auto nl = problems.find('\n'); nl != std::string::npos) problems.resize(nl);
  const std::string line =
      fmt::format("STATUS=in {:.0f} events/s, out {:.0f} events/s, {} held in channels; {}",
                  in_rate, out_rate, held, problems.empty() ? "ok" : "degraded: " + problems);
  sd_notify(0, line.c_str());
}

std::string Agent::status_json() const {
  auto state_name = [this] {
    switch (state_) {
      case State::starting:
        return "starting";
      case State::running:
        return "running";
      case State::stopping:
        return "stopping";
      case State::stopped:
        return "stopped";
    }
    return "unknown";
  };
  auto value = [this](std::string_view name, const Labels& l) {
    double v = 0;
    metrics_.find(name, l, v);
    return static_cast<std::uint64_t>(v);
  };
  std::string out = "{\"agent\":{\"name\":\"";
  codec::append_json_string(out, config_.agent.name);
  out += fmt::format("\",\"version\":\"{}\",\"uptime_s\":{},\"state\":\"{}\"}},\"components\":[",
                     sluice_version(),
                     std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - started_at_)
                         .count(),
                     state_name());
  bool first = true;
  auto begin = [&](std::string_view name, std::string_view kind, std::string_view type,
                   std::string_view state) {
    if (!first) out += ',';
    first = false;
    out += "{\"name\":\"";
    codec::append_json_string(out, name);
    out += fmt::format("\",\"kind\":\"{}\",\"type\":\"{}\",\"state\":\"{}\"", kind, type, state);
  };
  for (const auto& s : sources_) {
    const Labels l{{"component", s.name}, {"type", s.type}};
    const char* st = s.source->finished() ? "finished" : s.stopped ? "stopped" : state_name();
    begin(s.name, "source", s.type, st);
    out +=
        fmt::format(",\"events_total\":{},\"bytes_total\":{},\"safe_seq\":{},\"last_seq\":{}}}",
                    value("sluice_source_events_total", l), value("sluice_source_bytes_total", l),
                    s.output->safe_seq(), s.output->last_seq());
  }
  for (const auto& p : pipelines_) {
    begin(p->name(), "pipeline", "sql", p->state_name());
    out += fmt::format(
        ",\"source\":\"{}\",\"channel\":\"{}\",\"events_in\":{},\"rows_out\":{},"
        "\"late_events\":{},\"open_windows\":{},\"state_bytes\":{},\"watermark_ms\":{}}}",
        p->spec().source, p->spec().channel, p->events_in(), p->rows_out(), p->late_events(),
        p->open_windows(), p->state_bytes(),
        p->watermark() == INT64_MIN ? std::int64_t{-1} : p->watermark() / 1'000'000);
  }
  for (const auto& c : channels_) {
    begin(c.name, "channel", c.type, state_name());
    out += fmt::format(",\"events\":{},\"bytes\":{}}}", c.channel->events(), c.channel->bytes());
  }
  for (const auto& s : sinks_) {
    auto outcome = [&](const char* o) {
      return value("sluice_sink_events_total",
                   {{"component", s.name}, {"type", s.type}, {"outcome", o}});
    };
    begin(s.name, "sink", s.type, state_name());
    out += fmt::format(",\"events_ok\":{},\"events_retry\":{},\"events_reject\":{}}}",
                       outcome("ok"), outcome("retry"), outcome("reject"));
  }
  for (const auto& g : groups_) {
    const GroupSpec* gs = nullptr;
    for (const auto& spec : config_.groups) {
      if (spec.name == g.name) gs = &spec;
    }
    begin(g.name, "sink_group", gs != nullptr ? gs->processor : "default",
          g.drained ? "drained" : state_name());
    out += fmt::format(",\"channel\":\"{}\",\"active_sink\":\"{}\",\"in_flight\":{}}}", g.channel,
                       g.group->active(), g.group->in_flight());
  }
  out += "]}\n";
  return out;
}

}  // namespace sluice
