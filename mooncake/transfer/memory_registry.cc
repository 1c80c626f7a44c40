#include "mooncake/transfer/memory_registry.h"

#include "absl/strings/str_format.h"
#include "mooncake/common/error_code.h"

namespace mooncake {

absl::Status MemoryRegistry::Register(const RegisteredBuffer& buffer) {
  if (buffer.addr == 0 || buffer.length == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrFormat("cannot register an empty or null range (addr=%#x, length=%u)",
                                     buffer.addr, buffer.length));
  }
  if (buffer.addr + buffer.length < buffer.addr) {
    return MakeError(ErrorCode::INVALID_PARAMS, "registered range wraps around the address space");
  }
  absl::MutexLock lock(&mu_);
  auto next = buffers_.lower_bound(buffer.addr);
  if (next != buffers_.end() && next->first < buffer.addr + buffer.length) {
    return MakeError(
        ErrorCode::INVALID_PARAMS,
        absl::StrFormat("range [%#x, +%u) overlaps registered buffer [%#x, +%u)", buffer.addr,
                        buffer.length, next->first, next->second.buffer.length));
  }
  if (next != buffers_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.buffer.length > buffer.addr) {
      return MakeError(
          ErrorCode::INVALID_PARAMS,
          absl::StrFormat("range [%#x, +%u) overlaps registered buffer [%#x, +%u)", buffer.addr,
                          buffer.length, prev->first, prev->second.buffer.length));
    }
  }
  // A buffer at an address whose previous registration still has pins waits for them first.
  auto drained = [this, a = buffer.addr]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return draining_.count(a) == 0; };
  mu_.Await(absl::Condition(&drained));
  buffers_.emplace(buffer.addr, Entry{buffer, 0});
  return absl::OkStatus();
}

absl::StatusOr<RegisteredBuffer> MemoryRegistry::Unregister(uint64_t addr) {
  absl::MutexLock lock(&mu_);  // exclusive: waits for ReadView holders
  auto it = buffers_.find(addr);
  if (it == buffers_.end()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrFormat("no registered buffer starts at %#x", addr));
  }
  RegisteredBuffer removed = it->second.buffer;
  const int pins = it->second.pins;
  buffers_.erase(it);
  if (pins > 0) {
    // No new pin can start (the buffer is gone); wait for the ones in progress.
    draining_[addr] = pins;
    auto drained = [this, addr]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return draining_.count(addr) == 0; };
    mu_.Await(absl::Condition(&drained));
  }
  return removed;
}

const RegisteredBuffer* MemoryRegistry::FindLocked(uint64_t addr, uint64_t length) const {
  auto it = buffers_.upper_bound(addr);
  if (it == buffers_.begin()) return nullptr;
  --it;
  const RegisteredBuffer& b = it->second.buffer;
  uint64_t end = addr + length;
  if (end < addr) return nullptr;
  if (addr < b.addr || end > b.addr + b.length) return nullptr;
  return &b;
}

absl::Status MemoryRegistry::RangeError(uint64_t addr, uint64_t length, bool remote) const {
  if (remote) remote_refusals_.fetch_add(1, std::memory_order_relaxed);
  return MakeError(ErrorCode::INVALID_PARAMS,
                   absl::StrFormat("address range [%#x, +%u) is not inside a registered%s buffer",
                                   addr, length, remote ? " remote-accessible" : ""));
}

absl::StatusOr<RegisteredBuffer> MemoryRegistry::Find(uint64_t addr, uint64_t length,
                                                      bool remote) const {
  absl::ReaderMutexLock lock(&mu_);
  const RegisteredBuffer* b = FindLocked(addr, length);
  if (b == nullptr || (remote && !b->remote_accessible)) return RangeError(addr, length, remote);
  return *b;
}

absl::StatusOr<MemoryRegistry::Pin> MemoryRegistry::PinRange(uint64_t addr, uint64_t length,
                                                             bool remote) const {
  absl::MutexLock lock(&mu_);
  const RegisteredBuffer* b = FindLocked(addr, length);
  if (b == nullptr || (remote && !b->remote_accessible)) return RangeError(addr, length, remote);
  ++buffers_.find(b->addr)->second.pins;
  return Pin(this, b->addr);
}

void MemoryRegistry::Unpin(uint64_t addr) const {
  absl::MutexLock lock(&mu_);
  auto it = buffers_.find(addr);
  if (it != buffers_.end()) {
    --it->second.pins;
    return;
  }
  auto d = draining_.find(addr);  // unregistered meanwhile: Unregister waits for this
  if (d != draining_.end() && --d->second == 0) draining_.erase(d);
}

MemoryRegistry::Pin& MemoryRegistry::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    Release();
    registry_ = other.registry_;
    addr_ = other.addr_;
    other.registry_ = nullptr;
  }
  return *this;
}

void MemoryRegistry::Pin::Release() {
  if (registry_ != nullptr) registry_->Unpin(addr_);
  registry_ = nullptr;
}

absl::StatusOr<RegisteredBuffer> MemoryRegistry::ReadView::Find(uint64_t addr, uint64_t length,
                                                                bool remote) const {
  const RegisteredBuffer* b = registry_.FindLocked(addr, length);
  if (b == nullptr || (remote && !b->remote_accessible)) {
    return registry_.RangeError(addr, length, remote);
  }
  return *b;
}

std::vector<RegisteredBuffer> MemoryRegistry::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<RegisteredBuffer> out;
  out.reserve(buffers_.size());
  for (const auto& [addr, e] : buffers_) out.push_back(e.buffer);
  return out;
}

}  // namespace mooncake
