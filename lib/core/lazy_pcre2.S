/* libpcre2-8.so.0, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN pcre2, "libpcre2-8.so.0"
SLUICE_LAZY_SYM pcre2, pcre2_code_free_8
SLUICE_LAZY_SYM pcre2, pcre2_compile_8
SLUICE_LAZY_SYM pcre2, pcre2_config_8
SLUICE_LAZY_SYM pcre2, pcre2_get_error_message_8
SLUICE_LAZY_SYM pcre2, pcre2_get_ovector_pointer_8
SLUICE_LAZY_SYM pcre2, pcre2_jit_compile_8
SLUICE_LAZY_SYM pcre2, pcre2_jit_match_8
SLUICE_LAZY_SYM pcre2, pcre2_jit_stack_assign_8
SLUICE_LAZY_SYM pcre2, pcre2_jit_stack_create_8
SLUICE_LAZY_SYM pcre2, pcre2_jit_stack_free_8
SLUICE_LAZY_SYM pcre2, pcre2_match_8
SLUICE_LAZY_SYM pcre2, pcre2_match_context_create_8
SLUICE_LAZY_SYM pcre2, pcre2_match_context_free_8
SLUICE_LAZY_SYM pcre2, pcre2_match_data_create_from_pattern_8
SLUICE_LAZY_SYM pcre2, pcre2_match_data_free_8
SLUICE_LAZY_SYM pcre2, pcre2_pattern_info_8
SLUICE_LAZY_SYM pcre2, pcre2_set_depth_limit_8
SLUICE_LAZY_SYM pcre2, pcre2_set_match_limit_8
SLUICE_LAZY_END pcre2
