// The Redis format: a contract for services in other languages (README.md "The Redis format").
//
//   {prefix}:{ns}:{{account}}:{instrument}   HASH, one per position
//       <field>      each schema field that carries a value: decimals as exact decimal text at
//                    the field's scale ("-12.500000000000000000"), int64 and timestamps as
//                    integers (timestamps in ns since the Unix epoch). Unset fields are absent.
//       version      the writer's version of this change (decimal text of a uint64)
//       source_seq   the producer's sequence number (0 if none)
//       created_at   ns since the Unix epoch when first inserted
//       updated_at   ns since the Unix epoch of the last change
//     expires (PEXPIREAT) at updated_at + the namespace's expire_after, when it has one.
//   {prefix}:@account:{{account}}            ZSET, the positions of one account
//       member "ns:instrument", score = expiry in ms since the epoch ("inf" if none): the live
//       positions are ZRANGE key (now_ms +inf BYSCORE. It expires with its last member.
//   {prefix}:@schema                         HASH, ns -> JSON {fields:[{name,type,scale}],
//                                            stale_after_ms, expire_after_ms}
//   {prefix}:{ns}:@trades                    ZSET, the trade ids of the namespace's fills the
//                                            writer applied (its de-duplication window,
//                                            docs/exactly-once.md), the newest `trade_window`
//                                            kept. Written in the MULTI that writes the fill's
//                                            position (fence); loaded by a promoted standby
//                                            and a warm start.
//       member "<version>:<id hash>": the version the fill wrote and XXH3-64 (seed 0) of the
//              trade id, 16 lowercase hex digits each (equal scores sort by member: by version)
//       score  the version as a double (versions pass 2^60: close, not exact)
//
// The braces are a Redis Cluster hash tag: an account's hashes and its set share a slot, so
// the scripts below touch keys of one slot only.
//
//   {prefix}:@writer, {prefix}:@epoch        the writer lease (writer/redis/lease.hpp)
//   {prefix}:@changes                        STREAM (fence only), appended by the transaction
//                                            that made the changes (ChangeEntry), in order:
//       kind changes, then per position "ns:account:instrument" -> "+<version>" (upsert) or
//                      "-<version>" (removal)          a transaction's changes, one entry
//       kind pattern, scope account|namespace|glob|all, ns, pattern, version
//                                            a removal by pattern (ns empty: every namespace;
//                                            pattern: the account or the glob), written once
//                                            its deletes are all in Redis
//     trimmed by age (XADD MINID ~ now - RedisConfig::change_stream_retention). An upsert names
//     the key; the hash holds its data (a version at least as new). One XADD per transaction,
//     not per change: an XADD per change halved the sync's throughput (Redis's CPU per
//     position 5.0 µs against 2.5) and took its lag at 100 k updates/s from 3 ms to 170 ms.
//
// Who may write: with RedisGuard::fence (the default) only the lease holder, in fenced
// transactions of plain commands (add_plain_upsert, add_plain_delete); with RedisGuard::scripts
// (a Redis Cluster) anyone, through the scripts below, which compare versions on the server and
// never let an older version replace (or delete) a newer one. Versions are compared as decimal
// text (length first), since Lua numbers are doubles.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/schema.hpp"
#include "shm/layout.hpp"
#include "writer/net/redis_client.hpp"

namespace poscache::detail {

// Writes one or more positions. KEYS: two per position (its hash, its account set). ARGV: one
// record per position, in the same order:
//   version, member "ns:instrument", expiry ms since the epoch or "0", n = number of unset
//   fields, m = number of field/value pairs, the n unset field names, the 2m fields and values.
// Returns how many positions were written (the others: Redis holds that version or a newer one).
// One call carries up to RedisConfig::positions_per_call positions (1 behind a Redis Cluster
// proxy: a position's hash and its account set share a slot, two positions may not).
inline constexpr std::string_view kUpsertScript = R"lua(
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local now_ms = nil
local written = 0
local a = 1
for k = 1, #KEYS, 2 do
  local hash, set = KEYS[k], KEYS[k + 1]
  local ver, member, exp = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local nrm, np = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local rm = a + 5
  local pv = rm + nrm
  a = pv + 2 * np
  local cur = redis.call('HGET', hash, 'version')
  if not cur or newer(ver, cur) then
    written = written + 1
    if cur and nrm > 0 then redis.call('HDEL', hash, unpack(ARGV, rm, pv - 1)) end
    redis.call('HSET', hash, unpack(ARGV, pv, a - 1))
    if exp == '0' then
      if not cur and redis.call('ZADD', set, 'inf', member) == 1 then redis.call('PERSIST', set) end
    else
      redis.call('PEXPIREAT', hash, exp)
      redis.call('ZADD', set, exp, member)
      if not now_ms then
        local t = redis.call('TIME')
        now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
      end
      redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now_ms)
      local top = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
      if top[2] == 'inf' then redis.call('PERSIST', set) elseif top[2] then redis.call('PEXPIREAT', set, top[2]) end
    end
  end
end
return written
)lua";

// KEYS[1] position hash, KEYS[2] account set. ARGV[1] the version of the removal, ARGV[2] member.
// Removes the position unless Redis holds a version at least as new. Returns 1 if removed.
inline constexpr std::string_view kDeleteScript = R"lua(
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and not newer(ARGV[1], cur) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('UNLINK', KEYS[1])
)lua";

// The fenced sync's one script for data (the lease's renewal is the other, writer/redis/lease.cpp):
// an expiring namespace's member of the account set, whose expiry
// follows its members (the latest deadline, or none while a member has none): that depends on
// what the set holds, which a MULTI block cannot express. KEYS[1] the set, ARGV[1] the member,
// ARGV[2] its deadline in ms since the epoch. The position's hash is written with plain commands.
inline constexpr std::string_view kAccountSetScript = R"lua(
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (t[1] * 1000 + math.floor(t[2] / 1000)))
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then redis.call('PERSIST', KEYS[1]) elseif top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
)lua";

