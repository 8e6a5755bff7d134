// Test helper: the control plane's store side in process (QueueTable over a Log on a SimDisk,
// StoreService behind an IpcServer on one EventLoop), started by recovery and "crashed" at will.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>

#include "controlplane/ipc/ipc_server.h"
#include "controlplane/ipc/store_service.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/queue_table.h"
#include "controlplane/storage/sim_disk.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane::testing {

struct InProcessStoreOptions {
  storage::QueueTableOptions table;
  storage::LogOptions log;
  StoreServiceOptions service;
  IpcServerOptions ipc;
};

// Owns table, log, service and server; the loop and the disk are the caller's and outlive it
// (the disk must, since crash() is what tests use to lose what was not synced).
class InProcessStore {
 public:
  InProcessStore(uring::EventLoop& loop, storage::SimDisk& disk) : loop_(loop), disk_(disk) {}
  // Same order as crash() minus the disk: the server calls the service until it is gone.
  ~InProcessStore() {
    server_.reset();
    service_.reset();
    log_.reset();
    table_.reset();
  }
  InProcessStore(const InProcessStore&) = delete;
  InProcessStore& operator=(const InProcessStore&) = delete;

  // (Re)opens the store on the disk, recovering what is durable, then starts the service and
  // the server. `configure` runs on the service before the server exists, so a resync callback
  // or device-list source is in place before any dataplane can connect. Fails the test (and
  // returns early) if the log does not open or the server does not start.
  void start(const InProcessStoreOptions& options,
             const std::function<void(StoreService&)>& configure = nullptr) {
    table_ = std::make_unique<storage::QueueTable>(options.table);
    std::optional<absl::StatusOr<std::unique_ptr<storage::Log>>> result;
    storage::Log::open(
        disk_, options.log,
        [this](const storage::RecoveredRecord& r) { return table_->recover(r); },
        [&](absl::StatusOr<std::unique_ptr<storage::Log>> log) { result.emplace(std::move(log)); });
    while (!result.has_value() && disk_.step()) {
    }
    ASSERT_TRUE(result.has_value());
    ASSERT_TRUE(result->ok()) << result->status();
    log_ = std::move(**result);
    table_->start(*log_);
    disk_.run_until_idle();
    service_ = std::make_unique<StoreService>(loop_, *table_, log_.get(), options.service);
    if (configure) configure(*service_);
    auto server = IpcServer::start(loop_, options.ipc, service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    service_->attach(*server_);
  }

  // A control plane that dies: the disk keeps only what was synced.
  void crash() {
    server_.reset();
    service_.reset();
    disk_.crash();
    log_.reset();
    table_.reset();
  }

  storage::QueueTable& table() { return *table_; }
  storage::Log& log() { return *log_; }
  StoreService& service() { return *service_; }
  IpcServer& server() { return *server_; }

 private:
  uring::EventLoop& loop_;
  storage::SimDisk& disk_;
  std::unique_ptr<storage::QueueTable> table_;
  std::unique_ptr<storage::Log> log_;
  std::unique_ptr<StoreService> service_;
  std::unique_ptr<IpcServer> server_;
};

}  // namespace herald::controlplane::testing
