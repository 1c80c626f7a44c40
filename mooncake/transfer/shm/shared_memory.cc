#include "mooncake/transfer/shm/shared_memory.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {
namespace {

// Handshake: the peer sends a ShmRequest; the owner answers a ShmReply, with the memfd attached
// (SCM_RIGHTS) when status == 0.
struct ShmRequest {
  uint64_t buffer_addr;  // 0 asks for the generation page
};
// An owner with a token (MC_AUTH_TOKEN) first expects ShmRequest{kShmAuthMagic}, a u64 token
// length (1..kMaxAuthTokenBytes) and the token, and answers a ShmReply without an fd. The magic
// is not a canonical user-space address, so it never names a buffer. Anything else as the first
// request gets a ShmReply with kShmAuthRefused and the connection closes.
constexpr uint64_t kShmAuthMagic = 0x48545541484d434dull;  // "MCMHAUTH"
constexpr int32_t kShmAuthRefused = -2;
constexpr uint64_t kControlPageBytes = 4096;

std::atomic<uint64_t>* GenerationIn(const void* page) {
  return static_cast<std::atomic<uint64_t>*>(const_cast<void*>(page));
}
struct ShmReply {
  int32_t status;
  uint32_t reserved;
  uint64_t length;
};

absl::Status Errno(absl::string_view what) {
  return MakeError(ErrorCode::TRANSFER_FAIL, absl::StrCat(what, ": ", strerror(errno)));
}

}  // namespace

absl::StatusOr<SharedBuffer> AllocateSharedBuffer(uint64_t length, const std::string& name,
                                                  bool populate) {
  if (length == 0) return MakeError(ErrorCode::INVALID_PARAMS, "shared buffer of 0 bytes");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return Errno("memfd_create");
  if (ftruncate(fd, static_cast<off_t>(length)) != 0) {
    absl::Status s = Errno(absl::StrCat("ftruncate memfd to ", length, " bytes"));
    close(fd);
    return s;
  }
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    absl::Status s = Errno(absl::StrCat("mmap ", length, " bytes"));
    close(fd);
    return s;
  }
  if (populate && madvise(p, length, MADV_POPULATE_WRITE) != 0) {
    // Older kernels: touch one byte per page instead.
    const long page = sysconf(_SC_PAGESIZE);
    for (uint64_t off = 0; off < length; off += page) static_cast<volatile char*>(p)[off] = 0;
  }
  return SharedBuffer{p, length, fd};
}

void FreeSharedBuffer(const SharedBuffer& buffer) {
  if (buffer.addr != nullptr) munmap(buffer.addr, buffer.length);
  if (buffer.fd >= 0) close(buffer.fd);
}

ShmExporter::ShmExporter(const MemoryRegistry* registry, std::string auth_token)
    : registry_(registry),
      auth_token_(std::move(auth_token)),
      server_(
          "shm exporter", 1024, [this](int fd) { Serve(fd); },
          [](int fd) {
            // Same user only: a memfd grants full access to the memory.
            ucred cred;
            socklen_t len = sizeof(cred);
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != getuid()) {
              MC_LOG(WARNING) << "shm exporter: refusing a peer with another uid";
              return false;
            }
            return true;
          }) {}

ShmExporter::~ShmExporter() { Stop(); }

absl::Status ShmExporter::Start(const std::string& name) {
  name_ = name;
  absl::StatusOr<SharedBuffer> control =
      AllocateSharedBuffer(kControlPageBytes, "mooncake-shm-gen");
  if (!control.ok()) return control.status();
  control_ = *control;
  new (control_.addr) std::atomic<uint64_t>(1);
  absl::StatusOr<int> fd = ListenUnixAbstract(name);
  if (!fd.ok()) return MakeError(ErrorCode::TRANSFER_FAIL, fd.status().message());
  return server_.StartOn(*fd);
}

