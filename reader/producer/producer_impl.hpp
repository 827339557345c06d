// Producer::Impl: a producer's ring, its connection to the writer and the watcher that
// re-attaches it, shared by the pushing side (reader/producer/producer.cpp) and the
// acknowledgements (reader/producer/producer_acks.cpp). The ring's protocol (PP1-PP4) is
// shm/ring.hpp's.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "reader/producer/ring_attach.hpp"
#include "shm/cpu_relax.hpp"
#include "shm/ring.hpp"
#include "shm/seqlock.hpp"

namespace poscache {

struct Producer::Impl {
  ProducerConfig cfg;
  std::string socket_path;
  Reader reader;
  int ring_fd = -1;
  shm::RingHeader* h = nullptr;
  shm::RingMessage* msgs = nullptr;
  std::uint64_t* outcomes = nullptr;  // written by the writer (shm/ring.hpp, OUTCOMES)
  std::size_t bytes = 0;
  std::uint64_t mask = 0;
  std::uint64_t tail = 0;  // the producer's own copy (only this side writes it)
  // An open batch (begin_batch .. end_batch): pushes are staged here, not published.
  bool batching = false;
  std::vector<shm::RingMessage> staged;
  std::size_t batch_calls = 0;   // pushes made in the batch, refused ones included
  std::string batch_error;       // the first refusal, "command i: why"
  std::string batch_refusal;     // set by publish when the batch is full
  std::uint64_t head_cache = 0;  // last head seen (PP1 reloads it only when the ring looks full)

  // The connection, watched by a thread that re-attaches the ring when the writer goes away.
  std::mutex mu;
  std::condition_variable cv;
  int sock = -1;
  bool stop = false;
  std::atomic<std::uint64_t> reconnects{0};
  std::thread watcher;

  explicit Impl(Reader r) : reader(std::move(r)) {}

  void watch() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      if (sock >= 0) {
        const int s = sock;
        lock.unlock();
        pollfd p{s, POLLIN | POLLRDHUP, 0};
        const int n = ::poll(&p, 1, 100);
        char buf[256];
        bool gone = n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
        if (n > 0 && !gone && (p.revents & POLLIN) != 0) gone = ::read(s, buf, sizeof buf) <= 0;
        lock.lock();
        if (gone && sock == s) {
          ::close(sock);
          sock = -1;
        }
        continue;
      }
      if (shm::load_acquire(&h->dropped) != 0) {  // refused by every writer: stop asking
        cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop; });
        continue;
      }
      std::string why;
      lock.unlock();
      const int s = detail::connect_and_attach(socket_path, ring_fd, cfg.name, why);
      lock.lock();
      if (s >= 0) {
        sock = s;
        reconnects.fetch_add(1, std::memory_order_relaxed);
      } else {
        cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop; });
      }
    }
  }

  // PP1: room for `k` more messages. While the ring is full, waits up to `timeout` for the writer
  // to make room (spinning a little, then sleeping 20 us at a time); a push that finds it full
  // is counted once, however long it waits.
  PushStatus reserve(std::uint64_t k, std::chrono::nanoseconds timeout) {
    // `dropped` is on line 1, the line PP3 writes anyway: no extra cache miss per push.
    if (shm::load_acquire(&h->dropped) != 0) return PushStatus::dropped;
    if (tail + k - head_cache <= mask + 1) return PushStatus::ok;
    head_cache = shm::load_acquire(&h->head);  // PP1 pairs with the writer's PC4
    if (tail + k - head_cache <= mask + 1) return PushStatus::ok;
    shm::store_relaxed(&h->full_count, shm::load_relaxed(&h->full_count) + 1);
    if (timeout <= std::chrono::nanoseconds::zero()) return PushStatus::full;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (unsigned spin = 0;; ++spin) {
      if (spin < 256)
        shm::cpu_relax();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      head_cache = shm::load_acquire(&h->head);  // PP1 again
      if (tail + k - head_cache <= mask + 1) return PushStatus::ok;
      if (shm::load_acquire(&h->dropped) != 0) return PushStatus::dropped;
      if (std::chrono::steady_clock::now() >= deadline) return PushStatus::full;
    }
  }

  // PP2: message `tail + 1 + at`'s slot, cleared for writing (ours until head passes it).
  shm::RingMessage& slot(std::uint64_t at) {
    shm::RingMessage& m = msgs[(tail + at) & mask];
    m.kind = 0;
    m.mode = 0;
    m.ns = 0;
    m.account_len = m.instrument_len = m.text_len = m.field = 0;
    m.fields_mask = 0;
    m.key_hash = 0;
    m.source_seq = 0;
    return m;
  }

  // PP1-PP3: reserve the next slot, let `fill` write the message, publish it. Inside a batch the
  // message is staged instead (end_batch publishes the batch).
  template <class F>
  PushResult publish(F&& fill, std::chrono::nanoseconds timeout) {
    if (batching) {
      if (staged.size() >= kMaxBatchCommands) {
        batch_refusal = "a batch has at most " + std::to_string(kMaxBatchCommands) + " commands";
        return {PushStatus::bad_input, 0};
      }
      fill(staged.emplace_back());  // value-initialised: every byte zero
      return {PushStatus::ok, 0};
    }
    if (const PushStatus st = reserve(1, timeout); st != PushStatus::ok) return {st, 0};
    fill(slot(0));
    ++tail;
    shm::store_release(&h->tail, tail);  // PP3 pairs with the writer's PC1
    return {PushStatus::ok, tail};
  }

  // A batch (shm/ring.hpp, BATCHES): its header and commands in n + 1 slots, one PP3.
  PushResult publish_batch(const std::vector<shm::RingMessage>& commands,
                           std::chrono::nanoseconds timeout) {
    const std::uint64_t n = commands.size();
    if (const PushStatus st = reserve(n + 1, timeout); st != PushStatus::ok) return {st, 0};
    shm::RingMessage& header = slot(0);
    header.kind = static_cast<std::uint8_t>(shm::RingKind::group);
    header.values[0] = n;
    header.values[1] = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      shm::RingMessage& m = msgs[(tail + 1 + k) & mask];
      std::memcpy(&m, &commands[k], sizeof m);
    }
    const std::uint64_t first = tail + 1;
    tail += n + 1;
    shm::store_release(&h->tail, tail);  // PP3 for all of them
    return {PushStatus::ok, first};
  }

  // The writer's error text (under its seqlock), "" if it cannot be read consistently.
  std::string ring_error() const {
    std::uint64_t words[1 + sizeof h->error / 8];
    if (!shm::seqlock_read_bounded(&h->error_seq, &h->error_len, words, std::size(words)))
      return {};
    const std::size_t n = std::min<std::size_t>(words[0], sizeof h->error);
    return std::string(reinterpret_cast<const char*>(words + 1), n);
  }
};

}  // namespace poscache