struct ParsedKey {
  std::string ns;
  std::string account;
  std::string instrument;
};

// EVALSHA of the upsert script over several positions: add() each, then args().
class UpsertCall {
 public:
  void clear() {
    keys_.clear();
    argv_.clear();
    n_ = 0;
  }
  void add(const class RedisFormat& fmt, const shm::SlotPayload& p);
  [[nodiscard]] std::size_t positions() const noexcept { return n_; }
  // Queues the EVALSHA on `client`.
  Expected<bool> append_to(RedisClient& client, const std::string& sha);

 private:
  Args head_, keys_, argv_;
  std::size_t n_ = 0;
};

class RedisFormat {
 public:
  RedisFormat(std::string prefix, std::vector<NamespaceSpec> namespaces)
      : prefix_(std::move(prefix)), ns_(std::move(namespaces)) {
    for (const NamespaceSpec& n : ns_) any_expiring_ = any_expiring_ || n.expire_after.count() > 0;
  }

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }
  [[nodiscard]] const std::vector<NamespaceSpec>& namespaces() const noexcept { return ns_; }

  std::string position_key(std::string_view ns, std::string_view account,
                           std::string_view instrument) const;
  std::string account_key(std::string_view account) const;
  std::string schema_key() const { return prefix_ + ":@schema"; }
  static std::string member(std::string_view ns, std::string_view instrument);
  // A SCAN pattern for the positions of one namespace (nullopt: all) under the prefix.
  std::string scan_pattern(std::optional<std::uint16_t> ns) const;
  // Splits a position key; nullopt if it is not one (another key under the prefix).
  std::optional<ParsedKey> parse_key(std::string_view key) const;

  // The upsert script's KEYS and ARGV for payload `p` (a live position), appended.
  void add_upsert(const shm::SlotPayload& p, Args& keys, Args& argv) const;
  // The Redis format as plain commands, for a fenced transaction (writer/redis/lease.hpp):
  // HSET of the fields and the meta; HDEL of the unset fields when kDropUnset (an update in
  // replace mode may have unset a field Redis holds); for a namespace without expiry, ZADD of
  // the member (score inf) when kAddMember (the first write of this key from its slot: later
  // writes find the member there), and PERSIST of the set if some namespace expires (its
  // members may have given the set an expiry); with expiry, PEXPIREAT of the hash and
  // the account-set script (the member's score moves with every write). Returns how many
  // commands it added. The version guard is the caller's: only the lease holder writes, and
  // it writes a key's versions in order (writer/redis/redis_sync.hpp).
  static constexpr unsigned kAddMember = 1, kDropUnset = 2;
  std::size_t add_plain_upsert(const shm::SlotPayload& p, unsigned flags,
                               const std::string& set_sha, Commands& out) const;
  // UNLINK of the hash, ZREM of its member: 2 commands.
  std::size_t add_plain_delete(std::string_view ns, std::string_view account,
                               std::string_view instrument, Commands& out) const;
  // EVALSHA arguments removing a position at `version` with the delete script.
  void delete_args(const std::string& sha, std::string_view ns, std::string_view account,
                   std::string_view instrument, std::uint64_t version, Args& out) const;
  // HSET {prefix}:@schema ns json ...
  void schema_args(Args& out) const;

  // The change stream (fence only): 0 turns it off (nothing is appended).
  void set_change_stream(std::chrono::milliseconds retention) { retention_ms_ = retention.count(); }
  [[nodiscard]] bool change_stream() const noexcept { return retention_ms_ > 0; }
  std::string changes_key() const { return prefix_ + ":@changes"; }
  std::string trades_key(std::string_view ns) const {
    std::string k = prefix_;
    k += ':';
    k += ns;
    k += ":@trades";
    return k;
  }
  // A transaction's entry: begin_changes, add_change per position, then finish_changes appends
  // the XADD to the transaction (nothing if no change was added, or without a stream).
  void begin_changes(Args& entry) const;
  void add_change(Args& entry, bool upsert, std::string_view ns, std::string_view account,
                  std::string_view instrument, std::uint64_t version) const;
  // Returns the commands added (0 or 1).
  std::size_t finish_changes(const Args& entry, Commands& out) const;
  // XADD of a removal by pattern: `scope` account|namespace|glob|all, `ns` (empty: all),
  // `pattern` the account or the glob (empty for namespace and all).
  std::size_t add_pattern_change(std::string_view scope, std::string_view ns,
                                 std::string_view pattern, std::uint64_t version,
                                 Commands& out) const;

  // A hash read back (HGETALL field/value pairs) into a payload; the error names the key and
  // the field. `ns` is the namespace id the key names.
  Expected<shm::SlotPayload> decode(const ParsedKey& key, std::uint16_t ns,
                                    const redisReply* fields) const;
  // The namespace id of a name, if configured.
  std::optional<std::uint16_t> namespace_id(std::string_view ns) const;

 private:
  void add_unset_names(const shm::SlotPayload& p, Args& out) const;
  void add_xadd_head(Args& out) const;
  // field/value pairs of every set field, then version, source_seq, created_at, updated_at
  void add_field_values(const shm::SlotPayload& p, Args& out) const;
  std::string prefix_;
  std::vector<NamespaceSpec> ns_;
  bool any_expiring_ = false;      // a namespace with expire_after: account sets may have an expiry
  std::int64_t retention_ms_ = 0;  // the change stream's (0: no stream)
};

}  // namespace poscache::detail
