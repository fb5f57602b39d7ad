#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "agent/config_keys.h"
#include "agent/import_flume.h"
#include "agent/registry.h"
#include "agent/sql_cli.h"
#include "agent/top.h"
#include "lib/core/log.h"

namespace {

// A bad configuration and a bad command line both exit 2, the usage-error convention.
constexpr int kExitConfig = 2;

// Loads and checks the configuration, printing every warning and error; nullopt if there were
// errors.
std::optional<sluice::AgentConfig> load(const std::string& path, const sluice::Registry& registry) {
  sluice::ConfigErrors errors;
  auto cfg = sluice::load_config(path, registry, errors);
  for (const auto& w : errors.warnings())
    std::fprintf(stderr, "sluice: warning: %s\n", w.str().c_str());
  if (cfg) return cfg;
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.str().c_str());
  std::fprintf(stderr, "sluice: %zu configuration error%s, nothing started\n", errors.size(),
               errors.size() == 1 ? "" : "s");
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so the
  // buffers of later large requests come from the heap and stay with the process once freed:
  // 20 Avro connections that had each sent one 20 MB call kept 116 MB, malloc_trim after each call
  // notwithstanding (26 MB with the threshold fixed at 1 MiB). With 2 to 8 MiB the idle agent's
  // RssAnon was 1,360 KB, over the idle test's 1,024 KB bound. The environment's
  // MALLOC_MMAP_THRESHOLD_ still wins.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Fixing the mmap threshold also fixes the trim threshold at its 128 KiB default: each freed
  // batch buffer at the heap's top (a memory channel's chunks are ~0.3 MB) went back to the
  // system and was faulted in again for the next one. With a SQL pipeline that was 263-394 brk
  // calls per 2M events, 2.7 % of the agent's CPU (perf: mostly waiting for the mmap lock while
  // the reader thread's page faults held it); with 1 MiB, 38.
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) mallopt(M_TRIM_THRESHOLD, 1 << 20);
#endif
  CLI::App app{"sluice: collect, buffer and ship logs and events without losing any"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();

  std::string config_path;
  auto* run = app.add_subcommand("run", "Run the agent with a configuration file");
  run->add_option("-c,--config", config_path, "The TOML configuration file")->required();
  auto* check = app.add_subcommand("check", "Check a configuration file and report every error");
  check->add_option("-c,--config", config_path, "The TOML configuration file")->required();
  bool list_keys = false;
  check->add_flag("--list-keys", list_keys, "Print the keys each table of the file accepts");
  app.add_subcommand("version", "Print the version");
  auto* channel =
      app.add_subcommand("channel", "Inspect lmdb channels (safe while the agent runs)");
  channel->require_subcommand(1);
  std::string channel_name;
  bool dump_json = false;
  auto* stats = channel->add_subcommand(
      "stats", "Events, bytes, oldest event age and cursors per lmdb channel");
  stats->add_option("-c,--config", config_path, "The TOML configuration file")->required();
  auto* dump = channel->add_subcommand("dump", "Print every stored event of one lmdb channel");
  dump->add_option("-c,--config", config_path, "The TOML configuration file")->required();
  dump->add_option("--channel", channel_name, "The channel's name")->required();
  dump->add_flag("--json", dump_json, "JSON lines instead of bodies");
  std::string flume_file, flume_agent, flume_out;
  auto* import_flume = app.add_subcommand(
      "import-flume", "Translate a Flume agent properties file into sluice TOML");
  import_flume->add_option("FILE", flume_file, "The Flume properties file")->required();
  import_flume->add_option("--agent", flume_agent,
                           "The agent to translate (default: the only one)");
  import_flume->add_option("-o,--output", flume_out, "Write the TOML here instead of stdout");
  sluice::top::Options top_options;
  auto* top = app.add_subcommand("top", "A live view of a running agent, from its admin endpoint");
  top->add_option("--admin", top_options.admin, "The agent's admin address HOST:PORT");
  top->add_option("-c,--config", top_options.config_path,
                  "The agent's configuration (its data_dir/admin.addr names the address)");
  top->add_flag("--once", top_options.once,
                "Print one snapshot (rates over one interval) and exit");
  top->add_option("--interval", top_options.interval_s, "Seconds between refreshes")
      ->check(CLI::Range(0.1, 60.0));

  auto* sql = app.add_subcommand("sql", "Try and inspect SQL window pipelines");
  sql->require_subcommand(1);
  std::string pipeline_name;
  auto* explain = sql->add_subcommand("explain", "Print the plan of each pipeline");
  explain->add_option("-c,--config", config_path, "The TOML configuration file")->required();
  explain->add_option("--pipeline", pipeline_name, "Only this pipeline");
  sluice::SqlRunOptions run_opts;
  auto* sql_run = sql->add_subcommand("run", "Evaluate a query over a file of events");
  sql_run->add_option("query", run_opts.query, "The query (SELECT ... FROM x GROUP BY ...)")
      ->required();
  sql_run->add_option("--input", run_opts.input, "A file of events, one per line (- for stdin)")
      ->required();
  sql_run->add_option("--format", run_opts.format, "json or raw")
      ->check(CLI::IsMember({"json", "raw"}))
      ->capture_default_str();
  sql_run->add_option("--event-time", run_opts.event_time,
                      "FIELD or FIELD:FORMAT (iso8601, epoch, epoch_ms, strftime pattern)");
  sql_run->add_option("--watermark-delay", run_opts.watermark_delay, "e.g. 5s");
  sql_run->add_option("--allowed-lateness", run_opts.allowed_lateness, "e.g. 10s");
  sql_run->add_option("--output", run_opts.output, "table or ndjson")
      ->check(CLI::IsMember({"table", "ndjson"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the help (exit 0) or the mistake; its own codes (106 for a missing option)
    // would read as something else to a shell or a unit file.
    return app.exit(e) == 0 ? 0 : kExitConfig;
  }

  spdlog::level::level_enum level = spdlog::level::info;
  if (!sluice::parse_log_level(log_level, level)) {
    std::fprintf(stderr,
                 "sluice: --log-level: unknown level '%s' (trace, debug, info, warn, error, "
                 "critical, off)\n",
                 log_level.c_str());
    return kExitConfig;
  }
  sluice::init_logging(level);

  if (app.got_subcommand("version")) {
    std::printf("sluice %s\n", std::string(sluice::sluice_version()).c_str());
    return 0;
  }
  if (sql_run->parsed()) return sluice::sql_run(run_opts, stdout, stderr);
  if (top->parsed()) return sluice::top::run(top_options);
  if (import_flume->parsed())
    return sluice::flume::run_import_flume(flume_file, flume_agent, flume_out);
  sluice::Registry registry;
  sluice::register_builtin_components(registry);
  if (list_keys) return sluice::print_config_keys(config_path, registry);
  auto cfg = load(config_path, registry);
  if (!cfg) return kExitConfig;
  if (explain->parsed()) return sluice::sql_explain(*cfg, pipeline_name, stdout, stderr);
  if (app.got_subcommand("channel")) {
    int failures = 0;
    for (const auto& spec : cfg->channels) {
      const sluice::ChannelTraits& traits = registry.channel(spec.type)->traits;
      if (traits.print_stats == nullptr || traits.dump == nullptr) continue;
      sluice::Status st;
      if (dump->parsed()) {
        if (spec.name != channel_name) continue;
        st = traits.dump(cfg->agent.data_dir, spec.name, dump_json, stdout);
      } else {
        st = traits.print_stats(cfg->agent.data_dir, spec.name, stdout);
      }
      if (!st.ok()) {
        std::fprintf(stderr, "sluice: %s\n", st.message().c_str());
        ++failures;
      }
      if (dump->parsed()) return failures == 0 ? 0 : 1;
    }
    if (dump->parsed()) {
      std::fprintf(stderr, "sluice: no lmdb channel named '%s' in %s\n", channel_name.c_str(),
                   config_path.c_str());
      return 1;
    }
    return failures == 0 ? 0 : 1;
  }
  if (app.got_subcommand("check")) {
    const std::string pipelines =
        cfg->pipelines.empty() ? "" : fmt::format(", {} pipelines", cfg->pipelines.size());
    std::printf("%s: ok (%zu sources, %zu channels, %zu sinks, %zu sink groups%s)\n",
                config_path.c_str(), cfg->sources.size(), cfg->channels.size(), cfg->sinks.size(),
                cfg->groups.size(), pipelines.c_str());
    return 0;
  }
  sluice::Agent agent(std::move(*cfg), registry);
  return agent.run();
}
