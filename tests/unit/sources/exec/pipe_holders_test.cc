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
