// See ring.h.
#include "ring.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cmath>
#include <cstring>

#ifdef NVMQ_HAVE_LIBURING
#include <liburing.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#endif

namespace nvmq {

#ifdef NVMQ_HAVE_LIBURING

struct Ring::Impl {
  io_uring ring;
  bool files = false;
  bool buffers = false;
  // iovecs of the batch being submitted; the kernel has copied them by the
  // time io_uring_enter returns (IORING_FEAT_SUBMIT_STABLE, checked at setup).
  std::vector<iovec> iov;
};

namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

bool IsUint(double d, double max) {
  return std::isfinite(d) && d >= 0 && d <= max && std::trunc(d) == d;
}

// [off, off + len) inside an arena of `size` bytes.
bool InArena(double off, double len, size_t size) {
  return IsUint(off, kMaxSafe) && IsUint(len, 0xffffffff) &&
         off + len <= static_cast<double>(size);
}

uint64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ull +
         static_cast<uint64_t>(t.tv_nsec);
}

int64_t NowMs() { return static_cast<int64_t>(NowNs() / 1000000); }

// A hint to the core that this is a spin-wait loop (and, on a shared core,
// to let the sibling run).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

bool ring_supported() { return true; }

int Ring::Create(unsigned entries, uint8_t* arena, size_t arena_len,
                 Ring** out) {
  if (entries == 0 || entries > kMaxEntries || arena == nullptr) return -EINVAL;
  Ring* r = new Ring();
  r->impl_ = new Impl();
  r->arena_ = arena;
  r->arena_len_ = arena_len;
  // A roomy completion ring: one NVMe command can become several operations
  // (a Dataset Management range list, a broadcast flush).
  //
  // Completions of operations that went to a device (O_DIRECT, a page-cache
  // miss) are posted by task work in this thread. By default the kernel
  // interrupts the thread for it (an IPI, a VM exit on a virtual machine);
  // with DEFER_TASKRUN it runs when the thread next asks for completions
  // (TASKRUN_FLAG tells Reap when to ask). Two workers reading with O_DIRECT
  // at depth 32 did 120k reads/s without it and 138k with it here (COOP_TASKRUN,
  // the older cousin: 134k). Kernels before 6.1 lack DEFER_TASKRUN, before
  // 6.0 SINGLE_ISSUER: each refusal falls back a step.
  static const unsigned kSetups[] = {
      IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER,
      IORING_SETUP_CQSIZE,
  };
  io_uring_params p;
  int rc = -EINVAL;
  for (unsigned flags : kSetups) {
    std::memset(&p, 0, sizeof p);
    p.flags = flags;
    p.cq_entries = entries * 4;
    rc = io_uring_queue_init_params(entries, &r->impl_->ring, &p);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    delete r->impl_;
    r->impl_ = nullptr;
    delete r;
    return rc;
  }
  if (!(p.features & IORING_FEAT_SUBMIT_STABLE) ||
      !(p.features & IORING_FEAT_NODROP)) {
    delete r;  // the destructor tears the ring down
    return -ENOSYS;
  }
  r->event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->event_fd_ < 0) {
    rc = -errno;
    delete r;
    return rc;
  }
  rc = io_uring_register_eventfd(&r->impl_->ring, r->event_fd_);
  if (rc < 0) {
    delete r;
    return rc;
  }
  // io_uring_enter then names the ring by a per-thread index instead of its
  // descriptor: no file lookup and reference per call. The ring is used only
  // by the thread that made it. A kernel older than 5.18 refuses; that costs
  // nothing but the lookup.
  io_uring_register_ring_fd(&r->impl_->ring);
  *out = r;
  return 0;
}

Ring::~Ring() {
  if (impl_ != nullptr) {
    if (inflight_ > 0) CancelAll(30000);
    // Still in flight after that: the kernel may yet write into the arena, so
    // leak the ring rather than pretend it is idle.
    if (inflight_ == 0) {
      // The kernel frees a ring's context in the background; its registered
      // files are dropped now, so closing the ring leaves no file (and no
      // file system) busy behind it.
      if (impl_->files) io_uring_unregister_files(&impl_->ring);
      if (impl_->buffers) io_uring_unregister_buffers(&impl_->ring);
      io_uring_queue_exit(&impl_->ring);
    }
    delete impl_;
  }
  if (event_fd_ >= 0) close(event_fd_);
}

