#include "client/link/proxy_url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hansa {

// host and port of "http://host:port[/]", as ValidateProxyUrl accepts it.
bool SplitProxyUrl(const std::string& url, std::string* host, std::string* port) {
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(url, kScheme)) return false;
  std::string rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return false;
  *host = rest.substr(0, colon);
  *port = rest.substr(colon + 1);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
}

Status ValidateProxyUrl(const std::string& url) {
  const std::string expected = "; it must be \"http://host:port\"";
  if (url.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "network.proxy: user:password@ is not supported (a password would sit in site.toml in "
        "plain text); ask for a proxy rule that lets this host CONNECT to the coordinator "
        "without one",
        expected));
  }
  std::string host, port;
  int port_number = 0;
  if (!SplitProxyUrl(url, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("network.proxy is '", url, "'", expected,
                     " (an HTTP CONNECT proxy; TLS runs inside its tunnel)"));
  }
  if (host.empty() || host.find_first_of("/?#") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("network.proxy is '", url, "': no host", expected));
  }
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "network.proxy is '", url, "': the port must be a number from 1 to 65535", expected));
  }
  return absl::OkStatus();
}

}  // namespace hansa
