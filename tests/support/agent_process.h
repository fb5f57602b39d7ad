#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace sluice::test {

/// The path of the sluice binary under test and of the source tree (set by CMake).
std::string sluice_binary();
std::string source_dir();

/// Runs the real sluice binary. The configuration is a template from tests/integration/conf/
/// whose @NAME@ placeholders are replaced (DATA_DIR and DIR are always set to a fresh temp dir).
class AgentProcess {
 public:
  struct Options {
    std::map<std::string, std::string> vars;
    std::vector<std::string> extra_args;
    /// If set, the agent's stdin reads this file; else /dev/null.
    std::optional<std::string> stdin_file;
    /// If set, the agent's stdout is this fd (e.g. a pipe); else a file DIR/stdout.
    int stdout_fd = -1;
    /// If set, this configuration file is used as it is (no template), run from `cwd`.
    std::optional<std::string> config_file;
    std::optional<std::string> cwd;
    /// If set, the agent runs as this user id (tests of permission errors; the test runs as root).
    std::optional<unsigned> uid;
    /// If set, this directory is the agent's data_dir and work dir instead of a fresh one, so
    /// that a test can restart an agent on the same state.
    std::optional<std::string> dir;
    /// Environment variables set for the agent (e.g. NOTIFY_SOCKET), on top of the test's own.
    std::map<std::string, std::string> env;
  };
  AgentProcess(const std::string& conf_template, Options options);
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  /// Waits for data_dir/admin.addr and a started agent: /readyz 200, or 503 "not ready" with a
  /// reason other than starting or stopping (a sink group without a live sink).
  bool wait_ready(std::chrono::milliseconds timeout = 10s);
  /// As wait_ready(), with the admin address read from `addr_file`.
  bool wait_ready_at(const std::string& addr_file, std::chrono::milliseconds timeout = 10s);
  const std::string& admin() const { return admin_; }
  const std::string& dir() const { return dir_.path(); }
  std::string path(std::string_view name) const { return dir_.file(name); }
  std::string config_path() const { return dir_.file("sluice.toml"); }
  /// Sends `sig` and waits up to `timeout` for the exit; returns the exit code (-signal if killed,
  /// -1000 on timeout, in which case the process is killed).
  int signal_and_wait(int sig, std::chrono::milliseconds timeout = 15s);
  int terminate(std::chrono::milliseconds timeout = 15s) { return signal_and_wait(15, timeout); }
  int wait_exit(std::chrono::milliseconds timeout = 15s);
  bool running();
  pid_t pid() const { return pid_; }
  std::string stderr_text() const { return read_file(dir_.file("stderr")); }
  /// A network source's bound address from data_dir/NAME.addr (waits up to 10 s for it).
  std::string source_address(const std::string& name) const;
  /// The value of one series in /metrics, or nullopt.
  std::optional<double> metric(const std::string& series);

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string admin_;
  std::string data_dir_;
};

/// Another program run by a test (a python peer): killed and reaped when destroyed.
class ChildProcess {
 public:
  /// Runs argv[0] (a path) with `argv`; stdout and stderr go to `log_path`.
  ChildProcess(std::vector<std::string> argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// Waits up to `timeout` for the exit; returns the exit code, or -1000 after killing it.
  int wait_exit(std::chrono::milliseconds timeout = 30s);
  bool running();

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

/// The path of tests/support/flume_peer.py in the source tree.
std::string flume_peer_script();

/// Runs sluice to completion with `args` and returns {exit code, stdout + stderr}.
std::pair<int, std::string> run_sluice(const std::vector<std::string>& args);

}  // namespace sluice::test
