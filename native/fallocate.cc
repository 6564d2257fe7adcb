#include "fallocate.h"

#include <cerrno>

#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1  // fallocate() is a GNU extension in <fcntl.h>
#endif
#include <fcntl.h>
#include <linux/falloc.h>
#endif

namespace nvmq {

#if defined(__linux__)
extern const int kFallocFlKeepSize = FALLOC_FL_KEEP_SIZE;
extern const int kFallocFlPunchHole = FALLOC_FL_PUNCH_HOLE;
extern const int kFallocFlZeroRange = FALLOC_FL_ZERO_RANGE;

bool fallocate_supported() { return true; }
#else
extern const int kFallocFlKeepSize = 0;
extern const int kFallocFlPunchHole = 0;
extern const int kFallocFlZeroRange = 0;

bool fallocate_supported() { return false; }
#endif

}  // namespace nvmq

int nvmq_fallocate(int fd, int mode, int64_t offset, int64_t len) {
#if defined(__linux__)
  static_assert(sizeof(off_t) == 8, "build needs a 64-bit off_t");
  for (;;) {
    if (fallocate(fd, mode, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0) {
      return 0;
    }
    const int err = errno;
    if (err != EINTR) return err > 0 ? -err : -EIO;
  }
#else
  (void)fd;
  (void)mode;
  (void)offset;
  (void)len;
  return -ENOSYS;
#endif
}
