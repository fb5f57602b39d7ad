// The loader behind lib/core/lazy_link.inc. libcurl, librdkafka, libssl and libcrypto (and through
// them gnutls, krb5, ldap, ssh2, sasl, nghttp2, ...) are not linked into the binary: each function
// sluice calls is a trampoline that loads its library on the first call. An agent that configures
// no HTTP sink, no Kafka sink and no TLS never maps them, which is most of its idle resident memory
// (about 6 MB of relocated data and touched text, measured in bench/RESULTS.md).
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

// Layout written by SLUICE_LAZY_END.
struct LazyLibrary {
  const char* soname;
  const char* const* names;
  void** slots;
  std::uint64_t count;
  void* handle;
};

[[noreturn]] void fail(const char* what, const char* name, const char* soname) {
  const char* why = dlerror();
  std::fprintf(stderr, "sluice: cannot %s %s from %s: %s\n", what, name, soname,
               why != nullptr ? why : "not found");
  std::abort();
}

}  // namespace

// Called by sluice_lazy_trampoline with the argument registers saved: loads `lib` once, fills every
// slot (a library is resolved whole, so a second thread never sees half of it), and returns the
// function `slot` names. A library that is missing or lacks a function is a broken installation
// (the package depends on each), reported on stderr before aborting.
extern "C" __attribute__((visibility("hidden"))) void* sluice_lazy_resolve(LazyLibrary* lib,
                                                                           void** slot) {
  static std::mutex mutex;
  const std::lock_guard<std::mutex> lock(mutex);
  if (lib->handle == nullptr) {
    void* handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) fail("load", "library", lib->soname);
    for (std::uint64_t i = 0; i < lib->count; ++i) {
      void* fn = dlsym(handle, lib->names[i]);
      if (fn == nullptr) fail("find", lib->names[i], lib->soname);
      __atomic_store_n(&lib->slots[i], fn, __ATOMIC_RELEASE);
    }
    lib->handle = handle;
  }
  return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

// Entered by a jump from a trampoline whose slot is empty: %r10 = the library, %r11 = the slot, the
// caller's arguments in their registers and on the stack, its return address on top. Saves what a
// call may carry arguments in (%rdi %rsi %rdx %rcx %r8 %r9, %rax = the vector count of a varargs
// call, %xmm0-7), resolves, restores, and jumps to the real function as if called directly.
// Entry %rsp is 8 mod 16; seven pushes and 128 bytes make it 0 mod 16 at the call.
asm(R"(
  .text
  .globl sluice_lazy_trampoline
  .hidden sluice_lazy_trampoline
  .type sluice_lazy_trampoline, @function
  .balign 16
sluice_lazy_trampoline:
  pushq %rdi
  pushq %rsi
  pushq %rdx
  pushq %rcx
  pushq %r8
  pushq %r9
  pushq %rax
  subq $128, %rsp
  movdqu %xmm0, 0(%rsp)
  movdqu %xmm1, 16(%rsp)
  movdqu %xmm2, 32(%rsp)
  movdqu %xmm3, 48(%rsp)
  movdqu %xmm4, 64(%rsp)
  movdqu %xmm5, 80(%rsp)
  movdqu %xmm6, 96(%rsp)
  movdqu %xmm7, 112(%rsp)
  movq %r10, %rdi
  movq %r11, %rsi
  call sluice_lazy_resolve
  movq %rax, %r11
  movdqu 0(%rsp), %xmm0
  movdqu 16(%rsp), %xmm1
  movdqu 32(%rsp), %xmm2
  movdqu 48(%rsp), %xmm3
  movdqu 64(%rsp), %xmm4
  movdqu 80(%rsp), %xmm5
  movdqu 96(%rsp), %xmm6
  movdqu 112(%rsp), %xmm7
  addq $128, %rsp
  popq %rax
  popq %r9
  popq %r8
  popq %rcx
  popq %rdx
  popq %rsi
  popq %rdi
  jmp *%r11
  .size sluice_lazy_trampoline, .-sluice_lazy_trampoline
)");
