#pragma once

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/result.h"
#include "lib/core/source.h"
#include "lib/core/source_metrics.h"
#include "lib/core/source_output.h"
#include "lib/core/stop_waiter.h"
#include "lib/ingest/line_source.h"
#include "lib/ingest/line_splitter.h"
#include "sources/taildir/positions.h"
#include "sources/taildir/reconcile.h"
#include "sources/taildir/scan.h"
#include "sources/taildir/tail_file.h"
#include "sources/taildir/taildir_config.h"

namespace sluice::sources {

/// Follows files matched by globs through rotation (rename + create, copytruncate, truncation),
/// keeping an offset per file identity. With a memory channel, offsets are persisted only once
/// every line before them was acknowledged by the sinks (on_safe); a crash re-reads, never loses.
class TaildirSource final : public Source, private LineReaderHost {
 public:
  TaildirSource(const TaildirConfig& config, SourceContext& ctx, std::vector<SavedPosition> saved,
                std::unique_ptr<parse::EventPipeline> pipeline = nullptr);
  ~TaildirSource() override;
  static Result<std::unique_ptr<TaildirSource>> create(const TaildirConfig& config,
                                                       SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  void persist_checkpoint() override;

 private:
  using File = TailFile;
  struct GroupMetrics {
    Gauge* files;
    Gauge* lag;
    Counter* bytes;
    Counter* lines;
    Counter* rotations;
    Counter* truncations;
  };
  struct Watch {
    uv_fs_event_t* handle = nullptr;  // null: could not be watched (left to the rescan)
    dev_t dev = 0;
    ino_t ino = 0;
    bool ancestor = false;
  };
  struct Pending {
    std::uint64_t seq;
    std::uint64_t file_key;
    std::uint64_t generation;
    std::uint64_t end_offset;
  };
  /// The file's first bytes (up to fingerprint_bytes), read around a read past the start.
  struct Prefix {
    std::string bytes;
    bool read = false;  // `bytes` holds what the file had (false on a read error, or not read)
  };
  /// One read on the threadpool: `buf` at `offset`, and for offset > 0 the file's first bytes
  /// just before and just after it, so that a file truncated and rewritten past the offset is
  /// told from one that grew.
  /// A slot's read buffer (read_buffer bytes), mapped when a read starts and unmapped once the
  /// file is caught up, so an idle source holds none of it (4 x 256 KiB by default) and a burst's
  /// pages go back to the system when it ends. Pages a short read never touched are not resident.
  class ReadBuffer {
   public:
    ReadBuffer() = default;
    ReadBuffer(const ReadBuffer&) = delete;
    ReadBuffer& operator=(const ReadBuffer&) = delete;
    ~ReadBuffer() { release(); }
    bool acquire(std::size_t size);  // false when it cannot be mapped (ENOMEM)
    void release();
    void count_in(Gauge* mapped) { mapped_ = mapped; }  // sluice_taildir_read_buffer_bytes
    char* data() const { return data_; }
    std::size_t size() const { return size_; }

   private:
    char* data_ = nullptr;
    std::size_t size_ = 0;
    Gauge* mapped_ = nullptr;
  };
  struct ReadSlot {
    uv_work_t req{};
    ReadBuffer buf;
    int fd = -1;
    std::uint64_t file_key = 0;
    std::uint64_t offset = 0;
    ssize_t result = 0;             // what the read returned (-errno on error)
    std::size_t len = 0, used = 0;  // bytes of it for the file's reader, and parsed so far
    std::uint64_t generation = 0;   // the file's, when read: parsing stops if it changes
    bool check_prefix = false;      // read the prefixes (offset > 0)
    Prefix before, after;
    bool restart_after = false;  // rewritten during the read: restart once its bytes are parsed
    bool busy = false;
    TaildirSource* self = nullptr;
  };
  /// What a scan hashed for each followed file: its generation and identity when asked.
  using Asked = std::map<std::uint64_t, std::pair<std::uint64_t, FileIdentity>>;
  // The scan's relocated files, while on_scanned applies its actions (apply() takes from it).
  std::vector<RelocatedFile>* relocated_ = nullptr;

  void scan();
  void on_scanned(ScanResult result, const Asked& asked);
  /// Closes the descriptors of relocated files nobody took.
  static void close_relocated(std::vector<RelocatedFile>& relocated) noexcept;
  void apply(const ScanAction& a, const std::vector<Candidate>& found,
             const std::set<std::uint64_t>& stale);
  File* track(const Candidate& c, std::uint64_t key, std::uint64_t start);
  void untrack(File& f, const char* why);
  void schedule(File& f);
  void pump_reads();
  static void read_slot(ReadSlot& slot);
  void on_read(ReadSlot& slot, ssize_t n);
  bool parse_some(ReadSlot& slot, File& f);
  void continue_parsing();
  void end_read(ReadSlot& slot);
  void flush_multiline(bool due_only);
  void seal();
  void restart(File& f, const FileIdentity& id, std::string_view why,
               std::string_view first_bytes = {});
  /// Restarts `f` as the content whose first bytes (up to fingerprint_bytes) are `first_bytes`.
  void restart(File& f, std::string_view first_bytes, std::string_view why);
  void set_headers(File& f);
  bool ensure_open(File& f);
  void close_fd(File& f);
  void enforce_open_limit(File* keep);
  void check_detached(File& f);
  // LineReaderHost: reads are started by pump_reads(), which checks batcher_.blocked().
  void pause_reading() override {}
  void resume_reading() override {}
  void on_safe(std::uint64_t seq) noexcept override;
  void on_sealed(LineCheckpoint& cp) override;
  void on_put(std::uint64_t seq, const LineCheckpoint& cp) override;
  void on_output_writable() override;
  bool update_watches(const std::vector<WatchedDir>& dirs);
  void close_watch(Watch& w);
  bool leads_to_root(const std::string& path) const;
  void on_fs_event(const std::string& dir, const char* filename, int events);
  std::vector<SavedPosition> snapshot() const;
  void write_positions_async();
  void update_lag();
  File* by_key(std::uint64_t key);

  TaildirConfig config_;
  SourceContext& ctx_;
  SourceOutput& output_;
  std::string positions_path_;
  std::map<std::pair<dev_t, ino_t>, SavedPosition>
      saved_;  // from the positions file, until matched
  std::map<std::uint64_t, std::unique_ptr<File>> files_;
  std::uint64_t next_key_ = 0;
  std::deque<std::uint64_t> read_queue_;
  std::vector<std::unique_ptr<ReadSlot>> slots_;
  std::size_t reads_in_flight_ = 0;
  std::vector<ReadSlot*> parsing_;  // reads whose parsing goes on at the next loop turn
  std::size_t open_files_ = 0;
  bool durable_ = false;                            // the output stores positions with the batches
  std::unique_ptr<parse::EventPipeline> pipeline_;  // null for raw lines
  Timer multiline_timer_;
  std::deque<Pending> pending_;  // put, not yet safe
  bool positions_dirty_ = false, writing_positions_ = false;
  std::uint64_t unsaved_bytes_ = 0;  // acknowledged since the last positions snapshot
  bool scanning_ = false, first_scan_done_ = false, rescan_requested_ = false;
  bool stopping_ = false;
  std::map<std::string, Watch> watches_;
  std::vector<std::string> roots_;  // glob_root() of every pattern
  std::set<std::string> warned_;
  Timer scan_timer_, poll_timer_, checkpoint_timer_;
  NextTurn parse_turn_;
  StopWaiter stop_waiter_;
  std::uint64_t source_hash_;
  std::vector<GroupMetrics> group_metrics_;
  SourceMetrics metrics_;
  Counter& skipped_binary_;
  Counter& read_errors_;
  Gauge& read_buffer_bytes_;
  LineBatcher batcher_;  // after metrics_: it counts events in them
};

}  // namespace sluice::sources
