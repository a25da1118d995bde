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
 *
 * And once more for group p8:
 *
 *   floor-inplace DIR   makes only the calls that a hit keeping the files of
 *                 an output directory already in place cannot do without:
 *                 the directory opened and listed, and for each regular
 *                 file in it: open, fstat, read to its end (its content
 *                 must be checked), set its mtime to now (make compares
 *                 timestamps), close; then prints "hello\n". Minus
 *                 floor-hello, it is the least such a hit can add.
 */
#include <unistd.h>

#ifdef FLOOR_INPLACE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

static char buf[128 * 1024];

static void keep(int dir, const char *name) {
    static const struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    struct stat st;
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) _exit(1);
    if (fstat(fd, &st) != 0) _exit(1);
    if (S_ISREG(st.st_mode)) {
        /* One byte more than its size: the end shows in the same read. */
        size_t want = (size_t)st.st_size + 1 < sizeof buf ? (size_t)st.st_size + 1 : sizeof buf;
        ssize_t n;
        while ((n = read(fd, buf, want)) > 0 && (size_t)n == want) {
        }
        if (n < 0 || futimens(fd, now) != 0) _exit(1);
    }
    close(fd);
}

static void in_place(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    if (!d) _exit(1);
    while ((e = readdir(d))) {
        if (e->d_type == DT_REG) keep(dirfd(d), e->d_name);
    }
    closedir(d);
}
#endif

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
#elif defined(FLOOR_INPLACE)
    if (argc != 2) _exit(2);
    in_place(argv[1]);
#else
    (void)argc;
    (void)argv;
#endif
    return write(1, "hello\n", 6) == 6 ? 0 : 1;
}
