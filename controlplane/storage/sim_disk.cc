// SimDisk: the simulated disk's event queue, file model and fault injection.
#include "controlplane/storage/sim_disk.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "platform/assert/assert.h"

namespace herald::storage {

SimDisk::SimDisk(const SimDiskOptions& options) : options_(options), random_(options.seed) {
  HERALD_CHECK(options.sector_bytes > 0 && 4096 % options.sector_bytes == 0,
               "sector_bytes must divide 4096");
  HERALD_CHECK(options.min_latency_ns <= options.max_latency_ns, "latency range");
}

SimDisk::~SimDisk() = default;

void SimDisk::schedule(uint64_t delay_ns, std::function<void()> fn) {
  events_.emplace(std::make_pair(now_ns_ + delay_ns, event_seq_++), std::move(fn));
}

uint64_t SimDisk::latency_ns() {
  std::uniform_int_distribution<uint64_t> d(options_.min_latency_ns, options_.max_latency_ns);
  return d(random_);
}

bool SimDisk::chance(double probability) {
  if (probability <= 0) return false;
  return std::uniform_real_distribution<double>(0, 1)(random_) < probability;
}

SimDisk::File* SimDisk::file(FileHandle handle) {
  auto it = handles_.find(handle);
  if (it == handles_.end()) return nullptr;
  auto f = files_.find(it->second);
  return f == files_.end() ? nullptr : f->second.get();
}

void SimDisk::apply_sectors(std::vector<uint8_t>& to, const PendingWrite& write, double keep) {
  const uint64_t end = write.offset + write.bytes.size();
  if (to.size() < end) to.resize(end, 0);
  for (uint64_t s = 0; s < write.bytes.size(); s += options_.sector_bytes) {
    const uint64_t n = std::min<uint64_t>(options_.sector_bytes, write.bytes.size() - s);
    const bool kept = keep >= 1 || (keep > 0 && chance(keep));
    if (kept) {
      std::memcpy(to.data() + write.offset + s, write.bytes.data() + s, n);
    } else {
      ++stats_.sectors_lost;
    }
  }
}

absl::StatusOr<std::vector<std::string>> SimDisk::list_files() {
  std::vector<std::string> names;
  for (const auto& [name, f] : files_) names.push_back(name);
  // Directory order is arbitrary on a real filesystem; the caller must not depend on it.
  std::shuffle(names.begin(), names.end(), random_);
  return names;
}

void SimDisk::create(const std::string& name, uint64_t size_bytes, IoCallback done) {
  schedule(latency_ns() + options_.sync_extra_latency_ns,
           [this, name, size_bytes, done = std::move(done)] {
             if (faults_enabled_ && chance(options_.create_error_probability)) {
               ++stats_.create_errors;
               done(-EIO);
               return;
             }
             auto f = std::make_unique<File>();
             f->durable.assign(size_bytes, 0);
             f->current = f->durable;
             files_[name] = std::move(f);
             const FileHandle handle = next_handle_++;
             handles_[handle] = name;
             done(handle);
           });
}

void SimDisk::open(const std::string& name, IoCallback done) {
  schedule(latency_ns(), [this, name, done = std::move(done)] {
    if (files_.count(name) == 0) {
      done(-ENOENT);
      return;
    }
    const FileHandle handle = next_handle_++;
    handles_[handle] = name;
    done(handle);
  });
}

void SimDisk::close(FileHandle handle) {
  handles_.erase(handle);
}

void SimDisk::write(FileHandle handle, uint64_t offset, const void* data, uint32_t size_bytes,
                    IoCallback done) {
  ++stats_.writes;
  // The bytes are taken at completion, as DMA would: a caller that reuses its buffer early is
  // caught.
  schedule(latency_ns(), [this, handle, offset, data, size_bytes, done = std::move(done)] {
    File* f = file(handle);
    if (f == nullptr) return done(-EBADF);
    if (offset % 4096 != 0 || size_bytes % 4096 != 0 ||
        reinterpret_cast<uintptr_t>(data) % 4096 != 0) {
      return done(-EINVAL);  // what O_DIRECT says to misaligned I/O
    }
    PendingWrite w{offset, std::vector<uint8_t>(static_cast<const uint8_t*>(data),
                                                static_cast<const uint8_t*>(data) + size_bytes)};
    if (faults_enabled_ && chance(options_.write_error_probability)) {
      // A failed write may still have reached the cache in part.
      ++stats_.write_errors;
      apply_sectors(f->current, w, 0.5);
      f->unsynced.push_back(
          PendingWrite{offset, std::vector<uint8_t>(f->current.begin() + offset,
                                                    f->current.begin() + offset + size_bytes)});
      return done(-EIO);
    }
    apply_sectors(f->current, w, 1);
    f->unsynced.push_back(std::move(w));
    done(static_cast<int32_t>(size_bytes));
  });
}

void SimDisk::read(FileHandle handle, uint64_t offset, void* data, uint32_t size_bytes,
                   IoCallback done) {
  ++stats_.reads;
  schedule(latency_ns(), [this, handle, offset, data, size_bytes, done = std::move(done)] {
    File* f = file(handle);
    if (f == nullptr) return done(-EBADF);
    if (offset >= f->current.size()) return done(0);
    const uint64_t n = std::min<uint64_t>(size_bytes, f->current.size() - offset);
    auto* out = static_cast<uint8_t*>(data);
    std::memcpy(out, f->current.data() + offset, n);
    if (faults_enabled_ && bitflips_enabled_ && chance(options_.read_bitflip_probability)) {
      ++stats_.bitflips;
      std::uniform_int_distribution<uint64_t> byte(0, n - 1);
      out[byte(random_)] ^= static_cast<uint8_t>(1u << (random_() % 8));
    }
    done(static_cast<int32_t>(n));
  });
}

void SimDisk::sync(FileHandle handle, IoCallback done) {
  ++stats_.syncs;
  schedule(latency_ns() + options_.sync_extra_latency_ns, [this, handle, done = std::move(done)] {
    File* f = file(handle);
    if (f == nullptr) return done(-EBADF);
    if (faults_enabled_ && chance(options_.sync_error_probability)) {
      // fsyncgate: the kernel wrote some pages, dropped the others and marked them
      // clean; the cache now holds only what made it (a later fsync reports success).
      ++stats_.sync_errors;
      for (const PendingWrite& w : f->unsynced) apply_sectors(f->durable, w, 0.5);
      f->unsynced.clear();
      f->current = f->durable;
      return done(-EIO);
    }
    f->durable = f->current;
    f->unsynced.clear();
    done(0);
  });
}

int32_t SimDisk::apply_namespace_op(const NamespaceOp& op) {
  auto it = files_.find(op.from);
  if (it == files_.end()) return -ENOENT;
  if (op.rename) {
    std::unique_ptr<File> f = std::move(it->second);
    files_.erase(it);
    files_[op.to] = std::move(f);
  } else {
    files_.erase(it);
  }
  return 0;
}

void SimDisk::submit_namespace_op(NamespaceOp op, IoCallback done) {
  const uint64_t id = next_namespace_id_++;
  pending_namespace_.emplace(id, std::move(op));
  schedule(latency_ns() + options_.sync_extra_latency_ns, [this, id, done = std::move(done)] {
    auto it = pending_namespace_.find(id);
    HERALD_CHECK(it != pending_namespace_.end(), "namespace op lost");
    const NamespaceOp submitted = std::move(it->second);
    pending_namespace_.erase(it);
    if (faults_enabled_ && chance(options_.create_error_probability)) {
      ++stats_.namespace_errors;
      if (random_() % 2 == 0) (void)apply_namespace_op(submitted);
      done(-EIO);
      return;
    }
    done(apply_namespace_op(submitted));
  });
}

void SimDisk::remove(const std::string& name, IoCallback done) {
  ++stats_.removes;
  submit_namespace_op(NamespaceOp{false, name, {}}, std::move(done));
}

void SimDisk::rename(const std::string& from, const std::string& to, IoCallback done) {
  ++stats_.renames;
  submit_namespace_op(NamespaceOp{true, from, to}, std::move(done));
}

void SimDisk::after(uint64_t delay_ns, std::function<void()> fn) {
  schedule(delay_ns, std::move(fn));
}

bool SimDisk::step() {
  if (events_.empty()) return false;
  auto it = events_.begin();
  now_ns_ = std::max(now_ns_, it->first.first);
  std::function<void()> fn = std::move(it->second);
  events_.erase(it);
  fn();
  return true;
}

void SimDisk::run_until(uint64_t deadline_ns) {
  while (!events_.empty() && events_.begin()->first.first <= deadline_ns) step();
  now_ns_ = std::max(now_ns_, deadline_ns);
}

void SimDisk::run_until_idle() {
  while (step()) {
  }
}

void SimDisk::crash() {
  ++stats_.crashes;
  handles_.clear();
  // Dropped completions may own the last reference to engine objects whose destructors call
  // back into the disk (close), so the queue is emptied before they are destroyed.
  auto dropped = std::move(events_);
  events_.clear();
  dropped.clear();
  const int mode = static_cast<int>(random_() % 3);
  const double keep = mode == 0 ? 0.0 : (mode == 1 ? 1.0 : 0.5);
  // A directory change not yet synced may or may not have reached the disk, each on its own,
  // in submission order (the filesystem journals them in that order).
  auto pending = std::move(pending_namespace_);
  pending_namespace_.clear();
  for (const auto& [id, op] : pending) {
    if (random_() % 2 == 0) {
      ++stats_.namespace_ops_applied_at_crash;
      (void)apply_namespace_op(op);
    } else {
      ++stats_.namespace_ops_lost_at_crash;
    }
  }
  for (auto& [name, f] : files_) {
    for (const PendingWrite& w : f->unsynced) apply_sectors(f->durable, w, keep);
    f->unsynced.clear();
    f->current = f->durable;
  }
}

void SimDisk::corrupt_durable(const std::string& name, uint64_t offset, uint8_t xor_mask) {
  auto it = files_.find(name);
  HERALD_CHECK(it != files_.end() && offset < it->second->durable.size(), "no such byte");
  it->second->durable[offset] ^= xor_mask;
  if (offset < it->second->current.size()) it->second->current[offset] ^= xor_mask;
}

std::vector<uint8_t> SimDisk::durable_contents(const std::string& name) const {
  auto it = files_.find(name);
  return it == files_.end() ? std::vector<uint8_t>() : it->second->durable;
}

}  // namespace herald::storage
