/* libsimdjson.so.14, loaded by the first call into it (lib/core/lazy_link.inc), with
   SLUICE_STATIC_CXX only: it is a C++ library and brings libstdc++.so with it, which an agent that
   parses no JSON then never maps. Its one entry point is the parser implementation for this CPU;
   everything else sluice calls is inline in simdjson.h or a virtual call through that object,
   into the library. The tables its headers read are in simdjson_tables.cc (generated). */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN simdjson, "libsimdjson.so.14"
/* simdjson::get_active_implementation() */
SLUICE_LAZY_SYM simdjson, _ZN8simdjson25get_active_implementationEv
SLUICE_LAZY_END simdjson
