#include "mooncake/store/disk_read_protocol.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/master/master_types.h"

namespace mooncake {
namespace {

constexpr uint32_t kMagic = 0x5144434d;  // "MCDQ"

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
bool Get(absl::string_view* in, T* v) {
  if (in->size() < sizeof(T)) return false;
  std::memcpy(v, in->data(), sizeof(T));
  in->remove_prefix(sizeof(T));
  return true;
}

absl::Status Bad(absl::string_view why) {
  return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("bad disk read request: ", why));
}

}  // namespace

std::string EncodeDiskReadRequest(const std::vector<DiskReadItem>& items) {
  std::string out;
  Put<uint32_t>(&out, kMagic);
  Put<uint32_t>(&out, static_cast<uint32_t>(items.size()));
  for (const DiskReadItem& it : items) {
    Put<uint32_t>(&out, static_cast<uint32_t>(it.key.size()));
    out.append(it.key);
    Put<uint64_t>(&out, it.offset);
    Put<uint64_t>(&out, it.length);
  }
  return out;
}

absl::StatusOr<std::vector<DiskReadItem>> DecodeDiskReadRequest(absl::string_view in) {
  uint32_t magic = 0, count = 0;
  if (!Get(&in, &magic) || magic != kMagic) return Bad("wrong magic");
  if (!Get(&in, &count) || count > kMaxDiskReadItems) {
    return Bad(absl::StrCat("more than ", kMaxDiskReadItems, " items"));
  }
  std::vector<DiskReadItem> items(count);
  uint64_t total = 0;
  for (DiskReadItem& it : items) {
    uint32_t len = 0;
    if (!Get(&in, &len) || len == 0 || len > kMaxKeyLength || in.size() < len) {
      return Bad("key length out of range");
    }
    it.key.assign(in.data(), len);
    in.remove_prefix(len);
    if (!Get(&in, &it.offset) || !Get(&in, &it.length)) return Bad("truncated item");
    if (it.length > kMaxDiskReadReply || total + it.length > kMaxDiskReadReply) {
      return Bad(absl::StrCat("asks for more than ", kMaxDiskReadReply, " bytes"));
    }
    total += it.length;
  }
  if (!in.empty()) return Bad("trailing bytes");
  return items;
}

uint64_t DiskReadReplySize(const std::vector<DiskReadItem>& items) {
  uint64_t n = DiskReadReplyTrailerSize(items.size());
  for (const DiskReadItem& it : items) n += it.length;
  return n;
}

std::string EncodeDiskReadReplyTrailer(const std::vector<ErrorCode>& codes) {
  std::string out;
  Put<uint32_t>(&out, static_cast<uint32_t>(codes.size()));
  for (ErrorCode c : codes) Put<int32_t>(&out, static_cast<int32_t>(c));
  return out;
}

absl::StatusOr<std::vector<ErrorCode>> ParseDiskReadReplyTrailer(
    const std::vector<DiskReadItem>& items, absl::string_view trailer) {
  uint32_t count = 0;
  absl::string_view in = trailer;
  if (trailer.size() != DiskReadReplyTrailerSize(items.size()) || !Get(&in, &count) ||
      count != items.size()) {
    return MakeError(ErrorCode::TRANSFER_FAIL, "malformed disk read reply");
  }
  std::vector<ErrorCode> codes(count);
  for (ErrorCode& c : codes) {
    int32_t v = 0;
    Get(&in, &v);
    c = ErrorCodeFromInt(v).value_or(ErrorCode::INTERNAL_ERROR);
  }
  return codes;
}

}  // namespace mooncake
