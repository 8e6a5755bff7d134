// Test harness: an io_uring loop with an HTTP server (plain or TLS) on its own thread, so the
// test thread can drive blocking clients. Stats are copied out after every loop iteration.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "controlplane/http/server.h"

namespace herald::http::testing {

template <typename HandlerT>
class LoopServer {
 public:
  explicit LoopServer(const ServerLimits& limits, std::string address = "127.0.0.1",
                      std::shared_ptr<tls::ServerContext> tls = nullptr) {
    std::promise<uint16_t> port;
    auto ready = port.get_future();
    thread_ = std::thread([this, limits, address, tls, &port] {
      auto loop = uring::EventLoop::create();
      if (!loop.ok()) {
        port.set_value(0);
        return;
      }
      auto server = Server::create(**loop, handler_, limits);
      if (!server.ok() || !(*server)->listen(address, 0, tls).ok()) {
        port.set_value(0);
        return;
      }
      // Handlers that steer the server (graceful shutdown tests) get a pointer to it.
      if constexpr (requires { handler_.server; }) handler_.server = server->get();
      port.set_value((*server)->port());
      while (!stop_.load()) {
        (void)(*loop)->run_once(20'000'000);
        std::lock_guard<std::mutex> lock(mu_);
        stats_ = (*server)->stats();
        finished_ = (*server)->finished();
      }
      server->reset();
    });
    port_ = ready.get();
  }
  ~LoopServer() {
    stop_.store(true);
    thread_.join();
  }
  LoopServer(const LoopServer&) = delete;
  LoopServer& operator=(const LoopServer&) = delete;

  // 0 when the server could not start.
  uint16_t port() const { return port_; }
  ServerStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  // Polls (bounded: 5 s) until `pred` holds on the copied stats.
  template <typename Pred>
  bool wait_for(Pred pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred(stats())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  HandlerT handler_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  ServerStats stats_;
  bool finished_ = false;
  uint16_t port_ = 0;
};

}  // namespace herald::http::testing
