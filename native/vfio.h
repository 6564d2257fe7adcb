// Plain C++ access to a PCI device bound to vfio-pci (Linux VFIO, type 1
// IOMMU): the container, the IOMMU group and the device's file descriptor,
// its regions (BAR0 and config space), BAR0 mapped into the process, and DMA
// mappings of process memory at chosen IOVAs. No Node-API types here; the
// binding (binding.cc) hands BAR0 to JavaScript as an ArrayBuffer.
//
// Every failure returns a negative errno and a one-line reason, and leaves
// nothing open or mapped: what an Open() got so far is closed before it returns.
#ifndef NVMQ_NATIVE_VFIO_H_
#define NVMQ_NATIVE_VFIO_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nvmq {

// True when this build has <linux/vfio.h> (Linux); elsewhere Open() returns -ENOSYS.
bool vfio_supported();

// For tests: the `step`th checkpoint (1-based) of the next Open() and the
// MapBar0() / MapDma() / EnableMsix() after it fails with EIO, as a failure there would; 0 turns it off.
void vfio_inject_failure(int step);

// Blocks until eventfd `fd` is signalled or `timeout_us` passes (ppoll), then
// clears its counter: 1 signalled, 0 timed out (or interrupted), -errno.
int vfio_wait_eventfd(int fd, uint64_t timeout_us);

struct VfioRegion {
  uint64_t size = 0;
  uint64_t offset = 0;  // of the region in the device fd
  uint32_t flags = 0;   // VFIO_REGION_INFO_FLAG_*
};

class Vfio {
 public:
  // Opens /dev/vfio/vfio, checks the API version and type 1 support, opens
  // `group_path` (/dev/vfio/<n>), checks it is viable, attaches it, selects
  // type 1, and gets the device `pci` (0000:00:04.0) with its BAR0 and config
  // regions. 0 and *out on success; -errno and *why otherwise.
  static int Open(const char* group_path, const char* pci, Vfio** out, std::string* why);
  ~Vfio();  // Close()

  // mmap()s BAR0 (read/write, shared). The caller owns the mapping: it is
  // not undone by Close(); munmap(*addr, *len) releases it.
  int MapBar0(void** addr, size_t* len, std::string* why);
  // mmap()s `len` bytes at `offset` of an open device fd (read/write,
  // shared): another thread's own mapping of BAR0, made from the fd this
  // process already holds. The mapping keeps the device file referenced
  // until munmap(), so it outlives a Close() safely (accesses then reach a
  // disabled device, not freed memory).
  static int MapRegion(int device_fd, uint64_t offset, size_t len, void** addr, std::string* why);
  // VFIO_IOMMU_MAP_DMA of [vaddr, vaddr + size) at `iova`, readable and
  // writable by the device. Page-aligned arguments only.
  int MapDma(void* vaddr, uint64_t size, uint64_t iova, std::string* why);
  int UnmapDma(uint64_t iova, uint64_t size);
  // pread / pwrite of the config space: bytes transferred or -errno.
  int ConfigRead(uint32_t offset, void* buf, size_t len);
  int ConfigWrite(uint32_t offset, const void* buf, size_t len);
  // MSI-X vectors the device has (VFIO_DEVICE_GET_IRQ_INFO): 0 when it has none.
  int MsixCount(uint32_t* count, std::string* why);
  // Attaches a new eventfd to each of vectors [0, n) (VFIO_DEVICE_SET_IRQS,
  // DATA_EVENTFD | ACTION_TRIGGER), which enables MSI-X on the device: the
  // controller's interrupts then signal those eventfds. On failure nothing
  // stays attached or open.
  int EnableMsix(uint32_t n, std::string* why);
  // Detaches the eventfds (DATA_NONE | ACTION_TRIGGER, count 0: MSI-X off)
  // and closes them. Idempotent.
  void DisableMsix();
  // Unmaps every DMA mapping, turns MSI-X off and closes the device, group and container.
  void Close();

  const VfioRegion& bar0() const { return bar0_; }
  const VfioRegion& config() const { return config_; }
  bool is_open() const { return device_ >= 0; }
  int device_fd() const { return device_; }
  // The eventfd of each enabled vector (empty while MSI-X is off).
  const std::vector<int>& irq_fds() const { return irq_fds_; }

 private:
  Vfio() = default;
  int container_ = -1;
  int group_ = -1;
  int device_ = -1;
  VfioRegion bar0_;
  VfioRegion config_;
  std::map<uint64_t, uint64_t> dma_;  // iova -> size
  std::vector<int> irq_fds_;           // vector -> eventfd
};

}  // namespace nvmq

#endif  // NVMQ_NATIVE_VFIO_H_
