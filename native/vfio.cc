// VFIO device access; see vfio.h.
#include "vfio.h"

#include <cerrno>
#include <cstring>

#if defined(__linux__) && __has_include(<linux/vfio.h>)
#define NVMQ_HAVE_VFIO 1
#include <fcntl.h>
#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace nvmq {

#if NVMQ_HAVE_VFIO

bool vfio_supported() { return true; }

namespace {

int Fail(std::string* why, const std::string& what, int err) {
  *why = what + ": " + std::strerror(err);
  return -err;
}

// Failure injection for tests: checkpoint `g_fail_at` (1-based, counted from
// the start of the last Open()) fails with EIO. 0: none.
int g_fail_at = 0;
int g_step = 0;

bool Injected(std::string* why, const char* where) {
  if (g_fail_at <= 0 || ++g_step != g_fail_at) return false;
  *why = std::string("injected failure ") + std::to_string(g_step) + " (" + where + ")";
  return true;
}

int RegionInfo(int device, uint32_t index, VfioRegion* out) {
  struct vfio_region_info info;
  std::memset(&info, 0, sizeof info);
  info.argsz = sizeof info;
  info.index = index;
  if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info) < 0) return -errno;
  out->size = info.size;
  out->offset = info.offset;
  out->flags = info.flags;
  return 0;
}

}  // namespace

void vfio_inject_failure(int step) {
  g_fail_at = step;
  g_step = 0;
}

int vfio_wait_eventfd(int fd, uint64_t timeout_us) {
  struct pollfd p = {fd, POLLIN, 0};
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_us / 1000000);
  ts.tv_nsec = static_cast<long>((timeout_us % 1000000) * 1000);
  const int rc = ppoll(&p, 1, &ts, nullptr);
  if (rc < 0) return errno == EINTR ? 0 : -errno;
  if (rc == 0) return 0;
  uint64_t count;
  // A failed read only means another reader cleared it first.
  if (read(fd, &count, sizeof count) < 0) return 0;
  return 1;
}

