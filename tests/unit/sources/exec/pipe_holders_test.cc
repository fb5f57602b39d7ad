#include "sources/exec/pipe_holders.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using sluice::sources::find_pipe_holders;
using sluice::sources::pipe_inode;

TEST_CASE("pipe holders: a child that left the group and holds the pipe is found", "[unit][exec]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const ino_t ino = pipe_inode(fds[0]);
  REQUIRE(ino != 0);
  CHECK(pipe_inode(fds[1]) == ino);  // both ends of a pipe are one inode
  CHECK(pipe_inode(0) != ino);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    ::setsid();  // like `setsid cmd`: a group and session of its own
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  // sluice itself (the read end) is not listed; the child is, with its own group once setsid ran.
  std::vector<sluice::sources::PipeHolder> found;
  CHECK(sluice::test::eventually(5s, [&] {
    found = find_pipe_holders({ino});
    return found.size() == 1 && found[0].pgid == child;
  }));
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == child);
  CHECK_FALSE(found[0].comm.empty());
  CHECK(find_pipe_holders({}).empty());
  CHECK(find_pipe_holders({ino + 1}).empty());
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(find_pipe_holders({ino}).empty());  // gone, and its end of the pipe with it
  ::close(fds[0]);
}

TEST_CASE("pipe holders: a process that closed the pipe is found by the mark in its environment",
          "[unit][exec]") {
  const std::string mark = "SLUICE_EXEC_MARK=unit-test." + std::to_string(::getpid());
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Like a daemon the command started: its own session, no pipe, the inherited environment.
    ::setsid();
    std::string entry = mark;
    char* argv[] = {const_cast<char*>("sleep"), const_cast<char*>("1000"), nullptr};
    char* envp[] = {entry.data(), nullptr};
    ::execve("/bin/sleep", argv, envp);
    ::_exit(127);
  }
  std::vector<sluice::sources::PipeHolder> found;
  CHECK(sluice::test::eventually(5s, [&] {
    found = sluice::sources::find_command_processes({}, mark);
    return found.size() == 1 && found[0].comm == "sleep";
  }));
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == child);
  CHECK(found[0].pgid == child);
  CHECK_FALSE(found[0].holds_output);
  CHECK(sluice::sources::find_command_processes({}, mark + "0").empty());  // whole entries only
  // Processes older than the command are not its descendants, and are not looked at.
  const std::uint64_t started = sluice::sources::process_start_ticks(child);
  CHECK(started >= sluice::sources::process_start_ticks(::getpid()));
  CHECK(sluice::sources::find_command_processes({}, mark, started).size() == 1);
  CHECK(sluice::sources::find_command_processes({}, mark, started + 1).empty());
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(sluice::sources::find_command_processes({}, mark).empty());
}
