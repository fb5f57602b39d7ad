#include "agent/agent.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "channels/lmdb/lmdb_channel.h"
#include "channels/lmdb/lmdb_env.h"
#include "lib/codec/atomic_file.h"
#include "lib/codec/json.h"
#include "lib/core/log.h"
#include "lib/core/sd_notify.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace sluice {

std::string_view sluice_version() { return SLUICE_VERSION; }

Agent::Agent(AgentConfig config, const Registry& registry)
    : config_(std::make_shared<const AgentConfig>(std::move(config))),
      registry_(registry),
      shutdown_timer_(loop_),
      watchdog_timer_(loop_),
      log_summary_timer_(loop_),
      status_timer_(loop_),
      up_(metrics_.gauge("sluice_agent_ready", "1 once every component started, 0 while stopping.",
                         {{"component", "agent"}, {"type", "agent"}})),
      reload_timer_(loop_),
      reload_requests_(metrics_.counter(
          "sluice_reload_requests_total",
          "Reload requests whose file was read (a queued one replaced by a later one counts here "
          "but not in sluice_reloads_total).",
          {{"component", "agent"}, {"type", "agent"}})),
      reloads_ok_(metrics_.counter("sluice_reloads_total",
                                   "Configuration reloads (SIGHUP, POST /api/v1/reload) by result.",
                                   {{"component", "agent"}, {"type", "agent"}, {"result", "ok"}})),
      reloads_failed_(metrics_.counter(
          "sluice_reloads_total", "Configuration reloads (SIGHUP, POST /api/v1/reload) by result.",
          {{"component", "agent"}, {"type", "agent"}, {"result", "failed"}})),
      generation_gauge_(metrics_.gauge(
          "sluice_config_generation",
          "The running configuration's generation: 1 at start, one more per applied reload.",
          {{"component", "agent"}, {"type", "agent"}})),
      last_reload_success_(metrics_.gauge("sluice_config_last_reload_successful",
                                          "1 if the last reload was applied in full, else 0.",
                                          {{"component", "agent"}, {"type", "agent"}})),
      last_reload_time_(metrics_.gauge(
          "sluice_config_last_reload_timestamp_seconds",
          "Unix time of the last reload attempt that finished (applied or refused); 0 before one.",
          {{"component", "agent"}, {"type", "agent"}})),
      heartbeat_timer_(loop_),
      loop_stall_s_(metrics_.gauge(
          "sluice_loop_stall_seconds",
          "How long the event loop was stuck (a timer late by 5s or more) in the last minute; "
          "else 0.",
          {{"component", "agent"}, {"type", "agent"}})),
      move_timer_(loop_),
      events_moved_(metrics_.counter(
          "sluice_reload_events_moved_total",
          "Events a reload moved from a replaced memory channel into its successor.",
          {{"component", "agent"}, {"type", "agent"}})) {
  mover_.agent = this;
  prints_ = reload::fingerprints(*config_);
  generation_gauge_.set(1);
  last_reload_success_.set(1);
  metrics_
      .gauge("sluice_agent_info", "Build and identity of this agent.",
             {{"component", "agent"},
              {"type", "agent"},
              {"version", std::string(sluice_version())},
              {"name", cfg().agent.name}})
      .set(1);
}

Agent::~Agent() {
  // Destroy in reverse order of dependencies, then let the loop close the handles.
  retiring_.sources.clear();
  sources_.clear();
  parked_outputs_.clear();
  deferred_.sources.clear();
  retiring_.pipelines.clear();
  deferred_.pipelines.clear();
  pipelines_.clear();
  retiring_.groups.clear();
  groups_.clear();
  retiring_.sinks.clear();
  sinks_.clear();
  retiring_.channels.clear();
  channels_.clear();
  shared_.clear();  // after the components that use them: the lmdb environment closes here
  admin_.reset();
  for (auto* s : signals_) close_and_delete(s);
  signals_.clear();
}

Channel* Agent::channel(std::string_view name) {
  ChannelEntry* e = channel_entry(name);
  return e != nullptr ? e->channel.get() : nullptr;
}

Agent::ChannelEntry* Agent::channel_entry(std::string_view name, Built* extra) {
  for (auto& c : channels_) {
    if (c.name == name) return &c;
  }
  if (extra != nullptr) {
    for (auto& c : extra->channels) {
      if (c.name == name) return &c;
    }
  }
  return nullptr;
}