int Ring::Submit(const double* ops, unsigned n, const double* segs,
                 size_t segs_len) {
  io_uring* ring = &impl_->ring;
  std::vector<iovec>& iov = impl_->iov;
  iov.clear();
  // Reserve the batch's iovecs up front so that pointers into the vector
  // stay valid while the batch is prepared.
  size_t want = 0;
  for (unsigned i = 0; i < n; i++) {
    const double* o = ops + i * kOpWords;
    if ((o[kOpCode] == kRingReadv || o[kOpCode] == kRingWritev) &&
        IsUint(o[kOpLen], kMaxSegments)) {
      want += static_cast<size_t>(o[kOpLen]);
    }
  }
  iov.reserve(want);

  for (unsigned i = 0; i < n; i++) {
    const double* o = ops + i * kOpWords;
    const int32_t user = static_cast<int32_t>(
        static_cast<uint32_t>(IsUint(o[kOpUser], 0xffffffff) ? o[kOpUser] : 0));
    const double code = o[kOpCode];
    const double fd = o[kOpFd];
    const double pos = o[kOpPos];
    const double addr = o[kOpAddr];
    const double len = o[kOpLen];
    const double flags = o[kOpFlags];
    int bad = 0;
    if (!IsUint(fd, 0x7fffffff) || !IsUint(pos, kMaxSafe) ||
        !IsUint(flags, 0xffffffff)) {
      bad = -EINVAL;
    } else if (code == kRingRead || code == kRingWrite) {
      if (!InArena(addr, len, arena_len_)) bad = -EFAULT;
    } else if (code == kRingReadv || code == kRingWritev) {
      if (!IsUint(len, kMaxSegments) || len == 0 ||
          !InArena(addr * kSegWords, len * kSegWords, segs_len)) {
        bad = -EINVAL;
      } else {
        const double* s = segs + static_cast<size_t>(addr) * kSegWords;
        for (unsigned k = 0; k < len && bad == 0; k++) {
          if (!InArena(s[k * kSegWords], s[k * kSegWords + 1], arena_len_)) {
            bad = -EFAULT;
          }
        }
      }
    } else if (code == kRingFallocate) {
      if (!IsUint(len, kMaxSafe)) bad = -EINVAL;
    } else if (code != kRingFsync) {
      bad = -EINVAL;
    }
    if (bad != 0) {
      local_.push_back(user);
      local_.push_back(bad);
      continue;
    }

    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (sqe == nullptr) {
      // The submission ring is full: hand what it holds to the kernel.
      int rc;
      do rc = io_uring_submit(ring);
      while (rc == -EINTR);
      sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) {
        local_.push_back(user);
        local_.push_back(rc < 0 ? rc : -EBUSY);
        continue;
      }
    }
    const int ifd = static_cast<int>(fd);
    const uint64_t off = static_cast<uint64_t>(pos);
    switch (static_cast<unsigned>(code)) {
      case kRingRead:
      case kRingWrite: {
        uint8_t* buf = arena_ + static_cast<size_t>(addr);
        const unsigned n = static_cast<unsigned>(len);
        const bool write = code == kRingWrite;
        // With the arena registered (fixed buffer 0) the kernel pins nothing per operation.
        if (impl_->buffers && write) {
          io_uring_prep_write_fixed(sqe, ifd, buf, n, off, 0);
        } else if (impl_->buffers) {
          io_uring_prep_read_fixed(sqe, ifd, buf, n, off, 0);
        } else if (write) {
          io_uring_prep_write(sqe, ifd, buf, n, off);
        } else {
          io_uring_prep_read(sqe, ifd, buf, n, off);
        }
        sqe->rw_flags = static_cast<int>(flags);
        break;
      }
      case kRingReadv:
      case kRingWritev: {
        const size_t first = iov.size();
        const double* s = segs + static_cast<size_t>(addr) * kSegWords;
        for (unsigned k = 0; k < len; k++) {
          iov.push_back({arena_ + static_cast<size_t>(s[k * kSegWords]),
                         static_cast<size_t>(s[k * kSegWords + 1])});
        }
        if (code == kRingReadv) {
          io_uring_prep_readv(sqe, ifd, &iov[first], static_cast<unsigned>(len),
                              off);
        } else {
          io_uring_prep_writev(sqe, ifd, &iov[first],
                               static_cast<unsigned>(len), off);
        }
        sqe->rw_flags = static_cast<int>(flags);
        break;
      }
      case kRingFsync:
        io_uring_prep_fsync(sqe, ifd, static_cast<unsigned>(flags));
        break;
      case kRingFallocate:
        io_uring_prep_fallocate(sqe, ifd, static_cast<int>(flags), off,
                                static_cast<uint64_t>(len));
        break;
    }
    if (o[kOpFixed] == 1) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, static_cast<uint32_t>(user));
    inflight_++;
  }
  int rc;
  do rc = io_uring_submit(ring);
  while (rc == -EINTR);
  return rc;
}

