#include "channels/lmdb/lmdb_channel.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "channels/lmdb/record_codec.h"
#include "lib/core/log.h"

namespace sluice::channels {
namespace {

std::string key_of(std::uint64_t seq) { return record_key(seq); }

std::uint64_t seq_of(const MDB_val& k) {
  return record_seq({static_cast<const char*>(k.mv_data), k.mv_size});
}

MDB_val val_of(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

bool get_u64s(MDB_txn* txn, MDB_dbi dbi, const std::string& key, std::uint64_t* out,
              std::size_t n) {
  MDB_val k = val_of(key), v{};
  if (mdb_get(txn, dbi, &k, &v) != 0 || v.mv_size != n * 8) return false;
  std::memcpy(out, v.mv_data, n * 8);
  return true;
}

int put_u64s(MDB_txn* txn, MDB_dbi dbi, const std::string& key, const std::uint64_t* in,
             std::size_t n) {
  MDB_val k = val_of(key), v{n * 8, const_cast<std::uint64_t*>(in)};
  return mdb_put(txn, dbi, &k, &v, 0);
}

// Adds to the stored totals (events, bytes) inside the transaction, so that a retried round
// (after the map grew) never counts twice.
int add_stats(MDB_txn* txn, MDB_dbi meta, const std::string& key, std::int64_t events,
              std::int64_t bytes) {
  std::uint64_t s[2] = {0, 0};
  get_u64s(txn, meta, key, s, 2);
  s[0] = static_cast<std::uint64_t>(static_cast<std::int64_t>(s[0]) + events);
  s[1] = static_cast<std::uint64_t>(static_cast<std::int64_t>(s[1]) + bytes);
  return put_u64s(txn, meta, key, s, 2);
}

}  // namespace

Result<std::shared_ptr<LmdbEnv>> shared_env(SharedResources& shared, const std::string& data_dir,
                                            Loop& loop, bool quarantine_corrupt) {
  return shared.get_or_create<LmdbEnv>(
      LmdbChannel::env_key(data_dir), [&]() -> Result<std::shared_ptr<LmdbEnv>> {
        auto opened = LmdbEnv::open(data_dir + "/lmdb", loop, std::chrono::milliseconds(1000),
                                    quarantine_corrupt);
        if (!opened) return opened.error();
        return std::shared_ptr<LmdbEnv>(std::move(*opened));
      });
}

std::optional<LmdbConfig> LmdbConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  LmdbConfig c;
  node.optional("max_bytes", c.max_bytes, errors, InRange<ByteSize>{{1 << 20}, {1ULL << 44}});
  node.optional("max_events", c.max_events, errors, InRange<std::uint64_t>{1, 1ULL << 40});
  node.optional("transaction_events", c.transaction_events, errors,
                InRange<std::uint32_t>{1, 1'000'000});
  node.optional_enum(
      "sync", c.sync, errors,
      {{"full", SyncMode::full}, {"periodic", SyncMode::periodic}, {"none", SyncMode::none}});
  std::int64_t level = c.compression_level;
  if (node.optional("compression_level", level, errors, InRange<std::int64_t>{0, 19})) {
    c.compression_level = static_cast<int>(level);
  }
  node.optional_enum("when_full", c.drop_oldest_when_full, errors,
                     {{"block", false}, {"drop_oldest", true}});
  node.optional_enum("on_corrupt", c.quarantine_corrupt, errors,
                     {{"refuse", false}, {"quarantine", true}});
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{c} : std::nullopt;
}

Result<std::unique_ptr<LmdbChannel>> LmdbChannel::create(const LmdbConfig& config,
                                                         ChannelContext& ctx) {
  // No global fallback: the environment belongs to whoever owns the channels (the agent).
  if (ctx.shared == nullptr) {
    return Status(Errc::config, "an lmdb channel needs the agent's shared resources (none given)");
  }
  auto env = shared_env(*ctx.shared, ctx.data_dir, ctx.loop, config.quarantine_corrupt);
  if (!env) return env.error();
  auto records = (*env)->dbi("c:" + ctx.name);
  if (!records) return records.error();
  auto meta = (*env)->dbi("meta");
  if (!meta) return meta.error();
  auto quarantine = (*env)->dbi("q:" + ctx.name);
  if (!quarantine) return quarantine.error();
  return std::make_unique<LmdbChannel>(config, ctx, *env, *records, *meta, *quarantine);
}

LmdbChannel::LmdbChannel(const LmdbConfig& config, ChannelContext& ctx,
                         std::shared_ptr<LmdbEnv> env, MDB_dbi records, MDB_dbi meta,
                         MDB_dbi quarantine)
    : config_(config),
      ctx_(ctx),
      env_(std::move(env)),
      records_(records),
      meta_(meta),
      quarantine_db_(quarantine),
      space_probe_(ctx.loop),
      metrics_(ctx, config.max_events, config.max_bytes.bytes),
      quarantined_total_(ctx.metrics.counter(
          "sluice_channel_quarantined_records_total",
          "Stored records that failed their checksum, moved aside.", ctx.labels())),
      dropped_events_(ctx.metrics.counter("sluice_channel_dropped_events_total",
                                          "Events dropped when full (when_full = \"drop_oldest\", "
                                          "or a group with lagging = \"detach\").",
                                          ctx.labels())) {
  ctx.metrics
      .gauge("sluice_channel_environment_quarantined",
             "1 if the LMDB environment was found damaged at start and moved aside "
             "(on_corrupt = \"quarantine\").",
             ctx.labels())
      .set(env_->quarantine_note().empty() ? 0 : 1);
  ctx.metrics
      .gauge("sluice_channel_salvaged_events",
             "Events read back from the damaged LMDB environment moved aside at start.",
             ctx.labels())
      .set(static_cast<double>(env_->salvaged_events(ctx.name)));
  load_state();
}

LmdbChannel::~LmdbChannel() { ctx_.loop.cancel_deferred(this); }

std::string LmdbChannel::meta_key(std::string_view what) const {
  return fmt::format("c:{}:{}", ctx_.name, what);
}

// Reads the totals, the next record number and the oldest record: no scan, whatever the backlog.
void LmdbChannel::load_state() {
  std::lock_guard lock(env_->read_mutex());
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != 0) return;
  std::uint64_t stats[2] = {0, 0};
  if (get_u64s(txn, meta_, meta_key("stats"), stats, 2)) {
    events_ = stats[0];
    bytes_ = stats[1];
  }
  std::uint64_t next = 1;
  get_u64s(txn, meta_, meta_key("next"), &next, 1);
  MDB_cursor* cur = nullptr;
  MDB_val k{}, v{};
  if (mdb_cursor_open(txn, records_, &cur) == 0) {
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) deleted_below_ = seq_of(k);
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0) next = std::max(next, seq_of(k) + 1);
    mdb_cursor_close(cur);
  }
  MDB_stat qs{};
  if (mdb_stat(txn, quarantine_db_, &qs) == 0) quarantined_ = qs.ms_entries;
  mdb_txn_abort(txn);
  next_seq_ = next;
  durable_seq_ = next - 1;
  if (deleted_below_ == 1 && events_ == 0) deleted_below_ = next;
  metrics_.held(events_, bytes_);
}

