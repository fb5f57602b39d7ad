#include "tests/support/agent_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <thread>

namespace sluice::test {

std::string sluice_binary() { return SLUICE_TEST_BINARY; }
std::string source_dir() { return SLUICE_SOURCE_DIR; }

namespace {

// Forks and execs argv[0] with stdin from `in_path`, stdout to `out_fd` (if >= 0) or `out_path`,
// stderr to `err_path` (the same file as stdout if equal); `setup` runs in the child first.
template <class F>
pid_t spawn(std::vector<std::string> args, const std::string& in_path, int out_fd,
            const std::string& out_path, const std::string& err_path, F&& setup) {
  const pid_t pid = ::fork();
  SLUICE_ASSERT(pid >= 0);
  if (pid == 0) {
    setup();
    const int in = ::open(in_path.c_str(), O_RDONLY);
    const int out =
        out_fd >= 0 ? out_fd : ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err =
        err_path == out_path ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

AgentProcess::AgentProcess(const std::string& conf_template, Options options) {
  std::string conf = options.config_file
                         ? read_file(*options.config_file)
                         : read_file(source_dir() + "/tests/integration/conf/" + conf_template);
  options.vars["DIR"] = dir_.path();
  options.vars["DATA_DIR"] = options.dir ? *options.dir + "/data" : dir_.file("data");
  options.vars["SOURCE_DIR"] = source_dir();
  for (const auto& [k, v] : options.vars) {
    const std::string key = "@" + k + "@";
    for (auto pos = conf.find(key); pos != std::string::npos;
         pos = conf.find(key, pos + v.size())) {
      conf.replace(pos, key.size(), v);
    }
  }
  write_file(config_path(), conf);
  data_dir_ = options.vars["DATA_DIR"];
  if (options.uid) {
    ::chmod(dir_.path().c_str(), 0777);  // the unprivileged agent writes its data and logs here
    ::chmod(config_path().c_str(), 0644);
  }
  std::vector<std::string> args = {sluice_binary(), "run", "-c", config_path()};
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  const std::string out_path = dir_.file("stdout"), err_path = dir_.file("stderr");
  const std::string in_path = options.stdin_file.value_or("/dev/null");
  pid_ = spawn(args, in_path, options.stdout_fd, out_path, err_path, [&] {
    if (options.cwd && ::chdir(options.cwd->c_str()) != 0) ::_exit(126);
    for (const auto& [k, v] : options.env) ::setenv(k.c_str(), v.c_str(), 1);
    if (options.uid && (::setgid(*options.uid) != 0 || ::setuid(*options.uid) != 0)) ::_exit(126);
  });
}

AgentProcess::~AgentProcess() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

bool AgentProcess::running() {
  if (exit_code_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    return false;
  }
  return true;
}

bool AgentProcess::wait_ready(std::chrono::milliseconds timeout) {
  return wait_ready_at(data_dir_ + "/admin.addr", timeout);
}

bool AgentProcess::wait_ready_at(const std::string& addr_file, std::chrono::milliseconds timeout) {
  return eventually(timeout, [&] {
    if (!running()) return false;
    std::string a = read_file(addr_file);
    if (a.empty() || a.back() != '\n') return false;
    a.pop_back();
    admin_ = a;
    // Started: ready, or "not ready" for a reason other than starting or stopping (a sink group
    // whose every sink failed is not ready for traffic, yet the agent runs).
    const HttpReply r = http_get(admin_, "/readyz");
    return r.status == 200 || r.body.rfind("not ready\n", 0) == 0;
  });
}

int AgentProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (!eventually(timeout, [&] { return !running(); })) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_code_ = -1000;
  }
  return *exit_code_;
}

int AgentProcess::signal_and_wait(int sig, std::chrono::milliseconds timeout) {
  if (running()) ::kill(pid_, sig);
  return wait_exit(timeout);
}

std::optional<double> AgentProcess::metric(const std::string& series) {
  const HttpReply r = http_get(admin_, "/metrics");
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

std::pair<int, std::string> run_sluice(const std::vector<std::string>& args) {
  TempDir dir;
  std::string cmd = sluice_binary();
  for (const auto& a : args) {
    // Single-quoted for the shell; a quote inside (SQL literals) as '\''.
    cmd += " '";
    for (const char ch : a) cmd += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    cmd += "'";
  }
  cmd += " > " + dir.file("out") + " 2>&1";
  const int status = std::system(cmd.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, read_file(dir.file("out"))};
}

std::string AgentProcess::source_address(const std::string& name) const {
  std::string a;
  eventually(10s, [&] {
    a = read_file(data_dir_ + "/" + name + ".addr");
    return !a.empty();
  });
  while (!a.empty() && a.back() == '\n') a.pop_back();
  return a;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::string& log_path) {
  pid_ = spawn(std::move(argv), "/dev/null", -1, log_path, log_path, [] {});
}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

bool ChildProcess::running() {
  if (exit_code_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return false;
}

int ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (!eventually(timeout, [&] { return !running(); })) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_code_ = -1000;
  }
  return *exit_code_;
}

std::string flume_peer_script() { return source_dir() + "/tests/support/flume_peer.py"; }

}  // namespace sluice::test
