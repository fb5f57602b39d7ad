/* libcrypto.so.3, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN crypto, "libcrypto.so.3"
SLUICE_LAZY_SYM crypto, BIO_ctrl_pending
SLUICE_LAZY_SYM crypto, BIO_new
SLUICE_LAZY_SYM crypto, BIO_read
SLUICE_LAZY_SYM crypto, BIO_s_mem
SLUICE_LAZY_SYM crypto, BIO_write
SLUICE_LAZY_SYM crypto, CRYPTO_memcmp
SLUICE_LAZY_SYM crypto, ERR_error_string_n
SLUICE_LAZY_SYM crypto, ERR_get_error
SLUICE_LAZY_SYM crypto, EVP_Digest
SLUICE_LAZY_SYM crypto, EVP_md5
SLUICE_LAZY_SYM crypto, EVP_sha1
SLUICE_LAZY_SYM crypto, HMAC
SLUICE_LAZY_SYM crypto, X509_VERIFY_PARAM_set1_ip_asc
SLUICE_LAZY_SYM crypto, X509_verify_cert_error_string
SLUICE_LAZY_END crypto
