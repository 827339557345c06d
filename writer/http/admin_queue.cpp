#include "writer/http/admin_queue.hpp"

#include <algorithm>

namespace poscache::http {

AdminQueue::Outcome AdminQueue::run(ingest::Command c, std::chrono::milliseconds timeout) {
  auto job = std::make_shared<Job>();
  job->command = std::move(c);
  std::unique_lock lock(m_);
  if (shut_down_) return {std::nullopt, true};
  queue_.push_back(job);
  queued_.store(queue_.size(), std::memory_order_relaxed);
  if (!done_.wait_for(lock, timeout, [&] { return job->taken || shut_down_; }) || !job->taken) {
    // Not taken: withdraw it, so a caller told "not done" is never surprised later.
    queue_.erase(std::find(queue_.begin(), queue_.end(), job));
    queued_.store(queue_.size(), std::memory_order_relaxed);
    return {std::nullopt, shut_down_};
  }
  done_.wait(lock, [&] { return job->result.has_value(); });
  return {job->result, false};
}

void AdminQueue::shut_down() {
  {
    std::lock_guard lock(m_);
    shut_down_ = true;
  }
  done_.notify_all();
}

std::size_t AdminQueue::poll(ingest::CommandExecutor& exec, std::int64_t, std::size_t budget) {
  if (queued_.load(std::memory_order_relaxed) == 0) return 0;
  std::size_t handled = 0;
  while (handled < budget) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(m_);
      if (queue_.empty()) break;
      job = queue_.front();
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_relaxed);
      job->taken = true;
    }
    ingest::CommandResult r = exec.execute(job->command);
    {
      std::lock_guard lock(m_);
      ++counters_.received;
      ingest::count(counters_, r);
      job->result = std::move(r);
    }
    done_.notify_all();
    ++handled;
  }
  return handled;
}

ingest::SourceCounters AdminQueue::counters() const {
  std::lock_guard lock(m_);
  return counters_;
}

}  // namespace poscache::http
