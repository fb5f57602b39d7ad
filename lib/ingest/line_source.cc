#include "lib/ingest/line_source.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "lib/codec/hash.h"
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

std::uint64_t hash_name(std::string_view name) noexcept { return codec::fnv1a64(name); }

std::uint64_t run_id_base(std::string_view name) noexcept {
  return hash_name(name) ^ event_id(process_epoch(), id_bases_made.fetch_add(1));
}

std::uint64_t event_id(std::uint64_t source_hash, std::uint64_t position) noexcept {
  std::uint64_t z = source_hash + 0x9e3779b97f4a7c15ULL * (position + 1);  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

NextTurn::NextTurn(Loop& loop, std::function<void()> fn)
    : idle_(new uv_idle_t{}), fn_(std::move(fn)) {
  uv_idle_init(loop.uv(), idle_);
  idle_->data = this;
}

NextTurn::~NextTurn() {
  idle_->data = nullptr;
  uv_idle_stop(idle_);
  close_and_delete(idle_);
}

void NextTurn::arm() {
  if (armed_) return;
  armed_ = true;
  uv_idle_start(idle_, [](uv_idle_t* h) {
    auto* self = static_cast<NextTurn*>(h->data);
    if (self == nullptr) return;
    uv_idle_stop(h);
    self->armed_ = false;
    self->fn_();
  });
}

void NextTurn::cancel() {
  armed_ = false;
  uv_idle_stop(idle_);
}

// LineBatcher

LineBatcher::LineBatcher(SourceContext& ctx, LineReaderHost& host, SourceMetrics& metrics,
                         bool count_at_put)
    : output_(ctx.output),
      host_(host),
      metrics_(metrics),
      count_at_put_(count_at_put),
      max_batch_(ctx.output.max_batch_events()),
      ready_(4) {
  output_.set_listener(this);
}

void LineBatcher::begin(std::uint64_t stream, std::uint64_t generation, const Headers* headers) {
  if (stream != stream_ || generation != generation_) seal();
  stream_ = stream;
  generation_ = generation;
  headers_ = headers;
  if (current_.empty() && !has_processed_) fresh_ = true;
}

Batch& LineBatcher::next() {
  // Sealed only when the next event comes, so that the last one's end can still move.
  if (current_.size() >= max_batch_) seal_into_ready();
  if (fresh_) {
    // Every event of a batch comes from one stream: its headers are stored once.
    if (headers_ != nullptr) {
      for (const auto& [k, v] : *headers_) current_.set_common_header(k, v);
    }
    fresh_ = false;
  }
  return current_;
}

void LineBatcher::seal() {
  if (current_.empty() && !has_processed_) return;
  if (current_.empty() && ready_count_ > 0) {
    // Only dropped records since the last batch, which still waits: it carries their position.
    Ready& last = ready_[(ready_head_ + ready_count_ - 1) % ready_.size()];
    if (last.cp.stream == stream_ && last.cp.generation == generation_) {
      if (processed_ > last.cp.end) {
        last.cp.end = processed_;
        host_.on_sealed(last.cp);
      }
      has_processed_ = false;
      processed_ = 0;
      return;
    }
  }
  seal_into_ready();
}

void LineBatcher::seal_into_ready() {
  if (ready_count_ == ready_.size()) {
    // Grow the ring of sealed batches; bounded by one read's worth of lines.
    std::vector<Ready> bigger(ready_.size() * 2);
    for (std::size_t i = 0; i < ready_count_; ++i) {
      Ready& from = ready_[(ready_head_ + i) % ready_.size()];
      bigger[i].batch.swap(from.batch);
      bigger[i].cp = std::move(from.cp);
    }
    ready_.swap(bigger);
    ready_head_ = 0;
  }
  Ready& slot = ready_[(ready_head_ + ready_count_) % ready_.size()];
  slot.batch.clear();
  slot.batch.swap(current_);
  slot.cp.stream = stream_;
  slot.cp.generation = generation_;
  // Records the pipeline dropped still move the checkpoint: an empty batch carries it.
  slot.cp.end = ends_.empty() ? 0 : ends_.back();
  if (has_processed_) slot.cp.end = std::max(slot.cp.end, processed_);
  slot.cp.position.clear();
  slot.cp.key.clear();
  host_.on_sealed(slot.cp);
  if (!count_at_put_) metrics_.events.inc(slot.batch.size());
  ++ready_count_;
  ends_.clear();
  has_processed_ = false;
  processed_ = 0;
  fresh_ = true;
}

void LineBatcher::flush() {
  while (ready_count_ > 0 && output_.writable()) {
    Ready& r = ready_[ready_head_];
    const std::size_t n = r.batch.size();
    const std::uint64_t bytes = r.batch.bytes();
    const std::uint64_t seq = output_.put(r.batch, r.cp.position, r.cp.key);
    host_.on_put(seq, r.cp);
    if (count_at_put_) {
      metrics_.events.inc(n);
      metrics_.bytes.inc(bytes);
    }
    ready_head_ = (ready_head_ + 1) % ready_.size();
    --ready_count_;
  }
  if (ready_count_ > 0 && !paused_) {
    paused_ = true;
    host_.pause_reading();
  }
}

void LineBatcher::on_writable() noexcept {
  flush();
  if (ready_count_ == 0 && paused_) {
    paused_ = false;
    host_.resume_reading();
  }
  host_.on_output_writable();
}

std::size_t LineBatcher::drop_ready() {
  const std::size_t n = ready_count_;
  for (std::size_t i = 0; i < ready_count_; ++i)
    ready_[(ready_head_ + i) % ready_.size()].batch.clear();
  ready_head_ = ready_count_ = 0;
  return n;
}

// LineStream

LineStream::LineStream(const LineConfig& config, parse::EventPipeline* pipeline,
                       Positions positions, std::uint64_t id_base, std::uint64_t start)
    : splitter_(config),
      pipeline_(pipeline),
      positions_(positions),
      id_base_(id_base),
      offset_(start),
      line_end_(start) {
  if (pipeline_ != nullptr && pipeline_->multiline() != nullptr)
    assembler_.emplace(*pipeline_->multiline());
}

std::uint64_t LineStream::take_overflows() noexcept {
  const std::uint64_t n = splitter_.overflows() - overflows_seen_;
  overflows_seen_ = splitter_.overflows();
  return n;
}

// One record through the pipeline. `checkpoint_end` is where a restart may resume once this
// record is safe: never past bytes that multiline still holds back.
void LineStream::deliver(const parse::Record& r, std::uint64_t checkpoint_end, LineBatcher& out,
                         std::int64_t now_ns) {
  Batch& b = out.next();
  const std::size_t before = b.size();
  pipeline_->process(r, now_ns, event_id(id_base_, r.start), b, origin_, r.start);
  if (b.size() > before) out.ended(checkpoint_end);
  out.processed(checkpoint_end);
}

void LineStream::deliver_all(const std::vector<parse::Record>& records, LineBatcher& out,
                             std::int64_t now_ns) {
  for (const auto& r : records) {
    const std::uint64_t held = assembler_ ? assembler_->held_from() : UINT64_MAX;
    deliver(r, std::min(r.end, held), out, now_ns);
  }
  pipeline_->sync_multiline_metrics();
}

// `raw_end` is the checkpoint of a raw line: until its newline is seen, a piece of a line
// completes nothing.
void LineStream::add_line(std::string_view line, std::uint64_t start, std::uint64_t end,
                          std::uint64_t raw_end, LineBatcher& out, std::int64_t now_ns) {
  if (pipeline_ == nullptr) {
    out.next().add(line, now_ns, event_id(id_base_, start));
    out.ended(raw_end);
    ++raw_added_;
    return;
  }
  if (assembler_) {
    deliver_all(assembler_->push(line, start, end, now_ns), out, now_ns);
    return;
  }
  parse::Record r;
  r.text = line;
  r.start = start;
  r.end = end;
  deliver(r, end, out, now_ns);
}

// Splits the stream's next bytes into lines. In bytes mode each newline's position gives the
// offset a checkpoint may resume from; the bytes after the last newline wait in the splitter for
// the next read. A batch's checkpoint is the end of the last line it holds completely, so an
// acknowledged batch never covers a piece of a line whose rest is still unsent, and a restart
// repeats nothing else.
std::size_t LineStream::feed(std::string_view data, LineBatcher& out, std::int64_t now_ns,
                             TimePoint deadline) {
  begin(out);
  // Only parsing is slow enough to need a deadline; the clock is read every few lines.
  constexpr unsigned kLinesPerCheck = 8;
  const bool timed = pipeline_ != nullptr && deadline != TimePoint::max();
  unsigned since_check = 0;
  auto out_of_time = [&] {
    if (!timed || ++since_check < kLinesPerCheck) return false;
    since_check = 0;
    return std::chrono::steady_clock::now() >= deadline;
  };
  if (positions_ == Positions::lines) {
    auto on_line = [&](std::string_view line) {
      const std::uint64_t n = line_end_++;
      add_line(line, n, n + 1, n + 1, out, now_ns);
    };
    std::size_t used = data.size();
    if (!timed) {
      splitter_.feed(data, on_line);
    } else {
      // Line by line, so that it can stop between two.
      std::size_t pos = 0;
      while (pos < data.size()) {
        const void* nl = std::memchr(data.data() + pos, '\n', data.size() - pos);
        const std::size_t stop =
            nl != nullptr ? static_cast<std::size_t>(static_cast<const char*>(nl) - data.data()) + 1
                          : data.size();
        splitter_.feed(data.substr(pos, stop - pos), on_line);
        pos = stop;
        if (pos < data.size() && out_of_time()) break;
      }
      used = pos;
    }
    lines_ = line_end_;
    return used;
  }
  std::uint64_t line_start = line_end_;
  std::uint64_t seg_end = 0;
  auto add = [&](std::string_view line) {
    const std::uint64_t end = splitter_.complete() && seg_end != 0 ? seg_end : line_end_;
    add_line(line, line_start, end, line_end_, out, now_ns);
  };
  const char* p = data.data();
  const char* stop_all = p + data.size();
  while (p < stop_all) {
    const char* nl =
        static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(stop_all - p)));
    const char* stop = nl != nullptr ? nl + 1 : stop_all;
    const std::uint64_t raw_before = raw_added_;
    seg_end = nl != nullptr ? offset_ + static_cast<std::uint64_t>(stop - data.data()) : 0;
    splitter_.feed({p, static_cast<std::size_t>(stop - p)}, add);
    if (nl != nullptr) {
      line_end_ = seg_end;
      // The last piece handed out for this segment is the one that ends the line.
      if (pipeline_ == nullptr && raw_added_ > raw_before) out.set_last_end(line_end_);
      line_start = line_end_;
      ++lines_;
    }
    p = stop;
    if (p < stop_all && out_of_time()) break;
  }
  const auto used = static_cast<std::size_t>(p - data.data());
  offset_ += used;
  return used;
}