Result<CursorId> LmdbChannel::open_cursor(std::string_view group) {
  Cursor c;
  c.group = std::string(group);
  c.committed = deleted_below_;
  bool stored_position = false;
  {
    std::lock_guard lock(env_->read_mutex());
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) == 0) {
      std::uint64_t stored = 0;
      if (get_u64s(txn, meta_, meta_key("cursor:" + c.group), &stored, 1)) {
        c.committed = std::max(stored, deleted_below_);
        stored_position = true;
      }
      mdb_txn_abort(txn);
    }
  }
  c.taken = c.committed;  // leases open at a crash are delivered again
  cursors_.push_back(std::move(c));
  const auto id = static_cast<CursorId>(cursors_.size() - 1);
  // A new cursor's position is stored at once, so that `sluice channel stats` lists it.
  if (!stored_position) store_and_delete({id}, {});
  return id;
}

void LmdbChannel::put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) {
  const std::size_t n = batch.size();
  SLUICE_ASSERT(n > 0);
  if (Status st = ChannelMetrics::check_transaction(n, config_.transaction_events); !st.ok()) {
    done.on_put_done(checkpoint.seq, std::move(st));
    return;
  }
  const std::uint64_t raw = batch.bytes();
  const std::uint64_t held = events_ + pending_events_;
  if (held > 0 &&
      (held + n > config_.max_events || bytes_ + pending_bytes_ + raw > config_.max_bytes.bytes)) {
    drop_oldest();  // only with when_full = "drop_oldest" or a detachable lagging cursor
    metrics_.backpressure.inc();
    done.on_put_done(checkpoint.seq, Status(Errc::backpressure, "lmdb channel full"));
    return;
  }
  // The batch stays with the caller until the put is durable: if the write fails (disk full), the
  // caller puts the same batch again (channel.h).
  auto payload = std::make_shared<std::string>();
  serialize_batch(batch, *payload);
  const std::uint64_t seq = next_seq_++;
  pending_events_ += n;
  pending_bytes_ += raw;
  auto stored = std::make_shared<std::uint64_t>(0);
  LmdbEnv::Op op;
  const MDB_dbi records = records_, meta = meta_;
  const std::string stats_key = meta_key("stats"), next_key = meta_key("next");
  const int level = config_.compression_level;
  // The source's position goes into the same transaction: after a crash the channel holds the
  // batch exactly when the source's stored position is past it.
  std::string cp_key, cp_value;
  if (!checkpoint.key.empty()) {
    cp_key = "src:" + std::string(checkpoint.key);
    cp_value = std::string(checkpoint.position);
  }
  op.apply = [=](MDB_txn* txn) {
    std::string rec;
    seal_record(*payload, static_cast<std::uint32_t>(n), level, rec);
    const std::string key = key_of(seq);
    MDB_val k = val_of(key), v = val_of(rec);
    int rc = mdb_put(txn, records, &k, &v, MDB_APPEND);
    if (rc != 0) return rc;
    const std::uint64_t next = seq + 1;
    rc = put_u64s(txn, meta, next_key, &next, 1);
    if (rc != 0) return rc;
    if (!cp_key.empty()) {
      MDB_val ck = val_of(cp_key), cv = val_of(cp_value);
      rc = mdb_put(txn, meta, &ck, &cv, 0);
      if (rc != 0) return rc;
    }
    *stored = rec.size();
    return add_stats(txn, meta, stats_key, static_cast<std::int64_t>(n),
                     static_cast<std::int64_t>(rec.size()));
  };
  SafeListener* safe = checkpoint.listener;
  const std::uint64_t cp_seq = checkpoint.seq;
  PutListener* listener = &done;
  op.done = [this, n, raw, seq, stored, safe, cp_seq, listener](Status st) {
    pending_events_ -= n;
    pending_bytes_ -= raw;
    if (!st.ok()) {
      put_failed(st);
      listener->on_put_done(cp_seq, std::move(st));
      return;
    }
    if (!put_failure_.empty()) {
      spdlog::info("lmdb channel {}: puts are stored again", ctx_.name);
      put_failure_.clear();
      probe_delay_ = kFirstProbe;
    }
    events_ += n;
    bytes_ += *stored;
    durable_seq_ = std::max(durable_seq_, seq);
    metrics_.put_events.inc(n);
    metrics_.held(events_, bytes_);
    listener->on_put_done(cp_seq, Status());
    if (safe != nullptr) safe->on_safe_in_channel(cp_seq);  // safe at durable put
    notify_data();
  };
  op.sync = config_.sync == SyncMode::full;
  op.put = true;
  env_->submit(std::move(op));
}

