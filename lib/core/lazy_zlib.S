/* libz.so.1, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN zlib, "libz.so.1"
SLUICE_LAZY_SYM zlib, compress2
SLUICE_LAZY_SYM zlib, compressBound
SLUICE_LAZY_SYM zlib, crc32
SLUICE_LAZY_SYM zlib, deflate
SLUICE_LAZY_SYM zlib, deflateBound
SLUICE_LAZY_SYM zlib, deflateEnd
SLUICE_LAZY_SYM zlib, deflateInit2_
SLUICE_LAZY_SYM zlib, deflateInit_
SLUICE_LAZY_SYM zlib, inflate
SLUICE_LAZY_SYM zlib, inflateEnd
SLUICE_LAZY_SYM zlib, inflateInit2_
SLUICE_LAZY_END zlib
