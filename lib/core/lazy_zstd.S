/* libzstd.so.1, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN zstd, "libzstd.so.1"
SLUICE_LAZY_SYM zstd, ZSTD_DCtx_reset
SLUICE_LAZY_SYM zstd, ZSTD_compress
SLUICE_LAZY_SYM zstd, ZSTD_compressBound
SLUICE_LAZY_SYM zstd, ZSTD_compressCCtx
SLUICE_LAZY_SYM zstd, ZSTD_createCCtx
SLUICE_LAZY_SYM zstd, ZSTD_createDCtx
SLUICE_LAZY_SYM zstd, ZSTD_decompress
SLUICE_LAZY_SYM zstd, ZSTD_decompressDCtx
SLUICE_LAZY_SYM zstd, ZSTD_decompressStream
SLUICE_LAZY_SYM zstd, ZSTD_freeCCtx
SLUICE_LAZY_SYM zstd, ZSTD_freeDCtx
SLUICE_LAZY_SYM zstd, ZSTD_getErrorName
SLUICE_LAZY_SYM zstd, ZSTD_isError
SLUICE_LAZY_END zstd
