#pragma once
// Lets a keep-alive connection wait for its next request without a system call.
// Included only by http_listener.cc: it reaches into Asio's epoll reactor.
//
// Boost 1.74's reactor tries every socket read at once (a "speculative" recv) before
// queueing it for epoll, and only end of stream turns that off. After a reply the next
// request is almost never there yet, so that recv fails with EAGAIN: 0.85 failed recv per
// JSON request at 8 connections (perf stat, sys_exit_recvfrom with ret < 0). The reactor
// keeps a per-socket flag for it; clearing the flag queues the read without trying.
#include <boost/version.hpp>

#include "frontends/http/beast.h"

namespace flowserve::http_detail {

#if BOOST_VERSION == 107400 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING)
inline constexpr bool kCanSkipSpeculativeRead = true;

namespace quiet_read {
using Reactor = boost::asio::detail::epoll_reactor;
using BasicSocket = boost::asio::basic_socket<tcp, tcp::socket::executor_type>;
using SocketImpl =
    boost::asio::detail::io_object_impl<boost::asio::detail::reactive_socket_service<tcp>,
                                        tcp::socket::executor_type>;

// Explicit instantiation may name private members: this hands out pointers to the two
// members needed (the socket's implementation and the reactor's per-socket flags)
// without patching Boost.
template <typename Tag, typename Tag::type kMember>
struct Expose {
  friend typename Tag::type Get(Tag) { return kMember; }
};
struct SocketImplTag {
  using type = SocketImpl BasicSocket::*;
  friend type Get(SocketImplTag);
};
struct TrySpeculativeTag {
  using type = bool (Reactor::descriptor_state::*)[Reactor::max_ops];
  friend type Get(TrySpeculativeTag);
};
template struct Expose<SocketImplTag, &BasicSocket::impl_>;
template struct Expose<TrySpeculativeTag, &Reactor::descriptor_state::try_speculative_>;
}  // namespace quiet_read

// Makes the socket's next async read wait for epoll's event instead of trying a recv
// first. Only when the socket was found empty and no readiness event of it can have been
// taken from epoll since (same handler call, on the thread that runs its reactor): data
// that arrived meanwhile then has an event still to come. Otherwise the read would wait
// for data that is already there.
inline void SkipNextSpeculativeRead(tcp::socket& socket) {
  using namespace quiet_read;  // NOLINT: the tags above
  auto& impl = (socket.*Get(SocketImplTag{})).get_implementation();
  if (Reactor::descriptor_state* state = impl.reactor_data_) {
    (state->*Get(TrySpeculativeTag{}))[Reactor::read_op] = false;
  }
}

// False when the socket is known empty: a read in a handler call on this thread emptied it
// (SkipNextSpeculativeRead then) and the reactor has taken no readiness event of it since
// (each sets the flag again). A reply that comes turns after its request then looks for
// the next request only if the socket has had news.
inline bool MayHaveData(tcp::socket& socket) {
  using namespace quiet_read;  // NOLINT: the tags above
  auto& impl = (socket.*Get(SocketImplTag{})).get_implementation();
  Reactor::descriptor_state* state = impl.reactor_data_;
  return state == nullptr || (state->*Get(TrySpeculativeTag{}))[Reactor::read_op];
}
#else
// Another Boost: its reactor may differ; reads try at once, as Asio does by default.
inline constexpr bool kCanSkipSpeculativeRead = false;
inline void SkipNextSpeculativeRead(tcp::socket&) {}
inline bool MayHaveData(tcp::socket&) { return true; }
#endif

}  // namespace flowserve::http_detail
