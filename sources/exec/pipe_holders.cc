#include "sources/exec/pipe_holders.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sluice::sources {
namespace {

bool numeric(const char* name) {
  if (*name == '\0') return false;
  for (; *name != '\0'; ++name) {
    if (*name < '0' || *name > '9') return false;
  }
  return true;
}

// Whether process `pid` has one of `pipes` open, read from /proc/PID/fd.
bool holds(const char* pid, const std::vector<ino_t>& pipes) {
  char path[300];
  std::snprintf(path, sizeof path, "/proc/%s/fd", pid);
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return false;  // gone, or not ours to look at
  bool found = false;
  while (!found) {
    const dirent* e = ::readdir(dir);
    if (e == nullptr) break;
    if (!numeric(e->d_name)) continue;
    char link[64];
    const ssize_t n = ::readlinkat(::dirfd(dir), e->d_name, link, sizeof link - 1);
    if (n <= 0) continue;
    link[n] = '\0';
    unsigned long long ino = 0;
    if (std::sscanf(link, "pipe:[%llu]", &ino) == 1) {
      found = std::find(pipes.begin(), pipes.end(), static_cast<ino_t>(ino)) != pipes.end();
    }
  }
  ::closedir(dir);
  return found;
}

// Fills pgid, comm and the start time from /proc/PID/stat ("PID (COMM) STATE PPID PGRP ...");
// COMM may hold spaces and parentheses, so it ends at the last ')'. False for a zombie.
bool read_stat(const char* pid, PipeHolder& h, std::uint64_t& start_ticks) {
  char path[300];
  std::snprintf(path, sizeof path, "/proc/%s/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* open = std::strchr(buf, '(');
  char* close = std::strrchr(buf, ')');
  if (open == nullptr || close == nullptr || close < open) return false;
  h.comm.assign(open + 1, close);
  char state = 0;
  long ppid = 0, pgrp = 0;
  unsigned long long start = 0;
  // Fields 3 to 5, then skip 6 to 21, then 22 (starttime).
  if (std::sscanf(close + 1,
                  " %c %ld %ld %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
                  "%llu",
                  &state, &ppid, &pgrp, &start) != 4) {
    return false;
  }
  if (state == 'Z' || state == 'X') return false;
  start_ticks = start;
  h.pid = static_cast<pid_t>(std::strtol(pid, nullptr, 10));
  h.pgid = static_cast<pid_t>(pgrp);
  return true;
}

// Whether /proc/PID/environ holds the entry `mark` (entries are NUL-terminated).
bool marked(const char* pid, std::string_view mark) {
  char path[300];
  std::snprintf(path, sizeof path, "/proc/%s/environ", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string env;
  char buf[16384];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    env.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  for (std::size_t at = 0; at < env.size();) {
    const std::size_t end = std::min(env.find('\0', at), env.size());
    if (std::string_view(env).substr(at, end - at) == mark) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace

ino_t pipe_inode(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return 0;
  return st.st_ino;
}

std::vector<PipeHolder> find_pipe_holders(const std::vector<ino_t>& pipes) {
  return find_command_processes(pipes, {});
}

std::uint64_t process_start_ticks(pid_t pid) {
  char name[32];
  std::snprintf(name, sizeof name, "%ld", static_cast<long>(pid));
  PipeHolder h;
  std::uint64_t start = 0;
  return read_stat(name, h, start) ? start : 0;
}

std::vector<PipeHolder> find_command_processes(const std::vector<ino_t>& pipes,
                                               std::string_view mark, std::uint64_t started_after) {
  std::vector<PipeHolder> out;
  if (pipes.empty() && mark.empty()) return out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  const long self = static_cast<long>(::getpid());
  while (const dirent* e = ::readdir(proc)) {
    if (!numeric(e->d_name) || std::strtol(e->d_name, nullptr, 10) == self) continue;
    PipeHolder h;
    std::uint64_t start = 0;
    if (!read_stat(e->d_name, h, start) || start < started_after) continue;
    h.holds_output = !pipes.empty() && holds(e->d_name, pipes);
    if (h.holds_output || (!mark.empty() && marked(e->d_name, mark))) out.push_back(std::move(h));
  }
  ::closedir(proc);
  std::sort(out.begin(), out.end(),
            [](const PipeHolder& a, const PipeHolder& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace sluice::sources
