#include "mooncake/master/master_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/fast_rpc.h"
#include "mooncake/master/grpc_master_service.h"
#include "mooncake/master/metrics_text.h"
#include "mooncake/metadata/http_metadata_server.h"
#include "mooncake/net/host_port.h"

namespace mooncake {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

bool IsNumericAddress(const std::string& address) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, address.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, address.c_str(), buf) == 1;
}

absl::Status CheckPort(const char* name, int port, bool allow_disabled) {
  if (port == -1 && allow_disabled) return absl::OkStatus();
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(name, " ", port, " is not a port (0..65535)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateMasterServerOptions(const MasterServerOptions& o) {
  if (!IsNumericAddress(o.bind_address)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bind_address '", o.bind_address, "' is not a numeric IPv4 or IPv6 address"));
  }
  if (!o.http_metadata_server_host.empty() && !IsNumericAddress(o.http_metadata_server_host)) {
    return absl::InvalidArgumentError(absl::StrCat("http_metadata_server_host '",
                                                   o.http_metadata_server_host,
                                                   "' is not a numeric IPv4 or IPv6 address"));
  }
  if (absl::Status s = CheckPort("port", o.port, false); !s.ok()) return s;
  if (absl::Status s = CheckPort("metrics_port", o.metrics_port, true); !s.ok()) return s;
  if (absl::Status s = CheckPort("http_metadata_server_port", o.http_metadata_server_port, false);
      !s.ok()) {
    return s;
  }
  if (o.rpc_thread_num < 1 || o.rpc_thread_num > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("rpc_thread_num ", o.rpc_thread_num, " must be in 1..1024"));
  }
  if (o.tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval must be > 0");
  }
  return ValidateMasterServiceOptions(o.service);
}

MasterServer::MasterServer(const MasterServerOptions& options, Clock* clock)
    : options_(options),
      service_(std::make_unique<MasterService>(options.service, clock)),
      grpc_service_(std::make_unique<GrpcMasterService>(service_.get())) {}

absl::StatusOr<std::unique_ptr<MasterServer>> MasterServer::Start(
    const MasterServerOptions& options, Clock* clock) {
  if (absl::Status s = ValidateMasterServerOptions(options); !s.ok()) return s;
  std::unique_ptr<MasterServer> server(new MasterServer(options, clock));
  absl::Status started = server->StartGrpc();
  if (started.ok()) started = server->StartMetrics();
  if (started.ok()) started = server->StartMetadata();
  if (started.ok()) started = server->StartFastRpc();
  if (!started.ok()) {
    server->Stop();
    return started;
  }
  server->tick_thread_ = std::thread([s = server.get()] {
    while (!s->stop_ticking_.WaitForNotificationWithTimeout(s->options_.tick_interval)) {
      s->service_->Tick();
    }
  });
  return server;
}

absl::Status MasterServer::StartGrpc() {
  const std::string address = FormatHostPort(options_.bind_address, options_.port);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(grpc_service_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Without this a second master on the same port would silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              options_.rpc_thread_num);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port_ == 0) {
    grpc_server_.reset();
    port_ = 0;
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on ", address, " (address in use or not local?)"));
  }
  return absl::OkStatus();
}

absl::Status MasterServer::StartMetrics() {
  if (options_.metrics_port == -1) return absl::OkStatus();
  metrics_server_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *metrics_server_;
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_payload_max_length(4096);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  MasterService* service = service_.get();
  http.Get("/metrics", [service](const httplib::Request&, httplib::Response& res) {
    res.set_content(PrometheusText(service->GetMetrics()), "text/plain; version=0.0.4");
  });
  http.Get("/get_all_segments", [service](const httplib::Request&, httplib::Response& res) {
    res.set_content(SegmentListText(service->ListSegments()), "text/plain");
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("OK\n", "text/plain");
  });
  if (options_.metrics_port == 0) {
    metrics_port_ = http.bind_to_any_port(options_.bind_address);
  } else if (http.bind_to_port(options_.bind_address, options_.metrics_port)) {
    metrics_port_ = options_.metrics_port;
  }
  if (metrics_port_ <= 0) {
    metrics_port_ = 0;
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", FormatHostPort(options_.bind_address, options_.metrics_port),
        " (address in use?)"));
  }
  metrics_thread_ = std::thread([&http] { http.listen_after_bind(); });
  // stop() is a no-op until the loop runs, so Stop() could otherwise miss it and hang in join.
  for (int i = 0; i < 5000 && !http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!http.is_running()) {
    return absl::InternalError("the metrics server did not start within 5 s");
  }
  return absl::OkStatus();
}

absl::Status MasterServer::StartMetadata() {
  if (!options_.enable_http_metadata_server) return absl::OkStatus();
  metadata::HttpMetadataServerOptions metadata_options;
  metadata_options.host = options_.http_metadata_server_host.empty()
                              ? options_.bind_address
                              : options_.http_metadata_server_host;
  metadata_options.port = options_.http_metadata_server_port;
  metadata_server_ = std::make_unique<metadata::HttpMetadataServer>(metadata_options);
  absl::Status started = metadata_server_->Start();
  if (!started.ok()) {
    metadata_server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot start the embedded HTTP metadata server: ", started.message()));
  }
  return absl::OkStatus();
}

int MasterServer::metadata_port() const {
  return metadata_server_ == nullptr ? 0 : metadata_server_->port();
}

absl::Status MasterServer::StartFastRpc() {
  if (options_.fast_rpc_port == -1) return absl::OkStatus();
  fast_rpc_server_ = std::make_unique<FastRpcServer>(service_.get());
  absl::Status s = fast_rpc_server_->Start(options_.bind_address, options_.fast_rpc_port);
  if (!s.ok()) {
    fast_rpc_server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot serve fast RPC on ", options_.bind_address,
                                               ":", options_.fast_rpc_port, ": ", s.message()));
  }
  grpc_service_->set_fast_rpc_port(fast_rpc_server_->port());
  return absl::OkStatus();
}

int MasterServer::fast_rpc_port() const { return fast_rpc_server_ ? fast_rpc_server_->port() : 0; }

void MasterServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!stop_ticking_.HasBeenNotified()) stop_ticking_.Notify();
  if (tick_thread_.joinable()) tick_thread_.join();
  if (fast_rpc_server_ != nullptr) fast_rpc_server_->Stop();
  if (grpc_server_ != nullptr) {
    // Handlers take microseconds; calls still running after this are cancelled.
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    grpc_server_->Wait();
  }
  if (metrics_server_ != nullptr) {
    metrics_server_->stop();
    if (metrics_thread_.joinable()) metrics_thread_.join();
  }
  if (metadata_server_ != nullptr) metadata_server_->Stop();
}

MasterServer::~MasterServer() { Stop(); }

}  // namespace mooncake
