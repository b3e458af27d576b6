#pragma once
// Unary ModelInfer calls over one plain HTTP/2 connection driven by nghttp2 on one
// thread, the request serialized once: a client as lean as wrk is for HTTP/1.1, so that
// on a machine shared with the server the figures are the server's, not grpc++'s client
// (about 11 us of CPU per call against wrk's 4-5).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpc_load {

class H2UnaryLoad {
 public:
  // `message`: the serialized ModelInferRequest sent by every call.
  H2UnaryLoad(std::string host, int port, std::string message, int concurrency);
  ~H2UnaryLoad();

  // Connects and starts the calls on a thread of its own; false with why on failure.
  bool Start(std::string* error);
  void SetMeasuring(bool on);
  // Stops issuing, waits for the calls in flight, ends the thread.
  void Stop();

  std::vector<uint32_t> Latencies() const;  // of the calls that completed while measuring
  uint64_t errors() const;
  std::string first_error() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpc_load