unsigned Ring::Reap(int32_t* out, unsigned cap) {
  unsigned k = 0;
  while (local_head_ < local_.size() && k < cap) {
    out[2 * k] = local_[local_head_];
    out[2 * k + 1] = local_[local_head_ + 1];
    local_head_ += 2;
    k++;
  }
  if (local_head_ == local_.size()) {
    local_.clear();
    local_head_ = 0;
  }
  io_uring* ring = &impl_->ring;
  // Completions the kernel could not fit in the ring wait in its overflow
  // list, and with DEFER_TASKRUN finished operations wait as task work, until
  // asked for: the only system call on this path, made only when the kernel
  // flags that there is something to ask for.
  if (io_uring_cq_has_overflow(ring) ||
      (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN)) {
    io_uring_get_events(ring);
  }
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(ring, head, cqe) {
    if (k == cap) break;
    seen++;
    if (cqe->user_data == kInternalUser) continue;
    out[2 * k] = static_cast<int32_t>(static_cast<uint32_t>(cqe->user_data));
    out[2 * k + 1] = cqe->res;
    k++;
    inflight_--;
  }
  io_uring_cq_advance(ring, seen);
  // Entries left queued by a failed io_uring_enter go now.
  if (io_uring_sq_ready(ring) > 0) io_uring_submit(ring);
  return k;
}

unsigned Ring::CancelAll(unsigned timeout_ms) {
  if (impl_ == nullptr || inflight_ == 0) return inflight_;
  io_uring* ring = &impl_->ring;
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
  }
  if (sqe != nullptr) {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, kInternalUser);
  }
  io_uring_submit(ring);
  const int64_t deadline = NowMs() + timeout_ms;
  while (inflight_ > 0) {
    __kernel_timespec ts = {0, 20 * 1000 * 1000};
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
    if (rc == 0) {
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(ring, head, cqe) {
        seen++;
        if (cqe->user_data == kInternalUser) continue;
        local_.push_back(
            static_cast<int32_t>(static_cast<uint32_t>(cqe->user_data)));
        local_.push_back(cqe->res);
        inflight_--;
      }
      io_uring_cq_advance(ring, seen);
    }
    if (NowMs() >= deadline) break;
  }
  return inflight_;
}

int Ring::RegisterFiles(const int32_t* fds, unsigned n) {
  if (n == 0 || n > 1024 || impl_->files) return -EINVAL;
  const int rc = io_uring_register_files(&impl_->ring, fds, n);
  if (rc == 0) impl_->files = true;
  return rc;
}

int Ring::RegisterBuffers() {
  if (impl_->buffers) return -EINVAL;
  iovec v = {arena_, arena_len_};
  const int rc = io_uring_register_buffers(&impl_->ring, &v, 1);
  if (rc == 0) impl_->buffers = true;
  return rc;
}

