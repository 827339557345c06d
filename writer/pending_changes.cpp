#include "writer/pending_changes.hpp"

#include <thread>

#include "shm/clock.hpp"

namespace poscache::detail {

PendingChanges::PendingChanges(ChangeChannel& channel, Journal journal, shm::SlotBook* book,
                               const std::uint64_t* next_version,
                               std::chrono::milliseconds flush_interval, std::size_t batch_size)
    : ch_(channel),
      journal_(journal),
      book_(book),
      next_version_(next_version),
      half_interval_ns_(std::chrono::nanoseconds(flush_interval).count() / 2),
      batch_size_(batch_size),
      // Epochs must not repeat the marks a previous writer left in the SlotBooks.
      epoch_(static_cast<std::uint64_t>(shm::realtime_ns())) {
  all_batches_.push_back(std::make_unique<ChangeBatch>());
  cur_ = all_batches_.back().get();
}

void PendingChanges::removal(RemovalEvent&& e, std::int64_t t) {
  journal_.append(e);
  if (cur_->empty()) cur_->first_ns = t;
  cur_->events.push_back(std::move(e));
}

void PendingChanges::replay(RemovalEvent&& e, std::int64_t t) {
  if (cur_->empty()) cur_->first_ns = t;
  cur_->events.push_back(std::move(e));
}

std::uint64_t PendingChanges::hand_off(bool always) {
  if (cur_->empty() && !always) return handed_;
  cur_->seq = handed_ + 1;
  cur_->last_version = *next_version_ - 1;
  if (!ch_.to_sync.push(cur_)) return handed_;  // full: keep filling this batch, drop nothing
  ++handed_;
  ++epoch_;
  ChangeBatch* next = nullptr;
  if (!ch_.to_apply.pop(next)) {
    all_batches_.push_back(std::make_unique<ChangeBatch>());
    next = all_batches_.back().get();
  }
  cur_ = next;
  return handed_;
}

void PendingChanges::hand_off_all() {
  while (!cur_->empty()) {
    hand_off();
    if (!cur_->empty()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

bool PendingChanges::flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::uint64_t target = hand_off();
  while (!cur_->empty() && std::chrono::steady_clock::now() < deadline) {  // the queue was full
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    target = hand_off();
  }
  while (ch_.clean_seq.load(std::memory_order_acquire) < target ||
         ch_.refilling.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace poscache::detail
