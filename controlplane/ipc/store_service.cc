// The store service on the IPC rings: appends, cancels, acks and drains against the QueueTable,
// outcomes batched per worker and never dropped, and pushes of state to every worker.
#include "controlplane/ipc/store_service.h"

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::controlplane {

namespace {

// Room kept in each ring record for the Envelope and the response table around the payload we
// estimate (vtables, offsets, alignment): generous, as an underestimate costs a kTooLarge.
constexpr uint64_t kRecordOverheadBytes = 256;
// A Deliver re-packed into another buffer is at most its stored StoredMessage buffer plus
// alignment and its offset in the vector.
constexpr uint64_t kPerMessageOverheadBytes = 32;
// An AppendOutcome struct on the ring; a QueueFullRecipients table costs this plus a
// DeviceAddress (24 B) a device.
constexpr uint64_t kOutcomeBytes = sizeof(ipc::AppendOutcome);
constexpr uint64_t kQueueFullTableBytes = 48;
constexpr uint64_t kDeviceBytes = sizeof(wire::DeviceAddress);

storage::DeviceKey device_key(const wire::DeviceAddress& a) {
  return {a.account().hi(), a.account().lo(), a.device()};
}

wire::DeviceAddress device_address(const storage::DeviceKey& k) {
  return wire::DeviceAddress(wire::AccountId(k.account_hi, k.account_lo), k.device);
}

bool contains(const std::vector<storage::DeviceKey>& v, const storage::DeviceKey& k) {
  return std::find(v.begin(), v.end(), k) != v.end();
}

}  // namespace

const char* store_record_error_name(StoreRecordError error) {
  switch (error) {
#define HERALD_STORE_RECORD_ERROR_NAME(name, text, doc) \
  case StoreRecordError::name: return text;
    HERALD_STORE_RECORD_ERRORS(HERALD_STORE_RECORD_ERROR_NAME)
#undef HERALD_STORE_RECORD_ERROR_NAME
    case StoreRecordError::kCount: break;
  }
  return "unknown";
}

StoreService::StoreService(uring::EventLoop& loop, storage::QueueTable& table,
                           const storage::Log* log, const StoreServiceOptions& options)
    : loop_(loop),
      table_(table),
      log_(log),
      options_(options),
      flush_op_(&StoreService::on_flush_timer, this) {
  HERALD_CHECK(options_.max_outcomes_per_record > 0, "max_outcomes_per_record must be positive");
  HERALD_CHECK(options_.max_drain_messages > 0, "max_drain_messages must be positive");
}

StoreService::~StoreService() {
  stopping_ = true;
  *alive_ = false;
  if (flush_op_.in_flight()) loop_.cancel(flush_op_);
  while (flush_op_.in_flight()) loop_.run_once(10'000'000);
}

void StoreService::attach(IpcServer& server) {
  server_ = &server;
  workers_.resize(server.segment().workers());
}

size_t StoreService::held_outcomes(uint16_t worker) const {
  return worker < workers_.size() ? workers_[worker].outcomes.size() : 0;
}

size_t StoreService::drains_in_flight(uint16_t worker) const {
  return worker < workers_.size() ? workers_[worker].drains_in_flight : 0;
}

StoreService::Backlog StoreService::backlog() const {
  Backlog b;
  b.appends_pending = pending_.size();
  for (const WorkerState& w : workers_) {
    b.outcomes_held += w.outcomes.size();
    b.drains_in_flight += w.drains_in_flight;
  }
  return b;
}

uint64_t StoreService::current_instance(uint16_t w) const {
  const uint64_t writer = workers_[w].writer_instance;
  return writer != 0 ? writer : server_->dataplane_instance_id();
}

bool StoreService::instance_live(uint64_t instance) const {
  return server_->dataplane_connected() && server_->dataplane_instance_id() == instance;
}

void StoreService::bad_record(uint16_t w, StoreRecordError error) {
  ++stats_.record_errors[static_cast<size_t>(error)];
  HLOG_RATE_LIMITED(kWarn, "store.bad_record", 1)
      .kv("worker", w)
      .kv("reason", store_record_error_name(error));
}

// --- Records from the dataplane -----------------------------------------------------------

void StoreService::on_record(uint16_t worker, const ipc::Envelope& envelope) {
  HERALD_CHECK(server_ != nullptr, "StoreService::attach() was not called");
  if (worker >= workers_.size()) return;  // the server checks; defensive against a resize
  const ipc::Record type = envelope.record_type();
  ++stats_.records[static_cast<size_t>(type)];
  switch (type) {
    case ipc::Record::Hello:
      // A (re)started writer: what follows on this ring is that instance's.
      workers_[worker].writer_instance = envelope.record_as_Hello()->instance_id();
      break;
    case ipc::Record::Heartbeat: break;
    case ipc::Record::StoreAppend:
      on_append(worker, current_instance(worker), *envelope.record_as_StoreAppend());
      break;
    case ipc::Record::StoreCancel: on_cancel(worker, *envelope.record_as_StoreCancel()); break;
    case ipc::Record::StoreAck: on_ack(worker, *envelope.record_as_StoreAck()); break;
    case ipc::Record::DrainRequest:
      on_drain(worker, current_instance(worker), *envelope.record_as_DrainRequest());
      break;
    case ipc::Record::PushHint:
      if (push_hint_) push_hint_(worker, *envelope.record_as_PushHint());
      break;
    case ipc::Record::DeviceListRequest:
      on_device_list(worker, current_instance(worker), *envelope.record_as_DeviceListRequest());
      break;
    default:
      // AppendDurable, DrainResponse and the pushes travel CP -> DP only.
      bad_record(worker, StoreRecordError::kUnexpectedType);
      break;
  }
  // Outcomes held because the IpcServer's backlog was full get another chance whenever the
  // dataplane shows it is reading (it is writing, so it is alive).
  schedule_flush();
}

void StoreService::on_append(uint16_t w, uint64_t instance, const ipc::StoreAppend& append) {
  const Requester requester{w, instance, append.append_id()};
  const wire::Deliver* message = append.message();
  if (message == nullptr || message->server_msg_id() == nullptr) {
    bad_record(w, StoreRecordError::kNoMessage);
    add_outcome(requester, ipc::AppendStatus::Rejected, {});
    return;
  }
  if (append.recipients() == nullptr || append.recipients()->size() == 0) {
    bad_record(w, StoreRecordError::kNoRecipients);
    add_outcome(requester, ipc::AppendStatus::Rejected, {});
    return;
  }
  std::vector<storage::DeviceKey> recipients;
  recipients.reserve(append.recipients()->size());
  for (const wire::DeviceAddress* a : *append.recipients()) {
    if (a->device() == 0) {
      bad_record(w, StoreRecordError::kBadDevice);
      add_outcome(requester, ipc::AppendStatus::Rejected, {});
      return;
    }
    recipients.push_back(device_key(*a));
  }
  const storage::MessageId id{message->server_msg_id()->hi(), message->server_msg_id()->lo()};

  // The same message again (a dataplane re-sending after a restart of either side, or records
  // read twice: at-least-once). Pending: answer it with the first one's outcome.
  if (auto it = pending_.find(id); it != pending_.end()) {
    ++stats_.duplicate_appends;
    it->second.requesters.push_back(requester);
    workers_[w].pending_by_append[requester.append_id] = id;
    return;
  }

  // The body stored once for every queue: the Deliver as it will be sent, and the sender's
  // client_msg_id so dedup can be rebuilt after a dataplane restart.
  body_builder_.Clear();
  wire::DeliverT deliver;
  message->UnPackTo(&deliver);
  const auto deliver_offset = wire::CreateDeliver(body_builder_, &deliver);
  body_builder_.Finish(
      ipc::CreateStoredMessage(body_builder_, deliver_offset, append.client_msg_id()));
  const std::span<const uint8_t> body(body_builder_.GetBufferPointer(), body_builder_.GetSize());

  std::weak_ptr<bool> alive = alive_;
  absl::StatusOr<storage::AppendOutcome> result =
      table_.append(id, body, recipients, [this, alive, id](const absl::Status& status) {
        if (alive.expired() || !*alive.lock()) return;
        on_append_done(id, status);
      });
  if (!result.ok()) {
    ipc::AppendStatus status = ipc::AppendStatus::StoreFailed;
    switch (result.status().code()) {
      case absl::StatusCode::kAlreadyExists:
        // Queued and durable already (only pending ones are in pending_): the sender may have
        // its ack.
        ++stats_.duplicate_appends;
        status = ipc::AppendStatus::Durable;
        break;
      case absl::StatusCode::kInvalidArgument: status = ipc::AppendStatus::Rejected; break;
      case absl::StatusCode::kResourceExhausted: status = ipc::AppendStatus::StoreBusy; break;
      default: break;  // FailedPrecondition: the log has failed (fail-stop)
    }
    HLOG_RATE_LIMITED(kWarn, "store.append_refused", 1)
        .kv("worker", w)
        .kv("append_id", requester.append_id)
        .kv("error", std::string(result.status().message()));
    add_outcome(requester, status, {});
    return;
  }
  stats_.queue_full_recipients += result->queue_full.size();
  if (!result->written) {
    add_outcome(requester, ipc::AppendStatus::QueueFull, std::move(result->queue_full));
    return;
  }
  Pending pending;
  pending.id = id;
  for (const storage::DeviceKey& r : recipients) {
    if (!contains(result->queue_full, r)) pending.accepted.push_back(r);
  }
  pending.queue_full = std::move(result->queue_full);
  pending.requesters.push_back(requester);
  pending_.emplace(id, std::move(pending));
  workers_[w].pending_by_append[requester.append_id] = id;
}

void StoreService::on_append_done(const storage::MessageId& id, const absl::Status& status) {
  auto it = pending_.find(id);
  if (HERALD_BUG_IF(it == pending_.end(), "store: durable callback for an unknown append")) {
    return;
  }
  Pending pending = std::move(it->second);
  pending_.erase(it);
  // DESIGN.md: a device that acked before the commit cancels its entry. The entry was written
  // with the others (one record per message), so it is tombstoned now that it is durable.
  bool all_cancelled = !pending.accepted.empty();
  for (const storage::DeviceKey& d : pending.accepted) {
    if (!contains(pending.cancelled, d)) all_cancelled = false;
  }
  if (status.ok()) {
    for (const storage::DeviceKey& d : pending.cancelled) {
      remove_entries(d, std::span<const storage::MessageId>(&id, 1), stats_.cancel_tombstones);
    }
  } else {
    HLOG_RATE_LIMITED(kError, "store.append_failed", 1).kv("error", status.ToString());
  }
  // Every recipient has the message: the dataplane acked the sender itself; Cancelled tells it
  // the append is settled. Otherwise the truth: durable, or not (never a false durable).
  const ipc::AppendStatus outcome = all_cancelled ? ipc::AppendStatus::Cancelled
                                    : status.ok() ? ipc::AppendStatus::Durable
                                                  : ipc::AppendStatus::StoreFailed;
  for (const Requester& r : pending.requesters) {
    workers_[r.worker].pending_by_append.erase(r.append_id);
    remember_completed(r.worker, r.append_id, id);
    add_outcome(r, outcome, pending.queue_full);
  }
  if (outcome == ipc::AppendStatus::Durable) kick_if_orphaned(pending);
}

// The dataplane kicks the drain of an append's recipients when the append's outcome reaches it
// (a recipient may have logged in and drained its queue empty before the entry was durable).
// An append of a dataplane that was replaced by a restart has no one to do that: do it here,
// through the new dataplane, which routes the kick to the device's worker.
void StoreService::kick_if_orphaned(const Pending& pending) {
  if (!server_->dataplane_connected()) return;  // the next dataplane drains after connecting
  for (const Requester& r : pending.requesters) {
    if (instance_live(r.instance)) return;  // the live dataplane has the outcome
  }
  std::vector<wire::DeviceAddress> devices;
  for (const storage::DeviceKey& d : pending.accepted) {
    if (!contains(pending.cancelled, d)) devices.push_back(device_address(d));
  }
  if (devices.empty()) return;
  const uint16_t w = pending.requesters.empty() ? 0 : pending.requesters.front().worker;
  flatbuffers::FlatBufferBuilder& b = server_->builder();
  const auto record = ipc::CreateDrainKick(b, b.CreateVectorOfStructs(devices));
  const SendResult sent = server_->send(w, record);
  if (sent == SendResult::kSent || sent == SendResult::kQueued) {
    ++stats_.drain_kicks;
  } else {
    ++stats_.drain_kicks_failed;
  }
}

void StoreService::remember_completed(uint16_t w, uint64_t append_id,
                                      const storage::MessageId& id) {
  if (options_.recent_appends_per_worker == 0) return;
  WorkerState& worker = workers_[w];
  while (worker.recent.size() >= options_.recent_appends_per_worker) {
    const auto& [old_append, old_id] = worker.recent.front();
    auto found = worker.recent_by_append.find(old_append);
    if (found != worker.recent_by_append.end() && found->second == old_id) {
      worker.recent_by_append.erase(found);
    }
    worker.recent.pop_front();
  }
  worker.recent.emplace_back(append_id, id);
  worker.recent_by_append[append_id] = id;
}

void StoreService::on_cancel(uint16_t w, const ipc::StoreCancel& cancel) {
  if (cancel.devices() == nullptr || cancel.devices()->size() == 0) {
    bad_record(w, StoreRecordError::kNoRecipients);
    return;
  }
  WorkerState& worker = workers_[w];
  if (auto p = worker.pending_by_append.find(cancel.append_id());
      p != worker.pending_by_append.end()) {
    auto found = pending_.find(p->second);
    if (HERALD_BUG_IF(found == pending_.end(), "store: append id maps to no pending append")) {
      return;
    }
    Pending& pending = found->second;
    for (const wire::DeviceAddress* a : *cancel.devices()) {
      const storage::DeviceKey d = device_key(*a);
      if (contains(pending.accepted, d) && !contains(pending.cancelled, d)) {
        pending.cancelled.push_back(d);
        ++stats_.cancels_pending;
      }
    }
    return;
  }
  // The cancel crossed its AppendDurable on the rings: the devices acked, so their entries go
  // exactly as a StoreAck would take them.
  if (auto r = worker.recent_by_append.find(cancel.append_id());
      r != worker.recent_by_append.end()) {
    const storage::MessageId id = r->second;
    for (const wire::DeviceAddress* a : *cancel.devices()) {
      stats_.cancels_late += 1;
      remove_entries(device_key(*a), std::span<const storage::MessageId>(&id, 1),
                     stats_.cancel_tombstones);
    }
    return;
  }
  // Forgotten (older than recent_appends_per_worker) or never seen: the entries stay and the
  // device gets the message once more, dropping it by id (at least once, never a loss).
  ++stats_.cancels_unknown;
}

void StoreService::on_ack(uint16_t w, const ipc::StoreAck& ack) {
  if (ack.device() == nullptr) {
    bad_record(w, StoreRecordError::kNoDevice);
    return;
  }
  if (ack.server_msg_ids() == nullptr || ack.server_msg_ids()->size() == 0) return;
  std::vector<storage::MessageId> ids;
  ids.reserve(ack.server_msg_ids()->size());
  for (const wire::ServerMsgId* m : *ack.server_msg_ids()) ids.push_back({m->hi(), m->lo()});
  remove_entries(device_key(*ack.device()), ids, stats_.acked_entries);
}

void StoreService::remove_entries(const storage::DeviceKey& device,
                                  std::span<const storage::MessageId> ids, uint64_t& counter) {
  std::weak_ptr<bool> alive = alive_;
  absl::StatusOr<uint32_t> removed =
      table_.remove(device, ids, [this, alive](const absl::Status& status) {
        if (status.ok() || alive.expired() || !*alive.lock()) return;
        // The entries already left the index; a lost tombstone brings them back after a
        // restart and the device gets them again (at least once). Nothing more to do.
        ++stats_.remove_errors;
      });
  if (!removed.ok()) {
    ++stats_.remove_errors;
    HLOG_RATE_LIMITED(kWarn, "store.remove_refused", 1)
        .kv("error", std::string(removed.status().message()));
    return;
  }
  counter += *removed;
  stats_.acks_unknown += ids.size() - *removed;
}

void StoreService::on_drain(uint16_t w, uint64_t instance, const ipc::DrainRequest& request) {
  const uint64_t request_id = request.request_id();
  if (request.device() == nullptr || request.device()->device() == 0) {
    bad_record(w, StoreRecordError::kNoDevice);
    send_drain(w, instance, request_id, {}, ipc::DrainStatus::Rejected, {}, false);
    return;
  }
  const storage::DeviceKey device = device_key(*request.device());
  WorkerState& worker = workers_[w];
  if (worker.drains_in_flight >= options_.max_drains_in_flight_per_worker) {
    send_drain(w, instance, request_id, device, ipc::DrainStatus::Busy, {}, false);
    return;
  }
  std::optional<storage::MessageId> after;
  if (request.after() != nullptr)
    after = storage::MessageId{request.after()->hi(), request.after()->lo()};
  const uint32_t max_messages = request.max_messages() == 0
                                    ? options_.max_drain_messages
                                    : std::min(request.max_messages(), options_.max_drain_messages);
  const uint64_t max_bytes =
      request.max_bytes() == 0 ? options_.max_drain_bytes
                               : std::min<uint64_t>(request.max_bytes(), options_.max_drain_bytes);
  ++worker.drains_in_flight;
  std::weak_ptr<bool> alive = alive_;
  table_.drain(
      device, after, max_messages, max_bytes,
      [this, alive, w, instance, request_id,
       device](absl::StatusOr<std::vector<storage::DrainedMessage>> messages) {
        if (alive.expired() || !*alive.lock()) return;
        --workers_[w].drains_in_flight;
        if (!instance_live(instance)) {
          // Its dataplane left; the next one asks again from its own cursor.
          ++stats_.drains_orphaned;
          return;
        }
        if (!messages.ok()) {
          HLOG_RATE_LIMITED(kError, "store.drain_failed", 1)
              .kv("error", messages.status().ToString());
          send_drain(w, instance, request_id, device, ipc::DrainStatus::StoreError, {}, false);
          return;
        }
        const bool more =
            !messages->empty() && !table_.peek(device, messages->back().id, 1, UINT64_MAX).empty();
        send_drain(w, instance, request_id, device, ipc::DrainStatus::Ok, *messages, more);
      });
}

void StoreService::send_drain(uint16_t w, uint64_t instance, uint64_t request_id,
                              const storage::DeviceKey& device, ipc::DrainStatus status,
                              std::span<const storage::DrainedMessage> messages, bool more) {
  const uint64_t limit = server_->segment().max_payload_bytes();
  const uint64_t budget = limit > kRecordOverheadBytes ? limit - kRecordOverheadBytes : 0;
  const wire::DeviceAddress address = device_address(device);
  size_t next = 0;
  // One response per chunk that fits a ring record; at least one response (an empty one when
  // nothing is queued or on an error status).
  do {
    size_t end = next;
    uint64_t bytes = 0;
    while (end < messages.size()) {
      const uint64_t cost = messages[end].body.size() + kPerMessageOverheadBytes;
      if (end > next && bytes + cost > budget) break;
      bytes += cost;
      ++end;
    }
    if (end > next && bytes > budget) {
      // One message larger than a ring record (the log's limit exceeds the ring's): it cannot
      // be delivered over this ring size. An operator error in the config; say so loudly.
      HLOG_RATE_LIMITED(kError, "store.drain_message_too_large", 1)
          .kv("bytes", bytes)
          .kv("ring_record_limit", limit);
      status = ipc::DrainStatus::StoreError;
      end = messages.size();
      next = end;
    }
    flatbuffers::FlatBufferBuilder& b = server_->builder();
    std::vector<flatbuffers::Offset<wire::Deliver>> delivers;
    delivers.reserve(end - next);
    uint64_t body_bytes = 0;
    for (size_t i = next; i < end && status == ipc::DrainStatus::Ok; ++i) {
      const std::vector<uint8_t>& body = messages[i].body;
      body_bytes += body.size();
      flatbuffers::Verifier verifier(body.data(), body.size());
      const ipc::StoredMessage* stored = verifier.VerifyBuffer<ipc::StoredMessage>(nullptr)
                                             ? flatbuffers::GetRoot<ipc::StoredMessage>(body.data())
                                             : nullptr;
      if (stored == nullptr || stored->message() == nullptr) {
        // It passed the log's CRC, so this is not rot: a bug, or a format we do not know.
        (void)HERALD_BUG_IF(true, "store: queued body is not a StoredMessage");
        status = ipc::DrainStatus::StoreError;
        break;
      }
      wire::DeliverT deliver;
      stored->message()->UnPackTo(&deliver);
      deliver.client_msg_id = stored->client_msg_id();  // bodies stored before the field
      delivers.push_back(wire::CreateDeliver(b, &deliver));
    }
    if (status != ipc::DrainStatus::Ok) {
      delivers.clear();
      b.Clear();
      end = messages.size();
    }
    const bool last = end >= messages.size();
    const auto vec =
        delivers.empty()
            ? flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<wire::Deliver>>>()
            : b.CreateVector(delivers);
    const auto response = ipc::CreateDrainResponse(
        b, request_id, &address, vec, last ? more && status == ipc::DrainStatus::Ok : true, status,
        instance);
    const SendResult sent = server_->send(w, response);
    if (sent != SendResult::kSent && sent != SendResult::kQueued) {
      // Nothing is lost: the entries stay queued and the dataplane re-asks (its request times
      // out, or the next ack triggers one).
      ++stats_.drain_send_failed;
      HLOG_RATE_LIMITED(kWarn, "store.drain_response_not_sent", 1)
          .kv("worker", w)
          .kv("result", send_result_name(sent));
      return;
    }
    ++stats_.drain_responses;
    stats_.drain_messages += delivers.size();
    if (!delivers.empty()) stats_.drain_bytes += body_bytes;
    next = end;
  } while (next < messages.size());
  ++stats_.drains[static_cast<size_t>(status)];
}

// --- Outcomes back to the dataplane -------------------------------------------------------

void StoreService::add_outcome(const Requester& r, ipc::AppendStatus status,
                               std::vector<storage::DeviceKey> queue_full) {
  ++stats_.outcomes[static_cast<size_t>(status)];
  workers_[r.worker].outcomes.push_back(
      Outcome{r.instance, r.append_id, status, std::move(queue_full)});
  schedule_flush();
}

void StoreService::schedule_flush() {
  if (stopping_ || flush_op_.in_flight()) return;
  bool any = false;
  for (const WorkerState& w : workers_) any = any || !w.outcomes.empty();
  if (!any) return;
  // Deferred to the loop rather than sent from each durable callback: every outcome decided in
  // one pass (a group commit's callbacks, a batch of ring records) leaves in one AppendDurable.
  loop_.timeout(flush_op_, 0);
}

void StoreService::on_flush_timer(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<StoreService>();
  if (c.result == -ECANCELED || self->stopping_) return;
  self->flush_outcomes();
}

void StoreService::flush_outcomes() {
  bool retry = false;
  for (uint16_t w = 0; w < workers_.size(); ++w) {
    if (!flush_worker(w)) retry = true;
  }
  if (retry && !stopping_ && !flush_op_.in_flight()) {
    ++stats_.outcomes_held;
    loop_.timeout(flush_op_, options_.held_retry_ns);
  }
}

bool StoreService::flush_worker(uint16_t w) {
  WorkerState& worker = workers_[w];
  // No dataplane: keep them. The same instance may come back (a reconnect without a restart);
  // a new one makes them orphans (on_dataplane_connected).
  if (!server_->dataplane_connected()) return true;
  const uint64_t live = server_->dataplane_instance_id();
  const uint64_t limit = server_->segment().max_payload_bytes();
  const uint64_t budget = limit > kRecordOverheadBytes ? limit - kRecordOverheadBytes : 0;
  while (!worker.outcomes.empty()) {
    if (worker.outcomes.front().instance != live) {
      // Appends of a dataplane that is gone (read from the ring after its successor connected):
      // their sender never got an ack, so nothing acknowledged is lost.
      ++stats_.outcomes_orphaned;
      worker.outcomes.pop_front();
      continue;
    }
    // One record: consecutive outcomes of the live instance within the count and size limits.
    size_t n = 0;
    uint64_t bytes = 0;
    while (n < worker.outcomes.size() && n < options_.max_outcomes_per_record) {
      const Outcome& o = worker.outcomes[n];
      if (o.instance != live) break;
      uint64_t cost = kOutcomeBytes;
      if (!o.queue_full.empty()) cost += kQueueFullTableBytes + kDeviceBytes * o.queue_full.size();
      if (n > 0 && bytes + cost > budget) break;
      bytes += cost;
      ++n;
    }
    flatbuffers::FlatBufferBuilder& b = server_->builder();
    std::vector<ipc::AppendOutcome> outcomes;
    std::vector<flatbuffers::Offset<ipc::QueueFullRecipients>> full;
    outcomes.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const Outcome& o = worker.outcomes[i];
      outcomes.emplace_back(o.append_id, o.status);
      if (o.queue_full.empty()) continue;
      // A single outcome whose list exceeds a record (a group larger than the ring allows)
      // keeps what fits: the status still tells the truth about durability.
      size_t devices = o.queue_full.size();
      if (kOutcomeBytes + kQueueFullTableBytes + kDeviceBytes * devices > budget) {
        devices = budget > kOutcomeBytes + kQueueFullTableBytes
                      ? (budget - kOutcomeBytes - kQueueFullTableBytes) / kDeviceBytes
                      : 0;
      }
      std::vector<wire::DeviceAddress> addresses;
      addresses.reserve(devices);
      for (size_t d = 0; d < devices; ++d) addresses.push_back(device_address(o.queue_full[d]));
      full.push_back(
          ipc::CreateQueueFullRecipients(b, o.append_id, b.CreateVectorOfStructs(addresses)));
    }
    const auto record = ipc::CreateAppendDurable(
        b, b.CreateVectorOfStructs(outcomes), log_ != nullptr ? log_->durable_sequence() : 0,
        full.empty() ? flatbuffers::Offset<
                           flatbuffers::Vector<flatbuffers::Offset<ipc::QueueFullRecipients>>>()
                     : b.CreateVector(full),
        live);
    const SendResult sent = server_->send(w, record);
    if (sent != SendResult::kSent && sent != SendResult::kQueued) {
      // kFull (the ring and the server's backlog are full: the dataplane is slow) or kBroken
      // (until it reconnects): keep every outcome, in order, and try again later.
      HLOG_RATE_LIMITED(kWarn, "store.outcomes_held", 1)
          .kv("worker", w)
          .kv("held", worker.outcomes.size())
          .kv("result", send_result_name(sent));
      return false;
    }
    ++stats_.outcome_records;
    worker.outcomes.erase(worker.outcomes.begin(), worker.outcomes.begin() + n);
  }
  return true;
}

