// UringDevice: file operations as io_uring requests on the control plane's loop; creation is a
// small state machine (open, zero-fill or fallocate, fdatasync, fsync of the directory).
#include "controlplane/storage/uring_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::storage {

struct UringDevice::Request {
  enum class Kind : uint8_t { kSimple, kFixed, kOpen, kCreate, kTimer };
  enum class Step : uint8_t { kOpen, kPreallocate, kSyncFile, kSyncDir, kReopen };
  uring::Operation op;
  UringDevice* device = nullptr;
  Kind kind = Kind::kSimple;
  Step step = Step::kOpen;
  bool create = false;
  bool direct = false;
  std::string name;  // openat's path: must live until the completion
  int fd = -1;
  uint64_t size_bytes = 0;
  uint64_t offset = 0;  // zero-fill progress
  uint32_t chunk = 0;   // bytes of the zero-fill write in flight
  IoCallback done;
  std::function<void()> timer_fn;
  int32_t fixed_result = 0;  // kFixed: what the completion reports (the nop's own is ignored)
};

absl::StatusOr<std::unique_ptr<UringDevice>> UringDevice::create(
    uring::EventLoop& loop, const UringDeviceOptions& options) {
  if (options.directory.empty()) return absl::InvalidArgumentError("no storage directory");
  if (options.zero_fill_chunk_bytes == 0 || options.zero_fill_chunk_bytes % 4096 != 0) {
    return absl::InvalidArgumentError("zero_fill_chunk_bytes must be a multiple of 4096");
  }
  if (::mkdir(options.directory.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("mkdir ", options.directory, ": ", std::strerror(errno)));
  }
  const int dir_fd = ::open(options.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", options.directory, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<UringDevice>(new UringDevice(loop, options, dir_fd));
}

UringDevice::UringDevice(uring::EventLoop& loop, const UringDeviceOptions& options, int dir_fd)
    : loop_(loop), options_(options), dir_fd_(dir_fd), direct_(options.try_direct) {
  zeros_ = std::aligned_alloc(4096, options_.zero_fill_chunk_bytes);
  HERALD_CHECK(zeros_ != nullptr, "out of memory");
  std::memset(zeros_, 0, options_.zero_fill_chunk_bytes);
}

UringDevice::~UringDevice() {
  HERALD_CHECK(in_flight_ == 0, "UringDevice destroyed with operations in flight");
  ::close(dir_fd_);
  std::free(zeros_);
}

UringDevice::Request* UringDevice::acquire() {
  if (free_.empty()) {
    requests_.push_back(std::make_unique<Request>());
    free_.push_back(requests_.back().get());
  }
  Request* r = free_.back();
  free_.pop_back();
  r->device = this;
  r->op.set_callback(&UringDevice::on_complete, r);
  ++in_flight_;
  return r;
}

void UringDevice::release(Request* r) {
  r->done = nullptr;
  r->timer_fn = nullptr;
  r->name.clear();
  r->kind = Request::Kind::kSimple;
  --in_flight_;
  free_.push_back(r);
}

void UringDevice::on_complete(uring::Operation& op, const uring::Completion& completion) {
  Request* r = op.context_as<Request>();
  UringDevice* device = r->device;
  switch (r->kind) {
    case Request::Kind::kSimple: {
      IoCallback done = std::move(r->done);
      device->release(r);
      done(completion.result);
      return;
    }
    case Request::Kind::kFixed: {
      IoCallback done = std::move(r->done);
      const int32_t result = r->fixed_result;
      device->release(r);
      done(result);
      return;
    }
    case Request::Kind::kTimer: {
      std::function<void()> fn = std::move(r->timer_fn);
      device->release(r);
      fn();
      return;
    }
    case Request::Kind::kOpen:
    case Request::Kind::kCreate: device->step_create(r, completion.result); return;
  }
}

int UringDevice::open_flags(bool create) const {
  int flags = O_RDWR | O_CLOEXEC;
  // Creation writes its zeros without O_DSYNC (one fdatasync at the end is enough) and then
  // reopens the file with it: F_SETFL cannot add O_DSYNC to an open file.
  if (create) {
    flags |= O_CREAT | O_TRUNC;
  } else if (options_.durability == UringDeviceOptions::Durability::kDsyncWrites) {
    flags |= O_DSYNC;
  }
  return flags;
}

void UringDevice::start_open(Request* r) {
  r->step = Request::Step::kOpen;
  r->direct = direct_;
  loop_.openat(r->op, dir_fd_, r->name.c_str(), open_flags(r->create) | (r->direct ? O_DIRECT : 0),
               0600);
}

// Open and create share the first step; create goes on through preallocation and the syncs
// that make the file's size, its zeros and its directory entry durable.
void UringDevice::step_create(Request* r, int32_t result) {
  auto finish = [this, r](int32_t value) {
    IoCallback done = std::move(r->done);
    release(r);
    done(value);
  };
  switch (r->step) {
    case Request::Step::kOpen:
      if (result == -EINVAL && r->direct) {
        // open(2): EINVAL when the filesystem does not support O_DIRECT.
        direct_ = false;
        HLOG_WARN("storage.device.no_direct_io").kv("directory", options_.directory);
        return start_open(r);
      }
      if (result < 0 || r->kind == Request::Kind::kOpen) return finish(result);
      r->fd = result;
      r->offset = 0;
      r->chunk = 0;
      r->step = Request::Step::kPreallocate;
      if (options_.preallocation == UringDeviceOptions::Preallocation::kFallocate) {
        r->offset = r->size_bytes;
        loop_.fallocate(r->op, r->fd, 0, 0, r->size_bytes);
        return;
      }
      return zero_fill_next(r);
    case Request::Step::kPreallocate:
      if (result < 0 || static_cast<uint32_t>(result) != r->chunk) {
        ::close(r->fd);
        return finish(result < 0 ? result : -EIO);
      }
      if (r->offset < r->size_bytes) return zero_fill_next(r);
      r->step = Request::Step::kSyncFile;
      loop_.fsync(r->op, r->fd, /*data_only=*/true);
      return;
    case Request::Step::kSyncFile:
      if (result < 0) {
        ::close(r->fd);
        return finish(result);
      }
      // The new name must be durable too, or a crash could lose the whole file.
      r->step = Request::Step::kSyncDir;
      loop_.fsync(r->op, dir_fd_, /*data_only=*/false);
      return;
    case Request::Step::kSyncDir:
      if (result < 0) {
        ::close(r->fd);
        return finish(result);
      }
      if (options_.durability == UringDeviceOptions::Durability::kDsyncWrites) {
        ::close(r->fd);
        r->fd = -1;
        r->step = Request::Step::kReopen;
        loop_.openat(r->op, dir_fd_, r->name.c_str(),
                     open_flags(/*create=*/false) | (r->direct ? O_DIRECT : 0), 0600);
        return;
      }
      return finish(r->fd);
    case Request::Step::kReopen: return finish(result);
  }
}

void UringDevice::zero_fill_next(Request* r) {
  r->chunk = static_cast<uint32_t>(
      std::min<uint64_t>(options_.zero_fill_chunk_bytes, r->size_bytes - r->offset));
  loop_.write(r->op, r->fd, zeros_, r->chunk, r->offset);
  r->offset += r->chunk;
}

absl::StatusOr<std::vector<std::string>> UringDevice::list_files() {
  const int fd = ::dup(dir_fd_);
  if (fd < 0) return absl::InternalError(absl::StrCat("dup: ", std::strerror(errno)));
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("fdopendir: ", std::strerror(errno)));
  }
  ::rewinddir(dir);
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    names.emplace_back(entry->d_name);
  }
  ::closedir(dir);
  return names;
}

