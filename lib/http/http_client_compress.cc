// Request body compression for the HTTP sinks: one complete stream per request body, made in one
// call (the size bound is known up front), so no streaming loop is needed on the way out.
#include <zlib.h>
#include <zstd.h>

#include <memory>

#include "lib/codec/zstream.h"
#include "lib/http/http_client.h"

namespace sluice::http {

namespace {

Status zlib_error(int rc, std::string_view what) {
  return Status(Errc::io, std::string(what) + ": zlib error " + std::to_string(rc));
}

// Reused per thread: a zstd context costs more to set up than a small body costs to compress.
ZSTD_CCtx* zstd_cctx() {
  thread_local struct Holder {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ~Holder() { ZSTD_freeCCtx(c); }
  } h;
  return h.c;
}

Status gzip_compress(std::string_view in, std::string& out, int level) {
  z_stream z{};
  // 16 + 15: a gzip header and trailer around a 32 KiB-window deflate stream.
  int rc = deflateInit2(&z, level == 0 ? Z_DEFAULT_COMPRESSION : level, Z_DEFLATED, 16 + 15, 8,
                        Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) return zlib_error(rc, "deflateInit2");
  out.resize(deflateBound(&z, in.size()));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  rc = deflate(&z, Z_FINISH);  // the bound guarantees one call finishes
  const std::size_t produced = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return zlib_error(rc, "deflate");
  out.resize(produced);
  return Status();
}

Status gzip_decompress(std::string_view in, std::string& out, std::size_t max_out) {
  z_stream z{};
  int rc = inflateInit2(&z, 16 + 15);
  if (rc != Z_OK) return zlib_error(rc, "inflateInit2");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  out.clear();
  char buf[16384];
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > max_out) {
      inflateEnd(&z);
      return Status(Errc::invalid_data, "gzip: more than " + std::to_string(max_out) + " bytes");
    }
  } while (rc != Z_STREAM_END && (z.avail_in > 0 || z.avail_out == 0));
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return Status(Errc::invalid_data, "gzip: corrupt or truncated stream");
  return Status();
}

}  // namespace

std::string_view content_encoding(Compression c) noexcept {
  switch (c) {
    case Compression::none:
      return {};
    case Compression::gzip:
      return "gzip";
    case Compression::zstd:
      return "zstd";
    case Compression::deflate:
      return "deflate";
  }
  return {};
}

Status compress(Compression c, std::string_view in, std::string& out, int level) {
  switch (c) {
    case Compression::none:
      out.assign(in);
      return Status();
    case Compression::gzip:
      return gzip_compress(in, out, level);
    case Compression::deflate: {
      uLongf len = compressBound(static_cast<uLong>(in.size()));
      out.resize(len);
      int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &len,
                         reinterpret_cast<const Bytef*>(in.data()), static_cast<uLong>(in.size()),
                         level == 0 ? Z_DEFAULT_COMPRESSION : level);
      if (rc != Z_OK) return zlib_error(rc, "compress2");
      out.resize(len);
      return Status();
    }
    case Compression::zstd: {
      out.resize(ZSTD_compressBound(in.size()));
      const std::size_t n = ZSTD_compressCCtx(zstd_cctx(), out.data(), out.size(), in.data(),
                                              in.size(), level == 0 ? 3 : level);
      if (ZSTD_isError(n)) {
        return Status(Errc::io, std::string("zstd: ") + ZSTD_getErrorName(n));
      }
      out.resize(n);
      return Status();
    }
  }
  return Status(Errc::invalid_data, "unknown compression");
}

CompressJob* CompressJob::start(Loop& loop, Compression c, int level, std::string in, Done done,
                                Status& error) {
  auto* job = new CompressJob;
  job->c_ = c;
  job->level_ = level;
  job->in_ = std::move(in);
  job->done_ = std::move(done);
  job->req_.data = job;
  const int rc = uv_queue_work(
      loop.uv(), &job->req_,
      [](uv_work_t* r) {
        auto* j = static_cast<CompressJob*>(r->data);
        j->status_ = compress(j->c_, j->in_, j->out_, j->level_);
        std::string().swap(j->in_);  // free the input early
      },
      [](uv_work_t* r, int status) {
        std::unique_ptr<CompressJob> j(static_cast<CompressJob*>(r->data));
        if (!j->done_) return;
        Done cb = std::move(j->done_);
        if (status == UV_ECANCELED) {
          cb(Status(Errc::stopping, "compression cancelled"), std::string());
        } else {
          cb(std::move(j->status_), std::move(j->out_));
        }
      });
  if (rc != 0) {
    error = Status::from_uv(rc, "uv_queue_work");
    delete job;
    return nullptr;
  }
  return job;
}

Status decompress(Compression c, std::string_view in, std::string& out, std::size_t max_out) {
  switch (c) {
    case Compression::none:
      if (in.size() > max_out) return Status(Errc::invalid_data, "body too large");
      out.assign(in);
      return Status();
    case Compression::gzip:
      return gzip_decompress(in, out, max_out);
    case Compression::deflate: {
      out.clear();
      codec::Inflater inflater(max_out);
      return inflater.write(in, out);
    }
    case Compression::zstd: {
      out.clear();
      ZSTD_DStream* ds = ZSTD_createDStream();
      ZSTD_initDStream(ds);
      ZSTD_inBuffer ib{in.data(), in.size(), 0};
      char buf[16384];
      std::size_t rc = 0;
      do {
        ZSTD_outBuffer ob{buf, sizeof buf, 0};
        rc = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(rc)) break;
        out.append(buf, ob.pos);
        if (out.size() > max_out) {
          ZSTD_freeDStream(ds);
          return Status(Errc::invalid_data,
                        "zstd: more than " + std::to_string(max_out) + " bytes");
        }
        if (rc == 0 && ib.pos == ib.size) break;
      } while (ib.pos < ib.size || rc != 0);
      ZSTD_freeDStream(ds);
      if (ZSTD_isError(rc)) {
        return Status(Errc::invalid_data, std::string("zstd: ") + ZSTD_getErrorName(rc));
      }
      if (rc != 0) return Status(Errc::invalid_data, "zstd: truncated frame");
      return Status();
    }
  }
  return Status(Errc::invalid_data, "unknown compression");
}

}  // namespace sluice::http