void LmdbChannel::put_failed(const Status& st) {
  const bool no_space = st.code() == Errc::backpressure;
  if (put_failure_.empty()) {
    spdlog::error("lmdb channel {}: a put failed ({}); the source puts it again {}", ctx_.name,
                  st.str(), no_space ? "once there is room" : "after a pause");
  }
  put_failure_ = st.message();
  no_space_ = no_space;
  Counter*& c = no_space ? put_errors_no_space_ : put_errors_io_;
  if (c == nullptr) {
    Labels labels = ctx_.labels();
    labels.emplace_back("reason", no_space ? "no_space" : "io");
    c = &ctx_.metrics.counter(
        "sluice_channel_put_errors_total",
        "Puts the channel could not store (retried by the source), by reason.", labels);
  }
  c->inc();
}

std::string LmdbChannel::health_problem() const {
  std::string out;
  if (!put_failure_.empty()) {
    out = fmt::format("channel {}: puts fail{}, retrying: {}", ctx_.name,
                      no_space_ ? " (disk or map full)" : "", put_failure_);
  }
  if (const std::string failure = env_->failure(); !failure.empty()) {
    if (!out.empty()) out += "\n";
    out += fmt::format("channel {}: storing commits fails, retrying: {}", ctx_.name, failure);
  }
  if (!env_->quarantine_note().empty()) {
    if (!out.empty()) out += "\n";
    out += fmt::format("channel {}: {}", ctx_.name, env_->quarantine_note());
  }
  if (quarantined_ > 0) {
    if (!out.empty()) out += "\n";
    out += fmt::format("channel {}: {} damaged records moved to quarantine (see the log)",
                       ctx_.name, quarantined_);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> LmdbChannel::load_checkpoints(
    std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  std::lock_guard lock(env_->read_mutex());
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != 0) return out;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn, meta_, &cur) == 0) {
    const std::string start = "src:" + std::string(prefix);
    MDB_val k = val_of(start), v{};
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
      std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
      if (key.substr(0, start.size()) != start) break;
      out.emplace_back(std::string(key.substr(4)),
                       std::string(static_cast<const char*>(v.mv_data), v.mv_size));
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
  }
  mdb_txn_abort(txn);
  return out;
}

