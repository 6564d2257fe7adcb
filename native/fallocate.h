// Plain C++ wrapper around fallocate(2). No Node-API types here: this core
// can be unit-tested or reused (e.g. by a future io_uring module) without
// napi.h. The binding layer (binding.cc) is the only file that touches N-API.
#ifndef NVMQ_NATIVE_FALLOCATE_H_
#define NVMQ_NATIVE_FALLOCATE_H_

#include <cstdint>

namespace nvmq {

// Mode flag values as defined by the platform headers (<linux/falloc.h> via
// <fcntl.h>). On platforms without fallocate(2) they are 0 and
// nvmq_fallocate() always returns -ENOSYS.
extern const int kFallocFlKeepSize;
extern const int kFallocFlPunchHole;
extern const int kFallocFlZeroRange;

// True when this build has a real fallocate(2) behind nvmq_fallocate().
bool fallocate_supported();

}  // namespace nvmq

// Calls fallocate(fd, mode, offset, len). Returns 0 on success or a negative
// errno value on failure (e.g. -EBADF, -EOPNOTSUPP, -EINVAL). Retries on
// EINTR. Never throws.
int nvmq_fallocate(int fd, int mode, int64_t offset, int64_t len);

#endif  // NVMQ_NATIVE_FALLOCATE_H_
