#include "channels/lmdb/inspect.h"

#include <fmt/format.h>
#include <lmdb.h>

#include <chrono>
#include <cstring>
#include <functional>

#include "channels/lmdb/lmdb_env.h"
#include "channels/lmdb/record_codec.h"
#include "lib/codec/json.h"
#include "lib/core/clock.h"

namespace sluice::channels {
namespace {

// Opens DATA_DIR/lmdb read-only and runs `fn` inside one read transaction.
Status with_read_txn(const std::string& data_dir,
                     const std::function<Status(MDB_txn*, MDB_dbi records, MDB_dbi meta)>& fn,
                     const std::string& name) {
  const std::string dir = data_dir + "/lmdb";
  auto damaged = [&](const std::string& damage) {
    return Status(Errc::io, fmt::format("the LMDB environment in {} is damaged: {}", dir, damage));
  };
  if (std::string damage = LmdbEnv::check_file(dir); !damage.empty()) return damaged(damage);
  // A truncated file or a damaged tree would be read past its end (SIGBUS) or astray (SIGSEGV):
  // check, in a child process, before reading anything.
  if (std::string damage = LmdbEnv::check_isolated(dir); !damage.empty()) return damaged(damage);
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 256);
  if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640);
  if (rc != 0) {
    if (env != nullptr) mdb_env_close(env);
    if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
        rc == MDB_PAGE_NOTFOUND)
      return damaged(mdb_strerror(rc));
    return Status(Errc::io,
                  fmt::format("cannot open the LMDB environment in {}: {}", dir, mdb_strerror(rc)));
  }

  MDB_txn* txn = nullptr;
  MDB_dbi records = 0, meta = 0;
  rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, ("c:" + name).c_str(), 0, &records);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", 0, &meta);
  Status st;
  if (rc == MDB_NOTFOUND) {
    st = Status(Errc::config, fmt::format("no lmdb channel named '{}' in {}", name, dir));
  } else if (rc != 0) {
    st = Status(Errc::io, fmt::format("{}: {}", dir, mdb_strerror(rc)));
  } else {
    st = fn(txn, records, meta);
  }
  if (txn != nullptr) mdb_txn_abort(txn);
  mdb_env_close(env);
  return st;
}

std::uint64_t seq_of(const MDB_val& k) {
  return record_seq({static_cast<const char*>(k.mv_data), k.mv_size});
}

}  // namespace

Status print_channel_stats(const std::string& data_dir, const std::string& name, std::FILE* out) {
  return with_read_txn(
      data_dir,
      [&](MDB_txn* txn, MDB_dbi records, MDB_dbi meta) {
        std::uint64_t events = 0, bytes = 0, next = 1;
        MDB_val k{}, v{};
        const std::string stats_key = fmt::format("c:{}:stats", name),
                          next_key = fmt::format("c:{}:next", name);
        MDB_val sk{stats_key.size(), const_cast<char*>(stats_key.data())};
        if (mdb_get(txn, meta, &sk, &v) == 0 && v.mv_size == 16) {
          std::memcpy(&events, v.mv_data, 8);
          std::memcpy(&bytes, static_cast<char*>(v.mv_data) + 8, 8);
        }
        MDB_val nk{next_key.size(), const_cast<char*>(next_key.data())};
        if (mdb_get(txn, meta, &nk, &v) == 0 && v.mv_size == 8) std::memcpy(&next, v.mv_data, 8);
        MDB_stat st{};
        mdb_stat(txn, records, &st);
        std::string oldest = "-";
        std::uint64_t first = next;
        MDB_cursor* cur = nullptr;
        if (mdb_cursor_open(txn, records, &cur) == 0) {
          if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
            first = seq_of(k);
            Batch b;
            std::string scratch;
            if (decode_record({static_cast<const char*>(v.mv_data), v.mv_size}, b, scratch).ok() &&
                !b.empty()) {
              oldest = fmt::format(
                  "{:.1f}s", static_cast<double>(wall_clock_ns() - b[0].timestamp_ns()) / 1e9);
            }
          }
          mdb_cursor_close(cur);
        }
        std::fprintf(out, "channel %s: %llu events, %llu bytes, %zu records, oldest event %s old\n",
                     name.c_str(), static_cast<unsigned long long>(events),
                     static_cast<unsigned long long>(bytes), st.ms_entries, oldest.c_str());
        // Cursors: meta keys c:NAME:cursor:GROUP.
        const std::string prefix = fmt::format("c:{}:cursor:", name);
        if (mdb_cursor_open(txn, meta, &cur) == 0) {
          MDB_val ck{prefix.size(), const_cast<char*>(prefix.data())};
          int rc = mdb_cursor_get(cur, &ck, &v, MDB_SET_RANGE);
          while (rc == 0) {
            std::string_view key(static_cast<const char*>(ck.mv_data), ck.mv_size);
            if (key.substr(0, prefix.size()) != prefix) break;
            std::uint64_t committed = 0;
            if (v.mv_size == 8) std::memcpy(&committed, v.mv_data, 8);
            const std::uint64_t behind =
                next > std::max(committed, first) ? next - std::max(committed, first) : 0;
            std::string age = "-";
            MDB_cursor* rcur = nullptr;
            if (behind > 0 && mdb_cursor_open(txn, records, &rcur) == 0) {
              std::string start = record_key(std::max(committed, first));
              MDB_val rk{start.size(), start.data()}, rv{};
              Batch batch;
              std::string scratch;
              if (mdb_cursor_get(rcur, &rk, &rv, MDB_SET_RANGE) == 0 &&
                  decode_record({static_cast<const char*>(rv.mv_data), rv.mv_size}, batch, scratch)
                      .ok() &&
                  !batch.empty()) {
                age = fmt::format(
                    "{:.1f}s",
                    static_cast<double>(wall_clock_ns() - batch[0].timestamp_ns()) / 1e9);
              }
              mdb_cursor_close(rcur);
            }
            std::fprintf(out,
                         "  cursor %.*s: %llu records behind, oldest event not committed %s old\n",
                         static_cast<int>(key.size() - prefix.size()), key.data() + prefix.size(),
                         static_cast<unsigned long long>(behind), age.c_str());
            rc = mdb_cursor_get(cur, &ck, &v, MDB_NEXT);
          }
          mdb_cursor_close(cur);
        }
        return Status();
      },
      name);
}

Status dump_channel(const std::string& data_dir, const std::string& name, bool json,
                    std::FILE* out) {
  return with_read_txn(
      data_dir,
      [&](MDB_txn* txn, MDB_dbi records, MDB_dbi) {
        MDB_cursor* cur = nullptr;
        int rc = mdb_cursor_open(txn, records, &cur);
        if (rc != 0) return Status(Errc::io, mdb_strerror(rc));
        MDB_val k{}, v{};
        Batch b;
        std::string scratch, text;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
          Status st = decode_record({static_cast<const char*>(v.mv_data), v.mv_size}, b, scratch);
          if (!st.ok()) {
            std::fprintf(stderr, "record %llu: %s\n", static_cast<unsigned long long>(seq_of(k)),
                         st.message().c_str());
            continue;
          }
          text.clear();
          codec::encode_batch(b, json ? codec::OutputFormat::json : codec::OutputFormat::body,
                              text);
          std::fwrite(text.data(), 1, text.size(), out);
        }
        mdb_cursor_close(cur);
        return Status();
      },
      name);
}

}  // namespace sluice::channels