// --- Connections --------------------------------------------------------------------------

void StoreService::on_dataplane_connected(uint64_t instance_id, bool restarted) {
  HERALD_CHECK(server_ != nullptr, "StoreService::attach() was not called");
  // Records still in the rings were written by the dataplane connected before (until the new
  // one's Hello appears on each ring); on the first connect of this process, by this one (a
  // fresh segment holds nothing older).
  const uint64_t previous = last_instance_ != 0 ? last_instance_ : instance_id;
  for (WorkerState& w : workers_) {
    w.writer_instance = previous;
    if (instance_id == previous) continue;
    for (auto it = w.outcomes.begin(); it != w.outcomes.end();) {
      if (it->instance != instance_id) {
        ++stats_.outcomes_orphaned;
        it = w.outcomes.erase(it);
      } else {
        ++it;
      }
    }
  }
  last_instance_ = instance_id;
  HLOG_INFO("store.dataplane_connected")
      .kv("instance_id", instance_id)
      .kv("restarted", restarted)
      .kv("pending_appends", pending_.size());
  // A (re)started dataplane knows nothing: give it the whole state before it reads anything
  // that depends on it (the pushes are ahead of every later record on each ring).
  ++stats_.resyncs;
  if (resync_) resync_(pusher_);
  schedule_flush();
}