void UringDevice::create(const std::string& name, uint64_t size_bytes, IoCallback done) {
  Request* r = acquire();
  r->kind = Request::Kind::kCreate;
  r->create = true;
  r->name = name;
  r->size_bytes = size_bytes;
  r->done = std::move(done);
  start_open(r);
}

void UringDevice::open(const std::string& name, IoCallback done) {
  Request* r = acquire();
  r->kind = Request::Kind::kOpen;
  r->create = false;
  r->name = name;
  r->done = std::move(done);
  start_open(r);
}

// close(2) on a regular file with nothing in flight does not wait on the disk.
void UringDevice::close(FileHandle file) {
  ::close(file);
}

void UringDevice::write(FileHandle file, uint64_t offset, const void* data, uint32_t size_bytes,
                        IoCallback done) {
  Request* r = acquire();
  r->done = std::move(done);
  loop_.write(r->op, file, data, size_bytes, offset);
}

void UringDevice::read(FileHandle file, uint64_t offset, void* data, uint32_t size_bytes,
                       IoCallback done) {
  Request* r = acquire();
  r->done = std::move(done);
  loop_.read(r->op, file, data, size_bytes, offset);
}

void UringDevice::sync(FileHandle file, IoCallback done) {
  Request* r = acquire();
  r->done = std::move(done);
  loop_.fsync(r->op, file, /*data_only=*/true);
}

void UringDevice::finish_namespace_change(int32_t result, IoCallback done) {
  Request* r = acquire();
  r->done = std::move(done);
  if (result < 0) {
    // Completions never run inside the submitting call: the error goes through the loop too.
    r->kind = Request::Kind::kFixed;
    r->fixed_result = result;
    loop_.nop(r->op);
    return;
  }
  // The directory entry change is durable only once the directory itself is synced.
  loop_.fsync(r->op, dir_fd_, /*data_only=*/false);
}

void UringDevice::remove(const std::string& name, IoCallback done) {
  const int rc = ::unlinkat(dir_fd_, name.c_str(), 0);
  finish_namespace_change(rc == 0 ? 0 : -errno, std::move(done));
}

void UringDevice::rename(const std::string& from, const std::string& to, IoCallback done) {
  const int rc = ::renameat(dir_fd_, from.c_str(), dir_fd_, to.c_str());
  finish_namespace_change(rc == 0 ? 0 : -errno, std::move(done));
}

uint64_t UringDevice::now_ns() const {
  return clock::monotonic_ns();
}

void UringDevice::after(uint64_t delay_ns, std::function<void()> fn) {
  Request* r = acquire();
  r->kind = Request::Kind::kTimer;
  r->timer_fn = std::move(fn);
  loop_.timeout(r->op, delay_ns);
}

}  // namespace herald::storage
