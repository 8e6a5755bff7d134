// The storage-device interface beneath the log: asynchronous, completion-based file I/O (so the
// same engine runs on the io_uring loop and on a deterministic simulated disk), plus the timer
// and clock the engine's group commit needs from whatever drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herald::storage {

// A file opened through a Device; meaningful only to that device.
using FileHandle = int32_t;

// Result of an operation: >= 0 is its value (bytes moved, or a FileHandle for open/create);
// < 0 is -errno. Completions never run inside the call that submitted the operation.
using IoCallback = std::function<void(int32_t result)>;

// Every method is called from, and every completion runs on, the thread that drives the device
// (the event loop's, or the simulation's). Buffers passed to write/read must stay valid until
// the completion. Offsets, lengths and buffer addresses must be multiples of block_bytes():
// the real device may use O_DIRECT.
class Device {
 public:
  virtual ~Device() = default;

  // Alignment of offsets, lengths and buffers for write() and read().
  virtual uint32_t block_bytes() const = 0;
  // True when a write's completion already means its data is durable (O_DSYNC): the log then
  // skips the separate sync.
  virtual bool writes_are_durable() const = 0;

  // Names of the files present (durably) in the device's directory. Synchronous: called once at
  // start-up, before the engine serves anything.
  virtual absl::StatusOr<std::vector<std::string>> list_files() = 0;
  // Creates (or truncates and recreates) `name`, `size_bytes` long, filled with zeros, and makes
  // the file, its size and its directory entry durable before completing with its handle.
  virtual void create(const std::string& name, uint64_t size_bytes, IoCallback done) = 0;
  // Opens an existing file for reading and writing; completes with its handle.
  virtual void open(const std::string& name, IoCallback done) = 0;
  // Releases a handle. Nothing may be in flight on it.
  virtual void close(FileHandle file) = 0;

  virtual void write(FileHandle file, uint64_t offset, const void* data, uint32_t size_bytes,
                     IoCallback done) = 0;
  // Completes with the bytes read; fewer than asked at the end of the file.
  virtual void read(FileHandle file, uint64_t offset, void* data, uint32_t size_bytes,
                    IoCallback done) = 0;
  // fdatasync: every completed write on `file` is durable once this completes with 0. A failure
  // means some of them may be lost for good, whatever a later sync says (see README.md).
  virtual void sync(FileHandle file, IoCallback done) = 0;

  // Unlinks `name`, then fsyncs the directory: once this completes with 0 the removal survives
  // a crash (before that, a crash may or may not have applied it). -ENOENT if absent. No
  // handle may be open on the file.
  virtual void remove(const std::string& name, IoCallback done) = 0;
  // Renames `from` to `to` atomically (replacing `to`), then fsyncs the directory: durable once
  // it completes with 0; a crash before leaves either name, never neither nor a mix.
  virtual void rename(const std::string& from, const std::string& to, IoCallback done) = 0;

  // The driver's clock (CLOCK_MONOTONIC, or the simulation's virtual time) and a one-shot timer
  // on it, for group commit's time limit.
  virtual uint64_t now_ns() const = 0;
  virtual void after(uint64_t delay_ns, std::function<void()> fn) = 0;
};

}  // namespace herald::storage
