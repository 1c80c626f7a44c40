// ConnectionServer: accepts connections on a listening socket and serves each one on its own
// thread, for the servers whose connections are few and long-lived (the TCP data server, the
// master's fast RPC, the shared-memory handshake). Finished connections are reaped as new ones
// arrive; Stop() shuts every connection down and joins every thread.
//
//   ConnectionServer server("fast rpc", 1024, [](int fd) { while (ServeOne(fd)) {} });
//   server.Start("127.0.0.1", 0);       // or StartOn(listen_fd) for a unix socket
//   int port = server.port();
#ifndef MOONCAKE_NET_CONNECTION_SERVER_H_
#define MOONCAKE_NET_CONNECTION_SERVER_H_

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace mooncake {

class ConnectionServer {
 public:
  // Handler serves one connection and returns when it should be closed (the server closes it).
  using Handler = std::function<void(int fd)>;
  // Admit runs on each new connection before its thread starts; false closes it at once.
  using Admit = std::function<bool(int fd)>;

  ConnectionServer(std::string name, int max_connections, Handler handler, Admit admit = nullptr);
  ~ConnectionServer();
  ConnectionServer(const ConnectionServer&) = delete;
  ConnectionServer& operator=(const ConnectionServer&) = delete;

  // Start listens on host:port (0 = ephemeral) with TCP_NODELAY on accepted sockets.
  absl::Status Start(const std::string& host, int port);
  // StartOn serves an already listening socket (which the server then owns).
  absl::Status StartOn(int listen_fd);
  int port() const { return port_; }
  // stopping is true once Stop() began; handlers blocked in I/O are woken by a shutdown.
  bool stopping() const { return stopping_.load(); }
  // serving is the number of accepted connections whose handler has not returned yet.
  int serving() const { return serving_.load(); }
  void Stop();

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  void AcceptLoop();
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  const int max_connections_;
  const Handler handler_;
  const Admit admit_;
  bool tcp_ = false;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> serving_{0};
  std::thread accept_thread_;
  absl::Mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mooncake

#endif  // MOONCAKE_NET_CONNECTION_SERVER_H_