void LineStream::finish(LineBatcher& out, std::int64_t now_ns) {
  begin(out);
  splitter_.finish([&](std::string_view line) {
    const std::uint64_t n = positions_ == Positions::lines ? line_end_++ : line_end_;
    const std::uint64_t end = positions_ == Positions::lines ? n + 1 : offset_;
    add_line(line, n, end, end, out, now_ns);
  });
  if (positions_ == Positions::lines) lines_ = line_end_;
  if (assembler_) deliver_all(assembler_->flush(), out, now_ns);
}

void LineStream::flush_multiline(LineBatcher& out, std::int64_t now_ns, bool due_only) {
  if (!holding()) return;
  const auto& records = due_only ? assembler_->flush_due(now_ns) : assembler_->flush();
  if (records.empty()) return;
  begin(out);
  deliver_all(records, out, now_ns);
}

// LineReader

Result<std::unique_ptr<parse::EventPipeline>> LineReader::make_pipeline(const LineConfig& config,
                                                                        const SourceContext& ctx) {
  return parse::EventPipeline::make(config.pipeline, ctx);
}

namespace {
std::unique_ptr<parse::EventPipeline> nontrivial(std::unique_ptr<parse::EventPipeline> p) {
  if (p && p->trivial()) p.reset();
  return p;
}
}  // namespace

