#include "mooncake/master/segment_allocator.h"

#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"

namespace mooncake {

SegmentAllocator::SegmentAllocator(uint64_t capacity) : capacity_(capacity) {
  if (capacity_ > 0) InsertExtent(0, capacity_);
}

uint64_t SegmentAllocator::AlignedSize(uint64_t size) {
  if (size > UINT64_MAX - (kAlignment - 1)) return 0;
  return (size + kAlignment - 1) & ~(kAlignment - 1);
}

uint64_t SegmentAllocator::largest_free_extent() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

void SegmentAllocator::InsertExtent(uint64_t offset, uint64_t size) {
  by_offset_.emplace(offset, size);
  by_size_.emplace(size, offset);
}

void SegmentAllocator::EraseExtent(uint64_t offset, uint64_t size) {
  by_offset_.erase(offset);
  by_size_.erase({size, offset});
}

absl::optional<uint64_t> SegmentAllocator::Allocate(uint64_t size) {
  const uint64_t need = AlignedSize(size);
  if (size == 0 || need == 0) return absl::nullopt;
  auto it = by_size_.lower_bound({need, 0});
  if (it == by_size_.end()) return absl::nullopt;
  const uint64_t extent_size = it->first;
  const uint64_t offset = it->second;
  EraseExtent(offset, extent_size);
  // The block takes the front of the extent, so the remainder keeps its alignment.
  if (extent_size > need) InsertExtent(offset + need, extent_size - need);
  allocated_ += need;
  return offset;
}

absl::Status SegmentAllocator::CheckBlock(const char* what, uint64_t offset, uint64_t size) const {
  const uint64_t len = AlignedSize(size);
  if (size == 0 || len == 0 || offset % kAlignment != 0 || offset > capacity_ ||
      len > capacity_ - offset) {
    // The last block of an unaligned capacity may end past capacity_ only if it was never handed
    // out; Allocate never returns such a block.
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of [", offset, ", +", size, ") outside segment of ", capacity_));
  }
  return absl::OkStatus();
}

absl::Status SegmentAllocator::Free(uint64_t offset, uint64_t size) {
  const uint64_t len = AlignedSize(size);
  if (absl::Status s = CheckBlock("free", offset, size); !s.ok()) return s;
  const uint64_t end = offset + len;
  // The freed range must not overlap any free extent.
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end() && next->first < end) {
    return absl::InvalidArgumentError(
        absl::StrCat("double free: [", offset, ", ", end, ") overlaps a free extent"));
  }
  auto prev = next == by_offset_.begin() ? by_offset_.end() : std::prev(next);
  if (prev != by_offset_.end() && prev->first + prev->second > offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("double free: [", offset, ", ", end, ") overlaps a free extent"));
  }
  // btree iterators do not survive an erase: read both neighbours before changing anything.
  const bool merge_prev = prev != by_offset_.end() && prev->first + prev->second == offset;
  const bool merge_next = next != by_offset_.end() && next->first == end;
  const uint64_t prev_offset = merge_prev ? prev->first : 0;
  const uint64_t prev_size = merge_prev ? prev->second : 0;
  const uint64_t next_size = merge_next ? next->second : 0;
  uint64_t new_offset = offset;
  uint64_t new_size = len;
  if (merge_prev) {
    EraseExtent(prev_offset, prev_size);
    new_offset = prev_offset;
    new_size += prev_size;
  }
  if (merge_next) {
    EraseExtent(end, next_size);
    new_size += next_size;
  }
  InsertExtent(new_offset, new_size);
  allocated_ -= len;
  return absl::OkStatus();
}

absl::Status SegmentAllocator::Reserve(uint64_t offset, uint64_t size) {
  const uint64_t len = AlignedSize(size);
  if (absl::Status s = CheckBlock("reserve", offset, size); !s.ok()) return s;
  // The free extent holding `offset` must cover the whole block.
  auto it = by_offset_.upper_bound(offset);
  if (it == by_offset_.begin()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reserve of [", offset, ", +", size, ") overlaps an allocated block"));
  }
  --it;
  const uint64_t extent_offset = it->first;
  const uint64_t extent_size = it->second;
  if (extent_offset + extent_size < offset + len) {
    return absl::InvalidArgumentError(
        absl::StrCat("reserve of [", offset, ", +", size, ") overlaps an allocated block"));
  }
  EraseExtent(extent_offset, extent_size);
  if (offset > extent_offset) InsertExtent(extent_offset, offset - extent_offset);
  const uint64_t end = offset + len;
  if (extent_offset + extent_size > end) InsertExtent(end, extent_offset + extent_size - end);
  allocated_ += len;
  return absl::OkStatus();
}

absl::Status SegmentAllocator::CheckInvariants() const {
  if (by_offset_.size() != by_size_.size()) {
    return absl::InternalError("free indexes differ in size");
  }
  uint64_t free_total = 0;
  uint64_t prev_end = 0;
  bool first = true;
  for (const auto& [offset, size] : by_offset_) {
    if (size == 0) return absl::InternalError(absl::StrCat("empty extent at ", offset));
    if (!by_size_.contains({size, offset})) {
      return absl::InternalError(absl::StrCat("extent at ", offset, " missing from size index"));
    }
    if (!first && offset <= prev_end) {
      return absl::InternalError(absl::StrCat("extent at ", offset, " overlaps or touches its ",
                                              "predecessor (not coalesced)"));
    }
    if (offset > capacity_ || size > capacity_ - offset) {
      return absl::InternalError(absl::StrCat("extent at ", offset, " past capacity"));
    }
    prev_end = offset + size;
    first = false;
    free_total += size;
  }
  if (free_total + allocated_ != capacity_) {
    return absl::InternalError(
        absl::StrCat("free ", free_total, " + allocated ", allocated_, " != capacity ", capacity_));
  }
  return absl::OkStatus();
}

}  // namespace mooncake
