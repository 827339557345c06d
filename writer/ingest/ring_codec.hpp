// The producer ring's message decoder (shm/ring.hpp, RingMessage): one private copy of a
// message in, what to apply out, or why it cannot be applied. It trusts nothing in the copy: a
// kind, a namespace id, a length or a side out of range is an error naming it. What it passes on
// is checked again where it is applied (the writer's input rules, the executor), as every other
// source's commands are. Fuzzed by tests/fuzz/ring_message_fuzz.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "shm/ring.hpp"
#include "writer/ingest/command.hpp"

namespace poscache::ingest {

enum class RingDecoded : std::uint8_t {
  upsert,   // `update` and `hash` (the producer's claimed key hash) are set
  command,  // `command` is set
  bad,      // `error` says why
};

// PC2's copy (shm/ring.hpp): the parts of `src` (shared, the producer may be writing it) that the
// decoder reads, into `dst` (private). Lengths come from dst's own copy of the first line.
// The value slots each field of each namespace takes, as bit masks (a text field takes several:
// poscache/schema.hpp). Null: every field one slot, its own index.
using SlotMasks = std::vector<std::array<std::uint32_t, kMaxFields>>;
SlotMasks slot_masks(const std::vector<NamespaceSpec>& specs);
// The slots an upsert's fields take.
std::uint32_t slots_of_fields(const SlotMasks* slots, std::size_t ns, std::uint32_t fields_mask);

void copy_message(shm::RingMessage& dst, const shm::RingMessage& src,
                  const SlotMasks* slots = nullptr);

RingDecoded decode_ring_message(const shm::RingMessage& m, std::size_t namespaces, Update& update,
                                std::uint64_t& hash, Command& command, std::string& error,
                                const SlotMasks* slots = nullptr);

}  // namespace poscache::ingest