void LmdbChannel::wait_for_space(SpaceListener& listener) {
  if (std::find(space_waiters_.begin(), space_waiters_.end(), &listener) == space_waiters_.end()) {
    space_waiters_.push_back(&listener);
  }
  // Out of disk space, room may come back without a commit here (another channel drained, the
  // operator freed the disk): probe with backoff.
  if (no_space_ && !put_failure_.empty() && !space_probe_.active()) {
    const Duration delay = probe_delay_;
    probe_delay_ = std::min<Duration>(probe_delay_ * 2, kMaxProbe);
    space_probe_.start(delay, [this] { notify_space(); });
  }
}

void LmdbChannel::notify_space() {
  std::vector<SpaceListener*> waiters;
  waiters.swap(space_waiters_);
  for (SpaceListener* l : waiters) l->on_space();
}

void LmdbChannel::wait_for_data(CursorId cursor, DataListener& listener) {
  Cursor& c = cursors_[cursor];
  if (c.closed) return;
  c.waiter = &listener;
  // Events are there already: answer on a later turn, through a task the channel owns (and
  // cancels when destroyed), never inline.
  if (c.taken <= durable_seq_) schedule_notify_data();
}

void LmdbChannel::schedule_notify_data() {
  if (data_task_pending_) return;
  data_task_pending_ = true;
  ctx_.loop.defer(
      [](void* self, std::uint64_t) {
        auto* ch = static_cast<LmdbChannel*>(self);
        ch->data_task_pending_ = false;
        ch->notify_data();
      },
      this, 0);
}

void LmdbChannel::notify_data() {
  for (Cursor& c : cursors_) {
    if (c.closed) continue;
    if (c.waiter != nullptr && c.taken <= durable_seq_) std::exchange(c.waiter, nullptr)->on_data();
  }
}

