/* Tries to reach the host's filesystem every way libc offers, and through raw WASI calls.
 * Prints one line per attempt; any success is printed as ESCAPED and makes the exit status 1. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#endif

static int escapes = 0;

static void report(const char *what, const char *path, int succeeded, int err) {
  if (succeeded) {
    printf("%s %s: ESCAPED\n", what, path);
    escapes++;
  } else {
    printf("%s %s: failed (errno %d: %s)\n", what, path, err, strerror(err));
  }
}

int main(void) {
  const char *paths[] = {"/etc/passwd", "/", ".", "..", "/proc/self/environ", "etc/passwd", "../../../../etc/passwd"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    const char *p = paths[i];
    errno = 0;
    int fd = open(p, O_RDONLY);
    report("open", p, fd >= 0, errno);
    if (fd >= 0) close(fd);

    errno = 0;
    FILE *f = fopen(p, "r");
    report("fopen", p, f != NULL, errno);
    if (f) fclose(f);

    errno = 0;
    DIR *d = opendir(p);
    report("opendir", p, d != NULL, errno);
    if (d) closedir(d);

    struct stat st;
    errno = 0;
    int r = stat(p, &st);
    report("stat", p, r == 0, errno);
  }
  errno = 0;
  int c = open("/tmp/wasmbox-escape", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  report("create", "/tmp/wasmbox-escape", c >= 0, errno);
  errno = 0;
  report("mkdir", "/tmp/wasmbox-escape-dir", mkdir("/tmp/wasmbox-escape-dir", 0755) == 0, errno);
  errno = 0;
  report("chdir", "/", chdir("/") == 0, errno);

#ifdef __wasi__
  /* No preopened directory at any fd. */
  for (__wasi_fd_t fd = 3; fd < 64; fd++) {
    __wasi_prestat_t ps;
    __wasi_errno_t e = __wasi_fd_prestat_get(fd, &ps);
    if (e != __WASI_ERRNO_BADF) {
      printf("fd_prestat_get %u: ESCAPED (errno %u)\n", fd, e);
      escapes++;
    }
  }
  printf("fd_prestat_get 3..63: all EBADF\n");
  /* Raw path_open against fds that are not directories, or not open at all. */
  __wasi_fd_t fds[] = {0, 1, 2, 3, 4, 100};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
    __wasi_fd_t opened = 0;
    __wasi_errno_t e = __wasi_path_open(fds[i], 0, "etc/passwd", 0, __WASI_RIGHTS_FD_READ, 0, 0, &opened);
    if (e == 0) {
      printf("path_open fd %u: ESCAPED\n", fds[i]);
      escapes++;
    } else {
      printf("path_open fd %u: failed (wasi errno %u)\n", fds[i], e);
    }
  }
#endif
  printf("escapes=%d\n", escapes);
  return escapes ? 1 : 0;
}