void StoreService::on_dataplane_disconnected() {
  HLOG_INFO("store.dataplane_disconnected")
      .kv("pending_appends", pending_.size())
      .kv("held_outcomes", [&] {
        size_t n = 0;
        for (const WorkerState& w : workers_) n += w.outcomes.size();
        return n;
      }());
}

// --- Pushes -------------------------------------------------------------------------------

template <typename Build>
absl::Status StoreService::broadcast(ipc::Record type, const Build& build) {
  if (server_ == nullptr || !server_->dataplane_connected()) {
    // The resync on the next connect carries the state; writing now would only fill rings.
    return absl::UnavailableError("ipc: no dataplane connected");
  }
  size_t refused = 0;
  SendResult last = SendResult::kSent;
  for (uint16_t w = 0; w < workers_.size(); ++w) {
    flatbuffers::FlatBufferBuilder& b = server_->builder();
    const flatbuffers::Offset<void> record = build(b);
    const SendResult sent = server_->send_record(w, type, record);
    if (sent == SendResult::kSent || sent == SendResult::kQueued) {
      ++stats_.pushes[static_cast<size_t>(type)];
    } else {
      ++stats_.push_failures[static_cast<size_t>(type)];
      ++refused;
      last = sent;
    }
  }
  if (refused == 0) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("ipc: ", std::string(ipc::EnumNameRecord(type)),
                                             " refused by ", refused, " of ", workers_.size(),
                                             " workers (", send_result_name(last), ")"));
}