Result<Lease> LmdbChannel::take(CursorId cursor, Batch& out, TakeLimits limits) {
  Cursor& c = cursors_[cursor];
  out.clear();
  if (c.closed || c.taken > durable_seq_) return Lease();
  // Decoding runs on the loop: at most kTakeBudget of it per loop turn (always one record), so
  // that a large backlog does not stall every other component. Past the budget, take() answers
  // empty and wait_for_data() answers on the next turn.
  if (take_spent_ >= kTakeBudget) return Lease();
  if (!budget_reset_pending_) {
    budget_reset_pending_ = true;
    ctx_.loop.defer(
        [](void* self, std::uint64_t) {
          auto* ch = static_cast<LmdbChannel*>(self);
          ch->budget_reset_pending_ = false;
          ch->take_spent_ = Duration::zero();
        },
        this, 0);
  }
  const auto started = std::chrono::steady_clock::now();
  std::uint64_t first = 0, last = 0, bytes = 0, skipped_to = 0;
  std::vector<std::uint64_t> bad;
  {
    std::lock_guard lock(env_->read_mutex());
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn);
    if (rc != 0)
      return Status(Errc::io, fmt::format("lmdb read transaction: {}", mdb_strerror(rc)));
    MDB_cursor* cur = nullptr;
    mdb_cursor_open(txn, records_, &cur);
    const std::string start = key_of(c.taken);
    MDB_val k = val_of(start), v{};
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
      const std::uint64_t seq = seq_of(k);
      if (seq > durable_seq_) break;
      Status st;
      const Batch* decoded = decode(seq, {static_cast<const char*>(v.mv_data), v.mv_size}, st);
      if (!st.ok()) {
        if (quarantined_seqs_.count(seq) == 0) {
          spdlog::error("lmdb channel {}: record {} is damaged ({}); moving it to quarantine",
                        ctx_.name, seq, st.message());
        }
        bad.push_back(seq);
        skipped_to = seq;
      } else {
        if (!out.empty() &&
            (out.size() + decoded->size() > limits.max_events ||
             bytes + decoded->bytes() > limits.max_bytes || !out.same_common_headers(*decoded))) {
          break;
        }
        out.append_range(*decoded, 0, decoded->size());
        bytes += decoded->bytes();
        if (first == 0) first = seq;
        last = seq;
        if (take_spent_ + (std::chrono::steady_clock::now() - started) >= kTakeBudget) break;
      }
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
  }
  take_spent_ += std::chrono::steady_clock::now() - started;
  for (std::uint64_t seq : bad) quarantine(seq);
  if (out.empty()) {
    if (skipped_to != 0) c.taken = skipped_to + 1;
    return Lease();
  }
  // Damaged records before the first good one belong to this lease's range too.
  if (!bad.empty() && bad.front() < first) first = bad.front();
  const std::uint64_t id = ++next_lease_;
  leases_[id] = Leased{cursor, first, std::max(last, skipped_to)};
  c.taken = std::max(last, skipped_to) + 1;
  return Lease(this, id, static_cast<std::uint32_t>(out.size()), bytes);
}

