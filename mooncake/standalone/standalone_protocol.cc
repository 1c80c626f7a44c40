#include "mooncake/standalone/standalone_protocol.h"

#include <string.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/net/host_port.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

constexpr uint32_t kMagic = 0x4153434d;  // "MCSA"

struct Header {
  uint32_t magic = kMagic;
  uint8_t op = 0;
  uint8_t version = kStandaloneVersion;
  uint16_t zero = 0;
  uint32_t length = 0;
};
static_assert(sizeof(Header) == 12, "wire header is 12 bytes");

}  // namespace

std::string StandaloneSocketNameForPort(int port) { return absl::StrCat("mooncake_client.", port); }

absl::StatusOr<std::string> StandaloneSocketName(absl::string_view address) {
  int port = 0;
  if (absl::SimpleAtoi(address, &port)) {
    if (port <= 0 || port > 65535) {
      return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("bad port \"", address, "\""));
    }
    return StandaloneSocketNameForPort(port);
  }
  absl::StatusOr<HostPort> hp = ParseHostPort(address);
  if (!hp.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("client server address \"", address,
                                  "\": expected host:port of a mooncake_client on this host (",
                                  hp.status().message(), ")"));
  }
  return StandaloneSocketNameForPort(hp->port);
}

absl::Status WriteFrame(int sock, StandaloneOp op, absl::string_view payload, int pass_fd) {
  Header h;
  h.op = static_cast<uint8_t>(op);
  h.length = static_cast<uint32_t>(payload.size());
  std::string frame(sizeof(h) + payload.size(), '\0');
  memcpy(frame.data(), &h, sizeof(h));
  if (!payload.empty()) memcpy(frame.data() + sizeof(h), payload.data(), payload.size());
  return SendWithFd(sock, frame.data(), frame.size(), pass_fd);
}

absl::Status ReadFrame(int sock, uint32_t max_payload, StandaloneOp* op, std::string* payload,
                       int* received_fd) {
  Header h;
  if (absl::Status s = RecvWithFd(sock, &h, sizeof(h), received_fd); !s.ok()) return s;
  if (h.magic != kMagic || h.version != kStandaloneVersion || h.zero != 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("not a standalone protocol v", kStandaloneVersion, " frame"));
  }
  if (h.length > max_payload) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("frame of ", h.length, " bytes exceeds ", max_payload));
  }
  *op = static_cast<StandaloneOp>(h.op);
  payload->resize(h.length);
  if (h.length == 0) return absl::OkStatus();
  return RecvAll(sock, payload->data(), h.length);
}

void EncodeKeys(const std::vector<std::string>& keys, WireWriter& w) {
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const std::string& k : keys) w.Str(k);
}

bool DecodeKeys(WireReader& r, std::vector<std::string>* keys) {
  uint32_t n = r.Count(4);
  if (n > kMaxStandaloneKeys) return false;
  keys->clear();
  keys->reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) keys->emplace_back(r.Str());
  return r.ok();
}

void EncodeKeyPieces(const std::vector<KeyPieces>& keys, WireWriter& w) {
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const KeyPieces& k : keys) {
    w.Str(k.key);
    w.U32(static_cast<uint32_t>(k.pieces.size()));
    for (const Piece& p : k.pieces) {
      w.U64(p.region);
      w.U64(p.offset);
      w.U64(p.length);
    }
  }
}

bool DecodeKeyPieces(WireReader& r, std::vector<KeyPieces>* keys) {
  uint32_t n = r.Count(8);  // key length + piece count
  if (n > kMaxStandaloneKeys) return false;
  keys->resize(n);
  for (KeyPieces& k : *keys) {
    k.key = std::string(r.Str());
    uint32_t m = r.Count(24);
    if (m > kMaxPiecesPerKey) return false;
    k.pieces.resize(m);
    for (Piece& p : k.pieces) {
      p.region = r.U64();
      p.offset = r.U64();
      p.length = r.U64();
    }
    if (!r.ok()) return false;
  }
  return r.ok();
}

}  // namespace mooncake
