// A synthetic producer for demos and benchmarks: updates at a steady rate to random positions of
// `accounts` x `instruments` in every namespace, with plausible values for each preset's fields.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "writer/daemon/config.hpp"
#include "writer/ingest/source.hpp"

namespace poscache::daemon {

class SyntheticGenerator final : public ingest::Source {
 public:
  SyntheticGenerator(const GeneratorConfig& config, const Writer& writer);
  std::size_t poll(ingest::CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override { return "generator"; }
  [[nodiscard]] ingest::SourceCounters counters() const override { return counters_; }

  // One update for position number `n` (deterministic in n and the seed).
  Update make(const Writer& writer, std::uint64_t n);

 private:
  static constexpr std::size_t kMaxBatch = 256;
  GeneratorConfig cfg_;
  std::vector<std::string> accounts_;
  std::vector<std::string> instruments_;
  std::mt19937_64 rng_;
  std::int64_t start_ns_ = 0;
  std::uint64_t emitted_ = 0;
  std::uint64_t source_seq_;
  std::vector<Update> batch_;  // reused: polling allocates nothing
  std::vector<ApplyResult> results_;
  ingest::SourceCounters counters_;
};

}  // namespace poscache::daemon
