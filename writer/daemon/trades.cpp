#include "writer/daemon/trades.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "writer/redis/trade_ids.hpp"

namespace poscache::daemon {

std::unique_ptr<ingest::TradeWindow> open_trade_window(Writer& writer, const DaemonConfig& cfg,
                                                       std::uint64_t generation) {
  auto window = std::make_unique<ingest::TradeWindow>(
      cfg.writer.segment, generation, cfg.ingest.trade_window,
      [&](const ingest::PositionKey& k) -> std::uint64_t {
        auto p = writer.find(k.ns, k.account_view(), k.instrument_view());
        return p ? p->version : 0;
      });
  spdlog::info("fill trade ids: the last {} kept in {} ({})", cfg.ingest.trade_window,
               ingest::TradeWindow::path_of(cfg.writer.segment),
               window->restored() ? std::to_string(window->recorded()) + " restored" : "new");
  if (!writer.mirrors_to_redis()) return window;
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t malformed = 0;
  auto known =
      detail::load_trade_ids(*cfg.writer.redis, cfg.writer.namespaces, cfg.writer.log, &malformed);
  if (!known) {
    spdlog::error(
        "{}: the trade ids another writer applied are not known here: a fill it applied and a "
        "producer resends would be applied again",
        known.error());
  } else {
    std::vector<ingest::TradeWindow::Known> ids;
    ids.reserve(known->size());
    for (const auto& t : *known) ids.push_back({t.ns, t.id_hash, t.version});
    const std::size_t added = window->load(std::move(ids));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info(
        "fill trade ids: {} in redis {}:<ns>:@trades, {} not known here taken{} ({:.0f} ms)",
        known->size(), cfg.writer.redis->prefix, added,
        malformed > 0 ? fmt::format(", {} malformed members skipped", malformed) : std::string(),
        ms);
  }
  writer.mirror_trades(window->log());
  return window;
}

}  // namespace poscache::daemon
