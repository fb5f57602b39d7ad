#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/pipeline.h"
#include "agent/registry.h"
#include "agent/reload.h"
#include "lib/core/channel.h"
#include "lib/core/clock.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/shared_resources.h"
#include "lib/core/sink.h"
#include "lib/core/source.h"
#include "lib/core/source_output.h"
#include "lib/http/http_server.h"
#include "sinks/group/sink_group.h"

namespace sluice {

/// One running agent: builds every component from a checked configuration, serves the admin
/// endpoint, carries out the shutdown order of DESIGN.md on SIGTERM/SIGINT, and reloads its
/// configuration file on SIGHUP and POST /api/v1/reload, replacing only what changed.
class Agent {
 public:
  Agent(AgentConfig config, const Registry& registry);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  /// Runs until shutdown; returns the process exit code (0 after a clean drain).
  int run();

 private:
  enum class State { starting, running, stopping, stopped };
  using ConfigPtr = std::shared_ptr<const AgentConfig>;
  // Each entry keeps the configuration it was built from alive, whatever a reload installs.
  struct SourceEntry {
    std::string name, type;
    ConfigPtr origin;
    std::unique_ptr<SourceContext> ctx;
    std::unique_ptr<SourceOutput> output;
    std::unique_ptr<Source> source;
    bool stopped = false;
    std::string failed;  // why start() failed (after a reload), else empty
  };
  struct ChannelEntry {
    std::string name, type;
    ConfigPtr origin;
    std::unique_ptr<ComponentContext> ctx;
    std::unique_ptr<Channel> channel;
    // The cursors open on this channel object, by reader, so that a sink group built again by a
    // reload reads on from where its predecessor stopped; `spare`: the one cursor of a
    // single-cursor channel whose group was retired.
    std::vector<std::pair<std::string, CursorId>> cursors;
    std::optional<CursorId> spare;
  };
  struct SinkEntry {
    std::string name, type;
    ConfigPtr origin;
    std::unique_ptr<ComponentContext> ctx;
    std::unique_ptr<Sink> sink;
  };
  struct GroupEntry {
    std::string name;
    std::string channel;
    ConfigPtr origin;
    CursorId cursor = 0;
    std::unique_ptr<sinks::SinkGroup> group;
    bool drained = false;
  };
  /// Components built and not yet started (a start, or a reload's new components).
  struct Built {
    std::vector<ChannelEntry> channels;
    std::vector<SinkEntry> sinks;
    std::vector<GroupEntry> groups;
    std::vector<std::unique_ptr<Pipeline>> pipelines;
    std::vector<SourceEntry> sources;
  };
  /// Which components of a configuration to build; null sets mean all.
  struct Only {
    const reload::NameSet *sources = nullptr, *channels = nullptr, *sinks = nullptr,
                          *groups = nullptr, *pipelines = nullptr;
  };
  /// One reload: the checked file, what it changes, and the API calls waiting for its result.
  struct Reload {
    ConfigPtr config;
    reload::Prints prints;
    reload::Plan plan;
    std::string why;
    std::vector<http::Responder> waiting;
  };
  /// A retired source's output that a surviving channel may still call (on_space): kept until
  /// every channel it names is gone.
  struct ParkedOutput {
    std::unique_ptr<SourceOutput> output;
    std::vector<std::string> channels;
  };
  /// A DataListener that does nothing: takes a retired group's place on a channel that stays,
  /// until the next group waits there itself.
  struct NoData final : DataListener {
    void on_data() noexcept override {}
  };
  /// The events a replaced memory channel held (taken out of it and committed there, in order),
  /// on their way into its successor of the same name.
  struct Move {
    std::string channel;
    std::deque<Batch> batches;
    std::uint64_t events = 0, moved = 0;
  };
  /// Puts the moved events into the successor, one batch at a time, waiting for space.
  struct Mover final : PutListener, SpaceListener, CommitListener {
    Agent* agent = nullptr;
    void on_put_done(std::uint64_t, Status st) noexcept override {
      agent->on_move_put(std::move(st));
    }
    void on_space() noexcept override { agent->on_move_space(); }
    void on_committed(std::uint64_t, Status) noexcept override {}
  };