Status Agent::prepare_data_dir() {
  std::error_code ec;
  const std::filesystem::path dir(cfg().agent.data_dir);
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

namespace {
bool wanted(const reload::NameSet* set, const std::string& name) {
  return set == nullptr || set->count(name) > 0;
}
}  // namespace

// Builds the components of `config` that `only` names, in dependency order, into `out`: what they
// refer to is found among the running components or among those built before them.
Status Agent::build(const ConfigPtr& config, Only only, Built& out) {
  const AgentConfig& c = *config;
  auto make_ctx = [&](const std::string& name, const std::string& type) {
    return std::make_unique<ComponentContext>(
        ComponentContext{loop_, metrics_, name, type, c.agent.data_dir, &shared_});
  };
  for (const auto& spec : c.channels) {
    if (!wanted(only.channels, spec.name)) continue;
    ChannelEntry e{spec.name, spec.type, config, make_ctx(spec.name, spec.type), nullptr, {}, {}};
    auto r = registry_.channel(spec.type)->create(spec.config, *e.ctx);
    if (!r)
      return Status(r.error().code(),
                    fmt::format("channels.{}: {}", spec.name, r.error().message()));
    e.channel = std::move(*r);
    if (auto* lmdb = dynamic_cast<channels::LmdbChannel*>(e.channel.get()))
      // The first count seen is the baseline of the agent's start: a channel built again on
      // reload reads the same quarantine and must not hide what was quarantined since.
      quarantined_at_start_.try_emplace(spec.name, lmdb->quarantined());
    out.channels.push_back(std::move(e));
  }
  for (const auto& spec : c.sinks) {
    if (!wanted(only.sinks, spec.name)) continue;
    SinkEntry e{spec.name, spec.type, config, make_ctx(spec.name, spec.type), nullptr};
    auto r = registry_.sink(spec.type)->create(spec.config, *e.ctx);
    if (!r)
      return Status(r.error().code(), fmt::format("sinks.{}: {}", spec.name, r.error().message()));
    e.sink = std::move(*r);
    out.sinks.push_back(std::move(e));
  }
  for (const auto& spec : c.groups) {
    if (!wanted(only.groups, spec.name)) continue;
    ChannelEntry* ce = channel_entry(spec.channel, &out);
    SLUICE_ASSERT(ce != nullptr);
    Channel* ch = ce->channel.get();
    // A group built again reads on with its predecessor's cursor.
    std::optional<CursorId> cursor;
    for (const auto& [reader, id] : ce->cursors) {
      if (reader == spec.name) cursor = id;
    }
    if (!cursor && ce->spare) {
      cursor = std::exchange(ce->spare, std::nullopt);
      ce->cursors.emplace_back(spec.name, *cursor);
    }
    if (!cursor) {
      auto opened = ch->open_cursor(spec.name);
      if (!opened)
        return Status(Errc::config,
                      fmt::format("sink_groups.{}: {}", spec.name, opened.error().message()));
      cursor = *opened;
      ce->cursors.emplace_back(spec.name, *cursor);
    }
    // Always set: a cursor read on by a group built again keeps its predecessor's setting.
    ch->set_detach_when_lagging(*cursor, spec.config.detach_when_lagging);
    auto member = [&](const std::string& sink_name) {
      const SinkSpec* sspec = nullptr;
      for (const auto& sp : c.sinks) {
        if (sp.name == sink_name) sspec = &sp;
      }
      Sink* sink = nullptr;
      for (auto& se : sinks_) {
        if (se.name == sink_name) sink = se.sink.get();
      }
      for (auto& se : out.sinks) {
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
    ComponentContext gctx{
        loop_,   metrics_, spec.name, spec.implicit ? "group" : spec.processor, c.agent.data_dir,
        &shared_};
    out.groups.push_back({spec.name, spec.channel, config, *cursor,
                          std::make_unique<sinks::SinkGroup>(
                              gctx, *ch, *cursor, std::move(*processor), std::move(members),
                              spec.config, clock_, std::move(dead_letter)),
                          false});
  }
  // Pipelines open their cursors before any sink group runs, so that nothing they have not read
  // is deleted from their input channel.
  for (const auto& spec : c.pipelines) {
    if (!wanted(only.pipelines, spec.name)) continue;
    ChannelEntry* input = channel_entry(spec.input_channel, &out);
    ChannelEntry* target = channel_entry(spec.channel, &out);
    ChannelEntry* late =
        spec.late_channel.empty() ? nullptr : channel_entry(spec.late_channel, &out);
    SLUICE_ASSERT(input != nullptr && target != nullptr);
    auto p = std::make_unique<Pipeline>(spec, loop_, metrics_, *input->channel, *target->channel,
                                        late != nullptr ? late->channel.get() : nullptr,
                                        c.agent.max_pending_puts);
    if (Status st = p->open(); !st.ok())
      return Status(st.code(), fmt::format("pipelines.{}: {}", spec.name, st.message()));
    out.pipelines.push_back(std::move(p));
  }
  for (const auto& spec : c.sources) {
    if (!wanted(only.sources, spec.name)) continue;
    std::vector<Channel*> outs;
    for (const auto& ch : spec.channels) outs.push_back(channel_entry(ch, &out)->channel.get());
    SourceEntry e;
    e.name = spec.name;
    e.type = spec.type;
    e.origin = config;
    Channel* dead_letter = spec.dead_letter_channel.empty()
                               ? nullptr
                               : channel_entry(spec.dead_letter_channel, &out)->channel.get();
    e.output = std::make_unique<SourceOutput>(loop_, std::move(outs), c.agent.max_pending_puts,
                                              dead_letter);
    e.output->set_source_name(spec.name);
    e.output->set_metrics(metrics_, {{"component", spec.name}, {"type", spec.type}});
    auto sctx = std::make_unique<SourceContext>(
        SourceContext{{loop_, metrics_, spec.name, spec.type, c.agent.data_dir, &shared_},
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
    out.sources.push_back(std::move(e));
  }
  return {};
}

// Starts what build() made: sink groups, then pipelines, then sources (each writing its bound
// address). Every source is tried; the first failure is returned.
Status Agent::start_built(Built& built) {
  for (auto& g : built.groups) g.group->start();
  for (auto& p : built.pipelines) p->start();
  Status first;
  for (auto& s : built.sources) {
    Status ss = s.source->start();
    if (ss.ok()) {
      if (const std::string addr = s.source->bound_address(); !addr.empty()) {
        const std::string file = cfg().agent.data_dir + "/" + s.name + ".addr";
        if (Status ws = codec::write_file_atomic(file, addr + "\n"); !ws.ok()) {
          ss = ws;
        } else {
          spdlog::info("source {} listening on {} (written to {})", s.name, addr, file);
        }
      }
    }
    if (!ss.ok()) {
      s.failed = ss.message();
      if (first.ok())
        first = Status(ss.code(), fmt::format("sources.{}: {}", s.name, ss.message()));
    }
  }
  return first;
}

void Agent::adopt(Built& built) {
  for (auto& e : built.channels) channels_.push_back(std::move(e));
  for (auto& e : built.sinks) sinks_.push_back(std::move(e));
  for (auto& e : built.groups) groups_.push_back(std::move(e));
  for (auto& e : built.pipelines) pipelines_.push_back(std::move(e));
  for (auto& e : built.sources) sources_.push_back(std::move(e));
  built = Built{};
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
  Status st = admin_->listen(cfg().agent.admin);
  if (!st.ok()) return Status(st.code(), fmt::format("agent.admin: {}", st.message()));
  const std::string addr_file = cfg().agent.data_dir + "/admin.addr";
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
  if (signum == SIGHUP) return request_reload("SIGHUP", std::nullopt);
  if (state_ == State::stopping) exit_now(1, fmt::format("second signal ({})", strsignal(signum)));
  begin_shutdown(strsignal(signum));
}

int Agent::run() {
  started_at_ = std::chrono::steady_clock::now();
  install_signals();
  Status st = prepare_data_dir();
  Built built;
  if (st.ok()) st = build(config_, {}, built);
  if (st.ok()) st = start_admin();
  if (!st.ok()) {
    spdlog::error("cannot start: {}", st.message());
    return 1;
  }
  st = start_built(built);
  adopt(built);
  if (!st.ok()) {
    spdlog::error("cannot start: {}", st.message());
    return 1;
  }
  sources_running_ = sources_.size();
  if (state_ == State::starting) {
    state_ = State::running;
    up_.set(1);
  }
  spdlog::info("sluice {} started as '{}': {} sources, {} channels, {} sinks", sluice_version(),
               cfg().agent.name, sources_.size(), channels_.size(), sinks_.size());
  sd_notify(0, "READY=1");
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    const auto every = std::chrono::microseconds(watchdog_usec / 2);
    watchdog_timer_.start(
        every, [] { sd_notify(0, "WATCHDOG=1"); }, every);
  }
  log_summary_timer_.start(
      std::chrono::seconds(1), [] { RateLimiter::log_summaries(); }, std::chrono::seconds(1));
  heartbeat_at_ = std::chrono::steady_clock::now();
  heartbeat_timer_.start(
      kHeartbeatEvery, [this] { on_heartbeat(); }, kHeartbeatEvery);
  if (std::getenv("NOTIFY_SOCKET") != nullptr) {
    status_at_ = std::chrono::steady_clock::now();
    notify_status();
    status_timer_.start(
        kStatusEvery, [this] { notify_status(); }, kStatusEvery);
  }
  loop_.run();
  return exit_code_;
}

// A repeating timer that fires far later than asked means the loop thread was stuck (a blocking
// call, a stopped process): /healthz reports it for a minute.
void Agent::on_heartbeat() {
  const auto now = std::chrono::steady_clock::now();
  const auto late =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - heartbeat_at_ - kHeartbeatEvery);
  heartbeat_at_ = now;
  if (late >= kStall) {
    stalled_at_ = now;
    stalled_for_ = late;
    loop_stall_s_.set(std::chrono::duration_cast<std::chrono::seconds>(late).count());
    spdlog::warn("the event loop was stuck for {}ms; /healthz fails for the next {}s", late.count(),
                 kStallReported.count());
  } else if (stalled_for_.count() > 0 && now - stalled_at_ >= kStallReported) {
    stalled_for_ = std::chrono::milliseconds(0);
    loop_stall_s_.set(0);
  }
}

void Agent::begin_shutdown(std::string_view why) {
  if (state_ == State::stopping || state_ == State::stopped) return;
  state_ = State::stopping;
  up_.set(0);
  sd_notify(0, "STOPPING=1");
  spdlog::info("shutting down ({}): stopping sources, then draining channels within {}", why,
               format_duration(cfg().agent.shutdown_timeout));
  shutdown_timer_.start(cfg().agent.shutdown_timeout, [this] {
    // Durable channels keep their events: only memory channels lose what they still hold.
    std::uint64_t left = 0, in_flight = 0;
    for (auto* list : {&channels_, &retiring_.channels}) {
      for (auto& c : *list) {
        if (!c.channel->durable()) left += c.channel->events();
      }
    }
    std::string waiting;
    for (const auto& m : moves_) left += m.events - m.moved;
    for (auto* list : {&groups_, &retiring_.groups}) {
      for (auto& g : *list) {
        in_flight += g.group->in_flight();
        if (!g.drained) waiting += (waiting.empty() ? "" : ", ") + g.name;
      }
    }
    exit_now(1, fmt::format("shutdown_timeout ({}) passed with {} events still in memory "
                            "channels and {} deliveries in flight (sink groups not drained: {})",
                            format_duration(cfg().agent.shutdown_timeout), left, in_flight,
                            waiting.empty() ? "none" : waiting));
  });
  if (reload_) {
    // The reload's retired components finish first (they hold events); then the rest stops.
    spdlog::info("shutdown waits for the reload in progress ({}) to let go of its components",
                 reload_phase_);
    shutdown_after_reload_ = true;
    return;
  }
  shutdown_steps();
}

void Agent::shutdown_steps() {
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
  heartbeat_timer_.stop();
  reload_timer_.stop();
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
  for (auto& s : retiring_.sources) s.source->persist_checkpoint();
  spdlog::default_logger()->flush();
  std::_Exit(code);
}

void Agent::handle_admin(http::Request& req, http::Responder responder) {
  http::Response r;
  const std::string_view path = req.path();
  const bool known = path == "/metrics" || path == "/healthz" || path == "/readyz" ||
                     path == "/api/v1/status" || path == "/api/v1/reload";
  if (!known) {
    r.status = 404;
    r.body = "not found; try /metrics, /healthz, /readyz, /api/v1/status or POST /api/v1/reload\n";
  } else if (path == "/api/v1/reload") {
    if (req.method != HTTP_POST) {
      r.status = 405;
      r.headers.emplace_back("Allow", "POST");
      r.body = "method not allowed: POST /api/v1/reload reloads the configuration file\n";
    } else {
      // Answered when the reload is done (or refused), see finish_reload().
      return request_reload("POST /api/v1/reload", std::move(responder));
    }
  } else if (req.method != HTTP_GET && req.method != HTTP_HEAD) {
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, HEAD");
    r.body = "method not allowed\n";
  } else if (path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.render();
  } else if (path == "/healthz") {
    // Liveness: fails only for what a restart cures (a stuck loop, records quarantined by this
    // process); the rest is "degraded" with 200: the agent keeps running and names what to check.
    const std::string dead = unhealthy();
    const std::string problems = health_problems();
    if (!dead.empty()) {
      r.status = 503;
      r.body = "unhealthy\n" + dead + problems;
    } else {
      r.body = problems.empty() ? "ok\n" : "degraded\n" + problems;
    }
  } else if (path == "/readyz") {
    const std::string why = not_ready();
    r.status = why.empty() ? 200 : 503;
    r.body = why.empty() ? "ready\n" : why;
  } else {
    r.content_type = "application/json";
    r.body = status_json();
  }
  responder.respond(std::move(r));
}

std::string Agent::unhealthy() const {
  std::string out;
  if (stalled_for_.count() > 0) {
    const auto ago = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::steady_clock::now() - stalled_at_);
    out +=
        fmt::format("event loop was stuck for {}ms ({}s ago)\n", stalled_for_.count(), ago.count());
  }
  for (const auto& c : channels_) {
    const auto* lmdb = dynamic_cast<const channels::LmdbChannel*>(c.channel.get());
    if (lmdb == nullptr) continue;
    auto base = quarantined_at_start_.find(c.name);
    const std::uint64_t before = base != quarantined_at_start_.end() ? base->second : 0;
    if (lmdb->quarantined() > before) {
      out += fmt::format("channel {}: {} damaged records quarantined since start\n", c.name,
                         lmdb->quarantined() - before);
    }
    if (!lmdb->env()->quarantine_note().empty())
      out += fmt::format("channel {}: its environment was quarantined at start\n", c.name);
  }
  return out;
}

std::string Agent::not_ready() const {
  if (state_ == State::starting) return "starting\n";
  if (state_ != State::running) return "stopping: draining for shutdown\n";
  std::string out;
  if (reload_ && !reload_->plan.retire_sources.empty()) {
    std::string names;
    for (const auto& n : reload_->plan.retire_sources) names += (names.empty() ? "" : ", ") + n;
    out += fmt::format("reloading ({}): sources {} are being replaced\n", reload_phase_, names);
  }
  for (const auto& s : sources_) {
    if (!s.failed.empty()) {
      out += fmt::format("source {} is not running: {}\n", s.name, s.failed);
    } else if (s.stopped && !s.source->finished()) {
      // A source at the end of its input (exec without restart, stdin) did its work.
      out += fmt::format("source {} is not running: stopped\n", s.name);
    }
  }
  for (const auto& g : groups_) {
    if (!g.group->has_live_sink())
      out += fmt::format("sink group {}: no live sink (every member failed and is backing off)\n",
                         g.name);
  }
  return out.empty() ? "" : "not ready\n" + out;
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
  codec::append_json_string(out, cfg().agent.name);
  out += fmt::format("\",\"version\":\"{}\",\"uptime_s\":{},\"state\":\"{}\"", sluice_version(),
                     std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - started_at_)
                         .count(),
                     state_name());
  // The configuration: its generation (1 at start, +1 per applied reload) and the reload state.
  out += fmt::format(",\"config\":{{\"generation\":{},\"file\":\"", generation_);
  codec::append_json_string(out, cfg().file);
  out += "\",\"reload\":\"";
  codec::append_json_string(out, reload_ ? reload_phase_ : "idle");
  out += fmt::format("\",\"queued\":{},\"last_reload\":\"", queued_ != nullptr);
  codec::append_json_string(out, last_reload_);
  out += fmt::format("\",\"events_moved\":{}}}}},\"components\":[", events_moved_.value());
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
    for (const auto& spec : cfg().groups) {
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

// ---- Reload ----
//
// A reload checks the file exactly as `sluice check` does and refuses it whole on any error. A
// valid file is applied in steps, each waiting for the one before: the retired sources stop
// (their pending puts complete), the retired pipelines stop, the retired sink groups drain (a
// group whose memory channel is replaced delivers everything it holds; a group whose channel
// stays, or whose channel is durable, only finishes its deliveries in flight and leaves the rest
// to its successor), the retired pipelines store their last checkpoint, every put of a retired
// source becomes safe, the retired sources persist their positions, the lmdb writer finishes what
// was submitted, and only then are the retired components destroyed and the new ones built and
// started. Nothing is dropped on the way: the worst a reload does is pause the sources it
// replaces while their old sinks deliver.

void Agent::request_reload(std::string why, std::optional<http::Responder> responder) {
  auto answer = [&](int status, std::string content_type, std::string body) {
    if (!responder) return;
    http::Response r;
    r.status = status;
    r.content_type = std::move(content_type);
    r.body = std::move(body);
    responder->respond(std::move(r));
  };
  if (state_ != State::running) {
    spdlog::warn("reload ({}) ignored: the agent is {}", why,
                 state_ == State::starting ? "starting" : "shutting down");
    return answer(503, "text/plain; charset=utf-8", "shutting down: nothing reloaded\n");
  }
  ConfigErrors errors;
  auto next = load_config(cfg().file, registry_, errors);
  reload_requests_.inc();
  for (const auto& w : errors.warnings()) spdlog::warn("reload ({}): {}", why, w.str());
  std::vector<std::string> problems;
  if (!next) {
    for (const auto& e : errors) problems.push_back(e.str());
  } else {
    problems = reload::unchangeable(cfg(), *next);
  }
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += p + "\n";
    reloads_failed_.inc();
    last_reload_success_.set(0);
    last_reload_time_.set(static_cast<std::int64_t>(std::time(nullptr)));
    last_reload_ = fmt::format("failed: {} configuration error{}", problems.size(),
                               problems.size() == 1 ? "" : "s");
    spdlog::error(
        "reload ({}) refused: {} configuration error{} in {}; still running generation {}:\n{}",
        why, problems.size(), problems.size() == 1 ? "" : "s", cfg().file, generation_,
        text.substr(0, text.size() - 1));
    return answer(422, "text/plain; charset=utf-8",
                  text + fmt::format("sluice: {} configuration error{}, nothing changed\n",
                                     problems.size(), problems.size() == 1 ? "" : "s"));
  }
  auto r = std::make_unique<Reload>();
  r->config = std::make_shared<const AgentConfig>(std::move(*next));
  r->prints = reload::fingerprints(*r->config);
  r->why = std::move(why);
  if (responder) r->waiting.push_back(std::move(*responder));
  if (reload_) {
    // The last file wins: a queued reload is replaced, and its callers get the newer's result.
    if (queued_) {
      for (auto& w : queued_->waiting) r->waiting.push_back(std::move(w));
      spdlog::info("reload ({}) replaces the queued one ({}): the last file wins", r->why,
                   queued_->why);
    } else {
      spdlog::info("reload ({}) queued behind the one in progress ({})", r->why, reload_phase_);
    }
    queued_ = std::move(r);
    return;
  }
  reload_ = std::move(r);
  begin_reload();
}

void Agent::begin_reload() {
  if (state_ != State::running) {
    return finish_reload(false, "the agent is shutting down: nothing reloaded", 503);
  }
  auto single = [this](std::string_view type) {
    const auto* f = registry_.channel(type);
    return f != nullptr && f->traits.max_cursors == 1;
  };
  reload_->plan = reload::plan(cfg(), prints_, *reload_->config, reload_->prints, single);
  const reload::Plan& plan = reload_->plan;
  const std::string notify = fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading: {}",
                                         std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now().time_since_epoch())
                                             .count(),
                                         plan.summary());
  sd_notify(0, notify.c_str());
  spdlog::info("reloading ({}) {}: {}", reload_->why, cfg().file, plan.summary());
  auto take = [](auto& live, const reload::NameSet& names, auto& into, auto name_of) {
    for (auto it = live.begin(); it != live.end();) {
      if (names.count(name_of(*it)) > 0) {
        into.push_back(std::move(*it));
        it = live.erase(it);
      } else {
        ++it;
      }
    }
  };
  take(sources_, plan.retire_sources, retiring_.sources, [](auto& e) { return e.name; });
  take(pipelines_, plan.retire_pipelines, retiring_.pipelines, [](auto& p) { return p->name(); });
  take(groups_, plan.retire_groups, retiring_.groups, [](auto& e) { return e.name; });
  take(sinks_, plan.retire_sinks, retiring_.sinks, [](auto& e) { return e.name; });
  take(channels_, plan.retire_channels, retiring_.channels, [](auto& e) { return e.name; });
  reload_phase_ = "stopping sources";
  // One extra count, dropped after the loop: a stop that answers inside stop() cannot run the
  // next step while this loop still walks the list.
  retire_waiting_ = retiring_.sources.size() + 1;
  for (auto& s : retiring_.sources) {
    s.source->stop([this] {
      if (--retire_waiting_ == 0) retire_sources_stopped();
    });
  }
  if (--retire_waiting_ == 0) retire_sources_stopped();
}

