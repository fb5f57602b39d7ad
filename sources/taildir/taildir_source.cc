#include "sources/taildir/taildir_source.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "lib/core/log.h"
#include "lib/ingest/line_source.h"
#include "sources/taildir/glob.h"
#include "sources/taildir/reconcile.h"

namespace sluice::sources {

namespace {

constexpr std::size_t kMaxConcurrentReads = 4;

ssize_t pread_some(int fd, char* buf, std::size_t len, std::uint64_t offset) {
  ssize_t n = 0;
  do {
    n = ::pread(fd, buf, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

}  // namespace

// On the threadpool: touches the slot only (its file descriptor stays open while it is busy).
void TaildirSource::read_slot(ReadSlot& s) {
  auto read_prefix = [&s](Prefix& p) {
    std::size_t got = 0;
    p.read = false;
    while (got < p.bytes.size()) {
      const ssize_t n = pread_some(s.fd, p.bytes.data() + got, p.bytes.size() - got, got);
      if (n < 0) return;  // cannot tell: taken for the same file, as without this check
      if (n == 0) break;  // shorter than fingerprint_bytes
      got += static_cast<std::size_t>(n);
    }
    p.bytes.resize(got);
    p.read = true;
  };
  s.before.read = s.after.read = false;
  if (s.buf.data() == nullptr) {
    s.result = -ENOMEM;  // the buffer could not be mapped: a read error, counted and logged
    return;
  }
  if (s.check_prefix) read_prefix(s.before);
  s.result = pread_some(s.fd, s.buf.data(), s.buf.size(), s.offset);
  if (s.result > 0 && s.check_prefix) read_prefix(s.after);
}

Result<std::unique_ptr<TaildirSource>> TaildirSource::create(const TaildirConfig& config,
                                                             SourceContext& ctx) {
  const std::string path = config.positions_file.empty()
                               ? ctx.data_dir + "/" + ctx.name + ".positions.json"
                               : config.positions_file;
  auto saved = load_positions(path);
  if (!saved) return saved.error();
  // A durable channel stores each batch's file position in the batch's own transaction: those
  // positions are exact, while the positions file may lag them by a checkpoint_interval.
  std::vector<std::pair<std::string, std::string>> malformed;
  std::vector<SavedPosition> positions =
      merge_positions(std::move(*saved), ctx.output.load_checkpoints(), malformed);
  for (const auto& [key, value] : malformed) {
    spdlog::warn("taildir {}: ignoring a malformed position stored in the channel for {}: \"{}\"",
                 ctx.name, log_excerpt(key), log_excerpt(value));
  }
  auto pipeline = LineReader::make_pipeline(config.lines, ctx);
  if (!pipeline) return pipeline.error();
  return std::make_unique<TaildirSource>(config, ctx, std::move(positions), std::move(*pipeline));
}

TaildirSource::TaildirSource(const TaildirConfig& config, SourceContext& ctx,
                             std::vector<SavedPosition> saved,
                             std::unique_ptr<parse::EventPipeline> pipeline)
    : config_(config),
      ctx_(ctx),
      output_(ctx.output),
      positions_path_(config.positions_file.empty()
                          ? ctx.data_dir + "/" + ctx.name + ".positions.json"
                          : config.positions_file),
      pipeline_(pipeline && !pipeline->trivial() ? std::move(pipeline) : nullptr),
      multiline_timer_(ctx.loop),
      scan_timer_(ctx.loop),
      poll_timer_(ctx.loop),
      checkpoint_timer_(ctx.loop),
      parse_turn_(ctx.loop, [this] { continue_parsing(); }),
      stop_waiter_(ctx.loop),
      source_hash_(hash_name(ctx.name)),
      metrics_(ctx),
      skipped_binary_(ctx.metrics.counter("sluice_taildir_binary_files_skipped_total",
                                          "Files that look binary (NUL bytes) and are not read.",
                                          ctx.labels())),
      read_errors_(ctx.metrics.counter("sluice_taildir_errors_total",
                                       "Files that could not be opened or read.", ctx.labels())),
      read_buffer_bytes_(ctx.metrics.gauge("sluice_taildir_read_buffer_bytes",
                                           "Bytes of read buffers mapped: read_buffer per file "
                                           "being read, 0 once all are caught up.",
                                           ctx.labels())),
      batcher_(ctx, *this, metrics_, /*count_at_put=*/false) {
  for (auto& p : saved) saved_[{p.id.dev, p.id.ino}] = std::move(p);
  for (const auto& g : config_.groups) {
    Labels l = ctx.labels();
    l.emplace_back("group", g.name);
    auto& m = ctx.metrics;
    group_metrics_.push_back(GroupMetrics{
        &m.gauge("sluice_taildir_files", "Files watched.", l),
        &m.gauge("sluice_taildir_lag_bytes", "Bytes written to watched files and not read yet.", l),
        &m.counter("sluice_taildir_bytes_total", "Bytes read.", l),
        &m.counter("sluice_taildir_lines_total", "Lines read.", l),
        &m.counter("sluice_taildir_rotations_total",
                   "Rotations seen (a watched file renamed or replaced).", l),
        &m.counter(
            "sluice_taildir_truncations_total",
            "Files found truncated (shorter than the read offset, or with other first bytes), read "
            "again from 0.",
            l)});
  }
  for (std::size_t i = 0; i < kMaxConcurrentReads; ++i) {
    auto s = std::make_unique<ReadSlot>();
    s->buf.count_in(&read_buffer_bytes_);
    s->self = this;
    s->req.data = s.get();
    slots_.push_back(std::move(s));
  }
  durable_ = output_.durable();
  for (const auto& g : config_.groups) {
    for (const auto& p : g.paths) roots_.push_back(glob_root(p));
  }
}

bool TaildirSource::ReadBuffer::acquire(std::size_t size) {
  if (data_ != nullptr && size_ == size) return true;
  release();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  data_ = static_cast<char*>(p);
  size_ = size;
  if (mapped_ != nullptr) mapped_->add(static_cast<std::int64_t>(size));
  return true;
}

void TaildirSource::ReadBuffer::release() {
  if (data_ == nullptr) return;
  ::munmap(data_, size_);
  if (mapped_ != nullptr) mapped_->add(-static_cast<std::int64_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

TaildirSource::~TaildirSource() {
  for (auto& [dir, w] : watches_) close_watch(w);
}

Status TaildirSource::start() {
  scan();
  scan_timer_.start(
      config_.rescan_interval, [this] { scan(); }, config_.rescan_interval);
  poll_timer_.start(
      config_.poll_interval,
      [this] {
        // A cheap safety net behind inotify: fstat the open files, read those whose size moved.
        // Files closed for max_open_files are found again by the rescan's stat.
        for (auto& [key, f] : files_) {
          if (f->fd < 0 || f->reading || f->queued) continue;
          struct stat st {};
          if (::fstat(f->fd, &st) != 0) continue;
          f->size = static_cast<std::uint64_t>(st.st_size);
          if (f->size != f->read_offset) schedule(*f);
        }
        update_lag();
      },
      config_.poll_interval);
  checkpoint_timer_.start(
      config_.checkpoint_interval, [this] { write_positions_async(); },
      config_.checkpoint_interval);
  if (pipeline_ && pipeline_->multiline() != nullptr) {
    const auto timeout = pipeline_->config().multiline.timeout;
    const Duration tick = std::max<Duration>(timeout / 4, std::chrono::milliseconds(1));
    multiline_timer_.start(
        tick, [this] { flush_multiline(true); }, tick);
  }
  return {};
}

TaildirSource::File* TaildirSource::by_key(std::uint64_t key) {
  auto it = files_.find(key);
  return it == files_.end() ? nullptr : it->second.get();
}

// Discovery runs on the threadpool: glob walk, stat, fingerprints, binary check. Its result is
// reconciled with the tracked files on the loop thread.
void TaildirSource::scan() {
  if (stopping_) return;
  if (scanning_) {
    rescan_requested_ = true;
    return;
  }
  scanning_ = true;
  struct Job {
    uv_work_t req;
    TaildirSource* self;
    ScanRequest request;
    ScanResult result;
    Asked asked;
  };
  auto* job = new Job{};
  job->req.data = job;
  job->self = this;
  ScanRequest& r = job->request;
  r.groups = config_.groups;
  r.exclude = config_.exclude;
  r.limits.follow_symlinks = config_.follow_symlinks;
  r.fingerprint_bytes = config_.fingerprint_bytes;
  for (const auto& [key, f] : files_) {
    r.known[{f->id.dev, f->id.ino}] = f->id.fp_len;
    job->asked[key] = {f->generation, f->id};
    if (f->fd < 0 && !f->detached) {
      const auto slash = f->path.rfind('/');
      r.closed.push_back({key,
                          slash == std::string::npos ? std::string(".")
                          : slash == 0               ? std::string("/")
                                                     : f->path.substr(0, slash),
                          f->id});
    }
  }
  for (const auto& [k, p] : saved_) r.known.emplace(k, p.id.fp_len);
  uv_queue_work(
      ctx_.loop.uv(), &job->req,
      [](uv_work_t* req) {
        auto* j = static_cast<Job*>(req->data);
        j->result = discover(j->request);
      },
      [](uv_work_t* req, int) {
        auto* j = static_cast<Job*>(req->data);
        TaildirSource* self = j->self;
        self->scanning_ = false;
        if (!self->stopping_) self->on_scanned(std::move(j->result), j->asked);
        close_relocated(j->result.relocated);
        delete j;
        if (self->rescan_requested_ && !self->stopping_) {
          self->rescan_requested_ = false;
          self->scan();
        } else {
          self->stop_waiter_.check();
        }
      });
}

void TaildirSource::on_scanned(ScanResult result, const Asked& asked) {
  // A directory watched only now may have received files before its watch existed: one more scan
  // finds them, and inotify everything after.
  if (update_watches(result.dirs)) rescan_requested_ = true;
  const std::vector<Candidate>& found = result.found;
  for (const auto& [path, err] : result.unreadable) {
    if (warned_.insert(path).second) {
      read_errors_.inc();
      spdlog::warn("taildir {}: cannot read {}: {} (logged once)", ctx_.name, path,
                   std::strerror(err));
    }
  }
  // The scan hashed each file's first bytes over the fingerprint length it had when the scan was
  // asked for: compared with that identity. Reads may have lengthened it since (the same content),
  // or found the file rewritten and restarted it (a new generation): the scan's view of such a
  // file is older than the source's, so it is only followed, never restarted again for it.
  std::vector<KnownFile> known;
  std::set<std::uint64_t> stale;
  known.reserve(files_.size());
  for (const auto& [key, f] : files_) {
    auto a = asked.find(key);
    if (a != asked.end() && a->second.first == f->generation) {
      known.push_back({key, f->path, a->second.second});
    } else {
      known.push_back({key, f->path, FileIdentity{f->id.dev, f->id.ino, 0, 0}});
      stale.insert(key);
    }
  }
  const ReconcileOptions options{.first_scan = !first_scan_done_,
                                 .read_from_tail = config_.read_from_tail,
                                 .ignore_older = config_.ignore_older,
                                 .now = std::chrono::system_clock::now(),
                                 .fingerprint_bytes = config_.fingerprint_bytes};
  relocated_ = &result.relocated;
  for (const ScanAction& a : reconcile(found, known, saved_, options, next_key_)) {
    apply(a, found, stale);
  }
  relocated_ = nullptr;
  close_relocated(result.relocated);
  first_scan_done_ = true;
  // Positions for files that no longer exist are dropped after a scan that did not find them.
  saved_.clear();
  for (std::size_t g = 0; g < config_.groups.size(); ++g) {
    std::int64_t n = 0;
    for (const auto& [key, f] : files_) n += f->group == g ? 1 : 0;
    group_metrics_[g].files->set(n);
  }
  update_lag();
  pump_reads();
}

void TaildirSource::close_relocated(std::vector<RelocatedFile>& relocated) noexcept {
  for (RelocatedFile& r : relocated) {
    if (r.fd >= 0) ::close(std::exchange(r.fd, -1));
  }
}

void TaildirSource::apply(const ScanAction& a, const std::vector<Candidate>& found,
                          const std::set<std::uint64_t>& stale) {
  using Kind = ScanAction::Kind;
  if (a.kind == Kind::open) {
    track(found[a.candidate], a.key, a.start);
    return;
  }
  if (a.kind == Kind::skip_binary) {
    const Candidate& c = found[a.candidate];
    if (warned_.insert(c.path).second) {
      skipped_binary_.inc();
      spdlog::warn("taildir {}: {} looks binary (NUL bytes in its first {} bytes); not reading it",
                   ctx_.name, c.path, kBinaryProbeBytes);
    }
    return;
  }
  File* fp = by_key(a.key);
  if (fp == nullptr) return;
  File& f = *fp;
  if (a.kind == Kind::gone) {
    // No longer matched: renamed away or deleted. Read it to its end, then close it. One whose
    // descriptor was closed for max_open_files is read by the name the scan found it under in
    // its directory (a rotation's rename), if any: else its unread tail could not be read.
    if (f.fd < 0 && !f.detached && relocated_ != nullptr) {
      for (RelocatedFile& r : *relocated_) {
        if (r.key != f.key || r.fd < 0) continue;
        f.fd = std::exchange(r.fd, -1);
        f.closed_for_limit = false;
        ++open_files_;
        spdlog::debug("taildir {}: {} (closed for max_open_files) is now {}", ctx_.name, f.path,
                      r.path);
        enforce_open_limit(&f);
        break;
      }
    }
    if (!f.detached) {
      f.detached = true;
      f.last_activity = std::chrono::steady_clock::now();
      group_metrics_[f.group].rotations->inc();
    }
    check_detached(f);
    return;
  }
  const Candidate& c = found[a.candidate];
  f.detached = false;
  if (a.kind == Kind::replaced) {
    // Same inode, different first bytes: truncated and rewritten (or the inode went to another
    // file under the same watch). Either way the old content is gone: read it from the start.
    f.path = c.path;
    restart(f, c.id, "its first bytes changed");
    set_headers(f);
    schedule(f);
    return;
  }
  if (a.renamed) {
    // Renamed to a name that is still watched: same file, same offset.
    group_metrics_[f.group].rotations->inc();
    spdlog::debug("taildir {}: {} is now {}", ctx_.name, f.path, c.path);
    f.path = c.path;
    f.group = c.group;
    set_headers(f);
  }
  // A scan's longer fingerprint, unless reads have learnt more of the first bytes meanwhile.
  if (a.longer_fingerprint && stale.count(f.key) == 0 && c.id.fp_len > f.id.fp_len) f.id = c.id;
  std::uint64_t size = c.size;
  if (size < f.read_offset) {
    // The scan's stat may predate our latest reads: ask the open file before concluding.
    struct stat now {};
    if (f.fd >= 0 && ::fstat(f.fd, &now) == 0) size = static_cast<std::uint64_t>(now.st_size);
    if (size < f.read_offset) {
      restart(f, c.id, fmt::format("{} < {} bytes read", size, f.read_offset));
    }
  }
  f.size = size;
  if (size > f.read_offset) schedule(f);
}

void TaildirSource::restart(File& f, const FileIdentity& id, std::string_view why,
                            std::string_view first_bytes) {
  group_metrics_[f.group].truncations->inc();
  spdlog::info("taildir {}: {} was truncated ({}): reading it again from the start", ctx_.name,
               f.path, why);
  f.restart(id, config_.lines, pipeline_.get(), first_bytes);
  positions_dirty_ = true;
}

void TaildirSource::restart(File& f, std::string_view first_bytes, std::string_view why) {
  FileIdentity id = f.id;
  id.fp_len = static_cast<std::uint32_t>(first_bytes.size());
  id.fp_hash = first_bytes.empty() ? 0 : hash_name(first_bytes);
  restart(f, id, why, first_bytes);
}

TaildirSource::File* TaildirSource::track(const Candidate& c, std::uint64_t key,
                                          std::uint64_t start) {
  auto f = std::make_unique<File>(
      key, c.path, c.group, c.id, start,
      source_hash_ ^
          event_id(static_cast<std::uint64_t>(c.id.dev) * 1000003ULL + c.id.ino, c.id.fp_hash));
  f->size = c.size;
  f->probe_binary = start == 0 && c.size < kBinaryProbeBytes;
  set_headers(*f);
  f->start_reading(config_.lines, pipeline_.get(), start);
  File* raw = f.get();
  files_.emplace(f->key, std::move(f));
  positions_dirty_ = true;
  spdlog::info("taildir {}: watching {} from offset {}", ctx_.name, c.path, start);
  schedule(*raw);
  return raw;
}

void TaildirSource::untrack(File& f, const char* why) {
  spdlog::info("taildir {}: closing {}: {}", ctx_.name, f.path, why);
  if (f.stream->holding()) {
    // The file is done: what multiline held back is a complete record.
    f.stream->flush_multiline(batcher_, wall_clock_ns(), /*due_only=*/false);
    seal();
  }
  close_fd(f);
  const std::uint64_t key = f.key;
  std::erase(read_queue_, key);
  positions_dirty_ = true;
  files_.erase(key);  // pending acks for it are ignored from now on
}

void TaildirSource::check_detached(File& f) {
  if (!f.detached || f.reading) return;
  f.refresh();
  if (f.read_offset < f.size && f.fd >= 0) return schedule(f);  // not at its end yet
  const bool idle =
      std::chrono::steady_clock::now() - f.last_activity >= config_.close_removed_after;
  if (f.fd < 0 || idle)
    untrack(f, f.removed ? "deleted and read to its end" : "renamed away and read to its end");
}

void TaildirSource::schedule(File& f) {
  if (f.queued || f.reading || stopping_) return;
  f.queued = true;
  read_queue_.push_back(f.key);
  pump_reads();
}

bool TaildirSource::ensure_open(File& f) {
  if (f.fd >= 0) return true;
  if (f.detached) return false;  // cannot reopen by a name that is no longer its own
  int err = 0;
  if (!f.open_by_name(err)) {
    if (err != 0 && warned_.insert(f.path).second) {
      read_errors_.inc();
      spdlog::warn("taildir {}: cannot open {}: {} (logged once)", ctx_.name, f.path,
                   std::strerror(err));
    }
    return false;
  }
  ++open_files_;
  enforce_open_limit(&f);
  return true;
}

void TaildirSource::close_fd(File& f) {
  if (f.fd < 0) return;
  f.close();
  --open_files_;
}

// Keeps at most max_open_files descriptors: the least recently active idle files are closed and
// reopened by name when they change.
void TaildirSource::enforce_open_limit(File* keep) {
  while (open_files_ > config_.max_open_files) {
    File* victim = nullptr;
    for (auto& [key, f] : files_) {
      if (f.get() == keep || f->fd < 0 || f->reading || f->detached || f->queued) continue;
      if (victim == nullptr || f->last_activity < victim->last_activity) victim = f.get();
    }
    if (victim == nullptr) return;
    close_fd(*victim);
    victim->closed_for_limit = true;
  }
}

void TaildirSource::pump_reads() {
  while (!batcher_.blocked() && !stopping_ && !read_queue_.empty() &&
         reads_in_flight_ < kMaxConcurrentReads) {
    const std::uint64_t key = read_queue_.front();
    read_queue_.pop_front();
    File* f = by_key(key);
    if (f == nullptr) continue;
    f->queued = false;
    if (!ensure_open(*f)) continue;
    ReadSlot* slot = nullptr;
    for (auto& s : slots_) {
      if (!s->busy) slot = s.get();
    }
    SLUICE_ASSERT(slot != nullptr);
    slot->busy = true;
    slot->buf.acquire(config_.read_buffer.bytes);  // kept while reads fill it (see end_read)
    slot->file_key = key;
    slot->fd = f->fd;
    slot->offset = f->read_offset;
    slot->generation = f->generation;
    // Past the start, the first bytes are read again just before and just after the read: if they
    // are not those known, the bytes read may be new content past the old offset.
    slot->check_prefix = slot->offset > 0;
    slot->before.bytes.resize(config_.fingerprint_bytes);
    slot->after.bytes.resize(config_.fingerprint_bytes);
    slot->restart_after = false;
    f->reading = true;
    ++reads_in_flight_;
    uv_queue_work(
        ctx_.loop.uv(), &slot->req,
        [](uv_work_t* req) { read_slot(*static_cast<ReadSlot*>(req->data)); },
        [](uv_work_t* req, int) {
          auto* s = static_cast<ReadSlot*>(req->data);
          s->self->on_read(*s, s->result);
        });
  }
}

void TaildirSource::on_read(ReadSlot& slot, ssize_t n) {
  slot.result = n;
  slot.len = slot.used = 0;
  File* f = by_key(slot.file_key);
  // A read that raced a truncation (its offset or generation is no longer the file's) belongs to
  // the old content: not parsed.
  if (f != nullptr && n > 0 && slot.offset == f->read_offset && slot.generation == f->generation) {
    const std::string_view data(slot.buf.data(), static_cast<std::size_t>(n));
    const std::uint32_t fp = config_.fingerprint_bytes;
    if (slot.offset == 0 && f->probe_binary && f->generation == 0 &&
        std::memchr(data.data(), '\0', std::min(data.size(), kBinaryProbeBytes)) != nullptr) {
      if (warned_.insert(f->path).second) {
        skipped_binary_.inc();
        spdlog::warn(
            "taildir {}: {} looks binary (NUL bytes in its first {} bytes); not reading it",
            ctx_.name, f->path, kBinaryProbeBytes);
      }
      untrack(*f, "binary");  // the next scan finds it binary and leaves it
      end_read(slot);
      return;
    }
    if (slot.offset == 0) {
      f->probe_binary = false;
      f->learn_head(data, fp);
    } else if (slot.before.read && !f->same_head(slot.before.bytes, fp)) {
      // Truncated and written past the old offset since the last read: the bytes read are the
      // new content's from the old offset on, not the continuation. Read it again from 0.
      restart(*f, slot.before.bytes,
              fmt::format("its first bytes changed; {} bytes at offset {} were new content", n,
                          slot.offset));
      end_read(slot);
      return;
    } else if (slot.after.read && !f->same_head(slot.after.bytes, fp)) {
      // Rewritten while this read ran: its bytes may be the old content's last ones or the new
      // content's from the old offset on. Parsed (nothing lost), then read again from 0 (what
      // was new content is then read twice).
      slot.restart_after = true;
    }
    f->last_activity = std::chrono::steady_clock::now();
    group_metrics_[f->group].bytes->inc(static_cast<std::uint64_t>(n));
    metrics_.bytes.inc(static_cast<std::uint64_t>(n));
    slot.len = static_cast<std::size_t>(n);
    if (!parse_some(slot, *f)) return;  // goes on at the next loop turn
  }
  end_read(slot);
}

// Parses what is left of a read for at most kParseSlice (only parsing can be that slow), then
// lets the loop serve other work. False if some is left for the next turn.
bool TaildirSource::parse_some(ReadSlot& slot, File& f) {
  std::uint64_t lines = 0;
  slot.used += f.consume({slot.buf.data() + slot.used, slot.len - slot.used}, batcher_,
                         wall_clock_ns(), std::chrono::steady_clock::now() + kParseSlice, lines);
  group_metrics_[f.group].lines->inc(lines);
  if (const std::uint64_t n = f.stream->take_overflows(); n > 0) metrics_.overflows.inc(n);
  seal();
  // When stopping, the rest is read again after a restart: its offsets were never saved.
  if (slot.used == slot.len || stopping_) return true;
  parsing_.push_back(&slot);
  parse_turn_.arm();
  return false;
}

void TaildirSource::continue_parsing() {
  std::vector<ReadSlot*> slots;
  slots.swap(parsing_);
  for (ReadSlot* s : slots) {
    File* f = by_key(s->file_key);
    if (f == nullptr || f->generation != s->generation) {
      s->len = 0;  // gone, or truncated meanwhile: the rest was old content
      end_read(*s);
    } else if (parse_some(*s, *f)) {
      end_read(*s);
    }
  }
}

void TaildirSource::end_read(ReadSlot& slot) {
  const ssize_t n = slot.result;
  const bool full = n > 0 && static_cast<std::size_t>(n) == slot.buf.size();
  // A read that did not fill the buffer reached the end of the file: the next one waits for an
  // event, so the buffer goes back to the system until then. While a backlog is read, every read
  // fills it and it stays mapped (no page faults per read at full speed).
  if (!full) slot.buf.release();
  slot.busy = false;
  --reads_in_flight_;
  File* f = by_key(slot.file_key);
  if (f != nullptr && slot.restart_after && f->generation == slot.generation) {
    f->reading = false;
    restart(*f, slot.after.bytes,
            fmt::format("its first bytes changed while {} bytes at offset {} were read", n,
                        slot.offset));
    schedule(*f);
  } else if (f != nullptr) {
    f->reading = false;
    if (n < 0) {
      read_errors_.inc();
      spdlog::warn("taildir {}: read {} failed: {}", ctx_.name, f->path,
                   uv_strerror(static_cast<int>(n)));
      untrack(*f, "read error");
    } else if (n > 0 && slot.len == 0) {
      // Truncated while this read was in flight: its bytes belong to the old content. The new
      // content is read from where the file is now.
      schedule(*f);
    } else if (n > 0) {
      if (full) {
        schedule(*f);  // more is likely there
      } else if (f->detached) {
        check_detached(*f);
      }
    } else {
      // At the end: a file truncated below our offset is caught here too, not only by the rescan.
      struct stat st {};
      if (f->fd >= 0 && ::fstat(f->fd, &st) == 0) {
        f->size = static_cast<std::uint64_t>(st.st_size);
        if (f->size < f->read_offset) {
          rescan_requested_ = true;
          scan();
        }
      }
      if (f->detached) check_detached(*f);
    }
  }
  batcher_.flush();
  pump_reads();
  if (stopping_) stop_waiter_.check();
}

void TaildirSource::set_headers(File& f) {
  f.set_headers(config_.file_header, config_.groups[f.group].headers);
}

void TaildirSource::flush_multiline(bool due_only) {
  const std::int64_t now = wall_clock_ns();
  for (auto& [key, f] : files_) f->stream->flush_multiline(batcher_, now, due_only);
  seal();
}

void TaildirSource::seal() {
  batcher_.seal();
  batcher_.flush();
}

// Called when a batch is sealed: the file's identity and path as they are now go with it.
void TaildirSource::on_sealed(LineCheckpoint& cp) {
  if (!durable_) return;
  SavedPosition p;
  if (const File* f = by_key(cp.stream)) {
    p.path = f->path;
    p.id = f->id;
  }
  p.offset = cp.end;
  // Stored with the batch by a durable channel: "DEV:INO" -> "DEV INO FP_LEN FP_HASH OFFSET PATH".
  cp.position = encode_channel_position(p);
  cp.key = channel_position_key(p.id);
}

void TaildirSource::on_put(std::uint64_t seq, const LineCheckpoint& cp) {
  pending_.push_back({seq, cp.stream, cp.generation, cp.end});
}

void TaildirSource::on_output_writable() {
  pump_reads();
  if (stopping_) stop_waiter_.check();
}

void TaildirSource::on_safe(std::uint64_t seq) noexcept {
  while (!pending_.empty() && pending_.front().seq <= seq) {
    const Pending p = pending_.front();
    pending_.pop_front();
    File* f = by_key(p.file_key);
    if (f == nullptr || f->generation != p.generation) continue;
    if (p.end_offset > f->safe_offset) {
      unsaved_bytes_ += p.end_offset - f->safe_offset;
      f->safe_offset = p.end_offset;
      positions_dirty_ = true;
    }
  }
  // A durable channel keeps exact positions with its batches; the file only lags them.
  if (!durable_ && unsaved_bytes_ >= config_.checkpoint_bytes.bytes) write_positions_async();
}

std::vector<SavedPosition> TaildirSource::snapshot() const {
  std::vector<SavedPosition> out;
  for (const auto& [key, f] : files_) out.push_back({f->path, f->id, f->safe_offset});
  // Positions read at start whose files were not seen yet stay until a scan settles them.
  for (const auto& [k, p] : saved_) out.push_back(p);
  return out;
}

void TaildirSource::write_positions_async() {
  // Once stopping, the owner's persist_checkpoint() writes the last positions: a job started now
  // (an acknowledgement after stop) could outlive this source and race that write.
  if (stopping_ || !positions_dirty_ || writing_positions_) return;
  positions_dirty_ = false;
  writing_positions_ = true;
  unsaved_bytes_ = 0;
  struct Job {
    uv_work_t req;
    TaildirSource* self;
    std::string path;
    std::vector<SavedPosition> positions;
    Status result;
  };
  auto* job = new Job{};
  job->req.data = job;
  job->self = this;
  job->path = positions_path_;
  job->positions = snapshot();
  uv_queue_work(
      ctx_.loop.uv(), &job->req,
      [](uv_work_t* req) {
        auto* j = static_cast<Job*>(req->data);
        j->result = save_positions(j->path, j->positions);
      },
      [](uv_work_t* req, int) {
        auto* j = static_cast<Job*>(req->data);
        TaildirSource* self = j->self;
        self->writing_positions_ = false;
        if (!j->result.ok()) {
          // Retried at the next checkpoint_interval, not at once: a full disk stays full a while.
          self->positions_dirty_ = true;
          spdlog::error("taildir {}: cannot save positions: {}", self->ctx_.name,
                        j->result.message());
        } else if (!self->durable_ &&
                   self->unsaved_bytes_ >= self->config_.checkpoint_bytes.bytes) {
          self->write_positions_async();  // acknowledged past the bound while this one was written
        }
        self->stop_waiter_.check();
        delete j;
      });
}

void TaildirSource::persist_checkpoint() {
  Status st = save_positions(positions_path_, snapshot());
  if (!st.ok()) spdlog::error("taildir {}: cannot save positions: {}", ctx_.name, st.message());
}

// Keeps one inotify watch per directory the scan read, and on the nearest existing ancestor of
// each missing root. Returns true if a watch was added. A directory replaced under the same name
// (another inode) is watched again; one that can no longer be watched is left to the rescan.
bool TaildirSource::update_watches(const std::vector<WatchedDir>& dirs) {
  std::map<std::string, const WatchedDir*> want;
  for (const auto& d : dirs) {
    auto [it, fresh] = want.emplace(d.path, &d);
    if (!fresh && !d.ancestor) it->second = &d;  // read by the walk too: a watched dir proper
  }
  for (auto it = watches_.begin(); it != watches_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || w->second->dev != it->second.dev || w->second->ino != it->second.ino) {
      close_watch(it->second);
      it = watches_.erase(it);
    } else {
      it->second.ancestor = w->second->ancestor;
      ++it;
    }
  }
  bool added = false;
  for (const auto& [path, d] : want) {
    if (watches_.count(path) != 0) continue;
    Watch w{nullptr, d->dev, d->ino, d->ancestor};
    auto* h = new uv_fs_event_t{};
    uv_fs_event_init(ctx_.loop.uv(), h);
    h->data = this;
    const int rc = uv_fs_event_start(
        h,
        [](uv_fs_event_t* handle, const char* filename, int events, int status) {
          auto* self = static_cast<TaildirSource*>(handle->data);
          if (self == nullptr || status != 0) return;
          char buf[4096];
          std::size_t len = sizeof buf;
          if (uv_fs_event_getpath(handle, buf, &len) != 0) return;
          self->on_fs_event(std::string(buf, len), filename, events);
        },
        path.c_str(), 0);
    if (rc == 0) {
      w.handle = h;
      added = true;
    } else {
      // Remembered as unwatched, so that it is not retried at every scan; the rescan still finds
      // its files, rescan_interval later.
      h->data = nullptr;
      close_and_delete(h);
      if (warned_.insert("watch " + path).second) {
        spdlog::warn(
            "taildir {}: cannot watch {}: {}; new files there are found by the rescan (every {} "
            "ms) (logged once)",
            ctx_.name, path, uv_strerror(rc),
            std::chrono::duration_cast<std::chrono::milliseconds>(config_.rescan_interval).count());
      }
    }
    watches_.emplace(path, w);
  }
  return added;
}

void TaildirSource::close_watch(Watch& w) {
  if (w.handle == nullptr) return;
  w.handle->data = nullptr;
  uv_fs_event_stop(w.handle);
  close_and_delete(w.handle);
  w.handle = nullptr;
}

bool TaildirSource::leads_to_root(const std::string& path) const {
  for (const auto& r : roots_) {
    if (r == path ||
        (r.size() > path.size() && r.compare(0, path.size(), path) == 0 && r[path.size()] == '/'))
      return true;
  }
  return false;
}

void TaildirSource::on_fs_event(const std::string& dir, const char* filename, int events) {
  if (stopping_) return;
  auto w = watches_.find(dir);
  if (w != watches_.end() && w->second.ancestor) {
    // Above a missing root: only the creation of a directory on the way to it matters.
    if (filename == nullptr || leads_to_root((dir == "/" ? "" : dir) + "/" + filename)) scan();
    return;
  }
  if ((events & UV_RENAME) != 0) scan();  // created, renamed or deleted: discover now
  if (filename == nullptr) return;
  const std::string path = (dir == "/" ? "" : dir) + "/" + filename;
  for (auto& [key, f] : files_) {
    if (f->path == path) schedule(*f);
  }
}

void TaildirSource::update_lag() {
  std::vector<std::int64_t> lag(config_.groups.size(), 0);
  for (const auto& [key, f] : files_) {
    if (f->size > f->read_offset)
      lag[f->group] += static_cast<std::int64_t>(f->size - f->read_offset);
  }
  for (std::size_t g = 0; g < lag.size(); ++g) group_metrics_[g].lag->set(lag[g]);
}

void TaildirSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  scan_timer_.stop();
  poll_timer_.stop();
  multiline_timer_.stop();  // held lines are past the saved offsets: read again after a restart
  read_queue_.clear();
  for (auto& [key, f] : files_) f->queued = false;
  // What was read but not taken by a channel is read again after a restart (its offsets were
  // never saved): a full channel behind a dead sink must not hold the shutdown.
  const std::size_t dropped = batcher_.drop_ready() + output_.drop_waiting();
  if (dropped > 0) {
    spdlog::info(
        "taildir {}: {} batches not taken by the full channel will be read again after a restart",
        ctx_.name, dropped);
  }
  // Stopped once no read or scan is in flight and every sealed batch was put.
  stop_waiter_.wait(
      [this] {
        batcher_.flush();
        const bool idle =
            reads_in_flight_ == 0 && !scanning_ && batcher_.idle() && !writing_positions_;
        if (idle) checkpoint_timer_.stop();
        return idle;
      },
      std::move(on_stopped));
}

}  // namespace sluice::sources
