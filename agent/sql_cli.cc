#include "agent/sql_cli.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "lib/config/units.h"
#include "lib/core/clock.h"
#include "lib/ingest/line_splitter.h"
#include "lib/parse/formats.h"
#include "sql/engine.h"

namespace sluice {
namespace {

constexpr int kExitUsage = 2;

// The table needs every row for its column widths; past this many it stops keeping them.
constexpr std::size_t kTableRows = 10'000;
constexpr std::size_t kMaxLineBytes = 1 << 20;
// Rows leave the engine at most this many at a time: a window with 100k groups (and the final
// flush, which closes the last two windows at once) would otherwise be materialised as one batch
// of every row (~550 bytes each), which is most of the tool's peak memory.
constexpr std::size_t kRowBatch = 4096;

void print_table(const sql::CompiledQuery& q, const Batch& rows, std::uint64_t total,
                 std::FILE* out) {
  std::vector<std::string> names;
  for (const auto& c : q.output()) names.push_back(c.name);
  std::vector<std::vector<std::string>> cells(rows.size(), std::vector<std::string>(names.size()));
  std::vector<std::size_t> width(names.size());
  for (std::size_t c = 0; c < names.size(); ++c) width[c] = names[c].size();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const EventView e = rows[r];
    for (std::size_t f = 0; f < e.field_count(); ++f) {
      const Field fd = e.field(f);
      for (std::size_t c = 0; c < names.size(); ++c) {
        if (names[c] == fd.key && cells[r][c].empty()) {
          cells[r][c] = fd.type == FieldType::null ? "NULL" : std::string(fd.text);
          width[c] = std::max(width[c], cells[r][c].size());
          break;
        }
      }
    }
  }
  auto line = [&](const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t c = 0; c < v.size(); ++c) {
      if (c > 0) s += " | ";
      s += v[c];
      if (c + 1 < v.size()) s.append(width[c] - v[c].size(), ' ');
    }
    std::fprintf(out, "%s\n", s.c_str());
  };
  line(names);
  std::string sep;
  for (std::size_t c = 0; c < names.size(); ++c) {
    if (c > 0) sep += "-+-";
    sep.append(width[c], '-');
  }
  std::fprintf(out, "%s\n", sep.c_str());
  for (const auto& row : cells) line(row);
  if (total > rows.size()) {
    std::fprintf(out, "(%zu of %lu rows shown: use --output ndjson for all)\n", rows.size(),
                 static_cast<unsigned long>(total));
  } else {
    std::fprintf(out, "(%zu row%s)\n", rows.size(), rows.size() == 1 ? "" : "s");
  }
}

}  // namespace

int sql_explain(const AgentConfig& cfg, const std::string& pipeline, std::FILE* out,
                std::FILE* err) {
  bool any = false;
  for (const auto& p : cfg.pipelines) {
    if (!pipeline.empty() && p.name != pipeline) continue;
    if (any) std::fprintf(out, "\n");
    any = true;
    std::fprintf(out, "pipeline %s: source %s (read from channel %s), rows into %s\n",
                 p.name.c_str(), p.source.c_str(), p.input_channel.c_str(), p.channel.c_str());
    std::string time = p.processing_time ? "processing time"
                       : !p.event_time_field.empty()
                           ? "field " + p.event_time_field + " (" +
                                 (p.event_time_format.empty() ? std::string("iso8601 or epoch_ms")
                                                              : p.event_time_format) +
                                 ")"
                       : p.query->watermark_column()
                           ? "field " + std::string(*p.query->watermark_column())
                           : "the source's timestamp";
    const std::int64_t delay = p.watermark_delay_set ? p.watermark_delay.count()
                                                     : p.query->watermark_delay_ns().value_or(0);
    std::fprintf(out, "event time: %s, watermark delay %s, allowed lateness %s, idle timeout %s\n",
                 time.c_str(), format_duration(std::chrono::nanoseconds(delay)).c_str(),
                 format_duration(p.allowed_lateness).c_str(),
                 p.idle_timeout.count() == 0 ? "none" : format_duration(p.idle_timeout).c_str());
    std::fprintf(
        out, "late events: %s; on_stop: %s; max_state_bytes: %s\n",
        p.late_channel.empty() ? "dropped (counted)" : ("to channel " + p.late_channel).c_str(),
        p.on_stop == OnStop::emit ? "emit" : "keep",
        format_size(ByteSize{p.max_state_bytes}).c_str());
    std::fprintf(out, "%s", p.query->explain().c_str());
    if (!p.query->explain().empty() && p.query->explain().back() != '\n') std::fprintf(out, "\n");
  }
  if (!any) {
    if (pipeline.empty()) {
      std::fprintf(err, "sluice: the configuration has no [pipelines]\n");
    } else {
      std::fprintf(err, "sluice: no pipeline named '%s'\n", pipeline.c_str());
    }
    return 1;
  }
  return 0;
}

