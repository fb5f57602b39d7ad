#include "lib/ingest/line_source.h"

#include <sys/random.h>
#include <unistd.h>

#include <atomic>

#include "lib/core/clock.h"

namespace sluice::sources {
namespace {

std::uint64_t process_epoch() noexcept {
  static const std::uint64_t epoch = [] {
    std::uint64_t v = 0;
    // Non-blocking: early in boot the entropy pool may not be ready, and an id must not wait for
    // it; the time and pid then still differ from one start to the next.
    if (::getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
      v = static_cast<std::uint64_t>(wall_clock_ns()) ^
          (static_cast<std::uint64_t>(::getpid()) << 40) ^
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return v;
  }();
  return epoch;
}

std::atomic<std::uint64_t> id_bases_made{0};

}  // namespace

std::uint64_t hash_name(std::string_view name) noexcept {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::uint64_t run_id_base(std::string_view name) noexcept {
  return hash_name(name) ^ event_id(process_epoch(), id_bases_made.fetch_add(1));
}

std::uint64_t event_id(std::uint64_t source_hash, std::uint64_t position) noexcept {
  std::uint64_t z = source_hash + 0x9e3779b97f4a7c15ULL * (position + 1);  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Result<std::unique_ptr<parse::EventPipeline>> LineReader::make_pipeline(const LineConfig& config,
                                                                        const SourceContext& ctx) {
  return parse::EventPipeline::make(config.pipeline, ctx);
}

LineReader::LineReader(SourceContext& ctx, const LineConfig& config, LineReaderHost& host,
                       std::unique_ptr<parse::EventPipeline> pipeline)
    : output_(ctx.output),
      host_(host),
      splitter_(config),
      id_base_(run_id_base(ctx.name)),
      max_batch_(ctx.output.max_batch_events()),
      pipeline_(std::move(pipeline)),
      multiline_timer_(ctx.loop),
      ready_(4),
      metrics_(ctx) {
  output_.set_listener(this);
  if (pipeline_ && pipeline_->trivial()) pipeline_.reset();
  if (pipeline_ && pipeline_->multiline() != nullptr) assembler_.emplace(*pipeline_->multiline());
}

void LineReader::add_line(std::string_view line) {
  const std::uint64_t n = line_seq_++;
  if (!pipeline_) {
    current_.add(line, now_ns_, event_id(id_base_, n));
    if (current_.size() >= max_batch_) seal_current();
    return;
  }
  if (assembler_) {
    add_records(assembler_->push(line, n, n + 1, now_ns_));
    if (assembler_->holding() && !multiline_timer_.active()) {
      const auto timeout = pipeline_->config().multiline.timeout;
      const Duration tick = std::max<Duration>(timeout / 4, std::chrono::milliseconds(1));
      multiline_timer_.start(
          tick, [this] { on_multiline_timer(); }, tick);
    }
    return;
  }
  parse::Record r;
  r.text = line;
  r.start = n;
  r.end = n + 1;
  pipeline_->process(r, now_ns_, event_id(id_base_, n), current_);
  if (current_.size() >= max_batch_) seal_current();
}

void LineReader::add_records(const std::vector<parse::Record>& records) {
  for (const auto& r : records) {
    pipeline_->process(r, now_ns_, event_id(id_base_, r.start), current_, {}, r.start);
    if (current_.size() >= max_batch_) seal_current();
  }
  pipeline_->sync_multiline_metrics();
}

void LineReader::on_multiline_timer() {
  now_ns_ = wall_clock_ns();
  add_records(assembler_->flush_due(now_ns_));
  if (!assembler_->holding()) multiline_timer_.stop();
  seal_current();
  flush_ready();
}

void LineReader::seal_current() {
  if (current_.empty()) return;
  if (ready_count_ == ready_.size()) {
    // Grow the ring of sealed batches; bounded by one read's worth of lines.
    std::vector<Batch> bigger(ready_.size() * 2);
    for (std::size_t i = 0; i < ready_count_; ++i)
      bigger[i].swap(ready_[(ready_head_ + i) % ready_.size()]);
    ready_.swap(bigger);
    ready_head_ = 0;
  }
  Batch& slot = ready_[(ready_head_ + ready_count_) % ready_.size()];
  slot.clear();
  slot.swap(current_);
  ++ready_count_;
}

void LineReader::flush_ready() {
  while (ready_count_ > 0 && output_.writable()) {
    Batch& b = ready_[ready_head_];
    const std::size_t n = b.size();
    const std::uint64_t bytes = b.bytes();
    output_.put(b, {});
    metrics_.events.inc(n);
    metrics_.bytes.inc(bytes);
    ready_head_ = (ready_head_ + 1) % ready_.size();
    --ready_count_;
  }
  if (ready_count_ > 0 && !paused_) {
    paused_ = true;
    host_.pause_reading();
  }
}

void LineReader::on_bytes(std::string_view data) {
  now_ns_ = wall_clock_ns();
  splitter_.feed(data, [this](std::string_view line) { add_line(line); });
  if (splitter_.overflows() != overflows_seen_) {
    metrics_.overflows.inc(splitter_.overflows() - overflows_seen_);
    overflows_seen_ = splitter_.overflows();
  }
  seal_current();
  flush_ready();
}

void LineReader::on_eof() {
  now_ns_ = wall_clock_ns();
  splitter_.finish([this](std::string_view line) { add_line(line); });
  if (assembler_) {
    add_records(assembler_->flush());
    multiline_timer_.stop();
  }
  seal_current();
  flush_ready();
}

void LineReader::on_writable() noexcept {
  flush_ready();
  if (ready_count_ == 0 && paused_) {
    paused_ = false;
    host_.resume_reading();
  }
}

}  // namespace sluice::sources