void ShmExporter::Stop() {
  server_.Stop();
  FreeSharedBuffer(control_);
  control_ = SharedBuffer();
}

void ShmExporter::BumpGeneration() {
  if (control_.addr != nullptr)
    GenerationIn(control_.addr)->fetch_add(1, std::memory_order_acq_rel);
}

void ShmExporter::Serve(int fd) {
  bool authenticated = auth_token_.empty();
  // Until it presents the token, a peer has kAuthFrameTimeout for its one message.
  const absl::Time auth_deadline = absl::Now() + kAuthFrameTimeout;
  while (!server_.stopping()) {
    const absl::Time deadline = authenticated ? absl::InfiniteFuture() : auth_deadline;
    ShmRequest req;
    if (!RecvAllBy(fd, &req, sizeof(req), deadline).ok()) break;
    ShmReply reply{0, 0, 0};
    if (req.buffer_addr == kShmAuthMagic) {
      uint64_t length = 0;
      if (!RecvAllBy(fd, &length, sizeof(length), deadline).ok()) break;
      if (length == 0 || length > kMaxAuthTokenBytes) break;
      std::string token(length, '\0');
      if (!RecvAllBy(fd, token.data(), length, deadline).ok()) break;
      if (!AuthTokenMatches(auth_token_, token)) {
        auth_refusals_.fetch_add(1);
        reply.status = kShmAuthRefused;
        if (SendWithFd(fd, &reply, sizeof(reply), -1).ok()) FinishRefusal(fd);
        break;
      }
      authenticated = true;
      if (!SendWithFd(fd, &reply, sizeof(reply), -1).ok()) break;
      continue;
    }
    if (!authenticated) {
      MC_LOG(WARNING) << "shm exporter: refusing a peer without the right " << kAuthTokenEnv;
      auth_refusals_.fetch_add(1);
      reply.status = kShmAuthRefused;
      if (SendWithFd(fd, &reply, sizeof(reply), -1).ok()) FinishRefusal(fd);
      break;
    }
    int send_fd = -1;
    auto buf = registry_->Find(req.buffer_addr, 1, /*remote=*/true);
    if (req.buffer_addr == 0) {
      reply.length = kControlPageBytes;
      send_fd = control_.fd;
    } else if (!buf.ok() || buf->addr != req.buffer_addr || buf->shm_fd < 0) {
      reply.status = static_cast<int32_t>(ErrorCode::INVALID_PARAMS);
    } else {
      reply.length = buf->length;
      send_fd = buf->shm_fd;
    }
    if (!SendWithFd(fd, &reply, sizeof(reply), send_fd).ok()) break;
  }
}

absl::StatusOr<std::unique_ptr<ShmPeer>> ShmPeer::Connect(const std::string& socket_name,
                                                          const std::string& auth_token) {
  absl::StatusOr<int> fd = ConnectUnixAbstract(socket_name);
  if (!fd.ok()) return MakeError(ErrorCode::TRANSFER_FAIL, fd.status().message());
  std::unique_ptr<ShmPeer> peer(new ShmPeer(*fd));
  absl::MutexLock lock(&peer->mu_);
  if (!auth_token.empty()) {
    if (absl::Status a = peer->Authenticate(auth_token); !a.ok()) return a;
  }
  uint64_t length = 0;
  absl::StatusOr<int> control = peer->RequestFd(0, &length);
  if (!control.ok()) return control.status();
  void* page = mmap(nullptr, kControlPageBytes, PROT_READ, MAP_SHARED, *control, 0);
  close(*control);
  if (page == MAP_FAILED) return Errno("mmap generation page");
  peer->control_ = page;
  return peer;
}

uint64_t ShmPeer::Generation() const {
  return GenerationIn(control_)->load(std::memory_order_acquire);
}