void Agent::retire_sources_stopped() {
  reload_phase_ = "stopping pipelines";
  retire_waiting_ = retiring_.pipelines.size() + 1;
  for (auto& p : retiring_.pipelines) {
    p->stop([this] {
      if (--retire_waiting_ == 0) retire_pipelines_stopped();
    });
  }
  if (--retire_waiting_ == 0) retire_pipelines_stopped();
}

// The replaced sink groups still take while the replaced pipelines and sources wait for their
// outputs to be safe: a memory channel that stays reports safety only when a group commits, and
// the group that follows a replaced one is built only after these waits.
void Agent::retire_pipelines_stopped() {
  // A replaced memory channel that has a successor gives up what it holds first: its old group
  // only finishes its deliveries in flight (a failed one rolls back), then every event left is
  // taken and committed here and moved into the successor once that is built. So neither the
  // replaced sources nor the replaced pipelines writing to it wait for its old sinks.
  reload_phase_ = "stopping the sink groups of replaced memory channels";
  retire_waiting_ = 1;
  for (auto& g : retiring_.groups) {
    if (!moving(g.channel)) continue;
    ++retire_waiting_;
    g.group->drain(
        [this, &g] {
          g.drained = true;
          if (--retire_waiting_ == 0) retire_take_moved();
        },
        true);
  }
  if (--retire_waiting_ == 0) retire_take_moved();
}

