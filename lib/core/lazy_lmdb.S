/* liblmdb.so.0, loaded by the first call into it (lib/core/lazy_link.inc). A new function called
   from sluice's code is added here; the link fails with an undefined reference until it is. */
#include "lib/core/lazy_link.inc"

SLUICE_LAZY_BEGIN lmdb, "liblmdb.so.0"
SLUICE_LAZY_SYM lmdb, mdb_cursor_close
SLUICE_LAZY_SYM lmdb, mdb_cursor_del
SLUICE_LAZY_SYM lmdb, mdb_cursor_get
SLUICE_LAZY_SYM lmdb, mdb_cursor_open
SLUICE_LAZY_SYM lmdb, mdb_cursor_put
SLUICE_LAZY_SYM lmdb, mdb_dbi_open
SLUICE_LAZY_SYM lmdb, mdb_del
SLUICE_LAZY_SYM lmdb, mdb_env_close
SLUICE_LAZY_SYM lmdb, mdb_env_create
SLUICE_LAZY_SYM lmdb, mdb_env_info
SLUICE_LAZY_SYM lmdb, mdb_env_open
SLUICE_LAZY_SYM lmdb, mdb_env_set_mapsize
SLUICE_LAZY_SYM lmdb, mdb_env_set_maxdbs
SLUICE_LAZY_SYM lmdb, mdb_env_stat
SLUICE_LAZY_SYM lmdb, mdb_env_sync
SLUICE_LAZY_SYM lmdb, mdb_get
SLUICE_LAZY_SYM lmdb, mdb_put
SLUICE_LAZY_SYM lmdb, mdb_stat
SLUICE_LAZY_SYM lmdb, mdb_strerror
SLUICE_LAZY_SYM lmdb, mdb_txn_abort
SLUICE_LAZY_SYM lmdb, mdb_txn_begin
SLUICE_LAZY_SYM lmdb, mdb_txn_commit
SLUICE_LAZY_END lmdb