const Batch* LmdbChannel::decode(std::uint64_t seq, std::string_view stored, Status& st) {
  for (std::size_t k = 0; k < cache_count_; ++k) {
    const Decoded& d = decoded_cache_[(cache_head_ + k) % kDecodedRecords];
    if (d.seq == seq && d.stored == stored) {
      st = Status();
      return &d.batch;
    }
  }
  st = decode_record(stored, decoded_, scratch_);
  if (!st.ok()) return &decoded_;
  const std::size_t size = stored.size() + decoded_.bytes();
  if (size > kDecodedBytes / 4) return &decoded_;
  if (decoded_cache_.empty()) decoded_cache_.resize(kDecodedRecords);
  // One reader only meets its last record again; several share the recent ones.
  const std::size_t records = cursors_.size() > 1 ? kDecodedRecords : 1;
  while (cache_count_ > 0 &&
         (decoded_cache_bytes_ + size > kDecodedBytes || cache_count_ >= records)) {
    Decoded& old = decoded_cache_[cache_head_];
    decoded_cache_bytes_ -= old.stored.size() + old.batch.bytes();
    // The first evicted entry's buffers become the spare; those of any further one are freed,
    // so that empty slots hold no memory.
    if (spare_.batch.capacity_bytes() == 0) {
      std::swap(old.stored, spare_.stored);
      old.batch.swap(spare_.batch);
    }
    std::string().swap(old.stored);
    old.batch.release();
    cache_head_ = (cache_head_ + 1) % kDecodedRecords;
    --cache_count_;
  }
  Decoded& d = decoded_cache_[(cache_head_ + cache_count_) % kDecodedRecords];
  ++cache_count_;
  d.seq = seq;
  if (d.stored.capacity() < stored.size()) std::swap(d.stored, spare_.stored);
  d.stored.assign(stored);
  d.batch.swap(decoded_);
  // decoded_ now holds the slot's old buffers (none): it takes the spare's, so that the next
  // decode_record() finds capacity.
  if (decoded_.capacity_bytes() < spare_.batch.capacity_bytes()) decoded_.swap(spare_.batch);
  decoded_cache_bytes_ += size;
  return &d.batch;
}

