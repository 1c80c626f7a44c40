// PeerControl: the TransferEngine's control channel to other engines, for the rare requests that
// are not data: fetching a peer's segment descriptor (P2PHANDSHAKE mode, liveness probes) and the
// RDMA rail handshake. Production sends control frames to the peer's TCP data server on a fresh
// connection; the simulator calls the peer engine directly (its seam, docs/architecture.md, "Layers
// and seams").
#ifndef MOONCAKE_TRANSFER_PEER_CONTROL_H_
#define MOONCAKE_TRANSFER_PEER_CONTROL_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "mooncake/transfer/rdma/rdma_transport.h"

namespace mooncake {

class PeerControl : public RdmaHandshake {
 public:
  // GetDescriptor asks the engine serving `segment` for its descriptor (JSON). SEGMENT_NOT_FOUND
  // when nothing answers there (the process is gone); other errors when it cannot be told.
  virtual absl::StatusOr<std::string> GetDescriptor(const std::string& segment) = 0;
  // Exchange (RdmaHandshake) carries one rail handshake to the peer and brings back its answer.

  // CallService carries one request to the service handler of the engine serving `segment`
  // (TransferEngine::SetServiceHandler) and brings back its reply.
  virtual absl::StatusOr<std::string> CallService(const std::string& segment,
                                                  const std::string& request) = 0;

  // ReplyReader hands a reply's bytes to its consumer in order.
  class ReplyReader {
   public:
    virtual ~ReplyReader() = default;
    virtual uint64_t size() const = 0;
    // Read copies the next n bytes to dst; past the end is an error.
    virtual absl::Status Read(void* dst, uint64_t n) = 0;
  };
  using ReplyConsumer = std::function<absl::Status(ReplyReader& reply)>;
  // CallServiceInto is CallService with the reply streamed to `consume`, which must read all of
  // it (over TCP the bytes come straight off the socket). By default: CallService, then the
  // string.
  virtual absl::Status CallServiceInto(const std::string& segment, const std::string& request,
                                       const ReplyConsumer& consume) {
    absl::StatusOr<std::string> reply = CallService(segment, request);
    if (!reply.ok()) return reply.status();
    StringReader reader(*reply);
    return consume(reader);
  }

 private:
  class StringReader final : public ReplyReader {
   public:
    explicit StringReader(const std::string& s) : s_(s) {}
    uint64_t size() const override { return s_.size(); }
    absl::Status Read(void* dst, uint64_t n) override {
      if (n > s_.size() - pos_) return absl::OutOfRangeError("read past the end of the reply");
      std::memcpy(dst, s_.data() + pos_, n);
      pos_ += n;
      return absl::OkStatus();
    }

   private:
    const std::string& s_;
    uint64_t pos_ = 0;
  };
};

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_PEER_CONTROL_H_