int sql_run(const SqlRunOptions& o, std::FILE* out, std::FILE* err) {
  sql::CompileError cerr;
  auto query = sql::compile(o.query, {}, &cerr);
  if (!query) {
    std::fprintf(err, "sluice: query:%s\n", cerr.str().c_str());
    return kExitUsage;
  }
  sql::RunnerOptions ro;
  if (!o.event_time.empty()) {
    ro.time_source = sql::TimeSource::field;
    const auto colon = o.event_time.find(':');
    ro.time_field = o.event_time.substr(0, colon);
    if (colon != std::string::npos) {
      auto tf = parse::TimeFormat::make(o.event_time.substr(colon + 1), parse::TimeZone{});
      if (!tf) {
        std::fprintf(err, "sluice: --event-time: %s\n", tf.error().message().c_str());
        return kExitUsage;
      }
      ro.time_format = std::move(*tf);
    }
  } else if (query->watermark_column()) {
    ro.time_source = sql::TimeSource::field;
  }
  auto duration = [&](const std::string& text, const char* opt, std::int64_t& ns) {
    if (text.empty()) return true;
    auto d = parse_duration(text);
    if (!d) {
      std::fprintf(err, "sluice: %s: '%s' is not a duration (e.g. \"5s\", \"250ms\")\n", opt,
                   text.c_str());
      return false;
    }
    ns = d->count();
    return true;
  };
  std::int64_t delay = -1, lateness = 0;
  if (!duration(o.watermark_delay, "--watermark-delay", delay) ||
      !duration(o.allowed_lateness, "--allowed-lateness", lateness))
    return kExitUsage;
  if (delay >= 0) ro.watermark_delay_ns = delay;
  ro.allowed_lateness_ns = lateness;
  auto runner = sql::WindowRunner::create(*query, std::move(ro));
  if (!runner) {
    std::fprintf(err, "sluice: %s\n", runner.error().message().c_str());
    return kExitUsage;
  }
  std::FILE* in = stdin;
  if (o.input != "-") {
    in = std::fopen(o.input.c_str(), "rb");
    if (in == nullptr) {
      std::fprintf(err, "sluice: cannot read %s: %s\n", o.input.c_str(), std::strerror(errno));
      return 1;
    }
  }
  const bool ndjson = o.output == "ndjson";
  parse::JsonFormat json({});
  parse::Draft draft;
  Batch batch, closed, rows;  // rows: what the table shows
  std::uint64_t lineno = 0, bad = 0, late = 0, no_time = 0, too_long = 0, total_rows = 0;
  // ndjson rows are printed as their windows close; the table keeps the first kTableRows.
  // `emit` moves the closed windows' rows out of the engine (emit_closed or flush) kRowBatch at a
  // time, printing or keeping each batch before asking for the next.
  auto take_closed = [&](auto&& emit) {
    for (;;) {
      closed.clear();
      const std::size_t n = emit(closed);
      total_rows += closed.size();
      if (ndjson) {
        for (std::size_t i = 0; i < closed.size(); ++i) {
          const auto body = closed[i].body();
          std::fprintf(out, "%.*s\n", static_cast<int>(body.size()), body.data());
        }
        if (!closed.empty()) std::fflush(out);
      } else if (rows.size() < kTableRows) {
        rows.append_range(closed, 0, std::min(closed.size(), kTableRows - rows.size()));
      }
      if (n == 0 || !(*runner)->has_pending_rows()) break;
    }
    closed.clear();
  };
  auto emit_closed = [&](Batch& b) { return (*runner)->emit_closed(b, kRowBatch); };
  // The arrival time (processing time), read once a read(2): per line it was 4-6 % of the CPU.
  std::int64_t arrival_ns = wall_clock_ns();
  auto on_line = [&](std::string_view line, bool complete) {
    ++lineno;
    if (!complete) {
      if (too_long++ < 10)
        std::fprintf(err, "sluice: %s:%lu: longer than %zu bytes, skipped\n", o.input.c_str(),
                     static_cast<unsigned long>(lineno), kMaxLineBytes);
      return;
    }
    if (line.empty()) return;
    draft.reset(line, arrival_ns, lineno);
    if (o.format == "json") {
      if (json.parse(line, draft) != parse::ParseError::none) {
        if (bad++ < 10)
          std::fprintf(err, "sluice: %s:%lu: not a JSON object, skipped\n", o.input.c_str(),
                       static_cast<unsigned long>(lineno));
        return;
      }
    }
    batch.clear();
    // As a source adds it: the fields that are parts of the line stay ranges of it (copied one
    // by one they were an eighth of this command's instructions).
    draft.append_to(batch);
    switch ((*runner)->on_event(batch[0])) {
      case sql::EventOutcome::late:
        ++late;
        break;
      case sql::EventOutcome::no_time:
        ++no_time;
        break;
      case sql::EventOutcome::bad_state:  // MERGE: not a usable PARTIAL state
        if (bad++ < 10)
          std::fprintf(err, "sluice: %s:%lu: %s, skipped\n", o.input.c_str(),
                       static_cast<unsigned long>(lineno), (*runner)->last_bad_state().c_str());
        break;
      default:
        break;
    }
    take_closed(emit_closed);
  };
  // A line over the bound is cut into pieces (memory stays bounded): the first piece reports it,
  // the others are skipped with it.
  sources::LineConfig lc;
  lc.max_line_bytes.bytes = kMaxLineBytes;
  sources::LineSplitter splitter(lc);
  bool in_long = false;
  auto feed_line = [&](std::string_view piece) {
    const bool complete = splitter.complete();
    if (in_long) {
      in_long = !complete;  // the last piece of the long line
      return;
    }
    if (!complete) in_long = true;
    on_line(piece, complete);
  };
  // read(2), not fread: a pipe's lines are evaluated (and ndjson rows printed) as they come.
  std::vector<char> buf(64 * 1024);
  ssize_t got;
  while ((got = ::read(::fileno(in), buf.data(), buf.size())) != 0) {
    if (got < 0) {
      if (errno == EINTR) continue;
      const int read_errno = errno;
      if (in != stdin) std::fclose(in);
      std::fprintf(err, "sluice: cannot read %s: %s\n", o.input.c_str(), std::strerror(read_errno));
      return 1;
    }
    arrival_ns = wall_clock_ns();
    splitter.feed(std::string_view(buf.data(), static_cast<std::size_t>(got)), feed_line);
  }
  if (in != stdin) std::fclose(in);
  splitter.finish(feed_line);
  bool flushed = false;  // flush() closes every window once; emit_closed() takes the rest
  take_closed([&](Batch& b) {
    if (flushed) return emit_closed(b);
    flushed = true;
    return (*runner)->flush(b, kRowBatch);
  });
  if (!ndjson) print_table(*query, rows, total_rows, out);
  std::fflush(out);
  if (bad + late + no_time + too_long > 0) {
    std::fprintf(err,
                 "sluice: %lu lines read: %lu too long, %lu not parsed, %lu late, %lu without "
                 "event time\n",
                 static_cast<unsigned long>(lineno), static_cast<unsigned long>(too_long),
                 static_cast<unsigned long>(bad), static_cast<unsigned long>(late),
                 static_cast<unsigned long>(no_time));
  }
  return 0;
}

}  // namespace sluice