int Vfio::Open(const char* group_path, const char* pci, Vfio** out, std::string* why) {
  *out = nullptr;
  g_step = 0;
  Vfio* v = new Vfio();
  // Any early return closes what was opened so far.
  struct Guard {
    Vfio* v;
    ~Guard() { delete v; }
  } guard{v};

  v->container_ = ::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  if (v->container_ < 0) return Fail(why, "cannot open /dev/vfio/vfio (is the vfio module loaded?)", errno);
  if (Injected(why, "container open")) return -EIO;
  const int api = ioctl(v->container_, VFIO_GET_API_VERSION);
  if (api != VFIO_API_VERSION) {
    *why = "unknown VFIO API version " + std::to_string(api) + " (expected " + std::to_string(VFIO_API_VERSION) + ")";
    return -EPROTO;
  }
  if (ioctl(v->container_, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) != 1) {
    *why = "the VFIO container does not support the type 1 IOMMU (is vfio_iommu_type1 loaded?)";
    return -ENOTSUP;
  }

  v->group_ = ::open(group_path, O_RDWR | O_CLOEXEC);
  if (v->group_ < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return Fail(why, std::string("no permission on ") + group_path + " (run as root, or give this user the device node)", err);
    }
    if (err == ENOENT) return Fail(why, std::string("no IOMMU group device ") + group_path, err);
    if (err == EBUSY) return Fail(why, std::string(group_path) + " is already open in another process", err);
    return Fail(why, std::string("cannot open ") + group_path, err);
  }
  if (Injected(why, "group open")) return -EIO;
  struct vfio_group_status status;
  std::memset(&status, 0, sizeof status);
  status.argsz = sizeof status;
  if (ioctl(v->group_, VFIO_GROUP_GET_STATUS, &status) < 0) return Fail(why, "VFIO_GROUP_GET_STATUS", errno);
  if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
    *why = std::string("IOMMU group ") + group_path +
           " is not viable: every device in it must be bound to vfio-pci (or to no driver)";
    return -EBUSY;
  }
  if (ioctl(v->group_, VFIO_GROUP_SET_CONTAINER, &v->container_) < 0) {
    return Fail(why, "cannot attach the IOMMU group to the container", errno);
  }
  if (Injected(why, "group attached")) return -EIO;
  if (ioctl(v->container_, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0) return Fail(why, "cannot select the type 1 IOMMU", errno);
  if (Injected(why, "type 1 set")) return -EIO;

  v->device_ = ioctl(v->group_, VFIO_GROUP_GET_DEVICE_FD, pci);
  if (v->device_ < 0) return Fail(why, std::string("cannot get device ") + pci + " from " + group_path, errno);
  if (Injected(why, "device open")) return -EIO;
  struct vfio_device_info dinfo;
  std::memset(&dinfo, 0, sizeof dinfo);
  dinfo.argsz = sizeof dinfo;
  if (ioctl(v->device_, VFIO_DEVICE_GET_INFO, &dinfo) < 0) return Fail(why, "VFIO_DEVICE_GET_INFO", errno);
  if (!(dinfo.flags & VFIO_DEVICE_FLAGS_PCI) || dinfo.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
    *why = std::string(pci) + " is not a PCI device with BAR0 and config space";
    return -ENODEV;
  }
  int rc = RegionInfo(v->device_, VFIO_PCI_BAR0_REGION_INDEX, &v->bar0_);
  if (rc < 0) return Fail(why, "BAR0 region info", -rc);
  rc = RegionInfo(v->device_, VFIO_PCI_CONFIG_REGION_INDEX, &v->config_);
  if (rc < 0) return Fail(why, "config space region info", -rc);
  if (v->bar0_.size == 0 || !(v->bar0_.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
    *why = std::string("BAR0 of ") + pci + " cannot be mapped (size " + std::to_string(v->bar0_.size) + ")";
    return -ENODEV;
  }
  if (Injected(why, "regions read")) return -EIO;
  guard.v = nullptr;
  *out = v;
  return 0;
}

Vfio::~Vfio() { Close(); }

void Vfio::Close() {
  // Mappings first: the container unmaps them when it closes too, but this
  // says in one place what was mapped and undoes it in order.
  for (const auto& m : dma_) UnmapDma(m.first, m.second);
  dma_.clear();
  DisableMsix();
  if (device_ >= 0) ::close(device_);
  if (group_ >= 0) {
    ioctl(group_, VFIO_GROUP_UNSET_CONTAINER);
    ::close(group_);
  }
  if (container_ >= 0) ::close(container_);
  device_ = group_ = container_ = -1;
}

int Vfio::MapBar0(void** addr, size_t* len, std::string* why) {
  if (device_ < 0) return Fail(why, "the VFIO device is closed", EBADF);
  void* p = nullptr;
  const int rc = MapRegion(device_, bar0_.offset, bar0_.size, &p, why);
  if (rc < 0) return rc;
  if (Injected(why, "BAR0 mapped")) {
    munmap(p, bar0_.size);
    return -EIO;
  }
  *addr = p;
  *len = bar0_.size;
  return 0;
}

int Vfio::MapRegion(int device_fd, uint64_t offset, size_t len, void** addr, std::string* why) {
  if (device_fd < 0 || len == 0) return Fail(why, "no VFIO device region to map", EBADF);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, device_fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return Fail(why, "cannot mmap BAR0", errno);
  *addr = p;
  return 0;
}

int Vfio::MapDma(void* vaddr, uint64_t size, uint64_t iova, std::string* why) {
  if (container_ < 0) return Fail(why, "the VFIO container is closed", EBADF);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (reinterpret_cast<uintptr_t>(vaddr) % page != 0 || size % page != 0 || iova % page != 0 || size == 0) {
    return Fail(why, "DMA mapping not page aligned", EINVAL);
  }
  if (dma_.count(iova) != 0) return Fail(why, "IOVA already mapped", EEXIST);
  struct vfio_iommu_type1_dma_map map;
  std::memset(&map, 0, sizeof map);
  map.argsz = sizeof map;
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<uintptr_t>(vaddr);
  map.iova = iova;
  map.size = size;
  if (ioctl(container_, VFIO_IOMMU_MAP_DMA, &map) < 0) {
    const int err = errno;
    return Fail(why, err == ENOMEM ? "VFIO_IOMMU_MAP_DMA (RLIMIT_MEMLOCK too low to pin the memory?)" : "VFIO_IOMMU_MAP_DMA", err);
  }
  dma_[iova] = size;
  if (Injected(why, "DMA mapped")) {
    UnmapDma(iova, size);
    return -EIO;
  }
  return 0;
}

int Vfio::UnmapDma(uint64_t iova, uint64_t size) {
  if (container_ < 0) return -EBADF;
  struct vfio_iommu_type1_dma_unmap unmap;
  std::memset(&unmap, 0, sizeof unmap);
  unmap.argsz = sizeof unmap;
  unmap.iova = iova;
  unmap.size = size;
  const int rc = ioctl(container_, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0 ? -errno : 0;
  dma_.erase(iova);
  return rc;
}

int Vfio::MsixCount(uint32_t* count, std::string* why) {
  *count = 0;
  if (device_ < 0) return Fail(why, "the VFIO device is closed", EBADF);
  struct vfio_irq_info info;
  std::memset(&info, 0, sizeof info);
  info.argsz = sizeof info;
  info.index = VFIO_PCI_MSIX_IRQ_INDEX;
  if (ioctl(device_, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0) return Fail(why, "VFIO_DEVICE_GET_IRQ_INFO (MSI-X)", errno);
  if (info.flags & VFIO_IRQ_INFO_EVENTFD) *count = info.count;
  return 0;
}

int Vfio::EnableMsix(uint32_t n, std::string* why) {
  if (device_ < 0) return Fail(why, "the VFIO device is closed", EBADF);
  if (!irq_fds_.empty()) return Fail(why, "MSI-X is already enabled", EBUSY);
  if (n == 0) return Fail(why, "no MSI-X vector to enable", EINVAL);
  for (uint32_t i = 0; i < n; i++) {
    const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      const int err = errno;
      DisableMsix();
      return Fail(why, "cannot create an eventfd for an MSI-X vector", err);
    }
    irq_fds_.push_back(fd);
  }
  const size_t bytes = sizeof(struct vfio_irq_set) + n * sizeof(int32_t);
  std::vector<uint8_t> buf(bytes);
  auto* set = reinterpret_cast<struct vfio_irq_set*>(buf.data());
  set->argsz = static_cast<uint32_t>(bytes);
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_MSIX_IRQ_INDEX;
  set->start = 0;
  set->count = n;
  std::memcpy(set->data, irq_fds_.data(), n * sizeof(int32_t));
  if (ioctl(device_, VFIO_DEVICE_SET_IRQS, set) < 0) {
    const int err = errno;
    for (int fd : irq_fds_) ::close(fd);
    irq_fds_.clear();
    return Fail(why, "VFIO_DEVICE_SET_IRQS (MSI-X eventfds)", err);
  }
  if (Injected(why, "MSI-X enabled")) {
    DisableMsix();
    return -EIO;
  }
  return 0;
}

void Vfio::DisableMsix() {
  if (irq_fds_.empty()) return;
  if (device_ >= 0) {
    struct vfio_irq_set set;
    std::memset(&set, 0, sizeof set);
    set.argsz = sizeof set;
    set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    set.index = VFIO_PCI_MSIX_IRQ_INDEX;
    set.start = 0;
    set.count = 0;
    ioctl(device_, VFIO_DEVICE_SET_IRQS, &set);
  }
  for (int fd : irq_fds_) ::close(fd);
  irq_fds_.clear();
}

int Vfio::ConfigRead(uint32_t offset, void* buf, size_t len) {
  if (device_ < 0) return -EBADF;
  const ssize_t n = pread(device_, buf, len, static_cast<off_t>(config_.offset + offset));
  return n < 0 ? -errno : static_cast<int>(n);
}

int Vfio::ConfigWrite(uint32_t offset, const void* buf, size_t len) {
  if (device_ < 0) return -EBADF;
  const ssize_t n = pwrite(device_, buf, len, static_cast<off_t>(config_.offset + offset));
  return n < 0 ? -errno : static_cast<int>(n);
}

#else  // no <linux/vfio.h>

bool vfio_supported() { return false; }
void vfio_inject_failure(int) {}
int vfio_wait_eventfd(int, uint64_t) { return -ENOSYS; }

int Vfio::Open(const char*, const char*, Vfio** out, std::string* why) {
  *out = nullptr;
  *why = "VFIO is not available on this platform";
  return -ENOSYS;
}
Vfio::~Vfio() {}
void Vfio::Close() {}
int Vfio::MapBar0(void**, size_t*, std::string* why) {
  *why = "VFIO is not available on this platform";
  return -ENOSYS;
}
int Vfio::MapRegion(int, uint64_t, size_t, void**, std::string* why) {
  *why = "VFIO is not available on this platform";
  return -ENOSYS;
}
int Vfio::MapDma(void*, uint64_t, uint64_t, std::string* why) {
  *why = "VFIO is not available on this platform";
  return -ENOSYS;
}
int Vfio::UnmapDma(uint64_t, uint64_t) { return -ENOSYS; }
int Vfio::MsixCount(uint32_t* count, std::string*) {
  *count = 0;
  return 0;
}
int Vfio::EnableMsix(uint32_t, std::string* why) {
  *why = "VFIO is not available on this platform";
  return -ENOSYS;
}
void Vfio::DisableMsix() {}
int Vfio::ConfigRead(uint32_t, void*, size_t) { return -ENOSYS; }
int Vfio::ConfigWrite(uint32_t, const void*, size_t) { return -ENOSYS; }

#endif

}  // namespace nvmq