int Ring::ReadNowait(double fd, double addr, double len, double pos) {
  if (!IsUint(fd, 0x7fffffff) || !IsUint(pos, kMaxSafe)) return -EINVAL;
  if (!InArena(addr, len, arena_len_)) return -EFAULT;
  iovec v = {arena_ + static_cast<size_t>(addr), static_cast<size_t>(len)};
  ssize_t n;
  do n = preadv2(static_cast<int>(fd), &v, 1, static_cast<off_t>(pos),
                 RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : static_cast<int>(n);
}

int Ring::Wait(unsigned timeout_us, unsigned spin_us) {
  io_uring* ring = &impl_->ring;
  if (inflight_ == 0 || ready() > 0) return 0;
  // Operations queued but not yet handed over would never finish while we
  // spin: submit them first (Submit normally has). If the kernel will not
  // take them now, there is nothing to poll for: go to the sleeping wait,
  // whose io_uring_enter submits them again.
  if (spin_us > 0 && io_uring_sq_ready(ring) > 0) {
    int rc;
    do rc = io_uring_submit(ring);
    while (rc == -EINTR);
    if (io_uring_sq_ready(ring) > 0) spin_us = 0;
  }
  if (spin_us > 0) {
    const uint64_t start = NowNs();
    const uint64_t budget = static_cast<uint64_t>(std::min(spin_us, timeout_us)) * 1000ull;
    uint64_t spent = 0;
    do {
      // The clock is read every few dozen polls: ready() is a few loads.
      for (int i = 0; i < 32; ++i) {
        if (ready() > 0) return 0;
        CpuRelax();
      }
      // Between rounds the core goes to anything else runnable here: the
      // kernel's io_uring workers that finish a buffered write, or another
      // worker. Two spinning workers did 30% more buffered depth-1 writes
      // so, and O_DIRECT reads kept their latency. The price: on a core
      // with other work, a completion may wait out a time slice of theirs.
      sched_yield();
      spent = NowNs() - start;
    } while (spent < budget);
    const uint64_t spent_us = spent / 1000;
    if (spent_us >= timeout_us) return -ETIME;
    timeout_us -= static_cast<unsigned>(spent_us);
  }
  __kernel_timespec ts = {static_cast<long long>(timeout_us / 1000000),
                          static_cast<long long>(timeout_us % 1000000) * 1000};
  io_uring_cqe* cqe = nullptr;
  const int rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
  return rc < 0 ? rc : 0;
}

void Ring::SetNotify(bool on) {
  io_uring_cq_eventfd_toggle(&impl_->ring, on);
}

unsigned Ring::ready() const {
  const io_uring* ring = &impl_->ring;
  // Finished operations still waiting as deferred task work count too: an
  // eventfd switched off when they arrived will not announce them.
  const unsigned deferred =
      (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN) ? 1 : 0;
  return io_uring_cq_ready(ring) + deferred +
         static_cast<unsigned>((local_.size() - local_head_) / 2);
}

#else  // !NVMQ_HAVE_LIBURING

struct Ring::Impl {};

bool ring_supported() { return false; }

int Ring::Create(unsigned, uint8_t*, size_t, Ring**) { return -ENOSYS; }
Ring::~Ring() {}
int Ring::Submit(const double*, unsigned, const double*, size_t) {
  return -ENOSYS;
}
unsigned Ring::Reap(int32_t*, unsigned) { return 0; }
unsigned Ring::CancelAll(unsigned) { return 0; }
int Ring::RegisterFiles(const int32_t*, unsigned) { return -ENOSYS; }
int Ring::RegisterBuffers() { return -ENOSYS; }
int Ring::Wait(unsigned, unsigned) { return -ENOSYS; }
int Ring::ReadNowait(double, double, double, double) { return -ENOSYS; }
void Ring::SetNotify(bool) {}
unsigned Ring::ready() const { return 0; }

#endif  // NVMQ_HAVE_LIBURING

}  // namespace nvmq
