#pragma once

#include <uv.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/pipeline.h"
#include "agent/registry.h"
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
/// endpoint, and carries out the shutdown order of DESIGN.md on SIGTERM/SIGINT.
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
  struct SourceEntry {
    std::string name, type;
    std::unique_ptr<SourceContext> ctx;
    std::unique_ptr<SourceOutput> output;
    std::unique_ptr<Source> source;
    bool stopped = false;
  };
  struct ChannelEntry {
    std::string name, type;
    std::unique_ptr<ComponentContext> ctx;
    std::unique_ptr<Channel> channel;
  };
  struct SinkEntry {
    std::string name, type;
    std::unique_ptr<ComponentContext> ctx;
    std::unique_ptr<Sink> sink;
  };
  struct GroupEntry {
    std::string name;
    std::string channel;
    std::unique_ptr<sinks::SinkGroup> group;
    bool drained = false;
  };

  Status prepare_data_dir();
  Status create_pipelines();
  void stop_pipelines();
  void on_pipeline_stopped();
  Status create_components();
  Status start_admin();
  void install_signals();
  void on_signal(int signum);
  void begin_shutdown(std::string_view why);
  void on_source_stopped();
  void on_group_drained();
  void finish();
  [[noreturn]] void exit_now(int code, std::string_view why);
  void handle_admin(http::Request& req, http::Responder responder);
  std::string status_json() const;
  /// What /healthz names (one line per problem), "" when healthy.
  std::string health_problems() const;
  void notify_status();
  Channel* channel(std::string_view name);

  AgentConfig config_;
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
};

/// The version compiled in.
std::string_view sluice_version();

}  // namespace sluice
