/* libcurl.so.4, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN curl, "libcurl.so.4"
SLUICE_LAZY_SYM curl, curl_easy_cleanup
SLUICE_LAZY_SYM curl, curl_easy_getinfo
SLUICE_LAZY_SYM curl, curl_easy_init
SLUICE_LAZY_SYM curl, curl_easy_reset
SLUICE_LAZY_SYM curl, curl_easy_setopt
SLUICE_LAZY_SYM curl, curl_easy_strerror
SLUICE_LAZY_SYM curl, curl_global_init
SLUICE_LAZY_SYM curl, curl_multi_add_handle
SLUICE_LAZY_SYM curl, curl_multi_assign
SLUICE_LAZY_SYM curl, curl_multi_cleanup
SLUICE_LAZY_SYM curl, curl_multi_info_read
SLUICE_LAZY_SYM curl, curl_multi_init
SLUICE_LAZY_SYM curl, curl_multi_remove_handle
SLUICE_LAZY_SYM curl, curl_multi_setopt
SLUICE_LAZY_SYM curl, curl_multi_socket_action
SLUICE_LAZY_SYM curl, curl_multi_strerror
SLUICE_LAZY_SYM curl, curl_slist_append
SLUICE_LAZY_SYM curl, curl_slist_free_all
SLUICE_LAZY_END curl