LineReader::LineReader(SourceContext& ctx, const LineConfig& config, LineReaderHost& host,
                       std::unique_ptr<parse::EventPipeline> pipeline)
    : host_(host),
      pipeline_(nontrivial(std::move(pipeline))),
      metrics_(ctx),
      batcher_(ctx, *this, metrics_, /*count_at_put=*/true),
      stream_(config, pipeline_.get(), LineStream::Positions::lines, run_id_base(ctx.name), 0),
      multiline_timer_(ctx.loop),
      backlog_turn_(ctx.loop, [this] { parse_backlog(); }) {}

void LineReader::after_input() {
  if (const std::uint64_t n = stream_.take_overflows(); n > 0) metrics_.overflows.inc(n);
  if (stream_.holding() && !multiline_timer_.active()) {
    const auto timeout = pipeline_->config().multiline.timeout;
    const Duration tick = std::max<Duration>(timeout / 4, std::chrono::milliseconds(1));
    multiline_timer_.start(
        tick, [this] { on_multiline_timer(); }, tick);
  }
  batcher_.seal();
  batcher_.flush();
}

void LineReader::on_bytes(std::string_view data) {
  if (!backlog_.empty()) {
    backlog_.append(data);  // the host reads while paused: keep the order anyway
    return;
  }
  const std::size_t used =
      stream_.feed(data, batcher_, wall_clock_ns(), std::chrono::steady_clock::now() + kParseSlice);
  if (used < data.size()) {
    // Parsing took its slice: the rest waits for later loop turns, and the host stops reading.
    backlog_.assign(data.substr(used));
    backlog_used_ = 0;
    host_.pause_reading();
    backlog_turn_.arm();
  }
  after_input();
}

void LineReader::parse_backlog() {
  const std::string_view rest = std::string_view(backlog_).substr(backlog_used_);
  backlog_used_ +=
      stream_.feed(rest, batcher_, wall_clock_ns(), std::chrono::steady_clock::now() + kParseSlice);
  if (backlog_used_ < backlog_.size()) {
    backlog_turn_.arm();
    after_input();
    return;
  }
  backlog_.clear();
  backlog_used_ = 0;
  after_input();
  if (!batcher_.blocked()) host_.resume_reading();  // else when the output takes the batches
}

void LineReader::on_eof() {
  if (!backlog_.empty()) {
    // End of input with a backlog (the host did not pause): parse the rest now, in order.
    stream_.feed(std::string_view(backlog_).substr(backlog_used_), batcher_, wall_clock_ns());
    backlog_.clear();
    backlog_used_ = 0;
    backlog_turn_.cancel();
  }
  stream_.finish(batcher_, wall_clock_ns());
  multiline_timer_.stop();
  after_input();
}

void LineReader::on_multiline_timer() {
  stream_.flush_multiline(batcher_, wall_clock_ns(), /*due_only=*/true);
  if (!stream_.holding()) multiline_timer_.stop();
  batcher_.seal();
  batcher_.flush();
}

}  // namespace sluice::sources