bool Agent::moving(std::string_view channel) const {
  if (!reload_ || reload_->plan.build_channels.count(channel) == 0) return false;
  for (const auto& c : retiring_.channels) {
    if (c.name == channel) return !c.channel->durable();
  }
  return false;
}

void Agent::retire_take_moved() {
  for (auto& c : retiring_.channels) {
    if (!moving(c.name)) continue;
    std::optional<CursorId> cursor = c.spare;
    if (!cursor && !c.cursors.empty()) cursor = c.cursors.front().second;
    if (!cursor) {
      auto opened = c.channel->open_cursor("reload");
      if (opened) cursor = *opened;
    }
    if (!cursor) continue;
    Move m{c.name, {}, 0, 0};
    for (;;) {
      Batch b;
      auto lease = c.channel->take(*cursor, b,
                                   {c.channel->max_transaction_events(), std::uint64_t{1} << 62});
      if (!lease) {
        spdlog::error(
            "reload: cannot take the events of replaced channel {} ({}); {} events stay "
            "in it and are lost with it",
            c.name, lease.error().str(), c.channel->events());
        break;
      }
      if (b.empty()) break;
      m.events += b.size();
      // Committed here: the puts of the replaced sources are safe now (their positions cover
      // these events), and the events are the successor's to deliver.
      c.channel->commit(std::move(*lease), mover_);
      m.batches.push_back(std::move(b));
    }
    if (m.events == 0) continue;
    spdlog::info("reload: {} events of replaced channel {} move into its successor", m.events,
                 c.name);
    moves_.push_back(std::move(m));
  }
  retire_final_checkpoints();
}