absl::Status Pusher::push_session_key(const SessionKey& key) {
  return service_.broadcast(ipc::Record::SessionKeyPush, [&](flatbuffers::FlatBufferBuilder& b) {
    return ipc::CreateSessionKeyPush(b, key.key_id, b.CreateVector(key.key.data(), key.key.size()),
                                     key.not_before_ms, key.not_after_ms)
        .Union();
  });
}

absl::Status Pusher::push_revocations(std::span<const Revocation> revocations) {
  return service_.broadcast(ipc::Record::RevocationPush, [&](flatbuffers::FlatBufferBuilder& b) {
    std::vector<flatbuffers::Offset<ipc::Revocation>> list;
    list.reserve(revocations.size());
    for (const Revocation& r : revocations) {
      const wire::AccountId account(r.account.account_hi, r.account.account_lo);
      list.push_back(ipc::CreateRevocation(b, &account,
                                           r.account.device == 0
                                               ? flatbuffers::Optional<uint32_t>()
                                               : flatbuffers::Optional<uint32_t>(r.account.device),
                                           r.issued_before_ms));
    }
    return ipc::CreateRevocationPush(b, b.CreateVector(list)).Union();
  });
}

absl::Status Pusher::push_revocation(uint64_t account_hi, uint64_t account_lo,
                                     std::optional<uint32_t> device, uint64_t issued_before_ms) {
  const Revocation r{{account_hi, account_lo, device.value_or(0)}, issued_before_ms};
  return push_revocations(std::span<const Revocation>(&r, 1));
}

