#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sluice::sources {

/// A process that has one of our pipes open.
struct PipeHolder {
  pid_t pid = 0;
  pid_t pgid = 0;
  std::string comm;  // its name, as in /proc/PID/comm
};

/// The processes other than this one that have a pipe whose inode is in `pipes` open: a command's
/// children that still write to its output, wherever they went (another process group or session
/// after setsid, re-parented to init when the command exited). Reads /proc, which costs about
/// (processes x open files); callers use it when the command exits and at stop, not per read.
/// Processes of other users are invisible unless we are root.
std::vector<PipeHolder> find_pipe_holders(const std::vector<ino_t>& pipes);

/// The inode of the pipe behind `fd`, or 0 if it is not a pipe.
ino_t pipe_inode(int fd);

}  // namespace sluice::sources