void Agent::retire_final_checkpoints() {
  reload_phase_ = "checkpointing replaced pipelines";
  retire_waiting_ = retiring_.pipelines.size() + 1;
  for (auto& p : retiring_.pipelines) {
    p->final_checkpoint([this] {
      if (--retire_waiting_ == 0) retire_wait_safe();
    });
  }
  if (--retire_waiting_ == 0) retire_wait_safe();
}

// Every put of a retired source must be safe before its output goes.
void Agent::retire_wait_safe() {
  const auto now = std::chrono::steady_clock::now();
  if (reload_phase_ != "waiting for replaced sources' events to be delivered") {
    reload_phase_ = "waiting for replaced sources' events to be delivered";
    reload_waiting_since_ = now;
  }
  for (const auto& s : retiring_.sources) {
    if (!s.output->settled()) {
      if (now - reload_waiting_since_ >= std::chrono::seconds(10)) {
        reload_waiting_since_ = now;
        spdlog::warn(
            "reload ({}): source {} still has {} puts not yet safe (their sinks must deliver "
            "them first)",
            reload_->why, s.name, s.output->unsafe_puts());
      }
      reload_timer_.start(std::chrono::milliseconds(20), [this] { retire_wait_safe(); });
      return;
    }
  }
  for (auto& s : retiring_.sources) s.source->persist_checkpoint();
  retire_drain_groups();
}

