#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sources {

/// A process that has one of our pipes open, or carries our mark in its environment.
struct PipeHolder {
  pid_t pid = 0;
  pid_t pgid = 0;
  std::string comm;           // its name, as in /proc/PID/comm
  bool holds_output = false;  // has one of the pipes open
};

/// The processes other than this one that have a pipe whose inode is in `pipes` open: a command's
/// children that still write to its output, wherever they went (another process group or session
/// after setsid, re-parented to init when the command exited). Reads /proc, which costs about
/// (processes x open files); callers use it when the command exits and at stop, not per read.
/// Processes of other users are invisible unless we are root.
std::vector<PipeHolder> find_pipe_holders(const std::vector<ino_t>& pipes);
/// The same, and also every process whose environment holds the entry `mark` ("NAME=VALUE"),
/// which every descendant of a command started with it inherits unless it clears its
/// environment: this finds a daemon that left the group and closed the output too.
/// Only processes started at or after `started_after` (in /proc's clock ticks since boot, see
/// process_start_ticks()) are looked at closely: a command's descendants cannot be older than it,
/// and this keeps a scan at about 10 us per other process.
std::vector<PipeHolder> find_command_processes(const std::vector<ino_t>& pipes,
                                               std::string_view mark,
                                               std::uint64_t started_after = 0);
/// When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); 0 if it
/// cannot be read.
std::uint64_t process_start_ticks(pid_t pid);

/// The inode of the pipe behind `fd`, or 0 if it is not a pipe.
ino_t pipe_inode(int fd);

}  // namespace sluice::sources
