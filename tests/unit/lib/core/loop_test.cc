#include "lib/core/loop.h"

#include <catch2/catch.hpp>

using namespace sluice;

namespace {

struct Owner {
  int* runs;
  static void task(void* self, std::uint64_t) { ++*static_cast<Owner*>(self)->runs; }
};

}  // namespace

TEST_CASE("loop: a task deferred by an owner that cancels before it runs never runs",
          "[unit][core]") {
  Loop loop;
  int runs_a = 0, runs_b = 0;
  Owner a{&runs_a}, b{&runs_b};
  loop.defer(&Owner::task, &a, 0);
  loop.defer(&Owner::task, &b, 0);
  loop.defer(&Owner::task, &a, 0);
  loop.cancel_deferred(&a);  // `a` is being destroyed: its tasks must not reach it
  loop.run_once();
  CHECK(runs_a == 0);
  CHECK(runs_b == 1);
  REQUIRE(loop.close() == 0);
}

namespace {

struct Killer {
  Loop* loop;
  void* victim;
  static void task(void* self, std::uint64_t) {
    auto* k = static_cast<Killer*>(self);
    k->loop->cancel_deferred(k->victim);  // destroys the victim while this turn's tasks run
  }
};

}  // namespace

TEST_CASE("loop: a task cancelled by an earlier task of the same turn never runs", "[unit][core]") {
  Loop loop;
  int runs = 0;
  Owner victim{&runs};
  Killer killer{&loop, &victim};
  loop.defer(&Killer::task, &killer, 0);
  loop.defer(&Owner::task, &victim, 0);
  loop.run_once();
  CHECK(runs == 0);
  REQUIRE(loop.close() == 0);
}