void Agent::retire_drain_groups() {
  reload_phase_ = "draining replaced sink groups";
  retire_waiting_ = retiring_.groups.size() + 1;
  for (auto& g : retiring_.groups) {
    if (g.drained) {  // a group of a moved channel, stopped already
      --retire_waiting_;
      continue;
    }
    // A replaced memory channel without a successor is emptied by its old group; any other channel
    // keeps what it holds for the group that follows (a durable one does in any case).
    bool channel_goes = false;
    for (const auto& c : retiring_.channels) channel_goes = channel_goes || c.name == g.channel;
    g.group->drain(
        [this, &g] {
          g.drained = true;
          if (--retire_waiting_ == 0) retire_barrier();
        },
        !channel_goes);
  }
  if (--retire_waiting_ == 0) retire_barrier();
}

// The lmdb writer runs operations in submission order: once an empty one submitted now is done,
// every put, commit and cursor store of a retired component has called back.
void Agent::retire_barrier() {
  reload_phase_ = "waiting for the lmdb writer";
  auto env = shared_.find<channels::LmdbEnv>(channels::LmdbChannel::env_key(cfg().agent.data_dir));
  if (!env) {
    reload_timer_.start(std::chrono::milliseconds(0), [this] { retire_destroy(); });
    return;
  }
  channels::LmdbEnv::Op op;
  op.apply = [](MDB_txn*) { return 0; };
  op.done = [this](Status) { retire_destroy(); };
  op.sync = false;
  env->submit(std::move(op));
}

