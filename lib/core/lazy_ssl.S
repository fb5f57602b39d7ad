/* libssl.so.3, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN ssl, "libssl.so.3"
SLUICE_LAZY_SYM ssl, SSL_CTX_check_private_key
SLUICE_LAZY_SYM ssl, SSL_CTX_ctrl
SLUICE_LAZY_SYM ssl, SSL_CTX_free
SLUICE_LAZY_SYM ssl, SSL_CTX_load_verify_locations
SLUICE_LAZY_SYM ssl, SSL_CTX_new
SLUICE_LAZY_SYM ssl, SSL_CTX_set_default_verify_paths
SLUICE_LAZY_SYM ssl, SSL_CTX_set_verify
SLUICE_LAZY_SYM ssl, SSL_CTX_use_PrivateKey_file
SLUICE_LAZY_SYM ssl, SSL_CTX_use_certificate_chain_file
SLUICE_LAZY_SYM ssl, SSL_ctrl
SLUICE_LAZY_SYM ssl, SSL_do_handshake
SLUICE_LAZY_SYM ssl, SSL_free
SLUICE_LAZY_SYM ssl, SSL_get0_param
SLUICE_LAZY_SYM ssl, SSL_get_error
SLUICE_LAZY_SYM ssl, SSL_get_verify_result
SLUICE_LAZY_SYM ssl, SSL_new
SLUICE_LAZY_SYM ssl, SSL_read
SLUICE_LAZY_SYM ssl, SSL_set1_host
SLUICE_LAZY_SYM ssl, SSL_set_accept_state
SLUICE_LAZY_SYM ssl, SSL_set_bio
SLUICE_LAZY_SYM ssl, SSL_set_connect_state
SLUICE_LAZY_SYM ssl, SSL_write
SLUICE_LAZY_SYM ssl, TLS_client_method
SLUICE_LAZY_SYM ssl, TLS_server_method
SLUICE_LAZY_END ssl
