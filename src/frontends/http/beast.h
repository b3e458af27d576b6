#pragma once
// The one place Boost.Beast/Asio enter the build. Boost 1.74's asio uses
// std::exchange without including <utility>, which breaks under -std=c++20 unless
// <utility> comes first; every file of this folder includes Boost through here.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace flowserve::http_detail {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
}  // namespace flowserve::http_detail