void Agent::retire_destroy() {
  auto single = [this](std::string_view type) {
    const auto* f = registry_.channel(type);
    return f != nullptr && f->traits.max_cursors == 1;
  };
  auto retired_channel = [this](const std::string& name) {
    for (const auto& c : retiring_.channels) {
      if (c.name == name) return true;
    }
    return false;
  };
  // The configuration built next: the previous one when the new one could not be built.
  const AgentConfig& next = restoring_ ? *config_ : *reload_->config;
  auto reads_again = [&](const std::string& group, const std::string& channel) {
    for (const auto& g : next.groups) {
      if (g.name == group) return g.channel == channel;
    }
    return false;
  };
  // A group whose channel stays leaves its cursor to the next group of its name, and its place
  // as the channel's data listener to no one. A reader that does not come back has its cursor
  // closed, so that it holds no record back.
  for (auto& g : retiring_.groups) {
    ChannelEntry* ce = channel_entry(g.channel);
    if (ce == nullptr) continue;
    ce->channel->wait_for_data(g.cursor, no_data_);
    if (single(ce->type)) {
      std::erase_if(ce->cursors, [&](const auto& c) { return c.first == g.name; });
      ce->spare = g.cursor;
    } else if (!reads_again(g.name, g.channel)) {
      ce->channel->close_cursor(g.cursor);
      std::erase_if(ce->cursors, [&](const auto& c) { return c.first == g.name; });
    }
  }
  // An output whose channels all go is destroyed with them; one that a surviving channel may
  // still call back (on_space) is parked, silent, until its channels are gone too.
  for (auto& s : retiring_.sources) {
    std::vector<std::string> names;
    for (const auto& spec : s.origin->sources) {
      if (spec.name != s.name) continue;
      names = spec.channels;
      if (!spec.dead_letter_channel.empty()) names.push_back(spec.dead_letter_channel);
    }
    bool all_go = true;
    for (const auto& n : names) all_go = all_go && retired_channel(n);
    if (!all_go) {
      s.output->set_listener(nullptr);
      parked_outputs_.push_back({std::move(s.output), std::move(names)});
    }
  }
  std::erase_if(parked_outputs_, [&](const ParkedOutput& p) {
    return std::all_of(p.channels.begin(), p.channels.end(), retired_channel);
  });
  // Retired pipelines go now, even when their output channel stays: they stopped once every row
  // was in its channel, and their last checkpoint waited for every row to be safe there, so no
  // channel holds a put, a safety report or a space wait of theirs any more.
  std::vector<std::pair<std::string, std::string>> retired;
  for (const auto& e : retiring_.sources) retired.emplace_back(e.name, e.type);
  for (const auto& p : retiring_.pipelines) retired.emplace_back(p->name(), "sql");
  for (const auto& e : retiring_.groups) {
    for (const auto& spec : e.origin->groups) {
      if (spec.name == e.name)
        retired.emplace_back(e.name, spec.implicit ? "group" : spec.processor);
    }
  }
  for (const auto& e : retiring_.sinks) retired.emplace_back(e.name, e.type);
  for (const auto& e : retiring_.channels) retired.emplace_back(e.name, e.type);
  retiring_.sources.clear();
  retiring_.pipelines.clear();
  retiring_.groups.clear();
  retiring_.sinks.clear();
  retiring_.channels.clear();
  forget_retired_metrics(retired);

  if (state_ != State::running) {
    // Shutting down: a channel that stays may hold events its retired group left to the one that
    // follows. Build and start the channels, sinks and groups of the configuration that would
    // have run (the previous one when restoring), but no source or pipeline, so that the
    // shutdown drains them.
    const reload::NameSet none;
    const reload::Plan& plan = reload_->plan;
    const bool restore = std::exchange(restoring_, std::nullopt).has_value();
    Built readers;
    Status st =
        restore
            ? build(config_,
                    {&none, &plan.retire_channels, &plan.retire_sinks, &plan.retire_groups, &none},
                    readers)
            : build(reload_->config,
                    {&none, &plan.build_channels, &plan.build_sinks, &plan.build_groups, &none},
                    readers);
    if (st.ok()) st = start_built(readers);
    adopt(readers);
    if (!st.ok()) {
      return exit_now(1, fmt::format("shutdown during a reload: the sink groups of the channels "
                                     "that stay could not be built ({}); their events were not "
                                     "drained",
                                     st.message()));
    }
    return run_moves([this] {
      finish_reload(false,
                    "the agent is shutting down: only the sinks and sink groups were built, "
                    "to drain the channels",
                    503);
    });
  }
  // Starts the sink groups of `built` at once and its pipelines and sources once the moved
  // events are in their channels (they put behind them), then `done` with their start status.
  auto start_after_moves = [this](Built& built, std::function<void(Status)> done) {
    deferred_.pipelines = std::move(built.pipelines);
    deferred_.sources = std::move(built.sources);
    built.pipelines.clear();
    built.sources.clear();
    (void)start_built(built);  // sink groups only: no source is left in it to fail
    adopt(built);
    run_moves([this, done = std::move(done)] {
      Status st = start_built(deferred_);
      adopt(deferred_);
      done(st);
    });
  };
  if (restoring_) {
    // The new components failed to build and were discarded: build the old ones again.
    const std::string why = *std::exchange(restoring_, std::nullopt);
    const reload::Plan& plan = reload_->plan;
    Built old;
    Status st = build(config_,
                      {&plan.retire_sources, &plan.retire_channels, &plan.retire_sinks,
                       &plan.retire_groups, &plan.retire_pipelines},
                      old);
    if (!st.ok()) {
      exit_now(1, fmt::format("reload failed ({}) and the previous configuration could not be "
                              "built again: {}",
                              why, st.message()));
    }
    return start_after_moves(old, [this, why](Status started) {
      if (!started.ok()) {
        exit_now(1, fmt::format("reload failed ({}) and the previous configuration could not be "
                                "started again: {}",
                                why, started.message()));
      }
      finish_reload(false, fmt::format("{}; the previous configuration runs again", why), 500);
    });
  }
  reload_phase_ = "building new components";
  const reload::Plan& plan = reload_->plan;
  // The cursors open on each lmdb channel that stays: those a failed build opens are closed.
  std::vector<std::pair<channels::LmdbChannel*, std::size_t>> cursors_before;
  for (auto& c : channels_) {
    if (auto* lmdb = dynamic_cast<channels::LmdbChannel*>(c.channel.get()))
      cursors_before.emplace_back(lmdb, lmdb->cursor_count());
  }
  Built built;
  Status st = build(reload_->config,
                    {&plan.build_sources, &plan.build_channels, &plan.build_sinks,
                     &plan.build_groups, &plan.build_pipelines},
                    built);
  if (!st.ok()) {
    spdlog::error("reload: cannot build the new configuration: {}; building the previous one again",
                  st.message());
    restoring_ = fmt::format("cannot build the new configuration: {}", st.message());
    // A cursor opened by a sink group or pipeline of the discarded build (a new reader of a
    // channel that stays) would hold every record it never reads.
    for (auto& [lmdb, n] : cursors_before) {
      for (std::size_t id = n; id < lmdb->cursor_count(); ++id)
        lmdb->close_cursor(static_cast<CursorId>(id));
    }
    for (auto& c : channels_) {
      for (auto& [lmdb, n] : cursors_before) {
        if (c.channel.get() != lmdb) continue;
        std::erase_if(c.cursors, [n = n](const auto& cur) { return cur.second >= n; });
      }
    }
    // Discard what was built (nothing of it started) once the lmdb writer is done with it.
    for (auto& e : built.channels) retiring_.channels.push_back(std::move(e));
    for (auto& e : built.sinks) retiring_.sinks.push_back(std::move(e));
    for (auto& e : built.groups) retiring_.groups.push_back(std::move(e));
    for (auto& e : built.pipelines) retiring_.pipelines.push_back(std::move(e));
    for (auto& e : built.sources) retiring_.sources.push_back(std::move(e));
    return retire_barrier();
  }
  // From here on the new configuration is the running one.
  config_ = reload_->config;
  prints_ = reload_->prints;
  ++generation_;
  start_after_moves(built, [this](Status started) {
    if (!started.ok()) {
      return finish_reload(
          false,
          fmt::format("{}; every other component runs the new configuration", started.message()),
          500);
    }
    finish_reload(true, reload_->plan.summary(), 200);
  });
}

