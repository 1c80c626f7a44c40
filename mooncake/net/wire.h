// WireWriter / WireReader: the little-endian, length-prefixed binary encoding of the framed
// protocols here (the master's fast RPC, the standalone client protocol). Strings are a u32 length
// then bytes. WireReader never reads past its input: once a read fails, ok() is false and every
// later read returns zero values, so a decoder checks ok() once at the end.
#ifndef MOONCAKE_NET_WIRE_H_
#define MOONCAKE_NET_WIRE_H_

#include <string.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace mooncake {

class WireWriter {
 public:
  void U8(uint8_t v) { Raw(&v, 1); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void I32(int32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void Str(absl::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    buf_.append(s.data(), s.size());
  }
  std::string& buf() { return buf_; }

 private:
  void Raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string buf_;
};

class WireReader {
 public:
  explicit WireReader(absl::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  uint8_t U8() { return Get<uint8_t>(); }
  uint32_t U32() { return Get<uint32_t>(); }
  int32_t I32() { return Get<int32_t>(); }
  uint64_t U64() { return Get<uint64_t>(); }
  int64_t I64() { return Get<int64_t>(); }
  absl::string_view Str() {
    uint32_t n = U32();
    if (!ok_ || static_cast<size_t>(end_ - p_) < n) {
      ok_ = false;
      return {};
    }
    absl::string_view s(p_, n);
    p_ += n;
    return s;
  }
  // Count reads an element count and checks it could fit in what is left, so a hostile count
  // cannot make the decoder reserve memory the message does not carry.
  uint32_t Count(size_t min_element_bytes) {
    uint32_t n = U32();
    if (ok_ && n > static_cast<size_t>(end_ - p_) / std::max<size_t>(min_element_bytes, 1)) {
      ok_ = false;
    }
    return ok_ ? n : 0;
  }

 private:
  template <typename T>
  T Get() {
    T v{};
    if (!ok_ || static_cast<size_t>(end_ - p_) < sizeof(T)) {
      ok_ = false;
      return v;
    }
    memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

}  // namespace mooncake

#endif  // MOONCAKE_NET_WIRE_H_