void LmdbChannel::quarantine(std::uint64_t seq) {
  // Several cursors may meet the same damaged record before it is moved: count and move it once.
  if (!quarantined_seqs_.insert(seq).second) return;
  ++quarantined_;
  quarantined_total_.inc();
  LmdbEnv::Op op;
  const MDB_dbi records = records_, meta = meta_, q = quarantine_db_;
  const std::string stats_key = meta_key("stats");
  auto removed = std::make_shared<std::pair<std::uint64_t, std::uint64_t>>(0, 0);
  op.apply = [=](MDB_txn* txn) {
    const std::string key = key_of(seq);
    MDB_val k = val_of(key), v{};
    int rc = mdb_get(txn, records, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return rc;
    RecordInfo info;
    const std::uint64_t events =
        peek_record({static_cast<const char*>(v.mv_data), v.mv_size}, info) ? info.events : 0;
    const std::uint64_t size = v.mv_size;
    rc = mdb_put(txn, q, &k, &v, 0);
    if (rc == 0) rc = mdb_del(txn, records, &k, nullptr);
    if (rc == 0)
      rc = add_stats(txn, meta, stats_key, -static_cast<std::int64_t>(events),
                     -static_cast<std::int64_t>(size));
    *removed = {events, size};
    return rc;
  };
  op.done = [this, removed](Status st) {
    if (!st.ok()) return;
    events_ -= std::min(events_, removed->first);
    bytes_ -= std::min(bytes_, removed->second);
    metrics_.held(events_, bytes_);
  };
  env_->submit(std::move(op));
}

std::uint64_t LmdbChannel::min_committed() const {
  std::uint64_t m = next_seq_;
  for (const Cursor& c : cursors_) {
    if (!c.closed) m = std::min(m, c.committed);
  }
  return m;
}

void LmdbChannel::close_cursor(CursorId cursor) noexcept {
  if (cursor >= cursors_.size() || cursors_[cursor].closed) return;
  Cursor& c = cursors_[cursor];
  c.closed = true;
  c.waiter = nullptr;
  // Its leases are forgotten: dropping them later rolls back nothing.
  std::erase_if(leases_, [&](const auto& l) { return l.second.cursor == cursor; });
  // The stored position goes first, then the records no open cursor needs any more, in one
  // writer round each (the writer runs them in this order).
  LmdbEnv::Op op;
  const MDB_dbi meta = meta_;
  const std::string key = meta_key("cursor:" + c.group);
  op.apply = [meta, key](MDB_txn* txn) {
    MDB_val k = val_of(key);
    const int rc = mdb_del(txn, meta, &k, nullptr);
    return rc == MDB_NOTFOUND ? 0 : rc;
  };
  op.done = [name = ctx_.name, group = c.group](Status st) {
    if (!st.ok())
      spdlog::warn("lmdb channel {}: cannot remove the stored position of closed cursor {}: {}",
                   name, group, st.str());
  };
  op.sync = config_.sync == SyncMode::full;
  env_->submit(std::move(op));
  store_and_delete({}, {});
}

void LmdbChannel::commit(Lease&& lease, CommitListener& done) {
  auto it = leases_.find(lease.token());
  SLUICE_ASSERT(it != leases_.end());
  const Leased l = it->second;
  leases_.erase(it);
  const std::uint64_t token = lease.token();
  const std::uint32_t committed_events = lease.events();
  lease.release();
  Cursor& c = cursors_[l.cursor];
  c.committed = std::max(c.committed, l.last + 1);
  CommitListener* listener = &done;
  store_and_delete({l.cursor}, [this, token, listener, committed_events](Status st) {
    if (st.ok()) metrics_.committed_events.inc(committed_events);
    listener->on_committed(token, std::move(st));
  });
}

bool LmdbChannel::commit_with_checkpoint(CursorId cursor, std::vector<Lease>& leases,
                                         std::string_view key, std::string value,
                                         CommitListener& done) {
  std::uint64_t token = 0, committed_events = 0;
  for (Lease& lease : leases) {
    auto it = leases_.find(lease.token());
    SLUICE_ASSERT(it != leases_.end() && it->second.cursor == cursor);
    const Leased l = it->second;
    leases_.erase(it);
    token = lease.token();
    committed_events += lease.events();
    lease.release();
    Cursor& c = cursors_[l.cursor];
    c.committed = std::max(c.committed, l.last + 1);
  }
  leases.clear();
  CommitListener* listener = &done;
  store_and_delete({cursor},
                   [this, token, listener, committed_events](Status st) {
                     if (st.ok()) metrics_.committed_events.inc(committed_events);
                     listener->on_committed(token, std::move(st));
                   },
                   {"src:" + std::string(key), std::move(value)});
  return true;
}

// Stores the positions of `changed` cursors (and a consumer's `checkpoint`, if any) and deletes the
// records every cursor has passed, in one writer round; then updates the totals, calls `then` and
// wakes waiting sources.
void LmdbChannel::store_and_delete(const std::vector<CursorId>& changed,
                                   std::function<void(Status)> then,
                                   std::pair<std::string, std::string> checkpoint) {
  const std::uint64_t below = min_committed();
  const std::uint64_t from = deleted_below_;
  deleted_below_ = std::max(deleted_below_, below);
  std::vector<std::pair<std::string, std::uint64_t>> positions;
  for (CursorId id : changed)
    positions.emplace_back(meta_key("cursor:" + cursors_[id].group), cursors_[id].committed);
  LmdbEnv::Op op;
  const MDB_dbi records = records_, meta = meta_;
  const std::string stats_key = meta_key("stats");
  auto removed = std::make_shared<std::pair<std::uint64_t, std::uint64_t>>(0, 0);
  auto cp = std::make_shared<const std::pair<std::string, std::string>>(std::move(checkpoint));
  op.apply = [=](MDB_txn* txn) {
    int rc = 0;
    for (const auto& [key, position] : positions) {
      rc = put_u64s(txn, meta, key, &position, 1);
      if (rc != 0) return rc;
    }
    if (!cp->first.empty()) {
      MDB_val ck = val_of(cp->first), cv = val_of(cp->second);
      rc = mdb_put(txn, meta, &ck, &cv, 0);
      if (rc != 0) return rc;
    }
    *removed = {0, 0};
    if (from >= below) return 0;
    MDB_cursor* cur = nullptr;
    rc = mdb_cursor_open(txn, records, &cur);
    if (rc != 0) return rc;
    std::uint64_t events = 0, bytes = 0;
    const std::string start = key_of(from);
    MDB_val k = val_of(start), v{};
    int get = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (get == 0 && seq_of(k) < below) {
      RecordInfo info;
      if (peek_record({static_cast<const char*>(v.mv_data), v.mv_size}, info))
        events += info.events;
      bytes += v.mv_size;
      rc = mdb_cursor_del(cur, 0);
      if (rc != 0) break;
      // After a delete the cursor points at the next record; MDB_GET_CURRENT returns it.
      get = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
      if (get != 0) get = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0) return rc;
    *removed = {events, bytes};
    return add_stats(txn, meta, stats_key, -static_cast<std::int64_t>(events),
                     -static_cast<std::int64_t>(bytes));
  };
  op.done = [this, removed, then = std::move(then)](Status st) {
    if (st.ok()) {
      events_ -= std::min(events_, removed->first);
      bytes_ -= std::min(bytes_, removed->second);
      metrics_.held(events_, bytes_);
    }
    if (then) then(std::move(st));
    notify_space();
  };
  op.sync = config_.sync == SyncMode::full;
  env_->submit(std::move(op));
}

// Full, with when_full = "drop_oldest" or a lagging cursor that may be detached: moves the chosen
// cursors past the oldest record so that it can be deleted, and counts what they lost.
bool LmdbChannel::drop_oldest() {
  if (dropping_) return true;  // a drop is on its way; its completion wakes the source
  const std::uint64_t oldest = min_committed();
  if (oldest >= next_seq_) return false;
  std::vector<CursorId> chosen;
  for (CursorId id = 0; id < cursors_.size(); ++id) {
    const Cursor& c = cursors_[id];
    if (c.closed || c.committed != oldest) continue;
    if (config_.drop_oldest_when_full || c.detach_when_lagging) chosen.push_back(id);
  }
  // Without drop_oldest, only detached cursors move; if another cursor also sits at the oldest
  // record, nothing can be freed this way.
  for (CursorId id = 0; id < cursors_.size(); ++id) {
    if (!cursors_[id].closed && cursors_[id].committed == oldest &&
        std::find(chosen.begin(), chosen.end(), id) == chosen.end())
      return false;
  }
  if (chosen.empty()) return false;
  // The oldest stored record and its event count.
  std::uint64_t record = 0, events = 0;
  {
    std::lock_guard lock(env_->read_mutex());
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != 0) return false;
    MDB_cursor* cur = nullptr;
    if (mdb_cursor_open(txn, records_, &cur) == 0) {
      const std::string start = key_of(oldest);
      MDB_val k = val_of(start), v{};
      if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0) {
        record = seq_of(k);
        RecordInfo info;
        if (peek_record({static_cast<const char*>(v.mv_data), v.mv_size}, info))
          events = info.events;
      }
      mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
  }
  if (record == 0 || record > durable_seq_) return false;
  for (CursorId id : chosen) {
    Cursor& c = cursors_[id];
    c.committed = record + 1;
    c.taken = std::max(c.taken, c.committed);
    SLUICE_WARN_RATE_LIMITED(
        "lmdb channel {}: full; dropped {} of the oldest events for sink group {} ({})", ctx_.name,
        events, c.group,
        config_.drop_oldest_when_full ? "when_full = \"drop_oldest\"" : "lagging = \"detach\"");
  }
  dropped_events_.inc(events * chosen.size());
  dropping_ = true;
  store_and_delete(chosen, [this](Status) { dropping_ = false; });
  return true;
}

void LmdbChannel::rollback(const Lease& lease) noexcept {
  auto it = leases_.find(lease.token());
  if (it == leases_.end()) return;
  Cursor& c = cursors_[it->second.cursor];
  c.taken = std::min(c.taken, it->second.first);
  metrics_.rollback_events.inc(lease.events());
  leases_.erase(it);
  // Never call back from inside a rollback (channel.h): the sink group is mid-way through its own
  // bookkeeping.
  schedule_notify_data();
}

}  // namespace sluice::channels