// Hides the series of retired components from /metrics; those built again register theirs
// again and get them back, continued. A name and type still used by a running component of
// another kind (a source and a sink both named "web", of type http) keeps its series.
void Agent::forget_retired_metrics(
    const std::vector<std::pair<std::string, std::string>>& retired_name_types) {
  auto live = [this](const std::string& name, const std::string& type) {
    for (const auto& e : sources_) {
      if (e.name == name && e.type == type) return true;
    }
    for (const auto& e : channels_) {
      if (e.name == name && e.type == type) return true;
    }
    for (const auto& e : sinks_) {
      if (e.name == name && e.type == type) return true;
    }
    for (const auto& p : pipelines_) {
      if (p->name() == name && type == "sql") return true;
    }
    for (const auto& e : groups_) {
      for (const auto& spec : e.origin->groups) {
        if (spec.name == e.name && e.name == name &&
            (spec.implicit ? "group" : spec.processor) == type)
          return true;
      }
    }
    return false;
  };
  for (const auto& [name, type] : retired_name_types) {
    if (!live(name, type)) metrics_.remove({{"component", name}, {"type", type}});
  }
}

// Puts the events of the replaced memory channels into their successors (running by now, with
// their sink groups), in order, one batch at a time, waiting for space when a successor is full
// (its new bounds apply): nothing is dropped. Then `then`.
void Agent::run_moves(std::function<void()> then) {
  moves_done_ = std::move(then);
  move_next();
}

void Agent::move_next() {
  if (move_busy_) return;  // a put is out, or waits for space or a retry
  while (!moves_.empty()) {
    Move& m = moves_.front();
    ChannelEntry* ce = channel_entry(m.channel);
    // The piece refused last is still to be put (it was taken off the front already).
    if ((m.batches.empty() && move_piece_.empty()) || ce == nullptr) {
      if (ce == nullptr) {
        spdlog::error("reload: channel {} was not built again: {} moved events are lost", m.channel,
                      m.events - m.moved);
        move_piece_.clear();
      } else {
        spdlog::info("reload: {} events moved into channel {}", m.moved, m.channel);
      }
      moves_.erase(moves_.begin());
      continue;
    }
    reload_phase_ = fmt::format(
        "moving the events of replaced channel {} into its successor "
        "({} of {} moved)",
        m.channel, m.moved, m.events);
    if (move_piece_.empty()) {
      Batch& front = m.batches.front();
      const std::size_t max = std::max<std::size_t>(1, ce->channel->max_transaction_events());
      if (front.size() <= max) {
        move_piece_.swap(front);
        m.batches.pop_front();
      } else {
        // The successor takes smaller transactions: the rest stays at the front.
        Batch rest;
        move_piece_.append_range(front, 0, max);
        rest.append_range(front, max, front.size());
        front.swap(rest);
      }
    }
    move_piece_events_ = move_piece_.size();
    move_busy_ = true;
    move_inline_ = true;
    ce->channel->put(move_piece_, SourceCheckpoint{}, mover_);
    move_inline_ = false;
    if (move_busy_) return;  // answered later, or waiting
  }
  if (auto done = std::exchange(moves_done_, nullptr)) done();
}

void Agent::on_move_put(Status st) {
  if (st.ok()) {
    events_moved_.inc(move_piece_events_);
    if (!moves_.empty()) moves_.front().moved += move_piece_events_;
    move_piece_.clear();
    move_busy_ = false;
    if (!move_inline_) move_next();
    return;
  }
  // The batch is still ours (channel.h): put it again once there is room, or after a pause.
  ChannelEntry* ce = moves_.empty() ? nullptr : channel_entry(moves_.front().channel);
  if (st.code() == Errc::backpressure && ce != nullptr) {
    ce->channel->wait_for_space(mover_);
    return;
  }
  SLUICE_WARN_RATE_LIMITED("reload: moving events into channel {} failed, retrying: {}",
                           moves_.empty() ? std::string() : moves_.front().channel, st.str());
  move_timer_.start(std::chrono::milliseconds(200), [this] {
    move_busy_ = false;
    move_next();
  });
}

void Agent::on_move_space() {
  move_busy_ = false;
  move_next();
}

std::string Agent::reload_json(bool ok, const std::string& message) const {
  std::string out = fmt::format("{{\"result\":\"{}\",\"generation\":{},\"message\":\"",
                                ok ? "ok" : "failed", generation_);
  codec::append_json_string(out, message);
  out += "\"}\n";
  return out;
}

void Agent::finish_reload(bool ok, std::string message, int http_status) {
  (ok ? reloads_ok_ : reloads_failed_).inc();
  last_reload_success_.set(ok ? 1 : 0);
  last_reload_time_.set(static_cast<std::int64_t>(std::time(nullptr)));
  generation_gauge_.set(static_cast<std::int64_t>(generation_));
  last_reload_ = ok ? "ok" : "failed: " + message;
  if (ok) {
    spdlog::info("reload ({}) done: generation {} runs ({})", reload_->why, generation_, message);
  } else {
    spdlog::error("reload ({}) failed: {} (generation {} runs)", reload_->why, message,
                  generation_);
  }
  if (state_ == State::running) sd_notify(0, "READY=1");
  const std::string body = reload_json(ok, message);
  for (auto& w : reload_->waiting) {
    http::Response r;
    r.status = http_status;
    r.content_type = "application/json";
    r.body = body;
    w.respond(std::move(r));
  }
  reload_.reset();
  reload_phase_.clear();
  if (state_ != State::running) {
    if (queued_) {
      for (auto& w : queued_->waiting) {
        http::Response r;
        r.status = 503;
        r.body = "shutting down: nothing reloaded\n";
        w.respond(std::move(r));
      }
      queued_.reset();
    }
    if (shutdown_after_reload_) {
      shutdown_after_reload_ = false;
      shutdown_steps();
    }
    return;
  }
  if (queued_) {
    reload_ = std::move(queued_);
    // On the next turn: this one may be running inside a callback of a component it replaced.
    reload_timer_.start(std::chrono::milliseconds(0), [this] { begin_reload(); });
  }
}

}  // namespace sluice
