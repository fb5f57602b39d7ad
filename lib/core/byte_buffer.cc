#include "lib/core/byte_buffer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sluice {

void ByteBuffer::append(const char* p, std::size_t n) {
  if (n == 0) return;
  if (cap_ - size_ < n) {
    const std::size_t cap = std::max({size_ + n, cap_ * 2, std::size_t{4096}});
    void* next = std::realloc(data_, cap);
    if (next == nullptr) {  // as operator new would (sluice never throws)
      std::fputs("sluice: out of memory growing a buffer\n", stderr);
      std::abort();
    }
    data_ = static_cast<char*>(next);
    cap_ = cap;
  }
  std::memcpy(data_ + size_, p, n);
  size_ += n;
}

void ByteBuffer::release() noexcept {
  std::free(data_);
  data_ = nullptr;
  size_ = cap_ = 0;
}

}  // namespace sluice
