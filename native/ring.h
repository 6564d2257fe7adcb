// One io_uring, as nvmq's data path uses it: operations staged by the
// JavaScript side in plain arrays of doubles, addressed by offsets into the
// DMA arena (a SharedArrayBuffer whose memory the kernel reads and writes
// directly), submitted with one io_uring_enter per batch, and reaped from the
// completion ring without a system call. No Node-API types here: binding.cc
// is the only file that touches N-API.
//
// Built without liburing (NVMQ_HAVE_LIBURING undefined) every Create() fails
// with -ENOSYS and the engine stays on its portable path.
#ifndef NVMQ_NATIVE_RING_H_
#define NVMQ_NATIVE_RING_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nvmq {

// What this file and src/engine/uring/ring.ts (which stages the operations)
// must agree on: every name and value from here to kMaxSpinUs is written
// there again, and test/engine/uring/layout.test.ts reads this header to
// check the two against each other. Change both.

// Staged operation layout: kOpWords doubles per operation.
enum RingField : unsigned {
  kOpCode = 0,    // RingOpcode
  kOpFd = 1,      // file descriptor, or with kOpFixed the index of a registered one
  kOpUser = 2,    // 32-bit tag returned with the completion
  kOpPos = 3,     // file offset (bytes)
  kOpAddr = 4,    // read / write: arena offset; readv / writev: first segment index
  kOpLen = 5,     // read / write / fallocate: bytes; readv / writev: segment count
  kOpFlags = 6,   // read / write: RWF_* flags; fsync: IORING_FSYNC_*; fallocate: mode
  kOpFixed = 7,   // 1: kOpFd is an index into the registered files
  kOpWords = 8,
};

enum RingOpcode : unsigned {
  kRingRead = 1,
  kRingWrite = 2,
  kRingReadv = 3,
  kRingWritev = 4,
  kRingFsync = 5,
  kRingFallocate = 6,
};

// Segments of readv / writev: (arena offset, length) pairs of doubles.
constexpr unsigned kSegWords = 2;

// Segments one readv / writev may have (IOV_MAX); more is -EINVAL.
constexpr unsigned kMaxSegments = 1024;

// The most submission slots Create() accepts.
constexpr unsigned kMaxEntries = 4096;

// The longest spin Wait() accepts: a second, in microseconds.
constexpr unsigned kMaxSpinUs = 1000000;

// user_data of the ring's own cancel requests; never reported.
constexpr uint64_t kInternalUser = 0xffffffffffffffffull;

class Ring {
 public:
  // Sets up a ring of `entries` submission slots over the arena
  // [arena, arena + arena_len), with an eventfd signalled on completions.
  // Returns 0 or -errno.
  static int Create(unsigned entries, uint8_t* arena, size_t arena_len,
                    Ring** out);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Queues `n` staged operations and submits them with one io_uring_enter.
  // An operation whose memory lies outside the arena, or whose fields are
  // malformed, is not submitted: it completes at once with -EFAULT / -EINVAL.
  // Returns the number of operations handed to the kernel, or -errno when
  // io_uring_enter failed (those operations stay queued for the next call).
  int Submit(const double* ops, unsigned n, const double* segs,
             size_t segs_len);

  // Copies up to `cap` completions as (user, result) pairs into `out`
  // without a system call (unless the kernel holds overflowed completions).
  // Returns the number copied.
  unsigned Reap(int32_t* out, unsigned cap);

  // Cancels every operation in flight and waits, up to `timeout_ms`, until
  // the kernel has finished with all of them. Their completions (cancelled
  // ones with -ECANCELED) are kept for Reap(). Returns how many are still in
  // flight at the end (0 unless the timeout ran out).
  unsigned CancelAll(unsigned timeout_ms);

  // preadv2(RWF_NOWAIT) into the arena, on the calling thread: the bytes
  // read, -EAGAIN when the data is not in the page cache, or -errno.
  int ReadNowait(double fd, double addr, double len, double pos);

  // Registers descriptors with the ring: operations then name them by index
  // (kOpFixed), and the kernel takes no per-operation file reference (a
  // shared atomic counter when several threads use the same file). 0 or -errno.
  int RegisterFiles(const int32_t* fds, unsigned n);

  // Registers the whole arena as fixed buffer 0: single-buffer reads and
  // writes then go as READ_FIXED / WRITE_FIXED, and the kernel pins the
  // arena's pages once instead of per operation (what an O_DIRECT transfer
  // otherwise pays for every I/O). 0 or -errno (ENOMEM past RLIMIT_MEMLOCK).
  int RegisterBuffers();

  // Blocks until at least one completion is ready or `timeout_us` passes
  // (one io_uring_enter, which also submits anything still queued), as a
  // thread with nothing else to do waits for its I/O. With `spin_us` > 0 it
  // first polls the ring from user space for up to that long (hybrid
  // polling): a completion found so costs no sleep and no wake-up. 0 when
  // completions are ready (at once if some already were, or nothing is in
  // flight), -ETIME on timeout, -EINTR on a signal, or -errno. Without
  // DEFER_TASKRUN (older kernels) a completion still interrupts the spinning
  // thread to post itself, but it needs no wake-up.
  int Wait(unsigned timeout_us, unsigned spin_us);

  // Stops (false) or resumes (true) eventfd notifications.
  void SetNotify(bool on);

  int event_fd() const { return event_fd_; }
  unsigned inflight() const { return inflight_; }
  // Completions available now (kernel ring plus ones completed locally),
  // counting finished operations still waiting as deferred task work as one.
  unsigned ready() const;

 private:
  Ring() = default;
  struct Impl;
  Impl* impl_ = nullptr;
  uint8_t* arena_ = nullptr;
  size_t arena_len_ = 0;
  int event_fd_ = -1;
  unsigned inflight_ = 0;
  // Completions made here (rejected operations, drained ones).
  std::vector<int32_t> local_;
  size_t local_head_ = 0;
};

// True when this build has io_uring support compiled in.
bool ring_supported();

}  // namespace nvmq

#endif  // NVMQ_NATIVE_RING_H_