absl::Status ShmPeer::Authenticate(const std::string& token) {
  struct {
    ShmRequest req;
    uint64_t length;
  } head{{kShmAuthMagic}, token.size()};
  iovec iov[2] = {{&head, sizeof(head)}, {const_cast<char*>(token.data()), token.size()}};
  if (!SendAll(fd_, iov, 2).ok()) {
    dead_ = true;
    return Errno("shm handshake send");
  }
  ShmReply reply;
  int memfd = -1;
  absl::Status got = RecvWithFd(fd_, &reply, sizeof(reply), &memfd);
  if (memfd >= 0) close(memfd);
  if (!got.ok()) {
    dead_ = true;
    return MakeError(ErrorCode::TRANSFER_FAIL, "shared-memory owner closed the handshake");
  }
  if (reply.status != 0) return AuthRefused("the shared-memory owner");
  return absl::OkStatus();
}

absl::StatusOr<int> ShmPeer::RequestFd(uint64_t buffer_addr, uint64_t* length) {
  ShmRequest req{buffer_addr};
  if (send(fd_, &req, sizeof(req), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(req))) {
    dead_ = true;
    return Errno("shm handshake send");
  }
  ShmReply reply;
  int memfd = -1;
  if (!RecvWithFd(fd_, &reply, sizeof(reply), &memfd).ok()) {
    if (memfd >= 0) close(memfd);
    dead_ = true;
    return MakeError(ErrorCode::TRANSFER_FAIL, "shared-memory owner closed the handshake");
  }
  if (reply.status == kShmAuthRefused) {
    if (memfd >= 0) close(memfd);
    dead_ = true;
    return AuthRefused("the shared-memory owner");
  }
  if (reply.status != 0 || memfd < 0) {
    if (memfd >= 0) close(memfd);
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrFormat("buffer %#x is not shared by its owner", buffer_addr));
  }
  *length = reply.length;
  return memfd;
}

ShmPeer::~ShmPeer() {
  absl::MutexLock lock(&mu_);
  for (auto& [addr, m] : mappings_) munmap(m.base, m.length);
  if (control_ != nullptr) munmap(const_cast<void*>(control_), kControlPageBytes);
  close(fd_);
}

bool ShmPeer::Alive() {
  absl::MutexLock lock(&mu_);
  if (dead_) return false;
  // The owner never sends unprompted, so readable here means EOF (or error): it is gone.
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) dead_ = true;
  return !dead_;
}

absl::StatusOr<char*> ShmPeer::Translate(uint64_t buffer_addr, uint64_t buffer_length,
                                         uint64_t addr, uint64_t length) {
  absl::MutexLock lock(&mu_);
  auto it = mappings_.find(buffer_addr);
  if (it == mappings_.end()) {
    if (dead_) return MakeError(ErrorCode::TRANSFER_FAIL, "shared-memory owner is gone");
    uint64_t length = 0;
    absl::StatusOr<int> fd = RequestFd(buffer_addr, &length);
    if (!fd.ok()) return fd.status();
    int memfd = *fd;
    if (length != buffer_length) {
      close(memfd);
      return MakeError(
          ErrorCode::INVALID_PARAMS,
          absl::StrFormat("buffer %#x changed size (descriptor is stale)", buffer_addr));
    }
    // MAP_POPULATE: fill the page tables now, once, instead of faulting on every page later.
    void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
    close(memfd);  // the mapping keeps the memory alive
    if (p == MAP_FAILED) return Errno("mmap peer buffer");
    it = mappings_.emplace(buffer_addr, Mapping{static_cast<char*>(p), length}).first;
  }
  const Mapping& m = it->second;
  if (m.length != buffer_length) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrFormat("buffer %#x changed size (descriptor is stale)", buffer_addr));
  }
  if (addr < buffer_addr || addr - buffer_addr > m.length ||
      length > m.length - (addr - buffer_addr)) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrFormat("range [%#x, +%u) is not inside the shared buffer [%#x, +%u)",
                                     addr, length, buffer_addr, m.length));
  }
  return m.base + (addr - buffer_addr);
}

}  // namespace mooncake
