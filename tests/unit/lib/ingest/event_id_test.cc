#include <catch2/catch.hpp>
#include <set>

#include "lib/ingest/line_source.h"

using sluice::sources::event_id;
using sluice::sources::hash_name;
using sluice::sources::run_id_base;

TEST_CASE("event ids: a file position's id is the same in every run", "[unit][ingest][id]") {
  // Fixed values: an id of a file's bytes must not change across restarts or versions, since a
  // receiver de-duplicates re-read bytes on it.
  CHECK(hash_name("tail") == 0xbbc4a9682f5af119ULL);
  CHECK(event_id(hash_name("tail"), 0) == event_id(hash_name("tail"), 0));
  CHECK(event_id(hash_name("tail"), 4096) == 0xc54d649a45950119ULL);
  CHECK(event_id(hash_name("tail"), 4096) != event_id(hash_name("tail"), 4097));
  CHECK(event_id(hash_name("tail"), 4096) != event_id(hash_name("tail2"), 4096));
}

TEST_CASE("event ids: every run id base differs, and so do the ids drawn from them",
          "[unit][ingest][id]") {
  // Two bases for the same name (two runs, or one source rebuilt in a run) share no id among
  // their first sequence numbers.
  const std::uint64_t a = run_id_base("gen"), b = run_id_base("gen");
  CHECK(a != b);
  CHECK(a != hash_name("gen"));  // not the fixed base every run used to start from
  std::set<std::uint64_t> ids;
  for (std::uint64_t seq = 0; seq < 10'000; ++seq) {
    ids.insert(event_id(a, seq));
    ids.insert(event_id(b, seq));
  }
  CHECK(ids.size() == 20'000);
  std::set<std::uint64_t> bases;
  for (int i = 0; i < 1000; ++i) bases.insert(run_id_base("gen"));
  CHECK(bases.size() == 1000);
}