  Status prepare_data_dir();
  Status build(const ConfigPtr& config, Only only, Built& out);
  Status start_built(Built& built);
  void adopt(Built& built);
  ChannelEntry* channel_entry(std::string_view name, Built* extra = nullptr);
  void stop_pipelines();
  void on_pipeline_stopped();
  Status start_admin();
  void install_signals();
  void on_signal(int signum);
  // Reload (agent.cc, "Reload"): check the file, then retire, wait, build, start.
  void request_reload(std::string why, std::optional<http::Responder> responder);
  void begin_reload();
  void retire_sources_stopped();
  void retire_pipelines_stopped();
  bool moving(std::string_view channel) const;
  void retire_take_moved();
  void retire_final_checkpoints();
  void run_moves(std::function<void()> then);
  void move_next();
  void on_move_put(Status st);
  void on_move_space();
  void forget_retired_metrics(
      const std::vector<std::pair<std::string, std::string>>& retired_name_types);
  void retire_wait_safe();
  void retire_drain_groups();
  void retire_barrier();
  void retire_destroy();
  void finish_reload(bool applied, std::string message, int http_status);
  std::string reload_json(bool ok, const std::string& message) const;
  const AgentConfig& cfg() const { return *config_; }
  void begin_shutdown(std::string_view why);
  void shutdown_steps();
  void on_source_stopped();
  void on_group_drained();
  void finish();
  [[noreturn]] void exit_now(int code, std::string_view why);
  void handle_admin(http::Request& req, http::Responder responder);
  std::string status_json() const;
  /// What /healthz names (one line per problem), "" when healthy.
  std::string health_problems() const;
  /// What makes /healthz fail (a stuck loop, quarantined records), "" when live.
  std::string unhealthy() const;
  /// What /readyz names as not ready (one line each), "" when ready.
  std::string not_ready() const;
  void notify_status();
  void on_heartbeat();
  Channel* channel(std::string_view name);

  ConfigPtr config_;
  reload::Prints prints_;
  const Registry& registry_;
  Loop loop_;
  MetricsRegistry metrics_;
  SteadyClock clock_;
  State state_ = State::starting;
  std::chrono::steady_clock::time_point started_at_;
  // What the components share (the lmdb environment): handed to each through its context,
  // released after every component (~Agent).
  SharedResources shared_;
  std::vector<ChannelEntry> channels_;
  std::vector<SinkEntry> sinks_;
  std::vector<GroupEntry> groups_;
  std::vector<SourceEntry> sources_;
  std::vector<std::unique_ptr<Pipeline>> pipelines_;
  std::vector<ParkedOutput> parked_outputs_;
  std::size_t pipelines_stopping_ = 0;
  std::unique_ptr<http::Server> admin_;
  std::vector<uv_signal_t*> signals_;
  Timer shutdown_timer_;
  Timer watchdog_timer_;
  Timer log_summary_timer_;  // reports what rate-limited warnings held back
  Timer status_timer_;       // systemd STATUS= lines, when started by systemd (NOTIFY_SOCKET)
  static constexpr std::chrono::seconds kStatusEvery{5};
  std::chrono::steady_clock::time_point status_at_;
  double status_in_ = 0, status_out_ = 0;
  int exit_code_ = 0;
  std::size_t sources_running_ = 0;
  std::size_t groups_draining_ = 0;
  Gauge& up_;
  // Reload state: the one running, the one queued behind it (the last file wins), and what the
  // running one retires.
  std::unique_ptr<Reload> reload_;
  std::unique_ptr<Reload> queued_;
  Built retiring_;
  std::size_t retire_waiting_ = 0;
  std::string reload_phase_;  // for /api/v1/status and /readyz
  std::chrono::steady_clock::time_point reload_waiting_since_{};
  bool shutdown_after_reload_ = false;
  std::optional<std::string> restoring_;  // why the new components were discarded
  NoData no_data_;
  Timer reload_timer_;
  std::uint64_t generation_ = 1;
  std::string last_reload_;  // "ok", "failed: ..." or "" before the first
  Counter& reload_requests_;
  Counter& reloads_ok_;
  Counter& reloads_failed_;
  Gauge& generation_gauge_;
  Gauge& last_reload_success_;
  Gauge& last_reload_time_;
  // The loop's heartbeat: a timer late by more than kStall means the loop was stuck.
  static constexpr std::chrono::milliseconds kHeartbeatEvery{500};
  static constexpr std::chrono::seconds kStall{5};
  static constexpr std::chrono::seconds kStallReported{60};
  Timer heartbeat_timer_;
  std::chrono::steady_clock::time_point heartbeat_at_;
  std::chrono::steady_clock::time_point stalled_at_{};
  std::chrono::milliseconds stalled_for_{0};
  Gauge& loop_stall_s_;
  // Records each lmdb channel had quarantined when it was built: more since then is unhealthy.
  std::map<std::string, std::uint64_t, std::less<>> quarantined_at_start_;
  // A reload moving replaced memory channels' events into their successors: the sources and
  // pipelines it built wait in `deferred_` until every moved event is in (order is kept).
  std::vector<Move> moves_;
  Mover mover_;
  Batch move_piece_;
  std::size_t move_piece_events_ = 0;
  bool move_busy_ = false, move_inline_ = false;
  std::function<void()> moves_done_;
  Timer move_timer_;
  Built deferred_;
  Counter& events_moved_;
};

/// The version compiled in.
std::string_view sluice_version();

}  // namespace sluice
