// A simulated disk for deterministic tests of the storage engine: files with durable and
// volatile contents, virtual time, and faults (torn and lost writes at crash, failing fsync and
// writes, bit flips on read, latency), every choice drawn from one seed so a failure replays.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "controlplane/storage/device.h"

namespace herald::storage {

struct SimDiskOptions {
  uint64_t seed = 1;
  // The unit a crash or a failed write tears at: each sector of an unsynced write survives or
  // not on its own (disks promise atomicity per sector, nothing more).
  uint32_t sector_bytes = 512;
  uint64_t min_latency_ns = 1'000;
  uint64_t max_latency_ns = 50'000;
  uint64_t sync_extra_latency_ns = 100'000;
  // Per operation, once faults are enabled.
  double write_error_probability = 0;
  double sync_error_probability = 0;
  double create_error_probability = 0;
  double read_bitflip_probability = 0;
};

struct SimDiskStats {
  uint64_t writes = 0;
  uint64_t reads = 0;
  uint64_t syncs = 0;
  uint64_t crashes = 0;
  uint64_t write_errors = 0;
  uint64_t sync_errors = 0;
  uint64_t create_errors = 0;
  uint64_t bitflips = 0;
  uint64_t sectors_lost = 0;  // unsynced sectors dropped by crashes and failed syncs
  uint64_t removes = 0;
  uint64_t renames = 0;
  uint64_t namespace_errors = 0;
  uint64_t namespace_ops_applied_at_crash = 0;
  uint64_t namespace_ops_lost_at_crash = 0;
};

class SimDisk final : public Device {
 public:
  explicit SimDisk(const SimDiskOptions& options);
  ~SimDisk() override;

  uint32_t block_bytes() const override { return 4096; }
  bool writes_are_durable() const override { return false; }
  absl::StatusOr<std::vector<std::string>> list_files() override;
  void create(const std::string& name, uint64_t size_bytes, IoCallback done) override;
  void open(const std::string& name, IoCallback done) override;
  void close(FileHandle file) override;
  void write(FileHandle file, uint64_t offset, const void* data, uint32_t size_bytes,
             IoCallback done) override;
  void read(FileHandle file, uint64_t offset, void* data, uint32_t size_bytes,
            IoCallback done) override;
  void sync(FileHandle file, IoCallback done) override;
  // Take effect when they complete (with the directory synced). A crash while one is pending
  // applies it or not, picked from the seed; a fault (create_error_probability) reports -EIO
  // and may or may not have applied it.
  void remove(const std::string& name, IoCallback done) override;
  void rename(const std::string& from, const std::string& to, IoCallback done) override;
  uint64_t now_ns() const override { return now_ns_; }
  void after(uint64_t delay_ns, std::function<void()> fn) override;

  // --- Driving the simulation --------------------------------------------------------------
  // Runs the earliest pending event (advancing virtual time to it); false when none is left.
  bool step();
  // Runs events until none is left or the next one lies after `deadline_ns`; time ends at
  // deadline_ns (or at the last event, if that is later... never: it stops before).
  void run_until(uint64_t deadline_ns);
  void run_until_idle();
  bool has_events() const { return !events_.empty(); }

  // Power loss: every pending completion is dropped (never delivered), handles become invalid,
  // and each file's unsynced writes are applied to its durable contents in one of three ways
  // picked from the seed: all lost, all kept, or each sector kept or lost on its own.
  void crash();
  // Faults (the probabilities above) apply only while enabled; recovery tests turn them off.
  void set_faults_enabled(bool enabled) { faults_enabled_ = enabled; }
  // Bit flips only (some tests want I/O errors but clean reads, or the reverse).
  void set_bitflips_enabled(bool enabled) { bitflips_enabled_ = enabled; }

  const SimDiskStats& stats() const { return stats_; }
  std::mt19937_64& random() { return random_; }
  // Flips bits of a file's durable contents (and its cached view): rot on the medium, for tests.
  void corrupt_durable(const std::string& name, uint64_t offset, uint8_t xor_mask);
  // The durable contents of a file (empty if absent), for tests.
  std::vector<uint8_t> durable_contents(const std::string& name) const;

 private:
  struct PendingWrite {
    uint64_t offset;
    std::vector<uint8_t> bytes;
  };
  struct File {
    std::vector<uint8_t> durable;
    std::vector<uint8_t> current;  // what reads see: durable plus unsynced writes
    std::vector<PendingWrite> unsynced;
  };

  // A remove or rename submitted and not yet completed.
  struct NamespaceOp {
    bool rename = false;
    std::string from;
    std::string to;
  };
  int32_t apply_namespace_op(const NamespaceOp& op);
  void submit_namespace_op(NamespaceOp op, IoCallback done);

  void schedule(uint64_t delay_ns, std::function<void()> fn);
  uint64_t latency_ns();
  bool chance(double probability);
  File* file(FileHandle handle);
  // Applies `write` to `to`, each sector kept with probability `keep` (1: whole, 0: none).
  void apply_sectors(std::vector<uint8_t>& to, const PendingWrite& write, double keep);

  const SimDiskOptions options_;
  std::mt19937_64 random_;
  uint64_t now_ns_ = 0;
  uint64_t event_seq_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, std::function<void()>> events_;
  std::map<std::string, std::unique_ptr<File>> files_;
  std::map<FileHandle, std::string> handles_;
  std::map<uint64_t, NamespaceOp> pending_namespace_;  // by submission order
  uint64_t next_namespace_id_ = 0;
  FileHandle next_handle_ = 3;
  bool faults_enabled_ = false;
  bool bitflips_enabled_ = true;
  SimDiskStats stats_;
};

}  // namespace herald::storage
