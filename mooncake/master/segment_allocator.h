// SegmentAllocator: space allocation inside one mounted segment, by offset from the segment's base.
//
// Best fit over the free extents, with immediate coalescing on free. Free extents are indexed
// twice: by offset (to find neighbours when coalescing) and by (size, offset) (to find the smallest
// extent that fits, lowest offset first). For the uniform object sizes SGLang uses, freed blocks
// are reused exactly and the segment stays packed from the front, so fragmentation stays near zero.
//
// No per-allocation record is kept: the caller frees with the offset and size it allocated, which
// keeps the master's per-object memory small. Every block is AlignedSize(size) bytes and starts at
// a multiple of kAlignment.
//
//   SegmentAllocator alloc(1 << 30);
//   auto offset = alloc.Allocate(4 << 20);  // absl::optional<uint64_t>
//   if (offset.has_value()) alloc.Free(*offset, 4 << 20);
//
// Invariant: allocated() + free_bytes() == capacity(), always. Not thread-safe.
#ifndef MOONCAKE_MASTER_SEGMENT_ALLOCATOR_H_
#define MOONCAKE_MASTER_SEGMENT_ALLOCATOR_H_

#include <cstdint>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/types/optional.h"

namespace mooncake {

class SegmentAllocator {
 public:
  // kAlignment is the granularity of every block (a cache line; transfers stay aligned if the
  // segment's base is).
  static constexpr uint64_t kAlignment = 64;

  // Creates an allocator over [0, capacity). capacity may be any value (the last extent may end
  // unaligned).
  explicit SegmentAllocator(uint64_t capacity);

  SegmentAllocator(const SegmentAllocator&) = delete;
  SegmentAllocator& operator=(const SegmentAllocator&) = delete;

  // AlignedSize is the bytes a block for `size` occupies, or 0 if that overflows.
  static uint64_t AlignedSize(uint64_t size);

  // Allocate returns the offset of a new block for `size` bytes (size > 0), or nullopt if no free
  // extent is large enough.
  absl::optional<uint64_t> Allocate(uint64_t size);

  // Free returns the block at `offset` that was allocated for `size` bytes. Freeing a range that is
  // not wholly allocated is a caller bug: it returns an error and changes nothing.
  absl::Status Free(uint64_t offset, uint64_t size);

  // Reserve marks the block at `offset` for `size` bytes allocated, as if Allocate had returned it
  // (a master rebuilding its allocators from replicated state). The block must be aligned and
  // wholly free; otherwise it returns an error and changes nothing.
  absl::Status Reserve(uint64_t offset, uint64_t size);

  uint64_t capacity() const { return capacity_; }
  uint64_t allocated() const { return allocated_; }
  uint64_t free_bytes() const { return capacity_ - allocated_; }
  // largest_free_extent is the biggest block Allocate can currently return.
  uint64_t largest_free_extent() const;
  // num_free_extents counts the holes; 1 (or 0 when full) means no fragmentation.
  size_t num_free_extents() const { return by_offset_.size(); }

  // CheckInvariants verifies the two indexes agree, extents are disjoint, non-adjacent and inside
  // the capacity, and allocated + free == capacity. For tests.
  absl::Status CheckInvariants() const;

 private:
  // An aligned block of `size` bytes at `offset` inside the segment; `what` names the call.
  absl::Status CheckBlock(const char* what, uint64_t offset, uint64_t size) const;
  void InsertExtent(uint64_t offset, uint64_t size);
  void EraseExtent(uint64_t offset, uint64_t size);

  const uint64_t capacity_;
  uint64_t allocated_ = 0;
  // Free extents: offset -> size, and (size, offset).
  absl::btree_map<uint64_t, uint64_t> by_offset_;
  absl::btree_set<std::pair<uint64_t, uint64_t>> by_size_;
};

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_SEGMENT_ALLOCATOR_H_
