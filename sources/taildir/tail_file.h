#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lib/core/clock.h"
#include "lib/ingest/line_source.h"
#include "sources/taildir/positions.h"

namespace sluice::sources {

/// One followed file: its identity, descriptor and offsets, and the line reader that turns its
/// bytes into events. The source decides when it is read (reads go through the threadpool) and
/// how many descriptors stay open; this holds what belongs to the file alone.
struct TailFile {
  /// Where reading starts (`start`: a saved position, 0, or the end), with a fresh line reader.
  TailFile(std::uint64_t key, std::string path, std::size_t group, const FileIdentity& id,
           std::uint64_t start, std::uint64_t id_base);
  ~TailFile();
  TailFile(const TailFile&) = delete;
  TailFile& operator=(const TailFile&) = delete;

  /// Reads lines from `start` with a new reader (and a new generation when read again: acks of
  /// batches of the old content no longer apply).
  void start_reading(const LineConfig& config, parse::EventPipeline* pipeline, std::uint64_t start);
  /// Truncated or rewritten: the old content is gone, read it again from 0 as `id`, whose first
  /// bytes are `first_bytes` if known (else learnt from the first read).
  void restart(const FileIdentity& id, const LineConfig& config, parse::EventPipeline* pipeline,
               std::string_view first_bytes = {});
  /// A read at offset 0 returned `data`: its first `fp_bytes` are the file's first bytes now,
  /// and its fingerprint.
  void learn_head(std::string_view data, std::uint32_t fp_bytes);
  /// `prefix` is what the file's first (up to `fp_bytes`) bytes are now, read after a read at an
  /// offset > 0. True if it starts with every first byte known (those read, and the
  /// fingerprint's): the same content, and what is known of it is lengthened to `prefix`. False
  /// if they differ or the file is now shorter than what is known: truncated and rewritten, so
  /// that the bytes just read at the old offset are new content, not the continuation.
  bool same_head(std::string_view prefix, std::uint32_t fp_bytes);
  /// Its batches' common headers: `file_header` (if not empty) with its path, then `extra`.
  void set_headers(const std::string& file_header,
                   const std::vector<std::pair<std::string, std::string>>& extra);
  /// Opens it by its name; false if that fails (`err` = errno) or the name now holds another file
  /// (`err` = 0).
  bool open_by_name(int& err);
  void close() noexcept;
  /// fstat of the open descriptor: size, and whether it was deleted. False if not open.
  bool refresh();
  /// Bytes read at read_offset, into `out`; advances read_offset by what it consumed, which is
  /// less than all once `deadline` passed (see LineStream::feed). Adds the lines it ended.
  std::size_t consume(std::string_view data, LineBatcher& out, std::int64_t now_ns,
                      TimePoint deadline, std::uint64_t& lines);

  std::uint64_t key = 0;
  std::string path;
  std::size_t group = 0;
  FileIdentity id;
  int fd = -1;
  std::uint64_t generation = 0;  // bumped when the file was truncated: older acks no longer apply
  std::uint64_t read_offset = 0;
  std::uint64_t safe_offset = 0;  // acknowledged by every channel: what is persisted
  std::uint64_t size = 0;
  /// The content's first bytes (at most fingerprint_bytes) as read by this agent; `id`'s
  /// fingerprint is over them once they are at least as long. Empty until known.
  std::string head;
  std::unique_ptr<LineStream> stream;  // lines, multiline records and their offsets
  LineBatcher::Headers headers;        // the file_header and the group's headers
  bool reading = false, queued = false, detached = false, removed = false, closed_for_limit = false;
  /// Found shorter than the binary probe and read from 0: its first read looks for NUL bytes too
  /// (the scan saw too few bytes to tell; a file may be found the moment it was created).
  bool probe_binary = false;
  TimePoint last_activity{};
  std::uint64_t id_base = 0;
};

}  // namespace sluice::sources
