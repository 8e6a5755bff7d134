// What the running kernel's io_uring offers and which of it an EventLoop uses. Probed when a
// loop is created, because CI and appliance kernels may differ from a developer's.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace herald::uring {

struct Features {
  // Setup flags (IORING_SETUP_*) the ring was created with, after falling back past any the
  // kernel refused with EINVAL.
  uint32_t setup_flags = 0;
  // IORING_FEAT_* bits io_uring_setup(2) reported.
  uint32_t kernel_features = 0;
  uint32_t sq_entries = 0;
  uint32_t cq_entries = 0;

  // Decoded IORING_FEAT_* bits the loop cares about.
  bool single_mmap = false;    // 5.4: one mmap for SQ and CQ rings
  bool nodrop = false;         // 5.5: CQEs are never dropped on overflow (required)
  bool submit_stable = false;  // 5.5: SQE data is copied at submit, not later
  bool fast_poll = false;      // 5.7: sockets wait by poll, not an io-wq thread (required)
  bool ext_arg = false;        // 5.11: wait with a timeout without spending an SQE
  bool cqe_skip = false;       // 5.17

  // Setup flags in use (decoded from setup_flags).
  bool single_issuer = false;  // 6.0
  bool coop_taskrun = false;   // 5.19
  bool taskrun_flag = false;   // 5.19
  bool defer_taskrun = false;  // 6.1
  bool submit_all = false;     // 5.18

  // Behaviour probed by submitting real requests on the new ring: the opcode probe cannot say
  // which flags an opcode accepts, and version numbers lie on backported kernels.
  bool buf_ring = false;          // 5.19: io_uring_register_buf_ring
  bool multishot_accept = false;  // 5.19
  bool multishot_recv = false;    // 6.0
  bool multishot_poll = false;    // 5.13
  bool cancel_any = false;        // 5.19: IORING_ASYNC_CANCEL_ANY, used to drain at shutdown
  bool send_zc = false;           // 6.0: IORING_OP_SEND_ZC in the opcode probe (not used yet)

  // What the loop does with the above (multishot unless the kernel or Options say otherwise).
  bool use_multishot_accept = false;
  bool use_multishot_recv = false;
  bool use_multishot_poll = false;

  // One bit per opcode the kernel reported in io_uring_get_probe_ring(); kernels newer than
  // liburing 2.3 report opcodes liburing has no name for, which are kept too.
  std::array<uint64_t, 4> opcodes{};
  uint8_t last_opcode = 0;

  bool opcode_supported(uint32_t opcode) const {
    return opcode < 256 && ((opcodes[opcode / 64] >> (opcode % 64)) & 1) != 0;
  }

  // One line for the start-up log: setup flags, kernel features, multishot modes.
  std::string summary() const;
};

}  // namespace herald::uring