absl::Status Pusher::push_group_membership(uint64_t group_hi, uint64_t group_lo, uint64_t version,
                                           std::span<const std::pair<uint64_t, uint64_t>> members,
                                           bool deleted) {
  return service_.broadcast(
      ipc::Record::GroupMembershipPush, [&](flatbuffers::FlatBufferBuilder& b) {
        std::vector<wire::AccountId> accounts;
        accounts.reserve(members.size());
        for (const auto& [hi, lo] : members) accounts.emplace_back(hi, lo);
        const wire::GroupId group(group_hi, group_lo);
        return ipc::CreateGroupMembershipPush(b, &group, version, b.CreateVectorOfStructs(accounts),
                                              deleted)
            .Union();
      });
}

void StoreService::on_device_list(uint16_t w, uint64_t instance,
                                  const ipc::DeviceListRequest& request) {
  const wire::AccountId* account = request.account();
  ipc::DeviceListStatus status = ipc::DeviceListStatus::Rejected;
  std::optional<DeviceList> list;
  if (account == nullptr) {
    bad_record(w, StoreRecordError::kNoAccount);
  } else if (device_lists_) {
    list = device_lists_(account->hi(), account->lo());
    status = list ? ipc::DeviceListStatus::Ok : ipc::DeviceListStatus::UnknownAccount;
  }
  ++stats_.device_lists[static_cast<size_t>(status)];
  flatbuffers::FlatBufferBuilder& b = server_->builder();
  const auto devices =
      list ? b.CreateVector(list->devices) : flatbuffers::Offset<flatbuffers::Vector<uint32_t>>();
  const auto record = ipc::CreateDeviceListResponse(b, request.request_id(), account, devices,
                                                    list ? list->version : 0, status, instance);
  const SendResult sent = server_->send(w, record);
  if (sent != SendResult::kSent && sent != SendResult::kQueued) ++stats_.device_list_send_failed;
}

absl::Status Pusher::push_device_list(uint64_t account_hi, uint64_t account_lo,
                                      std::span<const uint32_t> devices, uint64_t version) {
  return service_.broadcast(ipc::Record::DeviceListPush, [&](flatbuffers::FlatBufferBuilder& b) {
    const wire::AccountId account(account_hi, account_lo);
    return ipc::CreateDeviceListPush(b, &account, b.CreateVector(devices.data(), devices.size()),
                                     version)
        .Union();
  });
}

absl::Status Pusher::push_config(uint64_t revision, std::span<const uint8_t> config,
                                 std::span<const std::string> restart_fields) {
  return service_.broadcast(ipc::Record::ConfigPush, [&](flatbuffers::FlatBufferBuilder& b) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> fields;
    fields.reserve(restart_fields.size());
    for (const std::string& f : restart_fields) fields.push_back(b.CreateString(f));
    return ipc::CreateConfigPush(b, revision, b.CreateVector(config.data(), config.size()),
                                 b.CreateVector(fields))
        .Union();
  });
}

}  // namespace herald::controlplane
