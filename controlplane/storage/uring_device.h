// The real storage device: segment files in one directory, I/O through the control plane's
// io_uring loop. O_DIRECT where the filesystem allows it (else buffered), durability by
// fdatasync after each write or by O_DSYNC writes, preallocation by writing zeros.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/storage/device.h"
#include "platform/uring/event_loop.h"

namespace herald::storage {

struct UringDeviceOptions {
  std::string directory;  // created if missing
  enum class Durability : uint8_t {
    kFdatasync,   // write, then fdatasync
    kDsyncWrites  // files opened O_DSYNC: each write returns once durable (RWF_DSYNC's effect)
  };
  Durability durability = Durability::kFdatasync;
  // O_DIRECT bypasses the page cache (no double buffering, no writeback stalls); filesystems
  // that refuse it (tmpfs) fall back to buffered I/O.
  bool try_direct = true;
  enum class Preallocation : uint8_t {
    kZeroFill,  // write zeros over the whole file: later overwrites need no extent changes
    kFallocate  // fallocate(2) only: unwritten extents, converted (a metadata update) on write
  };
  Preallocation preallocation = Preallocation::kZeroFill;
  uint32_t zero_fill_chunk_bytes = 1u << 20;
};

class UringDevice final : public Device {
 public:
  // `loop` must outlive the device; so must every operation's completion.
  static absl::StatusOr<std::unique_ptr<UringDevice>> create(uring::EventLoop& loop,
                                                             const UringDeviceOptions& options);
  ~UringDevice() override;

  uint32_t block_bytes() const override { return 4096; }
  bool writes_are_durable() const override {
    return options_.durability == UringDeviceOptions::Durability::kDsyncWrites;
  }
  absl::StatusOr<std::vector<std::string>> list_files() override;
  void create(const std::string& name, uint64_t size_bytes, IoCallback done) override;
  void open(const std::string& name, IoCallback done) override;
  void close(FileHandle file) override;
  void write(FileHandle file, uint64_t offset, const void* data, uint32_t size_bytes,
             IoCallback done) override;
  void read(FileHandle file, uint64_t offset, void* data, uint32_t size_bytes,
            IoCallback done) override;
  void sync(FileHandle file, IoCallback done) override;
  // unlinkat/renameat run synchronously (the shared EventLoop exposes no IORING_OP_UNLINKAT /
  // RENAMEAT, and these are rare metadata operations); the directory fsync that makes them
  // durable goes through the loop, and so does every completion.
  void remove(const std::string& name, IoCallback done) override;
  void rename(const std::string& from, const std::string& to, IoCallback done) override;
  uint64_t now_ns() const override;
  void after(uint64_t delay_ns, std::function<void()> fn) override;

  // Whether files are being opened with O_DIRECT (false after the filesystem refused it).
  bool direct() const { return direct_; }
  // Operations submitted and not yet completed.
  uint32_t in_flight() const { return in_flight_; }

 private:
  struct Request;
  UringDevice(uring::EventLoop& loop, const UringDeviceOptions& options, int dir_fd);

  Request* acquire();
  void release(Request* request);
  static void on_complete(uring::Operation& op, const uring::Completion& completion);
  int open_flags(bool create) const;
  void start_open(Request* request);
  void step_create(Request* request, int32_t result);
  void zero_fill_next(Request* request);
  // Completes a synchronous namespace change: its error through the loop, or the dir fsync.
  void finish_namespace_change(int32_t result, IoCallback done);

  uring::EventLoop& loop_;
  const UringDeviceOptions options_;
  int dir_fd_ = -1;
  bool direct_ = true;
  uint32_t in_flight_ = 0;
  std::vector<std::unique_ptr<Request>> requests_;  // owns every Request
  std::vector<Request*> free_;
  void* zeros_ = nullptr;  // zero_fill_chunk_bytes of zeros, block aligned
};

}  // namespace herald::storage
