/*
 * The floor under a memorun hit, for bench/run.sh (group p1).
 *
 * Built twice, as static executables like memorun itself:
 *
 *   floor-hello   prints "hello\n" and exits: what starting any static glibc
 *                 program costs on this machine;
 *   floor-sqlite  does, in C, exactly the SQLite work of a memorun hit and
 *                 nothing else: the same sqlite3_config calls, open flags,
 *                 persistent WAL, pragmas and the hit's queries on a
 *                 real memorun.db (src/store/db.rs, schema.rs), then prints
 *                 "hello\n" as the replay would.
 *
 * Compiled against the SQLite amalgamation that libsqlite3-sys bundles, with
 * the same compile-time options (see bench/run.sh), so the difference
 * between the two is what opening the store costs, whatever memorun's own
 * code does around it.
 */
#include <unistd.h>

#ifdef FLOOR_SQLITE
#include "sqlite3.h"

static void query(sqlite3 *db, const char *sql, int bind_key) {
    /* A key that is not in the store: a b-tree seek like a hit's. */
    static const char key[32] = "memorun-bench-floor-key-32-bytes";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, 0) != SQLITE_OK) _exit(1);
    if (bind_key) sqlite3_bind_blob(st, 1, key, 32, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
    }
    sqlite3_finalize(st);
}
#endif

int main(int argc, char **argv) {
#ifdef FLOOR_SQLITE
    sqlite3 *db;
    int on = 1;
    if (argc != 2) _exit(2);
    sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0);
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, 0) != SQLITE_OK)
        _exit(1);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    if (sqlite3_exec(db, "PRAGMA journal_size_limit = 0; PRAGMA synchronous = NORMAL;", 0, 0, 0)
        != SQLITE_OK)
        _exit(1);
    query(db, "PRAGMA user_version", 0);
    query(db, "PRAGMA application_id", 0);
    query(db, "SELECT path FROM outputs WHERE command_in_dir = ?1 ORDER BY path", 1);
    query(db,
          "SELECT key, created, duration_ms, exit_code, stdin_advance, "
          "out_len, out_digest, out_inline, err_len, err_digest, err_inline, "
          "order_len, order_digest, order_inline, outputs, checksum, argv_digest, cwd "
          "FROM entries WHERE key = ?1",
          1);
    sqlite3_close(db);
#else
    (void)argc;
    (void)argv;
#endif
    return write(1, "hello\n", 6) == 6 ? 0 : 1;
}
